"""``HyperOptSearch``: Tree-structured Parzen Estimators from HyperOpt (``ray.tune.search.hyperopt``).

An optional extra: ``pip install "fasttune[hyperopt]"``.  The ``hyperopt``
package is imported when a ``HyperOptSearch`` is built, not when this module is.

The search space is a fasttune space (nested dicts and lists of ``uniform``,
``quniform``, ``loguniform``, ``qloguniform``, ``randn``, ``qrandn``,
``randint``, ``qrandint``, ``lograndint``, ``qlograndint`` and ``choice``,
choices may hold nested spaces), converted to HyperOpt's own, or a native
HyperOpt space (a dict of ``hp.*`` expressions).  Each ``suggest`` asks TPE for
one point; a finished trial reports its metric as HyperOpt's ``loss``
(negated for ``mode="max"``), an errored trial is marked failed and ignored.

Example:
    >>> from fasttune.search import uniform, choice
    >>> from fasttune.search.hyperopt import HyperOptSearch
    >>> search = HyperOptSearch(
    ...     {"x": uniform(-1, 1), "act": choice(["relu", "tanh"])},
    ...     metric="loss", mode="min", random_state_seed=0)
    >>> config = search.suggest("t1")
    >>> sorted(config), -1 <= config["x"] <= 1
    (['act', 'x'], True)
    >>> search.on_trial_complete("t1", {"loss": config["x"] ** 2})
"""
from __future__ import annotations

import copy
import functools
import logging
import math
import numbers
from collections.abc import Mapping
from typing import Any, Dict, List, Optional, Tuple

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
)
from fasttune.search.searcher import Searcher
from fasttune.search.variant_generator import is_grid_dict

logger = logging.getLogger(__name__)

# Which searcher cannot express a domain, and what to pass instead.
_unsupported = functools.partial(unsupported_domain, "HyperOptSearch", "a native HyperOpt space")

__all__ = ["HyperOptSearch"]


def _import_hyperopt() -> Any:
    """The ``hyperopt`` module, or an ``ImportError`` that says how to install it."""
    for submodule in ("hyperopt.pyll", "hyperopt.tpe"):  # submodules used below
        import_optional(submodule, "hyperopt", "HyperOptSearch")
    return import_optional("hyperopt", "hyperopt", "HyperOptSearch")


def _identity(space: Any) -> Any:
    """The HyperOpt objective stand-in: the sampled point itself (module level so it pickles)."""
    return space


def _constant(domain: Domain) -> Tuple[bool, Any]:
    """``(True, value)`` when the domain can only ever produce one value (HyperOpt rejects low == high)."""
    sampler = domain.get_sampler()
    q = sampler.q if isinstance(sampler, Quantized) else None
    base = sampler.get_sampler() if isinstance(sampler, Quantized) else sampler
    if isinstance(domain, Float) and not isinstance(base, Normal) and domain.lower == domain.upper:
        return True, float(domain.lower)
    if isinstance(domain, Integer):
        if q is None and domain.upper - domain.lower == 1:
            return True, int(domain.lower)
        if q is not None:
            low, high = domain._grid_bounds(int(q))
            if low == high:
                return True, int(low * int(q))
    return False, None


def _convert_domain(hpo: Any, path: Tuple, domain: Domain) -> Any:
    """The HyperOpt expression (labelled with ``path``) that samples like ``domain``."""
    hp, scope = hpo.hp, hpo.pyll.scope
    label = path_label(path)
    if isinstance(domain, Function) or domain.is_grid():
        raise _unsupported(
            path, domain,
            "grid searches and sample_from functions cannot be expressed in HyperOpt"
            if not isinstance(domain, Function) else "sample_from functions cannot be expressed in HyperOpt",
        )
    is_constant, value = _constant(domain)
    if is_constant:
        return value
    sampler = domain.get_sampler()
    q = sampler.q if isinstance(sampler, Quantized) else None
    base = sampler.get_sampler() if isinstance(sampler, Quantized) else sampler

    if isinstance(domain, Float):
        if isinstance(base, LogUniform):  # the base does not change the distribution
            low, high = math.log(domain.lower), math.log(domain.upper)
            return hp.qloguniform(label, low, high, q) if q else hp.loguniform(label, low, high)
        if isinstance(base, Uniform):
            if q:
                return hp.quniform(label, domain.lower, domain.upper, q)
            return hp.uniform(label, domain.lower, domain.upper)
        if isinstance(base, Normal):
            if q:
                return hp.qnormal(label, base.mean, base.sd, q)
            return hp.normal(label, base.mean, base.sd)
    elif isinstance(domain, Integer):
        if q is not None:
            # Quantized integer domains include upper: every multiple of q in [lower, upper].
            q_int = int(q)
            low_k, high_k = domain._grid_bounds(q_int)
            low, high = low_k * q_int, high_k * q_int
            if isinstance(base, LogUniform):
                return scope.int(hp.qloguniform(label, math.log(low), math.log(high), q_int))
            if isinstance(base, Uniform):
                return scope.int(hp.quniform(label, low, high, q_int))
        else:
            # Plain integer domains exclude upper: [lower, upper - 1].
            if isinstance(base, LogUniform):
                return scope.int(hp.qloguniform(label, math.log(domain.lower), math.log(domain.upper - 1), 1))
            if isinstance(base, Uniform):
                return hp.uniformint(label, domain.lower, domain.upper - 1)
    elif isinstance(domain, Categorical):
        if isinstance(base, Uniform):
            options = [_convert(hpo, path + (i,), category) for i, category in enumerate(domain.categories)]
            return hp.choice(label, options)
    raise _unsupported(path, domain)


def _convert(hpo: Any, path: Tuple, value: Any) -> Any:
    """Converts every fasttune domain inside ``value``; constants and HyperOpt nodes stay."""
    if isinstance(value, Domain):
        return _convert_domain(hpo, path, value)
    if isinstance(value, Mapping):
        if is_grid_dict(value):
            raise ValueError(
                f"HyperOptSearch cannot convert the grid search at {path_label(path)!r}: HyperOpt samples, "
                "it does not enumerate; use choice([...]) instead."
            )
        return {k: _convert(hpo, path + (k,), v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        converted = [_convert(hpo, path + (i,), v) for i, v in enumerate(value)]
        return converted if isinstance(value, list) else tuple(converted)
    if isinstance(value, hpo.pyll.Apply):
        return value
    return copy.deepcopy(value)


class HyperOptSearch(Searcher):
    """Suggests configs with HyperOpt's Tree-structured Parzen Estimator (TPE).

    Args:
        space: A fasttune search space (converted) or a native HyperOpt space
            (a dict of ``hp.*`` expressions).  ``None``: the Tuner's
            ``param_space`` is used.
        metric: The result key to optimise (``None``: the Tuner's).
        mode: ``"min"`` or ``"max"`` (``None``: the Tuner's).
        points_to_evaluate: Configs to try first, in order (a fasttune space:
            nested like the space, with choice values given as the value
            itself; a native space: keyed by HyperOpt label).
        n_initial_points: How many random points TPE draws before modelling.
        random_state_seed: Seed for reproducible suggestions.
        gamma: TPE's quantile splitting good from bad points, in (0, 1).

    Example:
        >>> from fasttune.search import randint
        >>> from fasttune.search.hyperopt import HyperOptSearch
        >>> search = HyperOptSearch({"n": randint(1, 4)}, metric="acc", mode="max",
        ...                         points_to_evaluate=[{"n": 3}], random_state_seed=1)
        >>> search.suggest("a")
        {'n': 3}
    """

    def __init__(
        self,
        space: Optional[Dict] = None,
        metric: Optional[str] = None,
        mode: Optional[str] = None,
        points_to_evaluate: Optional[List[Dict]] = None,
        n_initial_points: int = 20,
        random_state_seed: Optional[int] = None,
        gamma: float = 0.25,
    ) -> None:
        hpo = _import_hyperopt()
        super().__init__(metric=metric, mode=mode)
        if metric is not None and not isinstance(metric, str):
            raise TypeError(f"HyperOptSearch optimises one metric (a str), got {metric!r}.")
        if mode is not None and not isinstance(mode, str):
            raise TypeError(f"HyperOptSearch takes mode 'min' or 'max', got {mode!r}.")
        if n_initial_points is not None and (
            isinstance(n_initial_points, bool) or not isinstance(n_initial_points, numbers.Integral)
            or n_initial_points < 0
        ):
            raise ValueError(f"n_initial_points must be an int >= 0 (or None), got {n_initial_points!r}.")
        if gamma is not None and not (isinstance(gamma, numbers.Real) and 0 < gamma < 1):
            raise ValueError(f"gamma must be a number in (0, 1), got {gamma!r}.")
        if points_to_evaluate is not None and (
            not isinstance(points_to_evaluate, (list, tuple))
            or not all(isinstance(p, Mapping) for p in points_to_evaluate)
        ):
            raise TypeError(f"points_to_evaluate must be a list of config dicts, got {points_to_evaluate!r}.")
        self._hpo = hpo
        self._n_initial_points = n_initial_points
        self._gamma = gamma
        self._initial_points: List[Dict] = copy.deepcopy(list(points_to_evaluate or []))
        self._rstate = np.random.RandomState(random_state_seed)
        self._space: Any = None  # the HyperOpt space
        self._source_space: Any = None  # the fasttune space it came from, if any
        self._domain: Any = None
        self._trials: Any = None
        self._pending_points: List[Dict[str, list]] = []  # HyperOpt "vals" still to suggest
        self._live: Dict[str, int] = {}  # trial_id -> HyperOpt tid
        if space is not None:
            if not isinstance(space, (Mapping, hpo.pyll.Apply)):
                raise TypeError(
                    f"space must be a dict (a fasttune or HyperOpt search space), got {type(space).__name__}."
                )
            if isinstance(space, Mapping) and not space:
                space = None
        if space is not None:
            self._set_space(space)

    # -- setup ---------------------------------------------------------------------------
    @staticmethod
    def convert_search_space(spec: Dict, prefix: str = "") -> Dict:
        """``spec`` as a HyperOpt space: its domains as ``hp.*`` expressions labelled by their
        ``"a/b"`` path (under ``prefix`` when given), constants kept; ``{}`` when there is no
        domain, as Ray Tune's ``convert_search_space``.

        Example:
            >>> from fasttune.search import uniform
            >>> from fasttune.search.hyperopt import HyperOptSearch
            >>> space = HyperOptSearch.convert_search_space({"opt": {"lr": uniform(0, 1)}, "epochs": 3})
            >>> sorted(space["opt"]), space["epochs"]
            (['lr'], 3)
            >>> HyperOptSearch.convert_search_space({"epochs": 3})
            {}
        """
        hpo = _import_hyperopt()
        if not holds_domain(spec):
            return {}
        return _convert(hpo, (prefix,) if prefix else (), spec)

    def _algo(self) -> Any:
        kwargs = {}
        if self._n_initial_points is not None:
            kwargs["n_startup_jobs"] = self._n_initial_points
        if self._gamma is not None:
            kwargs["gamma"] = self._gamma
        return functools.partial(self._hpo.tpe.suggest, **kwargs)

    def _set_space(self, space: Any) -> None:
        hpo = self._hpo
        if isinstance(space, Mapping) and holds_domain(space):
            self._source_space = copy.deepcopy(space)
            self._space = _convert(hpo, (), space)
        else:
            self._source_space = None
            self._space = space
        self._domain = hpo.Domain(_identity, self._space)
        if not self._domain.params:
            raise ValueError(
                "HyperOptSearch got a search space with nothing to sample (no domains, or only "
                "single-value ones); add at least one domain such as uniform(0, 1)."
            )
        self._trials = hpo.Trials()
        self._pending_points = [self._encode_point(i, p) for i, p in enumerate(self._initial_points)]
        self._metric_op()  # validates mode early when it is known

    def set_search_properties(self, metric: Optional[str], mode: Optional[str], config: Dict, **spec: Any) -> bool:
        """Takes the Tuner's param space, metric and mode, unless a space was given already."""
        if self._domain is not None:
            return False
        if mode is not None and mode not in ("min", "max"):
            raise ValueError(f"HyperOptSearch takes mode 'min' or 'max', got {mode!r}.")
        if not config or not holds_domain(config):
            raise ValueError(
                "HyperOptSearch has no search space: pass space=... or put search-space domains "
                "(e.g. uniform(0, 1)) in the Tuner's param_space."
            )
        if metric:
            self._metric = metric
        if mode:
            self._mode = mode
        self._set_space(config)
        return True

    def _metric_op(self) -> float:
        return -1.0 if self._mode == "max" else 1.0

    # -- points_to_evaluate --------------------------------------------------------------------
    def _encode_point(self, index: int, point: Mapping) -> Dict[str, list]:
        """A config as HyperOpt ``vals`` (label -> [value], choices as indices, [] when inactive)."""
        vals: Dict[str, list] = {label: [] for label in self._domain.params}
        where = f"points_to_evaluate[{index}]"
        if self._source_space is not None:
            self._encode(self._source_space, point, (), vals, where)
        else:
            self._encode_native(point, vals, where)
        return vals

    def _encode(self, space: Any, value: Any, path: Tuple, vals: Dict[str, list], where: str) -> None:
        if isinstance(space, Domain):
            if _constant(space)[0]:
                return
            label = path_label(path)
            if isinstance(space, Categorical):
                for i, category in enumerate(space.categories):
                    trial_vals = dict(vals)
                    if holds_domain(category):
                        try:
                            self._encode(category, value, path + (i,), trial_vals, where)
                        except (ValueError, TypeError, KeyError):
                            continue
                    elif not _equal(category, value):
                        continue
                    vals.update(trial_vals)
                    vals[label] = [i]
                    return
                raise ValueError(
                    f"{where}: {value!r} is not one of the choices of {label!r} ({space.categories!r})."
                )
            if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.number)):
                raise TypeError(f"{where}: {label!r} must be a number, got {value!r}.")
            vals[label] = [float(value)]
            return
        if isinstance(space, Mapping):
            if not isinstance(value, Mapping):
                raise TypeError(f"{where}: {path_label(path) or 'the point'} must be a dict, got {value!r}.")
            for key, item in space.items():
                if not holds_domain(item):
                    continue
                if key not in value:
                    raise ValueError(
                        f"{where} has no value for {path_label(path + (key,))!r}; give a value for every "
                        "search-space domain."
                    )
                self._encode(item, value[key], path + (key,), vals, where)
            return
        if isinstance(space, (list, tuple)):
            if not isinstance(value, (list, tuple)) or len(value) != len(space):
                raise TypeError(f"{where}: {path_label(path)!r} must be a list of {len(space)} values, got {value!r}.")
            for i, item in enumerate(space):
                if holds_domain(item):
                    self._encode(item, value[i], path + (i,), vals, where)

    def _encode_native(self, point: Mapping, vals: Dict[str, list], where: str) -> None:
        flat: Dict[str, Any] = {}

        def walk(value: Any, prefix: str) -> None:
            for key, item in value.items():
                name = f"{prefix}/{key}" if prefix else str(key)
                if isinstance(item, Mapping) and name not in self._domain.params:
                    walk(item, name)
                else:
                    flat[name] = item

        walk(point, "")
        for label, value in flat.items():
            if label not in self._domain.params:
                raise ValueError(f"{where} names {label!r}, which is not a label of the HyperOpt space "
                                 f"(labels: {sorted(self._domain.params)}).")
            options = self._choice_literals(label)
            if options is not None:  # hp.choice values are stored as indices
                matches = [i for i, option in enumerate(options) if _equal(option, value)]
                if not matches:
                    raise ValueError(f"{where}: {value!r} is not one of the choices of {label!r} ({options!r}).")
                value = matches[0]
            vals[label] = [value]

    def _choice_literals(self, label: str) -> Optional[List[Any]]:
        """The literal options of the ``hp.choice`` labelled ``label``, if it is one."""
        for node in self._hpo.pyll.dfs(self._domain.expr):
            if node.name == "switch" and node.pos_args:
                index = node.pos_args[0]
                if index.name == "hyperopt_param" and index.pos_args[0].obj == label:
                    options = node.pos_args[1:]
                    if all(option.name == "literal" for option in options):
                        return [option.obj for option in options]
                    return None
        return None

    # -- suggestions ---------------------------------------------------------------------------
    def suggest(self, trial_id: str) -> Optional[Dict]:
        """The next config: the next of ``points_to_evaluate``, then TPE's."""
        if self._domain is None:
            raise RuntimeError(
                "HyperOptSearch has no search space: pass space=... or use it through a Tuner "
                "with a param_space."
            )
        if not self._metric or not self._mode:
            raise RuntimeError(
                f"HyperOptSearch needs a metric and a mode (got metric={self._metric!r}, mode={self._mode!r}); "
                "pass them to HyperOptSearch or to TuneConfig."
            )
        trials = self._trials
        tid = trials.new_trial_ids(1)[0]
        if self._pending_points:
            vals = self._pending_points.pop(0)
            misc = {
                "tid": tid, "cmd": self._domain.cmd, "workdir": self._domain.workdir,
                "idxs": {label: [tid] if v else [] for label, v in vals.items()}, "vals": vals,
            }
            docs = trials.new_trial_docs([tid], [None], [{"status": "new"}], [misc])
        else:
            trials.refresh()
            docs = self._algo()([tid], self._domain, trials, int(self._rstate.randint(2**31 - 1)))
        trials.insert_trial_docs(docs)
        trials.refresh()
        doc = docs[0]
        self._live[trial_id] = doc["tid"]
        return self._evaluate(doc)

    def _evaluate(self, doc: Dict) -> Dict:
        hpo = self._hpo
        config = hpo.base.spec_from_misc(doc["misc"])
        ctrl = hpo.base.Ctrl(self._trials, current_trial=doc)
        memo = self._domain.memo_from_config(config)
        hpo.utils.use_obj_for_literal_in_memo(self._domain.expr, ctrl, hpo.base.Ctrl, memo)
        try:
            point = hpo.pyll.rec_eval(self._domain.expr, memo=memo)
        except (AssertionError, TypeError) as exc:
            raise ValueError(
                f"HyperOpt could not build a config from {config!r}; a point in points_to_evaluate "
                "probably misses a key of the search space."
            ) from exc
        return plain_python(copy.deepcopy(point))

    def _doc(self, trial_id: str) -> Optional[Dict]:
        tid = self._live.get(trial_id)
        if tid is None:
            return None
        for doc in self._trials._dynamic_trials:
            if doc["tid"] == tid:
                return doc
        return None

    def on_trial_result(self, trial_id: str, result: Dict) -> None:
        doc = self._doc(trial_id)
        if doc is not None:
            now = self._hpo.utils.coarse_utcnow()
            doc["book_time"] = doc["book_time"] or now
            doc["refresh_time"] = now

    def on_trial_complete(self, trial_id: str, result: Optional[Dict] = None, error: bool = False) -> None:
        """Reports the trial's metric to HyperOpt as its loss; errors (and no result, or NaN) mark it failed.

        Raises:
            RuntimeError: The result lacks the metric.
        """
        doc = self._doc(trial_id)
        if doc is None:
            return
        del self._live[trial_id]
        hpo = self._hpo
        doc["refresh_time"] = hpo.utils.coarse_utcnow()
        value = None
        if not error and result:
            if self._metric not in result:
                raise RuntimeError(
                    f"HyperOptSearch expected the metric {self._metric!r} in the trial's last result, "
                    f"which has {sorted(result)}; report it from the trainable."
                )
            value = float(result[self._metric])
            if math.isnan(value):
                logger.warning("Trial %s reported NaN for %r; HyperOpt counts it as failed.", trial_id, self._metric)
                value = None
        if value is None:
            doc["state"] = hpo.base.JOB_STATE_ERROR
            doc["misc"]["error"] = ("TrialError", "the trial failed" if error else "no usable result")
            doc["result"] = {"status": hpo.STATUS_FAIL}
        else:
            doc["state"] = hpo.base.JOB_STATE_DONE
            doc["result"] = {"loss": self._metric_op() * value, "status": hpo.STATUS_OK}
        self._trials.refresh()

    # -- checkpointing ---------------------------------------------------------------------------
    def get_state(self) -> Dict[str, Any]:
        """Everything needed to continue the same sequence of suggestions."""
        return {
            "space": self._space,
            "source_space": self._source_space,
            "trials": self._trials,
            "pending_points": copy.deepcopy(self._pending_points),
            "live": dict(self._live),
            "rstate": self._rstate.get_state(),
            "metric": self._metric,
            "mode": self._mode,
            "n_initial_points": self._n_initial_points,
            "gamma": self._gamma,
        }

    def set_state(self, state: Dict[str, Any]) -> None:
        self._metric, self._mode = state["metric"], state["mode"]
        self._n_initial_points, self._gamma = state["n_initial_points"], state["gamma"]
        self._space, self._source_space = state["space"], state["source_space"]
        self._domain = self._hpo.Domain(_identity, self._space) if self._space is not None else None
        self._trials = state["trials"]
        self._pending_points = copy.deepcopy(state["pending_points"])
        self._live = dict(state["live"])
        self._rstate.set_state(state["rstate"])


def _equal(a: Any, b: Any) -> bool:
    """Whether a point's value is this category (``True`` is not ``1``; ``1`` is ``1.0``)."""
    if isinstance(a, (bool, np.bool_)) or isinstance(b, (bool, np.bool_)):
        return type(a) is type(b) and a == b
    if isinstance(a, numbers.Number) and isinstance(b, numbers.Number):
        return a == b
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:  # e.g. arrays compared element-wise
        return False
