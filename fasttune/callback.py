"""Callbacks: hooks into the experiment loop (``ray.tune.callback``)."""
from __future__ import annotations

from typing import Any, Dict, List, Optional


class Callback:
    """Override the hooks you need; fasttune calls only the hooks a callback overrides,
    so an unused per-result hook costs nothing at 100,000 results/s.

    Example:
        >>> from fasttune import Callback
        >>> class PrintCompleted(Callback):
        ...     def on_trial_complete(self, iteration, trials, trial, **info):
        ...         print("done:", trial)
    """

    def setup(self, stop: Any = None, num_samples: Optional[int] = None, total_num_samples: Optional[int] = None, **info: Any) -> None:
        pass

    def on_step_begin(self, iteration: int, trials: List[Any], **info: Any) -> None:
        pass

    def on_step_end(self, iteration: int, trials: List[Any], **info: Any) -> None:
        pass

    def on_trial_start(self, iteration: int, trials: List[Any], trial: Any, **info: Any) -> None:
        pass

    def on_trial_restore(self, iteration: int, trials: List[Any], trial: Any, **info: Any) -> None:
        pass

    def on_trial_save(self, iteration: int, trials: List[Any], trial: Any, **info: Any) -> None:
        pass

    def on_trial_result(self, iteration: int, trials: List[Any], trial: Any, result: Dict[str, Any], **info: Any) -> None:
        pass

    def on_trial_complete(self, iteration: int, trials: List[Any], trial: Any, **info: Any) -> None:
        pass

    def on_trial_recover(self, iteration: int, trials: List[Any], trial: Any, **info: Any) -> None:
        pass

    def on_trial_error(self, iteration: int, trials: List[Any], trial: Any, **info: Any) -> None:
        pass

    def on_checkpoint(self, iteration: int, trials: List[Any], trial: Any, checkpoint: Any, **info: Any) -> None:
        pass

    def on_experiment_end(self, trials: List[Any], **info: Any) -> None:
        pass

    def get_state(self) -> Optional[Dict[str, Any]]:
        """State to keep in experiment snapshots (None: nothing); given back to
        :meth:`set_state` when the experiment is restored."""
        return None

    def set_state(self, state: Dict[str, Any]) -> None:
        pass


_HOOKS = [name for name in vars(Callback) if name == "setup" or name.startswith("on_")]


class CallbackList:
    """Calls each hook on the callbacks that override it, in the order given."""

    def __init__(self, callbacks: Optional[List[Callback]] = None) -> None:
        self._callbacks = list(callbacks or [])
        for callback in self._callbacks:
            if not isinstance(callback, Callback):
                raise TypeError(
                    f"RunConfig(callbacks=...) takes fasttune.Callback instances, got "
                    f"{type(callback).__name__}; subclass tune.Callback."
                )
        self._by_hook = {
            hook: [c for c in self._callbacks if getattr(type(c), hook) is not getattr(Callback, hook)]
            for hook in _HOOKS
        }

    def wants(self, hook: str) -> bool:
        return bool(self._by_hook[hook])

    def call(self, hook: str, **kwargs: Any) -> None:
        for callback in self._by_hook[hook]:
            getattr(callback, hook)(**kwargs)

    def __len__(self) -> int:
        return len(self._callbacks)

    def get_state(self) -> List[Optional[Dict[str, Any]]]:
        """Each callback's :meth:`Callback.get_state`, in order."""
        return [callback.get_state() for callback in self._callbacks]

    def set_state(self, states: List[Optional[Dict[str, Any]]]) -> None:
        if len(states) != len(self._callbacks):
            raise ValueError(
                f"The experiment was saved with {len(states)} callbacks and is restored with "
                f"{len(self._callbacks)}; their saved states cannot be matched up."
            )
        for callback, state in zip(self._callbacks, states):
            if state is not None:
                callback.set_state(state)
