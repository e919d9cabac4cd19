"""A trial: one configuration of the trainable, and everything known about its run.

Status, iteration, failures and the metric live in the runner's columnar TrialTable;
a :class:`Trial` is a view over its row, so bookkeeping for 50,000 trials costs numpy
columns rather than 50,000 Python state machines.
"""
from __future__ import annotations

import os
import posixpath
import re
import secrets
import itertools
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

from fasttune import _corelib as core
from fasttune.checkpoint import Checkpoint
from fasttune.error import TuneError
from fasttune._resources import PlacementGroupFactory, resource_dict_to_pg_factory

_STATUS_CODES = {name: code for code, name in enumerate(core.STATUS_NAMES)}
_STATUS_NAMES = core.STATUS_NAMES
_FINISHED_CODES = (_STATUS_CODES["TERMINATED"], _STATUS_CODES["ERROR"])


class ExportFormat:
    """The formats a trainable may export a model in (Ray Tune's names, for
    ``Trainable.export_model`` implementations).

    Example:
        >>> formats = [" Model", "onnx"]
        >>> ExportFormat.validate(formats)
        >>> formats
        ['model', 'onnx']
    """

    CHECKPOINT = "checkpoint"
    MODEL = "model"
    ONNX = "onnx"
    H5 = "h5"

    @staticmethod
    def validate(formats: List[str]) -> None:
        """Normalise each format in ``formats`` in place (stripped, lower case); an unknown one
        raises a TuneError naming it and the known ones."""
        known = (ExportFormat.CHECKPOINT, ExportFormat.MODEL, ExportFormat.ONNX, ExportFormat.H5)
        for i, given in enumerate(formats):
            formats[i] = given.strip().lower()
            if formats[i] not in known:
                raise TuneError(f"Unsupported export format {given!r}; use one of {list(known)}.")


_UNSAFE_PATH_CHARS = re.compile(r"[^\w\-=.,+]")
# What _UNSAFE_PATH_CHARS.sub("_", ...) makes of each ASCII character, for bytes.translate.
_SAFE_ASCII = bytes(code if re.fullmatch(r"[\w\-=.,+]", chr(code)) else ord("_") for code in range(256))

# (experiment_path, its basename) of the last trial made: the trials of a sweep share one
# path, so each new trial finds its experiment's directory name here.
_last_experiment_dir: Tuple[Any, Optional[str]] = (None, None)


def trial_name(trainable_name: str, trial_id: str, custom_name: Optional[str] = None) -> str:
    """A trial's name (its ``str``): its custom name, else ``<trainable>_<trial id>``."""
    return custom_name or f"{trainable_name}_{trial_id}"


def failure_text(name: str, message: str) -> str:
    """The text of the ``TuneError`` a failed trial named ``name`` keeps as its error
    (``message``: the traceback its trainable raised)."""
    return f"Trial {name} failed:\n{message}"


def is_plain_dirname(name: Any) -> bool:
    """Whether ``name`` can be a trial's directory name: one non-empty name in the
    experiment directory, never a path out of it."""
    return (isinstance(name, str) and name not in ("", ".", "..") and os.sep not in name
            and (os.altsep is None or os.altsep not in name) and "\0" not in name)


# Default directory names are cut to this length (Ray Tune's TUNE_MAX_LEN_IDENTIFIER default).
MAX_DIRNAME = 130

_POSIX_PATHS = os.path is posixpath
# What Trial._compact keeps of a finished trial without an error (see _is_only_compact).
_COMPACT_KEYS = frozenset(("trial_id", "_row", "_dirname", "_record", "_source"))


def _join(directory: Any, name: str) -> str:
    """``os.path.join(directory, name)`` for a ``name`` without a path separator (a trial's
    directory name), as POSIX's join makes it without its general checks (a trial's path is
    made once for each trial: 100,000s of them in a simulated sweep)."""
    if _POSIX_PATHS and type(directory) is str and type(name) is str and not name.startswith("/"):
        return directory + name if not directory or directory.endswith("/") else directory + "/" + name
    return os.path.join(directory, name)


class CheckpointResult(NamedTuple):
    """A checkpoint and the metrics reported with it (Ray Tune's ``_TrainingResult``)."""

    checkpoint: Checkpoint
    metrics: Dict[str, Any]


class _TrialField:
    """A per-trial attribute declared on the class, as Ray Tune declares it (a property
    there), so that ``Trial.last_result`` exists for introspection.  Being a non-data
    descriptor, the value in the instance's ``__dict__`` wins: reads and writes cost what
    a plain attribute costs."""

    def __init__(self, doc: str) -> None:
        self.__doc__ = doc

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def __get__(self, instance: Any, owner: Optional[type] = None) -> Any:
        if instance is None:
            return self
        # Not in the instance's __dict__: a compact trial, which _CompactTrial.__getattr__ decodes.
        raise AttributeError(f"{type(instance).__name__!r} object has no attribute {self._name!r}",
                             name=self._name, obj=instance)


class Trial:
    """One trial of an experiment (``ray.tune.experiment.Trial``).

    Example:
        >>> from fasttune.experiment import Trial
        >>> t = Trial("train", config={"lr": 0.1})
        >>> t.status
        'PENDING'
    """

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    TERMINATED = "TERMINATED"
    ERROR = "ERROR"

    _id_prefix = secrets.token_hex(3)[:5]
    _id_counter = itertools.count()

    last_result = _TrialField("The trial's latest result ({} before its first one).")
    error_file = _TrialField("The path of the trial's ``error.txt`` once it has failed, else None.")
    experiment_dir_name = _TrialField("The name of the experiment's directory.")

    def __init__(
        self,
        trainable_name: str,
        config: Optional[Dict[str, Any]] = None,
        trial_id: Optional[str] = None,
        experiment_path: Optional[str] = None,
        evaluated_params: Optional[Dict[str, Any]] = None,
        experiment_tag: str = "",
        placement_group_factory: Optional[PlacementGroupFactory] = None,
        stopping_criterion: Optional[Dict[str, float]] = None,
        max_failures: int = 0,
        trial_name_creator: Optional[Callable[["Trial"], str]] = None,
        trial_dirname_creator: Optional[Callable[["Trial"], str]] = None,
        checkpoint_config: Any = None,
        experiment_dir_name: Optional[str] = None,
    ) -> None:
        self.trainable_name = trainable_name
        self.config: Dict[str, Any] = config if config is not None else {}
        self.trial_id = trial_id or self.generate_id()
        self.experiment_path = experiment_path
        if experiment_dir_name:
            self.experiment_dir_name = experiment_dir_name
        elif experiment_path:
            global _last_experiment_dir
            last_path, self.experiment_dir_name = _last_experiment_dir
            if last_path != experiment_path:
                self.experiment_dir_name = os.path.basename(experiment_path)
                _last_experiment_dir = (experiment_path, self.experiment_dir_name)
        else:
            self.experiment_dir_name = None
        self.evaluated_params = evaluated_params or {}
        self.experiment_tag = experiment_tag
        self.placement_group_factory = placement_group_factory or PlacementGroupFactory([{"CPU": 1}])
        self.stopping_criterion: Dict[str, float] = dict(stopping_criterion or {})
        self.max_failures = max_failures
        self.checkpoint_config = checkpoint_config
        self.last_result: Dict[str, Any] = {}
        self.error_file: Optional[str] = None
        self.error_msg: Optional[str] = None
        self.error: Optional[BaseException] = None
        self.checkpoints: List[Checkpoint] = []  # the kept ones, oldest first; the last is the latest
        # (checkpoint, metrics reported with it) for each kept checkpoint, oldest first.
        self.checkpoint_results: List[Tuple[Checkpoint, Dict[str, Any]]] = []
        self.start_time: Optional[float] = None
        self.end_time: Optional[float] = None
        self.results_seen = 0
        self._trial_dirname_creator = trial_dirname_creator
        self._custom_name: Optional[str] = None
        self._dirname: Optional[str] = None
        self._path: Optional[tuple] = None  # (experiment_path, trial path)
        self._table: Any = None
        self._row = -1
        self._status = Trial.PENDING
        self._iteration = 0
        self._num_failures = 0
        # Last, so the creator may read any attribute of the trial.
        self._custom_name = trial_name_creator(self) if trial_name_creator else None

    @staticmethod
    def lazily_decoded(state: Dict[str, Any]) -> "Trial":
        """A trial whose ``__dict__`` is ``state``: its id, row, directory name, packed
        record and record source (see ``Trial._compact``), the rest decoded on first use
        (a restore's finished trial).  Only such trials have a ``__getattr__``: in CPython
        3.11 one on the class slows every attribute read (~200 a simulated trial)."""
        trial = object.__new__(_CompactTrial)
        trial.__dict__ = state
        return trial

    @classmethod
    def _like(cls, template: "Trial", trial_id: str, config: Dict[str, Any], evaluated_params: Dict[str, Any],
              experiment_tag: str, dirname: str, placement_group_factory: PlacementGroupFactory) -> "Trial":
        """A trial with ``template``'s experiment-wide settings and its own identity: how
        a restore makes 100,000 trials without running ``__init__`` for each.  The
        mutable per-trial state starts empty, as in ``__init__``."""
        trial = object.__new__(cls)
        state = template.__dict__.copy()
        state.update(
            trial_id=trial_id, config=config, evaluated_params=evaluated_params, experiment_tag=experiment_tag,
            placement_group_factory=placement_group_factory, stopping_criterion=dict(template.stopping_criterion),
            last_result={}, checkpoints=[], checkpoint_results=[], _dirname=dirname,
            _path=None if template.experiment_path is None
            else (template.experiment_path, template.experiment_path + os.sep + dirname),
        )
        trial.__dict__ = state
        return trial

    def _compact(self, record: bytes, source: Any) -> None:
        """Keep only the trial's identity, its table row and ``record`` (its packed
        snapshot record, which holds the rest): how a finished trial costs a few hundred
        bytes instead of its config, result and path objects.  ``source`` (a
        ``RecordSource``) holds the experiment's settings and the table (five entries
        make the smallest dict Python has past four) and decodes ``record`` the first
        time anything else of the trial is read (the trial is whole again then).  A
        failed trial keeps its exception and error file as they are (its record has
        only the text)."""
        state = self.__dict__
        compact = {"trial_id": state["trial_id"], "_row": state["_row"], "_dirname": state["_dirname"],
                   "_record": record, "_source": source}
        if state.get("error") is not None or state.get("error_msg"):
            compact.update(error=state.get("error"), error_file=state.get("error_file"))
        if type(self) is Trial:
            self.__class__ = _CompactTrial  # (its __getattr__ decodes the record)
        elif not isinstance(self, _CompactTrial):
            return  # a subclass's trial stays whole: its class has no __getattr__ to decode it
        self.__dict__ = compact

    def _is_compact(self) -> bool:
        return "_source" in self.__dict__

    def _is_only_compact(self) -> bool:
        """Whether this trial holds nothing but what :meth:`_compact` kept of it (no error,
        nothing set on it since): its record then says all there is to it."""
        return self.__dict__.keys() == _COMPACT_KEYS

    def _whole(self) -> "Trial":
        """This trial, or for a compact one a decoded copy, which leaves this one compact:
        for reading every finished trial once (the ResultGrid at the end of a sweep)
        without making them all whole again."""
        if "_source" not in self.__dict__:
            return self
        whole = object.__new__(Trial)  # (whole once expanded: no _CompactTrial)
        whole.__dict__ = dict(self.__dict__)
        self.__dict__["_source"].expand(whole)
        return whole

    def __getstate__(self) -> Dict[str, Any]:
        # A pickled or copied trial is whole: its record source stays with this runner.
        if "_source" in self.__dict__:
            self.__dict__["_source"].expand(self)
        return self.__dict__

    # ---- identity and location -----------------------------------------------------
    @classmethod
    def generate_id(cls) -> str:
        return f"{cls._id_prefix}_{next(cls._id_counter):05d}"

    @property
    def custom_trial_name(self) -> Optional[str]:
        return self._custom_name

    @property
    def storage_dirname(self) -> str:
        if self._dirname is None:
            if self._trial_dirname_creator is not None:
                name = self._trial_dirname_creator(self)
                if not is_plain_dirname(name):
                    raise TuneError(
                        f"trial_dirname_creator returned {name!r} for trial {self.trial_id}; it must "
                        "return a non-empty string without path separators or NUL characters."
                    )
            else:
                tag = self.experiment_tag
                name = f"{self.trainable_name}_{self.trial_id}_{tag}" if tag else f"{self.trainable_name}_{self.trial_id}"
                if name.isascii():
                    if not name.isidentifier():  # (letters, digits and _ only: none to replace)
                        name = name.encode("ascii").translate(_SAFE_ASCII).decode("ascii")  # (the regex's, at a quarter of its cost)
                else:
                    name = _UNSAFE_PATH_CHARS.sub("_", name)
                name = name[:MAX_DIRNAME]
            self._dirname = name
        return self._dirname

    def _rename_dir(self, name: str) -> None:
        """Another directory name, given before the trial writes anything."""
        self._dirname, self._path = name, None

    @property
    def dirname_may_repeat(self) -> bool:
        """Whether another trial's directory name may be this one's: a name the user's
        ``trial_dirname_creator`` gives, or a default name cut before its trial id ends."""
        return (self._trial_dirname_creator is not None
                or len(self.trainable_name) + len(self.trial_id) + 1 > MAX_DIRNAME)

    @property
    def path(self) -> Optional[str]:
        if self.experiment_path is None:
            return None
        # Read on every batch of results: worth keeping instead of joining again.
        if self._path is None or self._path[0] != self.experiment_path:
            self._path = (self.experiment_path, _join(self.experiment_path, self.storage_dirname))
        return self._path[1]

    local_path = path
    logdir = path

    @property
    def local_experiment_path(self) -> Optional[str]:
        """The experiment's directory on this machine (the staging copy when the
        experiment is kept in remote storage)."""
        return self.experiment_path

    local_dir = local_experiment_path  # Ray Tune's older name

    @property
    def checkpoint(self) -> Optional[Checkpoint]:
        """The latest persisted checkpoint, which a restart resumes from."""
        return self.checkpoints[-1] if self.checkpoints else None

    def has_checkpoint(self) -> bool:
        return bool(self.checkpoints)

    @property
    def latest_checkpoint_result(self) -> Optional[CheckpointResult]:
        """The latest checkpoint with the metrics reported with it, or None."""
        return CheckpointResult(*self.checkpoint_results[-1]) if self.checkpoint_results else None

    @property
    def checkpoint_freq(self) -> int:
        return getattr(self.checkpoint_config, "checkpoint_frequency", 0)

    @property
    def checkpoint_at_end(self) -> Optional[bool]:
        return getattr(self.checkpoint_config, "checkpoint_at_end", None)

    # ---- what the trial reported ------------------------------------------------------
    @property
    def has_reported_at_least_once(self) -> bool:
        return bool(self.last_result)

    @property
    def node_ip(self) -> Optional[str]:
        """The IP address of the node that sent the latest result (None before one)."""
        return self.last_result.get("node_ip")

    def get_ray_actor_ip(self) -> Optional[str]:
        """Ray Tune's name for :attr:`node_ip`: fasttune's trials share pooled workers, so
        the address comes from the latest result rather than from a trial's own actor."""
        return self.node_ip

    def get_error(self) -> Optional[str]:
        """The text of the trial's ``error.txt`` (every failure, in order), or None when
        it has not failed.

        Example:
            >>> from fasttune.experiment import Trial
            >>> print(Trial("train").get_error())
            None
        """
        if not self.error_file:
            return None
        try:
            with open(self.error_file, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def get_pickled_error(self) -> Optional[BaseException]:
        """The exception of the trial's latest failure, or None.  fasttune keeps it with
        the trial (after a restore, a ``TuneError`` with its traceback) instead of in an
        ``error.pkl`` file."""
        return self.error

    def get_trainable_cls(self) -> Any:
        """The trainable registered under this trial's ``trainable_name``."""
        from fasttune.registry import get_trainable_cls

        return get_trainable_cls(self.trainable_name)

    # ---- what a scheduler changes ------------------------------------------------------
    def set_config(self, config: Dict[str, Any]) -> None:
        """Replace the trial's config (as PBT-style schedulers do before the trial runs
        again): the trial's next start runs with it."""
        if not isinstance(config, dict):
            raise TypeError(f"set_config needs a dict, got {type(config).__name__}.")
        self.config = config

    def set_experiment_tag(self, experiment_tag: str) -> None:
        """Replace the tag shown beside the trial's name (a directory already made keeps its name)."""
        if not isinstance(experiment_tag, str):
            raise TypeError(f"set_experiment_tag needs a str, got {type(experiment_tag).__name__}.")
        self.experiment_tag = experiment_tag

    # ---- state kept in the TrialTable row -----------------------------------------
    def _attach(self, table: Any, row: int) -> None:
        """Move this trial's state into ``table``'s new row ``row`` (PENDING, its counters
        zero, as ``TrialTable.add`` makes it: the runner calls this as it adds the trial)."""
        status, iteration, failures = self._status, self._iteration, self._num_failures
        self._table, self._row = table, row
        if status != Trial.PENDING:
            table.set_status(row, _STATUS_CODES[status])
        if iteration:
            table.set_iteration(row, iteration)
        for _ in range(failures):
            table.increment_failures(row)

    @property
    def status(self) -> str:
        table = self._table
        if table is None:
            return self._status
        return _STATUS_NAMES[table.get_status(self._row)]

    def set_status(self, status: str) -> None:
        if status not in _STATUS_CODES:
            raise ValueError(f"Unknown trial status {status!r}; use one of {list(_STATUS_CODES)}.")
        if self._table is None:
            self._status = status
        else:
            self._table.set_status(self._row, _STATUS_CODES[status])

    @property
    def num_failures(self) -> int:
        return self._num_failures if self._table is None else self._table.get_failures(self._row)

    def _record_failure(self) -> int:
        if self._table is None:
            self._num_failures += 1
            return self._num_failures
        return self._table.increment_failures(self._row)

    @property
    def iteration(self) -> int:
        return self._iteration if self._table is None else self._table.get_iteration(self._row)

    @property
    def resources(self) -> Dict[str, float]:
        return self.placement_group_factory.required_resources

    # ---- decisions -------------------------------------------------------------------
    def should_stop(self, result: Dict[str, Any]) -> bool:
        """Whether ``result`` (flattened with "/") meets this trial's stopping criterion."""
        if result.get("done"):
            return True
        for criterion, threshold in self.stopping_criterion.items():
            if criterion not in result:
                raise TuneError(
                    f"Stopping criterion {criterion!r} is not in the result of trial "
                    f"{self.trial_id}; its keys are {sorted(result)}. Fix RunConfig(stop=...)."
                )
            if result[criterion] >= threshold:
                return True
        return False

    def should_checkpoint(self) -> bool:
        """Whether the checkpoint frequency asks for a checkpoint at this iteration."""
        frequency = getattr(self.checkpoint_config, "checkpoint_frequency", 0) or 0
        return bool(frequency) and self.iteration > 0 and self.iteration % frequency == 0

    def should_recover(self) -> bool:
        """Whether a failed trial may be retried under ``max_failures`` (-1: always)."""
        return self.max_failures < 0 or self.num_failures <= self.max_failures

    def update_resources(self, resources: Any) -> None:
        if self.status == Trial.RUNNING:
            raise ValueError(
                f"Cannot update the resources of trial {self} while it is RUNNING; pause or "
                "stop it first."
            )
        if isinstance(resources, dict):
            resources = resource_dict_to_pg_factory(resources)
        if not isinstance(resources, PlacementGroupFactory):
            raise TypeError(
                "update_resources takes a dict such as {'cpu': 2} or a PlacementGroupFactory, "
                f"got {type(resources).__name__}."
            )
        self.placement_group_factory = resources

    def is_finished(self) -> bool:
        table = self._table
        if table is None:
            return self._status in (Trial.TERMINATED, Trial.ERROR)
        return table.get_status(self._row) in _FINISHED_CODES  # (the row's code, not its name: asked a few times a trial)

    def __str__(self) -> str:
        return trial_name(self.trainable_name, self.trial_id, self._custom_name)

    def __repr__(self) -> str:
        return str(self)

    def __lt__(self, other: "Trial") -> bool:
        return self.trial_id < other.trial_id


class _CompactTrial(Trial):
    """A trial that may be compact (a finished one kept as its packed snapshot record, see
    ``Trial._compact``; a restore's lazily decoded one): what it does not hold, its
    record source answers (the experiment's settings) or decodes on first use."""

    def __reduce_ex__(self, protocol: Any) -> Any:
        # Pickled and copied as the whole Trial it stands for (see __getstate__): the class
        # is this module's detail, which a pickle must not name.
        return object.__new__, (Trial,), self.__getstate__()

    def __getattr__(self, name: str) -> Any:
        # Reached only for attributes the instance does not have.
        source = self.__dict__.get("_source")
        if source is None:
            raise AttributeError(f"'Trial' object has no attribute {name!r}")
        shared = source.shared
        if name in shared:
            return shared[name]
        source.expand(self)
        return getattr(self, name)
