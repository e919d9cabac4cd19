"""``TuneBOHB``: BOHB's model-based suggestions from hpbandster (``ray.tune.search.bohb``).

An optional extra: ``pip install "fasttune[bohb]"`` (hpbandster and ConfigSpace, imported
when a ``TuneBOHB`` is built, not when this module is).  Use it with
:class:`fasttune.schedulers.HyperBandForBOHB`: that scheduler tags each result a trial
reports at one of its bracket's milestones with ``result["hyperband_info"]["budget"]``,
and only such results reach hpbandster's config generator.  For every budget the
generator fits kernel density estimates of good and bad configs once it has more
results than the space has hyperparameters; a suggestion is drawn at random until some
budget has a model (and then with probability ``random_fraction``), else it maximises
the good/bad density ratio of the largest budget that has one.

The space is a fasttune space (``uniform``, ``loguniform``,
``randint``, ``lograndint``, ``choice``; nested keys become ``"a/b"`` names; like Ray
Tune, a quantization is dropped with a warning) or a native
``ConfigSpace.ConfigurationSpace``.

Where Ray Tune 2.60's searcher differs: ``seed`` makes the whole sequence reproducible
(hpbandster draws from numpy's global generator; here it draws from a generator of its
own, seeded with ``seed``, and the global one is left as it was; Ray Tune seeds only the
ConfigSpace); points to evaluate are checked against the space when the searcher is set
up; a result without the metric is an error naming it; a searcher with a space of its
own takes the metric and mode it lacks from ``TuneConfig``; and the concurrency it
counts comes from the scheduler's tags (``hyperband_info["paused"]``), not from calls
the scheduler makes into the searcher.

Example:
    >>> from fasttune.search import choice, uniform
    >>> from fasttune.search.bohb import TuneBOHB
    >>> search = TuneBOHB({"lr": uniform(0, 1), "net": {"act": choice(["relu", "tanh"])}},
    ...                   metric="loss", mode="min", seed=0)
    >>> config = search.suggest("t1")
    >>> sorted(config), config["net"]["act"] in ("relu", "tanh")
    (['lr', 'net'], True)
"""
from __future__ import annotations

import contextlib
import copy
import logging
import numbers
import warnings
from collections.abc import Mapping
from typing import Any, Dict, Iterator, List, Optional, Set

from fasttune._optional import import_optional
from fasttune.result import DEFAULT_METRIC
from fasttune.search._searcher_args import check_metric_and_mode, check_points_to_evaluate, take_metric_and_mode
from fasttune.search._space_conversion import flat_space, holds_domain, nested_config, plain_python, unsupported_domain
from fasttune.search.sample import Categorical, Domain, Float, Integer, LogUniform, Normal, Quantized, Uniform
from fasttune.search.searcher import Searcher
from fasttune.search.variant_generator import is_grid_dict

logger = logging.getLogger(__name__)

__all__ = ["TuneBOHB"]

# hpbandster 0.7.4 calls ConfigSpace methods that ConfigSpace 1.x deprecates (they still
# work); the warnings would reach the user at every suggestion.
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"hpbandster(\.|$)")
# statsmodels' KDE (which BOHB fits) announces a change of its default random generator;
# BOHB's bandwidths (normal_reference) draw nothing.
warnings.filterwarnings("ignore", message=r"After 0\.17 or January 2028", category=FutureWarning)


def _import_configspace() -> Any:
    return import_optional("ConfigSpace", "bohb", "TuneBOHB")


def _import_bohb_generator() -> Any:
    """hpbandster's BOHB config generator class, or an ImportError saying how to install it."""
    _import_configspace()
    module = import_optional("hpbandster.optimizers.config_generators.bohb", "bohb", "TuneBOHB",
                             package="hpbandster")
    return module.BOHB


class _Job:
    """The finished-run record hpbandster's ``new_result`` reads."""

    def __init__(self, loss: float, budget: float, config: Dict[str, Any]) -> None:
        self.result = {"loss": loss}
        self.kwargs = {"budget": budget, "config": dict(config)}
        self.exception = None


def _hyperparameter(cs: Any, name: str, domain: Domain) -> Any:
    """The ConfigSpace hyperparameter searching ``domain``."""
    sampler = domain.get_sampler()
    if isinstance(sampler, Quantized):
        logger.warning("TuneBOHB does not support quantization; %r is searched without it.", name)
        sampler = sampler.get_sampler()
    path = tuple(name.split("/"))
    if isinstance(domain, Categorical) and not domain.is_grid():
        if isinstance(sampler, Uniform):
            return cs.CategoricalHyperparameter(name, choices=list(domain.categories))
    elif isinstance(domain, Float):
        if isinstance(sampler, (Uniform, LogUniform)):
            return cs.UniformFloatHyperparameter(name, lower=domain.lower, upper=domain.upper,
                                                 log=isinstance(sampler, LogUniform))
        if isinstance(sampler, Normal):
            raise unsupported_domain("TuneBOHB", "a ConfigSpace.ConfigurationSpace", path, domain,
                                     "BOHB searches bounded ranges, and randn is unbounded")
    elif isinstance(domain, Integer):
        if isinstance(sampler, (Uniform, LogUniform)):
            # fasttune's upper bound is exclusive, ConfigSpace's inclusive.
            return cs.UniformIntegerHyperparameter(name, lower=domain.lower, upper=domain.upper - 1,
                                                   log=isinstance(sampler, LogUniform))
    raise unsupported_domain("TuneBOHB", "a ConfigSpace.ConfigurationSpace", path, domain)


class TuneBOHB(Searcher):
    """Suggests configs with BOHB's kernel-density model (hpbandster), per HyperBand budget.

    Args:
        space: A fasttune search space (nested keys become ``"a/b"`` names) or a
            ``ConfigSpace.ConfigurationSpace``.  ``None``: the Tuner's ``param_space`` is
            converted (its constants stay in the configs).
        bohb_config: Keyword arguments of hpbandster's ``BOHB`` config generator
            (``min_points_in_model``, ``top_n_percent``, ``num_samples``,
            ``random_fraction``, ``bandwidth_factor``, ``min_bandwidth``).
        metric: The result key to optimise (``None``: the Tuner's; ``"_metric"`` when
            only a mode is given).
        mode: ``"min"`` or ``"max"`` (``None``: the Tuner's).
        points_to_evaluate: Configs to try first, in order.
        seed: Seeds the ConfigSpace and the generator hpbandster draws from; ``None``
            draws from numpy's global generator, as hpbandster does.
        max_concurrent: The most trials running at once (paused ones do not count);
            ``0`` or less: no limit.  A ``ConcurrencyLimiter`` sets it.

    Raises:
        ImportError: hpbandster or ConfigSpace is not installed.
        ValueError: A domain BOHB cannot search (``grid_search``, ``randn``,
            ``sample_from``), or a bad argument.

    Example:
        >>> import ConfigSpace as CS
        >>> from fasttune.search.bohb import TuneBOHB
        >>> cs = CS.ConfigurationSpace({"width": (0.0, 20.0)})
        >>> search = TuneBOHB(cs, metric="loss", mode="min", points_to_evaluate=[{"width": 3.0}])
        >>> search.suggest("a")
        {'width': 3.0}
    """

    # hpbandster's BOHB config generator: None until the space is known.
    bohber: Any = None

    def __init__(
        self,
        space: Optional[Any] = None,
        bohb_config: Optional[Dict] = None,
        metric: Optional[str] = None,
        mode: Optional[str] = None,
        points_to_evaluate: Optional[List[Dict]] = None,
        seed: Optional[int] = None,
        max_concurrent: int = 0,
    ) -> None:
        _import_bohb_generator()
        check_metric_and_mode("TuneBOHB", metric, mode)
        if bohb_config is not None and not isinstance(bohb_config, Mapping):
            raise TypeError(f"TuneBOHB's bohb_config must be a dict of BOHB's arguments, got {bohb_config!r}.")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
            raise TypeError(f"TuneBOHB's seed must be an int or None, got {seed!r}.")
        if isinstance(max_concurrent, bool) or not isinstance(max_concurrent, numbers.Integral):
            raise TypeError(f"TuneBOHB's max_concurrent must be an int, got {max_concurrent!r}.")
        check_points_to_evaluate(points_to_evaluate)
        super().__init__(metric=metric, mode=mode)
        self._bohb_config = dict(bohb_config or {})
        self._seed = None if seed is None else int(seed)
        self._max_concurrent = int(max_concurrent)
        self._points_to_evaluate: List[Dict[str, Any]] = [flat_space(p) for p in points_to_evaluate or []]
        self.trial_to_params: Dict[str, Dict[str, Any]] = {}  # trial id -> BOHB's flat config
        # Trial id -> the budgets its results were registered at (each is registered once).
        self._budgets_told: Dict[str, Set[Any]] = {}
        # Trial id -> (config, budgets told) of a trial that errored: a restore may run it again.
        self._errored: Dict[str, tuple] = {}
        self.running: Set[str] = set()
        self.paused: Set[str] = set()
        self._np_state: Optional[tuple] = None  # the seeded numpy generator's state
        self._categories: Dict[str, list] = {}  # "a/b" -> the choice's own values, to hand back
        self._warned_untagged = False
        self._space: Any = None
        if space is not None and not (isinstance(space, Mapping) and not space):
            self._space = self._as_configspace(space, "space")
            self._setup_bohb()

    # -- setup ---------------------------------------------------------------------------
    @staticmethod
    def convert_search_space(spec: Dict) -> Any:
        """``spec``'s domains as a ``ConfigSpace.ConfigurationSpace`` (``"a/b"`` names for
        nested keys); constants are left out, a grid search is an error.

        Example:
            >>> from fasttune.search import randint, uniform
            >>> from fasttune.search.bohb import TuneBOHB
            >>> cs = TuneBOHB.convert_search_space({"opt": {"lr": uniform(0, 1)}, "n": randint(1, 5), "k": 3})
            >>> [(hp.name, hp.lower, hp.upper) for hp in cs.values()]
            [('n', 1, 4), ('opt/lr', 0.0, 1.0)]
        """
        cs = _import_configspace()
        if not isinstance(spec, Mapping):
            raise TypeError(f"TuneBOHB's search space must be a dict, got {type(spec).__name__}.")
        space = cs.ConfigurationSpace()
        for name, value in flat_space(spec).items():
            if isinstance(value, Mapping) and is_grid_dict(value):
                raise ValueError(
                    f"TuneBOHB cannot convert the grid search at {name!r}: BOHB samples its configs; "
                    "use choice([...]) instead.")
            if isinstance(value, Domain):
                space.add(_hyperparameter(cs, name, value))
            elif holds_domain(value):
                raise ValueError(f"TuneBOHB cannot search {name!r}: domains inside lists are not supported.")
        return space

    def _as_configspace(self, space: Any, what: str) -> Any:
        cs = _import_configspace()
        if isinstance(space, cs.ConfigurationSpace):
            return space
        if not isinstance(space, Mapping):
            raise TypeError(
                f"TuneBOHB's {what} must be a fasttune search space (dict) or a "
                f"ConfigSpace.ConfigurationSpace, got {type(space).__name__}.")
        converted = self.convert_search_space(space)
        if not len(converted):
            raise ValueError(f"TuneBOHB's {what} has no domains to search.")
        # Hand back choice()'s own values (ConfigSpace gives numpy scalars for them).
        self._categories = {name: list(value.categories) for name, value in flat_space(space).items()
                            if isinstance(value, Categorical)}
        return converted

    def _setup_bohb(self) -> None:
        cs = _import_configspace()
        if self._metric is None and self._mode:
            self._metric = DEFAULT_METRIC  # only a mode: the anonymous metric, as Ray Tune
        for index, point in enumerate(self._points_to_evaluate):
            try:
                cs.Configuration(self._space, values=point)
            except Exception as exc:  # ConfigSpace raises several kinds for a bad value
                raise ValueError(f"TuneBOHB's points_to_evaluate[{index}] = {point} is no config of the search "
                                 f"space {sorted(self._space)}: {exc}") from exc
        if self._seed is not None:
            import numpy as np

            self._space.seed(self._seed)
            self._np_state = np.random.RandomState(self._seed).get_state()
        self.running, self.paused = set(), set()
        with self._numpy_generator():
            self.bohber = _import_bohb_generator()(self._space, **self._bohb_config)

    @contextlib.contextmanager
    def _numpy_generator(self) -> Iterator[None]:
        """hpbandster draws from numpy's global generator: with a seed, it draws from this
        searcher's own state instead, and the global one is put back afterwards."""
        if self._np_state is None:
            yield
            return
        import numpy as np

        outside = np.random.get_state()
        np.random.set_state(self._np_state)
        try:
            yield
        finally:
            self._np_state = np.random.get_state()
            np.random.set_state(outside)

    def set_search_properties(self, metric: Optional[str], mode: Optional[str], config: Dict, **spec: Any) -> bool:
        """Takes the Tuner's param space, metric and mode.  A searcher with a space of its own
        keeps it and returns ``False``; it still takes the metric and mode it lacks."""
        check_metric_and_mode("TuneBOHB", metric, mode)
        if self.bohber is not None:
            take_metric_and_mode(self, metric, mode)
            return False
        self._space = self._as_configspace(config or {}, "param_space")
        if metric:
            self._metric = metric
        if mode:
            self._mode = mode
        self._setup_bohb()
        return True

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        self._max_concurrent = int(max_concurrent)
        return True

    # -- searching -----------------------------------------------------------------------
    def suggest(self, trial_id: str) -> Optional[Dict]:
        """The next of ``points_to_evaluate``, then BOHB's next config; ``None`` while
        ``max_concurrent`` trials run."""
        if self.bohber is None:
            raise RuntimeError("TuneBOHB has no search space: pass space=... or use it through a Tuner "
                               "with a param_space.")
        if not self._metric or not self._mode:
            raise RuntimeError(f"TuneBOHB needs a metric and a mode (got metric={self._metric!r}, "
                               f"mode={self._mode!r}); pass them to TuneBOHB or to TuneConfig.")
        if 0 < self._max_concurrent <= len(self.running):
            return None
        if self._points_to_evaluate:
            config = self._points_to_evaluate.pop(0)
        else:
            with self._numpy_generator():
                config, _ = self.bohber.get_config(None)  # hpbandster ignores the budget here
            config = plain_python(dict(config))
        self.trial_to_params[trial_id] = copy.deepcopy(config)
        self.running.add(trial_id)
        return nested_config({name: self._own_value(name, value) for name, value in config.items()})

    def _own_value(self, name: str, value: Any) -> Any:
        categories = self._categories.get(name)
        if categories is not None:
            for category in categories:
                if type(category) is type(value) and category == value:
                    return category
            for category in categories:
                if category == value:
                    return category
        return value

    def on_trial_result(self, trial_id: str, result: Dict) -> None:
        """Registers a result tagged with a budget (``result["hyperband_info"]["budget"]``)
        with the model; a trial tagged ``paused`` stops counting as running until its next
        result.  A trial that errored and runs again (a restore's ``restart_errored`` or
        ``resume_errored``) is known again.  A budget a trial registered is not registered
        again (a retry that reports it anew included): the model keeps its first value."""
        info = result.get("hyperband_info")
        errored = self._kept("_errored")
        if trial_id in errored and trial_id not in self.trial_to_params:
            # Restarted or resumed after its error: its results count again, at budgets it has not reported.
            self.trial_to_params[trial_id], self._kept("_budgets_told")[trial_id] = errored.pop(trial_id)
        if info is None:
            if not self._warned_untagged:
                logger.warning("TuneBOHB got a result without 'hyperband_info': use it with the "
                               "HyperBandForBOHB scheduler, or it learns nothing.")
                self._warned_untagged = True
            return
        if info.get("paused"):
            self.running.discard(trial_id)
            self.paused.add(trial_id)
        elif trial_id in self.trial_to_params:
            self.paused.discard(trial_id)
            self.running.add(trial_id)
        if "budget" in info and trial_id in self.trial_to_params:
            if self._metric not in result:
                raise RuntimeError(f"TuneBOHB expected the metric {self._metric!r} in the trial's result, which "
                                   f"has {sorted(result)}; report it from the trainable.")
            told = self._kept("_budgets_told").setdefault(trial_id, set())
            if info["budget"] in told:
                return  # reported again by a trial that runs again: the model has it
            told.add(info["budget"])
            with self._numpy_generator():
                self.bohber.new_result(self.to_wrapper(trial_id, result))

    def to_wrapper(self, trial_id: str, result: Dict) -> _Job:
        """The record of ``trial_id``'s ``result`` that hpbandster's ``new_result`` reads: the
        loss (the metric, negated for ``mode="max"``: BOHB minimises), the budget and the config."""
        value = float(result[self._metric])
        return _Job(value if self._mode == "min" else -value, result["hyperband_info"]["budget"],
                    self.trial_to_params[trial_id])

    def on_trial_complete(self, trial_id: str, result: Optional[Dict] = None, error: bool = False) -> None:
        config = self.trial_to_params.pop(trial_id, None)
        told = self._kept("_budgets_told").pop(trial_id, set())
        if error and config is not None:
            self._kept("_errored")[trial_id] = (config, told)
        elif not error:
            self._kept("_errored").pop(trial_id, None)  # (it ran again and ended: nothing to keep)
        self.running.discard(trial_id)
        self.paused.discard(trial_id)

    def _kept(self, name: str) -> Dict[str, Any]:
        """The dict ``name`` of this searcher's state (an empty one in a state saved before it was kept)."""
        return self.__dict__.setdefault(name, {})

    # Ray Tune's HyperBandForBOHB calls these; fasttune's tags its results instead.
    def on_pause(self, trial_id: str) -> None:
        self.running.discard(trial_id)
        self.paused.add(trial_id)

    def on_unpause(self, trial_id: str) -> None:
        self.paused.discard(trial_id)
        self.running.add(trial_id)

    # -- checkpointing -------------------------------------------------------------------
    def get_state(self) -> Dict[str, Any]:
        """Everything needed to continue the same sequence of suggestions (the config
        generator's models included); ``save`` writes it."""
        return dict(self.__dict__)

    def set_state(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
