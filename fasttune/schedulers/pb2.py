"""Population Based Bandits (``ray.tune.schedulers.pb2.PB2``).

PB2 is PBT whose explore step is a GP bandit: instead of random perturbations, the new
values of the bounded continuous hyperparameters maximise an upper confidence bound of
the predicted score improvement (GP-UCB).  The GP is scikit-learn's
``GaussianProcessRegressor``; install it with ``pip install "fasttune[pb2]"``.
"""
from __future__ import annotations

import collections
import copy
import math
import numbers
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable, Deque, Dict, List, Optional, Sequence, Tuple

import numpy as np

from fasttune.schedulers._pb2_utils import RewardChangeModel, import_sklearn
from fasttune.schedulers._common import is_real_number
from fasttune.schedulers.pbt import PopulationBasedTraining
from fasttune.search.sample import Float

if TYPE_CHECKING:  # pragma: no cover
    from fasttune.experiment.trial import Trial

Path = Tuple[str, ...]

# The GP is fitted on the most recent data points only (its cost grows as n^3), and a
# round's earlier choices count for its variance up to this many.
_MAX_DATA_POINTS = 250
_MAX_PENDING = 50


def _flatten_bounds(bounds: Any, prefix: Path = ()) -> List[Tuple[Path, float, float]]:
    if not isinstance(bounds, Mapping):
        raise TypeError(
            "hyperparam_bounds must be a dict of hyperparameter name -> [min, max], e.g. "
            f"{{'lr': [1e-4, 1e-1]}}; got {type(bounds).__name__}."
        )
    flat: List[Tuple[Path, float, float]] = []
    for key, value in bounds.items():
        if not isinstance(key, str):
            raise TypeError(f"hyperparam_bounds keys must be config key strings, got {key!r}.")
        path = prefix + (key,)
        name = "/".join(path)
        if isinstance(value, Mapping):
            if not value:
                raise ValueError(f"hyperparam_bounds[{name!r}] is an empty dict; give nested bounds or remove it.")
            flat.extend(_flatten_bounds(value, path))
            continue
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise ValueError(
                f"hyperparam_bounds[{name!r}] must be a list or tuple [min, max], got {value!r}."
            )
        low, high = value
        if not (is_real_number(low) and is_real_number(high)) or not (math.isfinite(low) and math.isfinite(high)):
            raise ValueError(f"hyperparam_bounds[{name!r}] must hold two finite numbers [min, max], got {value!r}.")
        if low > high:
            raise ValueError(f"hyperparam_bounds[{name!r}] = {value!r} has min > max; write it as [{high}, {low}].")
        flat.append((path, float(low), float(high)))
    return flat


def _bounds_to_domains(bounds: Mapping) -> Dict[str, Any]:
    """The bounds as uniform domains (used to draw values a config lacks, and for tags)."""
    return {
        key: _bounds_to_domains(value) if isinstance(value, Mapping) else Float(value[0], value[1]).uniform()
        for key, value in bounds.items()
    }


def _get(config: Mapping, path: Path) -> Any:
    value: Any = config
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def _set(config: Dict[str, Any], path: Path, value: Any) -> None:
    for key in path[:-1]:
        config = config.setdefault(key, {})
    config[path[-1]] = value


class PB2(PopulationBasedTraining):
    """Population Based Bandits: PBT whose explore step is GP-UCB within bounds.

    Exploit works as in :class:`PopulationBasedTraining`.  At every perturbation point PB2
    records ``(time, score, hyperparameters)`` of the trial; consecutive records of a
    trial with unchanged hyperparameters give a data point "starting at (time, score)
    with these hyperparameters, the score changed this much per unit of time".  When a
    trial clones a donor, a Gaussian process (scikit-learn) fitted on the latest data
    points predicts that change at the donor's checkpoint and the new values are those
    that maximise mean + kappa * std.  Values chosen earlier in the same round enter the
    variance, so one round does not choose the same values twice.  Until there are two
    data points the clone keeps the donor's values.

    Values are floats unless the donor's value is an int (then rounded, within bounds).
    A hyperparameter missing from a trial's initial config is drawn uniformly from its
    bounds.  Randomness comes from numpy's global generator (``numpy.random.seed``) and,
    for the choice of donor, Python's :mod:`random`; the saved state holds both, and the
    seed of the fitted GP, so a restored sweep goes on exactly.

    Args:
        time_attr, metric, mode, perturbation_interval, quantile_fraction, log_config,
        require_attrs, synch, custom_explore_fn: As for :class:`PopulationBasedTraining`
            (``custom_explore_fn`` runs after the GP step).
        hyperparam_bounds: ``{name: [min, max]}``, possibly nested like the config
            (``{"optimizer": {"lr": [1e-4, 1e-1]}}``).

    Raises:
        ImportError: scikit-learn is missing (``pip install "fasttune[pb2]"``).

    Example:
        >>> from fasttune.schedulers.pb2 import PB2
        >>> pb2 = PB2(time_attr="training_iteration", metric="reward", mode="max",
        ...           perturbation_interval=10, hyperparam_bounds={"lr": [1e-4, 1e-1]})
        >>> pb2.debug_string()
        'PB2: 0 perturbs, 0 exploits skipped (donor without checkpoint)'
    """

    def __init__(
        self,
        time_attr: str = "time_total_s",
        metric: Optional[str] = None,
        mode: Optional[str] = None,
        perturbation_interval: float = 60.0,
        hyperparam_bounds: Optional[Dict[str, Any]] = None,
        quantile_fraction: float = 0.25,
        log_config: bool = True,
        require_attrs: bool = True,
        synch: bool = False,
        custom_explore_fn: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None,
    ) -> None:
        import_sklearn()
        if not hyperparam_bounds:
            raise ValueError(
                "PB2 needs hyperparam_bounds: a dict of hyperparameter -> [min, max], e.g. "
                "hyperparam_bounds={'lr': [1e-4, 1e-1]}."
            )
        flat = _flatten_bounds(hyperparam_bounds)
        super().__init__(
            time_attr=time_attr,
            metric=metric,
            mode=mode,
            perturbation_interval=perturbation_interval,
            hyperparam_mutations=_bounds_to_domains(hyperparam_bounds),
            quantile_fraction=quantile_fraction,
            resample_probability=0.0,
            custom_explore_fn=custom_explore_fn,
            log_config=log_config,
            require_attrs=require_attrs,
            synch=synch,
        )
        self._hyperparam_bounds = hyperparam_bounds
        self._paths: List[Path] = [path for path, _, _ in flat]
        self._lower = np.array([low for _, low, _ in flat])
        self._upper = np.array([high for _, _, high in flat])
        self._points: Deque[Tuple[np.ndarray, float]] = collections.deque(maxlen=_MAX_DATA_POINTS)
        self._previous: Dict[str, Tuple[float, float, np.ndarray]] = {}  # trial id -> last record
        self._data_version = 0
        self._model: Optional[RewardChangeModel] = None
        self._model_version = -1
        # The GP seed of the model fitted on data version _model_version (drawn from numpy's
        # global generator): after a restore the model is fitted again with it, drawing nothing.
        self._model_seed: Optional[int] = None
        self._max_time = -math.inf
        self._last_exploration_time = -math.inf
        self._current: List[np.ndarray] = []  # values chosen in this round

    # ---- data ------------------------------------------------------------------------
    def _values(self, config: Mapping) -> Optional[np.ndarray]:
        values = [_get(config, path) for path in self._paths]
        if not all(is_real_number(v) for v in values):
            return None
        return np.array(values, dtype=float)

    def _record(self, idx: int, trial: "Trial", time: float, score: float) -> None:
        values = self._values(trial.config)
        if values is None:
            self._warn_once(
                "pb2-values",
                "PB2: the config of trial %s lacks a number for some of %s; its results are not "
                "used to fit the model.", trial, ["/".join(p) for p in self._paths],
            )
            return
        previous = self._previous.get(trial.trial_id)
        if previous is not None:
            start_time, start_score, start_values = previous
            if time > start_time and np.array_equal(start_values, values):
                x = np.concatenate([[start_time, start_score], values])
                self._points.append((x, (score - start_score) / (time - start_time)))
                self._data_version += 1
        self._previous[trial.trial_id] = (time, score, values)
        self._max_time = max(self._max_time, time)

    def _start_over(self, idx: int, trial: "Trial") -> None:
        super()._start_over(idx, trial)
        # Its next perturbation point is not a change from where its earlier run stood.
        self._previous.pop(trial.trial_id, None)

    def _start_point(self, donor: "Trial", checkpoint_result: Dict[str, Any]) -> Tuple[float, float]:
        """(time, score) the clone continues from: the donor's checkpoint."""
        donor_idx = self._index[donor.trial_id]
        time = checkpoint_result.get(self._time_attr)
        value = checkpoint_result.get(self._metric)
        if not is_real_number(time):
            time = self._train_time[donor_idx]
        score = float(self._metric_op) * float(value) if is_real_number(value) else self._score[donor_idx]
        return float(time), float(score)

    def _fitted_model(self) -> RewardChangeModel:
        if self._model is None or self._model_version != self._data_version:
            X = np.array([x for x, _ in self._points])
            y = np.array([y for _, y in self._points])
            seed = self._model_seed if self._model_version == self._data_version else None
            self._model = RewardChangeModel(X, y, self._lower, self._upper, gp_seed=seed)
            self._model_version, self._model_seed = self._data_version, self._model.gp_seed
        return self._model

    # ---- explore -----------------------------------------------------------------------
    def _explore_config(
        self, trial: "Trial", donor: "Trial", checkpoint_result: Dict[str, Any]
    ) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        new_config = copy.deepcopy(donor.config)
        if len(self._points) < 2:
            return new_config, {}
        if self._max_time > self._last_exploration_time:
            # A new round: earlier choices no longer count.
            self._last_exploration_time = self._max_time
            self._current = []
        fixed = self._start_point(donor, checkpoint_result)
        pending = np.array(self._current[-_MAX_PENDING:]) if self._current else None
        suggested = self._fitted_model().suggest(fixed, pending=pending)
        self._current.append(suggested)
        operations: Dict[str, Any] = {}
        for path, value, low, high in zip(self._paths, suggested, self._lower, self._upper):
            old = _get(donor.config, path)
            if isinstance(old, numbers.Integral) and not isinstance(old, bool):
                value = int(min(max(round(float(value)), math.ceil(low)), math.floor(high)))
            else:
                value = float(min(max(float(value), low), high))
            _set(new_config, path, value)
            _set(operations, path, "GP-UCB")
        return new_config, operations

    def _after_exploit(self, idx: int, donor_idx: int, new_config: Dict[str, Any], checkpoint_result: Dict[str, Any]) -> None:
        values = self._values(new_config)
        trial = self._trials[idx]
        if values is None:
            self._previous.pop(trial.trial_id, None)
            return
        time, score = self._start_point(self._trials[donor_idx], checkpoint_result)
        self._previous[trial.trial_id] = (time, score, values)

    # ---- persistence ---------------------------------------------------------------------
    def _extra_state(self) -> Dict[str, Any]:
        return {
            "points": list(self._points),
            "previous": dict(self._previous),
            "data_version": self._data_version,
            "max_time": self._max_time,
            "last_exploration_time": self._last_exploration_time,
            "current": list(self._current),
            "model_version": self._model_version,
            "model_seed": self._model_seed,
        }

    def _set_extra_state(self, extra: Dict[str, Any]) -> None:
        self._points = collections.deque(extra["points"], maxlen=_MAX_DATA_POINTS)
        self._previous = dict(extra["previous"])
        self._data_version = extra["data_version"]
        # The model is fitted again when next needed: with the seed it had, if the data
        # did not change since (states saved before the seed was kept: a fresh one).
        self._model = None
        self._model_version = extra.get("model_version", -1)
        self._model_seed = extra.get("model_seed")
        self._max_time = extra["max_time"]
        self._last_exploration_time = extra["last_exploration_time"]
        self._current = list(extra["current"])


__all__: Sequence[str] = ["PB2"]
