"""What a step's wait for workers can also be woken by: a background suggestion that is
ready, and a TuneServer request."""
from __future__ import annotations

import threading
import time
from typing import Any, Dict, Optional

# With a worker-less wait on two wake Events, how often the second one is looked at.
_EITHER_WAKE_SLICE_S = 0.02
# The longest a step waits for a background suggestion before the loop looks again (so
# Ctrl-C and callbacks are never held up by a searcher that hangs).
_MAX_SUGGESTION_WAIT_S = 1.0
# The longest a step waits for workers or a TuneServer request (so the time budget and
# Ctrl-C are seen as without a server), and how often it looks for a (rare) request.
_SERVER_WAIT_S = 0.5
_SERVER_POLL_S = 0.02


def wake_sources(suggestion: Optional[threading.Event], server: Optional[threading.Event],
                 deadline: Optional[float]) -> Dict[str, Any]:
    """The ``wake``, ``timeout`` and ``wake_poll_s`` arguments of the executor's wait:
    it also ends when a background ``suggestion`` is ready (waited for at most a second,
    and not past ``deadline``, a ``time.monotonic()`` value: the time budget or the stop's
    grace), or when the TuneServer has a request (``server``)."""
    wake: Any = suggestion
    timeout = poll = None
    if suggestion is not None:
        timeout = _MAX_SUGGESTION_WAIT_S
        if deadline is not None:
            timeout = max(0.0, min(timeout, deadline - time.monotonic()))
    if server is not None:
        if wake is None:
            wake, timeout, poll = server, _SERVER_WAIT_S, _SERVER_POLL_S
        else:
            wake = EitherEvent(suggestion, server)
    return {"wake": wake, "timeout": timeout, "wake_poll_s": poll}


class EitherEvent:
    """Set when either of two Events is: the executor's ``wake`` when a background
    suggestion and the TuneServer's requests may both wake the loop."""

    __slots__ = ("_first", "_second")

    def __init__(self, first: threading.Event, second: threading.Event) -> None:
        self._first, self._second = first, second

    def is_set(self) -> bool:
        return self._first.is_set() or self._second.is_set()

    def wait(self, timeout: Optional[float] = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            step = _EITHER_WAKE_SLICE_S if deadline is None else min(_EITHER_WAKE_SLICE_S, deadline - time.monotonic())
            if step <= 0:
                return False
            self._first.wait(step)
        return True
