"""``OptunaSearch``: Optuna's samplers behind the ``Searcher`` interface (``ray.tune.search.optuna``).

The searcher drives an in-memory Optuna study through its ask/tell interface:
``suggest`` asks for a trial, ``on_trial_result`` reports intermediate values
and ``on_trial_complete`` tells the final value (``FAIL`` on error, ``PRUNED``
when the metric is missing).  fasttune search spaces are converted to Optuna
distributions once, when the space is set; Optuna define-by-run functions are
accepted as well.

``optuna`` is an optional dependency: ``pip install "fasttune[optuna]"``.

Example:
    >>> from fasttune.search import loguniform, randint
    >>> from fasttune.search.optuna import OptunaSearch
    >>> searcher = OptunaSearch(
    ...     {"lr": loguniform(1e-4, 1e-1), "net": {"layers": randint(1, 4)}},
    ...     metric="loss", mode="min", seed=0)
    >>> config = searcher.suggest("t1")
    >>> sorted(config), 1 <= config["net"]["layers"] <= 3
    (['lr', 'net'], True)
    >>> searcher.on_trial_complete("t1", {"loss": 0.5})
    >>> [t.value for t in searcher.study.trials]
    [0.5]
"""
from __future__ import annotations

import logging
import pickle
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Set, Tuple, Union

from fasttune._optional import import_optional
from fasttune.result import DEFAULT_METRIC
from fasttune.search.sample import (
    Categorical,
    Domain,
    Float,
    Function,
    Integer,
    LogUniform,
    Quantized,
    Uniform,
    decimal_places,
)
from fasttune.search._space_conversion import holds_domain, path_label
from fasttune.search.searcher import Searcher
from fasttune.search.variant_generator import is_grid_dict

if TYPE_CHECKING:  # pragma: no cover
    import optuna

logger = logging.getLogger(__name__)

__all__ = ["OptunaSearch"]

_DELIMITER = "/"  # as path_label joins nested keys

Path = Tuple[Any, ...]
DefineByRun = Callable[["optuna.trial.Trial"], Optional[Dict[str, Any]]]


def _import_optuna() -> Any:
    """``optuna``, or an ImportError that says how to install it."""
    return import_optional("optuna", "optuna", "OptunaSearch")


# ---------------------------------------------------------------------------
# Search-space conversion
# ---------------------------------------------------------------------------


class _Param:
    """One searched parameter: its Optuna name and distribution, and how values map to configs.

    ``kind`` is ``"plain"`` (the Optuna value is the config value), ``"round"``
    (a float on a ``q`` grid, rounded to ``q``'s decimals as fasttune does) or
    ``"index"`` (Optuna searches the multiple ``k`` log-uniformly and the
    config value is ``k * q``: Optuna has no log distribution with a step).
    """

    __slots__ = ("name", "path", "distribution", "domain", "kind", "q", "decimals", "is_int")

    def __init__(
        self,
        name: str,
        path: Path,
        distribution: Any,
        domain: Optional[Domain] = None,
        kind: str = "plain",
        q: float = 1,
        is_int: bool = False,
    ) -> None:
        self.name = name
        self.path = path
        self.distribution = distribution
        self.domain = domain
        self.kind = kind
        self.q = q
        self.decimals = decimal_places(q) if kind != "plain" and not is_int else None
        self.is_int = is_int

    def __getstate__(self) -> Dict[str, Any]:
        return {slot: getattr(self, slot) for slot in self.__slots__}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        for slot, value in state.items():
            setattr(self, slot, value)

    def decode(self, value: Any) -> Any:
        """The config value for Optuna's value."""
        if self.kind == "plain":
            return value
        if self.kind == "index":
            value = value * self.q
            if self.is_int:
                return int(value)
        value = float(value)
        return round(value, self.decimals) if self.decimals is not None else value

    def encode(self, value: Any) -> Any:
        """Optuna's value for a config value (points to evaluate, evaluated points)."""
        if self.kind == "index":
            return int(round(value / self.q))
        return value


def _unsupported(name: str, what: str, hint: str) -> ValueError:
    return ValueError(f"OptunaSearch cannot search {name!r}: {what}. {hint}")


def _convert_domain(ot: Any, name: str, path: Path, domain: Domain) -> _Param:
    """The Optuna distribution of one fasttune domain (a ValueError if there is none)."""
    dists = ot.distributions
    sampler = domain.get_sampler()
    q = None
    if isinstance(sampler, Quantized):
        q, sampler = sampler.q, sampler.get_sampler()
    if isinstance(domain, Function):
        raise _unsupported(
            name, "sample_from(...) values are computed by a function, which Optuna cannot model",
            "Use a define-by-run function as OptunaSearch(space=fn) for dependent parameters, or "
            "a uniform/loguniform/randint/choice domain.",
        )
    if isinstance(domain, Categorical):
        if domain.is_grid():
            raise _unsupported(
                name, "grid_search(...) is expanded by the variant generator, not sampled",
                "Use choice([...]) to let Optuna pick among the values.",
            )
        if isinstance(sampler, Uniform):
            return _Param(name, path, dists.CategoricalDistribution(list(domain.categories)), domain)
    elif isinstance(domain, Float):
        if isinstance(sampler, LogUniform):
            if q is None:
                return _Param(name, path, dists.FloatDistribution(domain.lower, domain.upper, log=True), domain)
            # Optuna has no log distribution with a step: search the multiple k of q,
            # log-uniform over k is log-uniform over k * q.
            qf = float(q)
            low, high = int(round(domain.lower / qf)), int(round(domain.upper / qf))
            return _Param(name, path, dists.IntDistribution(low, high, log=True), domain, "index", q)
        if isinstance(sampler, Uniform):
            if q is None:
                return _Param(name, path, dists.FloatDistribution(domain.lower, domain.upper), domain)
            return _Param(
                name, path, dists.FloatDistribution(domain.lower, domain.upper, step=float(q)), domain, "round", q
            )
    elif isinstance(domain, Integer):
        if q is None:
            # fasttune's randint/lograndint exclude upper; Optuna's ints include high.
            log = isinstance(sampler, LogUniform)
            if log or isinstance(sampler, Uniform):
                return _Param(name, path, dists.IntDistribution(domain.lower, domain.upper - 1, log=log), domain)
        else:
            # Quantized integers are the multiples of q in [lower, upper], upper included.
            q_int = int(q)
            k_low, k_high = -((-domain.lower) // q_int), domain.upper // q_int
            if isinstance(sampler, Uniform):
                dist = dists.IntDistribution(k_low * q_int, k_high * q_int, step=q_int)
                return _Param(name, path, dist, domain, is_int=True)
            if isinstance(sampler, LogUniform):
                dist = dists.IntDistribution(k_low, k_high, log=True)
                return _Param(name, path, dist, domain, "index", q_int, is_int=True)
    raise _unsupported(
        name, f"{type(domain).__name__} domains sampled with {domain.get_sampler()} have no Optuna distribution",
        "Optuna supports uniform, quniform, loguniform, qloguniform, randint, qrandint, lograndint, "
        "qlograndint and choice; replace randn/qrandn (normal) by a bounded uniform(...) range.",
    )


def _convert_space(ot: Any, space: Mapping) -> Tuple[List[_Param], Set[Path]]:
    """The searched parameters of a (nested) space, and the paths of its constants."""
    params: List[_Param] = []
    constants: Set[Path] = set()

    def walk(value: Any, path: Path) -> None:
        if isinstance(value, Domain) or isinstance(value, ot.distributions.BaseDistribution):
            name = path_label(path)
            if isinstance(value, Domain):
                params.append(_convert_domain(ot, name, path, value))
            else:
                # An Optuna distribution named "a/b" (convert_search_space's names) sets
                # config["a"]["b"], as in Ray Tune.
                nested = tuple(part for key in path for part in (key.split(_DELIMITER) if isinstance(key, str) else (key,)))
                params.append(_Param(name, nested, value))
        elif isinstance(value, Mapping):
            if is_grid_dict(value):
                raise _unsupported(
                    path_label(path), "grid_search(...) is expanded by the variant generator, not sampled",
                    "Use choice([...]) to let Optuna pick among the values.",
                )
            for key, item in value.items():
                walk(item, path + (key,))
        elif isinstance(value, (list, tuple)) and any(holds_domain(item) for item in value):
            raise _unsupported(
                path_label(path), "it is a list holding search-space domains",
                "OptunaSearch searches domains in (nested) dicts only; use a dict such as "
                "{'layer_0': ..., 'layer_1': ...}.",
            )
        else:
            constants.add(path)

    for key, value in space.items():
        walk(value, (key,))
    names: Dict[str, Path] = {}
    for param in params:
        if param.name in names:
            raise ValueError(
                f"OptunaSearch: the parameters at {names[param.name]} and {param.path} both flatten to "
                f"the Optuna name {param.name!r}; rename a key (nested keys are joined with '/')."
            )
        names[param.name] = param.path
    return params, constants


def _standalone_distribution(ot: Any, param: _Param) -> Any:
    """``param``'s distribution, as one whose values are config values without decoding."""
    if param.kind != "index":
        return param.distribution
    # Optuna searches the multiple k of q there: outside OptunaSearch, drop the quantization.
    logger.warning("Optuna has no log distribution with a step: %r loses its quantization.", param.name)
    domain = param.domain
    if param.is_int:
        return ot.distributions.IntDistribution(domain.lower, domain.upper, log=True)
    return ot.distributions.FloatDistribution(domain.lower, domain.upper, log=True)


def _flatten(value: Mapping, prefix: Path = ()) -> Dict[Path, Any]:
    flat: Dict[Path, Any] = {}
    for key, item in value.items():
        if isinstance(item, Mapping) and item:
            flat.update(_flatten(item, prefix + (key,)))
        else:
            flat[prefix + (key,)] = item
    return flat


def _set_path(config: Dict, path: Path, value: Any) -> None:
    for key in path[:-1]:
        config = config.setdefault(key, {})
    config[path[-1]] = value


def _unflatten(flat: Mapping[str, Any]) -> Dict[str, Any]:
    config: Dict[str, Any] = {}
    for name, value in flat.items():
        _set_path(config, tuple(name.split(_DELIMITER)), value)
    return config


# ---------------------------------------------------------------------------
# The searcher
# ---------------------------------------------------------------------------


class OptunaSearch(Searcher):
    """Suggests configs with an Optuna sampler (TPE by default), as Ray Tune's ``OptunaSearch``.

    Args:
        space: The search space: a (nested) dict of fasttune domains
            (``uniform``, ``quniform``, ``loguniform``, ``qloguniform``,
            ``randint``, ``qrandint``, ``lograndint``, ``qlograndint``,
            ``choice``) and/or Optuna distributions, converted to Optuna once;
            or a define-by-run function ``fn(trial)`` that calls
            ``trial.suggest_*`` and may return a dict of constants to add to
            the config.  ``None``: the space comes from ``Tuner(param_space=...)``.
            Nested keys become Optuna names joined with ``"/"``.
        metric: The result key to optimise, or a list of keys (multi-objective).
        mode: ``"min"`` or ``"max"``, or a list of them matching ``metric``.
        points_to_evaluate: Configs (possibly partial) to try first; they are
            enqueued in the study.
        sampler: An ``optuna.samplers.BaseSampler``; default ``TPESampler(seed=seed)``,
            which handles single- and multi-objective studies.
        study_name: The name of the Optuna study (default ``"optuna"``, as Ray Tune's).
        storage: Where the study is kept: an ``optuna.storages.BaseStorage`` or a
            database URL such as ``"sqlite:///optuna.db"``; default in memory.  A study
            of that name already in the storage is continued (its trials inform the
            sampler), and every trial told is persisted there.
        seed: Seed of the default sampler (ignored, with a warning, when
            ``sampler`` is given).
        evaluated_rewards: The metric values of ``points_to_evaluate``
            (a list of values per point for multi-objective): the points are
            added to the study as completed trials instead of being run.

    Raises:
        ImportError: optuna is not installed.
        ValueError: A domain Optuna cannot express (``randn``, ``sample_from``,
            ``grid_search``), or inconsistent arguments.

    Example:
        >>> import fasttune as tune
        >>> from fasttune.search.optuna import OptunaSearch
        >>> searcher = OptunaSearch(seed=0)
        >>> tune_config = tune.TuneConfig(search_alg=searcher, metric="loss", mode="min",
        ...                               num_samples=20)
        >>> # tune.Tuner(train_fn, param_space={"x": tune.uniform(-5, 5)},
        >>> #            tune_config=tune_config).fit()
    """

    def __init__(
        self,
        space: Optional[Union[Dict[str, Any], DefineByRun]] = None,
        metric: Optional[Union[str, List[str]]] = None,
        mode: Optional[Union[str, List[str]]] = None,
        points_to_evaluate: Optional[List[Dict]] = None,
        sampler: Optional["optuna.samplers.BaseSampler"] = None,
        study_name: Optional[str] = None,
        storage: Optional[Union["optuna.storages.BaseStorage", str]] = None,
        seed: Optional[int] = None,
        evaluated_rewards: Optional[List[Any]] = None,
    ) -> None:
        ot = _import_optuna()
        super().__init__(metric=metric, mode=mode)
        if storage is not None and not isinstance(storage, (str, ot.storages.BaseStorage)):
            raise TypeError("storage must be an optuna.storages.BaseStorage or a database URL such as "
                            f"'sqlite:///optuna.db', got {type(storage).__name__}.")
        if study_name is not None and not isinstance(study_name, str):
            raise TypeError(f"study_name must be a str, got {type(study_name).__name__}.")
        self._storage = storage
        self._study_name = study_name or "optuna"  # Ray Tune's fixed name when none is given
        if sampler is not None and not isinstance(sampler, ot.samplers.BaseSampler):
            raise TypeError(
                f"sampler must be an optuna.samplers.BaseSampler instance, got {type(sampler).__name__}."
            )
        if sampler is not None and seed is not None:
            logger.warning("OptunaSearch got both a sampler and a seed; the seed is ignored: seed the sampler itself.")
        if points_to_evaluate is not None:
            if not isinstance(points_to_evaluate, (list, tuple)) or not all(
                isinstance(p, Mapping) for p in points_to_evaluate
            ):
                raise TypeError("points_to_evaluate must be a list of config dicts.")
        if evaluated_rewards is not None:
            if not points_to_evaluate or len(evaluated_rewards) != len(points_to_evaluate):
                raise ValueError(
                    "evaluated_rewards must have one value per point of points_to_evaluate; got "
                    f"{len(evaluated_rewards)} rewards for {len(points_to_evaluate or [])} points."
                )
        self._sampler = sampler
        self._seed = seed
        self._points_to_evaluate: List[Dict] = [dict(p) for p in points_to_evaluate or []]
        self._evaluated_rewards: Optional[List[Any]] = list(evaluated_rewards) if evaluated_rewards else None

        self._space_fn: Optional[DefineByRun] = None
        self._params: Optional[List[_Param]] = None
        self._constants: Set[Path] = set()
        self._distributions: Dict[str, Any] = {}
        self._by_name: Dict[str, _Param] = {}

        self._study: Any = None
        self._ot_trials: Dict[str, Any] = {}
        self._steps: Dict[str, int] = {}
        self._completed: Set[str] = set()

        if space is not None:
            self._set_space(ot, space)
            if self._mode is not None:
                self._setup_study()

    @staticmethod
    def convert_search_space(spec: Dict) -> Dict[str, Any]:
        """The Optuna distributions of ``spec``'s domains, by their ``"a/b"`` names (constants
        left out; ``{}`` when there is no domain), as Ray Tune's ``convert_search_space``.

        The result is a ``space`` for ``OptunaSearch`` (or Optuna's own ``suggest_*``).
        Optuna has no log distribution with a step, so ``qloguniform``/``qlograndint`` lose
        their quantization here, as in Ray Tune (``OptunaSearch`` given the fasttune domains
        keeps it).

        Example:
            >>> from fasttune.search import randint, uniform
            >>> from fasttune.search.optuna import OptunaSearch
            >>> OptunaSearch.convert_search_space({"net": {"layers": randint(1, 4)}, "lr": uniform(0, 1), "seed": 3})
            {'net/layers': IntDistribution(high=3, log=False, low=1, step=1), 'lr': FloatDistribution(high=1.0, log=False, low=0.0, step=None)}
        """
        ot = _import_optuna()
        params, _ = _convert_space(ot, spec)
        return {param.name: _standalone_distribution(ot, param) for param in params}

    # -- setup --------------------------------------------------------------------
    def _set_space(self, ot: Any, space: Union[Mapping, DefineByRun]) -> None:
        if callable(space) and not isinstance(space, Mapping):
            self._space_fn = space
            self._params = []
            return
        if not isinstance(space, Mapping):
            raise TypeError(
                "space must be a dict of search-space domains (or Optuna distributions) or a "
                f"define-by-run function fn(trial); got {type(space).__name__}."
            )
        self._params, self._constants = _convert_space(ot, space)
        self._distributions = {p.name: p.distribution for p in self._params}
        self._by_name = {p.name: p for p in self._params}

    @property
    def _has_space(self) -> bool:
        return self._space_fn is not None or bool(self._params)

    @property
    def study(self) -> Any:
        """The ``optuna.Study`` being optimised (``None`` until space, metric and mode are known)."""
        return self._study

    def _directions(self) -> Dict[str, Any]:
        if isinstance(self._mode, (list, tuple)):
            if "obs" in self._mode:
                raise ValueError(
                    "OptunaSearch optimises every metric it is given; mode 'obs' (observe only) is not "
                    "supported. Drop the observed metric from metric/mode."
                )
            return {"directions": ["minimize" if m == "min" else "maximize" for m in self._mode]}
        return {"direction": "minimize" if self._mode == "min" else "maximize"}

    def _setup_study(self) -> None:
        ot = _import_optuna()
        if self._metric is None:
            if isinstance(self._mode, (list, tuple)):
                raise ValueError("OptunaSearch: with a list of modes (multi-objective), metric must be a list too.")
            self._metric = DEFAULT_METRIC
        directions = self._directions()
        sampler = self._sampler if self._sampler is not None else ot.samplers.TPESampler(seed=self._seed)
        self._study = ot.create_study(sampler=sampler, pruner=ot.pruners.NopPruner(), storage=self._storage,
                                      study_name=self._study_name, load_if_exists=True, **directions)
        if not self._points_to_evaluate:
            return
        if self._evaluated_rewards is not None:
            if self._space_fn is not None:
                raise TypeError(
                    "evaluated_rewards cannot be used with a define-by-run space; pass a dict of "
                    "domains as space (or use Tuner(param_space=...))."
                )
            for point, reward in zip(self._points_to_evaluate, self._evaluated_rewards):
                self.add_evaluated_point(point, reward)
        else:
            for point in self._points_to_evaluate:
                self._study.enqueue_trial(self._to_optuna_params(point, "points_to_evaluate"))

    def set_search_properties(self, metric: Optional[str], mode: Optional[str], config: Dict, **spec: Any) -> bool:
        """Takes the param space, metric and mode from the Tuner.

        Returns ``False`` when the searcher already has a space (the
        ``param_space`` must then hold no domains); metric and mode the
        searcher lacks are still taken from the Tuner.
        """
        if self._has_space:
            if self._study is None:
                self._take_metric_mode(metric, mode)
                if self._mode is not None:
                    self._setup_study()
            return False
        self._set_space(_import_optuna(), config or {})
        self._take_metric_mode(metric, mode)
        if self._mode is not None:
            self._setup_study()
        return True

    def _take_metric_mode(self, metric: Any, mode: Any) -> None:
        if self._metric is None and metric is not None:
            self._metric = metric
        if self._mode is None and mode is not None:
            self._mode = mode
        Searcher.__init__(self, self._metric, self._mode)  # validates the pair

    def _check_ready(self) -> None:
        if not self._has_space:
            raise RuntimeError(
                "OptunaSearch has no search space: pass space= to OptunaSearch, or domains such as "
                "tune.uniform(...) in Tuner(param_space=...)."
            )
        if self._study is None:
            raise RuntimeError(
                f"OptunaSearch has no metric/mode (metric={self._metric!r}, mode={self._mode!r}): pass them "
                "to OptunaSearch or to TuneConfig(metric=..., mode=...)."
            )

    def _to_optuna_params(self, point: Mapping, what: str, strict: bool = True) -> Dict[str, Any]:
        """A config (nested or with "/" names) as Optuna's flat, encoded params.

        Keys that are not parameters are an error when ``strict``, else skipped
        (a finished trial's config holds constants the searcher never saw).
        """
        flat = _flatten(point)
        if self._space_fn is not None:
            return {path_label(path): value for path, value in flat.items()}
        params: Dict[str, Any] = {}
        for path, value in flat.items():
            name = path_label(path)
            param = self._by_name.get(name)
            if param is None:
                if path in self._constants or isinstance(value, Mapping) or not strict:
                    continue
                raise ValueError(
                    f"{what}: {name!r} is not a parameter of the search space "
                    f"({', '.join(self._by_name) or 'empty'})."
                )
            if param.domain is not None and not param.domain.is_valid(value):
                raise ValueError(f"{what}: {name}={value!r} is outside its domain {param.domain!r}.")
            params[name] = param.encode(value)
        return params

    # -- searching ----------------------------------------------------------------
    def suggest(self, trial_id: str) -> Optional[Dict]:
        """Asks the study for a trial and returns its config (nested as the space)."""
        if self._study is None:
            self._check_ready()
        trial = self._ot_trials.get(trial_id)
        if self._space_fn is not None:
            if trial is None:
                trial = self._ot_trials[trial_id] = self._study.ask()
            extra = self._space_fn(trial)
            if extra is not None and not isinstance(extra, Mapping):
                raise TypeError(
                    "The define-by-run function must return None or a dict of constants, got "
                    f"{type(extra).__name__}."
                )
            values = trial.params
            if extra:
                values.update(extra)
            return _unflatten(values)
        if trial is None:
            trial = self._ot_trials[trial_id] = self._study.ask(self._distributions)
        values = trial.params
        config: Dict[str, Any] = {}
        for param in self._params:
            _set_path(config, param.path, param.decode(values[param.name]))
        return config

    def on_trial_result(self, trial_id: str, result: Dict) -> None:
        """Reports the metric as an intermediate value (single-objective only, as in Optuna)."""
        if isinstance(self._metric, (list, tuple)):
            return
        trial = self._ot_trials.get(trial_id)
        if trial is None:
            return
        value = result.get(self._metric)
        if value is None:
            return
        step = result.get("training_iteration")
        if step is None:
            step = self._steps.get(trial_id, 0) + 1
        self._steps[trial_id] = step
        try:
            trial.report(float(value), int(step))
        except (TypeError, ValueError) as exc:
            logger.debug("OptunaSearch: not reporting %r for trial %s: %s", value, trial_id, exc)

    def on_trial_complete(self, trial_id: str, result: Optional[Dict] = None, error: bool = False) -> None:
        """Tells the study the trial's final value(s); FAIL on error, PRUNED without the metric."""
        trial = self._ot_trials.pop(trial_id, None)
        self._steps.pop(trial_id, None)
        if trial is None:
            if trial_id in self._completed:
                logger.warning("OptunaSearch: trial %s completed twice; ignoring the second time.", trial_id)
            return
        self._completed.add(trial_id)
        ot = _import_optuna()
        values: Any = None
        if result:
            if isinstance(self._metric, (list, tuple)):
                values = [result.get(m) for m in self._metric]
                if any(v is None for v in values):
                    values = None
            else:
                values = result.get(self._metric)
        if values is None:
            state = ot.trial.TrialState.FAIL if error else ot.trial.TrialState.PRUNED
        else:
            state = ot.trial.TrialState.COMPLETE
        try:
            self._study.tell(trial, values, state=state)
        except Exception as exc:  # e.g. NaN or a non-numeric metric: do not crash the experiment
            logger.warning("OptunaSearch: trial %s reported %r, which Optuna rejects (%s); it is "
                           "recorded as failed.", trial_id, values, exc)
            self._study.tell(trial, state=ot.trial.TrialState.FAIL)

    def add_evaluated_point(
        self,
        parameters: Dict,
        value: Any,
        error: bool = False,
        pruned: bool = False,
        intermediate_values: Optional[List[float]] = None,
    ) -> None:
        """Adds a config evaluated elsewhere to the study as a finished trial."""
        self._check_ready()
        if self._space_fn is not None:
            raise TypeError(
                "add_evaluated_point (and evaluated_rewards) cannot be used with a define-by-run space; "
                "pass a dict of domains as space."
            )
        ot = _import_optuna()
        TrialState = ot.trial.TrialState
        state = TrialState.FAIL if error else TrialState.PRUNED if pruned else TrialState.COMPLETE
        params = self._to_optuna_params(parameters, "add_evaluated_point", strict=False)
        kwargs: Dict[str, Any] = {}
        if state != TrialState.FAIL:
            if isinstance(self._metric, (list, tuple)):
                if not isinstance(value, (list, tuple)) or len(value) != len(self._metric):
                    raise ValueError(
                        f"With metrics {list(self._metric)}, each reward must be a list of "
                        f"{len(self._metric)} values, got {value!r}."
                    )
                kwargs["values"] = [float(v) for v in value]
            elif state == TrialState.COMPLETE:
                kwargs["value"] = float(value)
        trial = ot.trial.create_trial(
            state=state,
            params=params,
            distributions={name: self._distributions[name] for name in params},
            intermediate_values=dict(enumerate(intermediate_values)) if intermediate_values else None,
            **kwargs,
        )
        self._study.add_trial(trial)

    # -- checkpointing --------------------------------------------------------------
    def get_state(self) -> Dict[str, Any]:
        """Everything needed to continue: the study (with its sampler) and the live trials.

        A define-by-run function is kept only if it pickles; otherwise restore
        into an ``OptunaSearch(space=fn)`` built with the same function.
        """
        space_fn = self._space_fn
        if space_fn is not None:
            try:
                pickle.dumps(space_fn)
            except Exception:
                space_fn = None
        return {
            "metric": self._metric,
            "mode": self._mode,
            "seed": self._seed,
            "space_fn": space_fn,
            "define_by_run": self._space_fn is not None,
            "params": self._params,
            "constants": self._constants,
            "points_to_evaluate": self._points_to_evaluate,
            "evaluated_rewards": self._evaluated_rewards,
            "study": self._study,
            "ot_trials": self._ot_trials,
            "steps": self._steps,
            "completed": self._completed,
        }

    def set_state(self, state: Dict[str, Any]) -> None:
        if state["define_by_run"]:
            space_fn = state["space_fn"] or self._space_fn
            if space_fn is None:
                raise ValueError(
                    "This OptunaSearch state used a define-by-run function that could not be pickled; "
                    "restore into OptunaSearch(space=fn) built with the same function."
                )
            self._space_fn, self._params = space_fn, []
            self._distributions, self._by_name, self._constants = {}, {}, set()
        else:
            self._space_fn = None
            self._params = state["params"]
            self._constants = state["constants"]
            self._distributions = {p.name: p.distribution for p in self._params or []}
            self._by_name = {p.name: p for p in self._params or []}
        self._metric, self._mode, self._seed = state["metric"], state["mode"], state["seed"]
        self._points_to_evaluate = state["points_to_evaluate"]
        self._evaluated_rewards = state["evaluated_rewards"]
        self._study = state["study"]
        self._sampler = self._study.sampler if self._study is not None else self._sampler
        self._ot_trials = state["ot_trials"]
        self._steps = state["steps"]
        self._completed = state["completed"]
