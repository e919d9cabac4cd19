"""What the runner shows: the queries schedulers (``TuneControllerView``), progress
reporters, callbacks and the TuneServer make of it, apart from the event loop that
changes it (``trial_runner``).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from fasttune import _corelib as core
from fasttune.error import TuneError
from fasttune.execution._trial_state import TrialStates
from fasttune.experiment.trial import Trial


class RunnerView:
    """The read side of :class:`~fasttune.execution.trial_runner.TrialRunner`: its trials
    (by row of the core's table, and by id), and what they are doing."""

    def __init__(self, table: Any, metric: Optional[str], search_alg: Any, scheduler: Any,
                 experiment_path: Optional[str]) -> None:
        self._table = table
        self._metric = metric
        self._search_alg = search_alg
        self._scheduler = scheduler
        self.experiment_path = experiment_path
        self._trials: List[Trial] = []  # by row of the table
        self._by_id: Dict[str, Trial] = {}
        self._states = TrialStates()  # the runner's record of each trial
        self._unassigned: Dict[str, Trial] = {}  # PENDING trials no worker holds, in order added
        self._stopping_all = False
        self._experiment: Any = None
        self._server: Any = None  # the TuneServer, once the first step started it

    def get_trials(self) -> List[Trial]:
        return self._trials

    def get_trial(self, trial_id: str) -> Optional[Trial]:
        return self._by_id.get(trial_id)

    def is_trial_held(self, trial: Trial) -> bool:
        """Whether a worker holds ``trial`` (running it, or queued to run it next)."""
        return self._table.get_worker_slot(trial._row) >= 0

    def first_trial_with_status(self, status: str) -> Optional[Trial]:
        """The first trial with ``status`` that no worker holds (PENDING: the earliest added)."""
        if status == Trial.PENDING:
            return next(iter(self._unassigned.values()), None)
        table = self._table
        code = getattr(core, status)
        if not table.count(code):
            return None  # (asked at every step, nearly always of a status no trial has)
        for row in table.rows(code):
            if table.get_worker_slot(row) < 0:
                return self._trials[row]
        return None

    @property
    def is_stopping(self) -> bool:
        """True once all trials are being stopped (time budget, fail_fast, a Stopper)."""
        return self._stopping_all

    def get_live_trials(self) -> List[Trial]:
        rows: List[int] = []
        for status in (core.PENDING, core.RUNNING, core.PAUSED):
            rows.extend(self._table.rows(status))
        return [self._trials[row] for row in sorted(rows)]

    def cluster_resources(self) -> Dict[str, float]:
        """The cluster's resources in all, free or not (what the executor sees)."""
        return self.trial_executor.cluster_resources()

    @property
    def table(self) -> Any:
        """The columnar TrialTable (numpy views via ``table.column(name)``); its
        ``last_metric``/``best_metric`` columns hold :attr:`metric`, row ``trial._row``."""
        return self._table

    @property
    def metric(self) -> Optional[str]:
        """The result key the TrialTable's metric columns track (None: none)."""
        return self._metric

    @property
    def experiment(self) -> Any:
        """The Experiment the trials are made from (None before :meth:`setup_experiments`)."""
        return self._experiment

    @property
    def server(self) -> Any:
        """The :class:`fasttune.web_server.TuneServer` serving this runner (None: none, or
        not started yet: it starts with the first :meth:`step`)."""
        return self._server

    @property
    def scheduler_alg(self) -> Any:
        return self._scheduler

    @property
    def search_alg(self) -> Any:
        return self._search_alg

    def is_finished(self) -> bool:
        if self._fatal is not None:
            return True
        if not (self._search_alg.is_finished() or self._stopping_all):
            return False  # still searching (asked every step: the table is read only after)
        # A suggestion still on its way when the experiment stops becomes a trial that
        # ends at once, so the searcher hears of every trial it suggested.
        if self._search_alg.pending_suggestion is not None:
            return False
        counts = self._table.counts()
        live = counts[core.PENDING] + counts[core.RUNNING] + counts[core.PAUSED]
        return live == 0 and not self._table.held_count()

    def _stall_error(self) -> TuneError:
        """Why nothing can run although the experiment is not finished (no worker holds a
        trial and none can start)."""
        pending = next(iter(self._unassigned.values()), None)
        if pending is not None:
            return TuneError(
                f"{len(self._unassigned)} trial(s) are PENDING but none can start: trial {pending} "
                f"requests {pending.resources} and no worker is busy that could free "
                "resources. Check the cluster's resources (ray.cluster_resources()) and the "
                "trial's resource request.")
        if self._table.count(core.PAUSED):
            paused = self.first_trial_with_status(Trial.PAUSED)
            if paused is not None:
                # Its resources may have changed while it was paused (ResourceChangingScheduler)
                # to more than the cluster has: say so rather than blame the scheduler.
                try:
                    self.trial_executor.check_feasible(paused)
                except TuneError as exc:
                    return exc
            return TuneError("Trials are PAUSED and the scheduler chose none to resume; a scheduler must "
                             "eventually resume or stop paused trials.")
        return TuneError("The searcher returned no trial although it is not finished and no trial is "
                         "running; a searcher must suggest a config, or FINISHED, when nothing is running.")
