"""``MaximumIterationStopper`` (``ray.tune.stopper.maximum_iteration``)."""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Dict, Optional

from fasttune.stopper.stopper import Stopper


class MaximumIterationStopper(Stopper):
    """Stops each trial after ``max_iter`` results."""

    def __init__(self, max_iter: int) -> None:
        if int(max_iter) < 1:
            raise ValueError(f"MaximumIterationStopper(max_iter) needs max_iter >= 1, got {max_iter}.")
        self._max_iter = int(max_iter)
        self._iterations: Dict[str, int] = defaultdict(int)

    def __call__(self, trial_id: str, result: Dict[str, Any]) -> bool:
        self._iterations[trial_id] += 1
        return self._iterations[trial_id] >= self._max_iter

    def stop_all(self) -> bool:
        return False

    def get_state(self) -> Optional[Dict[str, Any]]:
        return {"iterations": dict(self._iterations)}

    def set_state(self, state: Dict[str, Any]) -> None:
        self._iterations = defaultdict(int, state["iterations"])
