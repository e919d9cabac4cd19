"""``HEBOSearch``: Heteroscedastic Evolutionary Bayesian Optimisation from Huawei's HEBO
package (``ray.tune.search.hebo``).

An optional extra: ``pip install "fasttune[hebo]"``.  The ``hebo`` module (and torch) is
imported when a ``HEBOSearch`` is built, not when this module is.  HEBO 0.3.6 declares
``numpy<1.25``; its code runs on numpy 2 (see the extra's note in the README).

The space is a fasttune space or HEBO's own ``DesignSpace``; nested keys become ``"a/b"``
names.  fasttune domains convert as: ``uniform`` -> ``num``, ``loguniform`` -> ``pow``,
``randint`` -> ``int``, ``lograndint`` -> ``pow_int``, ``qrandint`` -> ``step_int``,
``choice`` -> ``cat``; ``quniform``/``qloguniform`` are searched without their step and the
suggestion is rounded to it.  HEBO suggests ``max_concurrent`` configs at a time (its first
``rand_sample`` ones from a scrambled Sobol sequence) and takes the next batch once that
batch's trials have all ended.

Randomness: HEBO draws from numpy's and torch's global generators.  With
``random_state_seed=None`` it does so (as in Ray Tune).  With an int seed the searcher keeps
a numpy and a torch generator state of its own and puts them in place of the global ones
only while HEBO runs (under a lock), then puts the caller's back; Ray Tune's instead seeds
the global generators once, at setup.

Where Ray Tune 2.60's searcher differs: the seed does not touch the global generators (see
above); quantized floats keep their step (Ray Tune drops it) and ``qrandint`` is HEBO's
``step_int``; constants or unsupported domains in ``space`` are errors naming the key; a
searcher with a space of its own takes the metric and mode it lacks from ``TuneConfig``.
"""
from __future__ import annotations

import contextlib
import logging
import math
import numbers
import threading
from collections.abc import Mapping
from typing import Any, Dict, Iterator, List, Optional

import numpy as np

from fasttune._optional import import_optional
from fasttune.result import DEFAULT_METRIC
from fasttune.search._space_conversion import flat_space, holds_domain, nested_config, plain_python
from fasttune.search._searcher_args import take_metric_and_mode
from fasttune.search.sample import Categorical, Domain, Float, Integer, LogUniform, Quantized, Uniform
from fasttune.search.searcher import Searcher
from fasttune.search.variant_generator import is_grid_dict

logger = logging.getLogger(__name__)

__all__ = ["HEBOSearch"]

# What a space must be (Ray Tune's module exports this message too).
SPACE_ERROR_MESSAGE = ("HEBOSearch's space must be a HEBO DesignSpace or a dict holding only search-space "
                       "domains (constants go in the Tuner's param_space).")

# Only one searcher at a time may put its generators in numpy's and torch's global places.
_GLOBAL_RNG_LOCK = threading.Lock()


def _import_hebo() -> Any:
    """``hebo`` with its optimiser and design space loaded, or an ImportError that says how to install it."""
    import_optional("hebo.optimizers.hebo", "hebo", "HEBOSearch", package="HEBO")
    return import_optional("hebo.design_space.design_space", "hebo", "HEBOSearch", package="HEBO")


def _hebo_module() -> Any:
    _import_hebo()
    import hebo

    return hebo


def _param(name: str, domain: Domain) -> Dict[str, Any]:
    """HEBO's parameter dict for one fasttune domain (a ValueError naming ``name`` if none fits)."""
    sampler = domain.get_sampler()
    q = None
    if isinstance(sampler, Quantized):
        q, sampler = sampler.q, sampler.get_sampler()
    if isinstance(domain, Categorical) and not domain.is_grid() and isinstance(sampler, Uniform):
        return {"name": name, "type": "cat", "categories": list(domain.categories)}
    if isinstance(domain, Float) and isinstance(sampler, (Uniform, LogUniform)):
        return {"name": name, "type": "pow" if isinstance(sampler, LogUniform) else "num",
                "lb": domain.lower, "ub": domain.upper}
    if isinstance(domain, Integer) and isinstance(sampler, (Uniform, LogUniform)):
        log = isinstance(sampler, LogUniform)
        if q is None:  # fasttune's randint/lograndint exclude upper; HEBO's include ub
            return {"name": name, "type": "pow_int" if log else "int", "lb": domain.lower, "ub": domain.upper - 1}
        if not log:  # quantized integers are the multiples of q in [lower, upper]
            step = int(q)
            return {"name": name, "type": "step_int", "lb": -((-domain.lower) // step) * step,
                    "ub": domain.upper // step * step, "step": step}
    why = ("a grid search is expanded by the variant generator, not sampled; use choice([...])"
           if isinstance(domain, Categorical) and domain.is_grid() else
           "HEBO has no parameter type for it (normal distributions, functions and log-scaled quantized "
           "integers are not supported)")
    raise ValueError(f"HEBOSearch cannot search {name!r} ({type(domain).__name__} with sampler "
                     f"{domain.get_sampler()}): {why}.")


def _quantum(domain: Any) -> Optional[float]:
    """The step a quantized float's suggestions are rounded to, else None."""
    sampler = domain.get_sampler() if isinstance(domain, Float) else None
    return float(sampler.q) if isinstance(sampler, Quantized) else None


class HEBOSearch(Searcher):
    """Suggests configs with HEBO (Bayesian optimisation with input warping, an ensemble of
    acquisition functions and evolutionary acquisition search).

    Args:
        space: A fasttune space or HEBO's ``DesignSpace`` (``"a/b"`` names nest).  ``None``:
            the Tuner's ``param_space`` is converted (its constants stay in the configs).
        metric: The result key to optimise (``None``: the Tuner's; ``"_metric"`` when only
            a mode is given).
        mode: ``"min"`` or ``"max"`` (``None``: the Tuner's).
        points_to_evaluate: Configs to try first, in order.
        evaluated_rewards: The metric values of ``points_to_evaluate`` when they were
            evaluated already: they are then given to HEBO instead of being run.
        random_state_seed: Seed of the searcher's own numpy and torch generators (``None``:
            the global ones).
        max_concurrent: How many configs HEBO suggests at a time (one batch).
        **kwargs: Arguments of ``hebo.optimizers.hebo.HEBO`` (e.g. ``rand_sample``,
            ``model_name``, ``scramble_seed``).

    Raises:
        ImportError: HEBO is not installed.
        ValueError: A domain HEBO cannot search or a constant in ``space``, named by its key,
            or a bad argument.
    """

    def __init__(
        self,
        space: Optional[Any] = None,
        metric: Optional[str] = None,
        mode: Optional[str] = None,
        points_to_evaluate: Optional[List[Dict]] = None,
        evaluated_rewards: Optional[List] = None,
        random_state_seed: Optional[int] = None,
        max_concurrent: int = 8,
        **kwargs: Any,
    ) -> None:
        design_space = _import_hebo()
        if mode is not None and mode not in ("min", "max"):
            raise ValueError(f"HEBOSearch takes mode 'min' or 'max', got {mode!r}.")
        if metric is not None and not isinstance(metric, str):
            raise TypeError(f"HEBOSearch optimises one metric (a str), got {metric!r}.")
        if isinstance(max_concurrent, bool) or not isinstance(max_concurrent, numbers.Integral) or max_concurrent < 1:
            raise ValueError(f"HEBOSearch's max_concurrent must be an int >= 1, got {max_concurrent!r}.")
        if random_state_seed is not None and (
                isinstance(random_state_seed, bool) or not isinstance(random_state_seed, numbers.Integral)):
            raise TypeError(f"HEBOSearch's random_state_seed must be an int or None, got {random_state_seed!r}.")
        if points_to_evaluate is not None and (
            not isinstance(points_to_evaluate, (list, tuple))
            or not all(isinstance(p, Mapping) for p in points_to_evaluate)
        ):
            raise TypeError(f"points_to_evaluate must be a list of config dicts, got {points_to_evaluate!r}.")
        if evaluated_rewards is not None and len(evaluated_rewards) != len(points_to_evaluate or []):
            raise ValueError(f"evaluated_rewards must hold one value per point to evaluate: got "
                             f"{len(evaluated_rewards)} for {len(points_to_evaluate or [])} points.")
        super().__init__(metric=metric, mode=mode)
        self._hebo_config = kwargs
        self._random_state_seed = random_state_seed
        self._max_concurrent = int(max_concurrent)
        self._points_to_evaluate = [flat_space(p) for p in points_to_evaluate or []]
        self._evaluated_rewards = list(evaluated_rewards) if evaluated_rewards is not None else None
        self._initial_points: List[Dict[str, Any]] = []
        self._quanta: Dict[str, float] = {}  # name -> the step of a quantized float
        self._live_trial_mapping: Dict[str, Dict[str, Any]] = {}  # trial_id -> HEBO's flat params
        self._suggestions_cache: List[Dict[str, Any]] = []
        self._batch_filled = False
        self._rng_states: Optional[tuple] = None  # (numpy, torch) when seeded
        self._space: Any = None
        self._opt: Any = None
        if space is not None and (not isinstance(space, Mapping) or space):
            if isinstance(space, design_space.DesignSpace):
                self._space = space
            elif isinstance(space, Mapping):
                self._space = self._convert(space, "space")
                self._set_quanta(space)
            else:
                raise TypeError(f"{SPACE_ERROR_MESSAGE} Got {type(space).__name__}.")
            self._setup_optimizer()

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        """Takes the Tuner's ``max_concurrent_trials`` as HEBO's batch size."""
        self._max_concurrent = max_concurrent
        return True

    # -- setup ---------------------------------------------------------------------------
    @staticmethod
    def convert_search_space(spec: Dict, prefix: str = "") -> Any:
        """HEBO's ``DesignSpace`` for ``spec``'s domains (constants left out), by their
        ``"a/b"`` names (``prefix`` goes before each), as Ray Tune's ``convert_search_space``."""
        flat = flat_space(spec)
        searched = {f"{prefix}{k}": v for k, v in flat.items() if holds_domain(v)}
        return HEBOSearch._convert(searched, "search space")

    @staticmethod
    def _convert_params(space: Mapping, what: str) -> List[Dict[str, Any]]:
        params = []
        for name, value in flat_space(space).items():
            if isinstance(value, Mapping) and is_grid_dict(value):
                raise ValueError(f"HEBOSearch cannot convert the grid search at {name!r}: a grid search is "
                                 "expanded by the variant generator, not sampled; use choice([...]).")
            if not isinstance(value, Domain):
                raise ValueError(f"HEBOSearch's {what} entry {name!r} is a constant ({value!r}), not a domain: "
                                 "put constants in the Tuner's param_space.")
            params.append(_param(name, value))
        return params

    @staticmethod
    def _convert(space: Mapping, what: str) -> Any:
        return _import_hebo().DesignSpace().parse(HEBOSearch._convert_params(space, what))

    def _setup_optimizer(self) -> None:
        hebo = _hebo_module()
        if self._metric is None and self._mode:
            self._metric = DEFAULT_METRIC  # only a mode: the anonymous metric, as Ray Tune
        if self._space.num_paras <= 0:
            raise ValueError("HEBOSearch got an empty search space: give it at least one parameter.")
        names = set(self._space.para_names)
        for index, point in enumerate(self._points_to_evaluate):
            if set(point) != names:
                raise ValueError(f"points_to_evaluate[{index}] must give a value for each of {sorted(names)} and "
                                 f"nothing else; got {sorted(point)}.")
        if self._random_state_seed is not None:
            import torch

            generator = torch.Generator()
            generator.manual_seed(int(self._random_state_seed))
            self._rng_states = (np.random.RandomState(int(self._random_state_seed)).get_state(),
                                generator.get_state())
        with self._hebo_globals():
            self._opt = hebo.optimizers.hebo.HEBO(space=self._space, **self._hebo_config)
        if self._points_to_evaluate and self._evaluated_rewards is not None:
            self._observe(self._points_to_evaluate, [float(r) for r in self._evaluated_rewards])
        else:
            self._initial_points = list(self._points_to_evaluate)

    def _set_quanta(self, spec: Mapping) -> None:
        self._quanta = {name: q for name, value in flat_space(spec).items()
                        if isinstance(value, Domain) and (q := _quantum(value)) is not None}

    @contextlib.contextmanager
    def _hebo_globals(self) -> Iterator[None]:
        """Puts this searcher's generators where HEBO draws from (when seeded), and the
        caller's back afterwards."""
        if self._rng_states is None:
            yield
            return
        import torch

        with _GLOBAL_RNG_LOCK:
            callers = (np.random.get_state(), torch.get_rng_state())
            np.random.set_state(self._rng_states[0])
            torch.set_rng_state(self._rng_states[1])
            try:
                yield
            finally:
                self._rng_states = (np.random.get_state(), torch.get_rng_state())
                np.random.set_state(callers[0])
                torch.set_rng_state(callers[1])

    def set_search_properties(self, metric: Optional[str], mode: Optional[str], config: Dict, **spec: Any) -> bool:
        """Takes the Tuner's param space, metric and mode.  A searcher with a space of its own
        keeps it and returns ``False``; it still takes the metric and mode it lacks."""
        if mode is not None and mode not in ("min", "max"):
            raise ValueError(f"HEBOSearch takes mode 'min' or 'max', got {mode!r}.")
        if self._opt is not None:
            take_metric_and_mode(self, metric, mode)
            return False
        flat = flat_space(config or {})
        searched = {k: v for k, v in flat.items() if holds_domain(v)}
        if not searched:
            raise ValueError("HEBOSearch has no search space: pass space=... or put domains in the Tuner's "
                             "param_space.")
        self._space = self._convert(searched, "search space")
        self._set_quanta(searched)
        if metric:
            self._metric = metric
        if mode:
            self._mode = mode
        self._setup_optimizer()
        return True

    @property
    def _metric_op(self) -> float:
        return -1.0 if self._mode == "max" else 1.0  # HEBO minimises

    # -- searching -----------------------------------------------------------------------
    def suggest(self, trial_id: str) -> Optional[Dict]:
        """The next config: the next of ``points_to_evaluate``, else the next of HEBO's current
        batch; ``None`` while a batch's trials are still running."""
        if self._opt is None:
            raise RuntimeError("HEBOSearch has no search space: pass space=... or use it through a Tuner "
                               "with a param_space.")
        if not self._metric or not self._mode:
            raise RuntimeError(f"HEBOSearch needs a metric and a mode (got metric={self._metric!r}, "
                               f"mode={self._mode!r}); pass them to HEBOSearch or to TuneConfig.")
        if not self._live_trial_mapping:
            self._batch_filled = False
        if self._initial_points:
            params = self._initial_points.pop(0)
        else:
            if self._batch_filled or len(self._live_trial_mapping) >= self._max_concurrent:
                return None
            if not self._suggestions_cache:
                with self._hebo_globals():
                    batch = self._opt.suggest(n_suggestions=self._max_concurrent)
                self._suggestions_cache = [plain_python(row) for row in batch.to_dict("records")]
            params = self._suggestions_cache.pop(0)
        self._live_trial_mapping[trial_id] = params
        if len(self._live_trial_mapping) >= self._max_concurrent:
            self._batch_filled = True
        return nested_config({name: self._rounded(name, value) for name, value in params.items()})

    def _rounded(self, name: str, value: Any) -> Any:
        q = self._quanta.get(name)
        return value if q is None else float(f"{round(value / q) * q:.12g}")

    def on_trial_complete(self, trial_id: str, result: Optional[Dict] = None, error: bool = False) -> None:
        """Gives the trial's metric to HEBO; errored trials, trials without a result and
        NaN/inf values are left out.

        Raises:
            RuntimeError: The result lacks the metric.
        """
        params = self._live_trial_mapping.pop(trial_id, None)
        if params is None or result is None or error:
            return
        if self._metric not in result:
            raise RuntimeError(f"HEBOSearch expected the metric {self._metric!r} in the trial's last result, "
                               f"which has {sorted(result)}; report it from the trainable.")
        value = result[self._metric]
        if isinstance(value, numbers.Real) and math.isfinite(value):
            self._observe([params], [float(value)])

    def _observe(self, points: List[Mapping[str, Any]], values: List[float]) -> None:
        import pandas as pd

        names = self._space.para_names
        frame = pd.DataFrame([{name: point[name] for name in names} for point in points])
        with self._hebo_globals():
            self._opt.observe(frame, np.array(values, dtype=float).reshape(-1, 1) * self._metric_op)

    def add_evaluated_point(self, parameters: Dict, value: float, error: bool = False, pruned: bool = False,
                            intermediate_values: Optional[List[float]] = None) -> None:
        """Gives HEBO a config evaluated elsewhere (nested or ``"a/b"`` names); errored or
        pruned ones are left out, and intermediate values are not used."""
        if intermediate_values:
            logger.warning("HEBOSearch does not use intermediate_values; they are ignored.")
        if error or pruned:
            logger.warning("HEBOSearch takes only points that were evaluated without error or pruning.")
            return
        flat = flat_space(parameters)
        missing = sorted(set(self._space.para_names) - set(flat))
        if missing:
            raise ValueError(f"add_evaluated_point: the parameters lack {missing}.")
        self._observe([flat], [float(value)])

    # -- checkpointing -------------------------------------------------------------------
    def get_state(self) -> Dict[str, Any]:
        """Everything needed to continue the same sequence of suggestions (``save`` writes it,
        the library's objects cloudpickled)."""
        return dict(self.__dict__)

    def set_state(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
