"""An experiment: a trainable, its param space and how its trials run."""
from __future__ import annotations

import copy
import datetime
import functools
import numbers
import os
import secrets
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from fasttune import _storage
from fasttune._flatten import flatten_dict
from fasttune.error import TuneError
from fasttune._resources import PlacementGroupFactory, resource_dict_to_pg_factory
from fasttune.experiment.trial import Trial
from fasttune.registry import get_trainable_cls, register_under_free_name
from fasttune.stopper import CombinedStopper, FunctionStopper, Stopper

DEFAULT_STORAGE_PATH = "~/fasttune_results"


def resolve_trainable(run: Any) -> Tuple[str, Any]:
    """``(name, trainable)`` for a function, a registered name or a wrapped trainable."""
    if isinstance(run, str):
        return run, get_trainable_cls(run)
    if not callable(run):
        raise TypeError(
            f"The trainable must be a function taking a config dict or the name of a registered "
            f"trainable, got {type(run).__name__}."
        )
    name = getattr(run, "__name__", None) or type(run).__name__
    if name == "<lambda>":
        name = "lambda"
    return register_under_free_name(name, run), run


def _is_threshold(value: Any) -> bool:
    """A number or a bool (Python's or numpy's): what a result value is compared with by ``>=``."""
    return isinstance(value, (numbers.Real, bool, np.bool_))


def _split_stop(stop: Any) -> Tuple[Dict[str, Any], Optional[Stopper]]:
    """``stop`` as Ray Tune takes it: the stopping criterion (a dict of flattened result keys
    to thresholds, reached once ``result[key] >= threshold``; a bool threshold too:
    ``{"done": True}``) and the stopper (a Stopper, a list of them, or a function).

    Example:
        >>> _split_stop({"info": {"converged": True}, "training_iteration": 10})
        ({'info/converged': True, 'training_iteration': 10}, None)
    """
    if stop is None:
        return {}, None
    if isinstance(stop, dict):
        flat = flatten_dict(stop)
        for key, value in flat.items():
            if not _is_threshold(value):
                raise TypeError(
                    f"Stop criterion {key!r} must be a number or a bool threshold (the trial stops once "
                    f"result[{key!r}] >= it), got {value!r}; e.g. stop={{'training_iteration': 10}}."
                )
        # numpy scalars as the Python values they hold: the criterion travels to the workers
        return {key: value.item() if isinstance(value, np.generic) else value for key, value in flat.items()}, None
    if isinstance(stop, list):
        not_stoppers = [type(item).__name__ for item in stop if not isinstance(item, Stopper)]
        if not_stoppers:
            raise TypeError(
                f"A list passed as stop must hold only tune.Stopper objects (they are combined: any of "
                f"them stops), got {', '.join(not_stoppers)}."
            )
        return {}, CombinedStopper(*stop)
    if isinstance(stop, Stopper):
        return {}, stop
    if FunctionStopper.is_valid_function(stop):
        return {}, FunctionStopper(stop)
    raise TypeError(
        f"stop must be a dict of thresholds, a function (trial_id, result) -> bool, a tune.Stopper "
        f"or a list of them, got {type(stop).__name__}."
    )


def log_file_names(log_to_file: Any) -> Tuple[Optional[str], Optional[str]]:
    """``RunConfig(log_to_file=...)`` as the names of the files a trial's stdout and
    stderr go to (None: not captured), as Ray Tune reads it: ``True`` is ``stdout`` and
    ``stderr``; a string names one file for both; a pair names each.  A relative name is
    inside the trial's directory.

    Example:
        >>> log_file_names(True), log_file_names("out.log"), log_file_names(False)
        (('stdout', 'stderr'), ('out.log', 'out.log'), (None, None))
    """
    from fasttune.config import RunConfig  # one rule for what is valid, with its message

    value = RunConfig._validate_log_to_file(log_to_file)
    if value is False:
        return None, None
    if value is True:
        return "stdout", "stderr"
    if isinstance(value, str):
        return value, value
    return value[0], value[1]


class Experiment:
    """The legacy description of one experiment (``ray.tune.Experiment``).

    Example:
        >>> import fasttune as tune
        >>> def train(config):
        ...     tune.report({"score": config["x"]})
        >>> exp = tune.Experiment("demo", train, config={"x": tune.uniform(0, 1)}, num_samples=4)
        >>> exp.spec["num_samples"]
        4
    """

    def __init__(
        self,
        name: Optional[str],
        run: Any,
        *,
        stop: Any = None,
        time_budget_s: Optional[float] = None,
        config: Optional[Dict[str, Any]] = None,
        resources_per_trial: Any = None,
        num_samples: int = 1,
        storage_path: Optional[str] = None,
        storage_filesystem: Any = None,
        sync_config: Any = None,
        checkpoint_config: Any = None,
        trial_name_creator: Optional[Callable[[Trial], str]] = None,
        trial_dirname_creator: Optional[Callable[[Trial], str]] = None,
        log_to_file: Any = False,
        max_failures: int = 0,
        local_dir: Optional[str] = None,
        **unsupported: Any,
    ) -> None:
        if local_dir is not None:
            raise DeprecationWarning(
                f"Experiment(local_dir={local_dir!r}) is no longer supported (Ray Tune deprecated it too): set "
                f"storage_path=... instead, the directory under which the experiment's results go.")
        refuse_unsupported(unsupported, "Experiment")
        if isinstance(checkpoint_config, dict):
            from fasttune.config import CheckpointConfig  # as Ray Tune: a dict is the config's fields

            checkpoint_config = CheckpointConfig(**checkpoint_config)
        self.trainable_name, self.trainable = resolve_trainable(run)
        if config is not None and not isinstance(config, dict):
            raise TypeError(
                f"param_space/config must be a dict of parameter names to values or search-space "
                f"domains, got {type(config).__name__}."
            )
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or (num_samples < 1 and num_samples != -1):
            raise ValueError(f"num_samples must be an int >= 1 (or -1 for unlimited), got {num_samples!r}.")
        self.stopping_criterion, self._stopper = _split_stop(stop)
        self.time_budget_s = time_budget_s
        self.name = name or f"{self.trainable_name}_{datetime.datetime.now():%Y-%m-%d_%H-%M-%S}"
        storage_path = storage_path or os.environ.get("FASTTUNE_STORAGE_PATH", DEFAULT_STORAGE_PATH)
        location = _storage.resolve(storage_path, storage_filesystem)
        #: Where the experiment is kept when that is storage (S3, ...); None: a local directory.
        self.storage: Optional[_storage.ExperimentStorage] = None
        if location is None:
            self.storage_path = os.path.abspath(os.path.expanduser(storage_path))
            self._local_path = os.path.join(self.storage_path, self.name)
        else:
            at = location.join(self.name)
            self.storage = _storage.ExperimentStorage(
                at, _storage.staging_path(at), sync_artifacts=bool(getattr(sync_config, "sync_artifacts", False)),
                sync_artifacts_on_checkpoint=bool(getattr(sync_config, "sync_artifacts_on_checkpoint", True)))
            self.storage_path = os.fspath(storage_path)
            self._local_path = self.storage.staging  # the driver writes here, and uploads
        self.sync_config = sync_config
        resources = resources_per_trial
        if resources is None:
            resources = getattr(self.trainable, "_resources", None)
        self._resources = resources
        self._fixed_factory: Optional[PlacementGroupFactory] = None  # see resources_for
        self._checkpoint_config = checkpoint_config
        _check_checkpoint_policy(self.trainable, checkpoint_config)
        self.max_failures = max_failures
        self.trial_name_creator = trial_name_creator
        self.trial_dirname_creator = trial_dirname_creator
        # Trial ids: <5 hex digits of this experiment>_<counter>.  A restored experiment
        # continues the counter, so the trials it creates anew get the ids (and
        # directories) they had before the interruption.
        self._id_prefix = secrets.token_hex(3)[:5]
        self._id_next = 0
        self.spec: Dict[str, Any] = {
            "run": self.trainable_name,
            "config": config or {},
            "num_samples": num_samples,
            "stop": stop,
            "time_budget_s": time_budget_s,
            "storage_path": self.storage_path,
            "max_failures": max_failures,
            # (stdout file, stderr file) names, as in Ray Tune's spec; each trial's start
            # command carries them to its worker.
            "log_to_file": log_file_names(log_to_file),
        }

    #: The keys of :attr:`spec` that callbacks, searchers and schedulers may be shown.
    PUBLIC_KEYS = {"stop", "num_samples", "time_budget_s"}

    @classmethod
    def from_json(cls, name: str, spec: Dict[str, Any]) -> "Experiment":
        """The experiment ``name`` described by a spec dict (``{"run": trainable, "config":
        {...}, "num_samples": 4, ...}``: ``run`` and the keyword arguments of this class).

        Example:
            >>> import fasttune as tune
            >>> def train(config):
            ...     pass
            >>> tune.Experiment.from_json("demo", {"run": train, "num_samples": 2}).spec["num_samples"]
            2
        """
        if not isinstance(spec, dict) or "run" not in spec:
            raise TuneError(f"The spec of experiment {name!r} needs a 'run' entry (the trainable); got "
                            f"{sorted(spec) if isinstance(spec, dict) else type(spec).__name__}.")
        spec = dict(spec)
        if "env" in spec:  # as Ray Tune: an RLlib-style top-level env belongs to the config
            spec["config"] = dict(spec.get("config") or {}, env=spec.pop("env"))
        if isinstance(spec.get("sync_config"), dict):
            from fasttune.syncer import SyncConfig

            spec["sync_config"] = SyncConfig(**spec["sync_config"])
        run = spec.pop("run")
        try:
            return cls(name, run, **spec)
        except TypeError as exc:
            raise TuneError(f"The spec of experiment {name!r} is not valid: {exc}") from None

    @classmethod
    def get_trainable_name(cls, run_object: Any) -> str:
        """The name a trainable is known by: a str is that name; a class or function, its
        ``_name`` or ``__name__`` (``"lambda"`` for a lambda); a ``functools.partial``, its
        function's.

        Example:
            >>> import fasttune as tune
            >>> tune.Experiment.get_trainable_name(lambda config: None)
            'lambda'
        """
        from fasttune.search.sample import Domain

        if isinstance(run_object, (str, Domain)):
            return run_object
        if not callable(run_object):
            raise TuneError(f"The trainable must be a name (str), a function or a class, got "
                            f"{type(run_object).__name__}.")
        if hasattr(run_object, "_name"):
            return run_object._name
        name = getattr(run_object, "__name__", None)
        if name is None and isinstance(run_object, functools.partial):
            name = getattr(run_object.func, "__name__", None)
        if name == "<lambda>":
            return "lambda"
        if name is None or name.startswith("<"):
            return "DEFAULT"
        return name

    @classmethod
    def register_if_needed(cls, run_object: Any) -> str:
        """The name under which ``run_object`` is registered, registering it first unless
        it is a name already (a free name: another trainable's is not taken over)."""
        if isinstance(run_object, str):
            return run_object
        return register_under_free_name(cls.get_trainable_name(run_object), run_object)

    @property
    def stopper(self) -> Optional[Stopper]:
        """The stopper the experiment's ``stop`` (a function or a Stopper) makes; None for a dict."""
        return self._stopper

    @property
    def checkpoint_config(self) -> Any:
        return self._checkpoint_config

    @property
    def local_path(self) -> str:
        """The local directory the driver writes the experiment to (for an experiment in
        storage, the staging copy it uploads from)."""
        return self._local_path

    @property
    def remote_path(self) -> Optional[str]:
        """Where the experiment is in storage (its URI, or its path on ``storage_filesystem``);
        None for a local experiment."""
        return None if self.storage is None else self.storage.location.uri

    @property
    def path(self) -> str:
        """The experiment's local directory (:attr:`local_path`).  Ray Tune's ``path`` is the
        storage location for an experiment in storage: that is :attr:`remote_path` here."""
        return self._local_path

    @property
    def local_dir(self) -> str:
        raise DeprecationWarning("Experiment.local_dir is no longer supported (Ray Tune deprecated it too): "
                                 "use Experiment.local_path.")

    @property
    def checkpoint_dir(self) -> str:
        raise DeprecationWarning("Experiment.checkpoint_dir is no longer supported (Ray Tune deprecated it too): "
                                 "use Experiment.local_path.")

    @property
    def run_identifier(self) -> str:
        """The name the trainable is registered under."""
        return self.trainable_name

    @property
    def public_spec(self) -> Dict[str, Any]:
        """The entries of :attr:`spec` named in :attr:`PUBLIC_KEYS`."""
        return {key: value for key, value in self.spec.items() if key in self.PUBLIC_KEYS}

    @property
    def location(self) -> str:
        """Where the experiment is, as users name it: its directory, or its URI in storage
        (its path on ``storage_filesystem`` when one was given)."""
        return self.path if self.storage is None else self.storage.location.uri

    @property
    def dir_name(self) -> str:
        return self.name

    def new_trial_id(self) -> str:
        """The id of the next trial of this experiment."""
        trial_id = f"{self._id_prefix}_{self._id_next:05d}"
        self._id_next += 1
        return trial_id

    @property
    def trial_id_state(self) -> Tuple[str, int]:
        """``(prefix, next counter)`` of :meth:`new_trial_id`, saved with the experiment."""
        return self._id_prefix, self._id_next

    def set_trial_id_state(self, prefix: str, next_counter: int) -> None:
        self._id_prefix, self._id_next = str(prefix), int(next_counter)

    def without_trainable_object(self) -> "Experiment":
        """A copy of this experiment that makes the same trials (:meth:`trial_factory`, its
        trial ids going on from here) but holds a function or callable trainable by name
        only: what a searcher's saved state keeps.  A trainable object may hold much (a
        ``Simulation``'s table, ``with_parameters``' data) that would be saved again at
        each snapshot, and a restore is given it again (``Tuner.restore(path,
        trainable=...)``).  A class trainable stays (it pickles by name, or as its code),
        as its ``default_resource_request`` sizes the trials.

        Example:
            >>> import fasttune as tune
            >>> table = list(range(1_000_000))
            >>> def train(config):
            ...     tune.report({"score": table[config["x"]]})
            >>> exp = tune.Experiment("demo", train, config={"x": 3})
            >>> saved = exp.without_trainable_object()
            >>> saved.trainable is None, saved.trainable_name == exp.trainable_name
            (True, True)
            >>> saved.trial_factory({"x": 3}).trainable_name == exp.trial_factory({"x": 3}).trainable_name
            True
        """
        saved = copy.copy(self)
        if not isinstance(self.trainable, type):
            saved.trainable = None
        return saved

    def resources_for(self, config: Dict[str, Any]) -> PlacementGroupFactory:
        resources = self._resources
        if resources is None and isinstance(self.trainable, type) and hasattr(self.trainable, "default_resource_request"):
            # A class trainable's own request applies when the experiment gives none.
            resources = self.trainable.default_resource_request(config)
        elif callable(resources) and not isinstance(resources, PlacementGroupFactory):
            resources = resources(config)
        else:
            # The same for every trial: one factory (it is never changed in place) for all.
            factory = getattr(self, "_fixed_factory", None)  # an Experiment pickled before it had one
            if factory is None:
                factory = self._fixed_factory = resource_dict_to_pg_factory(resources)
            return factory
        return resource_dict_to_pg_factory(resources)

    def trial_factory(
        self,
        config: Dict[str, Any],
        experiment_tag: str = "",
        evaluated_params: Optional[Dict[str, Any]] = None,
        trial_id: Optional[str] = None,
    ) -> Trial:
        """Make the Trial for one resolved config of this experiment (used by searchers)."""
        return Trial(
            self.trainable_name,
            config=config,
            trial_id=trial_id or self.new_trial_id(),
            experiment_path=self.path,
            evaluated_params=evaluated_params,
            experiment_tag=experiment_tag,
            placement_group_factory=self.resources_for(config),
            stopping_criterion=self.stopping_criterion,
            max_failures=self.max_failures,
            trial_name_creator=self.trial_name_creator,
            trial_dirname_creator=self.trial_dirname_creator,
            checkpoint_config=self.checkpoint_config,
        )


def refuse_unsupported(given: Dict[str, Any], where: str) -> None:
    """A clear error for the Ray Tune arguments fasttune does not provide (see docs/compatibility.md)."""
    advice = {"restore": "start trials from one checkpoint: pass its path in the config and load it in "
                         "the trainable",
              "export_formats": "export models at the end: save them from the trainable"}
    named = [name for name in advice if given.get(name) not in (None, [], ())]
    if named:
        raise TypeError(f"{where}({named[0]}=...) is not supported by fasttune; to " + advice[named[0]] + ".")
    if set(given) - set(advice):
        raise TypeError(f"{where}() got arguments fasttune does not support: {sorted(set(given) - set(advice))}.")


def _check_checkpoint_policy(trainable: Any, checkpoint_config: Any) -> None:
    """Periodic and at-end checkpoints are taken by calling a class trainable's
    ``save_checkpoint``; a function has nothing to call, so asking for them is an error."""
    from fasttune.trainable.trainable import is_trainable_class

    if checkpoint_config is None or is_trainable_class(trainable):
        return
    asked = [
        f"{name}={getattr(checkpoint_config, name)!r}"
        for name in ("checkpoint_frequency", "checkpoint_at_end")
        if getattr(checkpoint_config, name, None)
    ]
    if asked:
        raise ValueError(
            f"CheckpointConfig({', '.join(asked)}) needs a class Trainable (fasttune calls its "
            "save_checkpoint); a function trainable checkpoints by passing "
            "checkpoint=tune.Checkpoint.from_directory(...) to tune.report(). Remove those "
            "settings or make the trainable a tune.Trainable subclass."
        )


def convert_to_experiment_list(experiments: Any) -> list:
    if isinstance(experiments, Experiment):
        return [experiments]
    if isinstance(experiments, dict):
        return [Experiment.from_json(name, spec) for name, spec in experiments.items()]
    if isinstance(experiments, (list, tuple)) and all(isinstance(e, Experiment) for e in experiments):
        return list(experiments)
    raise TuneError(
        "run_experiments takes an Experiment, a list of them, or a dict of name to spec dict."
    )
