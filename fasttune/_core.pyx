# cython: language_level=3
"""Compiled event core of fasttune: TrialTable, EventSelector, ResultBuffer, the
TensorBoard event records of a batch of results (tb_scalar_events), and the writer
threads' batches of file system calls (write_file_batch).

The behaviour -- every name, value, exception and output byte -- is specified by
the pure-Python twin ``fasttune/_core_fallback.py`` (read its docstrings); the
differential tests hold the two together.  This file is about doing the same
thing fast: per-trial state lives in C arrays and bitmaps, and the per-result path
renders ``result.json`` / ``progress.csv`` bytes straight into C buffers, with its
own shortest-round-trip float formatter (the same digits as ``float.__repr__``,
several times faster than CPython's).

It imports nothing from fasttune but ``fasttune._core_shared``, which defines what
the two cores share (constants, exception classes, error messages, the snapshot
format), so that it can be built and tested alone.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_Check, PyDict_CheckExact, PyDict_Contains, PyDict_Copy
from cpython.dict cimport PyDict_DelItem, PyDict_Next, PyDict_SetItem, PyDict_Size
from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_Check, PyFloat_CheckExact
from cpython.float cimport PyFloat_FromDouble
from cpython.list cimport PyList_Check, PyList_CheckExact, PyList_GET_ITEM, PyList_GET_SIZE
from cpython.long cimport PyLong_Check, PyLong_CheckExact, PyLong_FromLongLong
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.object cimport PyObject
from cpython.tuple cimport PyTuple_Check, PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.unicode cimport PyUnicode_Check
from libc.math cimport NAN, floor, isfinite, isnan
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.errno cimport EEXIST, EINTR, EIO, ENOENT, ENOMEM, errno
from libc.stdio cimport rename
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset, strlen
from posix.fcntl cimport O_APPEND, O_CLOEXEC, O_CREAT, O_EXCL, O_WRONLY
from posix.fcntl cimport open as posix_open
from posix.stat cimport mkdir
from posix.unistd cimport SEEK_CUR, close, ftruncate, lseek, unlink, write

import json
import math
import os
import struct
import time

import numpy as np

from fasttune._core_shared import (
    COLUMNS, ERROR, EVENT_BATCH, EVENT_ERROR, EVENT_START, FILE_APPEND, FILE_MKDIR, FILE_REPLACE, INT32_MAX,
    LEGAL_TRANSITIONS, MAX_DEPTH,
    MAX_WORKER_SLOT, MODES, PAUSED, PENDING, RUNNING, SNAPSHOT_VERSION, STATUS_NAMES,
    TB_SKIPPED_KEYS, TERMINATED, CorruptSnapshot, IllegalTransition, append_not_cut_back, check_file_ops,
    event_kind_error,
    tb_file_version_record_python, tb_hparams_records_python,
    illegal_transition, iteration_error, parse_snapshot, selector_slot_error, snapshot_bytes,
    status_error, unknown_column, worker_slot_error,
)

cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object o)
    void* PyUnicode_DATA(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)
    const char* PyUnicode_AsUTF8AndSize(object o, Py_ssize_t* size) except NULL
    # Both return borrowed references.
    PyObject* PyDict_GetItemWithError(object d, object key) except? NULL
    PyObject* PyDict_SetDefault(object d, object key, object default) except NULL
    object PyLong_FromDouble(double v)
    long long PyLong_AsLongLongAndOverflow(object o, int* overflow) except? -1

cdef extern from *:
    """
    #include <stdint.h>

    /* floor(m * mul / 2**j) for a 128-bit mul = mul[1]:mul[0] and 64 <= j < 128:
       the one wide multiplication the float formatter needs. */
    #if defined(__SIZEOF_INT128__) && !defined(FASTTUNE_NO_INT128)
    static inline uint64_t ft_mulshift64(uint64_t m, const uint64_t *mul, int j) {
        unsigned __int128 b0 = (unsigned __int128)m * mul[0];
        unsigned __int128 b2 = (unsigned __int128)m * mul[1];
        return (uint64_t)(((b0 >> 64) + b2) >> (j - 64));
    }
    #else
    static inline uint64_t ft_umul128(uint64_t a, uint64_t b, uint64_t *hi) {
        uint64_t a_lo = (uint32_t)a, a_hi = a >> 32, b_lo = (uint32_t)b, b_hi = b >> 32;
        uint64_t p00 = a_lo * b_lo, p01 = a_lo * b_hi, p10 = a_hi * b_lo, p11 = a_hi * b_hi;
        uint64_t mid = (p00 >> 32) + (uint32_t)p01 + (uint32_t)p10;
        *hi = p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
        return (mid << 32) | (uint32_t)p00;
    }
    static inline uint64_t ft_mulshift64(uint64_t m, const uint64_t *mul, int j) {
        uint64_t hi0, hi2, lo2, sum_lo, sum_hi;
        int s = j - 64;
        (void)ft_umul128(m, mul[0], &hi0);
        lo2 = ft_umul128(m, mul[1], &hi2);
        sum_lo = hi0 + lo2;
        sum_hi = hi2 + (sum_lo < hi0);
        return s == 0 ? sum_lo : (sum_lo >> s) | (sum_hi << (64 - s));
    }
    #endif

    #if defined(__GNUC__) || defined(__clang__)
    #define ft_ctz64(x) __builtin_ctzll(x)
    #else
    static inline int ft_ctz64(uint64_t x) {
        int n = 0;
        while (!(x & 1)) { x >>= 1; n++; }
        return n;
    }
    #endif
    """
    uint64_t ft_mulshift64(uint64_t m, const uint64_t* mul, int j) nogil
    int ft_ctz64(uint64_t x) nogil


# --------------------------------------------------------------------------
# Constants: the Python-visible ones come from fasttune._core_shared (imported
# above); these are their C-level twins for typed code, checked equal at import.

cdef enum:
    _PENDING = 0
    _RUNNING = 1
    _PAUSED = 2
    _TERMINATED = 3
    _ERROR = 4
    _N_STATUS = 5
    _EVENT_START = 0
    _EVENT_BATCH = 1
    _EVENT_ERROR = 2
    _MAX_WORKER_SLOT = (1 << 20) - 1
    _INT32_MAX = 2147483647
    _MAX_DEPTH = 100          # results nested deeper are refused (dicts containing themselves)
    _JSON_INLINE_DEPTH = 100  # deeper lists go to the json module, which detects cycles
    _N_AUTO_FIELDS = 13       # the automatic fields ResultBuffer adds to every result


def _c_constants():
    """The C-level constants under their shared names; for the import check and tests."""
    return {"PENDING": _PENDING, "RUNNING": _RUNNING, "PAUSED": _PAUSED,
            "TERMINATED": _TERMINATED, "ERROR": _ERROR, "N_STATUS": _N_STATUS,
            "EVENT_START": _EVENT_START, "EVENT_BATCH": _EVENT_BATCH,
            "EVENT_ERROR": _EVENT_ERROR, "MAX_WORKER_SLOT": _MAX_WORKER_SLOT,
            "INT32_MAX": _INT32_MAX, "MAX_DEPTH": _MAX_DEPTH}


def _check_c_constants():
    shared = {"PENDING": PENDING, "RUNNING": RUNNING, "PAUSED": PAUSED,
              "TERMINATED": TERMINATED, "ERROR": ERROR, "N_STATUS": len(STATUS_NAMES),
              "EVENT_START": EVENT_START, "EVENT_BATCH": EVENT_BATCH,
              "EVENT_ERROR": EVENT_ERROR, "MAX_WORKER_SLOT": MAX_WORKER_SLOT,
              "INT32_MAX": INT32_MAX, "MAX_DEPTH": MAX_DEPTH}
    if _c_constants() != shared:
        raise ImportError("fasttune._core was built against other constants than "
                          "fasttune._core_shared holds; rebuild it")


_check_c_constants()

# Bit s of _LEGAL[old] is set when old -> s is allowed (LEGAL_TRANSITIONS as bitmasks).
cdef int _LEGAL[_N_STATUS]
for _old, _allowed in LEGAL_TRANSITIONS.items():
    _LEGAL[_old] = sum(1 << _new for _new in _allowed)


cdef inline int _check_status(Py_ssize_t status) except -1:
    if status < 0 or status >= _N_STATUS:
        raise status_error(status)
    return 0


cdef inline int64_t _check_iteration(Py_ssize_t iteration) except -1:
    if iteration < 0:
        raise iteration_error(iteration)
    return iteration


# --------------------------------------------------------------------------
# TrialTable

_DTYPES = {name: np.dtype(dtype).newbyteorder("=").type for name, dtype in COLUMNS}


cdef inline Py_ssize_t _words_for(Py_ssize_t bits) noexcept:
    return (bits + 63) >> 6


cdef inline void _bit_set(uint64_t* bitmap, Py_ssize_t i) noexcept:
    bitmap[i >> 6] |= (<uint64_t>1) << (i & 63)


cdef inline void _bit_clear(uint64_t* bitmap, Py_ssize_t i) noexcept:
    bitmap[i >> 6] &= ~((<uint64_t>1) << (i & 63))


cdef void* _resize(void* p, size_t size) except NULL:
    cdef void* q = PyMem_Realloc(p, size)
    if q == NULL:
        raise MemoryError()
    return q


cdef class TrialTable:
    """Columnar bookkeeping for every trial of an experiment; see the twin's docstring.

    Columns are C arrays grown by doubling.  Each status also has a bitmap of its
    rows: a transition flips two bits, and :meth:`rows` walks the set bits, which
    yields the rows already sorted (a word at a time, so 50,000 rows cost ~800
    word reads plus the rows returned).
    """

    def __cinit__(self, mode=None):
        if mode not in MODES:
            raise ValueError(f"mode must be 'min', 'max' or None, got {mode!r}")
        self._mode = mode
        self._mode_code = MODES.index(mode)

    def __dealloc__(self):
        PyMem_Free(self._status)
        PyMem_Free(self._iteration)
        PyMem_Free(self._failures)
        PyMem_Free(self._last_metric)
        PyMem_Free(self._best_metric)
        PyMem_Free(self._time_total)
        PyMem_Free(self._worker_slot)
        for s in range(_N_STATUS):
            PyMem_Free(self._members[s])

    cdef int _grow(self) except -1:
        cdef Py_ssize_t cap = max(16, 2 * self._capacity)
        cdef Py_ssize_t old_words = _words_for(self._capacity), new_words = _words_for(cap)
        # Each pointer is replaced only once its realloc succeeded, so a
        # MemoryError midway leaves a consistent (if partly larger) table.
        self._status = <uint8_t*>_resize(self._status, cap * sizeof(uint8_t))
        self._iteration = <int64_t*>_resize(self._iteration, cap * sizeof(int64_t))
        self._failures = <int32_t*>_resize(self._failures, cap * sizeof(int32_t))
        self._last_metric = <double*>_resize(self._last_metric, cap * sizeof(double))
        self._best_metric = <double*>_resize(self._best_metric, cap * sizeof(double))
        self._time_total = <double*>_resize(self._time_total, cap * sizeof(double))
        self._worker_slot = <int32_t*>_resize(self._worker_slot, cap * sizeof(int32_t))
        for s in range(_N_STATUS):
            self._members[s] = <uint64_t*>_resize(self._members[s], new_words * sizeof(uint64_t))
            memset(self._members[s] + old_words, 0, (new_words - old_words) * sizeof(uint64_t))
        self._capacity = cap
        return 0

    cdef Py_ssize_t _check_row(self, Py_ssize_t row) except -1:
        if row < 0 or row >= self._n:
            raise IndexError(f"no trial row {row} (table has {self._n} rows)")
        return row

    cdef void _record(self, Py_ssize_t row, int64_t iteration, double time_total_s,
                      double metric) noexcept:
        self._iteration[row] = iteration
        self._time_total[row] = time_total_s
        self._last_metric[row] = metric
        if isnan(metric):
            return
        cdef double best = self._best_metric[row]
        if (self._mode_code == 0 or isnan(best)
                or (self._mode_code == 1 and metric < best)
                or (self._mode_code == 2 and metric > best)):
            self._best_metric[row] = metric

    @property
    def mode(self):
        """The mode given at construction: ``"min"``, ``"max"`` or ``None``."""
        return self._mode

    def __len__(self):
        return self._n

    def __repr__(self):
        counts = ", ".join(f"{n}={c}" for n, c in zip(STATUS_NAMES, self.counts()))
        return f"TrialTable(mode={self._mode!r}, rows={len(self)}, {counts})"

    def add(self):
        """Appends a PENDING row with zeroed counters and nan metrics; returns its number."""
        if self._n == self._capacity:
            self._grow()
        cdef Py_ssize_t row = self._n
        self._status[row] = _PENDING
        self._iteration[row] = 0
        self._failures[row] = 0
        self._last_metric[row] = NAN
        self._best_metric[row] = NAN
        self._time_total[row] = 0.0
        self._worker_slot[row] = -1
        _bit_set(self._members[_PENDING], row)
        self._counts[_PENDING] += 1
        self._n += 1
        return row

    def get_status(self, Py_ssize_t row):
        return self._status[self._check_row(row)]

    def set_status(self, Py_ssize_t row, Py_ssize_t status):
        """Moves ``row`` to ``status`` and returns the old status (see the twin)."""
        self._check_row(row)
        _check_status(status)
        cdef int old = self._status[row]
        if status == old:
            return old
        if not (_LEGAL[old] & (1 << status)):
            raise illegal_transition(row, old, status)
        _bit_clear(self._members[old], row)
        _bit_set(self._members[status], row)
        self._counts[old] -= 1
        self._counts[status] += 1
        self._status[row] = <uint8_t>status
        return old

    def count(self, Py_ssize_t status):
        _check_status(status)
        return self._counts[status]

    def counts(self):
        """Rows per status, indexed by status."""
        return (self._counts[0], self._counts[1], self._counts[2], self._counts[3],
                self._counts[4])

    def rows(self, Py_ssize_t status):
        """The rows currently in ``status``, ascending."""
        _check_status(status)
        cdef list out = []
        cdef Py_ssize_t remaining = self._counts[status]
        cdef uint64_t* bitmap = self._members[status]
        cdef uint64_t word
        cdef Py_ssize_t w = 0
        while remaining:
            word = bitmap[w]
            while word:
                out.append((w << 6) + ft_ctz64(word))
                word &= word - 1  # clear the lowest set bit
                remaining -= 1
            w += 1
        return out

    def get_iteration(self, Py_ssize_t row):
        return self._iteration[self._check_row(row)]

    def set_iteration(self, Py_ssize_t row, Py_ssize_t iteration):
        self._check_row(row)
        self._iteration[row] = _check_iteration(iteration)

    def get_failures(self, Py_ssize_t row):
        return self._failures[self._check_row(row)]

    def increment_failures(self, Py_ssize_t row):
        """Adds one to the row's failure count and returns the new count."""
        self._check_row(row)
        self._failures[row] += 1
        return self._failures[row]

    def get_last_metric(self, Py_ssize_t row):
        return self._last_metric[self._check_row(row)]

    def get_best_metric(self, Py_ssize_t row):
        return self._best_metric[self._check_row(row)]

    def get_time_total(self, Py_ssize_t row):
        return self._time_total[self._check_row(row)]

    def set_time_total(self, Py_ssize_t row, double time_total_s):
        self._check_row(row)
        self._time_total[row] = time_total_s

    def get_worker_slot(self, Py_ssize_t row):
        return self._worker_slot[self._check_row(row)]

    def set_worker_slot(self, Py_ssize_t row, Py_ssize_t slot):
        """Records which worker runs the trial; ``-1`` means none."""
        self._check_row(row)
        if slot < -1 or slot > _INT32_MAX:
            raise worker_slot_error(slot)
        self._held += (slot >= 0) - (self._worker_slot[row] >= 0)
        self._worker_slot[row] = <int32_t>slot

    def held_count(self):
        """How many rows have a worker slot (are held by a worker), in O(1)."""
        return self._held

    def record_result(self, Py_ssize_t row, Py_ssize_t iteration, double time_total_s,
                      double metric):
        """Stores a result's iteration, total time and metric; see the twin."""
        self._check_row(row)
        self._record(row, _check_iteration(iteration), time_total_s, metric)

    def set_metrics(self, Py_ssize_t row, double last, double best):
        """Sets the row's last and best metric; see the twin."""
        self._check_row(row)
        self._last_metric[row] = last
        self._best_metric[row] = best

    def column(self, name):
        """A read-only numpy copy of one column's first ``len(self)`` values."""
        cdef const char* data
        cdef Py_ssize_t itemsize
        if name == "status":
            data, itemsize = <const char*>self._status, sizeof(uint8_t)
        elif name == "iteration":
            data, itemsize = <const char*>self._iteration, sizeof(int64_t)
        elif name == "failures":
            data, itemsize = <const char*>self._failures, sizeof(int32_t)
        elif name == "last_metric":
            data, itemsize = <const char*>self._last_metric, sizeof(double)
        elif name == "best_metric":
            data, itemsize = <const char*>self._best_metric, sizeof(double)
        elif name == "time_total_s":
            data, itemsize = <const char*>self._time_total, sizeof(double)
        elif name == "worker_slot":
            data, itemsize = <const char*>self._worker_slot, sizeof(int32_t)
        else:
            raise unknown_column(name)
        # A copy, not a view: the next add() may move the C array.  numpy arrays
        # over bytes are read-only, which is what we want to hand out.
        return np.frombuffer(PyBytes_FromStringAndSize(data, self._n * itemsize),
                             dtype=_DTYPES[name])

    def __reduce__(self):
        # C arrays do not pickle themselves; the snapshot format does (and copy).
        return (_table_from_snapshot, (self.snapshot(),))

    def snapshot(self):
        """The whole table as compact bytes (same layout and bytes as the twin)."""
        return snapshot_bytes(self._mode, self._n, self.column)

    @staticmethod
    def from_snapshot(data):
        """Rebuilds a table from :meth:`snapshot` bytes; raises CorruptSnapshot."""
        mode, n, columns = parse_snapshot(data)
        cdef TrialTable table = TrialTable(mode)
        while table._capacity < n:
            table._grow()
        table._n = n
        _copy_column(<char*>table._status, columns["status"], np.uint8)
        _copy_column(<char*>table._iteration, columns["iteration"], np.int64)
        _copy_column(<char*>table._failures, columns["failures"], np.int32)
        _copy_column(<char*>table._last_metric, columns["last_metric"], np.float64)
        _copy_column(<char*>table._best_metric, columns["best_metric"], np.float64)
        _copy_column(<char*>table._time_total, columns["time_total_s"], np.float64)
        _copy_column(<char*>table._worker_slot, columns["worker_slot"], np.int32)
        cdef Py_ssize_t row_
        for row_ in range(n):
            _bit_set(table._members[table._status[row_]], row_)
            table._counts[table._status[row_]] += 1
            table._held += table._worker_slot[row_] >= 0
        return table


def _table_from_snapshot(data):
    return TrialTable.from_snapshot(data)


cdef int _copy_column(char* target, col, dtype) except -1:
    cdef bytes raw = col.astype(dtype).tobytes()
    memcpy(target, PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw))
    return 0


# --------------------------------------------------------------------------
# EventSelector

cdef class EventSelector:
    """Fair choice among ready events; see the twin's docstring.

    Pending worker events are two bitmaps over slots (errors, batches), so finding
    the next slot at or after the round-robin cursor is a scan of 64 slots per word.
    """

    def __dealloc__(self):
        PyMem_Free(self._errors)
        PyMem_Free(self._batches)

    def __len__(self):
        return self._start_pending + self._n_worker_events

    def __repr__(self):
        return f"EventSelector(pending={len(self)})"

    def push(self, Py_ssize_t slot, Py_ssize_t kind):
        """Marks an event ready; pushing one that is already pending changes nothing."""
        if kind == _EVENT_START:
            self._start_pending = True
            return
        if kind != _EVENT_BATCH and kind != _EVENT_ERROR:
            raise event_kind_error(kind)
        if slot < 0 or slot > _MAX_WORKER_SLOT:
            raise selector_slot_error(slot)
        cdef Py_ssize_t w = slot >> 6, new_words
        if w >= self._words:
            new_words = max(w + 1, 2 * self._words)
            self._errors = <uint64_t*>_resize(self._errors, new_words * sizeof(uint64_t))
            memset(self._errors + self._words, 0, (new_words - self._words) * sizeof(uint64_t))
            self._batches = <uint64_t*>_resize(self._batches, new_words * sizeof(uint64_t))
            memset(self._batches + self._words, 0, (new_words - self._words) * sizeof(uint64_t))
            self._words = new_words
        cdef uint64_t* bitmap = self._errors if kind == _EVENT_ERROR else self._batches
        cdef uint64_t bit = (<uint64_t>1) << (slot & 63)
        if not (bitmap[w] & bit):
            bitmap[w] |= bit
            self._n_worker_events += 1

    cdef Py_ssize_t _next_from(self, Py_ssize_t slot) noexcept:
        """The smallest slot >= ``slot`` with a pending event, or -1."""
        cdef Py_ssize_t w = slot >> 6
        if w >= self._words:
            return -1
        cdef uint64_t word = (self._errors[w] | self._batches[w]) & (~(<uint64_t>0) << (slot & 63))
        while True:
            if word:
                return (w << 6) + ft_ctz64(word)
            w += 1
            if w >= self._words:
                return -1
            word = self._errors[w] | self._batches[w]

    def pop(self, bint next_trial_exists):
        """Removes and returns the next ``(slot, kind)``, or ``None``; see the twin."""
        if next_trial_exists and self._start_pending:
            self._start_pending = False
            return (-1, _EVENT_START)
        if self._n_worker_events == 0:
            return None
        cdef Py_ssize_t slot = self._next_from(self._cursor)
        if slot < 0:
            slot = self._next_from(0)
        cdef Py_ssize_t w = slot >> 6
        cdef uint64_t bit = (<uint64_t>1) << (slot & 63)
        cdef int kind
        if self._errors[w] & bit:
            self._errors[w] &= ~bit
            kind = _EVENT_ERROR
        else:
            self._batches[w] &= ~bit
            kind = _EVENT_BATCH
        self._n_worker_events -= 1
        self._cursor = slot + 1
        return (slot, kind)

    def discard(self, Py_ssize_t slot):
        """Drops every pending event of a worker slot (its worker is gone)."""
        if slot < 0 or (slot >> 6) >= self._words:
            return
        cdef Py_ssize_t w = slot >> 6
        cdef uint64_t bit = (<uint64_t>1) << (slot & 63)
        if self._errors[w] & bit:
            self._errors[w] &= ~bit
            self._n_worker_events -= 1
        if self._batches[w] & bit:
            self._batches[w] &= ~bit
            self._n_worker_events -= 1


# --------------------------------------------------------------------------
# Byte buffers

cdef int _buf_reserve(_Buf* b, Py_ssize_t extra) except -1:
    cdef Py_ssize_t need = b.length + extra, cap
    cdef char* p
    if need <= b.capacity:
        return 0
    cap = max(need, 2 * b.capacity, 4096)
    p = <char*>PyMem_Realloc(b.data, cap)
    if p == NULL:
        raise MemoryError()
    b.data = p
    b.capacity = cap
    return 0


cdef inline void _copy(char* dst, const char* src, Py_ssize_t n) noexcept nogil:
    # Most pieces are a few bytes long (keys, numbers): copy them with a couple of
    # fixed-size, overlapping moves instead of a call into the C library.
    if n >= 16 and n <= 32:
        memcpy(dst, src, 16)
        memcpy(dst + n - 16, src + n - 16, 16)
    elif n >= 8 and n < 16:
        memcpy(dst, src, 8)
        memcpy(dst + n - 8, src + n - 8, 8)
    elif n >= 4 and n < 8:
        memcpy(dst, src, 4)
        memcpy(dst + n - 4, src + n - 4, 4)
    elif n < 4:
        while n > 0:
            n -= 1
            dst[n] = src[n]
    else:
        memcpy(dst, src, n)


cdef inline int _buf_write(_Buf* b, const char* data, Py_ssize_t n) except -1:
    if b.length + n > b.capacity:
        _buf_reserve(b, n)
    _copy(b.data + b.length, data, n)
    b.length += n
    return 0


cdef inline int _buf_ascii(_Buf* b, str text) except -1:
    """Writes a str known to be ASCII (a repr, an escaped JSON string, ...)."""
    return _buf_write(b, <const char*>PyUnicode_DATA(text), PyUnicode_GET_LENGTH(text))


cdef inline bytes _buf_take(_Buf* b):
    out = PyBytes_FromStringAndSize(b.data, b.length)
    b.length = 0
    if b.capacity > (8 << 20):  # one huge batch should not pin its memory forever
        PyMem_Free(b.data)
        b.data = NULL
        b.capacity = 0
    return out


# --------------------------------------------------------------------------
# Shortest round-trip float formatting, byte-identical to float.__repr__
#
# CPython's repr runs David Gay's bignum dtoa, ~300 ns for a typical 17-digit
# float; floats are most of a result's bytes, so this path dominates ingest.  The
# digits come from the Ryu algorithm (Ulf Adams, PLDI 2018): scale the neighbours
# of x by a 125-bit power of 5 and drop decimal digits while the interval of
# values that round to x still contains the shortened number.  The output is the
# shortest digit string that round-trips, the closest one to x when several are
# that short, ties to even -- which is also what repr produces.  The layout
# (fixed notation for 1e-4 <= |x| < 1e16, else d.ddde+XX) follows
# CPython's format_float_short for the 'r' format code.

cdef enum:
    _POW5_INV_BITCOUNT = 125
    _POW5_BITCOUNT = 125
    _POW5_INV_TABLE_SIZE = 342
    _POW5_TABLE_SIZE = 326

# _POW5_INV_SPLIT[q] = floor(2**(bitlen(5**q) - 1 + 125) / 5**q) + 1 and
# _POW5_SPLIT[i] = 5**i scaled to exactly 125 bits, as (low, high) 64-bit halves.
# Computed once at import with Python integers instead of pasted as tables.
cdef uint64_t _POW5_INV_SPLIT[_POW5_INV_TABLE_SIZE][2]
cdef uint64_t _POW5_SPLIT[_POW5_TABLE_SIZE][2]


def _fill_pow5_tables():
    mask = (1 << 64) - 1
    for q in range(_POW5_INV_TABLE_SIZE):
        p = 5 ** q
        inv = (1 << (p.bit_length() - 1 + _POW5_INV_BITCOUNT)) // p + 1
        _POW5_INV_SPLIT[q][0] = inv & mask
        _POW5_INV_SPLIT[q][1] = inv >> 64
    for i in range(_POW5_TABLE_SIZE):
        p = 5 ** i
        shift = p.bit_length() - _POW5_BITCOUNT
        scaled = p >> shift if shift >= 0 else p << -shift
        _POW5_SPLIT[i][0] = scaled & mask
        _POW5_SPLIT[i][1] = scaled >> 64


_fill_pow5_tables()


cdef inline int _pow5bits(int e) noexcept nogil:
    # bitlen(5**e), exact for 0 <= e <= 3528
    return ((e * 1217359) >> 19) + 1


cdef inline int _log10_pow2(int e) noexcept nogil:
    # floor(log10(2**e)), exact for 0 <= e <= 1650
    return (e * 78913) >> 18


cdef inline int _log10_pow5(int e) noexcept nogil:
    # floor(log10(5**e)), exact for 0 <= e <= 2620
    return (e * 732923) >> 20


cdef inline int _pow5_factor(uint64_t value) noexcept nogil:
    cdef int count = 0
    while value % 5 == 0:
        value //= 5
        count += 1
    return count


cdef struct _Digits:
    uint64_t vr           # x scaled to an integer, truncated
    uint64_t vp           # upper end of the interval that reads back as x
    uint64_t vm           # lower end
    int removed           # decimal digits dropped so far
    uint32_t last_removed_digit
    bint round_up
    bint vm_trailing_zeros  # every digit dropped from vm was 0
    bint vr_trailing_zeros  # every digit dropped from vr, but the last, was 0


cdef inline void _drop_common(_Digits* v, uint64_t p, int k) noexcept nogil:
    # p = 10**k
    while v.vp // p > v.vm // p:
        v.round_up = v.vr % p >= p // 2
        v.vr //= p
        v.vp //= p
        v.vm //= p
        v.removed += k


cdef inline void _drop_exact(_Digits* v, uint64_t p, int k) noexcept nogil:
    while v.vp // p > v.vm // p:
        v.vm_trailing_zeros &= v.vm % p == 0
        v.vr_trailing_zeros &= v.last_removed_digit == 0 and v.vr % (p // 10) == 0
        v.last_removed_digit = (v.vr // (p // 10)) % 10
        v.vr //= p
        v.vp //= p
        v.vm //= p
        v.removed += k


cdef inline void _drop_vm_zeros(_Digits* v, uint64_t p, int k) noexcept nogil:
    # The lower bound is itself a shorter exact candidate: drop its zeros too.
    while v.vm % p == 0:
        v.vr_trailing_zeros &= v.last_removed_digit == 0 and v.vr % (p // 10) == 0
        v.last_removed_digit = (v.vr // (p // 10)) % 10
        v.vr //= p
        v.vp //= p
        v.vm //= p
        v.removed += k


cdef void _shortest_digits(uint64_t ieee_mantissa, int ieee_exponent,
                           uint64_t* digits, int* exponent) noexcept nogil:
    """Shortest decimal ``digits * 10**exponent`` that reads back as the positive,
    finite, nonzero double with these IEEE fields."""
    cdef int e2
    cdef uint64_t m2
    if ieee_exponent == 0:
        e2 = 1 - 1023 - 52 - 2
        m2 = ieee_mantissa
    else:
        e2 = ieee_exponent - 1023 - 52 - 2
        m2 = ((<uint64_t>1) << 52) | ieee_mantissa
    # Round-to-nearest-even reads the interval's bounds back as x when m2 is even.
    cdef bint accept_bounds = (m2 & 1) == 0
    # x and its neighbours' midpoints, times 4: mv, mv + 2 and mv - 1 - mm_shift;
    # the lower gap is half as wide just above a power of two.
    cdef uint64_t mv = 4 * m2
    cdef uint32_t mm_shift = ieee_mantissa != 0 or ieee_exponent <= 1

    cdef uint64_t vr, vp, vm, output
    cdef int e10, q, i, k
    cdef bint vm_trailing_zeros = False, vr_trailing_zeros = False
    if e2 >= 0:
        q = _log10_pow2(e2) - (e2 > 3)
        e10 = q
        k = _POW5_INV_BITCOUNT + _pow5bits(q) - 1
        i = -e2 + q + k
        vr = ft_mulshift64(4 * m2, &_POW5_INV_SPLIT[q][0], i)
        vp = ft_mulshift64(4 * m2 + 2, &_POW5_INV_SPLIT[q][0], i)
        vm = ft_mulshift64(4 * m2 - 1 - mm_shift, &_POW5_INV_SPLIT[q][0], i)
        if q <= 21:
            # Only one of mv, mp, mm can be a multiple of 5, if any.
            if mv % 5 == 0:
                vr_trailing_zeros = _pow5_factor(mv) >= q
            elif accept_bounds:
                vm_trailing_zeros = _pow5_factor(mv - 1 - mm_shift) >= q
            else:
                vp -= _pow5_factor(mv + 2) >= q
    else:
        q = _log10_pow5(-e2) - (-e2 > 1)
        e10 = q + e2
        i = -e2 - q
        k = _pow5bits(i) - _POW5_BITCOUNT
        vr = ft_mulshift64(4 * m2, &_POW5_SPLIT[i][0], q - k)
        vp = ft_mulshift64(4 * m2 + 2, &_POW5_SPLIT[i][0], q - k)
        vm = ft_mulshift64(4 * m2 - 1 - mm_shift, &_POW5_SPLIT[i][0], q - k)
        if q <= 1:
            # mv = 4 * m2 has at least two trailing zero bits.
            vr_trailing_zeros = True
            if accept_bounds:
                vm_trailing_zeros = mm_shift == 1
            else:
                vp -= 1
        elif q < 63:
            vr_trailing_zeros = (mv & (((<uint64_t>1) << q) - 1)) == 0

    # Drop decimal digits while the interval still holds a shorter number.  A
    # short result like 0.01 drops ~15 digits, so they go 4, then 2, then 1 at a
    # time; each step is a constant divisor the compiler turns into a multiply.
    cdef _Digits v
    v.vr, v.vp, v.vm = vr, vp, vm
    v.removed = 0
    v.last_removed_digit = 0
    v.round_up = False
    v.vm_trailing_zeros = vm_trailing_zeros
    v.vr_trailing_zeros = vr_trailing_zeros
    if vm_trailing_zeros or vr_trailing_zeros:
        # Rare for arbitrary floats, usual for short exact ones (1.5, 0.25): an
        # exact bound or an exact tie needs the removed digits' zeros tracked.
        _drop_exact(&v, 10000, 4)
        _drop_exact(&v, 100, 2)
        _drop_exact(&v, 10, 1)
        if v.vm_trailing_zeros:
            _drop_vm_zeros(&v, 10000, 4)
            _drop_vm_zeros(&v, 100, 2)
            _drop_vm_zeros(&v, 10, 1)
        if v.vr_trailing_zeros and v.last_removed_digit == 5 and v.vr % 2 == 0:
            v.last_removed_digit = 4  # exactly halfway: round to even
        output = v.vr + ((v.vr == v.vm and (not accept_bounds or not v.vm_trailing_zeros))
                         or v.last_removed_digit >= 5)
    else:
        # Common case: only the first dropped digit decides the rounding.
        _drop_common(&v, 10000, 4)
        _drop_common(&v, 100, 2)
        _drop_common(&v, 10, 1)
        output = v.vr + (v.vr == v.vm or v.round_up)
    cdef int removed = v.removed
    digits[0] = output
    exponent[0] = e10 + removed


cdef const char* _DIGIT_PAIRS = (
    b"00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    b"40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    b"8081828384858687888990919293949596979899")


cdef inline int _write_digits(char* end, uint64_t value) noexcept nogil:
    """Writes the decimal digits of ``value`` so that they end just before ``end``;
    returns how many.  Two digits per step, in 32-bit arithmetic where possible."""
    cdef int n = 0, k
    cdef uint32_t low, pair
    while value >= 100000000:
        low = <uint32_t>(value % 100000000)
        value //= 100000000
        for k in range(4):
            pair = low % 100
            low //= 100
            n += 2
            memcpy(end - n, _DIGIT_PAIRS + 2 * pair, 2)
    low = <uint32_t>value
    while low >= 100:
        pair = low % 100
        low //= 100
        n += 2
        memcpy(end - n, _DIGIT_PAIRS + 2 * pair, 2)
    if low >= 10:
        n += 2
        memcpy(end - n, _DIGIT_PAIRS + 2 * low, 2)
    else:
        n += 1
        end[-n] = <char>(c'0' + low)
    return n


cdef Py_ssize_t _format_double(char* out, double x, bint json_style) noexcept nogil:
    """Writes ``repr(x)`` (or, with json_style, ``json.dumps(x)``) to ``out``
    (32 bytes suffice) and returns its length."""
    cdef uint64_t bits
    memcpy(&bits, &x, sizeof(double))
    cdef Py_ssize_t n = 0
    if isnan(x):
        if json_style:
            memcpy(out, b"NaN", 3)
        else:
            memcpy(out, b"nan", 3)
        return 3
    if bits >> 63:
        out[0] = b'-'
        n = 1
    if not isfinite(x):
        if json_style:
            memcpy(out + n, b"Infinity", 8)
            return n + 8
        memcpy(out + n, b"inf", 3)
        return n + 3
    if x == 0.0:
        memcpy(out + n, b"0.0", 3)
        return n + 3

    cdef uint64_t value
    cdef int exponent
    _shortest_digits(bits & (((<uint64_t>1) << 52) - 1), <int>((bits >> 52) & 0x7FF),
                     &value, &exponent)
    cdef char digit_buf[24]
    cdef int n_digits = _write_digits(digit_buf + 24, value), i
    cdef const char* d = digit_buf + 24 - n_digits
    cdef int decpt = n_digits + exponent  # x = 0.d1d2... * 10**decpt
    cdef int e
    if decpt <= -4 or decpt > 16:
        out[n] = d[0]
        n += 1
        if n_digits > 1:
            out[n] = b'.'
            memcpy(out + n + 1, d + 1, n_digits - 1)
            n += n_digits
        e = decpt - 1
        out[n] = b'e'
        out[n + 1] = c'-' if e < 0 else c'+'
        n += 2
        if e < 0:
            e = -e
        if e >= 100:
            out[n] = <char>(c'0' + e // 100)
            n += 1
        out[n] = <char>(c'0' + (e // 10) % 10)
        out[n + 1] = <char>(c'0' + e % 10)
        return n + 2
    if decpt <= 0:
        out[n] = b'0'
        out[n + 1] = b'.'
        n += 2
        for i in range(-decpt):
            out[n] = b'0'
            n += 1
        memcpy(out + n, d, n_digits)
        return n + n_digits
    if decpt < n_digits:
        memcpy(out + n, d, decpt)
        out[n + decpt] = b'.'
        memcpy(out + n + decpt + 1, d + decpt, n_digits - decpt)
        return n + n_digits + 1
    memcpy(out + n, d, n_digits)
    n += n_digits
    for i in range(decpt - n_digits):
        out[n] = b'0'
        n += 1
    out[n] = b'.'
    out[n + 1] = b'0'
    return n + 2


cdef inline Py_ssize_t _format_int64(char* out, long long v) noexcept nogil:
    cdef char tmp[24]
    cdef unsigned long long u = <unsigned long long>v
    if v < 0:
        u = -u  # two's complement: also right for the most negative value
    cdef int n = _write_digits(tmp + 24, u)
    if v < 0:
        n += 1
        tmp[24 - n] = c'-'
    memcpy(out, tmp + 24 - n, n)
    return n


cdef inline int _buf_double(_Buf* b, double x, bint json_style) except -1:
    if b.length + 32 > b.capacity:
        _buf_reserve(b, 32)
    b.length += _format_double(b.data + b.length, x, json_style)
    return 0


cdef inline int _buf_int64(_Buf* b, long long x) except -1:
    if b.length + 24 > b.capacity:
        _buf_reserve(b, 24)
    b.length += _format_int64(b.data + b.length, x)
    return 0


def _float_repr(double x):
    """``repr(x)`` by the compiled formatter; exposed for tests only."""
    cdef char out[32]
    cdef Py_ssize_t n = _format_double(out, x, False)
    return out[:n].decode("ascii")


# --------------------------------------------------------------------------
# result.json: json.dumps(result, default=str) with the config spliced in

from json.encoder import encode_basestring_ascii as _encode_basestring_ascii


def _json_dumps(value):
    return json.dumps(value, default=str)


# _JSON_PLAIN[c]: byte c stands for itself inside a JSON string written with
# ensure_ascii (printable ASCII but the quote and the backslash).
cdef uint8_t _JSON_PLAIN[256]
for _c in range(256):
    _JSON_PLAIN[_c] = 0x20 <= _c <= 0x7e and _c != ord('"') and _c != ord('\\')


cdef int _json_str(_Buf* b, str s) except -1:
    # Plain printable ASCII (nearly every key and most values) is copied as is;
    # anything to escape goes through the json module's own C escaper.
    cdef const unsigned char* p
    cdef Py_ssize_t n, i
    cdef char* out
    if PyUnicode_IS_ASCII(s):
        p = <const unsigned char*>PyUnicode_DATA(s)
        n = PyUnicode_GET_LENGTH(s)
        if b.length + n + 2 > b.capacity:
            _buf_reserve(b, n + 2)
        out = b.data + b.length + 1
        for i in range(n):  # copy while checking; a byte to escape abandons the copy
            if not _JSON_PLAIN[p[i]]:
                break
            out[i] = <char>p[i]
        else:
            (out - 1)[0] = b'"'
            out[n] = b'"'
            b.length += n + 2
            return 0
    return _buf_ascii(b, _encode_basestring_ascii(s))


cdef int _json_value(_Buf* b, object v, int depth) except -1:
    # Same dispatch order as the json module's C encoder.
    cdef int overflow
    cdef long long i
    if PyFloat_CheckExact(v):  # the commonest value; cannot be any of the cases below
        return _buf_double(b, PyFloat_AS_DOUBLE(v), True)
    if v is None:
        return _buf_write(b, b"null", 4)
    if v is True:
        return _buf_write(b, b"true", 4)
    if v is False:
        return _buf_write(b, b"false", 5)
    if PyUnicode_Check(v):
        return _json_str(b, v)
    if PyLong_Check(v):
        if PyLong_CheckExact(v):
            i = PyLong_AsLongLongAndOverflow(v, &overflow)
            if not overflow:
                return _buf_int64(b, i)
        return _buf_ascii(b, int.__repr__(v))
    if PyFloat_Check(v):
        return _buf_double(b, PyFloat_AS_DOUBLE(v), True)
    if depth > _JSON_INLINE_DEPTH:
        return _buf_ascii(b, _json_dumps(v))
    if PyList_Check(v) or PyTuple_Check(v):
        return _json_sequence(b, v, depth)
    if PyDict_Check(v):
        return _json_dict(b, v, depth, True, NULL, -1, NULL)
    return _json_str(b, str(v))


cdef int _json_sequence(_Buf* b, object seq, int depth) except -1:
    # Items straight from the list's or tuple's storage, as json's encoder reads
    # them (a subclass's __getitem__ is not consulted).
    cdef bint is_list = PyList_Check(seq)
    cdef Py_ssize_t i, n = PyList_GET_SIZE(seq) if is_list else PyTuple_GET_SIZE(seq)
    _buf_write(b, b"[", 1)
    for i in range(n):
        if i:
            _buf_write(b, b", ", 2)
        _json_value(b, <object>(PyList_GET_ITEM(seq, i) if is_list else PyTuple_GET_ITEM(seq, i)),
                    depth + 1)
    return _buf_write(b, b"]", 1)


cdef int _json_dict(_Buf* b, dict d, int depth, bint close, Py_ssize_t* spans,
                    Py_ssize_t limit, Py_ssize_t* done_at) except -1:
    """Writes ``{"k": v, ...`` -- only the first ``limit`` items unless that is -1
    -- and, if ``close``, the final ``}``.

    With ``spans``, records for the i-th value that is an int or a finite float
    where its text is in ``b`` (offset ``spans[2i]``, length ``spans[2i+1]``,
    which stays -1 for other values): CSV writes those values the same way and
    copies them instead of formatting every float twice.  With ``done_at``,
    records where the value of the key "done" starts and ends in ``b``.
    """
    cdef Py_ssize_t start = b.length, pos = 0, value_start, i = 0
    cdef PyObject* key
    cdef PyObject* value
    cdef bint first = True
    _buf_write(b, b"{", 1)
    while i != limit and PyDict_Next(d, &pos, &key, &value):
        if not PyUnicode_Check(<object>key):
            # json's rules for int/float/bool/None keys (and its TypeError for the
            # rest) are the json module's business: let it write the whole dict.
            b.length = start
            text = _json_dumps(d)
            if not close:
                text = text[:len(text) - 1]
            return _buf_ascii(b, text)
        if not first:
            _buf_write(b, b", ", 2)
        first = False
        _json_str(b, <str>key)
        _buf_write(b, b": ", 2)
        value_start = b.length
        _json_value(b, <object>value, depth + 1)
        if done_at != NULL and (key == <PyObject*>K_DONE or <str>key == K_DONE):
            done_at[0] = value_start
            done_at[1] = b.length
            done_at = NULL  # keys are unique: stop comparing
        if spans != NULL and (
                PyLong_CheckExact(<object>value)
                or (PyFloat_CheckExact(<object>value)
                    and isfinite(PyFloat_AS_DOUBLE(<object>value)))):
            spans[2 * i] = value_start
            spans[2 * i + 1] = b.length - value_start
        i += 1
    if close:
        _buf_write(b, b"}", 1)
    return 0


cdef inline int _buf_literal(_Buf* b, const char* text) except -1:
    return _buf_write(b, text, strlen(text))  # strlen of a literal folds away


cdef inline int _json_double_at(_Buf* b, double x, Py_ssize_t* spans, Py_ssize_t i) except -1:
    """Writes a float like ``_json_value`` would, recording its span as ``_json_dict``."""
    cdef Py_ssize_t start = b.length
    _buf_double(b, x, True)
    if isfinite(x):
        spans[2 * i] = start
        spans[2 * i + 1] = b.length - start
    return 0


cdef inline int _json_int_at(_Buf* b, long long x, Py_ssize_t* spans, Py_ssize_t i) except -1:
    cdef Py_ssize_t start = b.length
    _buf_int64(b, x)
    spans[2 * i] = start
    spans[2 * i + 1] = b.length - start
    return 0


cdef int _json_auto(_Buf* b, _Auto* auto, _Segment seg, bint done, Py_ssize_t* spans,
                    Py_ssize_t* done_at) except -1:
    """Writes the automatic fields of a result whose user set none of them.

    The same bytes ``_json_dict`` would write for r's last thirteen entries,
    straight from the C values they were made from; ``done_at`` receives where
    the value of "done" starts and ends in ``b``.
    """
    cdef Py_ssize_t i = auto.n_user  # the position of "timestamp" in r
    if i:
        _buf_literal(b, ', "timestamp": ')
    else:
        _buf_literal(b, '"timestamp": ')
    start = b.length
    _json_value(b, <object>auto.timestamp, 1)
    spans[2 * i] = start
    spans[2 * i + 1] = b.length - start
    _buf_literal(b, ', "checkpoint_dir_name": ')
    _json_value(b, <object>auto.checkpoint, 1)
    if done:
        _buf_literal(b, ', "done": true')
        done_at[0] = b.length - 4
    else:
        _buf_literal(b, ', "done": false')
        done_at[0] = b.length - 5
    done_at[1] = b.length
    _buf_literal(b, ', "training_iteration": ')
    _json_int_at(b, auto.training_iteration, spans, i + 3)
    _buf_write(b, PyBytes_AS_STRING(seg.json_trial_id), PyBytes_GET_SIZE(seg.json_trial_id))
    _buf_literal(b, ', "date": ')
    _json_str(b, <str>auto.date)
    _buf_literal(b, ', "time_this_iter_s": ')
    _json_double_at(b, auto.time_this_iter_s, spans, i + 6)
    _buf_literal(b, ', "time_total_s": ')
    _json_double_at(b, auto.time_total_s, spans, i + 7)
    _buf_write(b, PyBytes_AS_STRING(seg.json_identity), PyBytes_GET_SIZE(seg.json_identity))
    _buf_literal(b, ', "time_since_restore": ')
    _json_double_at(b, auto.time_since_restore, spans, i + 11)
    _buf_literal(b, ', "iterations_since_restore": ')
    return _json_int_at(b, auto.iterations, spans, i + 12)


cdef bytes _json_fragment(str text, values):
    """``text`` followed by ``values`` (key, value pairs) as JSON object items."""
    cdef _Buf b
    b.data, b.length, b.capacity = NULL, 0, 0
    try:
        _buf_ascii(&b, text)
        for key, value in values:
            _buf_literal(&b, ", ")
            _json_str(&b, key)
            _buf_literal(&b, ": ")
            _json_value(&b, value, 1)
        return PyBytes_FromStringAndSize(b.data, b.length)
    finally:
        PyMem_Free(b.data)


# --------------------------------------------------------------------------
# progress.csv: what csv.DictWriter writes (excel dialect, QUOTE_MINIMAL)

cdef int _csv_text(_Buf* b, str s) except -1:
    cdef const char* p
    cdef Py_ssize_t n, i
    cdef bint quote = False
    cdef char c
    cdef bytes encoded
    if PyUnicode_IS_ASCII(s):
        p = <const char*>PyUnicode_DATA(s)
        n = PyUnicode_GET_LENGTH(s)
    else:
        try:
            p = PyUnicode_AsUTF8AndSize(s, &n)
        except UnicodeEncodeError:  # lone surrogates: the twin encodes with backslashreplace
            encoded = s.encode("utf-8", "backslashreplace")
            p = PyBytes_AS_STRING(encoded)
            n = PyBytes_GET_SIZE(encoded)
    # UTF-8 continuation bytes are never ASCII, so scanning bytes finds the same
    # delimiter, quote and line-break characters the csv module looks for.
    for i in range(n):
        c = p[i]
        if c == c',' or c == c'"' or c == c'\r' or c == c'\n':
            quote = True
            break
    if not quote:
        return _buf_write(b, p, n)
    _buf_reserve(b, 2 * n + 2)
    b.data[b.length] = b'"'
    b.length += 1
    for i in range(n):
        c = p[i]
        b.data[b.length] = c
        b.length += 1
        if c == c'"':
            b.data[b.length] = b'"'
            b.length += 1
    b.data[b.length] = b'"'
    b.length += 1
    return 0


cdef int _csv_field(_Buf* b, object v) except -1:
    cdef int overflow
    cdef long long i
    if v is None:
        return 0
    if PyUnicode_Check(v):
        return _csv_text(b, v)
    if PyFloat_CheckExact(v):
        return _buf_double(b, PyFloat_AS_DOUBLE(v), False)
    if v is True:
        return _buf_write(b, b"True", 4)
    if v is False:
        return _buf_write(b, b"False", 5)
    if PyLong_CheckExact(v):
        i = PyLong_AsLongLongAndOverflow(v, &overflow)
        if not overflow:
            return _buf_int64(b, i)
    return _csv_text(b, str(v))


cdef int _csv_row(_Buf* b, tuple header, dict values, _Buf* js, Py_ssize_t* spans,
                  Py_ssize_t marked, Py_ssize_t* marked_at) except -1:
    """Writes one row: ``values``' entries in ``header`` order, empty where missing.

    ``spans`` (or NULL) are ``_json_dict``'s records for ``values``, in ``js``.
    ``marked_at`` receives where field number ``marked`` (-1: none) starts and
    ends in ``b``.
    """
    cdef Py_ssize_t i, n = PyTuple_GET_SIZE(header), before = b.length, pos = 0
    cdef PyObject* key
    cdef PyObject* value
    cdef bint in_step = True
    for i in range(n):
        if i:
            if i == marked + 1:
                marked_at[1] = b.length
            _buf_write(b, b",", 1)
        if i == marked:
            marked_at[0] = b.length
        column = <str>PyTuple_GET_ITEM(header, i)
        # Results usually have the header's keys in the header's order: walk the
        # dict alongside the header, and look keys up only once that fails.
        if in_step:
            if PyDict_Next(values, &pos, &key, &value) and (
                    <PyObject*>column == key or column == <str>key):
                if spans != NULL and spans[2 * i + 1] >= 0:
                    _buf_write(b, js.data + spans[2 * i], spans[2 * i + 1])
                else:
                    _csv_field(b, <object>value)
                continue
            in_step = False
        value = PyDict_GetItemWithError(values, column)
        if value != NULL:
            _csv_field(b, <object>value)
    if n == 1 and b.length == before:
        _buf_write(b, b'""', 2)  # csv quotes a row's only field when it is empty
    if marked == n - 1:
        marked_at[1] = b.length
    return _buf_write(b, b"\r\n", 2)


cdef int _csv_header_row(_Buf* b, tuple header) except -1:
    return _csv_row(b, header, dict(zip(header, header)), NULL, NULL, -1, NULL)


# --------------------------------------------------------------------------
# ResultBuffer

cdef str K_CONFIG = "config"
cdef str K_TIMESTAMP = "timestamp"
cdef str K_CHECKPOINT_DIR_NAME = "checkpoint_dir_name"
cdef str K_DONE = "done"
cdef str K_TRAINING_ITERATION = "training_iteration"
cdef str K_TRIAL_ID = "trial_id"
cdef str K_DATE = "date"
cdef str K_TIME_THIS_ITER_S = "time_this_iter_s"
cdef str K_TIME_TOTAL_S = "time_total_s"
cdef str K_PID = "pid"
cdef str K_HOSTNAME = "hostname"
cdef str K_NODE_IP = "node_ip"
cdef str K_TIME_SINCE_RESTORE = "time_since_restore"
cdef str K_ITERATIONS_SINCE_RESTORE = "iterations_since_restore"

_NUMPY_REAL = (np.integer, np.floating, np.bool_)


cdef double _metric_value(object v) except? -1.0:
    if PyFloat_Check(v):
        return PyFloat_AS_DOUBLE(v)
    if v is True:
        return 1.0
    if v is False:
        return 0.0
    if PyLong_Check(v) or isinstance(v, _NUMPY_REAL):
        try:
            return float(v)
        except OverflowError:  # an int too large for a float
            return math.nan
    return math.nan


def metric_number(value):
    """The number the table records for a result's metric ``value``; see the twin."""
    return _metric_value(value)


cdef class Ingested:
    """What :meth:`ResultBuffer.ingest` made of one batch; see the twin's docstring."""

    def __cinit__(self):
        # Where the last result's "done" value is: (start, end) in json_bytes, then
        # in csv_bytes, as ResultBuffer._ingest recorded it while rendering.
        self._done_at[0] = self._done_at[1] = self._done_at[2] = self._done_at[3] = -1

    def __init__(self):
        self.results = []
        self.json_bytes = b""
        self.csv_bytes = b""
        self.stopped = False
        self.error = None
        self.metric_values = []

    @property
    def last(self):
        results = self.results
        return results[len(results) - 1] if results else None

    def mark_last_done(self):
        """Makes the last kept result say that it ends the trial; see the twin."""
        results = self.results
        if not results:
            raise ValueError("mark_last_done: the batch kept no result")
        results[len(results) - 1][K_DONE] = True
        cdef Py_ssize_t* at = self._done_at
        self.json_bytes = self.json_bytes[:at[0]] + b"true" + self.json_bytes[at[1]:]
        at[1] = at[0] + 4
        if at[2] >= 0:
            self.csv_bytes = self.csv_bytes[:at[2]] + b"True" + self.csv_bytes[at[3]:]
            at[3] = at[2] + 4

    def __repr__(self):
        return (f"Ingested(results={len(self.results)}, stopped={self.stopped}, "
                f"error={self.error!r})")


cdef class _Segment:
    """Per-row state of one run segment: from a (re)start until close."""


cdef str _key_message(_Segment seg, key):
    return (f"Trial {seg.trial_id} reported a result with the key {key!r}, which is not a "
            "string; result keys must be strings.")


cdef str _flatten_into(_Segment seg, dict flat, dict d, str prefix, int depth, str top_key):
    """Adds ``d``'s leaves to ``flat`` under "prefix/key" names; returns a refusal or None."""
    cdef str refused
    if depth > _MAX_DEPTH:
        return (f"Trial {seg.trial_id} reported a result nested more than {_MAX_DEPTH} "
                f"levels deep under the key '{top_key}'.")
    for key, value in d.items():
        if not isinstance(key, str):
            return _key_message(seg, key)
        if isinstance(value, dict):
            refused = _flatten_into(seg, flat, value, f"{prefix}{key}/", depth + 1,
                                    top_key if depth else key)
            if refused is not None:
                return refused
        else:
            flat[prefix + key] = value
    return None


cdef tuple _csv_columns(tuple header):
    """What ResultBuffer keeps of a row's CSV header: the header and where its
    "done" column is (-1: none), found once instead of at every batch."""
    return (header, header.index(K_DONE) if K_DONE in header else -1)


cdef class ResultBuffer:
    """Completes the results workers send and renders them for the trial's logs.

    See the twin's docstring for the contract.  The per-result work -- completing
    the dict, checking metric and stop criteria, recording into the table and
    writing the JSON line and CSV row -- runs on C types and C buffers.
    """

    def __init__(self, table, metric, *, require_metric=True):
        if not isinstance(table, TrialTable):
            raise TypeError("ResultBuffer needs a TrialTable from the same implementation, "
                            f"got {type(table).__name__}")
        if metric is not None and not isinstance(metric, str):
            raise TypeError(f"metric must be a string or None, got {type(metric).__name__}")
        self._table = table
        self._metric = metric
        self._require_metric = bool(require_metric)
        self._segments = {}
        self._csv_headers = {}
        self._shared_columns = {}
        self._last = {}
        self._date_valid = False

    def __dealloc__(self):
        PyMem_Free(self._json.data)
        PyMem_Free(self._csv.data)
        PyMem_Free(self._spans)

    cdef int _grow_spans(self, Py_ssize_t n) except -1:
        self._spans = <Py_ssize_t*>_resize(self._spans, 2 * n * sizeof(Py_ssize_t))
        self._spans_capacity = n
        return 0

    @property
    def table(self):
        return self._table

    @property
    def metric(self):
        return self._metric

    def open_trial(self, Py_ssize_t row, trial_id, config_json, stop, *, start_time,
                   hostname, node_ip, pid):
        """Starts a run segment of a trial (its first start, or a restore)."""
        self._table._check_row(row)
        if not isinstance(trial_id, str):
            raise TypeError(f"trial_id must be a string, got {type(trial_id).__name__}")
        if not isinstance(config_json, str):
            raise TypeError(f"config_json must be a string, got {type(config_json).__name__}")
        if stop is not None and not isinstance(stop, dict):
            raise TypeError("stop must be a dict of result key to threshold or None, "
                            f"got {type(stop).__name__}")
        cdef _Segment seg = _Segment()
        seg.config_json = config_json.encode("utf-8")
        seg.trial_id = trial_id
        seg.stop = tuple(stop.items()) if stop else ()
        seg.start_time = float(start_time)
        seg.hostname, seg.node_ip, seg.pid = hostname, node_ip, pid
        seg.base_iteration = self._table._iteration[row]
        seg.base_time = self._table._time_total[row]
        seg.done_in_segment = 0
        seg.prev_time = seg.start_time
        # The segment's constant fields, rendered once.  Values the json module
        # would refuse (hardly plausible) leave these None: rendered per result.
        try:
            seg.json_trial_id = _json_fragment("", ((K_TRIAL_ID, trial_id),))
            seg.json_identity = _json_fragment(
                "", ((K_PID, pid), (K_HOSTNAME, hostname), (K_NODE_IP, node_ip)))
        except Exception:
            seg.json_trial_id = seg.json_identity = None
        self._segments[row] = seg

    def close_trial(self, Py_ssize_t row):
        """Ends the row's segment.  Its CSV header state stays; its last result goes
        (the trial holds it: a buffer kept for 100,000 finished trials would hold them all)."""
        self._table._check_row(row)
        self._segments.pop(row, None)
        self._last.pop(row, None)

    def last_result(self, Py_ssize_t row):
        """The row's last result while its trial is open (until ``close_trial``), or ``None``."""
        self._table._check_row(row)
        return self._last.get(row)

    def csv_header_written(self, Py_ssize_t row):
        """Whether the row's ``progress.csv`` already has its header line."""
        self._table._check_row(row)
        return row in self._csv_headers

    def csv_header(self, Py_ssize_t row):
        """The row's ``progress.csv`` columns, or ``None`` before its first result."""
        self._table._check_row(row)
        columns = self._csv_headers.get(row)
        header = None if columns is None else columns[0]
        return None if header is None else list(header)

    def set_csv_header(self, Py_ssize_t row, keys):
        """Declares the row's ``progress.csv`` header as already written with ``keys``."""
        self._table._check_row(row)
        keys = tuple(keys)
        if not keys:
            raise ValueError("a CSV header needs at least one key")
        for key in keys:
            if not isinstance(key, str):
                raise TypeError(f"CSV header keys must be strings, got {key!r}")
        self._csv_headers[row] = _csv_columns(keys)

    cdef str _date(self, double t):
        if not -1e18 < t < 1e18:  # beyond int64: Python's integers (and errors) decide
            return time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(math.floor(t)))
        cdef int64_t second = <int64_t>floor(t)
        if not self._date_valid or second != self._date_second:
            self._date_text = time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(second))
            self._date_second = second
            self._date_valid = True
        return self._date_text

    cdef dict _complete(self, _Segment seg, object metric_dict, double t, object checkpoint,
                        _Auto* auto):
        """The complete result dict; ``auto`` receives the automatic fields' values."""
        cdef dict r
        if PyDict_CheckExact(metric_dict):
            r = PyDict_Copy(metric_dict)
        else:
            r = dict(metric_dict)
        if PyDict_Contains(r, K_CONFIG):
            PyDict_DelItem(r, K_CONFIG)
        auto.n_user = PyDict_Size(r)
        auto.iterations = seg.done_in_segment + 1
        auto.training_iteration = seg.base_iteration + auto.iterations
        auto.time_since_restore = t - seg.start_time
        auto.time_this_iter_s = t - seg.prev_time
        auto.time_total_s = seg.base_time + auto.time_since_restore
        timestamp = PyLong_FromDouble(t)
        auto.timestamp = <PyObject*>timestamp
        PyDict_SetDefault(r, K_TIMESTAMP, timestamp)
        checkpoint = checkpoint if checkpoint else None
        auto.checkpoint = <PyObject*>checkpoint
        PyDict_SetItem(r, K_CHECKPOINT_DIR_NAME, checkpoint)
        PyDict_SetDefault(r, K_DONE, False)
        PyDict_SetItem(r, K_TRAINING_ITERATION, PyLong_FromLongLong(auto.training_iteration))
        PyDict_SetItem(r, K_TRIAL_ID, seg.trial_id)
        date = self._date(t)
        auto.date = <PyObject*>date
        PyDict_SetDefault(r, K_DATE, date)
        PyDict_SetDefault(r, K_TIME_THIS_ITER_S, PyFloat_FromDouble(auto.time_this_iter_s))
        PyDict_SetItem(r, K_TIME_TOTAL_S, PyFloat_FromDouble(auto.time_total_s))
        PyDict_SetItem(r, K_PID, seg.pid)
        PyDict_SetItem(r, K_HOSTNAME, seg.hostname)
        PyDict_SetItem(r, K_NODE_IP, seg.node_ip)
        PyDict_SetItem(r, K_TIME_SINCE_RESTORE, PyFloat_FromDouble(auto.time_since_restore))
        PyDict_SetItem(r, K_ITERATIONS_SINCE_RESTORE, PyLong_FromLongLong(auto.iterations))
        # Thirteen new keys means the user set none of them: the automatic fields
        # are then r's last thirteen entries, in this order, with these values.
        auto.in_order = PyDict_Size(r) == auto.n_user + _N_AUTO_FIELDS
        return r

    cdef object _check(self, _Segment seg, object metric_dict, dict r, bint* stop):
        """Flattens ``r`` and checks its keys, metric and stop criteria.

        Returns the flattened dict (``r`` itself if nothing is nested) when the
        result may be kept, else the refusal message (a str).
        """
        cdef Py_ssize_t pos = 0
        cdef PyObject* key
        cdef PyObject* value
        cdef bint nested = False
        cdef dict flat = r
        cdef str refused
        # Only the user's keys can be non-strings or hold dicts, and they come
        # first in r, in the user's order: walk the user's (shorter) dict instead.
        cdef dict scan = metric_dict if PyDict_CheckExact(metric_dict) else r
        while PyDict_Next(scan, &pos, &key, &value):
            if not PyUnicode_Check(<object>key):
                return _key_message(seg, <object>key)
            if PyDict_Check(<object>value):
                nested = True
        if nested:
            flat = {}
            refused = _flatten_into(seg, flat, r, "", 0, "")
            if refused is not None:
                return refused

        if (self._require_metric and self._metric is not None
                and PyDict_GetItemWithError(flat, self._metric) == NULL):
            metric = self._metric
            return (
                f"Trial {seg.trial_id} reported a result without the metric '{metric}' set in "
                f"TuneConfig(metric=...). The result has the keys {sorted(flat)}. Report the "
                f"metric with tune.report({{'{metric}': ...}}) or set TuneConfig(metric=...) "
                "to one of those keys.")

        cdef Py_ssize_t i
        cdef PyObject* found
        for i in range(PyTuple_GET_SIZE(seg.stop)):
            criterion = <object>PyTuple_GET_ITEM(seg.stop, i)
            key_ = criterion[0]
            threshold = criterion[1]
            found = PyDict_GetItemWithError(flat, key_)
            if found == NULL:
                return (
                    f"Trial {seg.trial_id}: the stop criterion '{key_}' is not in the result. "
                    f"The result has the keys {sorted(flat)}. Fix the key in RunConfig(stop=...).")
            result_value = <object>found
            try:
                reached = bool(result_value >= threshold)
            except Exception:
                return (
                    f"Trial {seg.trial_id}: the stop criterion '{key_}' cannot compare the "
                    f"result's value {result_value!r} with the threshold {threshold!r}. Fix "
                    "RunConfig(stop=...) or the reported value.")
            if reached:
                stop[0] = True
                return flat
        stop[0] = bool(r[K_DONE])
        return flat

    def ingest(self, Py_ssize_t row, metrics, times, checkpoints=None):
        """Completes, checks, records and renders one batch of a trial's results."""
        self._table._check_row(row)
        cdef _Segment seg = self._segments.get(row)
        if seg is None:
            raise ValueError(f"trial row {row} is not open in this ResultBuffer; "
                             "call open_trial() first")
        cdef Py_ssize_t n = len(metrics), n_times = len(times)
        if n != n_times:
            raise ValueError(f"got {n} results but {n_times} times")
        if not PyList_CheckExact(metrics):
            metrics = list(metrics)
        cdef Py_ssize_t i
        for i in range(n):
            m = <object>PyList_GET_ITEM(metrics, i)
            if not isinstance(m, dict):
                raise TypeError(f"metrics[{i}] is a {type(m).__name__}, not a dict")
        cdef double* t = <double*>PyMem_Malloc(max(n, 1) * sizeof(double))
        if t == NULL:
            raise MemoryError()
        try:
            for i in range(n):
                ti = times[i]
                t[i] = PyFloat_AS_DOUBLE(ti) if PyFloat_CheckExact(ti) else float(ti)
            for i in range(n):
                if not isfinite(t[i]):
                    raise ValueError(f"times[{i}] is {t[i]!r}; result times must be finite "
                                     "seconds since the epoch")
            return self._ingest(row, seg, metrics, t, n, checkpoints)
        finally:
            PyMem_Free(t)

    cdef Ingested _ingest(self, Py_ssize_t row, _Segment seg, list metrics, double* t,
                          Py_ssize_t n, object checkpoints):
        cdef Ingested out = Ingested()
        cdef list results = out.results
        cdef _Buf* js = &self._json
        cdef _Buf* cs = &self._csv
        js.length = 0
        cs.length = 0
        _buf_reserve(js, n * 512)
        cdef tuple columns = self._csv_headers.get(row)
        cdef tuple header = None
        cdef Py_ssize_t done_column = -1
        if columns is not None:
            header = <tuple>PyTuple_GET_ITEM(columns, 0)
            done_column = <object>PyTuple_GET_ITEM(columns, 1)
        cdef bint has_checkpoints = bool(checkpoints)
        cdef Py_ssize_t i, k, n_keys
        cdef dict r, flat
        cdef bint stop
        cdef PyObject* metric_value
        cdef double metric
        cdef _Auto auto
        cdef TrialTable table = self._table
        cdef list metric_values = out.metric_values
        for i in range(n):
            metric_dict = <object>PyList_GET_ITEM(metrics, i)
            r = self._complete(seg, metric_dict, t[i],
                               checkpoints.get(i) if has_checkpoints else None, &auto)
            stop = False
            checked = self._check(seg, metric_dict, r, &stop)
            if PyUnicode_Check(checked):
                out.error = checked
                break
            flat = <dict>checked
            if stop:
                r[K_DONE] = True
                if flat is not r:
                    flat[K_DONE] = True
            metric = math.nan
            if self._metric is not None:
                metric_value = PyDict_GetItemWithError(flat, self._metric)
                if metric_value != NULL:  # absent only when the metric is not required
                    metric = _metric_value(<object>metric_value)
            table._record(row, seg.base_iteration + seg.done_in_segment + 1,
                          seg.base_time + (t[i] - seg.start_time), metric)
            metric_values.append(metric)
            seg.done_in_segment += 1
            seg.prev_time = t[i]

            n_keys = PyDict_Size(r)
            if n_keys > self._spans_capacity:
                self._grow_spans(n_keys)
            for k in range(n_keys):
                self._spans[2 * k + 1] = -1
            if auto.in_order and seg.json_identity is not None:
                _json_dict(js, r, 0, False, self._spans, auto.n_user, NULL)
                _json_auto(js, &auto, seg, stop, self._spans, out._done_at)
            else:
                _json_dict(js, r, 0, False, self._spans, -1, out._done_at)
            _buf_write(js, b', "config": ', 12)
            _buf_write(js, PyBytes_AS_STRING(seg.config_json), PyBytes_GET_SIZE(seg.config_json))
            _buf_write(js, b"}\n", 2)
            if header is None:  # the row's first result ever decides its columns
                header = tuple(flat)
                # One tuple for all the rows with these columns (a sweep's trials share them).
                columns = self._shared_columns.get(header)
                if columns is None:
                    columns = self._shared_columns[header] = _csv_columns(header)
                self._csv_headers[row] = columns
                done_column = <object>PyTuple_GET_ITEM(columns, 1)
                _csv_header_row(cs, header)
            _csv_row(cs, header, flat, js, self._spans if flat is r else NULL, done_column,
                     out._done_at + 2)

            results.append(r)
            if stop:
                out.stopped = True
                break

        out.json_bytes = _buf_take(js)
        out.csv_bytes = _buf_take(cs)
        if results:
            self._last[row] = results[len(results) - 1]
        return out


# --------------------------------------------------------------------------
# TensorBoard event records (the wire format is described in the twin)

_TB_NUMPY_SCALARS = (np.float32, np.float64, np.int32, np.int64)
_TB_TAG_PREFIX = "ray/tune/"
cdef double _FLOAT32_OVERFLOW = 3.4028235677973366e38  # the smallest magnitude that rounds to inf

# Slicing-by-8 tables: _CRC32C_TABLE[k][b] is the CRC of byte b followed by k zero bytes.
cdef uint32_t _CRC32C_TABLE[8][256]
# (Module globals: Cython treats literals this large as Python ints.)
cdef uint32_t _CRC_ONES = 0xFFFFFFFF
cdef uint32_t _CRC_POLY = 0x82F63B78    # Castagnoli, reflected
cdef uint32_t _CRC_MASK_DELTA = 0xA282EAD8


cdef void _fill_crc32c_table() noexcept:
    cdef uint32_t c
    cdef int n, k
    for n in range(256):
        c = n
        for k in range(8):
            c = (c >> 1) ^ _CRC_POLY if c & 1 else c >> 1
        _CRC32C_TABLE[0][n] = c
    for n in range(256):
        for k in range(1, 8):
            c = _CRC32C_TABLE[k - 1][n]
            _CRC32C_TABLE[k][n] = _CRC32C_TABLE[0][c & 0xFF] ^ (c >> 8)


_fill_crc32c_table()


cdef inline uint32_t _crc32c(const unsigned char* p, Py_ssize_t n) noexcept nogil:
    cdef uint32_t crc = _CRC_ONES, lo, hi
    cdef Py_ssize_t i = 0
    while n - i >= 8:  # eight bytes a step (little-endian loads, as x86 and ARM do)
        memcpy(&lo, p + i, 4)
        memcpy(&hi, p + i + 4, 4)
        lo ^= crc
        crc = (_CRC32C_TABLE[7][lo & 0xFF] ^ _CRC32C_TABLE[6][(lo >> 8) & 0xFF]
               ^ _CRC32C_TABLE[5][(lo >> 16) & 0xFF] ^ _CRC32C_TABLE[4][lo >> 24]
               ^ _CRC32C_TABLE[3][hi & 0xFF] ^ _CRC32C_TABLE[2][(hi >> 8) & 0xFF]
               ^ _CRC32C_TABLE[1][(hi >> 16) & 0xFF] ^ _CRC32C_TABLE[0][hi >> 24])
        i += 8
    while i < n:
        crc = _CRC32C_TABLE[0][(crc ^ p[i]) & 0xFF] ^ (crc >> 8)
        i += 1
    return crc ^ _CRC_ONES


cdef inline void _put_masked_crc(char* dst, const char* p, Py_ssize_t n) noexcept nogil:
    cdef uint32_t crc = _crc32c(<const unsigned char*>p, n)
    crc = ((crc >> 15) | (crc << 17)) + _CRC_MASK_DELTA
    memcpy(dst, &crc, 4)  # little-endian, as x86 and ARM store it


cdef inline Py_ssize_t _put_varint(char* dst, uint64_t n) noexcept nogil:
    cdef Py_ssize_t i = 0
    while n >= 0x80:
        dst[i] = <char>((n & 0x7F) | 0x80)
        n >>= 7
        i += 1
    dst[i] = <char>n
    return i + 1


def crc32c(data):
    b = data if type(data) is bytes else bytes(data)
    return _crc32c(<const unsigned char*>PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))


cdef int _frame_record(_Buf* out, const char* data, Py_ssize_t n) except -1:
    cdef uint64_t length = n
    cdef char* p
    _buf_reserve(out, n + 16)
    p = out.data + out.length
    memcpy(p, &length, 8)
    _put_masked_crc(p + 8, p, 8)
    memcpy(p + 12, data, n)
    _put_masked_crc(p + 12 + n, p + 12, n)
    out.length += n + 16
    return 0


def tfrecord(data):
    cdef _Buf out
    b = data if type(data) is bytes else bytes(data)
    out.data, out.length, out.capacity = NULL, 0, 0
    try:
        _frame_record(&out, PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))
        return PyBytes_FromStringAndSize(out.data, out.length)
    finally:
        PyMem_Free(out.data)


# The TensorBoard records that are not per-result scalars: _core_shared's
# tb_hparams_records_python is their specification; here the same bytes are written in
# C for plain values (a trial's end costs ~0.3 us instead of ~3 us), and any other input
# (a callable, a subclass, a name or value that fails to encode) goes there.

cdef inline Py_ssize_t _varint_size(uint64_t n) noexcept nogil:
    cdef Py_ssize_t k = 1
    while n >= 0x80:
        n >>= 7
        k += 1
    return k


cdef inline Py_ssize_t _field_size(Py_ssize_t payload) noexcept nogil:
    """The bytes of a length-delimited field (one-byte key) with ``payload`` bytes."""
    return 1 + _varint_size(payload) + payload


cdef inline int _pb_head(_Buf* b, int number, Py_ssize_t size) except -1:
    """A length-delimited field's key and length (its payload follows)."""
    _buf_reserve(b, 11)
    b.data[b.length] = <char>(number << 3 | 2)
    b.length += 1 + _put_varint(b.data + b.length + 1, size)
    return 0


cdef inline int _pb_bytes(_Buf* b, int number, bytes data) except -1:
    _pb_head(b, number, PyBytes_GET_SIZE(data))
    return _buf_write(b, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))


cdef inline int _pb_double(_Buf* b, int number, double x) except -1:
    _buf_reserve(b, 9)
    b.data[b.length] = <char>(number << 3 | 1)
    memcpy(b.data + b.length + 1, &x, 8)  # little-endian, as x86 and ARM store it
    b.length += 9
    return 0


cdef int _pb_plugin_summary_head(_Buf* b, bytes tag, Py_ssize_t content) except -1:
    """An Event's summary field up to its hparams plugin content (``content`` bytes,
    written next): Summary{value{tag, metadata{plugin_data{"hparams", content}}}}."""
    cdef Py_ssize_t plugin_data = _field_size(7) + _field_size(content)
    cdef Py_ssize_t metadata = _field_size(plugin_data)
    cdef Py_ssize_t value = _field_size(PyBytes_GET_SIZE(tag)) + _field_size(metadata)
    _pb_head(b, 5, _field_size(value))
    _pb_head(b, 1, value)
    _pb_bytes(b, 1, tag)
    _pb_head(b, 9, metadata)
    _pb_head(b, 1, plugin_data)
    _buf_write(b, b"\x0a\x07hparams", 9)
    return _pb_head(b, 2, content)


cdef inline bytes _utf8(str text):
    if PyUnicode_IS_ASCII(text):
        return PyBytes_FromStringAndSize(<const char*>PyUnicode_DATA(text), PyUnicode_GET_LENGTH(text))
    return text.encode()


cdef int _frame_event(_Buf* out, _Buf* event) except -1:
    _frame_record(out, event.data, event.length)
    event.length = 0
    return 0


cdef bytes _TB_EXPERIMENT_TAG = b"_hparams_/experiment"
cdef bytes _TB_SESSION_START_TAG = b"_hparams_/session_start_info"
cdef bytes _TB_SESSION_END_TAG = b"_hparams_/session_end_info"


cdef object _tb_hparams_plain(dict hparams, object metric_tags, double wall_time):
    """tb_hparams_records_python's bytes when every name and tag is a str and every value
    a str, bool, int, float, list or None (not a subclass); else None."""
    cdef list names = [], kinds = [], values = [], tags = []
    cdef Py_ssize_t pos = 0, i, n, infos_size = 0, entries_size = 0, tags_size = 0, name_size, value_size, inner
    cdef PyObject* pkey
    cdef PyObject* pvalue
    cdef int kind
    cdef double x
    cdef char small[2]
    cdef _Buf out, event
    while PyDict_Next(hparams, &pos, &pkey, &pvalue):
        key, value = <object>pkey, <object>pvalue
        if type(key) is not str:
            return None
        kind_type = type(value)
        if value is None:
            continue
        if kind_type is str:
            kind, value = 1, _utf8(value)  # the value's text is encoded before the name, as there
        elif kind_type is bool:
            kind = 2
        elif kind_type is float or kind_type is int:
            kind, value = 3, float(value)
        elif kind_type is list:
            kind = 0
        else:
            return None
        name = _utf8(key)
        names.append(name)
        kinds.append(kind)
        values.append(value)
        name_size = _field_size(PyBytes_GET_SIZE(name))
        infos_size += _field_size(name_size + (2 if kind else 0))
        if kind == 1:
            value_size = _field_size(PyBytes_GET_SIZE(value))
        elif kind == 2:
            value_size = 2
        elif kind == 3:
            value_size = 9
        if kind:
            entries_size += _field_size(name_size + _field_size(value_size))
    for tag in metric_tags:
        if type(tag) is not str:
            return None
        tag = _utf8(tag)
        tags.append(tag)
        tags_size += _field_size(_field_size(_field_size(PyBytes_GET_SIZE(tag))))
    out.data, out.length, out.capacity = NULL, 0, 0
    event.data, event.length, event.capacity = NULL, 0, 0
    try:
        # The experiment: each hyperparameter's HParamInfo, then each metric's MetricInfo.
        _pb_double(&event, 1, wall_time)
        _pb_plugin_summary_head(&event, _TB_EXPERIMENT_TAG, _field_size(infos_size + tags_size))
        _pb_head(&event, 2, infos_size + tags_size)
        n = len(names)
        for i in range(n):
            name, kind = names[i], kinds[i]
            _pb_head(&event, 4, _field_size(PyBytes_GET_SIZE(name)) + (2 if kind else 0))
            _pb_bytes(&event, 1, name)
            if kind:  # its DataType: field 4, 1 (string), 2 (bool) or 3 (float64)
                small[0], small[1] = 0x20, <char>kind
                _buf_write(&event, small, 2)
        for tag in tags:
            inner = _field_size(PyBytes_GET_SIZE(tag))
            _pb_head(&event, 5, _field_size(inner))
            _pb_head(&event, 1, inner)
            _pb_bytes(&event, 2, tag)
        _frame_event(&out, &event)
        # The session start: each valued hyperparameter's name and value.
        _pb_double(&event, 1, wall_time)
        _pb_plugin_summary_head(&event, _TB_SESSION_START_TAG, _field_size(entries_size))
        _pb_head(&event, 3, entries_size)
        for i in range(n):
            name, kind, value = names[i], kinds[i], values[i]
            if not kind:
                continue
            name_size = _field_size(PyBytes_GET_SIZE(name))
            value_size = _field_size(PyBytes_GET_SIZE(value)) if kind == 1 else (2 if kind == 2 else 9)
            _pb_head(&event, 1, name_size + _field_size(value_size))
            _pb_bytes(&event, 1, name)
            _pb_head(&event, 2, value_size)
            if kind == 1:
                _pb_bytes(&event, 3, value)
            elif kind == 2:  # bool_value: field 4, a varint
                small[0], small[1] = 0x20, 1 if value else 0
                _buf_write(&event, small, 2)
            else:
                x = value
                _pb_double(&event, 2, x)
        _frame_event(&out, &event)
        # The session end: status SUCCESS.
        _pb_double(&event, 1, wall_time)
        _pb_plugin_summary_head(&event, _TB_SESSION_END_TAG, 4)
        _buf_write(&event, b"\x22\x02\x08\x01", 4)
        _frame_event(&out, &event)
        return PyBytes_FromStringAndSize(out.data, out.length)
    finally:
        PyMem_Free(out.data)
        PyMem_Free(event.data)


def tb_hparams_records(hparams, metric_tags, wall_time):
    records = None
    if type(hparams) is dict and type(wall_time) is float and (type(metric_tags) is list or type(metric_tags) is tuple):
        try:
            records = _tb_hparams_plain(hparams, metric_tags, wall_time)
        except Exception:  # noqa: BLE001 - the specification below raises it as it does
            records = None
    if records is None:
        records = tb_hparams_records_python(hparams, metric_tags, wall_time, tfrecord)
    return records


def tb_file_version_record(wall_time):
    cdef _Buf out, event
    if type(wall_time) is not float:
        return tb_file_version_record_python(wall_time, tfrecord)
    out.data, out.length, out.capacity = NULL, 0, 0
    event.data, event.length, event.capacity = NULL, 0, 0
    try:
        _pb_double(&event, 1, wall_time)
        _buf_write(&event, b"\x1a\x0dbrain.Event:2", 15)
        _frame_event(&out, &event)
        return PyBytes_FromStringAndSize(out.data, out.length)
    finally:
        PyMem_Free(out.data)
        PyMem_Free(event.data)


cdef bytes _tb_value_prefix(str key):
    tag = (_TB_TAG_PREFIX + key).encode("utf-8")
    cdef char head[24]
    cdef Py_ssize_t n = PyBytes_GET_SIZE(tag)
    cdef Py_ssize_t k = _put_varint(head, n)
    entry_len = 1 + k + n + 1 + 4
    cdef char outer[16]
    outer[0] = 0x0A
    cdef Py_ssize_t m = 1 + _put_varint(outer + 1, entry_len)
    return PyBytes_FromStringAndSize(outer, m) + b"\x0a" + PyBytes_FromStringAndSize(head, k) + tag + b"\x15"


cdef inline double _tb_double(object value) except? -1.0:
    """The scalar's value as a double that a C cast to float32 rounds as the twin does."""
    cdef double x
    if PyFloat_Check(value):
        x = PyFloat_AS_DOUBLE(value)
    else:
        try:
            x = float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    if isfinite(x) and (x >= _FLOAT32_OVERFLOW or x <= -_FLOAT32_OVERFLOW):
        return math.inf if x > 0 else -math.inf
    return x


cdef int _tb_collect(dict d, str prefix, _Buf* summary, dict tags, list others, Py_ssize_t index,
                     int depth) except -1:
    cdef PyObject* pkey
    cdef PyObject* pvalue
    cdef Py_ssize_t pos = 0
    cdef double x
    cdef float f
    cdef PyObject* cached
    if depth > _MAX_DEPTH:
        raise ValueError(f"results[{index}] is nested more than {_MAX_DEPTH} levels deep")
    while PyDict_Next(d, &pos, &pkey, &pvalue):
        key = <object>pkey
        value = <object>pvalue
        if not PyUnicode_Check(key):
            raise TypeError(f"results[{index}] has the key {key!r}; result keys must be strings")
        if PyUnicode_Check(value) or value is None:
            continue  # most non-numeric fields: decided before the slower checks
        if PyDict_Check(value):
            if not depth and key in TB_SKIPPED_KEYS:
                continue
            _tb_collect(<dict>value, f"{prefix}{key}/", summary, tags, others, index, depth + 1)
        elif PyFloat_Check(value) or PyLong_Check(value) or isinstance(value, _TB_NUMPY_SCALARS):
            flat = key if depth == 0 else prefix + key
            cached = PyDict_GetItemWithError(tags, flat)
            if cached == NULL:
                entry = None if depth == 0 and key in TB_SKIPPED_KEYS else _tb_value_prefix(flat)
                tags[flat] = entry
            else:
                entry = <object>cached
            if entry is None:
                continue  # a skipped key: one lookup decides it
            x = _tb_double(value)
            if isnan(x):
                continue
            _buf_write(summary, PyBytes_AS_STRING(entry), PyBytes_GET_SIZE(entry))
            f = <float>x
            _buf_write(summary, <const char*>&f, 4)
        elif (PyList_Check(value) and PyList_GET_SIZE(value)) or (isinstance(value, np.ndarray) and value.size):
            others.append((index, _TB_TAG_PREFIX + prefix + key, value))
    return 0


cdef int64_t _tb_step(dict result) except? -1:
    cdef int overflow = 0
    cdef long long fast
    cdef PyObject* p
    if PyDict_GetItemWithError(result, "timesteps_total") == NULL:
        p = PyDict_GetItemWithError(result, "training_iteration")
        if p != NULL and PyLong_CheckExact(<object>p):
            fast = PyLong_AsLongLongAndOverflow(<object>p, &overflow)
            if not overflow:
                return fast
    step = int(result.get("timesteps_total") or result.get("training_iteration") or 0)
    if not -(1 << 63) <= step < (1 << 63):
        raise OverflowError(f"the step {step} of a result does not fit in 64 bits")
    return step


def tb_scalar_events(list results, list times, dict tags):
    cdef _Buf out, summary
    cdef Py_ssize_t i, n = PyList_GET_SIZE(results), slen, elen
    cdef double t
    cdef int64_t step
    cdef char head[32]
    cdef Py_ssize_t hlen
    if n != PyList_GET_SIZE(times):
        raise ValueError(f"got {n} results but {PyList_GET_SIZE(times)} times")
    others = []
    out.data, out.length, out.capacity = NULL, 0, 0
    summary.data, summary.length, summary.capacity = NULL, 0, 0
    try:
        for i in range(n):
            result = <object>PyList_GET_ITEM(results, i)
            if not PyDict_Check(result):
                raise TypeError(f"results[{i}] is a {type(result).__name__}, not a dict")
            t = float(<object>PyList_GET_ITEM(times, i))
            summary.length = 0
            _tb_collect(<dict>result, "", &summary, tags, others, i, 0)
            if not summary.length:
                continue
            step = _tb_step(<dict>result)
            slen = summary.length
            head[0] = 0x09
            memcpy(head + 1, &t, 8)
            head[9] = 0x10
            hlen = 10 + _put_varint(head + 10, <uint64_t>step)
            head[hlen] = 0x2A
            hlen += 1 + _put_varint(head + hlen + 1, <uint64_t>slen)
            elen = hlen + slen
            _buf_reserve(&out, elen + 16)
            p = out.data + out.length
            (<uint64_t*>p)[0] = elen
            _put_masked_crc(p + 8, p, 8)
            memcpy(p + 12, head, hlen)
            memcpy(p + 12 + hlen, summary.data, slen)
            _put_masked_crc(p + 12 + elen, p + 12, elen)
            out.length += elen + 16
        return PyBytes_FromStringAndSize(out.data, out.length), others
    finally:
        PyMem_Free(out.data)
        PyMem_Free(summary.data)


# --------------------------------------------------------------------------
# File batches: a writer thread's commit makes its system calls here without the GIL,
# so the event loop runs meanwhile (they are most of a short trial's file cost).

cdef enum:  # FILE_MKDIR, FILE_REPLACE, FILE_APPEND
    FILE_MKDIR_C = 0
    FILE_REPLACE_C = 1
    FILE_APPEND_C = 2

if (FILE_MKDIR_C, FILE_REPLACE_C, FILE_APPEND_C) != (FILE_MKDIR, FILE_REPLACE, FILE_APPEND):
    raise ImportError("fasttune._core was built against other file op codes than fasttune._core_shared holds; "
                      "rebuild it")


cdef struct _FileOp:
    int kind
    const char* path
    const char* path2  # FILE_REPLACE: the temporary file; FILE_APPEND: the second file or NULL
    const char* data
    Py_ssize_t size
    const char* data2
    Py_ssize_t size2
    int fd
    int fd2
    bint close
    bint make_parent
    int error  # errno of the failure, 0 when the op succeeded
    bint error_names_second  # FILE_APPEND: the failure was the second file's
    bint whole  # FILE_APPEND: the failure was closing a file, after every byte went in
    int cut_error  # FILE_APPEND: why the first file could not be cut back after a failure (0: it was)
    int cut_error2  # the same for the second file


cdef int _mkdirs(const char* path) noexcept nogil:
    """mkdir, making missing parents; 0 or an errno (an existing directory is fine)."""
    cdef Py_ssize_t n, i
    cdef char* copy
    cdef int code
    if mkdir(path, 0o777) == 0 or errno == EEXIST:
        return 0
    if errno != ENOENT:
        return errno
    n = strlen(path)
    copy = <char*>malloc(n + 1)
    if copy == NULL:
        return ENOMEM
    memcpy(copy, path, n + 1)
    code = 0
    for i in range(1, n + 1):
        if copy[i] == b'/' or copy[i] == 0:
            copy[i] = 0
            if mkdir(copy, 0o777) != 0 and errno != EEXIST:
                code = errno
                break
            if i < n:
                copy[i] = b'/'
    free(copy)
    return code


cdef int _open(const char* path, int flags) noexcept nogil:
    """open(2), again when a signal interrupted it (as Python's os.open does)."""
    cdef int fd
    while True:
        fd = posix_open(path, flags, 0o666)
        if fd >= 0 or errno != EINTR:
            return fd


cdef int _cut_back(int fd, Py_ssize_t written) noexcept nogil:
    """Cut the file back by the ``written`` bytes just appended; 0, or the errno of why
    it could not be."""
    cdef int64_t end = lseek(fd, 0, SEEK_CUR)
    if end < 0:
        return errno
    while ftruncate(fd, end - written) != 0:
        if errno != EINTR:
            return errno
    return 0


cdef int _write_all(int fd, const char* data, Py_ssize_t size, int* cut_error) noexcept nogil:
    """Write every byte; on failure cut back what this call wrote (when that fails too,
    its errno goes to ``cut_error``, unless NULL).  0 or an errno."""
    cdef Py_ssize_t done = 0, written
    cdef int code, cut
    while done < size:
        written = write(fd, data + done, size - done)
        if written > 0:
            done += written
            continue
        if written < 0 and errno == EINTR:
            continue
        code = EIO if written == 0 else errno
        if done:
            cut = _cut_back(fd, done)
            if cut_error != NULL:
                cut_error[0] = cut
        return code
    return 0


cdef int _open_append(const char* path, bint make_parent) noexcept nogil:
    """A descriptor, or -errno."""
    cdef int fd = _open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC)
    cdef int code
    cdef char* parent
    cdef Py_ssize_t n
    if fd >= 0:
        return fd
    if errno != ENOENT or not make_parent:
        return -errno
    n = strlen(path)
    while n > 0 and path[n - 1] != b'/':
        n -= 1
    if n <= 1:
        return -ENOENT
    parent = <char*>malloc(n)
    if parent == NULL:
        return -ENOMEM
    memcpy(parent, path, n - 1)
    parent[n - 1] = 0
    code = _mkdirs(parent)
    free(parent)
    if code:
        return -code
    fd = _open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC)
    return fd if fd >= 0 else -errno


cdef int _replace(_FileOp* op) noexcept nogil:
    cdef int fd = _open(op.path2, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC)
    cdef int code
    if fd < 0:
        return errno
    code = _write_all(fd, op.data, op.size, NULL)  # a failure removes the temporary file
    if close(fd) != 0 and code == 0:
        code = errno
    if code == 0 and rename(op.path2, op.path) != 0:
        code = errno
    if code:
        unlink(op.path2)
    return code


cdef int _append_pair(_FileOp* op) noexcept nogil:
    cdef int code = 0, fd
    if op.fd < 0:
        fd = _open_append(op.path, op.make_parent)
        if fd < 0:
            return -fd
        op.fd = fd
        if op.path2 != NULL:
            fd = _open_append(op.path2, op.make_parent)
            if fd < 0:
                close(op.fd)
                op.fd = -1
                op.error_names_second = True
                return -fd
            op.fd2 = fd
    if op.size:
        code = _write_all(op.fd, op.data, op.size, &op.cut_error)
    if code == 0 and op.size2 and op.path2 != NULL:
        code = _write_all(op.fd2, op.data2, op.size2, &op.cut_error2)
        if code:
            op.error_names_second = True
            if op.size:  # both or neither
                op.cut_error = _cut_back(op.fd, op.size)
    if op.close:
        # A file system may report a failed write only when the file closes (NFS does).
        if close(op.fd) != 0 and code == 0:
            code = errno
            op.whole = True
        if op.path2 != NULL and close(op.fd2) != 0 and code == 0:
            code = errno
            op.whole = op.error_names_second = True
        op.fd = op.fd2 = -1
    return code


cdef Py_ssize_t _run_file_ops(_FileOp* ops, Py_ssize_t n) noexcept nogil:
    """Runs ops until one fails; how many ran (the failed one included)."""
    cdef Py_ssize_t i
    cdef _FileOp* op
    for i in range(n):
        op = &ops[i]
        if op.kind == FILE_MKDIR_C:
            op.error = _mkdirs(op.path)
        elif op.kind == FILE_REPLACE_C:
            op.error = _replace(op)
        else:
            op.error = _append_pair(op)
        if op.error:
            return i + 1
    return n



cdef const char* _bytes_at(list keep, object value) except? NULL:
    """The C string of ``value`` (str: its file system encoding), kept alive by ``keep``."""
    if value is None:
        return NULL
    if type(value) is str:
        value = os.fsencode(value)
    keep.append(value)
    return PyBytes_AS_STRING(value)


cdef object _fs_path(object path):
    """The file system bytes of ``path`` when ``check_file_ops`` takes it (a non-empty str
    without NUL that the file system encoding takes), else None."""
    if type(path) is not str or PyUnicode_GET_LENGTH(path) == 0 or "\0" in <str>path:
        return None
    if PyUnicode_IS_ASCII(path):  # the same bytes in any file system encoding Python runs with
        return PyBytes_FromStringAndSize(<const char*>PyUnicode_DATA(path), PyUnicode_GET_LENGTH(path))
    try:
        return os.fsencode(path)
    except UnicodeEncodeError:
        return None


cdef inline bint _fd_in_range(object fd) noexcept:
    """Whether ``fd`` is an int (not a subclass) from -1 up to what a C int holds."""
    cdef int overflow = 0
    cdef long long value
    if type(fd) is not int:
        return False
    value = PyLong_AsLongLongAndOverflow(fd, &overflow)
    return overflow == 0 and -1 <= value <= 0x7FFFFFFF


cdef bint _take_checked_op(object item, list keep, _FileOp* op) except -1:
    """Fill ``op`` from ``item`` when it is an op that ``check_file_ops`` takes, in C (the
    check in Python costs more than a short trial's system calls); False when it may
    not be one (then the caller checks the whole batch there, which raises its errors)."""
    cdef Py_ssize_t size
    cdef object kind, path, path2, fd, fd2, flag, flag2
    if type(item) is not tuple:
        return False
    size = PyTuple_GET_SIZE(item)
    if size == 0:
        return False
    kind = <object>PyTuple_GET_ITEM(item, 0)
    if type(kind) is not int:
        return False
    if kind == FILE_MKDIR_C and size == 2:
        path = _fs_path(<object>PyTuple_GET_ITEM(item, 1))
        if path is None:
            return False
        keep.append(path)
        op.kind = FILE_MKDIR_C
        op.path = PyBytes_AS_STRING(path)
        op.fd = op.fd2 = -1
        return True
    if kind == FILE_REPLACE_C and size == 4:
        data = <object>PyTuple_GET_ITEM(item, 3)
        if type(data) is not bytes:
            return False
        path = _fs_path(<object>PyTuple_GET_ITEM(item, 1))
        if path is None:
            return False
        path2 = _fs_path(<object>PyTuple_GET_ITEM(item, 2))
        if path2 is None:
            return False
        keep.append(path)
        keep.append(path2)
        op.kind = FILE_REPLACE_C
        op.path, op.path2 = PyBytes_AS_STRING(path), PyBytes_AS_STRING(path2)
        op.data, op.size = PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data)
        op.fd = op.fd2 = -1
        return True
    if kind == FILE_APPEND_C and size == 9:
        data, data2 = <object>PyTuple_GET_ITEM(item, 3), <object>PyTuple_GET_ITEM(item, 6)
        fd, fd2 = <object>PyTuple_GET_ITEM(item, 2), <object>PyTuple_GET_ITEM(item, 5)
        flag, flag2 = <object>PyTuple_GET_ITEM(item, 7), <object>PyTuple_GET_ITEM(item, 8)
        if type(data) is not bytes or type(data2) is not bytes or type(flag) is not bool \
                or type(flag2) is not bool or not _fd_in_range(fd) or not _fd_in_range(fd2):
            return False
        path = _fs_path(<object>PyTuple_GET_ITEM(item, 1))
        if path is None:
            return False
        op.fd, op.fd2 = fd, fd2
        second = <object>PyTuple_GET_ITEM(item, 4)
        if second is None:
            path2 = None
            if not (op.fd >= -1 and op.fd2 == -1):  # -1, -1 to open, or one open
                return False
        else:
            path2 = _fs_path(second)
            if path2 is None or not ((op.fd == -1 and op.fd2 == -1) or (op.fd >= 0 and op.fd2 >= 0)):
                return False
            keep.append(path2)
        keep.append(path)
        op.kind = FILE_APPEND_C
        op.path = PyBytes_AS_STRING(path)
        op.path2 = NULL if path2 is None else PyBytes_AS_STRING(path2)
        op.data, op.size = PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data)
        op.data2, op.size2 = PyBytes_AS_STRING(data2), PyBytes_GET_SIZE(data2)
        op.close, op.make_parent = flag is True, flag2 is True
        return True
    return False


def write_file_batch(ops_given):
    if type(ops_given) is not list:
        check_file_ops(ops_given)  # raises the twin's error for what is no list
    # A copy: Python code that runs while the ops are checked (an __eq__ of an odd op
    # kind) cannot swap an op already taken for one that is not checked.
    cdef list ops = list(<list>ops_given)
    cdef Py_ssize_t n = len(ops), i, ran
    cdef _FileOp* cops = <_FileOp*>PyMem_Malloc(max(n, 1) * sizeof(_FileOp))
    cdef _FileOp* op
    cdef list keep = []
    cdef bint checked = False
    if cops == NULL:
        raise MemoryError()
    try:
        memset(cops, 0, max(n, 1) * sizeof(_FileOp))
        for i in range(n):
            item = ops[i]
            keep.append(item)  # its bytes stay alive while the ops run without the GIL
            op = &cops[i]
            if _take_checked_op(item, keep, op):
                continue
            if not checked:
                check_file_ops(ops)  # raises the error of the first malformed op
                checked = True
            # An op check_file_ops takes in a form the C check above does not (a bool kind,
            # a descriptor past a C int): converted as Python converts it.
            memset(op, 0, sizeof(_FileOp))
            item = <tuple>item
            op.kind = item[0]
            op.path = _bytes_at(keep, item[1])
            op.fd = op.fd2 = -1
            if op.kind == FILE_REPLACE_C:
                op.path2 = _bytes_at(keep, item[2])
                op.data, op.size = _bytes_at(keep, item[3]), PyBytes_GET_SIZE(item[3])
            elif op.kind == FILE_APPEND_C:
                op.fd, op.fd2 = item[2], item[5]
                op.data, op.size = _bytes_at(keep, item[3]), PyBytes_GET_SIZE(item[3])
                op.path2 = _bytes_at(keep, item[4])
                op.data2, op.size2 = _bytes_at(keep, item[6]), PyBytes_GET_SIZE(item[6])
                op.close, op.make_parent = item[7], item[8]
        with nogil:
            ran = _run_file_ops(cops, n)
        fds = []
        for i in range(ran):
            op = &cops[i]
            fds.append((op.fd, op.fd2) if op.kind == FILE_APPEND_C else None)
        failure, whole = None, False
        if ran and cops[ran - 1].error:
            op = &cops[ran - 1]
            path = ops[ran - 1][4] if op.kind == FILE_APPEND_C and op.error_names_second else ops[ran - 1][1]
            failure, whole = OSError(op.error, os.strerror(op.error), path), bool(op.whole)
            if op.cut_error or op.cut_error2:
                uncut = [(ops[ran - 1][1], op.cut_error)] if op.cut_error else []
                if op.cut_error2:
                    uncut.append((ops[ran - 1][4], op.cut_error2))
                failure = append_not_cut_back(op.error, path, uncut)
        return fds, failure, whole
    finally:
        PyMem_Free(cops)
