"""``LoggerCallback``: the base of callbacks that log what trials report (``ray.tune.logger``)."""
from __future__ import annotations

from typing import Any, Dict, List

from fasttune.callback import Callback, overrides

__all__ = ["LoggerCallback"]


class LoggerCallback(Callback):
    """Base class for experiment-level loggers: override the ``log_*`` methods you need.

    Each ``log_*`` method is called only when a subclass overrides it, so a logger
    costs nothing for events it ignores.  Results come one batch per call to
    :meth:`log_trial_result_batch` (fasttune's hook; a worker sends many results at
    once); its default passes them one by one to :meth:`log_trial_result`, the
    simple way to write one.  Close what a trial opened in :meth:`log_trial_end`.

    Unlike Ray Tune's, ``on_trial_result`` is not forwarded: results reach loggers
    through ``on_trial_result_batch`` only, so each is logged exactly once.

    Example:
        >>> import fasttune as tune
        >>> from fasttune.logger import LoggerCallback
        >>> class PrintLosses(LoggerCallback):
        ...     def log_trial_result(self, iteration, trial, result):
        ...         print(trial, result["loss"])
        ...     def log_trial_end(self, trial, failed=False):
        ...         print(trial, "failed" if failed else "done")
        >>> run_config = tune.RunConfig(callbacks=[PrintLosses()])
    """

    def log_trial_start(self, trial: Any) -> None:
        """``trial`` starts (its first run, or a restart without a checkpoint)."""

    def log_trial_restore(self, trial: Any) -> None:
        """``trial`` starts again from its checkpoint."""

    def log_trial_save(self, trial: Any) -> None:
        """``trial`` saved a checkpoint (``trial.checkpoint``)."""

    def log_trial_result(self, iteration: int, trial: Any, result: Dict[str, Any]) -> None:
        """``trial`` reported ``result`` (at step ``iteration`` of the experiment loop)."""

    def log_trial_result_batch(self, iteration: int, trial: Any, results: List[Dict[str, Any]],
                               times: List[float]) -> None:
        """One batch of ``trial``'s results, in order; ``times[i]`` is when ``results[i]``
        was reported (seconds since the epoch).  Override this instead of
        :meth:`log_trial_result` to write a batch at once."""
        log = self.log_trial_result
        for result in results:
            log(iteration, trial, result)

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        """``trial`` ended: completed, or ``failed`` (an error it does not recover from)."""

    # ---- the Callback hooks, forwarded -----------------------------------------------
    def on_trial_start(self, iteration: int, trials: List[Any], trial: Any, **info: Any) -> None:
        self.log_trial_start(trial)

    def on_trial_restore(self, iteration: int, trials: List[Any], trial: Any, **info: Any) -> None:
        self.log_trial_restore(trial)

    def on_trial_save(self, iteration: int, trials: List[Any], trial: Any, **info: Any) -> None:
        self.log_trial_save(trial)

    def on_trial_result_batch(self, iteration: int, trials: List[Any], trial: Any, results: List[Dict[str, Any]],
                              times: List[float], **info: Any) -> None:
        self.log_trial_result_batch(iteration, trial, results, times)

    def on_trial_complete(self, iteration: int, trials: List[Any], trial: Any, **info: Any) -> None:
        self.log_trial_end(trial, failed=False)

    def on_trial_error(self, iteration: int, trials: List[Any], trial: Any, **info: Any) -> None:
        self.log_trial_end(trial, failed=True)

    def _wants(self, hook: str) -> bool:
        forwarded_to = _FORWARDED.get(hook)
        if forwarded_to is None or overrides(self, LoggerCallback, hook):
            return super()._wants(hook)
        return any(overrides(self, LoggerCallback, method) for method in forwarded_to)


# Each forwarded hook, and the methods whose override makes a logger want it.
_FORWARDED = {
    "on_trial_start": ("log_trial_start",),
    "on_trial_restore": ("log_trial_restore",),
    "on_trial_save": ("log_trial_save",),
    "on_trial_result_batch": ("log_trial_result", "log_trial_result_batch"),
    "on_trial_complete": ("log_trial_end",),
    "on_trial_error": ("log_trial_end",),
}
