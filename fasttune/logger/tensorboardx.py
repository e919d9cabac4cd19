"""``TBXLoggerCallback``: each trial's results as TensorBoard event files (needs tensorboardX)."""
from __future__ import annotations

import functools
import importlib.util
import logging
import math
import os
import socket
import time
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from fasttune import _corelib as core
from fasttune._flatten import flatten_dict
from fasttune._optional import missing_dependency
from fasttune.logger._tb_records import file_version_record, hparams_records
from fasttune.logger._trial_files import (WRITER_LINGER_S, add_failure, append_what_fits, close_descriptors,
                                          make_room)
from fasttune.logger._writer_thread import WriterThread
from fasttune.logger.logger import LoggerCallback

__all__ = ["TBXLoggerCallback"]

logger = logging.getLogger(__name__)

# Trials with an open event file; the least recently written are closed past this
# bound (and reopened to append), so population-scale sweeps keep few descriptors.
MAX_OPEN_FILES = 512
MAX_CACHED_TAGS = 100_000
#: The value types logged as scalars, as Ray Tune's (the compiled core checks the same
#: types for the per-result scalars).
VALID_SUMMARY_TYPES = [int, float, np.float32, np.float64, np.int32, np.int64]
_SCALAR_TYPES = tuple(VALID_SUMMARY_TYPES)


def tensorboardx_available() -> bool:
    """Whether tensorboardX can be imported (without importing it: that takes ~0.3 s)."""
    return importlib.util.find_spec("tensorboardX") is not None


def _require_tensorboardx() -> None:
    if not tensorboardx_available():
        raise missing_dependency(
            "TBXLoggerCallback (TensorBoard files)", "tensorboardX", "tensorboard",
            advice="Or leave TBXLoggerCallback out of RunConfig(callbacks=...).",
        )


class TBXLoggerCallback(LoggerCallback):
    """Writes each trial's results as TensorBoard events into its directory
    (``events.out.tfevents.*``), readable by TensorBoard.

    As Ray Tune's: every numeric field of a result (int, float, bool, numpy
    float32/float64/int32/int64; NaN left out) becomes a scalar tagged
    ``ray/tune/<key>``, nested dicts flattened with ``/``, at step
    ``timesteps_total`` (when set) else ``training_iteration``; ``config``, ``pid``,
    ``timestamp``, ``time_total_s`` and ``training_iteration`` are left out.
    Non-empty lists and arrays become histograms (3-, 4- and 5-dimensional arrays:
    an image, images, a video).  When a trial ends, its searched parameters and
    its last scalars' tags are logged as hparams (TensorBoard's HParams tab).

    Unlike tensorboardX's per-scalar ``add_scalar``, each result is one Event holding
    all its scalars, rendered by fasttune's compiled core for a whole batch at once
    (well under a microsecond a result) and appended by a writer thread; the
    header and hparams records are encoded here too, so tensorboardX itself (~0.3 s
    to import) is imported only for histograms, images and videos.  A trial
    keeps one event file across pauses and restarts within a run.  Events reach the
    file within about 10 ms of their batch (the writer gathers what comes meanwhile
    into one write per file: a short trial's file is created with all its events and
    closed at once); TensorBoard reads them as they come.

    Needs ``tensorboardX`` (``pip install tensorboardX``); it is a default logger
    when installed.

    Example:
        >>> import fasttune as tune
        >>> from fasttune.logger import TBXLoggerCallback
        >>> run_config = tune.RunConfig(callbacks=[TBXLoggerCallback()])
    """

    _SAVED_FILE_TEMPLATES = ["events.out.tfevents.*"]

    VALID_HPARAMS = (str, bool, int, float, list, type(None))
    VALID_NP_HPARAMS = (np.bool_, np.float32, np.float64, np.int32, np.int64)

    def __init__(self) -> None:
        _require_tensorboardx()
        self._trials: Dict[str, _TrialEvents] = {}
        # The event file names of ended trials: results that come after the end (a stop at
        # the time budget overtakes the results in flight) and restarts append there.  A
        # name, not a path: names change once a second, so ended trials share a few
        # strings, and a sweep of 100,000 trials keeps no path of each.
        self._ended: Dict[str, str] = {}
        # Each numeric key's encoded tag (a function of the key alone), for every trial.
        self._tags: Dict[str, Optional[bytes]] = {}
        self._files = _EventFiles()
        self._writer = WriterThread("TensorBoard event files", thread_name="fasttune-tbx", linger_s=WRITER_LINGER_S,
                                    commit=self._files.commit)

    def __getstate__(self) -> Dict[str, Any]:
        # Saved with the Tuner (RunConfig(callbacks=...)): the open files and the
        # writer thread stay with this process; a restored copy opens its own.
        return {k: v for k, v in self.__dict__.items() if k not in ("_trials", "_ended", "_tags", "_files", "_writer")}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        TBXLoggerCallback.__init__(self)
        self.__dict__.update(state)

    def log_trial_start(self, trial: Any) -> None:
        if trial.trial_id in self._trials or trial.path is None:
            return  # resumed within this run: its event file goes on
        name = self._ended.pop(trial.trial_id, None)
        if name is None:
            name = _event_file_name()
            path = f"{trial.path}{os.sep}{name}"
            self._writer.submit(self._files.create, path, time.time())
        else:
            path = f"{trial.path}{os.sep}{name}"
        self._trials[trial.trial_id] = _TrialEvents(path, name)

    log_trial_restore = log_trial_start

    def log_trial_result_batch(self, iteration: int, trial: Any, results: List[Dict[str, Any]],
                               times: List[float]) -> None:
        self._writer.check()  # a failed write stops the sweep (told once)
        events = self._trials.get(trial.trial_id)
        if events is None:
            self.log_trial_start(trial)
            events = self._trials.get(trial.trial_id)
            if events is None or not results:
                return
        if len(self._tags) > MAX_CACHED_TAGS:
            self._tags.clear()  # results with ever new keys
        records, others = core.tb_scalar_events(results, times, self._tags)
        events.last_result = results[-1]
        if records:
            self._writer.submit(self._files.append, events.path, records)
        if others:
            placed = [(tag, value, _step(results[index]), times[index]) for index, tag, value in others]
            self._writer.submit(self._append_others, events.path, placed)

    def log_trial_result(self, iteration: int, trial: Any, result: Dict[str, Any]) -> None:
        self.log_trial_result_batch(iteration, trial, [result], [time.time()])

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        events = self._trials.pop(trial.trial_id, None)
        if events is None:
            return
        self._ended[trial.trial_id] = events.name
        if trial.evaluated_params and events.last_result:
            self._writer.submit(self._end_with_hparams, events.path, str(trial), trial.evaluated_params,
                                events.last_result)
        else:
            self._writer.submit(self._files.close, events.path)

    def on_experiment_end(self, trials: List[Any], **info: Any) -> None:
        self._trials.clear()
        self._ended.clear()
        self._writer.submit(self._files.close_all)
        self._writer.close()

    # ---- on the writer thread ------------------------------------------------------------
    def _append_others(self, path: str, placed: List[Tuple[str, Any, int, float]]) -> None:
        """Histograms, images and videos (lists and arrays), through tensorboardX."""
        from tensorboardX import summary

        records = []
        for tag, value, step, wall_time in placed:
            try:
                if isinstance(value, np.ndarray) and value.ndim == 3:
                    made = summary.image(tag, value, dataformats="CHW")
                elif isinstance(value, np.ndarray) and value.ndim == 4:
                    made = summary.image(tag, value, dataformats="NCHW")
                elif isinstance(value, np.ndarray) and value.ndim == 5:
                    made = summary.video(tag, value, fps=20)
                else:
                    made = summary.histogram(tag, np.asarray(value), _tensorflow_bins())
            except (ValueError, TypeError) as exc:
                logger.warning("The value of %s (%r) cannot be logged to TensorBoard: %s", tag, value, exc)
                continue
            records.append(_summary_record(made, step, wall_time))
        if records:
            self._files.append(path, b"".join(records))

    def _end_with_hparams(self, path: str, trial_name: str, params: Dict[str, Any],
                          last_result: Dict[str, Any]) -> None:
        try:
            self._append_hparams(path, trial_name, params, last_result)
        finally:
            self._files.close(path)

    def _append_hparams(self, path: str, trial_name: str, params: Dict[str, Any], last_result: Dict[str, Any]) -> None:
        hparams = self._plain_hparams(params)
        if hparams is None:
            flat_params = flatten_dict(params)
            hparams = {k: v for k, v in flat_params.items() if isinstance(v, self.VALID_HPARAMS)}
            hparams.update({k: v.tolist() for k, v in flat_params.items() if isinstance(v, self.VALID_NP_HPARAMS)})
            if len(hparams) < len(flat_params):
                removed = sorted(set(flat_params) - set(hparams))
                logger.info("Trial %s: hyperparameters %s are not logged to TensorBoard (not a number, string, "
                            "bool or list).", trial_name, removed)
        metrics = _flat_metric_tags(last_result)
        if metrics is None:
            logged = {key: value for key, value in last_result.items() if key not in core.TB_SKIPPED_KEYS}
            metrics = [f"ray/tune/{key}" for key, value in flatten_dict(logged).items()
                       if isinstance(value, _SCALAR_TYPES) and value == value]  # NaN is not logged
        self._files.append(path, hparams_records(hparams, metrics, time.time()))

    def _plain_hparams(self, params: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        """``params`` itself when it is what flattening and filtering it would give (no
        nested dict, every value of a type logged as it is); else None."""
        if self.VALID_HPARAMS is not TBXLoggerCallback.VALID_HPARAMS:
            return None  # a subclass logs other types
        for value in params.values():
            if type(value) not in _PLAIN_HPARAM_TYPES:
                return None
        return params


# The types of hyperparameter value that VALID_HPARAMS takes as they are (not subclasses,
# which isinstance takes too, nor dicts, which are flattened).
_PLAIN_HPARAM_TYPES = frozenset({str, bool, int, float, list, type(None)})


def _flat_metric_tags(last_result: Dict[str, Any]) -> Optional[List[str]]:
    """The hparams metrics of a result without nested dicts: the tags of its scalars (NaN
    and :data:`core.TB_SKIPPED_KEYS` left out); None for a result with a nested dict
    (outside the skipped keys), which is flattened first."""
    skipped = core.TB_SKIPPED_KEYS
    tags = []
    for key, value in last_result.items():
        kind = type(value)
        if kind is float:
            if value == value and key not in skipped:
                tags.append(f"ray/tune/{key}")
        elif kind is int or kind is bool:
            if key not in skipped:
                tags.append(f"ray/tune/{key}")
        elif kind is str or value is None:  # a result's usual non-scalars (trial_id, date, ...)
            continue
        elif isinstance(value, dict):
            if key not in skipped:
                return None
        elif isinstance(value, _SCALAR_TYPES) and value == value and key not in skipped:
            tags.append(f"ray/tune/{key}")
    return tags


class _TrialEvents:
    """A trial's event file (its path and name) and its last result."""

    __slots__ = ("path", "name", "last_result")

    def __init__(self, path: str, name: str) -> None:
        self.path = path
        self.name = name
        self.last_result: Optional[Dict[str, Any]] = None


class _EventFiles:
    """Event files by path (writer thread only): what a batch of calls appends is staged
    and written at its end (:meth:`commit`), one write per file, in one call of the core
    (its system calls made without the GIL); the files stay open for more, the least
    recently written closed first, until closed.  A file that keeps a torn record (an
    :class:`~fasttune._core_shared.AppendNotCutBack`) is closed and written no more:
    TensorBoard stops reading a file at a torn record."""

    def __init__(self) -> None:
        self._open: "OrderedDict[str, Tuple[int, int]]" = OrderedDict()  # path -> (descriptor, -1)
        self._torn: set = set()  # paths of files that keep a torn record
        # path -> [the byte strings to append, whether the file closes after them]
        self._staged: Dict[str, List[Any]] = {}

    def create(self, path: str, wall_time: float) -> None:
        self.append(path, file_version_record(wall_time))

    def append(self, path: str, data: bytes) -> None:
        staged = self._staged.get(path)
        if staged is None:
            self._staged[path] = [[data], False]
        else:
            staged[0].append(data)

    def close(self, path: str) -> None:
        staged = self._staged.get(path)
        if staged is None:
            self._staged[path] = [[], True]
        else:
            staged[1] = True

    def commit(self) -> None:
        """Write what was staged, file by file (a failure stops no other file's write; the
        first is raised at the end)."""
        if not self._staged:
            return
        staged, self._staged = self._staged, {}
        if self._torn:
            staged = {path: each for path, each in staged.items() if path not in self._torn}
        failures: List[BaseException] = []
        writing = [path for path, (parts, close) in staged.items() if parts and not close]
        keep_open = set(writing[-MAX_OPEN_FILES:])
        make_room(self._open, staged, len(keep_open), MAX_OPEN_FILES, failures)
        # Appends through open files (and closes) go first, so the files they close are
        # closed before new ones open.
        first: List[tuple] = []
        then: List[tuple] = []
        for path, (parts, close) in staged.items():
            fds = self._open.pop(path, (-1, -1))
            try:
                if not path.isascii():  # ASCII names always encode
                    os.fsencode(path)
            except UnicodeEncodeError as exc:  # a name the file system cannot take: this file's failure
                failures.append(exc)
                close_descriptors(fds, failures)
                continue
            if parts:
                # The trial's directory may not be made yet (the result files' thread makes it).
                op = (core.FILE_APPEND, path, fds[0], b"".join(parts), None, -1, b"", close or path not in keep_open, True)
                (first if fds[0] >= 0 else then).append(op)
            elif close:
                close_descriptors(fds, failures)
        ops = first + then
        while ops:
            try:
                fds, error, whole = core.write_file_batch(ops)
            except BaseException:
                for op in ops:  # raised before any op ran: the files stay open, as they were
                    if op[2] >= 0:
                        self._open[op[1]] = (op[2], -1)
                raise
            for op, each in zip(ops, fds):
                if each[0] >= 0:
                    self._open[op[1]] = each
            if error is None:
                break
            add_failure(failures, error)
            failed = ops[len(fds) - 1]
            ops = ops[len(fds):]
            if not whole and len(staged[failed[1]][0]) > 1 and not isinstance(error, core.AppendNotCutBack):
                # A torn record would end TensorBoard's reading: as many whole ones as fit
                # (after one that could not be cut back, none would be read).
                self._append_what_fits(failed[1], staged[failed[1]][0], failed[7], failures)
        for failure in failures:
            if isinstance(failure, core.AppendNotCutBack):
                self._torn.update(failure.uncut_paths)
        for path in self._torn.intersection(self._open):
            close_descriptors(self._open.pop(path), failures)
        if failures:
            raise failures[0]

    def _append_what_fits(self, path: str, parts: List[bytes], close: bool, failures: List[BaseException]) -> None:
        append_what_fits(self._open, path, parts,
                         lambda fds, part: (core.FILE_APPEND, path, fds[0], part, None, -1, b"", False, True),
                         close, failures)

    def close_all(self) -> None:
        failures: List[BaseException] = []
        try:
            self.commit()
        finally:
            while self._open:
                close_descriptors(self._open.popitem()[1], failures)
        if failures:
            raise failures[0]


def _event_file_name() -> str:
    # tensorboardX's naming; "tfevents" in the name is what TensorBoard looks for.  The
    # name changes once a second: made once for each.
    second = int(time.time())
    if second != _last_name[0]:
        _last_name[:] = [second, f"events.out.tfevents.{second:010d}.{_hostname()}"]
    return _last_name[1]


_last_name: List[Any] = [None, ""]


@functools.lru_cache(maxsize=None)
def _hostname() -> str:
    return socket.gethostname()  # a system call per trial otherwise (1-2 ms on a loaded machine)


def _summary_record(summary: Any, step: int, wall_time: float) -> bytes:
    from tensorboardX.proto.event_pb2 import Event

    return core.tfrecord(Event(wall_time=wall_time, step=step, summary=summary).SerializeToString())


@functools.lru_cache(maxsize=1)
def _tensorflow_bins() -> List[float]:
    """TensorFlow's default histogram bucket edges (add_histogram's ``bins="tensorflow"``):
    powers of 1.1 from 1e-12 up to 1e20, mirrored for negatives, and 0."""
    count = int(math.ceil(math.log(1e20 / 1e-12) / math.log(1.1)))
    positive = [1e-12 * 1.1 ** k for k in range(count)]
    return [-v for v in reversed(positive)] + [0.0] + positive


def _step(result: Dict[str, Any]) -> int:
    return int(result.get("timesteps_total") or result.get("training_iteration") or 0)
