"""A background thread that runs file operations in the order they were handed over.

The result files and the TensorBoard logger write through one each: creating and
appending to files costs more than the rest of the driver's work for a short trial,
and the thread overlaps it with the event loop.
"""
from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Optional, Tuple


class WriterThread:
    """Runs submitted calls in order on one daemon thread, started on first use.

    A call that raises is kept, and surfaces (as an ``OSError`` naming ``what``) on
    the next :meth:`submit` or :meth:`flush`; later calls still run.

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
        self._failure: Optional[BaseException] = None
        self._thread: Optional[threading.Thread] = None

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the thread after everything submitted before."""
        if self._failure is not None:
            self._raise_failure()
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
            except BaseException as exc:  # noqa: BLE001 - surfaced on the caller's next call
                if self._failure is None:
                    self._failure = exc

    def _raise_failure(self) -> None:
        failure = self._failure
        raise OSError(
            f"Writing {self._what} failed ({type(failure).__name__}: {failure}); check "
            "that the storage path is writable and has free space."
        ) from failure

    def flush(self) -> None:
        """Return once every call submitted so far is done."""
        if self._thread is not None:
            done = threading.Event()
            self._tasks.put((done.set, ()))
            done.wait()
        if self._failure is not None:
            self._raise_failure()

    def close(self) -> None:
        """Flush, then stop the thread (a later :meth:`submit` starts a new one)."""
        self.flush()
        if self._thread is not None:
            self._tasks.put(None)
            self._thread.join()
            self._thread = None
