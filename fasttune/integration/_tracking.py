"""``TrackingLoggerCallback``: the shared life cycle of the loggers that keep one run of an
experiment-tracking service (Aim, Comet) per trial: opened when the trial starts, closed
when it ends, and every run still open closed when the experiment ends.

The services' own calls are slow (opening a Comet experiment or an Aim run takes a
fraction of a second, ending one up to seconds, each value logged tens to hundreds of
microseconds), so they run on one thread of the callback's, in the order the hooks came:
the driver's event loop only hands each batch over.  The experiment end waits for all of
it, so every run is complete in the store when ``fit()`` returns.
"""
from __future__ import annotations

import time
from typing import Any, Dict, List

from fasttune.logger._writer_thread import WriterThread
from fasttune.logger.logger import LoggerCallback


class TrackingLoggerCallback(LoggerCallback):
    """Keeps ``{trial: run}`` (used on the callback's thread only); subclasses say how a
    run opens (:meth:`_open_run`), takes a batch (:meth:`_log_batch`) and closes
    (:meth:`_close_run`), all called on that thread."""

    _service = "the tracking service"

    def __init__(self) -> None:
        self._start_afresh()

    def _start_afresh(self) -> None:
        """The state of a callback that has logged nothing yet (subclasses add theirs)."""
        self._runs: Dict[Any, Any] = {}
        self._thread = WriterThread(f"{type(self).__name__} logging", thread_name="fasttune-tracking")
        self._failure_raised = False

    # Pickled with the Tuner's settings (for Tuner.restore): the settings only, not the open
    # runs or the thread.
    _NOT_PICKLED = ("_runs", "_thread", "_failure_raised")

    def __getstate__(self) -> Dict[str, Any]:
        return {key: value for key, value in self.__dict__.items() if key not in self._NOT_PICKLED}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._start_afresh()

    # ---- for subclasses (called on the callback's thread) ----------------------------
    def _open_run(self, trial: Any) -> Any:
        raise NotImplementedError

    def _start_run(self, trial: Any) -> None:
        """``trial`` started: open its run (a subclass may reuse or replace an open one)."""
        if trial not in self._runs:
            self._runs[trial] = self._open_run(trial)

    def _log_batch(self, trial: Any, run: Any, results: List[Dict[str, Any]]) -> None:
        raise NotImplementedError

    def _close_run(self, trial: Any, run: Any, failed: bool) -> None:
        raise NotImplementedError

    def _run_of(self, trial: Any) -> Any:
        """The trial's open run; one is opened if results come before the start (a trial
        of a restored experiment that continues from where it was)."""
        run = self._runs.get(trial)
        if run is None:
            self._start_run(trial)
            run = self._runs[trial]
        return run

    # ---- the driver's side: hand over, in order ----------------------------------------
    def _submit(self, fn: Any, *args: Any) -> None:
        self._raise_failure()
        self._thread.submit(fn, *args)

    def _raise_failure(self) -> None:
        failure = self._thread.failure
        if failure is not None and not self._failure_raised:
            self._failure_raised = True
            raise RuntimeError(f"{type(self).__name__} could not log to {self._service}: "
                               f"{type(failure).__name__}: {failure}") from failure

    def log_trial_start(self, trial: Any) -> None:
        self._submit(self._start_run, trial)

    def log_trial_result_batch(self, iteration: int, trial: Any, results: List[Dict[str, Any]],
                               times: List[float]) -> None:
        # Copies: the runner may still mark the batch's last result ``done`` after the callbacks.
        self._submit(self._log_run_batch, trial, [dict(result) for result in results])

    def log_trial_result(self, iteration: int, trial: Any, result: Dict[str, Any]) -> None:
        # Results arrive in batches (``log_trial_result_batch``); this is for a direct call.
        self.log_trial_result_batch(iteration, trial, [result], [time.time()])

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        self._submit(self._end_run, trial, failed)

    def on_experiment_end(self, trials: List[Any], **info: Any) -> None:
        # Trials still paused or pending when fit() returns: close their runs too, so the
        # store holds everything (and its locks are free) once fit() is back.
        self._thread.submit(self._end_all)
        self._thread.wait()
        self._raise_failure()
        if self._thread.failure is None:
            self._thread.close()  # a later fit() with this callback starts another

    # ---- on the callback's thread ------------------------------------------------------
    def _log_run_batch(self, trial: Any, results: List[Dict[str, Any]]) -> None:
        self._log_batch(trial, self._run_of(trial), results)

    def _end_run(self, trial: Any, failed: bool) -> None:
        run = self._runs.pop(trial, None)
        if run is not None:
            self._close_run(trial, run, failed)

    def _end_all(self) -> None:
        for trial in list(self._runs):
            self._end_run(trial, failed=False)
