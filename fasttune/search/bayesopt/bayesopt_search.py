"""``BayesOptSearch``: Gaussian-process Bayesian optimisation from the bayesian-optimization
package (``ray.tune.search.bayesopt``).

An optional extra: ``pip install "fasttune[bayesopt]"``.  The ``bayes_opt`` module is
imported when a ``BayesOptSearch`` is built, not when this module is.

The search space is continuous: a fasttune space of ``uniform`` and ``loguniform``
floats (nested keys become ``"a/b"`` names; like Ray Tune, a log scale or a
quantization is dropped with a warning, the bounds kept), or the library's native
bounds dict ``{"name": (low, high)}``.  The first ``random_search_steps`` configs are
drawn at random and their results are held back until all of them are in (so the
Gaussian process does not fit to one early point); after that every result is
registered at once and each suggestion maximises the acquisition function.

Where Ray Tune 2.60's searcher differs, it is where Ray Tune's fails or depends on timing:
while the random phase waits for its results, ``suggest`` returns ``None`` without
drawing (Ray Tune draws a config and drops it); a config run twice
(``skip_duplicate=False``) keeps its first value (bayes_opt refuses a point twice, and
Ray Tune's raises); points are matched to the space by name (nested or ``"a/b"``), and
an ``analysis`` by trial id; a searcher with a space of its own takes the metric and
mode it lacks from ``TuneConfig``; ``randn`` and constants in ``space`` are refused
with an error naming the key (Ray Tune hands them to bayes_opt, which fails).

Example:
    >>> from fasttune.search import uniform
    >>> from fasttune.search.bayesopt import BayesOptSearch
    >>> search = BayesOptSearch({"x": uniform(-1, 1)}, metric="loss", mode="min",
    ...                         random_state=0, random_search_steps=2)
    >>> config = search.suggest("t1")
    >>> sorted(config), -1 <= config["x"] <= 1
    (['x'], True)
    >>> search.on_trial_complete("t1", {"loss": config["x"] ** 2})
"""
from __future__ import annotations

import json
import logging
import math
import numbers
import pickle
from collections import defaultdict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from fasttune._optional import import_optional
from fasttune.result import DEFAULT_METRIC
from fasttune.search._searcher_args import check_metric_and_mode, check_points_to_evaluate, take_metric_and_mode
from fasttune.search._space_conversion import flat_space, holds_domain, nested_config, path_label, plain_python
from fasttune.search.sample import Domain, Float, Normal, Quantized, Uniform
from fasttune.search.searcher import Searcher
from fasttune.search.variant_generator import is_grid_dict

if TYPE_CHECKING:  # pragma: no cover
    from fasttune.analysis import ExperimentAnalysis

logger = logging.getLogger(__name__)

__all__ = ["BayesOptSearch"]

Bounds = Dict[str, Tuple[float, float]]


def _import_bayes_opt() -> Any:
    """``bayes_opt``, or an ImportError that says how to install it."""
    return import_optional("bayes_opt", "bayesopt", "BayesOptSearch", package="bayesian-optimization")


def _config_key(flat_config: Mapping[str, Any], precision: int) -> str:
    """The config as a string in which floats equal to ``precision`` decimals are equal
    (how repeated suggestions are recognised)."""
    rounded = {k: f"{v:.{precision}f}" if isinstance(v, float) else v for k, v in flat_config.items()}
    return json.dumps(rounded, sort_keys=True, default=str)


def _domain_bounds(name: str, domain: Domain) -> Tuple[float, float]:
    """The ``(lower, upper)`` bounds bayes_opt searches for ``domain``."""
    sampler = domain.get_sampler()
    if isinstance(sampler, Quantized):
        logger.warning("BayesOptSearch does not support quantization; %r is searched without it.", name)
        sampler = sampler.get_sampler()
    if isinstance(domain, Float) and not isinstance(sampler, Normal) and not domain.is_grid():
        if not isinstance(sampler, Uniform):
            logger.warning("BayesOptSearch searches %r uniformly between its bounds; its %s sampler "
                           "is dropped.", name, sampler)
        return float(domain.lower), float(domain.upper)
    why = ("it samples an unbounded normal distribution" if isinstance(sampler, Normal)
           else "it is not a float range")
    raise ValueError(
        f"BayesOptSearch cannot search {name!r} ({type(domain).__name__} with sampler {sampler}): {why}. "
        "BayesOptSearch searches continuous float ranges only: use uniform or loguniform, or another "
        "searcher (e.g. OptunaSearch) for integers and choices."
    )


def _bounds_pair(name: str, value: Any) -> Tuple[float, float]:
    """A native bayes_opt bound ``(low, high)``, checked."""
    if (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value)
            and value[0] <= value[1]):
        return float(value[0]), float(value[1])
    raise ValueError(
        f"BayesOptSearch's space entry {name!r} must be a (low, high) pair of numbers with low <= high "
        f"or a uniform/loguniform domain, got {value!r}."
    )


def _to_bounds(space: Mapping, what: str) -> Bounds:
    """A fasttune space or native bounds dict as bayes_opt's flat ``pbounds``."""
    if not isinstance(space, Mapping):
        raise TypeError(f"BayesOptSearch's {what} must be a dict, got {type(space).__name__}.")
    bounds: Bounds = {}
    for name, value in flat_space(space).items():
        if isinstance(value, Mapping) and is_grid_dict(value):
            raise ValueError(
                f"BayesOptSearch cannot convert the grid search at {name!r}: Bayesian optimisation "
                "samples a continuous range; use uniform(low, high) instead."
            )
        bounds[name] = _domain_bounds(name, value) if isinstance(value, Domain) else _bounds_pair(name, value)
    return bounds


class BayesOptSearch(Searcher):
    """Suggests configs by Bayesian optimisation with a Gaussian process (bayesian-optimization).

    Args:
        space: A fasttune space of ``uniform``/``loguniform`` floats, or bayes_opt's bounds
            dict ``{"name": (low, high)}`` (``"a/b"`` names nest).  ``None``: the Tuner's
            ``param_space`` is converted (its constants stay in the configs).
        metric: The result key to optimise (``None``: the Tuner's; ``"_metric"`` when only
            a mode is given).
        mode: ``"min"`` or ``"max"`` (``None``: the Tuner's).
        points_to_evaluate: Configs to try first, in order (they count towards
            ``random_search_steps``).
        utility_kwargs: Arguments of ``bayes_opt.UtilityFunction`` (the acquisition
            function); default ``{"kind": "ucb", "kappa": 2.576, "xi": 0.0}``.
        random_state: Seed of the optimiser.
        random_search_steps: How many configs are drawn at random (and their results
            held back) before the Gaussian process is fitted.
        verbose: bayes_opt's verbosity.
        patience: When any config has been suggested more than this many times, the
            search has converged: ``suggest`` returns ``Searcher.FINISHED``.
        skip_duplicate: Skip (``suggest`` returns ``None``) a config suggested before
            instead of running it again.
        analysis: An ``ExperimentAnalysis`` of earlier trials to register first.
        repeat_float_precision: Decimals to which floats must agree for two configs to be
            the same config.

    Raises:
        ImportError: bayesian-optimization is not installed.
        ValueError: A domain that is not a float range (``choice``, ``randint``,
            ``randn``, ``grid_search``, ...), or a bad argument.

    Example:
        >>> from fasttune.search.bayesopt import BayesOptSearch
        >>> search = BayesOptSearch({"width": (0, 20), "net/height": (-100, 100)},
        ...                         metric="score", mode="max", points_to_evaluate=[{"width": 1, "net/height": 2}])
        >>> search.suggest("a")
        {'width': 1, 'net': {'height': 2}}
    """

    # The bayes_opt.BayesianOptimization searched: None until the space is known.
    optimizer: Any = None

    def __init__(
        self,
        space: Optional[Dict] = None,
        metric: Optional[str] = None,
        mode: Optional[str] = None,
        points_to_evaluate: Optional[List[Dict]] = None,
        utility_kwargs: Optional[Dict] = None,
        random_state: int = 42,
        random_search_steps: int = 10,
        verbose: int = 0,
        patience: int = 5,
        skip_duplicate: bool = True,
        analysis: Optional["ExperimentAnalysis"] = None,
        repeat_float_precision: int = 5,
    ) -> None:
        byo = _import_bayes_opt()
        check_metric_and_mode("BayesOptSearch", metric, mode)
        super().__init__(metric=metric, mode=mode)
        for name, value, least in (("patience", patience, 1), ("random_search_steps", random_search_steps, 0),
                                   ("repeat_float_precision", repeat_float_precision, 0)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"{name} must be an int, got {value!r}.")
            if value < least:
                raise ValueError(f"{name} must be >= {least}, got {value!r}.")
        check_points_to_evaluate(points_to_evaluate)
        if utility_kwargs is None:
            utility_kwargs = {"kind": "ucb", "kappa": 2.576, "xi": 0.0}  # Ray Tune's (bayes_opt's) defaults
        self._patience = int(patience)
        self._skip_duplicate = bool(skip_duplicate)
        self.repeat_float_precision = int(repeat_float_precision)
        self.random_search_trials = int(random_search_steps)
        self._verbose = verbose
        self._random_state = random_state
        self._analysis = analysis
        self.utility = byo.UtilityFunction(**utility_kwargs)
        self._points_to_evaluate: List[Dict[str, Any]] = [flat_space(p) for p in points_to_evaluate or []]
        self._config_counter: Dict[str, int] = defaultdict(int)
        self._live_trial_mapping: Dict[str, Dict[str, float]] = {}  # trial_id -> flat config
        self._buffered_trial_results: List[Tuple[Dict[str, float], Dict]] = []
        self._total_random_search_trials = 0
        self._warned_duplicate = self._warned_converged = False
        self._space: Optional[Bounds] = None
        self.optimizer = None
        if space:
            self._space = _to_bounds(space, "space")
            self._setup_optimizer()

    # -- setup ---------------------------------------------------------------------------
    @staticmethod
    def convert_search_space(spec: Dict, join: bool = False) -> Dict:
        """bayes_opt's ``pbounds`` for ``spec``'s domains, by their ``"a/b"`` names, as Ray Tune's
        ``convert_search_space``; ``join=True`` keeps ``spec``'s constants too (flattened).

        Example:
            >>> from fasttune.search import uniform
            >>> from fasttune.search.bayesopt import BayesOptSearch
            >>> BayesOptSearch.convert_search_space({"opt": {"lr": uniform(0, 1)}, "epochs": 3})
            {'opt/lr': (0.0, 1.0)}
        """
        flat = flat_space(spec)
        bounds = _to_bounds({k: v for k, v in flat.items() if holds_domain(v)}, "search space")
        if join:
            flat.update(bounds)
            return flat
        return bounds

    def _setup_optimizer(self) -> None:
        if self._metric is None and self._mode:
            self._metric = DEFAULT_METRIC  # only a mode: the anonymous metric, as Ray Tune
        for index, point in enumerate(self._points_to_evaluate):
            self._check_point(point, f"points_to_evaluate[{index}]")
        self.optimizer = _import_bayes_opt().BayesianOptimization(
            f=None, pbounds=self._space, verbose=self._verbose, random_state=self._random_state)
        if self._analysis is not None:
            self.register_analysis(self._analysis)

    def _check_point(self, point: Mapping[str, Any], where: str) -> None:
        if set(point) != set(self._space):
            raise ValueError(f"{where} must give a value for each of {sorted(self._space)} and nothing else; "
                             f"got {sorted(point)}.")
        for name, value in point.items():
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"{where}: {name!r} must be a number, got {value!r}.")

    def set_search_properties(self, metric: Optional[str], mode: Optional[str], config: Dict, **spec: Any) -> bool:
        """Takes the Tuner's param space, metric and mode.  A searcher with a space of its own
        keeps it and returns ``False``; it still takes the metric and mode it lacks (Ray Tune's
        leaves them unset)."""
        check_metric_and_mode("BayesOptSearch", metric, mode)
        if self.optimizer is not None:
            take_metric_and_mode(self, metric, mode)
            return False
        space = self.convert_search_space(config or {})
        if not space:
            raise ValueError("BayesOptSearch has no search space: pass space=... or put uniform/loguniform "
                             "domains in the Tuner's param_space.")
        self._space = space
        if metric:
            self._metric = metric
        if mode:
            self._mode = mode
        self._setup_optimizer()
        return True

    @property
    def _metric_op(self) -> float:
        return 1.0 if self._mode == "max" else -1.0  # bayes_opt maximises

    # -- searching -----------------------------------------------------------------------
    def suggest(self, trial_id: str) -> Optional[Dict]:
        """The next config: the next of ``points_to_evaluate``, then a random one for the first
        ``random_search_steps``, then the acquisition function's maximum.  ``None`` while the
        random phase's results are awaited or for a skipped duplicate; ``Searcher.FINISHED``
        once a config has repeated more than ``patience`` times."""
        if self.optimizer is None:
            raise RuntimeError("BayesOptSearch has no search space: pass space=... or use it through a "
                               "Tuner with a param_space.")
        if not self._metric or not self._mode:
            raise RuntimeError(f"BayesOptSearch needs a metric and a mode (got metric={self._metric!r}, "
                               f"mode={self._mode!r}); pass them to BayesOptSearch or to TuneConfig.")
        in_random_phase = len(self._buffered_trial_results) < self.random_search_trials
        if in_random_phase and self._total_random_search_trials == self.random_search_trials:
            # Every random config is out; wait for their results. Checked before drawing (Ray
            # Tune draws and discards one here), so the sequence does not depend on how often
            # the engine asks while it waits.
            return None
        if self._points_to_evaluate:
            config = self._points_to_evaluate.pop(0)
        else:
            config = plain_python(self.optimizer.suggest(self.utility))
        key = _config_key(config, self.repeat_float_precision)
        seen = key in self._config_counter
        self._config_counter[key] += 1
        if self._config_counter[key] > self._patience:
            if not self._warned_converged:
                logger.warning("BayesOptSearch stops: a config was suggested more than patience=%d times, so "
                               "the search has converged. Raise patience, set skip_duplicate=False or widen "
                               "the space to search on.", self._patience)
                self._warned_converged = True
            return Searcher.FINISHED
        if seen and self._skip_duplicate:
            if not self._warned_duplicate:
                logger.warning("BayesOptSearch is suggesting configs it suggested before (the Gaussian process "
                               "has probably converged) and skips them; after patience=%d repeats of one it "
                               "stops.", self._patience)
                self._warned_duplicate = True
            logger.info("BayesOptSearch skips the repeated config %s.", config)
            return None
        if in_random_phase:
            self._total_random_search_trials += 1
        self._live_trial_mapping[trial_id] = config
        return nested_config(config)

    def on_trial_complete(self, trial_id: str, result: Optional[Dict] = None, error: bool = False) -> None:
        """Registers the trial's metric with the optimiser (held back during the random phase);
        errored trials, trials without a result and NaN/inf values are left out.

        Raises:
            RuntimeError: The result lacks the metric.
        """
        params = self._live_trial_mapping.pop(trial_id, None)
        if result is None or params is None or error:
            return
        if self._metric not in result:
            raise RuntimeError(f"BayesOptSearch expected the metric {self._metric!r} in the trial's last result, "
                               f"which has {sorted(result)}; report it from the trainable.")
        if len(self._buffered_trial_results) >= self.random_search_trials:
            self._register_result(params, result)
            return
        self._buffered_trial_results.append((params, result))
        if len(self._buffered_trial_results) == self.random_search_trials:
            for buffered_params, buffered_result in self._buffered_trial_results:
                self._register_result(buffered_params, buffered_result)

    def _register_result(self, params: Mapping[str, float], result: Mapping) -> None:
        value = result[self._metric]
        if not isinstance(value, numbers.Real) or not math.isfinite(value):
            return
        target = self._metric_op * float(value)
        point = {name: float(params[name]) for name in self._space}
        if self.optimizer.space.params_to_array(point) in self.optimizer.space:
            # bayes_opt refuses a point twice (skip_duplicate=False re-runs one); the first
            # value stays.
            logger.info("BayesOptSearch: %s was registered already; keeping the first value.", point)
            return
        self.optimizer.register(point, target)

    def register_analysis(self, analysis: "ExperimentAnalysis") -> None:
        """Registers the trials of an earlier experiment (each trial's best result) with the optimiser."""
        rows = analysis.dataframe(metric=self._metric, mode=self._mode)
        configs = analysis.get_all_configs()
        for _, row in rows.iterrows():
            # Matched by trial id: the frame leaves out trials without results.
            flat = flat_space(configs.get(row.get("trial_id"), {}))
            if all(name in flat for name in self._space) and self._metric in row:
                self._register_result(flat, row)

    # -- checkpointing -------------------------------------------------------------------
    def get_state(self) -> Dict[str, Any]:
        """Everything needed to continue the same sequence of suggestions."""
        state = dict(self.__dict__)
        state["_config_counter"] = dict(self._config_counter)
        state["_analysis"] = None  # registered already; an analysis need not pickle
        return state

    def set_state(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._config_counter = defaultdict(int, state["_config_counter"])

    def save(self, checkpoint_path: str) -> None:
        """Writes the searcher's state (optimiser included) to ``checkpoint_path``."""
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str) -> None:
        """Reads back what ``save`` wrote."""
        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))
