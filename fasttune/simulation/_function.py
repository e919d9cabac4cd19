"""A blackbox defined by a Python function: for surrogate models and synthetic problems.

Example:
    >>> from fasttune.search.sample import uniform
    >>> def decaying(config, epoch):
    ...     return {"loss": config["x"] ** 2 + 1.0 / epoch}, 0.5
    >>> blackbox = FunctionBlackbox(decaying, {"x": uniform(-1, 1)}, range(1, 5), ["loss"])
    >>> blackbox.evaluate({"x": 0.5}, 2)
    ({'loss': 0.75}, 0.5)
    >>> blackbox.max_fidelity
    4
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Sequence, Tuple

from fasttune.simulation._blackbox import Blackbox

__all__ = ["FunctionBlackbox"]


class FunctionBlackbox(Blackbox):
    """Wraps ``fn(config, fidelity) -> (metrics, seconds)``.

    ``metrics`` is a dict holding at least ``metric_names`` (numbers), ``seconds`` the
    simulated time of that step (not cumulative, >= 0).  A result without a metric or with
    negative seconds is an error naming the config and fidelity.  ``curve`` calls ``fn``
    once per fidelity; a subclass with a vectorised formula can override it.
    """

    def __init__(
        self,
        fn: Callable[[Dict[str, Any], Any], Tuple[Mapping[str, float], float]],
        search_space: Mapping[str, Any],
        fidelities: Sequence[Any],
        metric_names: Sequence[str],
        fidelity_name: str = "epoch",
    ) -> None:
        if not callable(fn):
            raise TypeError(f"fn must be callable as fn(config, fidelity), got {fn!r}")
        super().__init__(search_space, fidelity_name, fidelities, metric_names)
        self.fn = fn

    def evaluate(self, config: Mapping[str, Any], fidelity: Any) -> Tuple[Dict[str, float], float]:
        self.fidelity_position(fidelity)
        answer = self.fn(config, fidelity)
        try:
            metrics, seconds = answer
        except (TypeError, ValueError):
            raise TypeError(
                f"{self._name()} must return (metrics, seconds); it returned {answer!r} "
                f"for config {dict(config)!r} at {self.fidelity_name}={fidelity!r}"
            ) from None
        missing = [name for name in self.metric_names if name not in metrics]
        if missing:
            raise ValueError(
                f"{self._name()} returned no {missing} for config {dict(config)!r} at "
                f"{self.fidelity_name}={fidelity!r} (it returned {sorted(metrics)})"
            )
        seconds = float(seconds)
        if not seconds >= 0:  # (also refuses NaN)
            raise ValueError(
                f"{self._name()} returned {seconds!r} seconds for config {dict(config)!r} at "
                f"{self.fidelity_name}={fidelity!r}; a step takes zero or more seconds"
            )
        return {name: float(metrics[name]) for name in self.metric_names}, seconds

    def _name(self) -> str:
        return f"the blackbox function {getattr(self.fn, '__qualname__', repr(self.fn))}"
