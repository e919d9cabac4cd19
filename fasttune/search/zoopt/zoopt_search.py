"""``ZOOptSearch``: derivative-free optimisation by sequential randomized coordinate shrinking
(ASRacos) from the ZOOpt package (``ray.tune.search.zoopt``).

An optional extra: ``pip install "fasttune[zoopt]"``.  The ``zoopt`` module is imported
when a ``ZOOptSearch`` is built, not when this module is.

The space is a fasttune space or zoopt's native ``dim_dict`` of ``Dimension2`` entries
(``(ValueType.CONTINUOUS, [low, high], precision)``, ``(ValueType.DISCRETE, [low, high],
has_order)``, ``(ValueType.GRID, [values])``), or both mixed; nested keys become ``"a/b"``
names.  fasttune domains convert as: ``uniform`` -> continuous, ``randint`` -> ordered
discrete, ``quniform``/``qrandint`` -> the ordered multiples of ``q``, ``choice`` -> a
grid of the choice's positions (so any values can be chosen among).  The first configs
(zoopt's training sample, 4 to 22 of them depending on ``budget``) are drawn at random,
``points_to_evaluate`` among them; once all their results are in, each new config is
sampled around the best ones so far, at most ``parallel_num`` at a time.

Randomness: zoopt draws from numpy's global generator.  With ``seed=None`` (the default, as
in Ray Tune) it does so, so ``np.random.seed(...)`` makes a sweep reproducible.  With
``seed=<int>`` the searcher keeps a generator of its own and puts it in place of numpy's
global one only while zoopt runs (under a lock), then puts the caller's back untouched.

Where Ray Tune 2.60's searcher differs, it is where Ray Tune's fails or stalls: after
``budget`` configs ``suggest`` returns ``Searcher.FINISHED`` (Ray Tune's keeps suggesting);
a failed trial, or one whose metric is NaN, counts as the worst value (Ray Tune's never
completes it in zoopt, which then waits forever in its initial phase); extra keyword
arguments go to ``zoopt.Parameter`` (Ray Tune hands them to zoopt's optimiser, which
ignores them); ``choice`` accepts any values and quantized domains keep their steps;
unsupported domains and bad arguments are errors naming the key instead of assertions.

Example:
    >>> from fasttune.search import uniform, randint
    >>> from fasttune.search.zoopt import ZOOptSearch
    >>> search = ZOOptSearch(budget=10, dim_dict={"x": uniform(-1, 1), "n": randint(1, 4)},
    ...                      metric="loss", mode="min", seed=0)
    >>> config = search.suggest("t1")
    >>> sorted(config), -1 <= config["x"] <= 1, config["n"] in (1, 2, 3)
    (['n', 'x'], True, True)
    >>> search.on_trial_complete("t1", {"loss": config["x"] ** 2})
"""
from __future__ import annotations

import contextlib
import inspect
import logging
import math
import numbers
import threading
from collections.abc import Mapping
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

from fasttune._optional import import_optional
from fasttune.result import DEFAULT_METRIC
from fasttune.search._space_conversion import flat_space, holds_domain, nested_config, plain_python
from fasttune.search._searcher_args import take_metric_and_mode
from fasttune.search.sample import Categorical, Domain, Float, Integer, Quantized, Uniform
from fasttune.search.searcher import Searcher
from fasttune.search.variant_generator import is_grid_dict

logger = logging.getLogger(__name__)

__all__ = ["ZOOptSearch"]

# Ray Tune's precision for a continuous dimension: zoopt rounds every sample to it.
_CONTINUOUS_PRECISION = 1e-12
# Only one searcher at a time may put its generator in numpy's global place.
_GLOBAL_RNG_LOCK = threading.Lock()


def _import_zoopt() -> Any:
    """``zoopt``, or an ImportError that says how to install it."""
    return import_optional("zoopt", "zoopt", "ZOOptSearch")


class _Dimension:
    """One searched parameter: zoopt's ``Dimension2`` entry, and how its values map to the config's."""

    __slots__ = ("entry", "decode", "encode")

    def __init__(self, entry: Tuple, decode: Callable[[Any], Any] = plain_python,
                 encode: Callable[[Any], Any] = lambda value: value) -> None:
        self.entry = entry
        self.decode = decode  # zoopt's value -> the config's
        self.encode = encode  # a config value (a point to evaluate) -> zoopt's


def _unsupported(name: str, domain: Domain, why: str) -> ValueError:
    return ValueError(
        f"ZOOptSearch cannot search {name!r} ({type(domain).__name__} with sampler {domain.get_sampler()}): "
        f"{why}. ZOOptSearch searches uniform, quniform, randint, qrandint and choice domains, or zoopt's "
        "native (ValueType, ...) dimensions."
    )


def _steps(name: str, low: float, high: float, q: float, as_int: bool) -> _Dimension:
    """The multiples ``k * q`` in ``[low, high]`` as zoopt's ordered discrete ``k``."""
    k_low, k_high = math.ceil(low / q - 1e-9), math.floor(high / q + 1e-9)
    if k_low > k_high:
        raise ValueError(f"ZOOptSearch: {name!r} holds no multiple of q={q} between {low} and {high}.")

    def decode(k: Any) -> Any:
        value = int(k) * q
        return int(value) if as_int else float(f"{value:.12g}")  # 3 * 0.1 is 0.3

    def encode(value: Any) -> int:
        return int(round(value / q))

    return _Dimension((_zoopt_value_type().DISCRETE, [k_low, k_high], True), decode, encode)


def _zoopt_solution_type() -> Any:
    return _import_zoopt().Solution


def _zoopt_value_type() -> Any:
    return _import_zoopt().ValueType


def _convert_domain(name: str, domain: Domain) -> _Dimension:
    """zoopt's dimension for one fasttune domain (a ValueError naming ``name`` if none fits)."""
    value_type = _zoopt_value_type()
    sampler = domain.get_sampler()
    q = None
    if isinstance(sampler, Quantized):
        q, sampler = sampler.q, sampler.get_sampler()
    if isinstance(domain, Categorical):
        if domain.is_grid():
            raise _unsupported(name, domain, "a grid search is expanded by the variant generator, not sampled; "
                                             "use choice([...])")
        if isinstance(sampler, Uniform):
            categories = list(domain.categories)

            def encode(value: Any) -> int:
                for index, category in enumerate(categories):
                    if category == value:
                        return index
                raise ValueError(f"ZOOptSearch: {value!r} is not one of {name!r}'s choices {categories!r}.")

            return _Dimension((value_type.GRID, list(range(len(categories)))),
                              lambda index: categories[int(index)], encode)
    elif isinstance(sampler, Uniform) and isinstance(domain, (Float, Integer)):
        if q is not None:
            # Quantized integers include upper; quantized floats are multiples of q in [lower, upper].
            return _steps(name, domain.lower, domain.upper, q, isinstance(domain, Integer))
        if isinstance(domain, Float):
            return _Dimension((value_type.CONTINUOUS, [domain.lower, domain.upper], _CONTINUOUS_PRECISION),
                              lambda value: float(value))
        return _Dimension((value_type.DISCRETE, [domain.lower, domain.upper - 1], True), lambda value: int(value))
    raise _unsupported(name, domain, "zoopt samples uniformly within bounds (no log scale, no normal "
                                     "distribution, no functions)")


def _native_dimension(name: str, value: Any) -> _Dimension:
    """A native ``Dimension2`` entry, checked."""
    value_type = _zoopt_value_type()
    kinds = (value_type.CONTINUOUS, value_type.DISCRETE, value_type.GRID)
    if isinstance(value, (list, tuple)) and value and value[0] in kinds:
        kind, rest = value[0], tuple(value[1:])
        bounds = rest[0] if rest else None
        if kind == value_type.GRID and len(rest) == 1 and isinstance(bounds, (list, tuple)) and bounds:
            return _Dimension((kind, list(bounds)))
        if (kind != value_type.GRID and len(rest) == 2 and isinstance(bounds, (list, tuple)) and len(bounds) == 2
                and all(isinstance(b, numbers.Real) for b in bounds) and bounds[0] <= bounds[1]):
            if kind == value_type.CONTINUOUS and not (isinstance(rest[1], numbers.Real) and rest[1] > 0):
                raise ValueError(f"ZOOptSearch: the precision of {name!r} must be a number > 0, got {rest[1]!r}.")
            return _Dimension((kind, list(bounds), rest[1]))
    raise ValueError(
        f"ZOOptSearch's dim_dict entry {name!r} must be a fasttune domain or zoopt's (ValueType.CONTINUOUS, "
        "[low, high], precision), (ValueType.DISCRETE, [low, high], has_order) or (ValueType.GRID, [values]); "
        f"got {value!r}."
    )


def _to_dimensions(space: Mapping, what: str) -> Dict[str, _Dimension]:
    """A fasttune space, a native ``dim_dict`` or a mix of both, by ``"a/b"`` names."""
    if not isinstance(space, Mapping):
        raise TypeError(f"ZOOptSearch's {what} must be a dict, got {type(space).__name__}.")
    dimensions: Dict[str, _Dimension] = {}
    for name, value in flat_space(space).items():
        if isinstance(value, Mapping) and is_grid_dict(value):
            raise ValueError(f"ZOOptSearch cannot convert the grid search at {name!r}: a grid search is expanded "
                             "by the variant generator, not sampled; use choice([...]).")
        dimensions[name] = _convert_domain(name, value) if isinstance(value, Domain) else _native_dimension(name, value)
    return dimensions


class ZOOptSearch(Searcher):
    """Suggests configs with ZOOpt's ASRacos, a derivative-free optimiser.

    Args:
        algo: ``"asracos"`` or ``"sracos"`` (any case; both are zoopt's sequential Racos for
            Tune).
        budget: How many configs to suggest (at least 3); ``suggest`` returns
            ``Searcher.FINISHED`` after that.  It also sizes zoopt's initial random sample.
        dim_dict: A fasttune space or zoopt's ``Dimension2`` entries by name (``"a/b"``
            names nest).  ``None``: the Tuner's ``param_space`` is converted.
        metric: The result key to optimise (``None``: the Tuner's; ``"_metric"`` when only
            a mode is given).
        mode: ``"min"`` or ``"max"`` (``None``: the Tuner's).
        points_to_evaluate: Configs to try first; they take places in zoopt's initial
            sample, so at most that many are used (a warning names the rest).
        parallel_num: How many configs may be out at once after the initial sample.
        **kwargs: ``seed`` (an int: the searcher's own generator, see the module's
            docstring) and arguments of ``zoopt.Parameter`` (e.g. ``exploration_rate``,
            ``uncertain_bits``).

    Raises:
        ImportError: zoopt is not installed.
        ValueError: A domain zoopt cannot search (``loguniform``, ``randn``,
            ``grid_search``, ...), named by its key, or a bad argument.

    Example:
        >>> from zoopt import ValueType
        >>> from fasttune.search.zoopt import ZOOptSearch
        >>> search = ZOOptSearch(budget=10, metric="score", mode="max", seed=1,
        ...                      dim_dict={"net/width": (ValueType.DISCRETE, [1, 8], True),
        ...                                "act": (ValueType.GRID, ["relu", "tanh"])},
        ...                      points_to_evaluate=[{"net": {"width": 4}, "act": "tanh"}])
        >>> search.suggest("a")
        {'net': {'width': 4}, 'act': 'tanh'}
    """

    # zoopt's SRacosTune: None until the space is known.
    optimizer: Any = None

    def __init__(
        self,
        algo: str = "asracos",
        budget: Optional[int] = None,
        dim_dict: Optional[Dict] = None,
        metric: Optional[str] = None,
        mode: Optional[str] = None,
        points_to_evaluate: Optional[List[Dict]] = None,
        parallel_num: int = 1,
        **kwargs: Any,
    ) -> None:
        zoopt = _import_zoopt()
        if not isinstance(algo, str) or algo.lower() not in ("asracos", "sracos"):
            raise ValueError(f"ZOOptSearch's algo must be 'asracos' or 'sracos', got {algo!r}.")
        if budget is None:
            raise ValueError("ZOOptSearch needs a budget: the number of configs to suggest (set it to the "
                             "TuneConfig's num_samples).")
        for name, value, least in (("budget", budget, 3), ("parallel_num", parallel_num, 1)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"ZOOptSearch's {name} must be an int, got {value!r}.")
            if value < least:
                # zoopt exits the interpreter on a budget below 3.
                raise ValueError(f"ZOOptSearch's {name} must be >= {least}, got {value!r}.")
        if mode is not None and mode not in ("min", "max"):
            raise ValueError(f"ZOOptSearch takes mode 'min' or 'max', got {mode!r}.")
        if metric is not None and not isinstance(metric, str):
            raise TypeError(f"ZOOptSearch optimises one metric (a str), got {metric!r}.")
        if points_to_evaluate is not None and (
            not isinstance(points_to_evaluate, (list, tuple))
            or not all(isinstance(p, Mapping) for p in points_to_evaluate)
        ):
            raise TypeError(f"points_to_evaluate must be a list of config dicts, got {points_to_evaluate!r}.")
        seed = kwargs.pop("seed", None)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
            raise TypeError(f"ZOOptSearch's seed must be an int or None, got {seed!r}.")
        accepted = set(inspect.signature(zoopt.Parameter).parameters) - {"budget", "init_samples", "server_num"}
        unknown = sorted(set(kwargs) - accepted)
        if unknown:
            raise TypeError(f"ZOOptSearch got unexpected keyword arguments {unknown}; it takes seed and the "
                            f"arguments of zoopt.Parameter: {sorted(accepted)}.")
        super().__init__(metric=metric, mode=mode)
        self._algo = algo.lower()
        self._budget = int(budget)
        self.parallel_num = int(parallel_num)
        self.kwargs = kwargs
        self._points_to_evaluate = [flat_space(p) for p in points_to_evaluate or []]
        # The searcher's own numpy generator state (None: numpy's global generator is used).
        self._rng_state: Any = np.random.RandomState(int(seed)).get_state() if seed is not None else None
        self._float_precisions: List[Any] = []  # zoopt keeps its space's roundings in a global
        self._dimensions: Dict[str, _Dimension] = {}
        self._live_solutions: Dict[str, Any] = {}  # trial_id -> zoopt Solution
        self._num_suggested = 0
        self._finished = False
        self._initial_sample: Optional[List[Any]] = None  # zoopt's, drawn on the first suggest
        self.best_solution_list: List[Any] = []
        self.optimizer = None
        if dim_dict:
            self._dimensions = _to_dimensions(dim_dict, "dim_dict")
            self._setup_zoopt()

    # -- setup ---------------------------------------------------------------------------
    @staticmethod
    def convert_search_space(spec: Dict, join: bool = False) -> Dict[str, Tuple]:
        """zoopt's ``Dimension2`` entries for ``spec``'s domains, by their ``"a/b"`` names, as Ray
        Tune's ``convert_search_space``; ``join=True`` keeps ``spec``'s constants too (flattened).
        A ``choice`` becomes a grid of its values here (ZOOptSearch itself searches their
        positions).

        Example:
            >>> from fasttune.search import uniform, randint, choice
            >>> from fasttune.search.zoopt import ZOOptSearch  # ValueType: DISCRETE 0, CONTINUOUS 1, GRID 2
            >>> ZOOptSearch.convert_search_space({"opt": {"lr": uniform(0, 1)}, "n": randint(1, 5),
            ...                                   "act": choice(["relu", "tanh"]), "epochs": 3})
            {'opt/lr': (1, [0.0, 1.0], 1e-12), 'n': (0, [1, 4], True), 'act': (2, ['relu', 'tanh'])}
        """
        flat = flat_space(spec)
        searched = {k: v for k, v in flat.items() if holds_domain(v)}
        converted: Dict[str, Tuple] = {}
        for name, dimension in _to_dimensions(searched, "search space").items():
            entry = dimension.entry
            if entry[0] == _zoopt_value_type().GRID and isinstance(searched[name], Domain):
                entry = (entry[0], [dimension.decode(i) for i in entry[1]])
            converted[name] = entry
        if join:
            flat.update(converted)
            return flat
        return converted

    def _setup_zoopt(self) -> None:
        zoopt = _import_zoopt()
        from zoopt.algos.opt_algorithms.racos.sracos import SRacosTune

        if self._metric is None and self._mode:
            self._metric = DEFAULT_METRIC  # only a mode: the anonymous metric, as Ray Tune
        names = list(self._dimensions)
        init_samples = None
        if self._points_to_evaluate:
            init_samples = [zoopt.Solution(x=self._encode_point(point, f"points_to_evaluate[{index}]"))
                            for index, point in enumerate(self._points_to_evaluate)]
        with self._zoopt_globals():
            dimension = zoopt.Dimension2([self._dimensions[name].entry for name in names])
            self._float_precisions = list(zoopt.utils.zoo_global.gl.float_precisions)
        parameter = zoopt.Parameter(budget=self._budget, init_samples=init_samples, **self.kwargs)
        train_size = parameter.get_train_size()
        if len(self._points_to_evaluate) > train_size:
            logger.warning("ZOOptSearch evaluates at most %d points_to_evaluate (zoopt's initial sample for "
                           "budget=%d); the last %d are left out.", train_size, self._budget,
                           len(self._points_to_evaluate) - train_size)
        self.optimizer = SRacosTune(dimension=dimension, parameter=parameter, parallel_num=self.parallel_num)

    def _encode_point(self, point: Mapping[str, Any], where: str) -> List[Any]:
        if set(point) != set(self._dimensions):
            raise ValueError(f"{where} must give a value for each of {sorted(self._dimensions)} and nothing "
                             f"else; got {sorted(point)}.")
        return [self._dimensions[name].encode(point[name]) for name in self._dimensions]

    @contextlib.contextmanager
    def _zoopt_globals(self) -> Iterator[None]:
        """Puts this searcher's roundings (and its generator, when seeded) where zoopt reads
        them, and the caller's back afterwards."""
        from zoopt.utils.zoo_global import gl

        with _GLOBAL_RNG_LOCK:
            callers_precisions = gl.float_precisions
            gl.float_precisions = self._float_precisions
            callers_state = np.random.get_state() if self._rng_state is not None else None
            if callers_state is not None:
                np.random.set_state(self._rng_state)
            try:
                yield
            finally:
                if callers_state is not None:
                    self._rng_state = np.random.get_state()
                    np.random.set_state(callers_state)
                gl.float_precisions = callers_precisions

    def set_search_properties(self, metric: Optional[str], mode: Optional[str], config: Dict, **spec: Any) -> bool:
        """Takes the Tuner's param space, metric and mode.  A searcher with a space of its own
        keeps it and returns ``False``; it still takes the metric and mode it lacks (Ray Tune's
        leaves them unset)."""
        if mode is not None and mode not in ("min", "max"):
            raise ValueError(f"ZOOptSearch takes mode 'min' or 'max', got {mode!r}.")
        if self.optimizer is not None:
            take_metric_and_mode(self, metric, mode)
            return False
        flat = flat_space(config or {})
        dimensions = _to_dimensions({k: v for k, v in flat.items() if holds_domain(v)}, "search space")
        if not dimensions:
            raise ValueError("ZOOptSearch has no search space: pass dim_dict=... or put domains in the Tuner's "
                             "param_space.")
        self._dimensions = dimensions
        if metric:
            self._metric = metric
        if mode:
            self._mode = mode
        self._setup_zoopt()
        return True

    @property
    def _metric_op(self) -> float:
        return -1.0 if self._mode == "max" else 1.0  # zoopt minimises

    # -- searching -----------------------------------------------------------------------
    def suggest(self, trial_id: str) -> Optional[Dict]:
        """The next config; ``None`` while zoopt waits for results (the end of its initial
        sample, or ``parallel_num`` configs out); ``Searcher.FINISHED`` after ``budget``
        configs or when zoopt finds no new config to try."""
        if self.optimizer is None:
            raise RuntimeError("ZOOptSearch has no search space: pass dim_dict=... or use it through a Tuner "
                               "with a param_space.")
        if not self._metric or not self._mode:
            raise RuntimeError(f"ZOOptSearch needs a metric and a mode (got metric={self._metric!r}, "
                               f"mode={self._mode!r}); pass them to ZOOptSearch or to TuneConfig.")
        if self._finished or self._num_suggested >= self._budget:
            return Searcher.FINISHED
        if self._initial_sample is None:
            self._initial_sample = self._draw_initial_sample()
        if self._initial_sample:
            solution = self._initial_sample.pop(0)
        elif self.optimizer.init_num <= self.optimizer.get_parameters().get_train_size():
            # zoopt could not draw its whole initial sample (a small finite space): it would
            # wait for results that never come.
            self._finished = True
            return Searcher.FINISHED
        else:
            live_before = self.optimizer.live_num
            with self._zoopt_globals():
                solution = self.optimizer.suggest()
            if solution is None and self.optimizer.live_num > live_before:
                # zoopt found its finite space fully explored, and counted a config it never made.
                self.optimizer.live_num = live_before
                solution = "FINISHED"
        if isinstance(solution, str) and solution == "FINISHED":
            # zoopt found no config unlike those tried: the search is over (a later call could
            # draw again, but a finished search stays finished).
            self._finished = True
            return Searcher.FINISHED
        if solution is None:
            return None
        self._num_suggested += 1
        self._live_solutions[trial_id] = solution
        values = solution.get_x()
        return nested_config({name: dimension.decode(value)
                           for (name, dimension), value in zip(self._dimensions.items(), values)})

    def _draw_initial_sample(self) -> List[Any]:
        """zoopt's whole initial sample (``points_to_evaluate`` first), drawn at once as Ray
        Tune's trials take it: zoopt stops taking points to evaluate once a result is in,
        and closes its initial phase on the suggest after it (reopening when its last result
        comes in), so one trial at a time would lose points or wait forever."""
        drawn: List[Any] = []
        with self._zoopt_globals():
            for _ in range(self.optimizer.get_parameters().get_train_size()):
                live_before = self.optimizer.live_num
                solution = self.optimizer.suggest()
                if not isinstance(solution, _zoopt_solution_type()):
                    self.optimizer.live_num = live_before  # the space holds no more distinct configs
                    return drawn
                drawn.append(solution)
            self.optimizer.suggest()  # closes the initial phase: returns no config
        return drawn

    def on_trial_complete(self, trial_id: str, result: Optional[Dict] = None, error: bool = False) -> None:
        """Gives the trial's metric to zoopt.  A failed trial, one without a result and a NaN
        value count as the worst value (zoopt waits for every config it suggested).

        Raises:
            RuntimeError: The result lacks the metric.
        """
        solution = self._live_solutions.pop(trial_id, None)
        if solution is None:
            return
        value = math.inf
        if result is not None and not error:
            if self._metric not in result:
                self._live_solutions[trial_id] = solution  # still live: the caller may complete it again
                raise RuntimeError(f"ZOOptSearch expected the metric {self._metric!r} in the trial's last "
                                   f"result, which has {sorted(result)}; report it from the trainable.")
            metric = result[self._metric]
            if isinstance(metric, numbers.Real) and not math.isnan(metric):
                value = self._metric_op * float(metric)
        with self._zoopt_globals():
            best = self.optimizer.complete(solution, value)
        if best:
            self.best_solution_list.append(best)

    # -- checkpointing -------------------------------------------------------------------
    def get_state(self) -> Dict[str, Any]:
        """Everything needed to continue the same sequence of suggestions (``save`` writes it,
        the library's objects cloudpickled)."""
        return dict(self.__dict__)

    def set_state(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
