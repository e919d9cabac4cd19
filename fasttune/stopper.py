"""Stoppers: rules that end trials, or the whole experiment, from their results.

A plain ``stop={"training_iteration": 10}`` dict travels to the worker, so a trial stops
exactly at its threshold without a round trip.  A :class:`Stopper` runs in the driver
and may see every trial; trials then wait for it after every result.
"""
from __future__ import annotations

import time
from collections import defaultdict
from typing import Any, Callable, Dict, Optional


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


class NoopStopper(Stopper):
    def __call__(self, trial_id: str, result: Dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        return False


class FunctionStopper(Stopper):
    """Wraps ``fn(trial_id, result) -> bool``."""

    def __init__(self, function: Callable[[str, Dict[str, Any]], bool]) -> None:
        if not callable(function):
            raise TypeError(f"FunctionStopper needs a callable, got {type(function).__name__}.")
        self._fn = function

    def __call__(self, trial_id: str, result: Dict[str, Any]) -> bool:
        return bool(self._fn(trial_id, result))

    def stop_all(self) -> bool:
        return False


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


__all__ = [
    "Stopper",
    "NoopStopper",
    "FunctionStopper",
    "CombinedStopper",
    "MaximumIterationStopper",
    "TimeoutStopper",
]
