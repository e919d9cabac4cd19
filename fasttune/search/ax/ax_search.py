"""``AxSearch``: Bayesian optimisation with Ax (``ray.tune.search.ax``).

An optional extra: ``pip install "fasttune[ax]"`` (ax-platform, which brings BoTorch and
torch).  Ax is imported when an ``AxSearch`` is built, not when this module is.

Which Ax API: like Ray Tune 2.60, this searcher drives ``ax.service.ax_client.AxClient``:
Ray Tune's ``ax_client`` argument is an ``AxClient`` and its ``**ax_kwargs`` are
``AxClient``'s (``random_seed``, ``generation_strategy``,
``enforce_sequential_optimization``, ``verbose_logging``, ...).  In ax-platform 1.x
``AxClient`` works but is deprecated in favour of ``ax.api.Client`` and announced to be
removed in Ax 1.4.0, so the extra pins ``ax-platform>=1.0,<1.4``; the deprecation warning
is silenced for the clients this searcher makes itself.  (Ray Tune 2.60's own AxSearch
fails on ax-platform 1.3: it reads ``objective.metric``, which Ax 1.3 replaced by
``objective.metric_names``; this searcher reads either.)

The search space is a fasttune space (nested keys become ``"a/b"`` parameter names):
``uniform``/``loguniform`` become float ranges, ``randint``/``lograndint`` int ranges
(``randint``'s upper bound exclusive, ``qrandint``'s inclusive, as in fasttune), ``choice``
a choice parameter; a quantization is dropped with a warning, as Ray Tune does.  Or it is
Ax's own parameter list (``[{"name": "x", "type": "range", "bounds": [0.0, 1.0]}, ...]``,
with ``"fixed"`` parameters too).  ``randn``, ``sample_from``, grid searches and lists holding domains are
refused with an error naming the key.  Constants of the Tuner's ``param_space`` are not
sent to Ax (Ray Tune sends them as fixed parameters): the engine keeps them in every
config.

``random_seed=...`` (an ``AxClient`` argument) makes a sweep reproducible: the Sobol
start and each BoTorch fit are seeded, so the same seed and the same observations give
the same suggestions.  ``save`` writes JSON: Ax's own experiment and generation-strategy
snapshot (``AxClient.to_json_snapshot``) and this searcher's bookkeeping; ``restore``
rebuilds the client with ``AxClient.from_json_snapshot``, which decodes Ax classes from a
fixed registry, so reading a checkpoint runs no code from it (Ray Tune cloudpickles the
searcher).  Arguments that JSON cannot hold (a ``torch_device``, stopping strategies) come
from the restoring searcher's own ``ax_kwargs``.

Where Ray Tune 2.60's searcher differs: a searcher with a space but no mode waits for the
Tuner's metric and mode (Ray Tune's raises); an errored trial or one without a result is
marked failed in Ax (Ray Tune completes an errored trial with its last result and leaves
one without a result running, which can block Ax's parallelism limit); a result lacking
the metric is an error naming it; a finished generation strategy makes ``suggest`` return
``Searcher.FINISHED`` (Ray Tune's raises); ``points_to_evaluate`` are checked against the
parameters and may be nested; a ``qrandint`` keeps its top value (Ray Tune's conversion
drops it).

Example:
    >>> from fasttune.search import randint, uniform
    >>> from fasttune.search.ax import AxSearch
    >>> search = AxSearch({"x": uniform(-1, 1), "net": {"layers": randint(1, 4)}},
    ...                   metric="loss", mode="min", random_seed=0, verbose_logging=False)
    >>> config = search.suggest("t1")
    >>> -1 <= config["x"] <= 1, config["net"]["layers"] in (1, 2, 3)
    (True, True)
    >>> search.on_trial_complete("t1", {"loss": config["x"] ** 2})
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import numbers
import warnings
from collections.abc import Mapping
from typing import Any, Dict, Iterator, List, Optional, Union

from fasttune._optional import import_optional
from fasttune.result import DEFAULT_METRIC
from fasttune.search._space_conversion import flat_space, holds_domain, nested_config, plain_python
from fasttune.search.sample import Categorical, Domain, Float, Integer, LogUniform, Quantized, Uniform
from fasttune.search.searcher import Searcher
from fasttune.search.variant_generator import is_grid_dict

logger = logging.getLogger(__name__)

__all__ = ["AxSearch"]

# The format of what ``get_state`` returns (and ``save`` writes).
_STATE_VERSION = 1
# AxClient arguments that the JSON snapshot holds itself (``random_seed`` is kept beside it).
_SNAPSHOT_KWARGS = ("generation_strategy", "enforce_sequential_optimization", "random_seed")


def _import_ax_client() -> Any:
    """``ax.service.ax_client``, or an ImportError that says how to install Ax."""
    return import_optional("ax.service.ax_client", "ax", "AxSearch", package="ax-platform")


@contextlib.contextmanager
def _without_axclient_deprecation() -> Iterator[None]:
    """Hides AxClient's own deprecation warning (Ax 1.x): the module docstring says why."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The `AxClient` class is deprecated", category=DeprecationWarning)
        yield


def _has_experiment(client: Any) -> bool:
    try:
        client.experiment
    except (AssertionError, ValueError):  # Ax 1.x raises AssertionError ("Experiment not set"), older ValueError
        return False
    return True


def _unsupported(name: str, domain: Domain, why: str) -> ValueError:
    return ValueError(
        f"AxSearch cannot convert the search-space entry {name!r} ({type(domain).__name__} with sampler "
        f"{domain.get_sampler()}): {why}. AxSearch converts uniform, loguniform, randint, lograndint and "
        "choice (quantized ones without the quantization); or pass Ax's parameter list as space."
    )


def _choice_values(name: str, domain: Categorical) -> List[Any]:
    """The categories as Ax's choice values: at least two, all str, all bool or all numbers."""
    values = list(domain.categories)
    kinds = {"bool" if isinstance(v, bool) else "str" if isinstance(v, str)
             else "number" if isinstance(v, numbers.Real) else "other" for v in values}
    if len(values) < 2 or len(kinds) != 1 or "other" in kinds:
        raise _unsupported(name, domain, "Ax's choice parameter takes at least two values, all strings, all "
                                         f"bools or all numbers, got {values!r}")
    return values


def _parameter(name: str, domain: Domain) -> Dict[str, Any]:
    """Ax's parameter dict for one fasttune domain (the dicts Ray Tune's conversion makes)."""
    sampler = domain.get_sampler()
    quantized = isinstance(sampler, Quantized)
    if quantized:
        logger.warning("AxSearch does not support quantization; %r is searched without it.", name)
        sampler = sampler.get_sampler()
    if isinstance(domain, Categorical) and isinstance(sampler, Uniform):
        return {"name": name, "type": "choice", "values": _choice_values(name, domain)}
    if isinstance(domain, (Float, Integer)) and isinstance(sampler, (Uniform, LogUniform)):
        if isinstance(domain, Float):
            bounds, value_type = [domain.lower, domain.upper], "float"
        else:
            # Ax's int bounds are inclusive; a quantized fasttune integer includes its upper
            # bound already (Ray Tune subtracts one there too, losing qrandint's top value).
            bounds, value_type = [domain.lower, domain.upper if quantized else domain.upper - 1], "int"
        return {"name": name, "type": "range", "bounds": bounds, "value_type": value_type,
                "log_scale": isinstance(sampler, LogUniform)}
    raise _unsupported(name, domain, "Ax searches bounded ranges and choices only")


def _metric_names(objective_or_constraint: Any) -> List[str]:
    """The metric names of an Ax objective or outcome constraint (``metric_names`` since Ax 1.3,
    one ``metric`` before)."""
    names = getattr(objective_or_constraint, "metric_names", None)
    return list(names) if names is not None else [objective_or_constraint.metric.name]


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class AxSearch(Searcher):
    """Suggests configs with Ax's adaptive experimentation (Sobol, then BoTorch models).

    Args:
        space: A fasttune space, or Ax's parameter list (dicts with ``"name"``, ``"type"``
            ``"range"``/``"choice"``/``"fixed"``, and ``"bounds"``/``"values"``/``"value"``;
            ``"a/b"`` names nest).  ``None``: the Tuner's ``param_space`` is converted.
        metric: The result key to optimise (``None``: the Tuner's; ``"_metric"`` when only
            a mode is given).
        mode: ``"min"`` or ``"max"`` (``None``: the Tuner's).
        points_to_evaluate: Configs to try first, in order (attached to the experiment as
            trials); nested or with ``"a/b"`` keys.
        parameter_constraints: Ax's constraints on parameters, e.g. ``["x + y <= 2"]``.
        outcome_constraints: Ax's constraints on other result keys, e.g. ``["acc >= 0.9"]``;
            every result must report those keys too.
        ax_client: An ``AxClient`` to drive.  If its experiment exists already, it defines
            the space, metric and mode, so pass none of ``space``, ``metric``, ``mode``,
            ``parameter_constraints``, ``outcome_constraints``.
        **ax_kwargs: Arguments of the ``AxClient`` this searcher makes (ignored with
            ``ax_client``), e.g. ``random_seed=0`` for a reproducible sweep or a
            ``generation_strategy``.

    Raises:
        ImportError: ax-platform is not installed.
        ValueError: A domain Ax cannot search (``randn``, ``sample_from``, ``grid_search``,
            ...), named by its key, or a bad argument.

    Example:
        >>> from fasttune.search.ax import AxSearch
        >>> search = AxSearch([{"name": "opt/lr", "type": "range", "bounds": [1e-4, 1e-1], "log_scale": True},
        ...                    {"name": "act", "type": "choice", "values": ["relu", "tanh"]}],
        ...                   metric="score", mode="max", verbose_logging=False,
        ...                   points_to_evaluate=[{"opt": {"lr": 0.01}, "act": "tanh"}])
        >>> search.suggest("a")
        {'opt': {'lr': 0.01}, 'act': 'tanh'}
    """

    def __init__(
        self,
        space: Optional[Union[Dict, List[Dict]]] = None,
        metric: Optional[str] = None,
        mode: Optional[str] = None,
        points_to_evaluate: Optional[List[Dict]] = None,
        parameter_constraints: Optional[List] = None,
        outcome_constraints: Optional[List] = None,
        ax_client: Optional[Any] = None,
        **ax_kwargs: Any,
    ) -> None:
        _import_ax_client()
        if mode is not None and mode not in ("min", "max"):
            raise ValueError(f"AxSearch takes mode 'min' or 'max', got {mode!r}.")
        if metric is not None and not isinstance(metric, str):
            raise TypeError(f"AxSearch optimises one metric (a str), got {metric!r}.")
        if points_to_evaluate is not None and (
            not isinstance(points_to_evaluate, (list, tuple))
            or not all(isinstance(p, Mapping) for p in points_to_evaluate)
        ):
            raise TypeError(f"points_to_evaluate must be a list of config dicts, got {points_to_evaluate!r}.")
        if ax_client is not None and ax_kwargs:
            logger.warning("AxSearch: ax_kwargs %s are ignored because an ax_client is given.", sorted(ax_kwargs))
        super().__init__(metric=metric, mode=mode)
        self._ax = ax_client
        self._ax_kwargs = dict(ax_kwargs)
        self._parameter_constraints = list(parameter_constraints) if parameter_constraints else None
        self._outcome_constraints = list(outcome_constraints) if outcome_constraints else None
        self._points_to_evaluate: List[Dict[str, Any]] = [flat_space(p) for p in points_to_evaluate or []]
        self._live_trial_mapping: Dict[str, int] = {}  # trial_id -> Ax trial index
        self._parameters: List[str] = []
        self._space: Optional[List[Dict[str, Any]]] = None
        if isinstance(space, Mapping):
            space = self.convert_search_space(space) if space else None
        elif space is not None and not (
            isinstance(space, (list, tuple)) and all(isinstance(p, Mapping) and "name" in p for p in space)
        ):
            raise TypeError(f"AxSearch's space must be a fasttune space (dict) or Ax's parameter list "
                            f"(dicts with a 'name'), got {space!r}.")
        self._space = [dict(p) for p in space] if space else None
        if self._ax is not None and _has_experiment(self._ax):
            given = [name for name, value in (("space", self._space), ("metric", metric), ("mode", mode),
                                              ("parameter_constraints", self._parameter_constraints),
                                              ("outcome_constraints", self._outcome_constraints)) if value]
            if given:
                raise ValueError(f"AxSearch: the ax_client's experiment defines the search already; do not pass "
                                 f"{', '.join(given)} too (or pass an AxClient without an experiment).")
            self._setup_experiment()
        elif self._space and self._mode:
            self._setup_experiment()

    # -- setup ---------------------------------------------------------------------------
    @staticmethod
    def convert_search_space(spec: Dict) -> List[Dict[str, Any]]:
        """Ax's parameter list for ``spec``'s domains, named ``"a/b"`` by their nested keys;
        constants are left out (the engine keeps them in every config).

        Example:
            >>> from fasttune.search import choice, loguniform, qrandint
            >>> from fasttune.search.ax import AxSearch
            >>> for p in AxSearch.convert_search_space({"opt": {"lr": loguniform(1e-4, 1e-1)},
            ...                                         "act": choice(["relu", "tanh"]), "epochs": 3}):
            ...     print(p)
            {'name': 'opt/lr', 'type': 'range', 'bounds': [0.0001, 0.1], 'value_type': 'float', 'log_scale': True}
            {'name': 'act', 'type': 'choice', 'values': ['relu', 'tanh']}
        """
        if not isinstance(spec, Mapping):
            raise TypeError(f"AxSearch's search space must be a dict, got {type(spec).__name__}.")
        parameters = []
        for name, value in flat_space(spec).items():
            if isinstance(value, Mapping) and is_grid_dict(value):
                raise ValueError(f"AxSearch cannot convert the grid search at {name!r}: Ax samples its own points; "
                                 "use choice(...) instead.")
            if isinstance(value, Domain):
                parameters.append(_parameter(name, value))
            elif holds_domain(value):
                raise ValueError(f"AxSearch cannot convert the search-space entry {name!r}: it is a list holding "
                                 "search-space domains; give each domain a key of its own.")
        return parameters

    def _setup_experiment(self) -> None:
        """Creates the Ax experiment (unless the client has one) and takes its metric and mode."""
        if self._metric is None and self._mode:
            self._metric = DEFAULT_METRIC  # only a mode: the anonymous metric, as Ray Tune
        if self._ax is None:
            with _without_axclient_deprecation():
                self._ax = _import_ax_client().AxClient(**self._ax_kwargs)
        if not _has_experiment(self._ax):
            objective = _import_ax_client().ObjectiveProperties(minimize=self._mode != "max")
            self._ax.create_experiment(
                parameters=[dict(p) for p in self._space],
                objectives={self._metric: objective},
                parameter_constraints=self._parameter_constraints,
                outcome_constraints=self._outcome_constraints,
            )
        experiment = self._ax.experiment
        objective = experiment.optimization_config.objective
        names = _metric_names(objective)
        if len(names) != 1 or getattr(objective, "is_multi_objective", False):
            raise ValueError(f"AxSearch optimises one metric; the ax_client's experiment has the objective "
                             f"{objective}.")
        self._metric = names[0]
        self._mode = "min" if objective.minimize else "max"
        self._parameters = list(experiment.parameters)
        for index, point in enumerate(self._points_to_evaluate):
            self._check_point(point, f"points_to_evaluate[{index}]")
        if getattr(self._ax, "_enforce_sequential_optimization", False):
            logger.debug("Ax enforces sequential optimization: suggest returns None while Ax waits for results.")

    def _fixed_values(self) -> Dict[str, Any]:
        from ax.core.parameter import FixedParameter  # Ax is imported by now

        return {name: p.value for name, p in self._ax.experiment.parameters.items()
                if isinstance(p, FixedParameter)}

    def _check_point(self, point: Mapping[str, Any], where: str) -> None:
        searched = set(self._parameters) - set(self._fixed_values())
        if not searched <= set(point) <= set(self._parameters):
            raise ValueError(f"{where} must give a value for each of {sorted(searched)} and nothing else "
                             f"(fixed parameters may be left out); got {sorted(point)}.")

    @property
    def _ready(self) -> bool:
        return self._ax is not None and _has_experiment(self._ax)

    def set_search_properties(self, metric: Optional[str], mode: Optional[str], config: Dict, **spec: Any) -> bool:
        """Takes the Tuner's param space, metric and mode.  A searcher with a space or an
        experiment of its own keeps it and returns ``False``; one with a space but no mode
        takes the Tuner's metric and mode (Ray Tune's fails there)."""
        if mode is not None and mode not in ("min", "max"):
            raise ValueError(f"AxSearch takes mode 'min' or 'max', got {mode!r}.")
        if self._ready:
            return False
        took_space = self._space is None
        if took_space:
            space = self.convert_search_space(config or {})
            if not space:
                raise ValueError("AxSearch has no search space: pass space=... or put domains (uniform, randint, "
                                 "choice, ...) in the Tuner's param_space.")
            self._space = space
        if metric and (took_space or self._metric in (None, DEFAULT_METRIC)):
            self._metric = metric
        if mode and (took_space or self._mode is None):
            self._mode = mode
        if not self._mode:
            raise ValueError("AxSearch needs a mode: pass mode='min' or 'max' to AxSearch or to TuneConfig.")
        self._setup_experiment()
        return took_space

    # -- searching -----------------------------------------------------------------------
    def suggest(self, trial_id: str) -> Optional[Union[Dict, str]]:
        """The next config: the next of ``points_to_evaluate`` (attached to the experiment),
        then Ax's next trial.  ``None`` while Ax waits for results (its parallelism limit or
        too few observations); ``Searcher.FINISHED`` when its generation strategy is done."""
        if not self._ready:
            if self._space is None:
                raise RuntimeError("AxSearch has no search space: pass space=... or use it through a Tuner with "
                                   "a param_space.")
            raise RuntimeError(f"AxSearch needs a metric and a mode (got metric={self._metric!r}, "
                               f"mode={self._mode!r}); pass them to AxSearch or to TuneConfig.")
        if self._points_to_evaluate:
            point = dict(self._fixed_values(), **self._points_to_evaluate.pop(0))
            parameters, trial_index = self._ax.attach_trial(point)
        else:
            from ax.exceptions.core import DataRequiredError, OptimizationComplete
            from ax.exceptions.generation_strategy import MaxParallelismReachedException

            try:
                parameters, trial_index = self._ax.get_next_trial()
            except (MaxParallelismReachedException, DataRequiredError):
                return None
            except OptimizationComplete:
                return Searcher.FINISHED
        self._live_trial_mapping[trial_id] = trial_index
        return nested_config(plain_python(dict(parameters)))

    def on_trial_complete(self, trial_id: str, result: Optional[Dict] = None, error: bool = False) -> None:
        """Completes the trial's Ax trial with its metric (and outcome-constraint metrics).
        An errored trial or one without a result is marked failed; a NaN/inf value abandons it.

        Raises:
            RuntimeError: The result lacks a metric Ax needs.
        """
        trial_index = self._live_trial_mapping.pop(trial_id, None)
        if trial_index is None:
            return
        if error or not result:
            self._ax.log_trial_failure(trial_index=trial_index)
            return
        names = [self._metric] + [name for constraint in self._ax.experiment.optimization_config.outcome_constraints
                                  for name in _metric_names(constraint)]
        missing = [name for name in names if name not in result]
        if missing:
            self._ax.log_trial_failure(trial_index=trial_index)
            raise RuntimeError(f"AxSearch expected {missing} in the trial's last result, which has "
                               f"{sorted(result)}; report them from the trainable.")
        raw_data = {}
        for name in names:
            value = result[name]
            if not _is_real(value) or not math.isfinite(value):
                self._ax.abandon_trial(trial_index=trial_index, reason=f"{name}={value!r} reported by {trial_id}")
                return
            raw_data[name] = (float(value), None)  # no standard error: Ax infers the noise
        self._ax.complete_trial(trial_index=trial_index, raw_data=raw_data)

    # -- checkpointing -------------------------------------------------------------------
    def get_state(self) -> Dict[str, Any]:
        """The searcher's state as JSON-able data: Ax's snapshot and the bookkeeping."""
        return {
            "version": _STATE_VERSION,
            "ax_client": self._ax.to_json_snapshot() if self._ready else None,
            # AxClient seeds each generation with it, but its snapshot leaves it out.
            "random_seed": getattr(self._ax, "_random_seed", None) if self._ax is not None
            else self._ax_kwargs.get("random_seed"),
            "metric": self._metric,
            "mode": self._mode,
            "space": self._space,
            "parameter_constraints": self._parameter_constraints,
            "outcome_constraints": self._outcome_constraints,
            "points_to_evaluate": self._points_to_evaluate,
            "live_trial_mapping": self._live_trial_mapping,
        }

    def set_state(self, state: Dict[str, Any]) -> None:
        if not isinstance(state, Mapping) or state.get("version") != _STATE_VERSION:
            raise ValueError(f"Not an AxSearch state (version {_STATE_VERSION}): {str(state)[:80]!r}.")
        self._metric, self._mode = state["metric"], state["mode"]
        self._space = state["space"]
        self._parameter_constraints = state["parameter_constraints"]
        self._outcome_constraints = state["outcome_constraints"]
        self._points_to_evaluate = [dict(p) for p in state["points_to_evaluate"]]
        self._live_trial_mapping = {str(k): int(v) for k, v in state["live_trial_mapping"].items()}
        kwargs = {k: v for k, v in self._ax_kwargs.items() if k not in _SNAPSHOT_KWARGS}
        if state["ax_client"] is None:
            self._ax = None
            self._ax_kwargs["random_seed"] = state["random_seed"]
            return
        with _without_axclient_deprecation():
            self._ax = _import_ax_client().AxClient.from_json_snapshot(
                dict(state["ax_client"]), random_seed=state["random_seed"], **kwargs)
        self._parameters = list(self._ax.experiment.parameters)

    def save(self, checkpoint_path: str) -> None:
        """Writes the searcher's state (the Ax experiment included) to ``checkpoint_path`` as JSON."""
        with open(checkpoint_path, "w", encoding="utf-8") as f:
            json.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str) -> None:
        """Reads back what ``save`` wrote; the restored searcher continues the same sequence."""
        with open(checkpoint_path, encoding="utf-8") as f:
            self.set_state(json.load(f))
