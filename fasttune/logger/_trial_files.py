"""The per-trial files: ``params.json``, ``result.json``, ``progress.csv``, ``error.txt``.

The event core renders each batch of results into ready bytes; this module only appends
them, whole or not at all.  The file system calls run in order on one writer thread:
creating three files per trial costs more than everything else the driver does for a
short trial, and the thread overlaps it with the event loop.  The thread takes its calls
in batches, which stage each trial's config, result bytes and close; the batch's commit
then writes each file once (a short trial's files are created with all their content and
closed at once; a longer one's stay open for its next batches).  ``flush()`` waits until everything handed over is in the OS page cache (where
it survives the driver being killed); the runner flushes before each experiment snapshot
and at the end, and makes the file system durable before writing the snapshot.

When a result write fails (the disk is full, the file reached its size limit), the file is
cut back to its last whole batch and no later result is written for any trial, so no
history gets a hole; the runner learns which trials lost results
(:attr:`TrialFiles.unwritten_trial_dirs`) and its final snapshot counts only what is on disk.
"""
from __future__ import annotations

import json
import os
import shutil
from collections import OrderedDict
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from fasttune import _corelib as core
from fasttune._atomic import POSIX_PATHS, temporary_path
from fasttune._json_nesting import parse_json
from fasttune._jsonable import json_default
from fasttune.logger._writer_thread import WriterThread
from fasttune.result import ERROR_FILE, PARAMS_FILE, PROGRESS_FILE, RESULT_FILE  # noqa: F401 - re-exported

_json_string = json.encoder.encode_basestring_ascii  # what json.dumps writes for a str (C)

# Trials with open result files; the least recently written are closed past this bound
# so population-scale sweeps do not run out of file descriptors.
MAX_OPEN_TRIALS = 512
# How long the writer, once woken, lets calls gather before it runs them: a wake-up per
# call costs the driver more CPU than the writes, and results reach the files this late.
WRITER_LINGER_S = 0.01

_NO_CONFIG = object()
_NOT_OPEN = (-1, -1)


def _in_directory(directory: str, name: str) -> str:
    """``os.path.join(directory, name)`` for a file name (no separator in it), without
    its checks: each trial's files are named this way."""
    if POSIX_PATHS and type(directory) is str and directory and directory[-1] != "/":
        return f"{directory}/{name}"
    return os.path.join(directory, name)


def make_directory(path: str) -> None:
    """Create the directory ``path`` if it is not there (its parents too); one system call
    when the parent exists, as a trial's does."""
    try:
        os.mkdir(path)
    except FileExistsError:
        pass
    except FileNotFoundError:
        os.makedirs(path, exist_ok=True)


class _Staged:
    """What one batch of writer calls has for a trial: its new config, its result bytes,
    whether its files close."""

    __slots__ = ("config", "results", "close")

    def __init__(self) -> None:
        self.config: Any = _NO_CONFIG
        self.results: List[Tuple[bytes, bytes]] = []  # (JSON lines, CSV rows) of each batch
        self.close = False


def close_descriptors(fds: Tuple[int, int], failures: Optional[List[BaseException]] = None) -> None:
    """Close a pair of descriptors (-1: none), e.g. a trial's result.json and progress.csv;
    a failure to close (NFS reports a write it could not make there) goes into
    ``failures`` (or is raised without it), once both are closed."""
    failure = None
    for fd in fds:
        if fd >= 0:
            try:
                os.close(fd)
            except OSError as exc:
                failure = failure or exc
    if failure is not None:
        if failures is None:
            raise failure
        failures.append(failure)


def add_failure(failures: List[BaseException], error: BaseException) -> None:
    """Add a batch write's ``error`` to ``failures`` (the first is the one raised): an
    :class:`~fasttune._core_shared.AppendNotCutBack` goes first, since a file that is
    not as it was is what the user must hear first; any other goes last.

    >>> failures = [ValueError("a config")]
    >>> add_failure(failures, core.AppendNotCutBack(28, "No space left on device", "t/result.json"))
    >>> [type(each).__name__ for each in failures]
    ['AppendNotCutBack', 'ValueError']
    """
    if isinstance(error, core.AppendNotCutBack):
        failures.insert(0, error)
    else:
        failures.append(error)


def append_what_fits(open_files: "OrderedDict[str, Tuple[int, int]]", name: str, pieces: List[Any],
                     append_op: Callable[[Tuple[int, int], Any], tuple], close: bool,
                     failures: List[BaseException]) -> None:
    """After ``pieces`` failed to append to ``name``'s files together: append them one by
    one (``append_op(descriptors, piece)`` makes each core op, leaving the files open), as
    many whole ones as fit; then close the files (``close``) or keep them in ``open_files``.
    A piece that could not be cut back goes first in ``failures`` (:func:`add_failure`)."""
    fds = open_files.pop(name, (-1, -1))
    for piece in pieces:
        fds_after, error, _ = core.write_file_batch([append_op(fds, piece)])
        fds = fds_after[0]
        if isinstance(error, core.AppendNotCutBack):
            add_failure(failures, error)
        if error is not None:
            break
    if close:
        close_descriptors(fds, failures)
    elif fds[0] >= 0:
        open_files[name] = fds


def make_room(open_files: "OrderedDict[str, Tuple[int, int]]", touched: Iterable[str], opening: int, bound: int,
              failures: List[BaseException]) -> None:
    """Close the least recently written of ``open_files`` (name -> descriptors) that a batch
    does not touch, until they and the ``opening`` ones the batch keeps open fit ``bound``."""
    if len(open_files) + opening <= bound:
        return  # they fit whichever of them the batch touches (a short trial's batch: always)
    touched = set(touched)
    others = len(open_files) - sum(1 for name in touched if name in open_files)
    while others + opening > bound:
        close_descriptors(open_files.pop(next(name for name in open_files if name not in touched)), failures)
        others -= 1



# json.dumps(config, default=...) makes an encoder per call, which costs more than the
# encoding of a small config: one is made once (it keeps no state between calls).
_CONFIG_ENCODER = json.JSONEncoder(default=json_default)

# Values json writes the same at any indent: a flat config of them is written without
# json's encoder (its pure-Python indenting one is three times slower than the whole of the
# rest, and even its C one is set up anew at each call).
_FLAT_VALUE_TYPES = frozenset({str, int, float, bool, type(None)})
# What json's C encoder writes for the constants and the floats that are not finite.
_JSON_CONSTANTS = {True: "true", False: "false", None: "null"}


def _flat_json_items(config: Dict[str, Any]) -> Optional[List[Tuple[str, str]]]:
    """``config``'s ``(key, value)`` pairs as json.dumps writes each (its C encoder's
    pieces, a call each), in the config's order; ``None`` unless every key is a str and
    every value one of ``_FLAT_VALUE_TYPES``."""
    items = []
    for key, value in config.items():
        kind = type(value)
        if type(key) is not str or kind not in _FLAT_VALUE_TYPES:
            return None
        if kind is float:
            if value - value == 0.0:  # finite
                text = float.__repr__(value)
            else:
                text = "NaN" if value != value else "Infinity" if value > 0 else "-Infinity"
        elif kind is str:
            text = _json_string(value)
        elif kind is int:
            text = int.__repr__(value)
        else:
            text = _JSON_CONSTANTS[value]
        items.append((_json_string(key), text))
    return items


def config_to_json(config: Dict[str, Any]) -> str:
    """The config as the JSON text spliced into every result line of its trial (what
    ``json.dumps(config, default=json_default)`` gives).

    Example:
        >>> config_to_json({"lr": 0.1, "act": "relu", "deep": {"n": 2}})
        '{"lr": 0.1, "act": "relu", "deep": {"n": 2}}'
    """
    items = _flat_json_items(config)
    if items is None:
        return _CONFIG_ENCODER.encode(config)
    return "{" + ", ".join([f"{key}: {text}" for key, text in items]) + "}"


def params_text(config: Dict[str, Any]) -> str:
    """``params.json``'s text: the config as JSON, indented by 2, keys sorted.

    Example:
        >>> print(params_text({"lr": 0.1, "act": "relu"}))
        {
          "act": "relu",
          "lr": 0.1
        }
    """
    items = _flat_json_items(config) if config else None
    if items is None:
        return json.dumps(config, indent=2, sort_keys=True, default=json_default)
    # Sorted by the keys themselves (their JSON text can sort otherwise: "\u00e9" vs "f").
    items = [item for _, item in sorted(zip(config, items), key=lambda pair: pair[0])]
    return "{\n" + ",\n".join([f"  {key}: {text}" for key, text in items]) + "\n}"


class TrialFiles:
    """Appends rendered result batches to each trial's files, on a writer thread.

    ``progress.csv`` is written only with ``write_csv`` (a ``CSVLoggerCallback`` is
    configured); ``result.json`` always, as restores and result readers need it, unless
    ``write_results=False`` (a simulated sweep's default): then no ``params.json``,
    ``result.json`` or ``progress.csv`` at all, and no trial directory for them.
    ``logger/_experiment_results.py`` has the other layout, one store for all trials.
    """

    #: Whether each trial gets its directory when it starts (workers run trials in it).
    makes_trial_dirs = True

    def __init__(self, write_csv: bool = True, storage_sync: Any = None, write_results: bool = True) -> None:
        # With the experiment kept in storage, checkpoints live there (workers upload them).
        self._storage_sync = storage_sync
        self._open: "OrderedDict[str, Tuple[int, int]]" = OrderedDict()  # trial dir -> descriptors
        # What the writer's current batch has for each trial (the writer thread's own).
        self._staged: Dict[str, _Staged] = {}
        self._writer = WriterThread("trial result files", linger_s=WRITER_LINGER_S, commit=self._commit)
        self._submit = self._writer.submit
        self._write_csv = write_csv
        self._write_results = write_results
        # Once a result write failed, no later one is made; the trials they were for.
        self._results_failed = False
        self.unwritten_trial_dirs: set = set()

    @property
    def writes_results(self) -> bool:
        """Whether result rows reach files (False: ``write_results=False``, whose rows
        nothing keeps, so the runner does not render configs for them)."""
        return self._write_results

    def has_params(self, trial_dir: str) -> bool:
        """Whether the trial's config is on disk (a restored trial's is not written again)."""
        return os.path.exists(os.path.join(trial_dir, PARAMS_FILE))

    def position(self) -> Any:
        """What a snapshot records of where the results end: nothing, for per-trial files
        (each trial's rows are counted in its record)."""
        return None

    def restore_position(self, position: Any, aside: str) -> List[str]:
        """Go back to a snapshot's :meth:`position`: per-trial files are rewound trial by
        trial instead (no trial directory to name)."""
        return []

    def flush(self) -> None:
        """Return once every file operation handed over so far is done.

        Raises:
            OSError: an operation failed (raised once; see :meth:`check`).
        """
        self._writer.flush()

    def wait(self) -> None:
        """Return once every file operation handed over so far is done; a failure is
        raised by the next :meth:`check` or :meth:`flush`."""
        self._writer.wait()

    def check(self) -> None:
        """Raise the failure of an operation done so far, the first time it is seen."""
        self._writer.check()

    # ---- operations, in the order they were asked for -------------------------------
    # Parameters, results and closes are staged per trial on the writer thread and
    # written when its batch ends (_commit): a short trial's files are each created once,
    # with all their content, and closed at once.
    def init_trial(self, trial_dir: str, config: Dict[str, Any], trial_id: Optional[str] = None) -> None:
        if self._write_results:
            self._submit(self._stage_params, trial_dir, config)

    def write(self, trial_dir: str, json_bytes: bytes, csv_bytes: bytes) -> None:
        if self._write_results:
            self._submit(self._stage_results, trial_dir, json_bytes, csv_bytes)

    def close(self, trial_dir: str) -> None:
        if self._write_results:
            self._submit(self._stage_close, trial_dir)

    def _staged_for(self, trial_dir: str) -> "_Staged":
        staged = self._staged.get(trial_dir)
        if staged is None:
            staged = self._staged[trial_dir] = _Staged()
        return staged

    # Each stages its call in the trial's _Staged (looked up here, not in _staged_for: a
    # call each per trial on the writer thread).
    def _stage_params(self, trial_dir: str, config: Dict[str, Any]) -> None:
        staged = self._staged.get(trial_dir) or self._staged_for(trial_dir)
        staged.config = config

    def _stage_results(self, trial_dir: str, json_bytes: bytes, csv_bytes: bytes) -> None:
        staged = self._staged.get(trial_dir) or self._staged_for(trial_dir)
        staged.results.append((json_bytes, csv_bytes))

    def _stage_close(self, trial_dir: str) -> None:
        staged = self._staged.get(trial_dir) or self._staged_for(trial_dir)
        staged.close = True

    def _commit(self) -> None:
        """Write what the batch staged, in one call of the core (its system calls made
        without the GIL).  A failure stops no other trial's writes (after a failed result
        write, only results are no longer written); the first is raised at the end."""
        if not self._staged:
            return
        staged, self._staged = self._staged, {}
        failures: List[BaseException] = []
        keep_open = self._make_room(staged, failures)
        # Appends through open files (and closes) go first, so the files they close are
        # closed before new ones open: never many more open than MAX_OPEN_TRIALS.
        ops: List[tuple] = []
        owners: List[str] = []
        then_ops: List[tuple] = []
        then_owners: List[str] = []
        open_files = self._open
        for trial_dir, each in staged.items():
            if not trial_dir.isascii():  # ASCII names always encode
                try:
                    os.fsencode(trial_dir)
                except UnicodeEncodeError as exc:  # a name the file system cannot take: this trial's failure
                    failures.append(exc)
                    if each.results:
                        self._results_failed = True
                        self.unwritten_trial_dirs.add(trial_dir)
                    if each.close:
                        close_descriptors(open_files.pop(trial_dir, (-1, -1)), failures)
                    continue
            if each.config is not _NO_CONFIG:
                try:
                    # Renamed into place: a driver killed mid-write leaves no torn params.json.
                    # Durable with the rest before the next snapshot (a fsync per trial would
                    # cost more than everything else done for it).
                    text = params_text(each.config).encode("utf-8")
                except Exception as exc:  # noqa: BLE001 - raised below
                    failures.append(exc)
                else:
                    params = _in_directory(trial_dir, PARAMS_FILE)
                    then_ops.append((core.FILE_MKDIR, trial_dir))
                    then_ops.append((core.FILE_REPLACE, params, temporary_path(params), text))
                    then_owners.append(trial_dir)
                    then_owners.append(trial_dir)
            results = each.results
            if not results and not each.close:
                continue
            fds = open_files.pop(trial_dir, _NOT_OPEN)
            if not results:
                close_descriptors(fds, failures)
                continue
            op = self._append_op(trial_dir, fds, results, each.close or trial_dir not in keep_open)
            if fds[0] >= 0:
                ops.append(op)
                owners.append(trial_dir)
            else:
                then_ops.append(op)
                then_owners.append(trial_dir)
        ops += then_ops
        owners += then_owners
        if self._results_failed:  # an earlier batch's result write failed
            ops, owners = self._after_failure(ops, owners, failures)
        while ops:
            try:
                fds_after, error, whole = core.write_file_batch(ops)
            except BaseException:
                # Raised before any op ran: none of the batch's results is written.
                self._results_failed = True
                self._after_failure(ops, owners, failures)
                raise
            for owner, fds in zip(owners, fds_after):
                if fds is not None and fds[0] >= 0:  # an append's files left open
                    open_files[owner] = fds  # the most recently written last
            if error is None:
                break
            add_failure(failures, error)
            failed = len(fds_after) - 1
            failed_op, failed_owner = ops[failed], owners[failed]
            ops, owners = ops[failed + 1:], owners[failed + 1:]
            if failed_op[0] == core.FILE_APPEND:
                # No later result is written, so no history gets a hole.  A file that failed
                # to close after its bytes went in (``whole``) may have lost them all the same
                # (NFS reports a lost write at close); one cut back keeps what fits whole.  One
                # that could not be cut back holds them already (appended again, they would
                # repeat): the snapshot after the failure cuts the trial's files to the rows
                # both hold whole (unwritten_trial_dirs), so a restore continues from there.
                self._results_failed = True
                self.unwritten_trial_dirs.add(failed_owner)
                batches = staged[failed_owner].results
                if len(batches) > 1 and not whole and not isinstance(error, core.AppendNotCutBack):
                    self._append_what_fits(failed_owner, batches, failed_op[7], failures)
                ops, owners = self._after_failure(ops, owners, failures)
        if failures:
            raise failures[0]

    def _make_room(self, staged: Dict[str, "_Staged"], failures: List[BaseException]) -> set:
        """Close the least recently written trials' files so that those this batch keeps
        open fit :data:`MAX_OPEN_TRIALS`; returns the trials whose files stay open after it
        (all it writes and does not close, or the latest of them)."""
        writing = [trial_dir for trial_dir, each in staged.items() if each.results and not each.close]
        keep = set(writing[-MAX_OPEN_TRIALS:])
        # The trials whose files this batch writes or closes; the rest may be closed for room.
        touched = (trial_dir for trial_dir, each in staged.items() if each.results or each.close)
        make_room(self._open, touched, len(keep), MAX_OPEN_TRIALS, failures)
        return keep

    def _append_op(self, trial_dir: str, fds: Tuple[int, int], batches: List[Tuple[bytes, bytes]],
                   close: bool) -> tuple:
        """The core's append of the trial's result batches (JSON and CSV bytes each) to
        ``result.json`` (and ``progress.csv``), both or neither."""
        if len(batches) == 1:
            json_bytes, csv_bytes = batches[0]
        else:
            json_bytes, csv_bytes = b"".join([b[0] for b in batches]), b"".join([b[1] for b in batches])
        if self._write_csv:
            return (core.FILE_APPEND, _in_directory(trial_dir, RESULT_FILE), fds[0], json_bytes,
                    _in_directory(trial_dir, PROGRESS_FILE), fds[1], csv_bytes, close, False)
        return (core.FILE_APPEND, _in_directory(trial_dir, RESULT_FILE), fds[0], json_bytes, None, fds[1], b"", close,
                False)

    def _append_what_fits(self, trial_dir: str, batches: List[Tuple[bytes, bytes]], close: bool,
                          failures: List[BaseException]) -> None:
        """After the trial's batches failed to append together: as many whole ones as fit."""
        append_what_fits(self._open, trial_dir, batches,
                         lambda fds, batch: self._append_op(trial_dir, fds, [batch], False), close, failures)

    def _after_failure(self, ops: List[tuple], owners: List[str],
                       failures: List[BaseException]) -> Tuple[List[tuple], List[str]]:
        """What is left of a batch once a result write failed: the config writes; no later
        result is written (no history gets a hole), and the files it would have closed are
        closed."""
        left_ops, left_owners = [], []
        for op, owner in zip(ops, owners):
            if op[0] != core.FILE_APPEND:
                left_ops.append(op)
                left_owners.append(owner)
                continue
            self.unwritten_trial_dirs.add(owner)
            if op[2] >= 0:
                if op[7]:
                    close_descriptors((op[2], op[5]), failures)
                else:
                    self._open[owner] = (op[2], op[5])
        return left_ops, left_owners

    def _close(self, trial_dir: str) -> None:
        handles = self._open.pop(trial_dir, None)
        if handles is not None:
            close_descriptors(handles)

    def close_all(self) -> None:
        """Flush, close every file and stop the writer thread (also when the flush raises)."""
        failures: List[BaseException] = []
        try:
            self.flush()
        finally:
            self._writer.close()
            while self._open:
                close_descriptors(self._open.popitem()[1], failures)
        if failures:
            raise failures[0]

    def write_error(self, trial_dir: str, header: str, text: str) -> str:
        path = os.path.join(trial_dir, ERROR_FILE)
        self._submit(self._write_error, trial_dir, path, f"{header}\n{text}\n")
        return path

    @staticmethod
    def _write_error(trial_dir: str, path: str, text: str) -> None:
        make_directory(trial_dir)
        with open(path, "a") as f:
            f.write(text)

    def remove_checkpoint(self, path: str) -> None:
        """Delete a checkpoint directory that retention dropped (in order with the rest; in
        storage, once a snapshot that no longer names it is there)."""
        if self._storage_sync is not None:
            self._storage_sync.delete_checkpoint_later(path)
        else:
            self._submit(shutil.rmtree, path, True)

    def prune_checkpoints(self, trial_dir: str, keep: Iterable[str], now: bool = False) -> None:
        """Delete the trial's ``checkpoint_*`` directories not named in ``keep``: ones a
        worker wrote but never reported before it died, and half-copied ``.tmp`` ones.
        Only for a trial that no worker will write to again; ``now``: on the caller's
        thread (for a trial no worker holds, before one is given it)."""
        prune = _prune_checkpoints if self._storage_sync is None else self._storage_sync.prune_checkpoints
        if now:
            prune(trial_dir, frozenset(keep))
        else:
            self._submit(prune, trial_dir, frozenset(keep))

    def rewind(self, trial_dir: str, rows: int) -> Optional[list]:
        """Keep only the trial's first ``rows`` results (those logged up to the checkpoint
        a restart resumes from), so each reported result stays in the files exactly once.
        By position, not by iteration: after PBT's exploit a history may repeat or skip
        iterations.  Returns the kept progress.csv header, or None when there is none."""
        return self._cut(trial_dir, rows)[1]

    def keep_whole_rows(self, trial_dir: str) -> int:
        """Cut the trial's files back to the results both hold whole (a torn last line,
        or rows one file has and the other lost, go); returns how many are kept."""
        return self._cut(trial_dir, None)[0]

    def _cut(self, trial_dir: str, rows: Optional[int]) -> Tuple[int, Optional[list]]:
        """Cut result.json and progress.csv to their first ``rows`` whole results (None:
        all whole ones), in place: cutting needs no free space, and is fsynced (a restart
        is rare) so that the rows a restore counts are the rows on disk."""
        self.flush()
        self._close(trial_dir)
        result_path = os.path.join(trial_dir, RESULT_FILE)
        json_ends = [0]  # byte offset after each whole line
        if os.path.exists(result_path):
            with open(result_path, "rb") as f:
                for line in f:
                    if len(json_ends) - 1 == rows or not line.endswith(b"\n"):
                        break  # enough, or a torn last line: nothing after it was complete
                    try:
                        parse_json(line)
                    except ValueError:  # not whole, or nested deeper than the readers take
                        break
                    json_ends.append(json_ends[-1] + len(line))
        kept = len(json_ends) - 1
        header, csv_ends = None, None
        progress_path = os.path.join(trial_dir, PROGRESS_FILE)
        if os.path.exists(progress_path):
            with open(progress_path, "rb") as f:
                lines = f.read().split(b"\r\n")
            if len(lines) > 1 and lines[0]:
                header = lines[0]
                # A header-only file is kept: the core writes the header once per trial ever.
                csv_ends = [len(header) + 2]
                for line in lines[1:-1]:  # the last piece follows the last \r\n: torn or empty
                    if len(csv_ends) - 1 == kept:
                        break
                    if line:
                        csv_ends.append(csv_ends[-1] + len(line) + 2)
                    else:
                        csv_ends[-1] += 2
                if self._write_csv:  # both files are written: they keep the same rows
                    kept = min(kept, len(csv_ends) - 1)
        _truncate_durably(result_path, json_ends[kept])
        if csv_ends is not None:
            _truncate_durably(progress_path, csv_ends[min(kept, len(csv_ends) - 1)])
        if header is None:
            return kept, None
        import csv

        return kept, next(csv.reader([header.decode()]))


def _truncate_durably(path: str, size: int) -> None:
    """Cut the file at ``path`` to ``size`` bytes, fsynced; a file already that size (or
    missing) is left alone."""
    try:
        with open(path, "r+b") as f:
            if os.fstat(f.fileno()).st_size == size:
                return
            f.truncate(size)
            os.fsync(f.fileno())
    except FileNotFoundError:
        pass


def _prune_checkpoints(trial_dir: str, keep: frozenset) -> None:
    try:
        names = os.listdir(trial_dir)
    except FileNotFoundError:
        return
    for name in names:
        if name.startswith("checkpoint_") and name not in keep:
            shutil.rmtree(os.path.join(trial_dir, name), ignore_errors=True)


def set_aside_unknown_trial_dirs(experiment_path: str, known: Iterable[str], folder: str,
                                 also: Iterable[str] = ()) -> List[str]:
    """Move trial directories the experiment does not know (not in ``known``) into
    ``experiment_path/folder``; returns their names.  A directory is a trial's when it
    holds a trial file or checkpoint, or when ``also`` names it (the results store's trials
    cut off by the restore: theirs may hold only an ``error.txt`` or captured output).

    A driver killed after its last snapshot may have made trials that snapshot does not
    hold.  A restored run makes its new trials afresh (with the same ids, and with the
    same configs when the searcher is seeded), so those directories would mix an old
    run's results with the new one's; set aside, they keep what was reported."""
    known = set(known)  # absolute, as trial paths are
    also = set(also)
    moved: List[str] = []
    for name in sorted(os.listdir(experiment_path)):
        path = os.path.join(experiment_path, name)
        if path in known or name == folder or not os.path.isdir(path):
            continue
        entries = os.listdir(path)
        if name not in also and not any(
                e in (PARAMS_FILE, RESULT_FILE, PROGRESS_FILE) or e.startswith("checkpoint_") for e in entries):
            continue  # not a trial directory
        os.makedirs(os.path.join(experiment_path, folder), exist_ok=True)
        os.replace(path, os.path.join(experiment_path, folder, name))
        moved.append(name)
    return moved
