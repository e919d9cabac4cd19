"""The event core that the rest of fasttune uses: compiled when possible.

``fasttune._core`` (Cython) and ``fasttune._core_fallback`` (pure Python, the
specification) have the same interface and behaviour; this module picks one and
re-exports its names.  Set ``FASTTUNE_PUREPYTHON=1`` to force the pure-Python
twin.  If the compiled module is missing, the twin is used with a
``RuntimeWarning``, because everything still works, only slower.

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

PENDING = _impl.PENDING
RUNNING = _impl.RUNNING
PAUSED = _impl.PAUSED
TERMINATED = _impl.TERMINATED
ERROR = _impl.ERROR
STATUS_NAMES = _impl.STATUS_NAMES
SNAPSHOT_VERSION = _impl.SNAPSHOT_VERSION
EVENT_START = _impl.EVENT_START
EVENT_BATCH = _impl.EVENT_BATCH
EVENT_ERROR = _impl.EVENT_ERROR
MAX_WORKER_SLOT = _impl.MAX_WORKER_SLOT
IllegalTransition = _impl.IllegalTransition
CorruptSnapshot = _impl.CorruptSnapshot
TrialTable = _impl.TrialTable
EventSelector = _impl.EventSelector
ResultBuffer = _impl.ResultBuffer
Ingested = _impl.Ingested
crc32c = _impl.crc32c
tfrecord = _impl.tfrecord
tb_scalar_events = _impl.tb_scalar_events
TB_SKIPPED_KEYS = _impl.TB_SKIPPED_KEYS

__all__ = [
    "IMPLEMENTATION", "PENDING", "RUNNING", "PAUSED", "TERMINATED", "ERROR", "STATUS_NAMES",
    "SNAPSHOT_VERSION", "EVENT_START", "EVENT_BATCH", "EVENT_ERROR", "MAX_WORKER_SLOT",
    "IllegalTransition", "CorruptSnapshot", "TrialTable", "EventSelector", "ResultBuffer",
    "Ingested", "crc32c", "tfrecord", "tb_scalar_events", "TB_SKIPPED_KEYS",
]
