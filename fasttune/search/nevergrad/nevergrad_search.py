"""``NevergradSearch``: gradient-free optimisers from Nevergrad (``ray.tune.search.nevergrad``).

An optional extra: ``pip install "fasttune[nevergrad]"``.  The ``nevergrad``
package is imported when a ``NevergradSearch`` is built, not when this module is.

A fasttune search space becomes a nested ``ng.p.Dict``: ``uniform`` ->
``ng.p.Scalar``, ``loguniform`` -> ``ng.p.Log``, ``randint``/``lograndint`` ->
integer-cast ``Scalar``/``Log`` over ``[lower, upper - 1]``, ``randn`` -> an
unbounded ``Scalar`` (init ``mean``, mutation step ``sd``), ``choice`` ->
``ng.p.Choice`` (categories may hold nested spaces), lists -> ``ng.p.Tuple``.
Nevergrad has no quantization, so ``q`` domains are searched continuously and
the suggested value is rounded to a multiple of ``q`` (Ray drops ``q``).
Each ``suggest`` is one ``ask``; a finished trial is told its metric
(negated for ``mode="max"``: Nevergrad minimises).  An optimiser that needs a
tell after every ask (``Cobyla``; ``NGOpt`` with a small budget and one worker)
gets one trial at a time: ``suggest`` says "not now" (``None``) while one is
live, where a second ``ask`` would block forever inside Nevergrad.  A failure
inside Nevergrad's ``ask``/``tell`` is a ``RuntimeError`` naming the optimiser.

Example:
    >>> import nevergrad as ng
    >>> from fasttune.search import uniform, randint
    >>> from fasttune.search.nevergrad import NevergradSearch
    >>> search = NevergradSearch(ng.optimizers.OnePlusOne, space={"x": uniform(-1, 1), "n": randint(1, 4)},
    ...                          metric="loss", mode="min", points_to_evaluate=[{"x": 0.5, "n": 2}])
    >>> search.suggest("t1")
    {'x': 0.5, 'n': 2}
    >>> search.on_trial_complete("t1", {"loss": 0.25})
"""
from __future__ import annotations

import copy
import functools
import inspect
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from fasttune._optional import import_optional
from fasttune.search._space_conversion import holds_domain, path_label, plain_python, unsupported_domain
from fasttune.search.sample import (
    Categorical,
    Domain,
    Float,
    Function,
    Integer,
    LogUniform,
    Normal,
    Quantized,
    Uniform,
    decimal_places,
)
from fasttune.search.searcher import Searcher
from fasttune.search.variant_generator import is_grid_dict

logger = logging.getLogger(__name__)

# Which searcher cannot express a domain, and what to pass instead.
_unsupported = functools.partial(unsupported_domain, "NevergradSearch", "a native Nevergrad parametrization")

__all__ = ["NevergradSearch"]


def _import_nevergrad() -> Any:
    """The ``nevergrad`` module, or an ``ImportError`` that says how to install it."""
    return import_optional("nevergrad", "nevergrad", "NevergradSearch")


class _Round:
    """Rounds to a multiple of ``q`` inside ``[lower, upper]`` (bounds are multiples of q); picklable."""

    def __init__(self, q: float, lower: float, upper: float, as_int: bool) -> None:
        self.q, self.lower, self.upper, self.as_int = q, lower, upper, as_int
        self.decimals = None if as_int else decimal_places(q)

    def __call__(self, value: Any) -> Any:
        rounded = round(float(value) / self.q) * self.q
        if self.decimals is not None:
            rounded = round(rounded, self.decimals)
        rounded = min(max(rounded, self.lower), self.upper)
        return int(round(rounded)) if self.as_int else float(rounded)


class _Converted:
    """One converted domain: its Nevergrad parameter, and how to post-process its value."""

    def __init__(self, param: Any, post: Optional[Callable[[Any], Any]] = None) -> None:
        self.param = param
        self.post = post


def _convert_domain(ng: Any, path: Tuple, domain: Domain) -> Any:
    """The Nevergrad parameter (or constant) that searches ``domain``; see ``_Converted``."""
    if isinstance(domain, Function):
        raise _unsupported(path, domain, "sample_from functions cannot be expressed in Nevergrad")
    if domain.is_grid():
        raise _unsupported(path, domain, "grid searches cannot be expressed in Nevergrad; use choice([...])")
    sampler = domain.get_sampler()
    q = sampler.q if isinstance(sampler, Quantized) else None
    base = sampler.get_sampler() if isinstance(sampler, Quantized) else sampler

    if isinstance(domain, Float):
        post = _Round(float(q), domain.lower, domain.upper, False) if q else None
        if isinstance(base, Normal):
            return _Converted(ng.p.Scalar(init=base.mean).set_mutation(sigma=base.sd), post)
        if domain.lower == domain.upper:
            return float(domain.lower)
        if isinstance(base, LogUniform):
            return _Converted(ng.p.Log(lower=domain.lower, upper=domain.upper), post)
        if isinstance(base, Uniform):
            return _Converted(ng.p.Scalar(lower=domain.lower, upper=domain.upper), post)
    elif isinstance(domain, Integer):
        if q is not None:
            # Quantized integer domains include upper: every multiple of q in [lower, upper].
            q_int = int(q)
            low_k, high_k = domain._grid_bounds(q_int)
            low, high = low_k * q_int, high_k * q_int
            if low == high:
                return int(low)
            post = _Round(q_int, low, high, True)
        else:
            # Plain integer domains exclude upper.
            low, high, post = domain.lower, domain.upper - 1, None
            if low == high:
                return int(low)
        if isinstance(base, LogUniform):
            return _Converted(ng.p.Log(lower=low, upper=high).set_integer_casting(), post)
        if isinstance(base, Uniform):
            return _Converted(ng.p.Scalar(lower=low, upper=high).set_integer_casting(), post)
    elif isinstance(domain, Categorical) and isinstance(base, Uniform):
        converted = [_convert(ng, path + (i,), c) for i, c in enumerate(domain.categories)]
        return _Converted(ng.p.Choice([_param(ng, c) for c in converted]), ("choice", converted))
    raise _unsupported(path, domain)


def _convert(ng: Any, path: Tuple, value: Any) -> Any:
    """A tree mirroring ``value`` with domains as ``_Converted``; constants stay."""
    if isinstance(value, Domain):
        return _convert_domain(ng, path, value)
    if isinstance(value, Mapping):
        if is_grid_dict(value):
            raise ValueError(
                f"NevergradSearch cannot convert the grid search at {path_label(path)!r}: use choice([...])."
            )
        return {k: _convert(ng, path + (k,), v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_convert(ng, path + (i,), v) for i, v in enumerate(value)]
    return copy.deepcopy(value)


def _param(ng: Any, tree: Any) -> Any:
    """The Nevergrad parametrization of a converted tree."""
    if isinstance(tree, _Converted):
        return tree.param
    if isinstance(tree, dict):
        for key in tree:
            if not isinstance(key, str):
                raise ValueError(f"NevergradSearch needs string keys in the search space, got {key!r}.")
        return ng.p.Dict(**{k: _param(ng, v) for k, v in tree.items()})
    if isinstance(tree, list):
        return ng.p.Tuple(*[_param(ng, v) for v in tree])
    return tree


def _value(tree: Any, param: Any) -> Any:
    """The config of a candidate, walking the converted tree to round quantized values."""
    if isinstance(tree, _Converted):
        if isinstance(tree.post, tuple):  # a choice: post-process the chosen category
            converted = tree.post[1]
            index = int(param.index)
            return _value(converted[index], param.choices[index])
        value = plain_python(param.value)
        return tree.post(value) if tree.post else value
    if isinstance(tree, dict):
        return {k: _value(v, param[k]) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_value(v, param[i]) for i, v in enumerate(tree)]
    return plain_python(param.value) if hasattr(param, "value") else copy.deepcopy(tree)


def _point_value(tree: Any, point: Any, where: str, path: Tuple = ()) -> Any:
    """A point of ``points_to_evaluate`` shaped as the parametrization's value (lists as tuples)."""
    if isinstance(tree, dict):
        if not isinstance(point, Mapping):
            raise TypeError(f"{where}: {path_label(path) or 'the point'} must be a dict, got {point!r}.")
        out = {}
        for key, sub in tree.items():
            if key in point:
                out[key] = _point_value(sub, point[key], where, path + (key,))
            elif _holds_param(sub):
                raise ValueError(
                    f"{where} has no value for {path_label(path + (key,))!r}; give a value for every "
                    "search-space domain."
                )
            else:
                out[key] = sub
        return out
    if isinstance(tree, list):
        if not isinstance(point, (list, tuple)) or len(point) != len(tree):
            raise TypeError(f"{where}: {path_label(path)!r} must be a list of {len(tree)} values, got {point!r}.")
        return tuple(_point_value(sub, item, where, path + (i,)) for i, (sub, item) in enumerate(zip(tree, point)))
    return point


def _asks_one_at_a_time(opt: Any) -> bool:
    """Whether ``opt``, or an optimiser it hands its asks to (``NGOpt`` picks one from the
    budget, dimension and ``num_workers``), needs a tell after every ask.

    Such an optimiser (e.g. ``Cobyla``, which ``NGOpt`` picks for a small budget and one
    worker) blocks forever in a second ``ask`` before a ``tell``.
    """
    seen = set()
    while opt is not None and id(opt) not in seen:
        seen.add(id(opt))
        if getattr(opt, "no_parallelization", False):
            return True
        try:
            # NGOpt's `optim` makes its choice here; one it cannot make (e.g. no budget)
            # fails again, clearly, in ask.
            opt = getattr(opt, "optim", None) or getattr(opt, "_optimizer", None)
        except Exception:  # noqa: BLE001
            return False
    return False


def _ask_tell_error(opt: Any, call: str, exc: BaseException) -> RuntimeError:
    """A failure inside Nevergrad's ``ask``/``tell``, said with what to do about it."""
    name = getattr(opt, "name", type(opt).__name__)
    hint = ""
    if isinstance(exc, AssertionError) and getattr(opt, "budget", None) is None:
        hint = (f" {name} chooses its algorithm from the budget: pass optimizer_kwargs="
                "{'budget': <the number of trials>}.")
    elif isinstance(exc, TypeError) and "0-dimensional" in str(exc):
        hint = (f" This is a known incompatibility of nevergrad {_version('nevergrad')} with numpy "
                f"{np.__version__} (a numpy array is converted to a float inside Nevergrad); choose "
                "another optimizer (e.g. ng.optimizers.OnePlusOne or CMA), or a numpy version that "
                "nevergrad supports.")
    return RuntimeError(f"Nevergrad's {name}.{call}() failed: {type(exc).__name__}: {exc}.{hint}")


def _version(package: str) -> str:
    try:
        from importlib.metadata import version

        return version(package)
    except Exception:  # noqa: BLE001 - only for a message
        return "(unknown version)"


def _holds_param(tree: Any) -> bool:
    if isinstance(tree, _Converted):
        return True
    if isinstance(tree, dict):
        return any(_holds_param(v) for v in tree.values())
    if isinstance(tree, list):
        return any(_holds_param(v) for v in tree)
    return False


class NevergradSearch(Searcher):
    """Suggests configs with a Nevergrad optimiser (ask/tell).

    Args:
        optimizer: A Nevergrad optimiser class or configured optimiser (e.g.
            ``ng.optimizers.OnePlusOne``), built on the converted space; or an
            optimiser instance that already has its parametrization (then
            ``space`` is ``None``, or a list of parameter names for an
            array-valued parametrization).
        optimizer_kwargs: Keyword arguments for building the optimiser (e.g.
            ``{"budget": 100}``); not with an optimiser instance.
        space: A fasttune search space (converted) or a Nevergrad
            parametrization (e.g. ``ng.p.Dict``). ``None``: the Tuner's
            ``param_space``.
        metric: The result key to optimise (``None``: the Tuner's).
        mode: ``"min"`` or ``"max"`` (``None``: the Tuner's).
        points_to_evaluate: Configs to try first, in order.

    Example:
        >>> import nevergrad as ng
        >>> from fasttune.search import choice
        >>> from fasttune.search.nevergrad import NevergradSearch
        >>> search = NevergradSearch(ng.optimizers.RandomSearch, space={"act": choice(["relu", "tanh"])},
        ...                          metric="acc", mode="max")
        >>> search.suggest("a")["act"] in ("relu", "tanh")
        True
    """

    def __init__(
        self,
        optimizer: Any = None,
        optimizer_kwargs: Optional[Dict] = None,
        space: Any = None,
        metric: Optional[str] = None,
        mode: Optional[str] = None,
        points_to_evaluate: Optional[List[Dict]] = None,
    ) -> None:
        ng = _import_nevergrad()
        super().__init__(metric=metric, mode=mode)
        if metric is not None and not isinstance(metric, str):
            raise TypeError(f"NevergradSearch optimises one metric (a str), got {metric!r}.")
        if mode is not None and not isinstance(mode, str):
            raise TypeError(f"NevergradSearch takes mode 'min' or 'max', got {mode!r}.")
        if points_to_evaluate is not None and (
            not isinstance(points_to_evaluate, Sequence) or isinstance(points_to_evaluate, (str, Mapping))
            or not all(isinstance(p, Mapping) for p in points_to_evaluate)
        ):
            raise TypeError(f"points_to_evaluate must be a list of config dicts, got {points_to_evaluate!r}.")
        if optimizer_kwargs is not None and not isinstance(optimizer_kwargs, Mapping):
            raise TypeError(f"optimizer_kwargs must be a dict, got {type(optimizer_kwargs).__name__}.")
        self._ng = ng
        self._optimizer_kwargs = dict(optimizer_kwargs or {})
        self._points = copy.deepcopy(list(points_to_evaluate or []))
        self._factory: Any = None
        self._opt: Any = None
        self._tree: Any = None  # the converted fasttune space, if any
        self._names: Optional[List[str]] = None  # parameter names of an array parametrization
        self._live: Dict[str, Any] = {}  # trial_id -> candidate
        self._sequential: Optional[bool] = None  # known at the first suggest

        Optimizer = ng.optimizers.base.Optimizer
        Configured = ng.optimizers.base.ConfiguredOptimizer
        if isinstance(optimizer, Optimizer):
            if space is not None and not (isinstance(space, list) and all(isinstance(n, str) for n in space)):
                raise ValueError(
                    "An optimizer instance already has its parametrization: pass space=None, or a list "
                    "of parameter names for an array-valued parametrization."
                )
            if self._optimizer_kwargs:
                raise ValueError(
                    "optimizer_kwargs are for building the optimizer: pass an optimizer class or a "
                    "configured optimizer (e.g. ng.optimizers.OnePlusOne), not an instance."
                )
            self._opt = optimizer
            self._names = list(space) if space is not None else None
            self._check_instance()
            self._setup()
            return
        if (inspect.isclass(optimizer) and issubclass(optimizer, Optimizer)) or isinstance(optimizer, Configured):
            self._factory = optimizer
        else:
            raise ValueError(
                "NevergradSearch needs optimizer= a Nevergrad optimizer class, a configured optimizer "
                f"(e.g. ng.optimizers.OnePlusOne) or an optimizer instance; got {optimizer!r}."
            )
        if isinstance(space, Mapping) and not space:
            space = None
        if space is not None:
            self._build(space)

    @staticmethod
    def convert_search_space(spec: Dict) -> Any:
        """``spec`` as a Nevergrad parametrization (an ``ng.p.Dict``), as Ray Tune's
        ``convert_search_space``; it is a ``space`` for ``NevergradSearch`` or an optimizer.

        Unlike Ray Tune's (a flat ``ng.p.Dict`` keyed ``"a/b"``), it nests as ``spec`` does and
        keeps its constants, so that its values are configs as they are; quantized domains
        lose their quantization, as in Ray Tune.

        Example:
            >>> from fasttune.search import uniform
            >>> from fasttune.search.nevergrad import NevergradSearch
            >>> parametrization = NevergradSearch.convert_search_space({"opt": {"lr": uniform(0, 1)}, "epochs": 3})
            >>> sorted(parametrization.value), parametrization.value["epochs"]
            (['epochs', 'opt'], 3)
        """
        ng = _import_nevergrad()
        return _param(ng, _convert(ng, (), spec))

    # -- setup ---------------------------------------------------------------------------
    def _build(self, space: Any) -> None:
        ng = self._ng
        if isinstance(space, ng.p.Parameter):
            parametrization = space
        elif isinstance(space, Mapping):
            if not holds_domain(space):
                raise ValueError(
                    "NevergradSearch got a search space with nothing to search; use fasttune domains "
                    "(e.g. uniform(0, 1)) or a Nevergrad parametrization such as ng.p.Dict(...)."
                )
            self._tree = _convert(ng, (), space)
            parametrization = _param(ng, self._tree)
        else:
            raise TypeError(
                f"space must be a dict (a fasttune search space) or a Nevergrad parametrization, "
                f"got {type(space).__name__}."
            )
        try:
            self._opt = self._factory(parametrization, **self._optimizer_kwargs)
        except TypeError as exc:
            raise TypeError(f"Could not build {self._factory!r} with optimizer_kwargs={self._optimizer_kwargs!r}: {exc}") from exc
        self._setup()

    def _check_instance(self) -> None:
        parametrization = self._opt.parametrization
        if self._names is not None and self._opt.dimension != len(self._names):
            raise ValueError(
                f"The optimizer has dimension {self._opt.dimension}, but {len(self._names)} parameter "
                "names were given; give one name per dimension."
            )
        if self._names is None and not isinstance(parametrization, (self._ng.p.Dict, self._ng.p.Instrumentation)):
            raise ValueError(
                "The optimizer's parametrization is not keyed by name; pass space=[names...] (one per "
                "dimension) or build the optimizer on an ng.p.Dict / ng.p.Instrumentation."
            )

    def _setup(self) -> None:
        # Nevergrad hands out suggestions last-in first-out: suggest them in reverse.
        for index, point in reversed(list(enumerate(self._points))):
            where = f"points_to_evaluate[{index}]"
            if self._tree is not None:
                self._opt.suggest(_point_value(self._tree, point, where))
            elif self._names is not None:
                missing = [n for n in self._names if n not in point]
                if missing:
                    raise ValueError(f"{where} has no value for {missing}.")
                self._opt.suggest(np.array([point[n] for n in self._names], dtype=float))
            elif isinstance(self._opt.parametrization, self._ng.p.Instrumentation):
                self._opt.suggest(**point)
            else:
                self._opt.suggest(dict(point))
        self._points = []

    def set_search_properties(self, metric: Optional[str], mode: Optional[str], config: Dict, **spec: Any) -> bool:
        """Takes the Tuner's param space, metric and mode, unless the optimizer has a space already."""
        if self._opt is not None:
            return False
        if mode is not None and mode not in ("min", "max"):
            raise ValueError(f"NevergradSearch takes mode 'min' or 'max', got {mode!r}.")
        if not config or not holds_domain(config):
            raise ValueError(
                "NevergradSearch has no search space: pass space=... or put search-space domains "
                "(e.g. uniform(0, 1)) in the Tuner's param_space."
            )
        if metric:
            self._metric = metric
        if mode:
            self._mode = mode
        self._build(config)
        return True

    def _metric_op(self) -> float:
        return -1.0 if self._mode == "max" else 1.0

    # -- suggestions ---------------------------------------------------------------------------
    def suggest(self, trial_id: str) -> Optional[Dict]:
        """The next config: ``points_to_evaluate`` first, then the optimizer's ``ask()``."""
        if self._opt is None:
            raise RuntimeError(
                "NevergradSearch has no search space: pass space=... or use it through a Tuner "
                "with a param_space."
            )
        if not self._metric or not self._mode:
            raise RuntimeError(
                f"NevergradSearch needs a metric and a mode (got metric={self._metric!r}, mode={self._mode!r}); "
                "pass them to NevergradSearch or to TuneConfig."
            )
        if self._sequential is None:
            self._sequential = _asks_one_at_a_time(self._opt)
        if self._sequential and self._live:
            # Its next ask would wait for a tell that cannot come while it waits (a
            # deadlock inside Nevergrad): "not now", asked again after the trial ends.
            return None
        try:
            candidate = self._opt.ask()
        except Exception as exc:
            raise _ask_tell_error(self._opt, "ask", exc) from exc
        self._live[trial_id] = candidate
        if self._tree is not None:
            return _value(self._tree, candidate)
        if self._names is not None:
            return plain_python(dict(zip(self._names, np.asarray(candidate.value, dtype=float).ravel())))
        if isinstance(candidate, self._ng.p.Instrumentation):
            return plain_python(dict(candidate.kwargs))
        return plain_python(dict(candidate.value))

    def on_trial_complete(self, trial_id: str, result: Optional[Dict] = None, error: bool = False) -> None:
        """Tells the optimizer the trial's metric (negated for ``mode="max"``); errors tell nothing.

        Raises:
            RuntimeError: The result lacks the metric.
        """
        candidate = self._live.pop(trial_id, None)
        if candidate is None or error or not result:
            return
        if self._metric not in result:
            raise RuntimeError(
                f"NevergradSearch expected the metric {self._metric!r} in the trial's last result, "
                f"which has {sorted(result)}; report it from the trainable."
            )
        value = float(result[self._metric])
        if math.isnan(value):
            logger.warning("Trial %s reported NaN for %r; not told to Nevergrad.", trial_id, self._metric)
            return
        try:
            self._opt.tell(candidate, self._metric_op() * value)
        except Exception as exc:
            raise _ask_tell_error(self._opt, "tell", exc) from exc

    # -- checkpointing ---------------------------------------------------------------------------
    def get_state(self) -> Dict[str, Any]:
        """The optimizer (with its random state) and the live candidates."""
        return {
            "opt": self._opt,
            "factory": self._factory,
            "optimizer_kwargs": self._optimizer_kwargs,
            "tree": self._tree,
            "names": self._names,
            "points": self._points,
            "live": self._live,
            "metric": self._metric,
            "mode": self._mode,
        }

    def set_state(self, state: Dict[str, Any]) -> None:
        self._opt, self._factory = state["opt"], state["factory"]
        self._optimizer_kwargs = dict(state["optimizer_kwargs"])
        self._tree, self._names = state["tree"], state["names"]
        self._points = list(state["points"])
        self._live = dict(state["live"])
        self._sequential = None
        self._metric, self._mode = state["metric"], state["mode"]
