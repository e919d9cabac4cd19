"""``BackgroundCall``: one function call run on its own thread, off the event loop.

``SearchGenerator`` runs each ``Searcher.suggest`` this way so that a slow
searcher never stalls the trial runner's handling of worker events.  A call is
one short-lived daemon thread: nothing is left running once the call returns
(no pool to shut down), and a call that never returns cannot keep the
interpreter from exiting.  Starting a thread costs tens of microseconds, far
below what any real ``suggest`` costs.

Example:
    >>> from fasttune.search._background import BackgroundCall
    >>> call = BackgroundCall(sum, [1, 2, 3])
    >>> call.join(timeout=10)
    True
    >>> call.result()
    6
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Optional

__all__ = ["BackgroundCall"]


class BackgroundCall:
    """Runs ``fn(*args)`` on a new daemon thread, started at once.

    ``done`` is set when the call has returned or raised; only then may
    :meth:`result` be called (the Event's lock orders the thread's writes
    before the reader's reads).
    """

    __slots__ = ("done", "_fn", "_args", "_value", "_error", "_thread")

    def __init__(self, fn: Callable[..., Any], *args: Any, name: str = "fasttune-background") -> None:
        self.done = threading.Event()
        self._fn = fn
        self._args = args
        self._value: Any = None
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._fn(*self._args)
        except BaseException as exc:  # noqa: BLE001 - handed to the reader, raised there
            self._error = exc
        finally:
            self._fn = self._args = None  # drop references the caller may want freed
            self.done.set()

    def join(self, timeout: Optional[float] = None) -> bool:
        """Waits for the call (at most ``timeout`` seconds); True when it has finished."""
        if not self.done.wait(timeout):
            return False
        self._thread.join()  # returns at once: the thread only has to exit
        return True

    def result(self) -> Any:
        """What the call returned; re-raises (the same object) what it raised."""
        if not self.done.is_set():
            raise RuntimeError("BackgroundCall.result() was called before the call finished.")
        if self._error is not None:
            raise self._error
        return self._value

    @property
    def thread(self) -> threading.Thread:
        """The thread running the call (for tests and diagnostics)."""
        return self._thread
