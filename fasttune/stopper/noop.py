"""``NoopStopper`` (``ray.tune.stopper.noop``): never stops anything."""
from __future__ import annotations

from typing import Any, Dict

from fasttune.stopper.stopper import Stopper


class NoopStopper(Stopper):
    def __call__(self, trial_id: str, result: Dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        return False
