"""A background thread that runs file operations in the order they were handed over.

The result files and the TensorBoard logger write through one each: creating and
appending to files costs more than the rest of the driver's work for a short trial,
and the thread overlaps it with the event loop.
"""
from __future__ import annotations

import errno
import queue
import threading
from typing import Any, Callable, Optional, Tuple


# Write errors that mean the storage is full, not broken: freeing space and restoring
# the experiment continues it.
_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class WriterThread:
    """Runs submitted calls in order on one daemon thread, started on first use.

    A call that raises is kept, and surfaces once (as an ``OSError`` naming ``what``
    and the file) on the next :meth:`check` or :meth:`flush`; later calls still run, and
    :attr:`failure` keeps it for whoever winds down after it.

    Example:
        >>> lines = []
        >>> writer = WriterThread("example lines")
        >>> writer.submit(lines.append, "a")
        >>> writer.flush(); lines
        ['a']
        >>> writer.close()
    """

    def __init__(self, what: str, thread_name: str = "fasttune-files") -> None:
        self._what = what
        self._thread_name = thread_name
        self._tasks: "queue.SimpleQueue[Optional[Tuple[Callable[..., Any], tuple]]]" = queue.SimpleQueue()
        self.failure: Optional[BaseException] = None  # the first call that raised
        self._reported = False
        self._thread: Optional[threading.Thread] = None

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the thread after everything submitted before."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._drain, name=self._thread_name, daemon=True)
            self._thread.start()
        self._tasks.put((fn, args))

    def _drain(self) -> None:
        while True:
            task = self._tasks.get()
            if task is None:
                return
            fn, args = task
            try:
                fn(*args)
            except BaseException as exc:  # noqa: BLE001 - surfaced on the caller's next check
                if self.failure is None:
                    self.failure = exc

    def check(self) -> None:
        """Raise a failure of a call that ran so far, the first time it is seen (cheap:
        waits for nothing)."""
        if self.failure is not None and not self._reported:
            self._reported = True
            failure = self.failure
            if isinstance(failure, OSError) and failure.errno in _NO_ROOM:
                advice = ("the storage is full or the file reached its size limit: free space (or raise the "
                          "limit) and continue the experiment with Tuner.restore(); what was written is kept.")
            else:
                advice = "check that the storage path is writable and has free space."
            error = OSError(f"Writing {self._what} failed ({type(failure).__name__}: {failure}); {advice}")
            error.errno = getattr(failure, "errno", None)
            raise error from failure

    def wait(self) -> None:
        """Return once every call submitted so far is done (a failure waits for :meth:`check`)."""
        if self._thread is not None:
            done = threading.Event()
            self._tasks.put((done.set, ()))
            done.wait()

    def flush(self) -> None:
        """Return once every call submitted so far is done (raising as :meth:`check`)."""
        self.wait()
        self.check()

    def close(self) -> None:
        """Flush, then stop the thread (a later :meth:`submit` starts a new one); the
        thread stops also when the flush raises."""
        try:
            self.flush()
        finally:
            if self._thread is not None:
                self._tasks.put(None)
                self._thread.join()
                self._thread = None
