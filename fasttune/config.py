"""Run-level settings: ``RunConfig``, ``CheckpointConfig`` and ``FailureConfig``.

Example:
    >>> from fasttune.config import RunConfig, CheckpointConfig, FailureConfig
    >>> rc = RunConfig(
    ...     name="exp",
    ...     storage_path="/tmp/fasttune_doc",
    ...     stop={"training_iteration": 10},
    ...     checkpoint_config=CheckpointConfig(num_to_keep=2),
    ...     failure_config=FailureConfig(max_failures=3),
    ... )
    >>> rc.storage_path, rc.checkpoint_config.num_to_keep, rc.failure_config.max_failures
    ('/tmp/fasttune_doc', 2, 3)
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from fasttune._storage import is_uri
from fasttune._storage import resolve as resolve_location
from fasttune.syncer import SyncConfig

__all__ = ["RunConfig", "CheckpointConfig", "FailureConfig", "DEFAULT_STORAGE_PATH"]

#: Where results go when neither ``RunConfig.storage_path`` nor the
#: ``FASTTUNE_STORAGE_PATH`` environment variable says otherwise.
DEFAULT_STORAGE_PATH = "~/fasttune_results"
STORAGE_PATH_ENV = "FASTTUNE_STORAGE_PATH"


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@dataclass
class CheckpointConfig:
    """How many checkpoints to keep, how to rank them and when to take them.

    Args:
        num_to_keep: Keep at most this many checkpoints per trial (the best by
            ``checkpoint_score_attribute``, or the most recent when that is
            ``None``). ``None`` keeps all.
        checkpoint_score_attribute: Reported metric used to rank checkpoints.
        checkpoint_score_order: ``"max"`` or ``"min"``: which end is best.
        checkpoint_frequency: Checkpoint a class trainable every N iterations;
            ``0`` disables periodic checkpoints.
        checkpoint_at_end: Checkpoint a class trainable when it finishes; ``None``
            (the default) means True for a class trainable run by a ``Tuner`` (as
            in Ray Tune) and False in ``tune.run``.

    Example:
        >>> CheckpointConfig(num_to_keep=3, checkpoint_score_attribute="acc").checkpoint_score_order
        'max'
    """

    num_to_keep: Optional[int] = None
    checkpoint_score_attribute: Optional[str] = None
    checkpoint_score_order: str = "max"
    checkpoint_frequency: int = 0
    checkpoint_at_end: Optional[bool] = None

    def __post_init__(self) -> None:
        if self.num_to_keep is not None:
            if not _is_int(self.num_to_keep) or self.num_to_keep < 1:
                raise ValueError(
                    f"CheckpointConfig.num_to_keep={self.num_to_keep!r} is not valid; "
                    f"use None to keep every checkpoint or an int >= 1."
                )
            self.num_to_keep = int(self.num_to_keep)
        if self.checkpoint_score_attribute is not None and not isinstance(
            self.checkpoint_score_attribute, str
        ):
            raise TypeError(
                f"CheckpointConfig.checkpoint_score_attribute must be None or the name "
                f"of a reported metric (str), got {self.checkpoint_score_attribute!r}."
            )
        if self.checkpoint_score_order not in ("max", "min"):
            raise ValueError(
                f"CheckpointConfig.checkpoint_score_order="
                f"{self.checkpoint_score_order!r} is not valid; use 'max' or 'min'."
            )
        if not _is_int(self.checkpoint_frequency) or self.checkpoint_frequency < 0:
            raise ValueError(
                f"CheckpointConfig.checkpoint_frequency={self.checkpoint_frequency!r} "
                f"is not valid; use an int >= 0 (0 turns periodic checkpoints off)."
            )
        self.checkpoint_frequency = int(self.checkpoint_frequency)
        if self.checkpoint_at_end is not None and not isinstance(
            self.checkpoint_at_end, bool
        ):
            raise TypeError(
                f"CheckpointConfig.checkpoint_at_end must be True, False or None, got "
                f"{self.checkpoint_at_end!r}."
            )


@dataclass
class FailureConfig:
    """What to do when a trial raises.

    Args:
        max_failures: Retry a failed trial up to this many times (from its
            latest checkpoint). ``-1`` retries without limit; ``0`` never.
        fail_fast: ``True`` stops the whole sweep on the first trial error;
            ``"raise"`` additionally re-raises that error in the driver
            (useful under a debugger). Requires ``max_failures=0``.

    Example:
        >>> FailureConfig(max_failures=-1).max_failures
        -1
        >>> FailureConfig(fail_fast="raise").fail_fast
        'raise'
    """

    max_failures: int = 0
    fail_fast: Union[bool, str] = False

    def __post_init__(self) -> None:
        if not _is_int(self.max_failures) or self.max_failures < -1:
            raise ValueError(
                f"FailureConfig.max_failures={self.max_failures!r} is not valid; use "
                f"an int >= 0, or -1 to retry without limit."
            )
        self.max_failures = int(self.max_failures)
        if isinstance(self.fail_fast, str):
            if self.fail_fast.lower() != "raise":
                raise ValueError(
                    f"FailureConfig.fail_fast={self.fail_fast!r} is not valid; use "
                    f"True, False or the string 'raise'."
                )
            self.fail_fast = "raise"
        elif not isinstance(self.fail_fast, bool):
            raise ValueError(
                f"FailureConfig.fail_fast={self.fail_fast!r} is not valid; use True, "
                f"False or the string 'raise'."
            )
        if self.fail_fast and self.max_failures != 0:
            raise ValueError(
                f"FailureConfig(fail_fast={self.fail_fast!r}) cannot retry trials; set "
                f"max_failures=0 (got {self.max_failures}) or turn fail_fast off."
            )


def _default_storage_path() -> str:
    return os.environ.get(STORAGE_PATH_ENV) or DEFAULT_STORAGE_PATH


StopType = Union[Dict[str, Any], Callable[[str, Dict[str, Any]], bool], Any]


def _sub_config(field: str, value: Any, cls: type, kind: str, example: str) -> Any:
    """``value`` of ``RunConfig.<field>``: ``cls()`` for None, else it must be a ``cls``."""
    if value is None:
        return cls()
    if not isinstance(value, cls):
        raise TypeError(
            f"RunConfig.{field} must be a {kind}, got {type(value).__name__}; e.g. {field}={example}."
        )
    return value


#: ``RunConfig.results_store``'s values: Ray Tune's per-trial files, or one store for all.
RESULTS_STORES = ("per_trial", "experiment")


@dataclass
class RunConfig:
    """Where and how a sweep runs: name, storage, stopping, callbacks, logging.

    Args:
        name: Experiment name, used as the directory under ``storage_path``.
            ``None`` lets the Tuner generate one.
        storage_path: Root directory for results. Defaults to
            ``$FASTTUNE_STORAGE_PATH`` if set, else ``~/fasttune_results``.
            A local path is stored expanded and absolute.  A URI that
            ``pyarrow.fs`` understands (``s3://bucket/prefix``, with
            ``?endpoint_override=host:port&scheme=http`` for an S3-compatible
            server, ``gs://...``, ``file:///...``) keeps the experiment in storage:
            the driver uploads its files from a local staging copy and each worker
            uploads the checkpoints it makes (``pip install fasttune[storage]``).
        stop: Stopping criterion, one of: a dict ``{metric: threshold}`` (stop
            once ``result[metric] >= threshold``; nested dicts name nested keys), a
            ``callable(trial_id, result) -> bool``, a :class:`fasttune.Stopper`, or
            a list of Stoppers (any of them stops).
        callbacks: List of callback objects.
        verbose: Console verbosity as in Ray Tune: 0 silent, 1 status updates,
            2 also a line per finished trial, 3 also detailed results;
            ``None`` is Ray Tune's default, 3. A bool counts as its int
            (``False``: 0), and Ray Tune's ``Verbosity`` values are ints.
        failure_config: ``FailureConfig``; ``None`` means ``FailureConfig()``.
        checkpoint_config: ``CheckpointConfig``; ``None`` means
            ``CheckpointConfig()``.
        log_to_file: ``False``; ``True`` to copy what each trial prints to
            stdout and stderr into the files ``stdout`` and ``stderr`` of its
            directory; a file name for both; or a ``(stdout_file,
            stderr_file)`` pair.  Relative names are in the trial's directory,
            an absolute path is used as it is; the files are appended to (a
            restarted trial adds to them), and the output still shows where
            worker output shows.
        progress_reporter: A ``tune.ProgressReporter`` (e.g. ``tune.CLIReporter``)
            for the live progress; ``None``: chosen for the terminal, notebook
            or log the sweep runs in.
        sync_config: ``tune.SyncConfig``; ``None`` means ``SyncConfig()``.  It
            changes nothing while ``storage_path`` is local (see ``fasttune.syncer``).
        storage_filesystem: A ``pyarrow.fs.FileSystem`` that ``storage_path``
            (then ``bucket/prefix``, not a URI) is a path on; an fsspec filesystem
            works wrapped in ``pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(fs))``.
        local_dir: Deprecated, as in Ray Tune: giving it raises ``DeprecationWarning``
            (an exception here, as there) pointing to ``storage_path``.
        results_store: fasttune's own, keyword only.  ``"per_trial"`` (the default):
            Ray Tune's layout, a directory per trial with ``params.json``,
            ``result.json``, ``progress.csv`` and the TensorBoard file.
            ``"experiment"``: for sweeps of very many small trials, all trials'
            results go to a few append-only files, ``<experiment>/results/*.jsonl``
            (``ResultGrid.from_path``, ``ExperimentAnalysis``, ``fasttune ls/plot``
            and ``Tuner.restore`` read them), no default loggers are added, and a
            trial's directory is made only when something goes into it (a
            checkpoint, ``error.txt``, captured output, or the trial asking for it
            with ``tune.get_context().get_trial_dir()``): trials then run in their
            worker's working directory, as with ``RAY_CHDIR_TO_TRIAL_DIR=0``, and a
            ``LoggerCallback`` of your own that writes into ``trial.path`` makes the
            directory itself.  ``tune.run(resume=...)`` and ``Tuner.restore`` go on
            in the layout the experiment was run with.

    Example:
        >>> import os
        >>> rc = RunConfig(storage_path="~/runs")
        >>> rc.storage_path == os.path.expanduser("~/runs")
        True
        >>> RunConfig(verbose=5)
        Traceback (most recent call last):
        ...
        ValueError: RunConfig.verbose=5 is not valid; use None or an int from 0 (silent) to 3 (most detail).
    """

    # Ray Tune's field order: a RunConfig built positionally means the same on both.
    name: Optional[str] = None
    storage_path: Optional[Union[str, "os.PathLike[str]"]] = None
    storage_filesystem: Optional[Any] = None
    failure_config: Optional[FailureConfig] = None
    checkpoint_config: Optional[CheckpointConfig] = None
    sync_config: Optional[SyncConfig] = None
    verbose: Optional[int] = None
    stop: Optional[StopType] = None
    callbacks: Optional[List[Any]] = None
    progress_reporter: Optional[Any] = None
    log_to_file: Union[bool, str, Tuple[str, str]] = False
    # Deprecated in Ray Tune, which refuses it: kept so that the refusal says what to use.
    local_dir: Optional[str] = None
    # fasttune's: after Ray Tune's fields, so that positional RunConfigs mean the same.
    results_store: str = "per_trial"

    def __post_init__(self) -> None:
        if self.local_dir is not None:
            raise DeprecationWarning(
                f"RunConfig(local_dir={self.local_dir!r}) is no longer supported (Ray Tune deprecated it "
                f"too): set RunConfig(storage_path=...) instead, the directory under which each "
                f"experiment's results go."
            )
        if self.name is not None:
            if not isinstance(self.name, str):
                raise TypeError(
                    f"RunConfig.name must be None or a str, got "
                    f"{type(self.name).__name__} {self.name!r}."
                )
            if not self.name or self.name in (".", "..") or "/" in self.name or (
                os.sep in self.name
            ):
                raise ValueError(
                    f"RunConfig.name={self.name!r} is not valid; it becomes a directory "
                    f"name under storage_path, so give a non-empty name without path "
                    f"separators (put parent directories in storage_path instead)."
                )

        self.storage_path = self._resolve_storage_path(self.storage_path, self.storage_filesystem)
        self.stop = self._validate_stop(self.stop)

        if self.callbacks is not None:
            if not isinstance(self.callbacks, (list, tuple)):
                raise TypeError(
                    f"RunConfig.callbacks must be None or a list of callbacks, got "
                    f"{type(self.callbacks).__name__}; wrap a single callback in a "
                    f"list: callbacks=[cb]."
                )
            self.callbacks = list(self.callbacks)

        if isinstance(self.verbose, bool):
            self.verbose = int(self.verbose)  # Ray Tune takes a bool as the int it is: False silent, True 1
        if self.verbose is not None:
            verbose = self.verbose
            if not _is_int(verbose) or not 0 <= verbose <= 3:
                raise ValueError(
                    f"RunConfig.verbose={verbose!r} is not valid; use None or an int "
                    f"from 0 (silent) to 3 (most detail)."
                )

        self.failure_config = _sub_config("failure_config", self.failure_config, FailureConfig,
                                          "FailureConfig", "FailureConfig(max_failures=2)")
        self.checkpoint_config = _sub_config("checkpoint_config", self.checkpoint_config, CheckpointConfig,
                                             "CheckpointConfig", "CheckpointConfig(num_to_keep=2)")
        self.sync_config = _sub_config("sync_config", self.sync_config, SyncConfig,
                                       "tune.SyncConfig", "tune.SyncConfig(sync_period=60)")

        self.log_to_file = self._validate_log_to_file(self.log_to_file)
        if self.results_store not in RESULTS_STORES:
            raise ValueError(f"RunConfig.results_store={self.results_store!r} is not valid; use one of "
                             f"{list(RESULTS_STORES)}.")
        if self.progress_reporter is not None:
            from fasttune.progress_reporter import check_progress_reporter

            check_progress_reporter(self.progress_reporter, "RunConfig.progress_reporter")

    @staticmethod
    def _resolve_storage_path(path: Any, filesystem: Any = None) -> str:
        if path is None:
            if filesystem is not None:
                raise ValueError(
                    "RunConfig.storage_filesystem needs a storage_path: the path on that filesystem "
                    "(bucket/prefix) under which experiments go.")
            path = _default_storage_path()
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(
                f"RunConfig.storage_path must be None, a str or a path-like object, "
                f"got {type(path).__name__} {path!r}."
            )
        path = os.fspath(path)
        if not isinstance(path, str):
            path = os.fsdecode(path)
        if not path:
            raise ValueError(
                "RunConfig.storage_path is an empty string; give a directory path or "
                "None for the default."
            )
        if filesystem is not None or is_uri(path):
            # In storage: kept as given; pyarrow checks it now, storage itself when fit() starts.
            resolve_location(path, filesystem)
            return path
        return os.path.abspath(os.path.expanduser(path))

    @staticmethod
    def _validate_stop(stop: Any) -> Any:
        if stop is None:
            return None
        if isinstance(stop, Mapping):
            bad = [k for k in stop if not isinstance(k, str)]
            if bad:
                raise TypeError(
                    f"RunConfig.stop dict keys must be metric names (str), got "
                    f"{bad[0]!r}."
                )
            return dict(stop)
        if callable(stop):
            # A Stopper or a function (trial_id, result) -> bool.  As in Ray Tune, a callable
            # with a stop_all() that is no Stopper is refused when the experiment is built.
            return stop
        from fasttune.stopper import Stopper

        if isinstance(stop, list) and all(isinstance(item, Stopper) for item in stop):
            return stop  # combined as Ray Tune does: any of them stops
        raise TypeError(
            f"RunConfig.stop got {type(stop).__name__} {stop!r}; it accepts a dict "
            f"{{metric: threshold}}, a function (trial_id, result) -> bool, a "
            f"fasttune.Stopper (with its stop_all() method), or a list of Stoppers."
        )

    @staticmethod
    def _validate_log_to_file(value: Any) -> Union[bool, str, Tuple[str, str]]:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value:
            return value
        if (
            isinstance(value, (tuple, list))
            and len(value) == 2
            and all(isinstance(v, str) and v for v in value)
        ):
            return (value[0], value[1])
        raise ValueError(
            f"RunConfig.log_to_file={value!r} is not valid; use True/False, a file "
            f"name for both stdout and stderr, or a (stdout_file, stderr_file) pair."
        )
