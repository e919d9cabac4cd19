"""The event core that the rest of fasttune uses: compiled when possible.

``fasttune._core`` (Cython) and ``fasttune._core_fallback`` (pure Python, the
specification) have the same interface and behaviour; this module picks one and
re-exports its names.  The constants and exception classes come from
``fasttune._core_shared``, which both cores import.  Set ``FASTTUNE_PUREPYTHON=1``
to force the pure-Python twin.  If the compiled module is missing, the twin is
used with a ``RuntimeWarning``, because everything still works, only slower.

Everything else in fasttune imports the core from here, never directly.

Example:
    >>> from fasttune import _corelib as core
    >>> core.IMPLEMENTATION in ("compiled", "python")
    True
    >>> core.STATUS_NAMES[core.RUNNING]
    'RUNNING'
"""
import os
import warnings

# Constants and exception classes are the same objects whichever core is picked.
from fasttune._core_shared import (
    ERROR, EVENT_BATCH, EVENT_ERROR, EVENT_START, FILE_APPEND, FILE_MKDIR, FILE_REPLACE, MAX_WORKER_SLOT,
    PAUSED, PENDING, RUNNING,
    SNAPSHOT_VERSION, STATUS_NAMES, TB_SKIPPED_KEYS, TERMINATED, AppendNotCutBack, CorruptSnapshot,
    IllegalTransition,
)

if os.environ.get("FASTTUNE_PUREPYTHON", "") not in ("", "0"):
    from fasttune import _core_fallback as _impl

    IMPLEMENTATION = "python"
else:
    try:
        from fasttune import _core as _impl

        IMPLEMENTATION = "compiled"
    except ImportError as exc:
        warnings.warn(
            f"fasttune's compiled core could not be imported ({exc}); using the much slower "
            "pure-Python core. Build it with `pip install -e .` (or `python setup.py "
            "build_ext --inplace`) in the fasttune source tree; set FASTTUNE_PUREPYTHON=1 "
            "to choose the pure-Python core without this warning.",
            RuntimeWarning,
            stacklevel=2,
        )
        from fasttune import _core_fallback as _impl

        IMPLEMENTATION = "python"

TrialTable = _impl.TrialTable
EventSelector = _impl.EventSelector
ResultBuffer = _impl.ResultBuffer
Ingested = _impl.Ingested
crc32c = _impl.crc32c
tfrecord = _impl.tfrecord
tb_scalar_events = _impl.tb_scalar_events
tb_file_version_record = _impl.tb_file_version_record
tb_hparams_records = _impl.tb_hparams_records
write_file_batch = _impl.write_file_batch
metric_number = _impl.metric_number

__all__ = [
    "IMPLEMENTATION", "PENDING", "RUNNING", "PAUSED", "TERMINATED", "ERROR", "STATUS_NAMES",
    "SNAPSHOT_VERSION", "EVENT_START", "EVENT_BATCH", "EVENT_ERROR", "MAX_WORKER_SLOT",
    "IllegalTransition", "CorruptSnapshot", "TrialTable", "EventSelector", "ResultBuffer",
    "Ingested", "crc32c", "tfrecord", "tb_scalar_events", "tb_file_version_record", "tb_hparams_records",
    "TB_SKIPPED_KEYS",
    "FILE_MKDIR", "FILE_REPLACE", "FILE_APPEND", "write_file_batch", "AppendNotCutBack", "metric_number",
]
