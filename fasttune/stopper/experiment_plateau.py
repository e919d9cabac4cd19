"""``ExperimentPlateauStopper`` (``ray.tune.stopper.experiment_plateau``): ends the experiment
once the best results of all trials stop moving."""
from __future__ import annotations

import numbers
from typing import Any, Dict, List, Optional

import numpy as np

from fasttune._flatten import lookup_nested
from fasttune.stopper.stopper import Stopper


class ExperimentPlateauStopper(Stopper):
    """Stops the experiment when the ``top`` best values of ``metric`` reported so far (by any
    trial) have had a population standard deviation of at most ``std`` for ``patience``
    results in a row.

    Every result joins the pool of the ``top`` best (``mode="min"``: smallest); the pool has
    plateaued once it is full and its spread is at most ``std``.  A result that leaves it
    plateaued counts one more, one that does not resets the count; the experiment stops
    once the pool has plateaued and the count reaches ``patience`` (so 0 and 1 both stop at
    the first plateaued result, as in Ray Tune).  The result that stops the experiment
    also ends its trial.

    Example:
        >>> from fasttune.stopper import ExperimentPlateauStopper
        >>> stopper = ExperimentPlateauStopper("loss", std=0.01, top=2, mode="min")
        >>> [stopper(trial_id, {"loss": loss}) for trial_id, loss in [("a", 0.5), ("b", 0.3), ("a", 0.305)]]
        [False, False, True]
        >>> stopper.stop_all()
        True
    """

    def __init__(self, metric: str, std: float = 0.001, top: int = 10, mode: str = "min", patience: int = 0) -> None:
        if not isinstance(metric, str):
            raise TypeError(f"ExperimentPlateauStopper(metric) must be a result key (str), got {metric!r}.")
        if mode not in ("min", "max"):
            raise ValueError(f"ExperimentPlateauStopper(mode) must be 'min' or 'max', got {mode!r}.")
        if isinstance(top, bool) or not isinstance(top, int) or top <= 1:
            raise ValueError(f"ExperimentPlateauStopper(top) must be an int greater than 1, got {top!r}.")
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"ExperimentPlateauStopper(patience) must be an int >= 0, got {patience!r}.")
        if isinstance(std, bool) or not isinstance(std, numbers.Real) or not std > 0:
            raise ValueError(f"ExperimentPlateauStopper(std) must be a positive number, got {std!r}.")
        self._metric = metric
        self._std = std
        self._top = top
        self._mode = mode
        self._patience = patience
        self._iterations = 0  # results in a row that left the pool plateaued
        self._top_values: List[Any] = []

    def __call__(self, trial_id: str, result: Dict[str, Any]) -> bool:
        value = lookup_nested(result, self._metric)
        if value is None:
            raise ValueError(
                f"ExperimentPlateauStopper: trial {trial_id} reported a result without the metric "
                f"{self._metric!r} (keys: {sorted(result)}); report it with every result."
            )
        pool = sorted(self._top_values + [value])
        self._top_values = pool[:self._top] if self._mode == "min" else pool[-self._top:]
        self._iterations = self._iterations + 1 if self.has_plateaued() else 0
        return self.stop_all()

    def has_plateaued(self) -> bool:
        """Whether the pool of best values is full and spread by at most ``std``."""
        return len(self._top_values) == self._top and float(np.std(self._top_values)) <= self._std

    def stop_all(self) -> bool:
        return self.has_plateaued() and self._iterations >= self._patience

    def get_state(self) -> Optional[Dict[str, Any]]:
        return {"iterations": self._iterations, "top_values": list(self._top_values)}

    def set_state(self, state: Dict[str, Any]) -> None:
        self._iterations = state["iterations"]
        self._top_values = list(state["top_values"])
