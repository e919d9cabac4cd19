"""The base of every blackbox: what one simulated trial needs to know about its problem.

A blackbox answers "what would this configuration report at this fidelity, and how long
would that step have taken": ``evaluate(config, fidelity) -> (metrics, seconds)``, where
``seconds`` is the simulated time of that one step (not cumulative).  ``curve(config)``
answers the same for every fidelity at once, as numpy arrays, which is what a simulator
running millions of steps should call once per trial.  A subclass defines either one; the
base class derives the other.

Example:
    >>> import numpy as np
    >>> class Halving(Blackbox):
    ...     def __init__(self):
    ...         super().__init__({"x": 1.0}, "epoch", [1, 2, 3], ["loss"])
    ...     def evaluate(self, config, fidelity):
    ...         return {"loss": config["x"] / fidelity}, 2.0
    >>> metrics, step_seconds = Halving().curve({"x": 6.0})
    >>> metrics["loss"].tolist(), step_seconds.tolist()
    ([6.0, 3.0, 2.0], [2.0, 2.0, 2.0])
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Sequence, Tuple

import numpy as np

__all__ = ["Blackbox"]

Metrics = Dict[str, float]
Curve = Tuple[Dict[str, np.ndarray], np.ndarray]


class Blackbox:
    """A problem a simulated trial runs: its search space, fidelities and metrics.

    Args:
        search_space: a fasttune search-space dict, usable as ``Tuner(param_space=...)``.
        fidelity_name: the name of the fidelity (``"epoch"``): what a trial reports it at
            and what schedulers count (their ``time_attr``).
        fidelities: the fidelity values a trial goes through, strictly increasing.
        metric_names: the metrics each step reports.

    Subclasses override :meth:`evaluate` or :meth:`curve` (or both, for speed).
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.evaluate is Blackbox.evaluate and cls.curve is Blackbox.curve:
            raise TypeError(f"{cls.__name__} must define evaluate(config, fidelity) or curve(config)")

    def __init__(
        self,
        search_space: Mapping[str, Any],
        fidelity_name: str,
        fidelities: Sequence[Any],
        metric_names: Sequence[str],
    ) -> None:
        if not isinstance(fidelity_name, str) or not fidelity_name:
            raise ValueError(f"fidelity_name must be a non-empty string, got {fidelity_name!r}")
        fidelity_values = np.asarray(fidelities)
        if fidelity_values.ndim != 1 or fidelity_values.size == 0:
            raise ValueError(f"fidelities must be a non-empty sequence of values, got {fidelities!r}")
        if not np.all(np.diff(fidelity_values) > 0):
            raise ValueError(f"fidelities must be strictly increasing, got {fidelity_values.tolist()}")
        metric_names = list(metric_names)
        if not metric_names or not all(isinstance(name, str) for name in metric_names):
            raise ValueError(f"metric_names must be a non-empty list of strings, got {metric_names!r}")
        if len(set(metric_names)) != len(metric_names):
            raise ValueError(f"metric_names has duplicates: {metric_names}")
        if fidelity_name in metric_names:
            raise ValueError(f"the fidelity '{fidelity_name}' cannot also be a metric")
        self.search_space: Dict[str, Any] = dict(search_space)
        self.fidelity_name = fidelity_name
        self.fidelities: np.ndarray = fidelity_values
        self.metric_names = metric_names
        # Fidelity value -> its position in a curve, for evaluate's O(1) lookup.
        self._fidelity_position: Dict[Any, int] = {value: i for i, value in enumerate(fidelity_values.tolist())}

    @property
    def max_fidelity(self) -> Any:
        """The last fidelity a trial can reach (ASHA's ``max_t``)."""
        return self.fidelities[-1].item()

    def fidelity_position(self, fidelity: Any) -> int:
        """The index of ``fidelity`` in :attr:`fidelities` (and in a curve's arrays)."""
        try:
            return self._fidelity_position[fidelity]
        except (KeyError, TypeError):
            raise ValueError(
                f"{self.fidelity_name}={fidelity!r} is not one of this blackbox's fidelities "
                f"({self.fidelities[0].item()!r} .. {self.max_fidelity!r}, {len(self.fidelities)} values)"
            ) from None

    def evaluate(self, config: Mapping[str, Any], fidelity: Any) -> Tuple[Metrics, float]:
        """The metrics ``config`` reports at ``fidelity``, and the simulated seconds that
        step took (the step alone, not the time since the trial started)."""
        position = self.fidelity_position(fidelity)
        metrics, step_seconds = self.curve(config)
        return {name: float(values[position]) for name, values in metrics.items()}, float(step_seconds[position])

    def curve(self, config: Mapping[str, Any]) -> Curve:
        """The whole learning curve of ``config``: each metric as an array over
        :attr:`fidelities`, and the simulated seconds of each step."""
        columns: Dict[str, list] = {name: [] for name in self.metric_names}
        seconds = []
        for fidelity in self.fidelities.tolist():
            metrics, step_seconds = self.evaluate(config, fidelity)
            for name in self.metric_names:
                columns[name].append(metrics[name])
            seconds.append(step_seconds)
        return {name: np.asarray(values, dtype=float) for name, values in columns.items()}, np.asarray(seconds, dtype=float)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.fidelity_name}={self.fidelities[0].item()!r}..{self.max_fidelity!r}, "
            f"metrics={self.metric_names})"
        )
