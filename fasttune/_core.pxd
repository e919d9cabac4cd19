# Declarations of fasttune._core's extension types, so that other Cython code
# can reach their C-level state without going through Python attributes.
# The behaviour is specified by fasttune/_core_fallback.py.

from cpython.object cimport PyObject
from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t


cdef struct _Buf:
    # A growable byte buffer: one per output stream, reused across batches.
    char* data
    Py_ssize_t length
    Py_ssize_t capacity


cdef struct _Auto:
    # The automatic fields ResultBuffer._complete put into a result.
    Py_ssize_t n_user            # the user's keys, which come first
    bint in_order                # the user set none of the automatic fields
    PyObject* timestamp          # borrowed from the result
    PyObject* checkpoint
    PyObject* date
    int64_t training_iteration
    int64_t iterations
    double time_this_iter_s
    double time_total_s
    double time_since_restore


cdef class TrialTable:
    cdef Py_ssize_t _n
    cdef Py_ssize_t _capacity
    cdef int _mode_code             # 0: None, 1: "min", 2: "max"
    cdef object _mode
    cdef uint8_t* _status
    cdef int64_t* _iteration
    cdef int32_t* _failures
    cdef double* _last_metric
    cdef double* _best_metric
    cdef double* _time_total
    cdef int32_t* _worker_slot
    # One bitmap per status over all rows: rows(status) is then sorted for free.
    cdef uint64_t* _members[5]
    cdef Py_ssize_t _counts[5]
    cdef Py_ssize_t _held            # rows whose worker slot is not -1

    cdef int _grow(self) except -1
    cdef Py_ssize_t _check_row(self, Py_ssize_t row) except -1
    cdef void _record(self, Py_ssize_t row, int64_t iteration, double time_total_s,
                      double metric) noexcept


cdef class EventSelector:
    cdef bint _start_pending
    cdef Py_ssize_t _cursor
    cdef Py_ssize_t _n_worker_events
    cdef Py_ssize_t _words           # allocated words in each bitmap
    cdef uint64_t* _errors           # bit s: slot s has an EVENT_ERROR pending
    cdef uint64_t* _batches          # bit s: slot s has an EVENT_BATCH pending

    cdef Py_ssize_t _next_from(self, Py_ssize_t slot) noexcept


cdef class Ingested:
    cdef public object results
    cdef public object json_bytes
    cdef public object csv_bytes
    cdef public object stopped
    cdef public object error
    cdef public object metric_values
    cdef Py_ssize_t _done_at[4]      # see Ingested.__cinit__


cdef class _Segment:
    cdef str trial_id
    cdef bytes config_json
    cdef tuple stop
    cdef double start_time
    cdef object hostname
    cdef object node_ip
    cdef object pid
    cdef int64_t base_iteration
    cdef double base_time
    cdef int64_t done_in_segment
    cdef double prev_time
    cdef bytes json_trial_id         # ', "trial_id": ...' for result.json
    cdef bytes json_identity         # ', "pid": ..., "hostname": ..., "node_ip": ...'


cdef class ResultBuffer:
    cdef TrialTable _table
    cdef object _metric
    cdef bint _require_metric        # False: a result without the metric records NaN
    cdef dict _segments
    cdef dict _csv_headers           # row -> (header, index of "done" in it or -1)
    cdef dict _shared_columns        # header -> its one (header, done index) for all rows
    cdef dict _last
    cdef bint _date_valid
    cdef int64_t _date_second
    cdef str _date_text
    cdef _Buf _json
    cdef _Buf _csv
    cdef Py_ssize_t* _spans          # see _json_dict
    cdef Py_ssize_t _spans_capacity

    cdef int _grow_spans(self, Py_ssize_t n) except -1
    cdef str _date(self, double t)
    cdef dict _complete(self, _Segment seg, object metric_dict, double t, object checkpoint,
                        _Auto* auto)
    cdef object _check(self, _Segment seg, object metric_dict, dict r, bint* stop)
    cdef Ingested _ingest(self, Py_ssize_t row, _Segment seg, list metrics, double* t,
                          Py_ssize_t n, object checkpoints)
