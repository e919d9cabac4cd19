"""``TrialPlateauStopper`` (``ray.tune.stopper.trial_plateau``): ends a trial whose metric stalled."""
from __future__ import annotations

import math
from collections import defaultdict, deque
from typing import Any, Deque, Dict, Optional

import numpy as np

from fasttune._flatten import lookup_nested
from fasttune.stopper.stopper import Stopper


class TrialPlateauStopper(Stopper):
    """Stops a trial once the population standard deviation of its last ``num_results``
    values of ``metric`` is below ``std``.

    A trial is never stopped before its ``grace_period``-th result, nor before it has
    ``num_results`` results.  With ``metric_threshold``, the latest value must also be at
    or past it (``mode="min"``: at most the threshold; ``"max"``: at least).  A result
    without the metric counts as a result but keeps the trial going while it is in the
    window (as in Ray Tune, where its standard deviation cannot be computed).

    Example:
        >>> from fasttune.stopper import TrialPlateauStopper
        >>> stopper = TrialPlateauStopper("loss", std=0.01, num_results=3, grace_period=3)
        >>> [stopper("t1", {"loss": loss}) for loss in (0.9, 0.5, 0.3, 0.301, 0.302)]
        [False, False, False, False, True]
    """

    def __init__(
        self,
        metric: str,
        std: float = 0.01,
        num_results: int = 4,
        grace_period: int = 4,
        metric_threshold: Optional[float] = None,
        mode: Optional[str] = None,
    ) -> None:
        if not isinstance(metric, str):
            raise TypeError(f"TrialPlateauStopper(metric) must be a result key (str), got {metric!r}.")
        if mode not in (None, "min", "max"):
            raise ValueError(f"TrialPlateauStopper(mode) must be 'min', 'max' or None, got {mode!r}.")
        if metric_threshold is not None and mode is None:
            raise ValueError(
                "TrialPlateauStopper(metric_threshold=...) needs mode='min' (stop only at or below the "
                "threshold) or mode='max' (only at or above it)."
            )
        if isinstance(num_results, bool) or not isinstance(num_results, int) or num_results < 1:
            raise ValueError(f"TrialPlateauStopper(num_results) must be an int >= 1, got {num_results!r}.")
        self._metric = metric
        self._std = std
        self._num_results = num_results
        self._grace_period = grace_period
        self._metric_threshold = metric_threshold
        self._mode = mode
        self._iterations: Dict[str, int] = defaultdict(int)
        self._windows: Dict[str, Deque[Any]] = defaultdict(self._new_window)

    def _new_window(self, values: Any = ()) -> Deque[Any]:
        return deque(values, maxlen=self._num_results)

    def __call__(self, trial_id: str, result: Dict[str, Any]) -> bool:
        value = lookup_nested(result, self._metric)
        window = self._windows[trial_id]
        window.append(value)
        self._iterations[trial_id] += 1
        if self._iterations[trial_id] < self._grace_period or len(window) < self._num_results:
            return False
        if self._metric_threshold is not None and not self._past_threshold(value):
            return False
        try:
            spread = float(np.std(window))
        except TypeError:  # a missing or non-numeric value in the window
            spread = math.inf
        return spread < self._std

    def _past_threshold(self, value: Any) -> bool:
        try:
            if self._mode == "min":
                return bool(value <= self._metric_threshold)
            return bool(value >= self._metric_threshold)
        except TypeError:  # no value (or a non-number) is not past any threshold
            return False

    def stop_all(self) -> bool:
        return False

    def get_state(self) -> Optional[Dict[str, Any]]:
        return {
            "iterations": dict(self._iterations),
            # (snapshots carry numpy scalars as they are: a restored window has the same spread)
            "windows": {trial_id: list(window) for trial_id, window in self._windows.items()},
        }

    def set_state(self, state: Dict[str, Any]) -> None:
        self._iterations = defaultdict(int, state["iterations"])
        self._windows = defaultdict(self._new_window,
                                    {trial_id: self._new_window(values) for trial_id, values in state["windows"].items()})
