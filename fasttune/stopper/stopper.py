"""The stopper interface (``ray.tune.stopper.stopper``) and :class:`CombinedStopper`."""
from __future__ import annotations

from typing import Any, Dict, Optional


class Stopper:
    """Base class: ``__call__(trial_id, result)`` ends one trial, ``stop_all()`` all.

    Example:
        >>> from fasttune import Stopper
        >>> class AfterTen(Stopper):
        ...     def __call__(self, trial_id, result):
        ...         return result["training_iteration"] >= 10
        ...     def stop_all(self):
        ...         return False
    """

    def __call__(self, trial_id: str, result: Dict[str, Any]) -> bool:
        raise NotImplementedError

    def stop_all(self) -> bool:
        raise NotImplementedError

    def get_state(self) -> Optional[Dict[str, Any]]:
        """State to keep in experiment snapshots (None: nothing), handed to
        :meth:`set_state` when the experiment is restored."""
        return None

    def set_state(self, state: Dict[str, Any]) -> None:
        pass


class CombinedStopper(Stopper):
    """Stops when any of the given stoppers would."""

    def __init__(self, *stoppers: Stopper) -> None:
        self._stoppers = stoppers

    def __call__(self, trial_id: str, result: Dict[str, Any]) -> bool:
        return any([s(trial_id, result) for s in self._stoppers])

    def stop_all(self) -> bool:
        return any([s.stop_all() for s in self._stoppers])

    def get_state(self) -> Optional[Dict[str, Any]]:
        states = [s.get_state() for s in self._stoppers]
        return {"stoppers": states} if any(state is not None for state in states) else None

    def set_state(self, state: Dict[str, Any]) -> None:
        for stopper, saved in zip(self._stoppers, state["stoppers"]):
            if saved is not None:
                stopper.set_state(saved)
