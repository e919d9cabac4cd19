"""``TrackingLoggerCallback``: the shared life cycle of the loggers that keep one run of an
experiment-tracking service (Aim, Comet) per trial: opened when the trial starts, closed
when it ends, and every run still open closed when the experiment ends."""
from __future__ import annotations

import time
from typing import Any, Dict, List

from fasttune.logger.logger import LoggerCallback


class TrackingLoggerCallback(LoggerCallback):
    """Keeps ``{trial: run}``; subclasses say how a run opens (:meth:`_open_run`) and
    closes (:meth:`_close_run`), and log into ``self._runs[trial]``."""

    def __init__(self) -> None:
        self._runs: Dict[Any, Any] = {}

    def _open_run(self, trial: Any) -> Any:
        raise NotImplementedError

    def _close_run(self, trial: Any, run: Any, failed: bool) -> None:
        raise NotImplementedError

    def _run_of(self, trial: Any) -> Any:
        """The trial's open run; one is opened if results come before the start (a trial
        of a restored experiment that continues from where it was)."""
        run = self._runs.get(trial)
        if run is None:
            self.log_trial_start(trial)
            run = self._runs[trial]
        return run

    def log_trial_result(self, iteration: int, trial: Any, result: Dict[str, Any]) -> None:
        # Results arrive in batches (``log_trial_result_batch``); this is for a direct call.
        self.log_trial_result_batch(iteration, trial, [result], [time.time()])

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        run = self._runs.pop(trial, None)
        if run is not None:
            self._close_run(trial, run, failed)

    def on_experiment_end(self, trials: List[Any], **info: Any) -> None:
        # Trials still paused or pending when fit() returns: close their runs, so the
        # tracking store holds everything (and frees its locks) once fit() is back.
        for trial in list(self._runs):
            self.log_trial_end(trial)
