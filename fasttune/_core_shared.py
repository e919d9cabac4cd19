"""What the two event cores share: names, values, errors and the snapshot format.

``fasttune._core`` (compiled) and ``fasttune._core_fallback`` (pure Python) must
be indistinguishable, so everything they would otherwise each define -- the
status and event constants, the exception classes, the legal status transitions,
the error messages, and the layout and validation of a :class:`TrialTable`
snapshot -- is defined once, here, and imported by both.  An exception raised by
either core is therefore the same class whichever core is loaded.

This module imports nothing from fasttune, so that the compiled core can be
built and tested on its own.

Example:
    >>> STATUS_NAMES[RUNNING], sorted(STATUS_NAMES[s] for s in LEGAL_TRANSITIONS[TERMINATED])
    ('RUNNING', ['PENDING'])
    >>> data = snapshot_bytes("max", 2, lambda name: np.zeros(2))
    >>> mode, rows, columns = parse_snapshot(data)
    >>> mode, rows, columns["iteration"].tolist()
    ('max', 2, [0, 0])
"""
from __future__ import annotations

import functools
import os
import struct
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import numpy as np

__all__ = [
    "PENDING", "RUNNING", "PAUSED", "TERMINATED", "ERROR", "STATUS_NAMES",
    "EVENT_START", "EVENT_BATCH", "EVENT_ERROR", "MAX_WORKER_SLOT", "INT32_MAX",
    "MAX_DEPTH", "LEGAL_TRANSITIONS", "IllegalTransition", "CorruptSnapshot",
    "status_error", "illegal_transition", "iteration_error", "worker_slot_error",
    "event_kind_error", "selector_slot_error", "unknown_column",
    "MODES", "SNAPSHOT_VERSION", "MAGIC", "HEADER", "COLUMNS", "ROW_BYTES",
    "snapshot_bytes", "parse_snapshot", "TB_SKIPPED_KEYS",
    "FILE_MKDIR", "FILE_REPLACE", "FILE_APPEND", "check_file_ops", "AppendNotCutBack", "append_not_cut_back",
    "tb_hparams_records_python", "tb_file_version_record_python",
    "pb_bytes_field", "pb_varint_field", "pb_double_field",
]

# --------------------------------------------------------------------------
# Trial statuses and the moves between them

PENDING, RUNNING, PAUSED, TERMINATED, ERROR = 0, 1, 2, 3, 4
STATUS_NAMES = ("PENDING", "RUNNING", "PAUSED", "TERMINATED", "ERROR")

#: For each status, the statuses a trial may move to from it.
LEGAL_TRANSITIONS = {
    PENDING: frozenset({RUNNING, PAUSED, TERMINATED, ERROR}),
    RUNNING: frozenset({PENDING, PAUSED, TERMINATED, ERROR}),
    PAUSED: frozenset({PENDING, RUNNING, TERMINATED, ERROR}),
    TERMINATED: frozenset({PENDING}),
    ERROR: frozenset({PENDING, TERMINATED}),
}

# --------------------------------------------------------------------------
# Worker events and limits

EVENT_START, EVENT_BATCH, EVENT_ERROR = 0, 1, 2
#: Worker slots index small per-slot arrays in the compiled selector, so they
#: are bounded; a million workers is far beyond any Ray cluster.
MAX_WORKER_SLOT = (1 << 20) - 1
#: The largest worker slot a TrialTable row can hold (an int32 column).
INT32_MAX = (1 << 31) - 1
#: Results nested deeper than this are refused (a dict that contains itself
#: would otherwise recurse forever).
MAX_DEPTH = 100

#: The operations of ``write_file_batch`` (each op tuple's first item).
FILE_MKDIR, FILE_REPLACE, FILE_APPEND = 0, 1, 2

#: Result keys that are not logged as TensorBoard scalars (they are the step, or
#: not useful), as Ray Tune's TBXLoggerCallback leaves them out.
TB_SKIPPED_KEYS = frozenset({"config", "pid", "timestamp", "time_total_s", "training_iteration"})

# --------------------------------------------------------------------------
# Errors: the classes, and the messages both cores raise them with


class IllegalTransition(ValueError):
    """A trial was asked to move between two statuses that may not follow each other."""


class CorruptSnapshot(ValueError):
    """Bytes given to :meth:`TrialTable.from_snapshot` are not a usable snapshot."""


class AppendNotCutBack(OSError):
    """``write_file_batch``'s failure when an append failed and a file it had written to
    could not be cut back to where the append began: each of ``uncut_paths`` keeps bytes
    of the failed append (whole lines a reader takes), so it is not as it was before.
    ``errno``, ``strerror`` and ``filename`` are the failed write's, as for any failure;
    ``cut_back_errnos`` are why each cut-back failed.

    >>> import errno
    >>> failure = append_not_cut_back(errno.ENOSPC, "t/progress.csv", [("t/result.json", errno.ESPIPE)])
    >>> failure.errno == errno.ENOSPC, failure.filename, failure.uncut_paths
    (True, 't/progress.csv', ('t/result.json',))
    >>> "'t/result.json' could not be cut back" in str(failure)
    True
    >>> str(AppendNotCutBack(errno.ENOSPC, "No space left on device", "t/progress.csv"))
    "[Errno 28] No space left on device: 't/progress.csv'"
    """

    uncut_paths: Tuple[str, ...] = ()
    cut_back_errnos: Tuple[int, ...] = ()

    def __str__(self) -> str:
        if not self.uncut_paths:  # built without append_not_cut_back: nothing to name
            return super().__str__()
        uncut = ", ".join(f"{path!r} could not be cut back ({os.strerror(code)})"
                          for path, code in zip(self.uncut_paths, self.cut_back_errnos))
        return f"{super().__str__()}; {uncut}: it keeps bytes of the failed append"


def append_not_cut_back(code: int, path: str, uncut: List[Tuple[str, int]]) -> AppendNotCutBack:
    """The failure (errno ``code`` writing ``path``) of an append that left bytes in the
    ``uncut`` files: ``(path, errno of the failed cut-back)`` each, in the op's order."""
    failure = AppendNotCutBack(code, os.strerror(code), path)
    failure.uncut_paths = tuple(p for p, _ in uncut)
    failure.cut_back_errnos = tuple(c for _, c in uncut)
    return failure


def status_error(status: object) -> ValueError:
    """The error for a status that is none of the five.

    >>> status_error(7)
    ValueError('unknown trial status 7; expected one of 0 (PENDING), 1 (RUNNING), 2 (PAUSED), 3 (TERMINATED), 4 (ERROR)')
    """
    return ValueError(
        f"unknown trial status {status!r}; expected one of "
        + ", ".join(f"{i} ({name})" for i, name in enumerate(STATUS_NAMES))
    )


def illegal_transition(row: int, old: int, new: int) -> IllegalTransition:
    """The error for moving ``row`` from ``old`` to ``new`` against :data:`LEGAL_TRANSITIONS`.

    >>> str(illegal_transition(3, TERMINATED, RUNNING))
    'trial row 3 cannot go from TERMINATED to RUNNING; from TERMINATED it may go to PENDING'
    """
    allowed = ", ".join(sorted(STATUS_NAMES[s] for s in LEGAL_TRANSITIONS[old]))
    return IllegalTransition(
        f"trial row {row} cannot go from {STATUS_NAMES[old]} to "
        f"{STATUS_NAMES[new]}; from {STATUS_NAMES[old]} it may go to {allowed}")


def iteration_error(iteration: int) -> ValueError:
    return ValueError(f"iteration must be >= 0, got {iteration}")


def worker_slot_error(slot: int) -> ValueError:
    """The error for a TrialTable worker slot outside -1 (none) .. INT32_MAX."""
    return ValueError(f"worker slot must be -1 (none) or 0..{INT32_MAX}, got {slot}")


def event_kind_error(kind: object) -> ValueError:
    return ValueError(f"unknown event kind {kind!r}; expected EVENT_START (0), "
                      f"EVENT_BATCH (1) or EVENT_ERROR (2)")


def selector_slot_error(slot: int) -> ValueError:
    """The error for an EventSelector slot outside 0 .. MAX_WORKER_SLOT."""
    return ValueError(f"worker slot must be in 0..{MAX_WORKER_SLOT}, got {slot}")


def unknown_column(name: object) -> KeyError:
    return KeyError(f"unknown column {name!r}; valid columns are "
                    + ", ".join(n for n, _ in COLUMNS))


def check_file_ops(ops: object) -> None:
    """Refuse a ``write_file_batch`` batch that is not a list of well-formed ops (before
    any of them runs): a TypeError or ValueError naming the first bad one."""
    if type(ops) is not list:
        raise TypeError(f"write_file_batch takes a list of op tuples, got {type(ops).__name__}")
    for index, op in enumerate(ops):
        kind = op[0] if type(op) is tuple and op else None
        if kind == FILE_MKDIR and len(op) == 2:
            paths, data, fds, flags = op[1:], (), (), ()
        elif kind == FILE_REPLACE and len(op) == 4:
            paths, data, fds, flags = op[1:3], op[3:], (), ()
        elif kind == FILE_APPEND and len(op) == 9:
            paths = (op[1],) if op[4] is None else (op[1], op[4])
            data, fds, flags = (op[3], op[6]), (op[2], op[5]), op[7:]
        else:
            raise TypeError(f"file op {index} is not a FILE_MKDIR, FILE_REPLACE or FILE_APPEND tuple: {op!r}")
        if not all(type(path) is str for path in paths) or not all(type(d) is bytes for d in data) \
                or not all(type(fd) is int for fd in fds) or not all(type(flag) is bool for flag in flags):
            raise TypeError(f"file op {index} has a field of the wrong type (paths str, data bytes, descriptors "
                            f"int, flags bool): {op!r}")
        for path in paths:
            if not path or "\0" in path:
                raise ValueError(f"file op {index} names an empty path or one with a NUL character: {path!r}")
            os.fsencode(path)  # a name the file system cannot take fails here, before any op runs
        if fds:
            fd, fd2 = fds
            to_open = fd == -1 and fd2 == -1
            open_already = fd >= 0 and (fd2 >= 0 if op[4] is not None else fd2 == -1)
            if not (to_open or open_already):
                raise ValueError(f"file op {index}: its descriptors must be -1, -1 (to be opened) or open ones "
                                 f"(the second -1 when there is no second file), got {fd}, {fd2}")


# --------------------------------------------------------------------------
# TensorBoard records that are not per-result scalars: the file-version header and the
# hparams plugin's three summaries, in protobuf's wire format (the field numbers are
# those of TensorBoard's event.proto, summary.proto and the hparams plugin's api.proto /
# plugin_data.proto).  This is the specification: the twin runs it as it is, and the
# compiled core writes the same bytes in C for plain values (it costs ~3 us a trial
# here), and runs it for any other input.  ``frame`` is the core's ``tfrecord``.

_HPARAMS_PLUGIN = b"hparams"
# HParamInfo.type (api.proto DataType) and SessionEndInfo.status (Status).
_DATA_TYPE_STRING, _DATA_TYPE_BOOL, _DATA_TYPE_FLOAT64 = 1, 2, 3
_STATUS_SUCCESS = 1
# The one-byte varints (all tags and most lengths) are looked up.
_ONE_BYTE = [bytes((n,)) for n in range(0x80)]


def _varint(n: int) -> bytes:
    if n < 0x80:
        return _ONE_BYTE[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def pb_bytes_field(number: int, payload: bytes) -> bytes:
    """A length-delimited field: a string, bytes or an embedded message."""
    size = len(payload)
    return b"".join((_ONE_BYTE[number << 3 | 2], _ONE_BYTE[size] if size < 0x80 else _varint(size), payload))


def pb_varint_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def pb_double_field(number: int, value: float) -> bytes:
    return _varint(number << 3 | 1) + struct.pack("<d", value)


def tb_file_version_record_python(wall_time: float, frame: Callable[[bytes], bytes]) -> bytes:
    """The Event every event file starts with: its wall_time and file_version."""
    return frame(pb_double_field(1, wall_time) + pb_bytes_field(3, b"brain.Event:2"))


def _plugin_summary(tag: str, content: bytes) -> bytes:
    """A Summary with one Value: ``tag`` and hparams plugin data ``content``."""
    plugin_data = pb_bytes_field(1, _HPARAMS_PLUGIN) + pb_bytes_field(2, content)
    value = pb_bytes_field(1, tag.encode()) + pb_bytes_field(9, pb_bytes_field(1, plugin_data))  # metadata.plugin_data
    return pb_bytes_field(1, value)


def _hparam(name: str, value: Any) -> Tuple[bytes, bytes]:
    """(HParamInfo, SessionStartInfo map entry or b"") for one hyperparameter."""
    if isinstance(value, str) or callable(value):
        text = value if isinstance(value, str) else getattr(value, "__name__", str(value))
        data_type, as_value = _DATA_TYPE_STRING, pb_bytes_field(3, text.encode())
    elif isinstance(value, bool):
        data_type, as_value = _DATA_TYPE_BOOL, pb_varint_field(4, int(value))
    elif isinstance(value, (int, float)):
        data_type, as_value = _DATA_TYPE_FLOAT64, pb_double_field(2, float(value))
    else:  # a list: named, without a value (as tensorboardX does)
        return _hparam_info(name, 0), b""
    name_field = pb_bytes_field(1, name.encode())
    return _hparam_info(name, data_type), pb_bytes_field(1, name_field + pb_bytes_field(2, as_value))


@functools.lru_cache(maxsize=4096)
def _hparam_info(name: str, data_type: int) -> bytes:
    """The HParamInfo field of a hyperparameter (``data_type`` 0: none given)."""
    info = pb_bytes_field(1, name.encode())
    if data_type:
        info += pb_varint_field(4, data_type)
    return pb_bytes_field(4, info)


@functools.lru_cache(maxsize=256)
def _experiment_field(infos: Tuple[bytes, ...], metric_tags: Tuple[str, ...]) -> bytes:
    """The Event's summary field of the hparams experiment summary (the same for every
    trial with these hyperparameter names and metrics: made once)."""
    metrics = b"".join(pb_bytes_field(5, pb_bytes_field(1, pb_bytes_field(2, tag.encode()))) for tag in metric_tags)
    return pb_bytes_field(5, _plugin_summary("_hparams_/experiment", pb_bytes_field(2, b"".join(infos) + metrics)))


_SESSION_END_FIELD = pb_bytes_field(5, _plugin_summary("_hparams_/session_end_info",
                                                pb_bytes_field(4, pb_varint_field(1, _STATUS_SUCCESS))))


def tb_hparams_records_python(hparams: Dict[str, Any], metric_tags: Iterable[str], wall_time: float,
                              frame: Callable[[bytes], bytes]) -> bytes:
    """The hparams plugin's experiment, session start and session end summaries as
    framed Event records: ``hparams`` (str, bool, int, float, list, callable; None
    left out) and the scalar tags that are its metrics.

    >>> records = tb_hparams_records_python({"lr": 0.1, "opt": "adam"}, ["ray/tune/loss"], 100.0, lambda b: b)
    >>> records.count(b"_hparams_/")
    3
    """
    infos: List[bytes] = []
    entries: List[bytes] = []
    for name, value in hparams.items():
        if value is None:
            continue
        info, entry = _hparam(name, value)
        infos.append(info)
        entries.append(entry)
    session_start = _plugin_summary("_hparams_/session_start_info", pb_bytes_field(3, b"".join(entries)))
    wall_time_field = pb_double_field(1, wall_time)  # each Event: its wall_time, then its summary
    return b"".join((frame(wall_time_field + _experiment_field(tuple(infos), tuple(metric_tags))),
                     frame(wall_time_field + pb_bytes_field(5, session_start)),
                     frame(wall_time_field + _SESSION_END_FIELD)))


# --------------------------------------------------------------------------
# TrialTable snapshots
#
# A 16-byte header -- magic, format version, mode code, a reserved zero byte and
# the row count -- then each column's values for all rows, little-endian, in the
# order of COLUMNS.

SNAPSHOT_VERSION = 1
MODES = (None, "min", "max")  # index = mode code in snapshots
MAGIC = b"FTTT"
HEADER = struct.Struct("<4sHBBQ")  # magic, version, mode code, reserved (0), rows
COLUMNS = (
    ("status", "<u1"),
    ("iteration", "<i8"),
    ("failures", "<i4"),
    ("last_metric", "<f8"),
    ("best_metric", "<f8"),
    ("time_total_s", "<f8"),
    ("worker_slot", "<i4"),
)
#: Bytes per row over all columns.
ROW_BYTES = sum(np.dtype(dtype).itemsize for _, dtype in COLUMNS)
# Columns whose values the setters keep in range; a snapshot outside it is corrupt.
_LIMITS = (("status", 0, ERROR), ("iteration", 0, None),
           ("failures", 0, None), ("worker_slot", -1, None))


def snapshot_bytes(mode: Optional[str], rows: int,
                   column: Callable[[str], np.ndarray]) -> bytes:
    """A snapshot of a table in ``mode`` with ``rows`` rows; ``column(name)`` gives
    a column's values (any numeric dtype, converted here)."""
    header = HEADER.pack(MAGIC, SNAPSHOT_VERSION, MODES.index(mode), 0, rows)
    return header + b"".join(column(name).astype(dtype).tobytes() for name, dtype in COLUMNS)


def parse_snapshot(data: object) -> tuple[Optional[str], int, dict[str, np.ndarray]]:
    """Checks snapshot bytes; returns ``(mode, rows, columns)``.

    ``columns`` maps each column name of :data:`COLUMNS` to a read-only
    little-endian numpy array of its ``rows`` values.

    Raises:
        TypeError: ``data`` is not bytes-like.
        CorruptSnapshot: the bytes are truncated, are not a snapshot, hold
            impossible values, or come from a newer fasttune.

    >>> parse_snapshot(b"FTTX")
    Traceback (most recent call last):
    ...
    fasttune._core_shared.CorruptSnapshot: not a TrialTable snapshot: it starts with b'FTTX', expected b'FTTT'
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"from_snapshot needs bytes, got {type(data).__name__}")
    data = bytes(data)
    if data[:4] != MAGIC[:len(data)]:
        raise CorruptSnapshot(f"not a TrialTable snapshot: it starts with {data[:4]!r}, "
                              f"expected {MAGIC!r}")
    if len(data) < HEADER.size:
        raise CorruptSnapshot(f"TrialTable snapshot is truncated: {len(data)} bytes, "
                              f"shorter than its {HEADER.size}-byte header")
    _, version, mode_code, reserved, n = HEADER.unpack_from(data)
    if version > SNAPSHOT_VERSION:
        raise CorruptSnapshot(
            f"TrialTable snapshot format version {version} is newer than this "
            f"fasttune supports ({SNAPSHOT_VERSION}); upgrade fasttune")
    if version == 0:
        raise CorruptSnapshot("TrialTable snapshot has invalid format version 0")
    if mode_code >= len(MODES):
        raise CorruptSnapshot(f"TrialTable snapshot has unknown mode code {mode_code}")
    if reserved != 0:
        raise CorruptSnapshot(f"TrialTable snapshot has a nonzero reserved byte ({reserved})")
    expected = HEADER.size + n * ROW_BYTES
    if len(data) < expected:
        raise CorruptSnapshot(f"TrialTable snapshot is truncated: its header says {n} rows, "
                              f"which need {expected} bytes, but it has {len(data)}")
    if len(data) > expected:
        raise CorruptSnapshot(f"TrialTable snapshot is {len(data)} bytes but its header "
                              f"says {n} rows, which need {expected} bytes")
    columns, offset = {}, HEADER.size
    for name, dtype in COLUMNS:
        columns[name] = np.frombuffer(data, dtype=dtype, count=n, offset=offset)
        offset += n * np.dtype(dtype).itemsize
    for name, low, high in _LIMITS:
        col = columns[name]
        bad = np.flatnonzero((col < low) | (col > high)) if high is not None \
            else np.flatnonzero(col < low)
        if bad.size:
            row = int(bad[0])
            raise CorruptSnapshot(f"TrialTable snapshot row {row} has an invalid "
                                  f"{name} value {int(col[row])}")
    return MODES[mode_code], n, columns
