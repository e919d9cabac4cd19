"""A trial's ``stop`` dict checked against one result, where the trial runs: the worker
checks it for a real trial, the simulated executor for a simulated one.

Example:
    >>> from fasttune.execution._stop_criteria import StopCriteria
    >>> rules = StopCriteria({"training_iteration": 3, "acc/best": 0.9})
    >>> rules.reached({"acc": {"best": 0.5}}, iteration=2, since_restore=2, time_total=4.0,
    ...               time_since_restore=4.0, now=100.0, time_this_iter=2.0)
    False
    >>> rules.reached({"acc": {"best": 0.5}}, iteration=3, since_restore=3, time_total=6.0,
    ...               time_since_restore=6.0, now=102.0, time_this_iter=2.0)
    True
"""
from __future__ import annotations

from typing import Any, Dict, Optional

from fasttune._flatten import lookup_nested

__all__ = ["StopCriteria"]


class StopCriteria:
    """``stop``: metric (or automatic field) name -> the threshold that ends the trial
    once a result reaches it (``>=``); a nested name is ``"a/b"``."""

    __slots__ = ("stop",)

    def __init__(self, stop: Optional[Dict[str, Any]]) -> None:
        self.stop = stop or {}

    def __bool__(self) -> bool:
        return bool(self.stop)

    def reached(self, metrics: Dict[str, Any], *, iteration: int, since_restore: int, time_total: float,
                time_since_restore: float, now: float, time_this_iter: float) -> bool:
        """Whether this result ends the trial: it says ``done``, or reaches a threshold.
        The automatic fields are given, as the driver fills them only later."""
        if metrics.get("done"):
            return True
        for key, threshold in self.stop.items():
            value = lookup_nested(metrics, key)
            if value is None:  # only what a stop rule may name; the driver fills the rest
                if key == "training_iteration":
                    value = iteration
                elif key == "iterations_since_restore":
                    value = since_restore
                elif key == "time_total_s":
                    value = time_total
                elif key == "time_since_restore":
                    value = time_since_restore
                elif key == "timestamp":
                    value = int(now)
                elif key == "time_this_iter_s":
                    value = time_this_iter
            try:
                if value is not None and value >= threshold:
                    return True
            except TypeError:
                continue  # the driver reports the ill-typed criterion
        return False
