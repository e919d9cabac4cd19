"""Callbacks: hooks into the experiment loop (``ray.tune.callback``)."""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Tuple

from fasttune.error import TuneError

logger = logging.getLogger(__name__)

__all__ = ["Callback", "CallbackList"]


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
        """After a checkpoint of ``trial`` was recorded (just after :meth:`on_checkpoint`)."""

    def on_trial_result(self, iteration: int, trials: List[Any], trial: Any, result: Dict[str, Any], **info: Any) -> None:
        """One result, after the scheduler and searcher saw it (Ray Tune's hook)."""

    def on_trial_result_batch(self, iteration: int, trials: List[Any], trial: Any, results: List[Dict[str, Any]],
                              times: List[float], **info: Any) -> None:
        """fasttune's batch hook: the results of one worker batch of ``trial``, in
        order, once they are written to ``result.json`` -- each result dict as the
        trial's files have it (a batch may hold results that came after the trial was
        stopped: they are logged, and only this hook sees them).  ``times[i]`` is
        when ``results[i]`` was reported, in seconds since the epoch.  One call per
        batch instead of one per result: the cheap way to see every result."""

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

    def _wants(self, hook: str) -> bool:
        """Whether this callback needs ``hook`` called: by default, when it overrides
        it.  (A subclass that forwards hooks to methods of its own, as
        ``LoggerCallback`` does, answers for those methods.)"""
        return overrides(self, Callback, hook)

    def get_state(self) -> Optional[Dict[str, Any]]:
        """State to keep in experiment snapshots (None: nothing); given back to
        :meth:`set_state` when the experiment is restored."""
        return None

    def set_state(self, state: Dict[str, Any]) -> None:
        pass


_HOOKS = [name for name in vars(Callback) if name == "setup" or name.startswith("on_")]


def overrides(obj: Any, base: type, name: str) -> bool:
    """Whether ``obj``'s class defines ``name`` other than ``base`` does."""
    return getattr(type(obj), name) is not getattr(base, name)


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
        self._by_hook = {hook: [c for c in self._callbacks if c._wants(hook)] for hook in _HOOKS}
        # The last failure of call(): (hook, position of the callback among that hook's, the
        # error raised), so that finish() can call that hook on the callbacks after it.
        self.failure: Optional[Tuple[str, int, TuneError]] = None

    def wants(self, hook: str) -> bool:
        return bool(self._by_hook[hook])

    def call(self, hook: str, **kwargs: Any) -> None:
        callback = None
        try:
            for callback in self._by_hook[hook]:
                getattr(callback, hook)(**kwargs)
        except Exception as exc:
            error = exc if isinstance(exc, TuneError) else TuneError(
                f"The callback {type(callback).__name__}.{hook} raised {type(exc).__name__}: {exc}. "
                "The experiment stopped there (its state is saved); fix the callback, or leave it out of "
                "RunConfig(callbacks=...), and continue with Tuner.restore()."
            )
            position = next(i for i, c in enumerate(self._by_hook[hook]) if c is callback)
            self.failure = (hook, position, error)
            if error is exc:
                raise
            raise error from exc

    def take_failure(self, error: BaseException) -> Optional[Tuple[str, int, TuneError]]:
        """The failure :meth:`call` recorded when it raised ``error`` (None if it raised
        another since, or none), for :meth:`finish`; the one recorded is forgotten (and with
        it its traceback), so a later failing call cannot replace what was taken."""
        failure, self.failure = self.failure, None
        return failure if failure is not None and failure[2] is error else None

    def finish(self, failure: Optional[Tuple[str, int, TuneError]], hook: str, **kwargs: Any) -> bool:
        """If ``failure`` (from :meth:`take_failure`) is of ``hook``, call ``hook`` on the
        callbacks after the one that raised, each whatever the others do (as
        :meth:`call_each`), and return True; else call nothing and return False.

        Example:
            >>> class Fails(Callback):
            ...     def on_trial_save(self, **info): raise ValueError("full disk")
            >>> class Counts(Callback):
            ...     saves = 0
            ...     def on_trial_save(self, **info): self.saves += 1
            >>> counts = Counts()
            >>> callbacks = CallbackList([Fails(), counts])
            >>> try:
            ...     callbacks.call("on_trial_save", iteration=0, trials=[], trial=None)
            ... except TuneError as raised:
            ...     failure = callbacks.take_failure(raised)
            >>> callbacks.finish(failure, "on_trial_save", iteration=0, trials=[], trial=None), counts.saves
            (True, 1)
        """
        if failure is None or failure[0] != hook:
            return False
        self._call_each(self._by_hook[hook][failure[1] + 1:], hook, kwargs)
        return True

    def call_each(self, hook: str, **kwargs: Any) -> None:
        """Call ``hook`` on each callback that overrides it, each whatever the others do:
        one that raises is logged, naming it, and the next is called (how an experiment
        that already failed ends its callbacks, so that the loggers' files still close)."""
        self._call_each(self._by_hook[hook], hook, kwargs)

    @staticmethod
    def _call_each(callbacks: List[Callback], hook: str, kwargs: Dict[str, Any]) -> None:
        for callback in callbacks:
            try:
                getattr(callback, hook)(**kwargs)
            except Exception:  # noqa: BLE001 - the experiment's own error is the one raised
                logger.exception("The callback %s.%s failed after the error below.", type(callback).__name__, hook)

    def __len__(self) -> int:
        return len(self._callbacks)

    def __getitem__(self, index: int) -> Callback:
        return self._callbacks[index]

    def get_state(self) -> List[Optional[Dict[str, Any]]]:
        """Each callback's :meth:`Callback.get_state`, in order."""
        return [callback.get_state() for callback in self._callbacks]

    def set_state(self, states: List[Optional[Dict[str, Any]]]) -> None:
        """Give each callback its saved state, by position.  Callbacks beyond the saved
        list start afresh, and saved lists may be longer when the extra entries are
        empty: default loggers (stateless, last) may differ between runs, e.g. when
        tensorboardX was installed meanwhile."""
        if any(state is not None for state in states[len(self._callbacks):]):
            raise ValueError(
                f"The experiment was saved with {len(states)} callbacks and is restored with "
                f"{len(self._callbacks)}; their saved states cannot be matched up. Pass the "
                "callbacks it ran with to RunConfig(callbacks=...)."
            )
        for callback, state in zip(self._callbacks, states):
            if state is not None:
                callback.set_state(state)


def _hook_caller(hook: str) -> Any:
    def call_hook(self: CallbackList, **info: Any) -> None:
        self.call(hook, **info)

    call_hook.__name__ = hook
    call_hook.__qualname__ = f"CallbackList.{hook}"
    call_hook.__doc__ = f"Calls ``{hook}`` on each callback that overrides it, in order."
    return call_hook


# A CallbackList is a Callback-shaped composite, as in Ray Tune: list.on_trial_result(...)
# calls each callback's hook.
for _hook in _HOOKS:
    setattr(CallbackList, _hook, _hook_caller(_hook))
