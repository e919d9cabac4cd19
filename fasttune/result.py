"""``Result``: the outcome of one trial (last metrics, checkpoint, error, directory).

Example:
    >>> from fasttune.result import Result
    >>> r = Result(metrics={"loss": 0.1, "config": {"lr": 0.01}},
    ...            checkpoint=None, error=None, path="/tmp/exp/trial_0")
    >>> r.config
    {'lr': 0.01}
    >>> r.metrics["loss"]
    0.1
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, Union

from fasttune._json_nesting import MAX_JSON_NESTING, nested_deeper_than, parse_json  # noqa: F401 - re-exported
from fasttune._optional import import_optional
from fasttune._results_store import STORE_DIR, segment_number, stored_trial
from fasttune.checkpoint import Checkpoint, checkpoint_in_storage
from fasttune.error import TuneError

__all__ = ["Result"]

logger = logging.getLogger(__name__)

# ---- Ray Tune's result keys and file names (``ray.tune.result``), with Ray Tune's values --------
# Scripts import these to name metrics (``stop={TRAINING_ITERATION: 10}``); the engine fills
# the keys marked "auto" in every result (AUTO_RESULT_KEYS: timesteps and episodes only where
# docs/compatibility.md says).

# Keys a trainable may report.
DONE = "done"  # the trial is finished (auto: False until then)
SHOULD_CHECKPOINT = "should_checkpoint"  # a class trainable saves a checkpoint after this result
DEFAULT_METRIC = "_metric"  # the metric's name where a script names none
EPISODE_REWARD_MEAN = "episode_reward_mean"
MEAN_LOSS = "mean_loss"
MEAN_ACCURACY = "mean_accuracy"
EPISODES_THIS_ITER = "episodes_this_iter"
EPISODES_TOTAL = "episodes_total"
TIMESTEPS_THIS_ITER = "timesteps_this_iter"
TIMESTEPS_TOTAL = "timesteps_total"

# Keys the engine fills in.
TRAINING_ITERATION = "training_iteration"
TIME_TOTAL_S = "time_total_s"
TIME_THIS_ITER_S = "time_this_iter_s"
TIMESTAMP = "timestamp"
TRIAL_ID = "trial_id"
EXPERIMENT_TAG = "experiment_tag"
HOSTNAME = "hostname"
NODE_IP = "node_ip"
PID = "pid"
CHECKPOINT_DIR_NAME_KEY = "checkpoint_dir_name"
CONFIG_PREFIX = "config"  # the result's config; "config/<name>" columns in dataframes

DEFAULT_EXPERIMENT_INFO_KEYS = ("trainable_name", EXPERIMENT_TAG, TRIAL_ID)
DEFAULT_RESULT_KEYS = (TRAINING_ITERATION, TIME_TOTAL_S, MEAN_ACCURACY, MEAN_LOSS)
# Known before the first result completes.
DEBUG_METRICS = (TRIAL_ID, "experiment_id", "date", TIMESTAMP, PID, HOSTNAME, NODE_IP, CONFIG_PREFIX)
# Every key the engine may fill in (TIME_TOTAL_S twice, as in Ray Tune's tuple).
AUTO_RESULT_KEYS = (
    TRAINING_ITERATION, TIME_TOTAL_S, EPISODES_TOTAL, TIMESTEPS_TOTAL, NODE_IP, HOSTNAME, PID,
    TIME_TOTAL_S, TIME_THIS_ITER_S, TIMESTAMP, "date", "time_since_restore", "timesteps_since_restore",
    "iterations_since_restore", CONFIG_PREFIX, CHECKPOINT_DIR_NAME_KEY,
)

# Ray Tune's in-band markers (config and result keys its own engine passes to trainables);
# fasttune's engine passes these things out of band and never sets them.
RESULT_DUPLICATE = "__duplicate__"
TRIAL_INFO = "__trial_info__"
STDOUT_FILE = "__stdout_file__"
STDERR_FILE = "__stderr_file__"

DEFAULT_EXPERIMENT_NAME = "default"

# Files in a trial's directory.  fasttune writes the first four; it never writes the pickles
# (the config is in params.json, the error in error.txt and the experiment snapshot) nor
# Ray Tune's long-unused status files for automlboard.
EXPR_PARAM_FILE = "params.json"
EXPR_RESULT_FILE = "result.json"
EXPR_PROGRESS_FILE = "progress.csv"
EXPR_ERROR_FILE = "error.txt"
EXPR_PARAM_PICKLE_FILE = "params.pkl"
EXPR_ERROR_PICKLE_FILE = "error.pkl"
EXPR_META_FILE = "trial_status.json"
JOB_META_FILE = "job_status.json"

# fasttune's own names for the files it writes.
PARAMS_FILE = EXPR_PARAM_FILE
RESULT_FILE = EXPR_RESULT_FILE
PROGRESS_FILE = EXPR_PROGRESS_FILE
ERROR_FILE = EXPR_ERROR_FILE
# ---- end of Ray Tune's result keys ------------------------------------------------------------
_CHECKPOINT_DIR_RE = re.compile(r"^checkpoint_(\d+)$")
ON_BAD_LINE = ("raise", "warn")
_warned_bad_lines: set = set()  # (path, line): a grid re-reads a history; it warns once


def import_pandas(feature: str) -> Any:
    """Import pandas for ``feature`` or raise an ImportError saying how to get it."""
    return import_optional("pandas", "pandas", feature)


def metrics_with_config(last_result: Dict[str, Any], config: Any) -> Dict[str, Any]:
    """A Result's ``metrics`` for a trial's last result and config: the result with its
    config under "config", as Ray Tune's have them; {} when it reported nothing."""
    return dict(last_result, config=config) if last_result else {}


def read_json_lines(path: str, on_bad_line: str = "raise") -> List[Dict[str, Any]]:
    """Read a JSON-lines results file; a truncated (undecodable) last line is dropped.

    A bad line anywhere else (not a JSON object, or nested more than
    :data:`MAX_JSON_NESTING` deep) means the file is corrupt: ``on_bad_line="raise"``
    raises a ValueError naming the file and line; ``"warn"`` logs that as a warning
    (once per file and line) and returns the rows before the bad line: what is after it
    is not trusted, as a restore keeps only the rows before it.

    Example:
        >>> import tempfile
        >>> path = tempfile.mkdtemp() + "/result.json"
        >>> with open(path, "w") as f:
        ...     _ = f.write('{"i": 1}\\n{"i": \\n{"i": 3}\\n')
        >>> read_json_lines(path, on_bad_line="warn")
        [{'i': 1}]
    """
    if on_bad_line not in ON_BAD_LINE:
        raise ValueError(f"on_bad_line={on_bad_line!r} is not one of {list(ON_BAD_LINE)}.")
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        lines = [(n, line) for n, line in enumerate(f, start=1) if line.strip()]
    rows: List[Dict[str, Any]] = []
    for i, (lineno, line) in enumerate(lines):
        problem = "is not a JSON object"
        try:
            row = parse_json(line)
        except ValueError as exc:
            row = None
            if not isinstance(exc, json.JSONDecodeError):
                problem = f"is {exc}"
        if not isinstance(row, dict):
            if i == len(lines) - 1 and problem == "is not a JSON object":
                break  # the writer was interrupted mid-line: ignore the fragment
            message = (f"{path}, line {lineno}, {problem}; the results file is corrupt before its last line. "
                       f"Fix or remove that line.")
            if on_bad_line == "raise":
                raise ValueError(message)
            if (path, lineno) not in _warned_bad_lines:
                if len(_warned_bad_lines) >= 10_000:  # a long-lived process reading many damaged files
                    _warned_bad_lines.clear()
                _warned_bad_lines.add((path, lineno))
                logger.warning("%s Read: the %d results before it; the %d lines from it on are left out.",
                               message, len(rows), len(lines) - i)
            break
        rows.append(row)
    return rows


def read_params(path: str, on_bad_line: str = "raise") -> Optional[Dict[str, Any]]:
    """The config in the ``params.json`` at ``path``, or None when there is none.  A file
    that is not a JSON object (or nests too deep) raises a ValueError naming it, or with
    ``on_bad_line="warn"`` (as for :func:`read_json_lines`) logs that and returns None."""
    if not os.path.isfile(path):
        return None
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        text = f.read()
    try:
        config = parse_json(text)
    except ValueError as exc:
        config, problem = None, f"is not valid JSON ({exc})"
    else:
        problem = None if isinstance(config, dict) else f"holds a JSON {type(config).__name__}"
    if problem is not None:
        message = f"{path} {problem}; it should hold the trial's config as one JSON object."
        if on_bad_line == "raise":
            raise ValueError(message) from None
        logger.warning("%s The trial is read without it.", message)
        return None
    return config


def trial_rows(trial_dir: str, on_bad_line: str = "raise",
               missing: Optional[List[Dict[str, Any]]] = None) -> List[Dict[str, Any]]:
    """Every result the trial in ``trial_dir`` reported: its ``result.json``, or for an
    experiment with ``RunConfig(results_store="experiment")`` its rows in the store;
    ``missing`` (default: none) when it has neither."""
    path = os.path.join(trial_dir, RESULT_FILE)
    if os.path.isfile(path):
        return read_json_lines(path, on_bad_line)
    stored = stored_trial(trial_dir)
    return list(stored.rows) if stored is not None else (missing if missing is not None else [])


def _checkpoint_dirs(trial_dir: str) -> List[Tuple[int, str]]:
    found = []
    try:
        names = os.listdir(trial_dir)
    except (FileNotFoundError, NotADirectoryError):  # a store's trial that made no directory (or a file's name)
        return []
    for name in names:
        match = _CHECKPOINT_DIR_RE.match(name)
        if match and os.path.isdir(os.path.join(trial_dir, name)):
            found.append((int(match.group(1)), name))
    found.sort()
    return found


@dataclass(init=False, repr=False, eq=False)
class Result:
    """The final state of one trial.

    Args:
        metrics: The last reported result dict (usually with a ``"config"``
            key); empty if the trial reported nothing (``fit()`` and
            ``from_path`` give ``{}`` then, as Ray Tune does).
        checkpoint: The latest checkpoint, or ``None``.
        error: The exception that ended the trial, or ``None`` on success.
        path: The trial's directory.
        metrics_dataframe: Every reported result as a pandas DataFrame. When
            not given it is read lazily from ``<path>/result.json``, else
            ``<path>/progress.csv`` (needs pandas); ``None`` when neither exists.
        best_checkpoints: ``(checkpoint, metrics)`` pairs of the best checkpoints
            kept for this trial, worst first (as Ray Tune lists them).
        _config: The trial's config, used when ``metrics`` has no ``"config"``.
        _status: The trial's status when the sweep ended (``fit()`` knows it; a
            result read from files does not: None).

    Example:
        >>> r = Result(None, None, None, "/tmp/t", _config={"x": 1})
        >>> r.config, r.best_checkpoints
        ({'x': 1}, [])
    """

    metrics: Optional[Dict[str, Any]]
    checkpoint: Optional[Checkpoint]
    error: Optional[BaseException]
    path: str
    #: ``(checkpoint, metrics)`` of the best kept checkpoints, worst first, as Ray Tune lists them
    #: (a list on every instance; declared here so that ``Result.best_checkpoints`` exists).
    best_checkpoints: List[Tuple[Checkpoint, Dict[str, Any]]] = None  # type: ignore[assignment]

    def __init__(
        self,
        metrics: Optional[Dict[str, Any]],
        checkpoint: Optional[Checkpoint],
        error: Optional[BaseException],
        path: Union[str, "os.PathLike[str]"],
        metrics_dataframe: Optional[Any] = None,
        best_checkpoints: Optional[List[Tuple[Checkpoint, Dict[str, Any]]]] = None,
        _config: Optional[Dict[str, Any]] = None,
        _status: Optional[str] = None,
    ) -> None:
        if metrics is not None and not isinstance(metrics, Mapping):
            raise TypeError(
                f"Result.metrics must be a dict or None, got {type(metrics).__name__}."
            )
        if checkpoint is not None and not isinstance(checkpoint, Checkpoint):
            raise TypeError(
                f"Result.checkpoint must be a fasttune Checkpoint or None, got "
                f"{type(checkpoint).__name__}; wrap a directory with "
                f"Checkpoint.from_directory(path)."
            )
        if error is not None and not isinstance(error, BaseException):
            raise TypeError(
                f"Result.error must be an exception or None, got "
                f"{type(error).__name__}; wrap a message as TuneError(text)."
            )
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(
                f"Result.path must be the trial directory (str or path-like), got "
                f"{type(path).__name__} {path!r}."
            )
        self.metrics = dict(metrics) if metrics is not None else None
        self.checkpoint = checkpoint
        self.error = error
        self.path = os.fsdecode(os.fspath(path))
        self.best_checkpoints = list(best_checkpoints) if best_checkpoints else []
        self._metrics_dataframe = metrics_dataframe
        self._config = _config
        self._status = _status

    @property
    def config(self) -> Optional[Dict[str, Any]]:
        """The trial's config: ``metrics["config"]`` if present, else the one given."""
        if self.metrics and "config" in self.metrics:
            return self.metrics["config"]
        return self._config

    @property
    def metrics_dataframe(self) -> Optional[Any]:
        """All reported results as a DataFrame, read once, as Ray Tune reads it: from
        ``result.json`` (every key of every result, the config's too, nested keys joined
        with "/"), else from ``progress.csv``.

        ``None`` when no DataFrame was given and the trial has neither file (nor rows in
        its experiment's results store). Reading it requires pandas.
        """
        if self._metrics_dataframe is None:
            result_path = os.path.join(self.path, RESULT_FILE)
            csv_path = os.path.join(self.path, PROGRESS_FILE)
            rows = read_json_lines(result_path, "warn") if os.path.isfile(result_path) else []
            if rows:  # (none readable, a torn first line say: progress.csv may still have them)
                self._metrics_dataframe = import_pandas("Result.metrics_dataframe").json_normalize(rows, sep="/")
            elif not os.path.isfile(csv_path) or os.path.getsize(csv_path) == 0:
                stored = stored_trial(self.path)  # an experiment-level store has no progress.csv
                if stored is None or not stored.rows:
                    return None
                self._metrics_dataframe = import_pandas("Result.metrics_dataframe").json_normalize(
                    stored.rows, sep="/")
            else:
                self._metrics_dataframe = import_pandas("Result.metrics_dataframe").read_csv(csv_path)
        return self._metrics_dataframe

    @metrics_dataframe.setter
    def metrics_dataframe(self, value: Optional[Any]) -> None:
        self._metrics_dataframe = value

    @property
    def filesystem(self) -> Any:
        """The ``pyarrow.fs`` filesystem :attr:`path` is on: always the local one, as a
        result read from storage is a local copy of its files (its checkpoints point into
        storage themselves).  Needs pyarrow."""
        return local_filesystem("Result.filesystem")

    def get_best_checkpoint(self, metric: str, mode: str) -> Optional[Checkpoint]:
        """The kept checkpoint whose metrics rank best by ``metric`` (nested keys joined
        with "/") and ``mode``; checkpoints reported without that metric are left out.

        Raises:
            RuntimeError: the trial kept no checkpoint, or none has a value of ``metric``.
            ValueError: ``mode`` is neither ``"min"`` nor ``"max"``.

        Example:
            >>> import tempfile
            >>> a, b = Checkpoint(tempfile.mkdtemp()), Checkpoint(tempfile.mkdtemp())
            >>> r = Result({}, b, None, "/t", best_checkpoints=[(a, {"acc": 0.9}), (b, {"acc": 0.7})])
            >>> r.get_best_checkpoint("acc", "max") == a, r.get_best_checkpoint("acc", "min") == b
            (True, True)
        """
        from fasttune._flatten import lookup_flattened

        if not self.best_checkpoints:
            raise RuntimeError(f"The trial in {self.path} kept no checkpoint.")
        if mode not in ("max", "min"):
            raise ValueError(f"Result.get_best_checkpoint mode={mode!r} is not valid; use 'max' or 'min'.")
        scored = [(checkpoint, value) for checkpoint, metrics in self.best_checkpoints
                  for value in [lookup_flattened(metrics, metric)] if value is not None]
        if not scored:
            raise RuntimeError(
                f"No checkpoint of the trial in {self.path} was reported with the metric {metric!r}; its "
                f"checkpoints' metrics have {sorted(set().union(*(m for _, m in self.best_checkpoints)))}.")
        choose = max if mode == "max" else min
        return choose(scored, key=lambda pair: pair[1])[0]

    @classmethod
    def from_path(cls, path: Union[str, "os.PathLike[str]"], storage_filesystem: Any = None,
                  on_bad_line: str = "raise") -> "Result":
        """Rebuild a trial's Result from its directory alone.

        Reads ``params.json`` (config), the last complete line of
        ``result.json`` (metrics; a truncated last line is ignored; a bad line before
        it raises a ValueError naming the file and line, or with ``on_bad_line="warn"``
        is logged, and the metrics are the last result before it; a bad
        ``params.json`` likewise raises, or is logged and leaves the config unknown),
        ``error.txt`` (becomes a :class:`~fasttune.error.TuneError`) and the
        ``checkpoint_NNNNNN`` directories (the highest number is the latest
        checkpoint; all of them form ``best_checkpoints``, each paired with the
        last result whose ``checkpoint_dir_name`` names it, else ``{}``).

        Example:
            >>> import json, os, tempfile
            >>> d = tempfile.mkdtemp()
            >>> with open(os.path.join(d, "result.json"), "w") as f:
            ...     _ = f.write(json.dumps({"loss": 1.0, "config": {"lr": 0.1}}) + "\\n{\\"lo")
            >>> r = Result.from_path(d)
            >>> r.metrics["loss"], r.config, r.error
            (1.0, {'lr': 0.1}, None)

        ``path`` may be in storage: a URI that ``pyarrow.fs`` understands, or a path on
        ``storage_filesystem``; the trial's files, less its checkpoints, are then read from
        a local copy (the Result's ``path``), and its checkpoints point into storage.
        """
        from fasttune import _storage as storage

        location = storage.resolve(path, storage_filesystem)
        if location is not None:
            local, local_root, root = local_copy_to_read(location)
            return point_into_storage(cls.from_path(local, on_bad_line=on_bad_line), local_root, root)
        trial_dir = os.path.abspath(os.fsdecode(os.fspath(path)))
        params_path, result_path = os.path.join(trial_dir, PARAMS_FILE), os.path.join(trial_dir, RESULT_FILE)
        if not (os.path.isfile(params_path) or os.path.isfile(result_path)):
            stored = stored_trial(trial_dir)  # RunConfig(results_store="experiment")
            if stored is not None:
                return cls._from_rows(trial_dir, stored.config, stored.rows)
        if not os.path.isdir(trial_dir):
            raise FileNotFoundError(
                f"Trial directory {trial_dir!r} does not exist; pass the directory of "
                f"one trial (the one holding params.json and result.json)."
            )
        config = read_params(params_path, on_bad_line)
        rows = read_json_lines(result_path, on_bad_line) if os.path.isfile(result_path) else []
        return cls._from_rows(trial_dir, config, rows)

    @classmethod
    def _from_rows(cls, trial_dir: str, config: Optional[Dict[str, Any]], rows: List[Dict[str, Any]],
                   directory_exists: bool = True) -> "Result":
        """The Result of the trial in ``trial_dir`` with ``config`` and reported ``rows``:
        its error and checkpoints are read from the directory, unless the caller knows
        there is none (``directory_exists=False``: no system call)."""
        metrics = rows[-1] if rows else {}  # as Ray Tune: scripts index metrics without checking
        if not directory_exists:
            return cls(metrics=metrics, checkpoint=None, error=None, path=trial_dir, _config=config)

        error = None
        error_path = os.path.join(trial_dir, ERROR_FILE)
        if os.path.isfile(error_path):
            with open(error_path, "r", encoding="utf-8", errors="replace") as f:
                error = TuneError(f.read())

        best_checkpoints: List[Tuple[Checkpoint, Dict[str, Any]]] = []
        for _, name in _checkpoint_dirs(trial_dir):
            ckpt_metrics: Dict[str, Any] = {}
            for row in reversed(rows):
                if row.get(CHECKPOINT_DIR_NAME_KEY) == name:
                    ckpt_metrics = row
                    break
            best_checkpoints.append(
                (Checkpoint(os.path.join(trial_dir, name)), ckpt_metrics)
            )
        latest = best_checkpoints[-1][0] if best_checkpoints else None

        return cls(
            metrics=metrics,
            checkpoint=latest,
            error=error,
            path=trial_dir,
            best_checkpoints=best_checkpoints,
            _config=config,
        )

    def __repr__(self) -> str:
        shown = None
        if self.metrics is not None:
            shown = {k: v for k, v in self.metrics.items() if k != "config"}
        parts = [f"metrics={shown!r}", f"path={self.path!r}"]
        parts.append(f"checkpoint={self.checkpoint!r}")
        if self.error is not None:
            parts.append(f"error={self.error!r}")
        return "Result(\n  " + ",\n  ".join(parts) + "\n)"


def local_filesystem(purpose: str) -> Any:
    """``pyarrow.fs.LocalFileSystem()``, or an ImportError saying how to get pyarrow."""
    return import_optional("pyarrow.fs", "storage", purpose, package="pyarrow").LocalFileSystem()


def _has_store_in_storage(location: Any) -> bool:
    from fasttune import _storage as storage

    return any(segment_number(name) is not None for name in storage.list_names(location.join(STORE_DIR)))


def may_be_store_trial(names: Any, parent_has_store: bool) -> bool:
    """Whether a directory holding ``names`` (none when it does not exist) may be a trial
    of its parent's results store (``RunConfig(results_store="experiment")``): it has no
    result files, no snapshot and no store of its own (its rows are in the parent's store,
    and a trial that never checkpointed or failed has no directory at all), and its parent
    has a store.  Whether the store names it is up to the reader of the store.

    Example:
        >>> may_be_store_trial(["checkpoint_000000", "error.txt"], parent_has_store=True)
        True
        >>> may_be_store_trial(["params.json", "result.json"], parent_has_store=True)
        False
        >>> may_be_store_trial([], parent_has_store=False)
        False
    """
    from fnmatch import fnmatch

    from fasttune.execution._experiment_state import SNAPSHOT_GLOB

    return parent_has_store and not any(
        name in (PARAMS_FILE, RESULT_FILE, STORE_DIR) or fnmatch(name, SNAPSHOT_GLOB) for name in names)


def local_copy_to_read(location: Any) -> Tuple[str, str, Any]:
    """A local copy of the experiment or trial directory at ``location`` in storage (a
    ``fasttune._storage.Location``), to read it from: ``(its local path, the copy's root,
    the root's location)``.  A trial of an experiment's results store
    (``RunConfig(results_store="experiment")``) has no result files of its own, and maybe no
    directory, so its whole experiment is copied then: its rows are in the experiment's
    store (the local path need not exist).

    Example:
        >>> import os, tempfile
        >>> from fasttune import _storage as storage
        >>> exp = tempfile.mkdtemp()  # an experiment with a results store; one trial checkpointed
        >>> os.makedirs(os.path.join(exp, "results"))
        >>> open(os.path.join(exp, "results", "000001.jsonl"), "w").close()
        >>> os.makedirs(os.path.join(exp, "t_0", "checkpoint_000000"))
        >>> local, local_root, root = local_copy_to_read(storage.resolve("file://" + os.path.join(exp, "t_0")))
        >>> sorted(os.listdir(local_root)), local == os.path.join(local_root, "t_0"), root.path == exp
        (['results', 't_0'], True, True)

    Raises:
        FileNotFoundError: nothing is at ``location`` (nor is it a trial of its parent's store).
        TuneError: storage cannot be read.
    """
    from fasttune import _storage as storage

    names = storage.list_names(location)
    # A location at the top of a bucket has no parent to hold a store.
    if posixpath.dirname(location.path.rstrip("/")) and may_be_store_trial(
            names, parent_has_store=_has_store_in_storage(location.parent())):
        experiment = location.parent()
        local_experiment = storage.local_copy(experiment)
        return os.path.join(local_experiment, posixpath.basename(location.path.rstrip("/"))), local_experiment, experiment
    local = storage.local_copy(location)
    return local, local, location


def point_into_storage(result: Result, local_root: str, location: Any) -> Result:
    """``result``, read from ``local_root`` (the local copy of the experiment at
    ``location``), with its checkpoints pointing into storage; its ``path`` stays the
    local copy, where its result files are."""
    if result.checkpoint is not None:
        result.checkpoint = checkpoint_in_storage(result.checkpoint, local_root, location)
    result.best_checkpoints = [(checkpoint_in_storage(c, local_root, location), metrics)
                               for c, metrics in result.best_checkpoints]
    return result
