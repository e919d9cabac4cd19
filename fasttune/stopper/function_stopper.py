"""``FunctionStopper`` (``ray.tune.stopper.function_stopper``): a plain function as a stopper."""
from __future__ import annotations

from typing import Any, Callable, Dict

from fasttune.stopper.stopper import Stopper


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

    @classmethod
    def is_valid_function(cls, fn: Any) -> bool:
        """Whether ``fn`` is a plain callable to wrap (a :class:`Stopper` is not).

        A callable with a ``stop_all`` method that does not subclass Stopper is refused:
        wrapped as a function, its ``stop_all`` would silently never be asked.

        Example:
            >>> from fasttune.stopper import FunctionStopper, NoopStopper
            >>> FunctionStopper.is_valid_function(lambda trial_id, result: False)
            True
            >>> FunctionStopper.is_valid_function(NoopStopper()), FunctionStopper.is_valid_function(3)
            (False, False)
        """
        is_function = callable(fn) and not isinstance(fn, Stopper)
        if is_function and hasattr(fn, "stop_all"):
            raise ValueError(
                f"The stop object {type(fn).__name__} has a stop_all() method but does not subclass "
                "fasttune.Stopper (ray.tune.Stopper); subclass it so that stop_all() is asked."
            )
        return is_function
