"""The one-run-per-trial life cycle of the loggers that keep a run of an experiment-tracking
service (Aim, Comet) per trial, run in a :class:`~fasttune.integration._tracking_process.TrackingProcess`:
a run opened when the trial starts, given its results batch by batch, closed when the trial ends,
and every run still open closed when the experiment ends.

The services' own calls are slow (opening an Aim run or a Comet experiment takes a fraction of a
second, each value logged tens to hundreds of microseconds of Python), so they run in a process
of the callback's own: the driver's event loop only hands each batch over
(:class:`TrackingLoggerCallback`), and the process's handler (a :class:`TrialRuns`) owns the
runs.  The experiment's end waits for the process, so every run is complete in the store when
``fit()`` returns, and a failure there is raised then as a ``TuneError``.
"""
from __future__ import annotations

import time
from typing import Any, Dict, List, Optional

from fasttune.integration._tracking_process import TrackingProcess
from fasttune.logger.logger import LoggerCallback

_FINISH_TIMEOUT = 1800  # seconds the end of a sweep waits for the service to take what is left


class TrialRuns:
    """The runs of a sweep's trials, in the tracking process: ``{trial id: run}``.

    Messages: ``start(trial_id, *args)``, ``results(trial_id, results)``, ``end(trial_id,
    failed)``, ``close()``.  Subclasses say how a run starts (:meth:`_start_run`, given the
    trial's open run if it has one), takes a batch (:meth:`_log_batch`) and closes
    (:meth:`_close_run`).
    """

    def __init__(self) -> None:
        self.runs: Dict[str, Any] = {}

    def _start_run(self, trial_id: str, open_run: Optional[Any], *args: Any) -> Any:
        raise NotImplementedError

    def _log_batch(self, trial_id: str, run: Any, results: List[Dict[str, Any]]) -> None:
        raise NotImplementedError

    def _close_run(self, trial_id: str, run: Any, failed: bool) -> None:
        raise NotImplementedError

    def start(self, trial_id: str, *args: Any) -> None:
        self.runs[trial_id] = self._start_run(trial_id, self.runs.get(trial_id), *args)

    def results(self, trial_id: str, results: List[Dict[str, Any]]) -> None:
        self._log_batch(trial_id, self.runs[trial_id], results)

    def end(self, trial_id: str, failed: bool) -> None:
        run = self.runs.pop(trial_id, None)
        if run is not None:
            self._close_run(trial_id, run, failed)

    def close(self) -> None:
        """Trials still paused or pending when the sweep ends: their runs are closed too, so the
        store holds everything (and its locks are free) once ``fit()`` is back."""
        for trial_id in list(self.runs):
            self.end(trial_id, False)


class TrackingLoggerCallback(LoggerCallback):
    """The driver's side: sends each trial's start, batches and end to the process whose
    handler :meth:`_handler` names.  Subclasses give :meth:`_handler` and :meth:`_start_args`
    (what the handler's ``start`` needs of the trial, beside its id)."""

    _service = "the tracking service"

    def __init__(self) -> None:
        self._start_afresh()

    def _start_afresh(self) -> None:
        """The state of a callback that has logged nothing yet."""
        self._runs: Dict[str, Any] = {}  # trial id -> trial, for the trials whose run is open
        self._process: Optional[TrackingProcess] = None

    # Pickled with the Tuner's settings (for Tuner.restore): the settings only, not the open
    # runs or the process.
    def __getstate__(self) -> Dict[str, Any]:
        return {key: value for key, value in self.__dict__.items() if key not in ("_runs", "_process")}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._start_afresh()

    # ---- for subclasses ------------------------------------------------------------------
    def _handler(self) -> tuple:
        """``(module, TrialRuns subclass name, constructor args)``, built in the process."""
        raise NotImplementedError

    def _start_args(self, trial: Any) -> tuple:
        raise NotImplementedError

    def _send(self, *message: Any) -> None:
        if self._process is None:  # hooks called without setup(): the process starts now
            self.setup()
        self._process.send(*message)

    def _ensure_started(self, trial: Any) -> None:
        """A trial of a restored experiment may report before it starts: its run opens first."""
        if trial.trial_id not in self._runs:
            self.log_trial_start(trial)

    # ---- the hooks -----------------------------------------------------------------------
    def setup(self, stop: Any = None, num_samples: Optional[int] = None, total_num_samples: Optional[int] = None,
              **info: Any) -> None:
        # Started with the sweep: the process imports the tracking library (a second or two)
        # while the trials start, not after their first results.
        self._process = TrackingProcess(self._service, self._handler(), _FINISH_TIMEOUT)
        self._process.start()

    def log_trial_start(self, trial: Any) -> None:
        self._runs[trial.trial_id] = trial
        self._send("start", trial.trial_id, *self._start_args(trial))

    def log_trial_result_batch(self, iteration: int, trial: Any, results: List[Dict[str, Any]],
                               times: List[float]) -> None:
        self._ensure_started(trial)
        # Copies: the runner may still mark the batch's last result ``done`` after the
        # callbacks, and the batch is pickled later, on the process's writer thread.
        self._send("results", trial.trial_id, [dict(result) for result in results])

    def log_trial_result(self, iteration: int, trial: Any, result: Dict[str, Any]) -> None:
        # Results arrive in batches (``log_trial_result_batch``); this is for a direct call.
        self.log_trial_result_batch(iteration, trial, [result], [time.time()])

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        if self._runs.pop(trial.trial_id, None) is not None:
            self._send("end", trial.trial_id, failed)

    def on_experiment_end(self, trials: List[Any], **info: Any) -> None:
        process = self._process
        self._start_afresh()  # a later fit() with this callback starts another process
        if process is not None:
            process.finish()
