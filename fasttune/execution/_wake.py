"""What a step's wait for workers can also be woken by: a background suggestion that is
ready, and a TuneServer request."""
from __future__ import annotations

import threading
import time
from typing import Optional

# With a worker-less wait on two wake Events, how often the second one is looked at.
_EITHER_WAKE_SLICE_S = 0.02


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
