"""Pure-Python twin of :mod:`fasttune._core`, and its executable specification.

This module and the compiled ``fasttune._core`` expose the same names and behave
identically, down to exception types and messages and the exact bytes they
produce; the differential tests in ``tests/core`` hold them to that.  Read this
file to learn what the core does; read ``_core.pyx`` to learn how it does it fast.
What the two share -- constants, exception classes, error messages, the snapshot
format -- is defined once in :mod:`fasttune._core_shared` and imported by both.
Import the core through :mod:`fasttune._corelib`, which picks the implementation
(``FASTTUNE_PUREPYTHON=1`` selects this one).

Five pieces live here:

* :class:`TrialTable` -- columnar per-trial bookkeeping with enforced status
  transitions, O(1) counts per status, numpy column views and compact snapshots.
* :class:`EventSelector` -- fair (round-robin) choice among ready worker events.
* :class:`ResultBuffer` -- turns raw worker results into complete Ray-Tune-style
  result dicts plus the exact bytes for ``result.json`` and ``progress.csv``.
* :func:`tb_scalar_events` -- a batch of results as TensorBoard event records
  (one ``Event`` per result holding all its scalars), framed by :func:`tfrecord`.
* :func:`write_file_batch` -- a writer thread's batch of file system calls (the
  compiled core makes them without holding the GIL, so the event loop runs meanwhile).

Example:
    >>> t = TrialTable(mode="min")
    >>> row = t.add()
    >>> t.set_status(row, RUNNING)
    0
    >>> t.counts()
    (0, 1, 0, 0, 0)
"""
from __future__ import annotations

import array
import csv
import io
import json
import math
import errno
import operator
import os
import struct
import sys
import time
from typing import Any, Optional

import numpy as np

from fasttune._core_shared import (
    COLUMNS, ERROR, EVENT_BATCH, EVENT_ERROR, EVENT_START, FILE_APPEND, FILE_MKDIR, FILE_REPLACE,
    INT32_MAX, LEGAL_TRANSITIONS,
    MAX_DEPTH, MAX_WORKER_SLOT, MODES, PAUSED, PENDING, RUNNING, SNAPSHOT_VERSION,
    STATUS_NAMES, TB_SKIPPED_KEYS, TERMINATED, CorruptSnapshot, IllegalTransition, append_not_cut_back,
    check_file_ops,
    tb_file_version_record_python, tb_hparams_records_python,
    event_kind_error, illegal_transition, iteration_error, parse_snapshot,
    selector_slot_error, snapshot_bytes, status_error, unknown_column, worker_slot_error,
)

__all__ = [
    "PENDING", "RUNNING", "PAUSED", "TERMINATED", "ERROR", "STATUS_NAMES",
    "SNAPSHOT_VERSION", "EVENT_START", "EVENT_BATCH", "EVENT_ERROR",
    "MAX_WORKER_SLOT", "IllegalTransition", "CorruptSnapshot",
    "TrialTable", "EventSelector", "ResultBuffer", "Ingested",
    "crc32c", "tfrecord", "tb_scalar_events", "tb_file_version_record", "tb_hparams_records", "TB_SKIPPED_KEYS",
    "FILE_MKDIR", "FILE_REPLACE", "FILE_APPEND", "write_file_batch", "metric_number",
]

_DTYPES = {name: np.dtype(dtype).newbyteorder("=").type for name, dtype in COLUMNS}


class TrialTable:
    """Columnar bookkeeping for every trial of an experiment, one row per trial.

    Rows are numbered 0, 1, ... in the order of :meth:`add` and never removed.
    Status changes are checked against the legal transitions and keep per-status
    counts and memberships up to date, so :meth:`count` is O(1) and :meth:`rows`
    is proportional to the rows it returns.

    Args:
        mode: ``"min"`` or ``"max"`` decides which metric is the best so far;
            ``None`` makes the best metric simply the last non-nan one.

    Example:
        >>> t = TrialTable(mode="max")
        >>> a, b = t.add(), t.add()
        >>> t.set_status(b, RUNNING)
        0
        >>> t.record_result(b, 1, 2.5, 0.7)
        >>> t.rows(RUNNING), t.get_best_metric(b)
        ([1], 0.7)
        >>> TrialTable.from_snapshot(t.snapshot()).counts()
        (1, 1, 0, 0, 0)
    """

    def __init__(self, mode: Optional[str] = None) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be 'min', 'max' or None, got {mode!r}")
        self._mode = mode
        self._status = array.array("B")
        self._iteration = array.array("q")
        self._failures = array.array("i")
        self._last_metric = array.array("d")
        self._best_metric = array.array("d")
        self._time_total = array.array("d")
        self._worker_slot = array.array("i")
        self._members: list[set[int]] = [set() for _ in STATUS_NAMES]
        self._held = 0  # rows whose worker slot is not -1

    @property
    def mode(self) -> Optional[str]:
        """The mode given at construction: ``"min"``, ``"max"`` or ``None``."""
        return self._mode

    def __len__(self) -> int:
        return len(self._status)

    def __repr__(self) -> str:
        counts = ", ".join(f"{n}={c}" for n, c in zip(STATUS_NAMES, self.counts()))
        return f"TrialTable(mode={self._mode!r}, rows={len(self)}, {counts})"

    def _row(self, row: int, later: int = 0) -> int:
        """``row`` as an index of an existing row; ``later`` is the method's next integer
        argument, which the core has converted (and may have failed to) before this check."""
        row = operator.index(row)
        if not 0 <= row < len(self._status):
            _fail_past_ssize(row, later)
            raise IndexError(f"no trial row {row} (table has {len(self._status)} rows)")
        return row

    def _row_and(self, row: int, value: int) -> "tuple[int, int]":
        """``row`` (an existing row) and the integer argument after it, converted and
        checked in the core's order: both converted, then the row checked."""
        row = operator.index(row)
        value = _index_after(value, row)
        if not 0 <= row < len(self._status):
            self._row(row, value)  # raises the core's error
        return row, value

    def add(self) -> int:
        """Appends a PENDING row with zeroed counters and nan metrics; returns its number."""
        row = len(self._status)
        self._status.append(PENDING)
        self._iteration.append(0)
        self._failures.append(0)
        self._last_metric.append(math.nan)
        self._best_metric.append(math.nan)
        self._time_total.append(0.0)
        self._worker_slot.append(-1)
        self._members[PENDING].add(row)
        return row

    def get_status(self, row: int) -> int:
        return self._status[self._row(row)]

    def set_status(self, row: int, status: int) -> int:
        """Moves ``row`` to ``status`` and returns the old status.

        Setting the current status again does nothing.  An illegal move raises
        :class:`IllegalTransition` and leaves the table unchanged.
        """
        row, status = self._row_and(row, status)
        if not 0 <= status <= ERROR:
            _fail_past_ssize(status)
            raise status_error(status)
        old = self._status[row]
        if status == old:
            return old
        if status not in LEGAL_TRANSITIONS[old]:
            raise illegal_transition(row, old, status)
        self._members[old].remove(row)
        self._members[status].add(row)
        self._status[row] = status
        return old

    def count(self, status: int) -> int:
        status = operator.index(status)
        if not 0 <= status <= ERROR:
            _fail_past_ssize(status)
            raise status_error(status)
        return len(self._members[status])

    def counts(self) -> tuple[int, int, int, int, int]:
        """Rows per status, indexed by status: ``(pending, running, paused, terminated, error)``."""
        return tuple(len(m) for m in self._members)

    def rows(self, status: int) -> list[int]:
        """The rows currently in ``status``, ascending."""
        status = operator.index(status)
        if not 0 <= status <= ERROR:
            _fail_past_ssize(status)
            raise status_error(status)
        return sorted(self._members[status])

    def get_iteration(self, row: int) -> int:
        return self._iteration[self._row(row)]

    def set_iteration(self, row: int, iteration: int) -> None:
        row, iteration = self._row_and(row, iteration)
        self._iteration[row] = _check_iteration(iteration)

    def get_failures(self, row: int) -> int:
        return self._failures[self._row(row)]

    def increment_failures(self, row: int) -> int:
        """Adds one to the row's failure count and returns the new count."""
        row = self._row(row)
        self._failures[row] += 1
        return self._failures[row]

    def get_last_metric(self, row: int) -> float:
        return self._last_metric[self._row(row)]

    def get_best_metric(self, row: int) -> float:
        return self._best_metric[self._row(row)]

    def get_time_total(self, row: int) -> float:
        return self._time_total[self._row(row)]

    def set_time_total(self, row: int, time_total_s: float) -> None:
        row = operator.index(row)
        time_total_s = _as_double_after(time_total_s, row)
        self._time_total[self._row(row)] = time_total_s

    def get_worker_slot(self, row: int) -> int:
        return self._worker_slot[self._row(row)]

    def set_worker_slot(self, row: int, slot: int) -> None:
        """Records which worker runs the trial; ``-1`` means none."""
        row, slot = self._row_and(row, slot)
        if not -1 <= slot <= INT32_MAX:
            _fail_past_ssize(slot)
            raise worker_slot_error(slot)
        self._held += (slot >= 0) - (self._worker_slot[row] >= 0)
        self._worker_slot[row] = slot

    def held_count(self) -> int:
        """How many rows have a worker slot (are held by a worker), in O(1)."""
        return self._held

    def record_result(self, row: int, iteration: int, time_total_s: float,
                      metric: float) -> None:
        """Stores a result's iteration, total time and metric (nan: not reported).

        The best metric follows the table's mode and ignores nan.
        """
        row = operator.index(row)
        iteration = _index_after(iteration, row)
        time_total_s, metric = _as_double_after(time_total_s, row, iteration), _as_double_after(metric, row, iteration)
        row, iteration = self._row(row, iteration), _check_iteration(iteration)
        self._iteration[row] = iteration
        self._time_total[row] = time_total_s
        self._last_metric[row] = metric
        if math.isnan(metric):
            return
        best = self._best_metric[row]
        if (self._mode is None or math.isnan(best)
                or (self._mode == "min" and metric < best)
                or (self._mode == "max" and metric > best)):
            self._best_metric[row] = metric

    def set_metrics(self, row: int, last: float, best: float) -> None:
        """Sets the row's last and best metric (nan: none), as a trial whose history was
        cut back had them at the point it goes back to; its other columns stay.

        Example:
            >>> t = TrialTable(mode="min")
            >>> row = t.add()
            >>> t.record_result(row, 3, 1.0, 0.5)
            >>> t.set_metrics(row, 4.0, 2.0)
            >>> t.get_last_metric(row), t.get_best_metric(row), t.get_iteration(row)
            (4.0, 2.0, 3)
        """
        # The core converts every argument before it checks the row's range.
        row = operator.index(row)
        last, best = _as_double_after(last, row), _as_double_after(best, row)
        row = self._row(row)
        self._last_metric[row] = last
        self._best_metric[row] = best

    def column(self, name: str) -> np.ndarray:
        """A read-only numpy copy of one column's first ``len(self)`` values.

        Columns: status (uint8), iteration (int64), failures (int32), last_metric,
        best_metric, time_total_s (float64), worker_slot (int32).
        """
        arrays = self._column_arrays()
        if name not in arrays:
            raise unknown_column(name)
        out = np.array(arrays[name], dtype=_DTYPES[name])
        out.flags.writeable = False
        return out

    def _column_arrays(self) -> dict[str, array.array]:
        return {"status": self._status, "iteration": self._iteration,
                "failures": self._failures, "last_metric": self._last_metric,
                "best_metric": self._best_metric, "time_total_s": self._time_total,
                "worker_slot": self._worker_slot}

    def __reduce__(self):
        # Pickle (and copy) through the snapshot format, like the compiled table.
        return (_table_from_snapshot, (self.snapshot(),))

    def snapshot(self) -> bytes:
        """The whole table as compact bytes; see :meth:`from_snapshot`."""
        return snapshot_bytes(self._mode, len(self), self.column)

    @staticmethod
    def from_snapshot(data: bytes) -> "TrialTable":
        """Rebuilds a table from :meth:`snapshot` bytes.

        Raises:
            CorruptSnapshot: the bytes are truncated, are not a snapshot, hold
                impossible values, or come from a newer fasttune.
        """
        mode, _, columns = parse_snapshot(data)
        table = TrialTable(mode)
        for name, target in table._column_arrays().items():
            target.frombytes(columns[name].astype(target.typecode).tobytes())
        for row, status in enumerate(table._status):
            table._members[status].add(row)
        table._held = sum(slot >= 0 for slot in table._worker_slot)
        return table


def _table_from_snapshot(data: bytes) -> TrialTable:
    return TrialTable.from_snapshot(data)


def _as_double(value: Any) -> float:
    """``value`` converted as the compiled core converts its ``double`` arguments (CPython's
    ``PyFloat_AsDouble``, which an ``array("d")`` item takes too): a real number, never a
    numeric string or bytes as ``float()`` would parse them, with the core's TypeError."""
    if type(value) is float:  # the usual case, kept cheap
        return value
    return array.array("d", (value,))[0]


def _index_after(value: Any, *earlier: int) -> int:
    """``operator.index(value)`` for an argument the core converts after the integer
    arguments ``earlier``: one of those past the C ssize_t range is the error then."""
    try:
        return operator.index(value)
    except TypeError:
        _fail_past_ssize(*earlier)
        raise


def _as_double_after(value: Any, *earlier: int) -> float:
    """``_as_double(value)`` for an argument the core converts after the integer arguments
    ``earlier``: one of those past the C ssize_t range is the error then."""
    try:
        return _as_double(value)
    except TypeError:
        _fail_past_ssize(*earlier)
        raise


# The C ssize_t range the compiled core converts its integer arguments into.
_SSIZE_MIN, _SSIZE_MAX = -sys.maxsize - 1, sys.maxsize


def _fail_past_ssize(*values: int) -> None:
    """Raises the OverflowError the compiled core raises for the first of ``values`` (integer
    arguments, in order) past the C ssize_t range, or returns.

    The core converts every integer argument to ``Py_ssize_t`` before it checks any, so a
    row (or status, slot, iteration) that does not fit is an OverflowError there, not an
    IndexError or ValueError: a check before the conversion would cost every call.  Such a
    value fails every check the twin makes, so the twin calls this on its way to raising (and
    where a value is otherwise unchecked: a start event's slot, a slot with nothing pending).

    >>> _fail_past_ssize(3, 2 ** 63)
    Traceback (most recent call last):
    OverflowError: Python int too large to convert to C ssize_t
    """
    for value in values:
        if not _SSIZE_MIN <= value <= _SSIZE_MAX:
            raise OverflowError("Python int too large to convert to C ssize_t")


def _check_iteration(iteration: int) -> int:
    iteration = operator.index(iteration)
    if not 0 <= iteration <= _SSIZE_MAX:
        _fail_past_ssize(iteration)
        raise iteration_error(iteration)
    return iteration


class EventSelector:
    """Chooses the next event for the runner, fairly among workers.

    Starting a trial comes first whenever one can be started.  Worker events are
    served round robin by slot: after slot ``s`` is served, the next pick is the
    smallest pending slot above ``s``, wrapping around, so no worker starves however
    busy the others are.  A slot's error is served before its batch.

    Example:
        >>> sel = EventSelector()
        >>> sel.push(3, EVENT_BATCH); sel.push(1, EVENT_BATCH); sel.push(-1, EVENT_START)
        >>> sel.pop(False), sel.pop(True), sel.pop(True), sel.pop(True)
        ((1, 1), (-1, 0), (3, 1), None)
    """

    def __init__(self) -> None:
        self._start_pending = False
        self._pending: dict[int, set[int]] = {}  # worker slot -> pending kinds
        self._cursor = 0

    def __len__(self) -> int:
        return self._start_pending + sum(len(kinds) for kinds in self._pending.values())

    def __repr__(self) -> str:
        return f"EventSelector(pending={len(self)})"

    def push(self, slot: int, kind: int) -> None:
        """Marks an event ready; pushing one that is already pending changes nothing.

        For ``EVENT_START`` the slot is ignored (pass -1).
        """
        slot = operator.index(slot)
        kind = _index_after(kind, slot)
        if kind == EVENT_START:
            _fail_past_ssize(slot)
            self._start_pending = True
            return
        if kind not in (EVENT_BATCH, EVENT_ERROR):
            _fail_past_ssize(slot, kind)
            raise event_kind_error(kind)
        if not 0 <= slot <= MAX_WORKER_SLOT:
            _fail_past_ssize(slot)
            raise selector_slot_error(slot)
        self._pending.setdefault(slot, set()).add(kind)

    def pop(self, next_trial_exists: bool) -> Optional[tuple[int, int]]:
        """Removes and returns the next ``(slot, kind)``, or ``None`` if nothing is eligible.

        ``EVENT_START`` is only eligible while ``next_trial_exists``.
        """
        if next_trial_exists and self._start_pending:
            self._start_pending = False
            return (-1, EVENT_START)
        if not self._pending:
            return None
        later = [s for s in self._pending if s >= self._cursor]
        slot = min(later) if later else min(self._pending)
        kinds = self._pending[slot]
        kind = EVENT_ERROR if EVENT_ERROR in kinds else EVENT_BATCH
        kinds.remove(kind)
        if not kinds:
            del self._pending[slot]
        self._cursor = slot + 1
        return (slot, kind)

    def discard(self, slot: int) -> None:
        """Drops every pending event of a worker slot (its worker is gone)."""
        slot = operator.index(slot)
        if self._pending.pop(slot, None) is None:
            _fail_past_ssize(slot)  # no pending slot is past the range


class Ingested:
    """What :meth:`ResultBuffer.ingest` made of one batch.

    Attributes:
        results: the complete result dicts kept, oldest first (no ``"config"`` key).
        json_bytes: their ``result.json`` lines.
        csv_bytes: their ``progress.csv`` rows, after the header line if this
            batch started the file.
        stopped: a kept result met the trial's stop condition (it is the last one).
        error: why the batch could not be fully processed, or ``None``.
        metric_values: what the table recorded as each kept result's metric (nan
            where it has none, or no metric is set), oldest first.
        last: the last kept result, or ``None``.
    """

    __slots__ = ("results", "json_bytes", "csv_bytes", "stopped", "error", "metric_values", "_done_at")

    def __init__(self) -> None:
        self.results: list[dict] = []
        self.json_bytes = b""
        self.csv_bytes = b""
        self.stopped = False
        self.error: Optional[str] = None
        self.metric_values: list[float] = []
        # Where the last result's "done" value was rendered: (start, end) in
        # json_bytes, then in csv_bytes ((-1, -1) when the CSV has no "done" column).
        self._done_at = (-1, -1, -1, -1)

    @property
    def last(self) -> Optional[dict]:
        return self.results[-1] if self.results else None

    def mark_last_done(self) -> None:
        """Makes the last kept result say that it ends the trial.

        Its ``done`` becomes True in the dict and in the rendered bytes: its
        ``result.json`` line and ``progress.csv`` row become exactly what
        rendering it with ``done=True`` would have given (the CSV row changes
        only if the file's header has a ``done`` column).  The runner calls this
        when a scheduler or stopper ends the trial on the batch's last result.
        The bytes are patched where :meth:`ResultBuffer.ingest` recorded that it
        rendered the field, so no text is searched.

        Example:
            >>> t = TrialTable(); row = t.add(); buf = ResultBuffer(t, None)
            >>> buf.open_trial(row, "t", "{}", None, start_time=0.0, hostname="h",
            ...                node_ip="n", pid=1)
            >>> out = buf.ingest(row, [{"x": 1}, {"x": 2}], [1.0, 2.0])
            >>> out.mark_last_done()
            >>> [r["done"] for r in out.results]
            [False, True]
            >>> [json.loads(line)["done"] for line in out.json_bytes.splitlines()]
            [False, True]
            >>> [line.split(b",")[3] for line in out.csv_bytes.splitlines()]
            [b'done', b'False', b'True']
        """
        if not self.results:
            raise ValueError("mark_last_done: the batch kept no result")
        self.results[-1]["done"] = True
        json_start, json_end, csv_start, csv_end = self._done_at
        self.json_bytes = self.json_bytes[:json_start] + b"true" + self.json_bytes[json_end:]
        if csv_start >= 0:
            self.csv_bytes = self.csv_bytes[:csv_start] + b"True" + self.csv_bytes[csv_end:]
            csv_end = csv_start + 4
        self._done_at = (json_start, json_start + 4, csv_start, csv_end)

    def __repr__(self) -> str:
        return (f"Ingested(results={len(self.results)}, stopped={self.stopped}, "
                f"error={self.error!r})")


class _Segment:
    """Per-row state of one run segment: from a (re)start until close."""

    __slots__ = ("trial_id", "config_json", "stop", "start_time", "hostname", "node_ip",
                 "pid", "base_iteration", "base_time", "done_in_segment", "prev_time")


def _is_real_number(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating, np.bool_))


def metric_number(value: object) -> float:
    """The number the table records for a result's metric ``value``: a real number (a
    bool, a numpy scalar) as a float, anything else (None, a string, a list, an int too
    large for a float) as nan.

    Example:
        >>> metric_number(3), metric_number(True), metric_number("0.5"), metric_number(10 ** 400)
        (3.0, 1.0, nan, nan)
    """
    if isinstance(value, float):
        return float.__float__(value)  # (a subclass's own value, not its __float__: as the core reads it)
    if not _is_real_number(value):
        return math.nan
    try:
        return float(value)
    except OverflowError:  # an int too large for a float
        return math.nan


class _Refused(Exception):
    """Internal: the result at hand cannot be kept; carries the message for Ingested.error."""


class ResultBuffer:
    """Completes the results workers send and renders them for the trial's logs.

    One buffer serves all trials of a :class:`TrialTable`.  Each run of a trial
    (its first start, or a restore) is a *segment* opened by :meth:`open_trial`;
    :meth:`ingest` then turns the batch of raw metric dicts a worker sent into
    complete result dicts -- the user's keys first, then the automatic fields
    ``timestamp, checkpoint_dir_name, done, training_iteration, trial_id, date,
    time_this_iter_s, time_total_s, pid, hostname, node_ip, time_since_restore,
    iterations_since_restore`` -- checks the metric and the stop criteria, records
    each result in the table, and renders the ``result.json`` lines and
    ``progress.csv`` rows.  A top-level ``"config"`` key in a reported dict is
    dropped: ``result.json`` carries the trial's config instead.

    Args:
        table: the table whose rows the trials are.
        metric: the metric every result must report (``TuneConfig(metric=...)``),
            or ``None``.

    Example:
        >>> t = TrialTable(mode="min"); row = t.add()
        >>> buf = ResultBuffer(t, "loss")
        >>> buf.open_trial(row, "t_00000", '{"lr": 0.1}', {"training_iteration": 2},
        ...                start_time=100.0, hostname="h", node_ip="10.0.0.1", pid=7)
        >>> out = buf.ingest(row, [{"loss": 3.0}, {"loss": 2.0}, {"loss": 1.0}],
        ...                  [101.0, 102.5, 104.0])
        >>> [(r["training_iteration"], r["time_this_iter_s"], r["done"]) for r in out.results]
        [(1, 1.0, False), (2, 1.5, True)]
        >>> out.stopped, t.get_best_metric(row), t.get_iteration(row)
        (True, 2.0, 2)
        >>> json.loads(out.json_bytes.splitlines()[0])["config"]
        {'lr': 0.1}
    """

    def __init__(self, table: TrialTable, metric: Optional[str], *, require_metric: bool = True) -> None:
        if not isinstance(table, TrialTable):
            raise TypeError("ResultBuffer needs a TrialTable from the same implementation, "
                            f"got {type(table).__name__}")
        if metric is not None and not isinstance(metric, str):
            raise TypeError(f"metric must be a string or None, got {type(metric).__name__}")
        self._table = table
        self._metric = metric
        self._require_metric = bool(require_metric)  # False: a result without the metric records NaN
        self._segments: dict[int, _Segment] = {}
        self._csv_headers: dict[int, tuple[str, ...]] = {}
        self._shared_headers: dict[tuple[str, ...], tuple[str, ...]] = {}  # one per column set
        self._last: dict[int, dict] = {}
        self._date_second: Optional[int] = None
        self._date_text = ""

    @property
    def table(self) -> TrialTable:
        return self._table

    @property
    def metric(self) -> Optional[str]:
        return self._metric

    def open_trial(self, row: int, trial_id: str, config_json: str, stop: Optional[dict], *,
                   start_time: float, hostname: str, node_ip: str, pid: int) -> None:
        """Starts a run segment of a trial (its first start, or a restore).

        The segment's iteration and total time continue from the table row's;
        ``iterations_since_restore`` and ``time_since_restore`` count from the
        segment's start.  ``config_json`` is the trial's config already encoded as
        JSON, spliced verbatim into every ``result.json`` line.  ``stop`` maps
        flattened result keys to thresholds (``RunConfig(stop=...)`` as a dict).
        """
        row = self._table._row(row)
        if not isinstance(trial_id, str):
            raise TypeError(f"trial_id must be a string, got {type(trial_id).__name__}")
        if not isinstance(config_json, str):
            raise TypeError(f"config_json must be a string, got {type(config_json).__name__}")
        if stop is not None and not isinstance(stop, dict):
            raise TypeError("stop must be a dict of result key to threshold or None, "
                            f"got {type(stop).__name__}")
        seg = _Segment()
        seg.trial_id = trial_id
        config_json.encode("utf-8")  # refuse lone surrogates now, not at every result
        seg.config_json = config_json
        seg.stop = tuple(stop.items()) if stop else ()
        seg.start_time = float(start_time)
        seg.hostname, seg.node_ip, seg.pid = hostname, node_ip, pid
        seg.base_iteration = self._table.get_iteration(row)
        seg.base_time = self._table.get_time_total(row)
        seg.done_in_segment = 0
        seg.prev_time = seg.start_time
        self._segments[row] = seg

    def close_trial(self, row: int) -> None:
        """Ends the row's segment.  Its CSV header state stays; its last result goes
        (the trial holds it: a buffer kept for 100,000 finished trials would hold them all)."""
        row = self._table._row(row)
        self._segments.pop(row, None)
        self._last.pop(row, None)

    def last_result(self, row: int) -> Optional[dict]:
        """The row's last result while its trial is open (until ``close_trial``), or ``None``."""
        return self._last.get(self._table._row(row))

    def csv_header_written(self, row: int) -> bool:
        """Whether the row's ``progress.csv`` already has its header line."""
        return self._table._row(row) in self._csv_headers

    def csv_header(self, row: int) -> Optional[list[str]]:
        """The row's ``progress.csv`` columns, or ``None`` before its first result."""
        header = self._csv_headers.get(self._table._row(row))
        return None if header is None else list(header)

    def set_csv_header(self, row: int, keys: list[str]) -> None:
        """Declares the row's ``progress.csv`` header as already written with ``keys``.

        A resumed experiment calls this so the file gets no second header.
        """
        row = self._table._row(row)
        keys = tuple(keys)
        if not keys:
            raise ValueError("a CSV header needs at least one key")
        for key in keys:
            if not isinstance(key, str):
                raise TypeError(f"CSV header keys must be strings, got {key!r}")
        self._csv_headers[row] = keys

    def _date(self, t: float) -> str:
        second = math.floor(t)
        if second != self._date_second:
            self._date_text = time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(second))
            self._date_second = second
        return self._date_text

    def ingest(self, row: int, metrics: list[dict], times: list[float],
               checkpoints: Optional[dict[int, str]] = None) -> Ingested:
        """Completes, checks, records and renders one batch of a trial's results.

        ``metrics[i]`` is what the trainable reported (never mutated), ``times[i]``
        when (seconds since the epoch), and ``checkpoints`` maps a batch index to
        the directory name of the checkpoint saved with that result.  Processing
        stops at the first result that stops the trial (kept, ``done`` set to True,
        ``Ingested.stopped``) or that cannot be accepted (not kept,
        ``Ingested.error``); results after it are dropped.
        """
        row = self._table._row(row)
        seg = self._segments.get(row)
        if seg is None:
            raise ValueError(f"trial row {row} is not open in this ResultBuffer; "
                             "call open_trial() first")
        if len(metrics) != len(times):
            raise ValueError(f"got {len(metrics)} results but {len(times)} times")
        for i, m in enumerate(metrics):
            if not isinstance(m, dict):
                raise TypeError(f"metrics[{i}] is a {type(m).__name__}, not a dict")
        times = [float(t) for t in times]
        for i, t in enumerate(times):
            if not math.isfinite(t):
                raise ValueError(f"times[{i}] is {t!r}; result times must be finite "
                                 "seconds since the epoch")

        out = Ingested()
        json_lines: list[str] = []
        csv_text = io.StringIO()
        writer = None
        header = self._csv_headers.get(row)
        for i, (metric_dict, t) in enumerate(zip(metrics, times)):
            r = self._complete(seg, metric_dict, t, checkpoints.get(i) if checkpoints else None)
            try:
                flat = self._flat(seg, r)
                self._check_metric(seg, flat)
                stop = self._should_stop(seg, r, flat)
            except _Refused as refused:
                out.error = str(refused)
                break
            if stop:
                r["done"] = True
                if flat is not r:
                    flat["done"] = True
            metric = metric_number(flat.get(self._metric)) if self._metric is not None else math.nan
            self._table.record_result(row, r["training_iteration"], r["time_total_s"], metric)
            out.metric_values.append(metric)
            seg.done_in_segment += 1
            seg.prev_time = t

            line = json.dumps(r, default=str)
            json_lines.append(f'{line[:-1]}, "config": ')
            json_lines.append(seg.config_json)
            json_lines.append("}\n")
            if writer is None:
                new_file = header is None
                if new_file:  # the row's first result ever decides its columns
                    # One tuple for all the rows with these columns (a sweep's trials share them).
                    header = tuple(flat)
                    header = self._csv_headers[row] = self._shared_headers.setdefault(header, header)
                writer = csv.DictWriter(csv_text, fieldnames=header, extrasaction="ignore")
                if new_file:
                    writer.writeheader()
            writer.writerow(flat)
            last_flat = flat

            out.results.append(r)
            if stop:
                out.stopped = True
                break

        out.json_bytes = "".join(json_lines).encode("utf-8")
        # backslashreplace: a lone surrogate in a reported string must not lose the batch.
        out.csv_bytes = csv_text.getvalue().encode("utf-8", "backslashreplace")
        if out.results:
            last = self._last[row] = out.results[-1]
            # For mark_last_done: the last line and row end the bytes, so "done" is
            # found in them by the length of what was rendered after it.
            config_tail = len("".join(json_lines[-2:]).encode("utf-8"))  # the config and "}\n"
            json_end = len(out.json_bytes) - config_tail - len(', "config": ') \
                - len(_json_after(last, "done"))
            json_start = json_end - len(_json_value(last["done"]))
            csv_start = csv_end = -1
            if "done" in header:
                values = [last_flat.get(key, "") for key in header]  # as DictWriter does
                column = header.index("done")
                csv_end = len(out.csv_bytes) - len(_csv_after(values, column))
                csv_start = csv_end - len(_csv_field(values, column))
            out._done_at = (json_start, json_end, csv_start, csv_end)
        return out

    def _complete(self, seg: _Segment, metric_dict: dict, t: float,
                  checkpoint: Optional[str]) -> dict:
        r = dict(metric_dict)
        r.pop("config", None)
        r.setdefault("timestamp", int(t))
        r["checkpoint_dir_name"] = checkpoint or None
        r.setdefault("done", False)
        r["training_iteration"] = seg.base_iteration + seg.done_in_segment + 1
        r["trial_id"] = seg.trial_id
        r.setdefault("date", self._date(t))
        r.setdefault("time_this_iter_s", t - seg.prev_time)
        since_restore = t - seg.start_time
        r["time_total_s"] = seg.base_time + since_restore
        r["pid"] = seg.pid
        r["hostname"] = seg.hostname
        r["node_ip"] = seg.node_ip
        r["time_since_restore"] = since_restore
        r["iterations_since_restore"] = seg.done_in_segment + 1
        return r

    @staticmethod
    def _flat(seg: _Segment, r: dict) -> dict:
        """``r`` itself when it has no nested dicts, else a copy with "a/b" keys."""
        nested = False
        for key, value in r.items():
            if not isinstance(key, str):
                raise _Refused(_key_message(seg, key))
            if isinstance(value, dict):
                nested = True
        if not nested:
            return r
        flat: dict = {}
        _flatten_into(seg, flat, r, "", 0, "")
        return flat

    def _check_metric(self, seg: _Segment, flat: dict) -> None:
        metric = self._metric
        if self._require_metric and metric is not None and metric not in flat:
            raise _Refused(
                f"Trial {seg.trial_id} reported a result without the metric '{metric}' set in "
                f"TuneConfig(metric=...). The result has the keys {sorted(flat)}. Report the "
                f"metric with tune.report({{'{metric}': ...}}) or set TuneConfig(metric=...) "
                "to one of those keys.")

    @staticmethod
    def _should_stop(seg: _Segment, r: dict, flat: dict) -> bool:
        for key, threshold in seg.stop:
            if key not in flat:
                raise _Refused(
                    f"Trial {seg.trial_id}: the stop criterion '{key}' is not in the result. "
                    f"The result has the keys {sorted(flat)}. Fix the key in RunConfig(stop=...).")
            value = flat[key]
            try:
                reached = bool(value >= threshold)
            except Exception:
                raise _Refused(
                    f"Trial {seg.trial_id}: the stop criterion '{key}' cannot compare the "
                    f"result's value {value!r} with the threshold {threshold!r}. Fix "
                    "RunConfig(stop=...) or the reported value.") from None
            if reached:
                return True
        return bool(r["done"])


_JSON = json.JSONEncoder(default=str)  # json.dumps(value, default=str), made once


def _json_value(value: object) -> str:
    """``value`` as ``json.dumps(value, default=str)`` writes it."""
    if value is True or value is False:
        return "true" if value else "false"
    return _JSON.encode(value)


def _json_after(d: dict, key: str) -> str:
    """What ``json.dumps(d, default=str)[:-1]`` writes after ``d[key]``'s value:
    the items that follow it, which render alone as they do inside ``d``."""
    keys = list(d)
    after = keys[keys.index(key) + 1:]
    if not after:
        return ""
    return ", " + _JSON.encode({k: d[k] for k in after})[1:-1]


def _csv_line(values: list) -> bytes:
    """``values`` as the bytes of one progress.csv row."""
    text = io.StringIO()
    csv.writer(text).writerow(values)
    return text.getvalue().encode("utf-8", "backslashreplace")


def _csv_field(values: list, column: int) -> bytes:
    """How the csv module writes ``values[column]`` in the row ``values``."""
    value = values[column]
    if value is True or value is False:
        return b"True" if value else b"False"
    if len(values) == 1:
        return _csv_line(values)[:-2]  # a row's only field is quoted when empty
    return _csv_line([value, ""])[:-3]


def _csv_after(values: list, column: int) -> bytes:
    """What the csv module writes after field ``column`` of the row ``values``."""
    rest = values[column + 1:]
    return _csv_line([""] + rest) if rest else b"\r\n"


def _key_message(seg: _Segment, key: object) -> str:
    return (f"Trial {seg.trial_id} reported a result with the key {key!r}, which is not a "
            "string; result keys must be strings.")


def _flatten_into(seg: _Segment, flat: dict, d: dict, prefix: str, depth: int,
                  top_key: str) -> None:
    if depth > MAX_DEPTH:
        raise _Refused(f"Trial {seg.trial_id} reported a result nested more than {MAX_DEPTH} "
                       f"levels deep under the key '{top_key}'.")
    for key, value in d.items():
        if not isinstance(key, str):
            raise _Refused(_key_message(seg, key))
        if isinstance(value, dict):
            _flatten_into(seg, flat, value, f"{prefix}{key}/", depth + 1,
                          top_key if depth else key)
        else:
            flat[prefix + key] = value


# --------------------------------------------------------------------------
# TensorBoard event records
#
# An event file is a sequence of TFRecords: the little-endian uint64 length of the
# data, the masked CRC-32C of those 8 bytes, the data, and its masked CRC-32C.  Each
# record's data is a serialized ``tensorboard.Event`` protobuf.  Only the handful of
# fields a scalar needs are written, by hand, in protobuf's wire format:
#
#   Event:   1 wall_time (double)   2 step (int64)   5 summary (Summary)
#   Summary: 1 value (repeated Value)
#   Value:   1 tag (string)         2 simple_value (float)

_TB_SCALAR_TYPES = (int, float, np.float32, np.float64, np.int32, np.int64)
_TB_TAG_PREFIX = "ray/tune/"


def _crc32c_table() -> list:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """The CRC-32C (Castagnoli) checksum of ``data``, as TFRecords use it.

    Example:
        >>> hex(crc32c(b"123456789"))
        '0xe3069283'
    """
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked_crc(data: bytes) -> bytes:
    crc = crc32c(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def tfrecord(data: bytes) -> bytes:
    """``data`` framed as one TFRecord (length, its checksum, data, its checksum).

    Example:
        >>> record = tfrecord(b"abc")
        >>> len(record), record[12:15]
        (19, b'abc')
    """
    length = struct.pack("<Q", len(data))
    return length + _masked_crc(length) + data + _masked_crc(data)


def _varint(n: int) -> bytes:
    out = bytearray()
    n &= 0xFFFFFFFFFFFFFFFF  # negative int64 steps take ten bytes, as protobuf writes them
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _tb_value_prefix(key: str) -> bytes:
    """A Summary.Value entry up to its float: the field key and length of the
    entry, the tag, and the simple_value field key."""
    tag = (_TB_TAG_PREFIX + key).encode("utf-8")
    entry = b"\x0a" + _varint(len(tag)) + tag + b"\x15"
    return b"\x0a" + _varint(len(entry) + 4) + entry


def _tb_collect(d: dict, prefix: str, values: list, others: list, index: int, depth: int, tags: dict) -> None:
    if depth > MAX_DEPTH:
        raise ValueError(f"results[{index}] is nested more than {MAX_DEPTH} levels deep")
    for key, value in d.items():
        if not isinstance(key, str):
            raise TypeError(f"results[{index}] has the key {key!r}; result keys must be strings")
        if isinstance(value, dict):
            if not depth and key in TB_SKIPPED_KEYS:
                continue
            _tb_collect(value, f"{prefix}{key}/", values, others, index, depth + 1, tags)
        elif isinstance(value, _TB_SCALAR_TYPES):
            flat = prefix + key
            if flat not in tags:
                tags[flat] = None if not depth and key in TB_SKIPPED_KEYS else _tb_value_prefix(flat)
            if tags[flat] is None:
                continue
            x = _float32_range(value)
            if not math.isnan(x):
                values.append((tags[flat], x))
        elif (isinstance(value, list) and value) or (isinstance(value, np.ndarray) and value.size):
            others.append((index, _TB_TAG_PREFIX + prefix + key, value))


def _tb_step(result: dict) -> int:
    step = int(result.get("timesteps_total") or result.get("training_iteration") or 0)
    if not -(1 << 63) <= step < (1 << 63):
        raise OverflowError(f"the step {step} of a result does not fit in 64 bits")
    return step


def tb_scalar_events(results: list, times: list, tags: dict) -> tuple:
    """A batch of results as TensorBoard event records, and what is not a scalar.

    Each result becomes one ``Event`` at ``times[i]`` (seconds since the epoch) with
    step ``timesteps_total`` (when set and non-zero) else ``training_iteration``,
    holding a ``simple_value`` for each of its numeric fields -- int, float, bool,
    numpy float32/float64/int32/int64, NaN left out -- tagged ``ray/tune/<key>``,
    nested dicts flattened with ``/``; keys in :data:`TB_SKIPPED_KEYS` are left
    out.  A result with no such field gets no event.  ``tags`` is the caller's
    cache, filled here, of each numeric key's encoded tag (key -> bytes; None for a
    skipped key); keep one per file.

    Returns ``(records, others)``: the framed records as one bytes, and
    ``(index, tag, value)`` for each non-empty list or numpy array (for the
    caller to log as a histogram or image).

    Example:
        >>> records, others = tb_scalar_events(
        ...     [{"loss": 0.5, "training_iteration": 1, "h": [1, 2]}], [100.0], {})
        >>> records[:8] == struct.pack("<Q", len(records) - 16), others
        (True, [(0, 'ray/tune/h', [1, 2])])
    """
    if len(results) != len(times):
        raise ValueError(f"got {len(results)} results but {len(times)} times")
    out = []
    others: list = []
    for index, (result, t) in enumerate(zip(results, times)):
        if not isinstance(result, dict):
            raise TypeError(f"results[{index}] is a {type(result).__name__}, not a dict")
        values: list = []
        _tb_collect(result, "", values, others, index, 0, tags)
        if not values:
            continue
        step = _tb_step(result)
        summary = bytearray()
        for prefix, value in values:
            summary += prefix
            summary += struct.pack("<f", value)
        event = (b"\x09" + struct.pack("<d", float(t)) + b"\x10" + _varint(step)
                 + b"\x2a" + _varint(len(summary)) + bytes(summary))
        out.append(tfrecord(event))
    return b"".join(out), others


def tb_file_version_record(wall_time: float) -> bytes:
    """The framed Event every event file starts with (``wall_time``, file_version
    ``brain.Event:2``).

    Example:
        >>> record = tb_file_version_record(100.0)
        >>> len(record), record[12:-4].endswith(b"brain.Event:2")
        (40, True)
    """
    return tb_file_version_record_python(wall_time, tfrecord)


def tb_hparams_records(hparams: dict, metric_tags, wall_time: float) -> bytes:
    """The hparams plugin's experiment, session start and session end summaries of a
    trial as framed Event records at ``wall_time``: ``hparams`` (name -> str, bool, int,
    float, list or callable; None left out) and the scalar tags that are its metrics.

    Example:
        >>> records = tb_hparams_records({"lr": 0.1, "opt": "adam"}, ["ray/tune/loss"], 100.0)
        >>> records.count(b"_hparams_/"), records.count(b"ray/tune/loss")
        (3, 1)
    """
    return tb_hparams_records_python(hparams, metric_tags, wall_time, tfrecord)


def _float32_range(value) -> float:
    """``value`` as a double that packs as float32 the way a C cast rounds it:
    magnitudes that round beyond float32's range become infinities (``struct``
    would raise), as do ints beyond a double's."""
    try:
        x = float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf
    if math.isfinite(x) and abs(x) >= 3.4028235677973366e38:
        return math.copysign(math.inf, x)
    return x


# --------------------------------------------------------------------------
# File batches: what a writer thread's commit asks of the file system


def write_file_batch(ops: list) -> tuple:
    """Runs the file operations ``ops`` in order, until one fails.

    Returns ``(fds, failure, whole)``: ``fds`` has an entry for each op that ran, the
    failed one included: ``(fd, fd2)`` for an append (the descriptors it leaves open, -1
    for none), ``None`` for the others; ``failure`` is ``None``, or the ``OSError``
    (naming the file) of the last op that ran; ``whole`` says that op's bytes are all in
    place all the same (only closing a file failed, as NFS reports a write it could not
    make).  Otherwise a failed op leaves nothing half done: a write is cut back to where
    it began, a temporary file is removed; an append whose file could not be cut back
    fails with :class:`~fasttune._core_shared.AppendNotCutBack`, which names that file.
    A malformed batch raises before any op runs.
    The ops are tuples:

    ``(FILE_MKDIR, path)``
        Make the directory, and its parents when they are missing; one that is there is fine.
    ``(FILE_REPLACE, path, tmp_path, data)``
        Write ``data`` to the new file ``tmp_path``, then rename it over ``path``: a
        reader finds the old file or the new one, never a part.
    ``(FILE_APPEND, path, fd, data, path2, fd2, data2, close, make_parent)``
        Append all of ``data`` to ``path`` through ``fd``, then ``data2`` to ``path2``
        through ``fd2`` (``path2`` None: no second file, ``fd2`` -1).  The descriptors
        are both open, or both -1: then the files are opened for appending (created when
        missing; with ``make_parent``, their missing directory too), both or neither.
        The files get both writes or neither: when the second fails, the first is cut
        back.  ``close``: close both after, also when the append failed.

    Example:
        >>> import os, tempfile
        >>> d = os.path.join(tempfile.mkdtemp(), "trial")
        >>> fds, failure, whole = write_file_batch([
        ...     (FILE_MKDIR, d),
        ...     (FILE_REPLACE, d + "/params.json", d + "/.params.json.tmp", b"{}"),
        ...     (FILE_APPEND, d + "/result.json", -1, b"{}\\n", None, -1, b"", True, False)])
        >>> sorted(os.listdir(d))
        ['params.json', 'result.json']
        >>> fds, failure, whole = write_file_batch([
        ...     (FILE_APPEND, d + "/result.json", -1, b"{}\\n", None, -1, b"", True, False)])
        >>> fds, failure, whole, open(d + "/result.json").read().count("{}")
        ([(-1, -1)], None, False, 2)
    """
    if type(ops) is list:
        ops = list(ops)  # a copy: code the check runs cannot swap an op after it was taken
    check_file_ops(ops)
    fds: list = []
    for op in ops:
        kind = op[0]
        fds.append(None)
        try:
            if kind == FILE_MKDIR:
                _make_directory(op[1])
            elif kind == FILE_REPLACE:
                _replace(op[1], op[2], op[3])
            else:
                _append_pair(op, fds)
        except _ClosingFailed as exc:
            return fds, exc.error, True
        except OSError as exc:
            return fds, exc, False
    return fds, None, False


class _ClosingFailed(Exception):
    """An append whose bytes are in place, but one of its files failed to close."""

    def __init__(self, error: OSError) -> None:
        super().__init__(error)
        self.error = error


def _os_error(code: int, path: str) -> OSError:
    return OSError(code, os.strerror(code), path)


def _make_directory(path: str) -> None:
    try:
        os.mkdir(path)
    except FileExistsError:
        pass
    except FileNotFoundError:
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as exc:
            raise _os_error(exc.errno, path) from None
    except OSError as exc:
        raise _os_error(exc.errno, path) from None


def _cut_back(fd: int, written: int) -> int:
    """Cut the file back by the ``written`` bytes just appended; 0, or the errno of why
    it could not be."""
    try:
        os.ftruncate(fd, os.lseek(fd, 0, os.SEEK_CUR) - written)
    except OSError as exc:
        return exc.errno
    return 0


def _write_all(fd: int, data: bytes, path: str, uncut: Optional[list] = None) -> None:
    """Write every byte of ``data``; on failure cut back what this call wrote (when that
    fails too, ``(path, errno)`` goes into ``uncut``)."""
    view = memoryview(data)
    done = 0
    try:
        while done < len(view):
            written = os.write(fd, view[done:])
            if not written:
                raise _os_error(errno.EIO, path)
            done += written
    except OSError as exc:
        if done:
            code = _cut_back(fd, done)
            if code and uncut is not None:
                uncut.append((path, code))
        raise _os_error(exc.errno, path) from None


def _replace(path: str, tmp_path: str, data: bytes) -> None:
    try:
        fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        raise _os_error(exc.errno, path) from None
    code = 0
    try:
        _write_all(fd, data, path)
    except OSError as exc:
        code = exc.errno
    try:
        os.close(fd)
    except OSError as exc:
        code = code or exc.errno
    if not code:
        try:
            os.rename(tmp_path, path)
        except OSError as exc:
            code = exc.errno
    if code:
        try:
            os.unlink(tmp_path)
        except OSError:
            pass
        raise _os_error(code, path)


def _open_append(path: str, make_parent: bool) -> int:
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
    try:
        return os.open(path, flags, 0o666)
    except OSError as exc:
        if exc.errno != errno.ENOENT or not make_parent:
            raise _os_error(exc.errno, path) from None
    try:
        _make_directory(os.path.dirname(path))
        return os.open(path, flags, 0o666)
    except OSError as exc:
        raise _os_error(exc.errno, path) from None


def _append_pair(op: tuple, fds: list) -> None:
    _, path, fd, data, path2, fd2, data2, close, make_parent = op
    fds[-1] = (fd, fd2)  # what is open if the op fails before it ends
    if fd < 0:
        fd = _open_append(path, make_parent)
        if path2 is not None:
            try:
                fd2 = _open_append(path2, make_parent)
            except OSError:
                try:
                    os.close(fd)
                except OSError:
                    pass  # the open's failure is the one to tell
                raise
    failure = None
    uncut: list = []  # (path, errno) of each file a failed write could not cut back
    try:
        if data:
            _write_all(fd, data, path, uncut)
        if data2 and path2 is not None:
            try:
                _write_all(fd2, data2, path2, uncut)
            except OSError:
                code = _cut_back(fd, len(data)) if data else 0  # both or neither
                if code:
                    uncut.insert(0, (path, code))
                raise
    except OSError as exc:
        failure = append_not_cut_back(exc.errno, exc.filename, uncut) if uncut else exc
    closing_failed = None
    if close:
        # A file system may report a failed write only when the file closes (NFS does).
        for each, each_path in ((fd, path), (fd2, path2)) if path2 is not None else ((fd, path),):
            try:
                os.close(each)
            except OSError as exc:
                closing_failed = closing_failed or _os_error(exc.errno, each_path)
        fd = fd2 = -1
    fds[-1] = (fd, fd2)
    if failure is not None:
        raise failure
    if closing_failed is not None:
        raise _ClosingFailed(closing_failed)
