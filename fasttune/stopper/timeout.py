"""``TimeoutStopper`` (``ray.tune.stopper.timeout``): ends the experiment after a time budget."""
from __future__ import annotations

import time
from typing import Any, Dict, Optional

from fasttune.stopper.stopper import Stopper


class TimeoutStopper(Stopper):
    """Stops the whole experiment once ``timeout`` seconds have passed."""

    def __init__(self, timeout: Any) -> None:
        seconds = timeout.total_seconds() if hasattr(timeout, "total_seconds") else float(timeout)
        if seconds <= 0:
            raise ValueError(f"TimeoutStopper(timeout) needs a positive duration, got {timeout!r}.")
        self._budget = seconds
        self._start: Optional[float] = None

    def __call__(self, trial_id: str, result: Dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        if self._start is None:
            self._start = time.monotonic()
        return time.monotonic() - self._start >= self._budget

    def get_state(self) -> Optional[Dict[str, Any]]:
        # The time spent so far: a restored experiment gets only what was left.
        return None if self._start is None else {"elapsed": time.monotonic() - self._start}

    def set_state(self, state: Dict[str, Any]) -> None:
        self._start = time.monotonic() - float(state["elapsed"])
