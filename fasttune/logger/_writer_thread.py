"""A background thread that runs file operations in the order they were handed over.

The result files and the TensorBoard logger write through one each: creating and
appending to files costs more than the rest of the driver's work for a short trial,
and the thread overlaps it with the event loop.  Waking a thread and handing the GIL
back and forth costs more CPU than a small write, so a writer may take its calls in
batches (``linger_s``): woken by a call, it waits that long for more, runs all that
came, then ``commit`` (where calls that only staged their bytes write each file once).
A writer that falls behind (a loaded machine, slow storage) makes the caller wait once
:data:`MAX_PENDING_CALLS` calls are queued: what is queued holds each trial's rows and
paths, so an unbounded queue grows the driver by kilobytes a trial.
"""
from __future__ import annotations

import errno
import queue
import threading
from typing import Any, Callable, Optional, Tuple


# Write errors that mean the storage is full, not broken: freeing space and restoring
# the experiment continues it.
_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})

# Calls queued past which a submit waits for the thread to catch up: a few megabytes of
# rows and paths, and seconds of a writer's work.
MAX_PENDING_CALLS = 10_000


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

    def __init__(self, what: str, thread_name: str = "fasttune-files", linger_s: float = 0.0,
                 commit: Optional[Callable[[], Any]] = None, max_pending: int = MAX_PENDING_CALLS) -> None:
        """``linger_s``: once woken, wait this long for more calls before running them (a
        :meth:`wait`, :meth:`flush` or :meth:`close` cuts it short); ``commit``: called
        after each batch of calls, and before a :meth:`wait` returns (a failure in it is
        kept as a call's); ``max_pending``: a submit that finds this many calls queued
        first waits for them all to run."""
        self._what = what
        self._thread_name = thread_name
        self._tasks: "queue.SimpleQueue[Optional[Tuple[Callable[..., Any], tuple]]]" = queue.SimpleQueue()
        self.failure: Optional[BaseException] = None  # the first call that raised
        self._reported = False
        self._thread: Optional[threading.Thread] = None
        self._linger_s = linger_s
        self._commit = commit
        self._hurry = threading.Event()  # set by a caller waiting for the thread: no lingering
        self._max_pending = max_pending

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the thread after everything submitted before."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._drain, name=self._thread_name, daemon=True)
            self._thread.start()
        elif self._tasks.qsize() >= self._max_pending and threading.current_thread() is not self._thread:
            self.wait()  # the writer is behind: let it catch up rather than queue without bound
        self._tasks.put((fn, args))

    def _drain(self) -> None:
        tasks, hurry, commit = self._tasks, self._hurry, self._commit
        uncommitted = False  # calls ran since the last commit
        while True:
            task = tasks.get()
            if self._linger_s and not hurry.is_set():
                hurry.wait(self._linger_s)
            hurry.clear()  # a waiter's marker was queued before it set this: it is in this batch
            while True:
                if task is None or task[0] is _done:
                    if uncommitted and commit is not None:
                        self._run(commit, ())  # what was staged is written before the waiter goes on
                    uncommitted = False
                    if task is None:
                        return
                else:
                    uncommitted = True
                self._run(*task)
                try:
                    task = tasks.get_nowait()
                except queue.Empty:
                    break
            if uncommitted and commit is not None:
                self._run(commit, ())
            uncommitted = False

    def _run(self, fn: Callable[..., Any], args: tuple) -> None:
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
            self._tasks.put((_done, (done,)))
            self._hurry.set()
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
                self._hurry.set()
                self._thread.join()
                self._thread = None


def _done(event: threading.Event) -> None:
    """The marker a waiter queues: everything before it has run."""
    event.set()
