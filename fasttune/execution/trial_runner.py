"""The event loop: one ``step()`` starts a trial or handles one worker event.

Follow a result: a worker's batch arrives as an EVENT_BATCH (ray_trial_executor) ->
``_on_results`` here -> the core's ``ResultBuffer.ingest`` fills the automatic fields
and renders the JSON/CSV bytes -> ``TrialFiles.write`` appends them to the trial's
``result.json`` and (with a ``CSVLoggerCallback``) ``progress.csv`` -> callbacks that
want it get the batch (``on_trial_result_batch``: loggers).  Policies (scheduler,
searcher, stopper, callbacks) see each result only when they override the hook that
would receive it.
"""
from __future__ import annotations

import collections
import gc
import logging
import os
import threading
import time
from array import array
from typing import Any, Dict, List, Optional

from fasttune import _corelib as core
from fasttune._flatten import flatten_dict
from fasttune._serialization import unpickled_in
from fasttune.callback import CallbackList
from fasttune.checkpoint import Checkpoint
from fasttune.error import TuneError
from fasttune.execution import _experiment_state as _state
from fasttune.execution._checkpoint_retention import select_checkpoints_to_keep
from fasttune.execution.ray_trial_executor import EVENT_BATCH, EVENT_ERROR, EVENT_START, RayTrialExecutor
from fasttune.experiment.trial import Trial
from fasttune.logger.csv import CSVLoggerCallback
from fasttune.logger._trial_files import (TrialFiles, config_to_json, prune_checkpoints_now,
                                         set_aside_unknown_trial_dirs)
from fasttune.schedulers.trial_scheduler import DecisionPoints, FIFOScheduler, TrialScheduler, overrides
from fasttune.search.search_algorithm import SearchAlgorithm
from fasttune.stopper import Stopper

logger = logging.getLogger(__name__)

# Under checkpoint_period="auto" snapshots come at most this often (and further apart
# when one costs more than 1/20 of this).
_MIN_SNAPSHOT_PERIOD_S = 2.0
# How long a suggestion still being made when the experiment stops is waited for
# before it is abandoned (its thread cannot be stopped; it ends when suggest returns).
_SUGGEST_GRACE_S = 10.0
# The longest a step waits for a background suggestion before the loop looks again.
_MAX_WAKE_WAIT_S = 1.0
# The longest a step waits for workers or a TuneServer request (the executor's own
# bound on a wait), so the time budget and Ctrl-C are seen as without a server; and
# how often the wait looks for a request (a request is rare: no fine polling for it).
_SERVER_WAKE_WAIT_S = 0.5
_SERVER_POLL_S = 0.02
# With a worker-less wait on two wake Events, how often the second one is looked at.
_EITHER_WAKE_SLICE_S = 0.02

_WORKER_DECISION = {
    TrialScheduler.CONTINUE: "continue",
    TrialScheduler.NOOP: "continue",
    TrialScheduler.STOP: "stop",
    TrialScheduler.PAUSE: "pause",
}


class _Reset:
    """A pending ``reset_trial``: the trial goes on with ``config`` from ``source``."""

    __slots__ = ("config", "tag", "source", "result", "foreign")

    def __init__(self, config: Dict[str, Any], tag: str, source: Optional[str], result: Dict[str, Any],
                 foreign: bool) -> None:
        self.config = config
        self.tag = tag
        self.source = source  # a checkpoint directory, or None: no checkpoint
        self.result = result  # what was reported with that checkpoint
        self.foreign = foreign  # another trial's checkpoint: copied in first


class _EitherEvent:
    """Set when either of two Events is: the executor's ``wake`` when a background
    suggestion and the TuneServer's requests may both wake the loop."""

    __slots__ = ("_first", "_second")

    def __init__(self, first: threading.Event, second: threading.Event) -> None:
        self._first, self._second = first, second

    def is_set(self) -> bool:
        return self._first.is_set() or self._second.is_set()

    def wait(self, timeout: Optional[float] = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            step = _EITHER_WAKE_SLICE_S if deadline is None else min(_EITHER_WAKE_SLICE_S, deadline - time.monotonic())
            if step <= 0:
                return False
            self._first.wait(step)
        return True


class TrialRunner:
    """Runs the trials of one experiment to completion (``ray.tune.execution.trial_runner``).

    ``server_port`` serves the experiment over HTTP from the first :meth:`step` on (a
    :class:`fasttune.web_server.TuneServer` on ``server_host``, 127.0.0.1 by default;
    0 takes any free port): clients list, add and stop trials.

    Example:
        >>> from fasttune.execution import TrialRunner  # doctest: +SKIP
        >>> runner = TrialRunner(search_alg=searcher, experiment_path="/tmp/exp")  # doctest: +SKIP
        >>> while not runner.is_finished():  # doctest: +SKIP
        ...     runner.step()
    """

    def __init__(
        self,
        search_alg: Optional[SearchAlgorithm] = None,
        scheduler: Optional[TrialScheduler] = None,
        trial_executor: Optional[RayTrialExecutor] = None,
        experiment_path: Optional[str] = None,
        stopper: Optional[Stopper] = None,
        callbacks: Optional[List[Any]] = None,
        metric: Optional[str] = None,
        mode: Optional[str] = None,
        fail_fast: Any = False,
        time_budget_s: Optional[float] = None,
        max_concurrent_trials: Optional[int] = None,
        checkpoint_period: Any = "auto",
        synchronous: bool = False,
        server_port: Optional[int] = None,
        server_host: str = "127.0.0.1",
    ) -> None:
        from fasttune.search.basic_variant import BasicVariantGenerator

        self._search_alg = search_alg or BasicVariantGenerator()
        self._scheduler = scheduler or FIFOScheduler()
        self.trial_executor = trial_executor or RayTrialExecutor()
        self.experiment_path = experiment_path
        self._stopper = stopper
        self._callbacks = CallbackList(callbacks)
        self._metric = metric
        self._fail_fast = fail_fast
        self._time_budget_s = time_budget_s
        self._max_concurrent = max_concurrent_trials
        self._checkpoint_period = os.environ.get("FASTTUNE_GLOBAL_CHECKPOINT_S") or checkpoint_period
        self._synchronous = synchronous or os.environ.get("FASTTUNE_SYNCHRONOUS") == "1"
        # Synchronous mode and a stopper need a decision at every result; otherwise the
        # scheduler's own decision points (and its yields at them) hold.
        self._scheduler_points = not (self._synchronous or stopper is not None)

        self._table = core.TrialTable(mode)
        self._results = core.ResultBuffer(self._table, metric)
        # progress.csv is the CSV logger's file; result.json is always written.
        self._files = TrialFiles(write_csv=any(isinstance(c, CSVLoggerCallback) for c in callbacks or []))
        self._trials: List[Trial] = []
        self._by_id: Dict[str, Trial] = {}
        self._unassigned: Dict[str, Trial] = {}  # PENDING trials no worker holds yet
        self._slot_of: Dict[str, int] = {}
        self._config_json: Dict[str, str] = {}
        self._pending_decision: Dict[str, str] = {}
        # Result lines a trial had logged up to each kept checkpoint: a restart from it
        # keeps exactly those (histories need not be monotonic in iteration).
        self._checkpoint_rows: Dict[str, int] = {}
        self._next_checkpoint_index: Dict[str, int] = {}  # names stay unique after deletions
        # reset_trial: applied at the decision point the trial waits at in the batch being
        # handled, or when the trial next starts; a foreign checkpoint stays pinned (its
        # own trial's retention may not delete it) until the copy is confirmed.
        self._deciding: set = set()
        self._reset_at_decision: Dict[str, _Reset] = {}
        self._reset_on_start: Dict[str, _Reset] = {}
        self._cloning: Dict[str, _Reset] = {}
        self._pinned: Dict[str, int] = {}
        self._unpinned_removals: set = set()
        self._iteration = 0
        self._start_time = time.monotonic()
        self._stopping_all = False
        self._stopped_at: Optional[float] = None
        # Set while the search algorithm makes a trial in the background and the loop
        # should wake when it is ready (see _next_trial_to_start).
        self._awaiting: Optional[threading.Event] = None
        self._fatal: Optional[BaseException] = None
        self._last_snapshot = 0.0
        self._snapshot_cost = 0.0
        self._snapshot_seq = 0
        self._experiment: Any = None
        # Packed snapshot records by row: kept for finished trials (they no longer
        # change), so a snapshot of 100,000 trials packs only the live ones.
        self._records: List[Optional[bytes]] = []
        self._dirnames: List[Optional[str]] = []  # by row, filled with its record
        self._pickled_in_records: Dict[int, List[str]] = {}  # rows whose record holds pickles
        self._unsaved_policies: set = set()  # kinds whose state could not be saved (warned once)
        self._keysets = _state.KeySets()
        self._rewind_on_start: set = set()  # restored trials: their files are rewound at start
        self.results_processed = 0
        self._server_address = None if server_port is None else (server_host, server_port)
        self._server: Any = None  # the TuneServer, once the first step started it
        self._never_queued: set = set()  # trial ids add_trial(queue=False) gave

        self._scheduler_sees_results = overrides(self._scheduler, TrialScheduler, "on_trial_result")
        self._searcher_sees_results = overrides(self._search_alg, SearchAlgorithm, "on_trial_result")
        self._callbacks_see_results = self._callbacks.wants("on_trial_result")
        self._callbacks_see_batches = self._callbacks.wants("on_trial_result_batch")

    # ---- trials ------------------------------------------------------------------------
    def add_trial(self, trial: Trial, queue: bool = True) -> None:
        """Add a trial; it starts when the scheduler chooses it and resources allow.

        ``queue=False``: it is never queued behind a busy worker's trial (it waits for an
        idle worker or room for a new one), for a trial someone asked to run now."""
        self.trial_executor.check_feasible(trial)
        if not queue:
            self._never_queued.add(trial.trial_id)
        trial._attach(self._table, self._table.add())
        self._trials.append(trial)
        self._records.append(None)
        self._dirnames.append(None)
        self._by_id[trial.trial_id] = trial
        if trial.status == Trial.PENDING:
            self._unassigned[trial.trial_id] = trial
        self._scheduler.on_trial_add(self, trial)

    def get_trials(self) -> List[Trial]:
        return self._trials

    def get_trial(self, trial_id: str) -> Optional[Trial]:
        return self._by_id.get(trial_id)

    def is_trial_held(self, trial: Trial) -> bool:
        """Whether a worker holds ``trial`` (running it, or queued to run it next)."""
        return trial.trial_id in self._slot_of

    @property
    def is_stopping(self) -> bool:
        """True once all trials are being stopped (time budget, fail_fast, a Stopper)."""
        return self._stopping_all

    def get_live_trials(self) -> List[Trial]:
        rows: List[int] = []
        for status in (core.PENDING, core.RUNNING, core.PAUSED):
            rows.extend(self._table.rows(status))
        return [self._trials[row] for row in sorted(rows)]

    def _first_trial_with_status(self, status: str) -> Optional[Trial]:
        if status == Trial.PENDING:
            return next(iter(self._unassigned.values()), None)
        for row in self._table.rows(getattr(core, status)):
            trial = self._trials[row]
            if trial.trial_id not in self._slot_of:
                return trial
        return None

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
    def scheduler_alg(self) -> TrialScheduler:
        return self._scheduler

    @property
    def search_alg(self) -> SearchAlgorithm:
        return self._search_alg

    def is_finished(self) -> bool:
        if self._fatal is not None:
            return True
        counts = self._table.counts()
        live = counts[core.PENDING] + counts[core.RUNNING] + counts[core.PAUSED]
        searching = not (self._search_alg.is_finished() or self._stopping_all)
        # A suggestion still on its way when the experiment stops becomes a trial that
        # ends at once, so the searcher hears of every trial it suggested.
        suggesting = self._search_alg.pending_suggestion is not None
        return live == 0 and not searching and not suggesting and not self._slot_of

    # ---- the loop ------------------------------------------------------------------------
    def setup_experiments(self, experiments: List[Any], total_num_samples: int) -> None:
        self._experiment = experiments[0] if experiments else None
        stop = experiments[0].spec.get("stop") if experiments else None
        num_samples = experiments[0].spec.get("num_samples") if experiments else None
        self._callbacks.call("setup", stop=stop, num_samples=num_samples, total_num_samples=total_num_samples)

    def step(self) -> None:
        """Start a startable trial, or wait for and handle one worker event."""
        if self._fatal is not None:
            raise self._fatal
        if self.is_finished():
            raise TuneError("step() was called after all trials finished; check is_finished() first.")
        if self._server_address is not None and self._server is None:
            from fasttune.web_server import TuneServer

            host, port = self._server_address
            self._server = TuneServer(self, port=port, host=host)
        self._callbacks.call("on_step_begin", iteration=self._iteration, trials=self._trials)
        self._check_budget()
        next_trial = self._next_trial_to_start()
        wake, timeout, poll = self._awaiting, None, None  # the searcher's suggestion is ready
        if wake is not None:
            timeout = self._wake_timeout()
        if self._server is not None:  # or a TuneServer request came
            if wake is None:
                wake, timeout, poll = self._server.wake, _SERVER_WAKE_WAIT_S, _SERVER_POLL_S
            else:
                wake = _EitherEvent(wake, self._server.wake)
        if wake is None:
            event = self.trial_executor.get_next_executor_event(self._unassigned, next_trial is not None)
        else:
            event = self.trial_executor.get_next_executor_event(
                self._unassigned, next_trial is not None, wake=wake, timeout=timeout, wake_poll_s=poll)
        if event is not None:
            kind, slot, payload = event
            if kind == EVENT_START:
                self._start_trial(next_trial)
            elif kind == EVENT_BATCH:
                self._on_batch(slot, payload)
            elif kind == EVENT_ERROR:
                self._on_worker_death(slot, payload)
        served = self._server is not None and self._server.serve_pending()
        if (event is None and not served and next_trial is None and self._awaiting is None and not self._slot_of
                and not self.is_finished()):
            self._explain_stall()
        self._iteration += 1
        self.checkpoint()
        self._callbacks.call("on_step_end", iteration=self._iteration, trials=self._trials)
        if self._fatal is not None:
            raise self._fatal

    def _explain_stall(self) -> None:
        pending = [t for t in self._unassigned.values()]
        if pending:
            raise TuneError(
                f"{len(pending)} trial(s) are PENDING but none can start: trial {pending[0]} "
                f"requests {pending[0].resources} and no worker is busy that could free "
                "resources. Check the cluster's resources (ray.cluster_resources()) and the "
                "trial's resource request."
            )
        if self._table.count(core.PAUSED):
            raise TuneError(
                "Trials are PAUSED and the scheduler chose none to resume; a scheduler must "
                "eventually resume or stop paused trials."
            )
        raise TuneError(
            "The searcher returned no trial although it is not finished and no trial is "
            "running; a searcher must suggest a config, or FINISHED, when nothing is running."
        )

    def _check_budget(self) -> None:
        if self._stopping_all or self._time_budget_s is None:
            return
        if time.monotonic() - self._start_time >= self._time_budget_s:
            logger.info("Time budget of %.1fs reached; stopping all trials.", self._time_budget_s)
            self._stop_all()

    def flush_files(self) -> None:
        """Return once every result so far is written to the trial files (they are
        written off the loop): what a TuneServer answers is on disk by then."""
        self._files.flush()

    def request_stop_experiment(self) -> None:
        """Stop every live trial and the search: the experiment ends once they have."""
        self._stop_all()

    def _stop_all(self) -> None:
        if not self._stopping_all:
            self._stopped_at = time.monotonic()
        self._stopping_all = True
        for trial in self.get_live_trials():
            self.stop_trial(trial)

    def _wake_timeout(self) -> float:
        """How long a step may wait for a background suggestion before the loop looks
        again: until the time budget or the stop grace runs out, and at most a second
        (so Ctrl-C and callbacks are never held up by a searcher that hangs)."""
        now = time.monotonic()
        limit = _MAX_WAKE_WAIT_S
        if self._stopped_at is not None:
            limit = min(limit, self._stopped_at + _SUGGEST_GRACE_S - now)
        elif self._time_budget_s is not None:
            limit = min(limit, self._start_time + self._time_budget_s - now)
        return max(0.0, limit)

    def _next_trial_to_start(self) -> Optional[Trial]:
        self._awaiting = None
        if self._stopping_all:
            self._end_late_suggestion()
            return None
        if self._max_concurrent and len(self._slot_of) >= self._max_concurrent:
            return None
        trial = self._scheduler.choose_trial_to_run(self)
        if trial is None and not self._search_alg.is_finished():
            # Never waits: a searcher that makes its trials in the background answers
            # None until its suggestion is ready, and the step wakes for it.
            new_trial = self._search_alg.poll_trial()
            if new_trial is not None:
                self.add_trial(new_trial)
                trial = self._scheduler.choose_trial_to_run(self)
            else:
                self._awaiting = self._search_alg.pending_suggestion
        if trial is None or not self.trial_executor.has_resources_for_trial(trial, self._may_queue(trial)):
            return None
        return trial

    def _end_late_suggestion(self) -> None:
        """Once stopping, a suggestion still being made becomes a trial that ends at once
        (TERMINATED, no result; the searcher hears it complete), like a PENDING trial at
        the stop.  One not ready within the grace period is abandoned."""
        if self._search_alg.pending_suggestion is None:
            return
        if time.monotonic() - self._stopped_at >= _SUGGEST_GRACE_S:
            self._search_alg.close(timeout=0)
            return
        trial = self._search_alg.poll_trial(ask=False)
        if trial is not None:
            self.add_trial(trial)
            self.stop_trial(trial)
        self._awaiting = self._search_alg.pending_suggestion

    def _start_trial(self, trial: Trial) -> None:
        trial_id = trial.trial_id
        if trial_id not in self._config_json:
            self._config_json[trial_id] = config_to_json(trial.config)
            self._files.init_trial(trial.path, trial.config)
        reset = self._reset_on_start.pop(trial_id, None)
        if reset is not None:
            fields = self._reset_fields(trial, reset)
            restore_path = fields["restore"]
            iteration, time_total = fields["iteration"], fields["time_total"]
        else:
            fields = {}
            restore = trial.checkpoint
            restore_path = restore.path if restore else None
            saved_with = trial.checkpoint_results[-1][1] if restore else {}
            iteration = saved_with.get("training_iteration", 0)
            time_total = saved_with.get("time_total_s", 0.0)
            rows = self._checkpoint_rows.get(restore_path, 0) if restore else 0
            restored = trial_id in self._rewind_on_start
            if restored or trial.iteration != iteration or trial.results_seen != rows:
                self._rewind_on_start.discard(trial_id)
                self._rewind(trial, iteration, time_total, rows)
        spec = {
            "trial_id": trial_id,
            "trainable": trial.trainable_name,
            "config": trial.config,
            "trial_dir": trial.path,
            "trial_name": str(trial),
            "experiment_name": os.path.basename(self.experiment_path or ""),
            "storage_path": os.path.dirname(self.experiment_path or ""),
            "stop": trial.stopping_criterion or None,
            "decide": self._decision_points(trial),
            "yield": self._yields(trial),
            "iteration": iteration,
            "time_total": time_total,
            "ckpt_index": self._next_checkpoint_index.get(trial_id, len(trial.checkpoints)),
            "restore": restore_path,
            "resources": trial.resources,
            # Class trainables: the worker calls save_checkpoint by this policy.
            "checkpoint_frequency": int(getattr(trial.checkpoint_config, "checkpoint_frequency", 0) or 0),
            "checkpoint_at_end": bool(getattr(trial.checkpoint_config, "checkpoint_at_end", False)),
        }
        spec.update(fields)
        self._unassigned.pop(trial_id, None)  # a PAUSED trial resuming was never in it
        self._slot_of[trial_id] = self.trial_executor.start_trial(trial, spec, self._may_queue(trial))

    def _may_queue(self, trial: Trial) -> bool:
        """Whether ``trial`` may wait in a busy worker's queue of next trials."""
        return self._search_alg.asks_ahead and not (self._never_queued and trial.trial_id in self._never_queued)

    def _decision_points(self, trial: Trial) -> Any:
        if not self._scheduler_points:
            return DecisionPoints.every_result().to_wire()
        return self._scheduler.decision_points(trial).to_wire()

    def _yields(self, trial: Trial) -> bool:
        """Whether the trial's worker may pause it at its decision points for a queued
        trial without waiting for the answer (see ``pauses_for_waiting_trials``); only at
        the scheduler's own points, which a stopper or synchronous mode replace."""
        return self._scheduler_points and bool(self._scheduler.pauses_for_waiting_trials(trial))

    def _rewind(self, trial: Trial, iteration: int, time_total: float, rows: int) -> None:
        header = self._files.rewind(trial.path, rows)
        trial.results_seen = rows
        self._table.set_iteration(trial._row, iteration)
        self._table.set_time_total(trial._row, time_total)
        if header is not None:
            self._results.set_csv_header(trial._row, header)

    # ---- worker events -----------------------------------------------------------------
    def _on_batch(self, slot: int, events: List[Any]) -> None:
        whole_trials = starved = 0
        started_here = set()
        # Trials at a decision point in this batch: reset_trial applies in place (or, for
        # one that yielded its worker, when it resumes), and no interrupt is sent.
        self._deciding = {event[1] for event in events if event[0] in ("decide", "yielded")}
        for event in events:
            kind, trial_id = event[0], event[1]
            trial = self._by_id[trial_id]
            if kind == "results":
                self._on_results(trial, event[2], event[3], event[4])
            elif kind == "started":
                started_here.add(trial_id)
                self._on_started(trial, event[2], event[3], event[4], event[5])
            elif kind == "decide":
                starved += event[3]
                self._deciding.discard(trial_id)  # answered now: a later reset pauses it
                decision = self._pending_decision.pop(trial_id, TrialScheduler.CONTINUE)
                if trial.status != Trial.RUNNING:
                    decision = TrialScheduler.PAUSE if trial.status == Trial.PAUSED else TrialScheduler.STOP
                reset = self._reset_at_decision.pop(trial_id, None)
                if reset is not None and decision in (TrialScheduler.CONTINUE, TrialScheduler.NOOP):
                    fields = self._reset_fields(trial, reset)
                    self.trial_executor.reset_trial(trial, trial.config, trial.experiment_tag, fields)
                    continue
                if reset is not None:
                    self._reset_on_start[trial_id] = reset  # applies when the trial resumes
                self.trial_executor.send_decision(slot, trial_id, _WORKER_DECISION[decision])
            elif kind == "yielded":
                # Paused by its worker at this decision point for the trial queued behind
                # it (its "paused" event follows): the decision taken on the results
                # still holds.  PAUSE is what was expected; a reset waits for the resume;
                # a CONTINUE resumes it later from this point's checkpoint.
                self._deciding.discard(trial_id)
                decision = self._pending_decision.pop(trial_id, TrialScheduler.CONTINUE)
                reset = self._reset_at_decision.pop(trial_id, None)
                if reset is not None:
                    self._reset_on_start[trial_id] = reset
                if decision == TrialScheduler.STOP and trial.status == Trial.RUNNING:
                    self._complete(trial)  # its "paused" event then closes it
            elif kind == "cloned":
                reset = self._cloning.pop(trial_id, None)
                self._on_checkpoint(trial, event[2], reset.result if reset else trial.last_result, trial.results_seen)
                if reset is not None:
                    self._unpin(reset)
            elif kind == "checkpoint":
                # Saved after the trial's last reported result (at end, or before a pause).
                self._on_checkpoint(trial, event[2], trial.last_result, trial.results_seen)
            else:
                if trial_id in started_here:
                    whole_trials += 1
                self._on_trial_end(slot, trial, kind, event)
        self._deciding.clear()
        self.trial_executor.adapt_depth(slot, whole_trials, starved)

    def _on_started(self, trial: Trial, start_time: float, pid: int, hostname: str, node_ip: str) -> None:
        restored = trial.checkpoint is not None
        if trial.status in (Trial.PENDING, Trial.PAUSED):
            trial.set_status(Trial.RUNNING)
        trial.start_time = trial.start_time or start_time
        self._results.open_trial(
            trial._row,
            trial.trial_id,
            self._config_json[trial.trial_id],
            trial.stopping_criterion or None,
            start_time=start_time,
            hostname=hostname,
            node_ip=node_ip,
            pid=pid,
        )
        hook = "on_trial_restore" if restored else "on_trial_start"
        self._callbacks.call(hook, iteration=self._iteration, trials=self._trials, trial=trial)

    def _on_results(self, trial: Trial, metrics: List[Dict[str, Any]], times_bytes: bytes, checkpoints: Dict[int, str]) -> None:
        times_array = array("d")
        times_array.frombytes(times_bytes)
        times = times_array.tolist()
        ingested = self._results.ingest(trial._row, metrics, times, checkpoints or None)
        results = ingested.results
        self.results_processed += len(results)
        trial.results_seen += len(results)
        if ingested.last is not None:
            trial.last_result = ingested.last
        saved: Dict[int, Checkpoint] = {}  # by result index: callbacks hear of each after its result
        if checkpoints:
            logged_before = trial.results_seen - len(results)
            for index, name in sorted(checkpoints.items()):
                if index < len(results):
                    saved[index] = self._on_checkpoint(trial, name, results[index], logged_before + index + 1,
                                                       notify=False)
        # Late results of a trial the driver already ended are logged, not judged.
        judged = ingested.error is None and trial.status == Trial.RUNNING
        decision, decided_at = TrialScheduler.CONTINUE, -1
        if judged and (self._scheduler_sees_results or self._searcher_sees_results
                       or self._callbacks_see_results or self._stopper is not None):
            for index, result in enumerate(results):
                # Once a decision ends the trial, later results of the batch (already
                # reported) still reach searchers and callbacks.
                verdict = self._judge(trial, result, decide=decision == TrialScheduler.CONTINUE)
                if decision == TrialScheduler.CONTINUE and verdict != TrialScheduler.CONTINUE:
                    decision, decided_at = verdict, index
                if index in saved:
                    self._checkpoint_callbacks(trial, saved.pop(index))
        for index in sorted(saved):
            self._checkpoint_callbacks(trial, saved[index])
        if decision == TrialScheduler.STOP and decided_at == len(results) - 1:
            # The result a scheduler or stopper ended the trial on says so on disk too
            # (at a decision point it is the batch's last; between them, it stays false).
            ingested.mark_last_done()
        self._files.write(trial.path, ingested.json_bytes, ingested.csv_bytes)
        if self._callbacks_see_batches and results:
            self._callbacks.call("on_trial_result_batch", iteration=self._iteration, trials=self._trials, trial=trial,
                                 results=results, times=times[:len(results)])
        if ingested.error is not None:
            self._fatal = TuneError(ingested.error)
            self._stop_all()
            return
        if not judged or ingested.stopped:
            return  # at its stop criterion the worker ends the trial itself
        if decision in (TrialScheduler.STOP, TrialScheduler.PAUSE):
            # Answered at the trial's decision point when it is blocked there; the
            # interrupt covers a decision taken between decision points.
            self._pending_decision[trial.trial_id] = decision
            if trial.trial_id in self._deciding:
                return  # its decide event follows in this batch: the answer carries it
            if decision == TrialScheduler.STOP:
                self.trial_executor.stop_trial(trial)
            else:
                self.trial_executor.pause_trial(trial)

    def _judge(self, trial: Trial, result: Dict[str, Any], decide: bool = True) -> str:
        flat = flatten_dict(result)
        decision = TrialScheduler.CONTINUE
        if decide:
            if self._stopper is not None and self._stopper(trial.trial_id, result):
                decision = TrialScheduler.STOP
            elif self._scheduler_sees_results:
                decision = self._scheduler.on_trial_result(self, trial, flat)
            if decision == TrialScheduler.STOP:
                result["done"] = True  # as Ray Tune passes it on: this is the trial's last
        if decision != TrialScheduler.STOP and self._searcher_sees_results:
            self._search_alg.on_trial_result(trial.trial_id, flat)
        if self._callbacks_see_results:
            self._callbacks.call("on_trial_result", iteration=self._iteration, trials=self._trials, trial=trial, result=result)
        if self._stopper is not None and self._stopper.stop_all():
            self._stop_all()
        return decision

    def _on_checkpoint(self, trial: Trial, name: str, result: Dict[str, Any], rows: int,
                       notify: bool = True) -> Checkpoint:
        """Record a persisted checkpoint: saved with ``result``, after ``rows`` result lines;
        callbacks hear of it now, or (``notify=False``) when the caller says."""
        checkpoint = Checkpoint._written_by_worker(os.path.join(trial.path, name))
        try:
            index = int(name.rsplit("_", 1)[-1])
        except ValueError:
            index = len(trial.checkpoints)
        self._next_checkpoint_index[trial.trial_id] = max(self._next_checkpoint_index.get(trial.trial_id, 0), index + 1)
        if trial.checkpoint is not None and trial.checkpoint.path == checkpoint.path:
            # The same directory again (a restart rewrote it): it replaces the entry.
            trial.checkpoint_results.pop()
        trial.checkpoint_results.append((checkpoint, dict(result)))
        self._checkpoint_rows[checkpoint.path] = rows
        self._retain_checkpoints(trial)
        if notify:
            self._checkpoint_callbacks(trial, checkpoint)
        return checkpoint

    def _checkpoint_callbacks(self, trial: Trial, checkpoint: Checkpoint) -> None:
        # As Ray Tune: on_checkpoint, then on_trial_save, once the checkpoint is recorded.
        self._callbacks.call("on_checkpoint", iteration=self._iteration, trials=self._trials, trial=trial, checkpoint=checkpoint)
        self._callbacks.call("on_trial_save", iteration=self._iteration, trials=self._trials, trial=trial)

    def _retain_checkpoints(self, trial: Trial) -> None:
        """Keep the best ``num_to_keep`` checkpoints and the latest; delete the rest."""
        config = trial.checkpoint_config
        kept = select_checkpoints_to_keep(
            trial.checkpoint_results,
            getattr(config, "num_to_keep", None),
            getattr(config, "checkpoint_score_attribute", None),
            getattr(config, "checkpoint_score_order", "max") or "max",
        )
        if len(kept) != len(trial.checkpoint_results):
            kept_paths = {c.path for c, _ in kept}
            for checkpoint, _ in trial.checkpoint_results:
                if checkpoint.path not in kept_paths:
                    self._checkpoint_rows.pop(checkpoint.path, None)
                    self._remove_checkpoint(checkpoint.path)
            trial.checkpoint_results = kept
        trial.checkpoints = [c for c, _ in trial.checkpoint_results]

    def _remove_checkpoint(self, path: str) -> None:
        if path in self._pinned:
            self._unpinned_removals.add(path)  # another trial is still copying it
        else:
            self._files.remove_checkpoint(path)

    def _unpin(self, reset: _Reset) -> None:
        if not reset.foreign or reset.source not in self._pinned:
            return
        self._pinned[reset.source] -= 1
        if not self._pinned[reset.source]:
            del self._pinned[reset.source]
            if reset.source in self._unpinned_removals:
                self._unpinned_removals.discard(reset.source)
                self._files.remove_checkpoint(reset.source)

    def _pinned_names(self, trial: Trial) -> List[str]:
        # This trial's checkpoints that another trial is still copying (its retention
        # already dropped them; they go when the copy is confirmed).
        prefix = (trial.path or "") + os.sep
        return [os.path.basename(p) for p in self._pinned if p.startswith(prefix)]

    def _drop_resets(self, trial: Trial) -> None:
        for pending in (self._reset_at_decision, self._reset_on_start, self._cloning):
            reset = pending.pop(trial.trial_id, None)
            if reset is not None:
                self._unpin(reset)

    def _on_trial_end(self, slot: int, trial: Trial, kind: str, event: List[Any]) -> None:
        self._slot_of.pop(trial.trial_id, None)
        self._pending_decision.pop(trial.trial_id, None)
        self.trial_executor.trial_ended(slot, trial)
        if kind == "error":
            self._on_trial_failure(trial, event[2], event[3])
            return
        if kind == "paused":
            if trial.status == Trial.RUNNING:
                trial.set_status(Trial.PAUSED)
            elif trial.is_finished():
                self._close_trial(trial)  # stopped while its pause was on the way
            return
        if kind == "dropped" and trial.status in (Trial.PENDING, Trial.PAUSED):
            # Handed back before it started: it waits to be chosen again.
            if trial.status == Trial.PENDING:
                self._unassigned[trial.trial_id] = trial
            return
        if trial.status in (Trial.RUNNING, Trial.PENDING, Trial.PAUSED):
            self._complete(trial)
        self._close_trial(trial)

    def _complete(self, trial: Trial) -> None:
        trial.set_status(Trial.TERMINATED)
        trial.end_time = time.time()
        result = dict(trial.last_result)
        if result:  # a trial ended before its first result has none to mark
            result["done"] = True
            trial.last_result = result
        self._scheduler.on_trial_complete(self, trial, result)
        self._search_alg.on_trial_complete(trial.trial_id, result=result)
        self._callbacks.call("on_trial_complete", iteration=self._iteration, trials=self._trials, trial=trial)

    def _close_trial(self, trial: Trial) -> None:
        self._drop_resets(trial)
        self._files.close(trial.path)
        self._results.close_trial(trial._row)

    def _on_trial_failure(self, trial: Trial, traceback_text: str, exc_blob: Optional[bytes]) -> None:
        if trial.status == Trial.TERMINATED:
            # The driver had already ended it (a stop it asked for may surface as an error).
            self._close_trial(trial)
            return
        exc: Optional[BaseException] = None
        if exc_blob:
            try:
                import ray.cloudpickle as cloudpickle

                exc = cloudpickle.loads(exc_blob)
            except Exception:  # noqa: BLE001 - the traceback text still tells the story
                exc = None
        failures = trial._record_failure()
        header = f"Failure # {failures} (occurred at {time.strftime('%Y-%m-%d_%H-%M-%S')})"
        trial.error_file = self._files.write_error(trial.path, header, traceback_text)
        trial.error_msg = traceback_text
        trial.error = exc if exc is not None else TuneError(f"Trial {trial} failed:\n{traceback_text}")
        if self._fail_fast == "raise":
            self._fatal = trial.error
            trial.set_status(Trial.ERROR)
            self._close_trial(trial)
            self._stop_all()
            return
        if trial.status == Trial.RUNNING and trial.should_recover() and not self._stopping_all:
            cloning = self._cloning.pop(trial.trial_id, None)
            if cloning is not None:  # the copy was not confirmed: redo it on restart
                self._reset_on_start[trial.trial_id] = cloning
            trial.set_status(Trial.PENDING)
            self._unassigned[trial.trial_id] = trial
            self._results.close_trial(trial._row)
            self._callbacks.call("on_trial_recover", iteration=self._iteration, trials=self._trials, trial=trial)
            return
        if trial.status != Trial.ERROR:
            trial.set_status(Trial.ERROR)
        trial.end_time = time.time()
        self._close_trial(trial)
        # No worker writes to this trial again: checkpoints its last worker saved but
        # never reported (it died first), or half-copied ones, would lie there untracked.
        self._files.prune_checkpoints(
            trial.path, [os.path.basename(c.path) for c in trial.checkpoints] + list(self._pinned_names(trial)))
        self._scheduler.on_trial_error(self, trial)
        self._search_alg.on_trial_complete(trial.trial_id, result=trial.last_result or None, error=True)
        self._callbacks.call("on_trial_error", iteration=self._iteration, trials=self._trials, trial=trial)
        if self._fail_fast:
            self._stop_all()

    def _on_worker_death(self, slot: int, exc: BaseException) -> None:
        held = self.trial_executor.worker_died(slot)
        for index, trial in enumerate(held):
            if trial.status == Trial.RUNNING and index == 0:
                self._slot_of.pop(trial.trial_id, None)
                text = f"The worker process running trial {trial} died: {type(exc).__name__}: {exc}"
                self._on_trial_failure(trial, text, None)
            else:
                self._slot_of.pop(trial.trial_id, None)
                if trial.status == Trial.PENDING:
                    self._unassigned[trial.trial_id] = trial
                elif trial.status == Trial.TERMINATED:
                    self._close_trial(trial)

    # ---- control from schedulers and users ---------------------------------------------
    def stop_trial(self, trial: Trial, error: bool = False, exc: Optional[BaseException] = None) -> None:
        """End ``trial`` now: TERMINATED (or ERROR with ``error=True``)."""
        if trial.is_finished():
            return
        held = trial.trial_id in self._slot_of and self.trial_executor.stop_trial(trial)
        self._unassigned.pop(trial.trial_id, None)
        if error:
            trial.set_status(Trial.ERROR)
            trial.error = exc or TuneError(f"Trial {trial} was stopped with an error.")
            self._scheduler.on_trial_error(self, trial)
            self._search_alg.on_trial_complete(trial.trial_id, result=trial.last_result or None, error=True)
            self._callbacks.call("on_trial_error", iteration=self._iteration, trials=self._trials, trial=trial)
        else:
            self._complete(trial)
        if not held:
            self._close_trial(trial)

    def pause_trial(self, trial: Trial, should_checkpoint: bool = True) -> None:
        """Release ``trial``'s worker; it resumes later from its latest checkpoint."""
        if trial.status not in (Trial.RUNNING, Trial.PENDING):
            return
        if trial.trial_id in self._slot_of:
            self.trial_executor.pause_trial(trial)
        self._unassigned.pop(trial.trial_id, None)
        trial.set_status(Trial.PAUSED)

    def reset_trial(
        self,
        trial: Trial,
        new_config: Dict[str, Any],
        new_experiment_tag: str,
        checkpoint: Optional[Checkpoint] = None,
        checkpoint_result: Optional[Dict[str, Any]] = None,
    ) -> None:
        """Let ``trial`` go on with ``new_config`` from ``checkpoint`` (PBT's exploit).

        ``checkpoint`` may be another trial's: it is copied into this trial's directory
        first, and ``checkpoint_result`` (what was reported with it) gives the iteration
        and time the trial continues from.  ``None`` keeps the trial's counters; a class
        trainable whose ``reset_config`` accepts then also keeps its in-memory state.

        Called while the trial waits at a decision point (from a scheduler's
        ``on_trial_result``), the reset happens in place on the trial's worker: no new
        process, no pause.  A RUNNING trial between decision points is paused and takes
        the new config when it resumes; a PAUSED or PENDING one takes it when it starts.
        ``trial.config`` changes when the reset is carried out: a trial that ends before
        that (its pause arrived after its last result) keeps the config it ran with.
        """
        if trial.is_finished():
            raise TuneError(f"Trial {trial} is {trial.status}; only a live trial can be reset.")
        if not isinstance(new_config, dict):
            raise TypeError(f"reset_trial needs the new config as a dict, got {type(new_config).__name__}.")
        source = checkpoint.path if checkpoint is not None else None
        own = {c.path for c in trial.checkpoints}
        foreign = source is not None and source not in own
        if foreign:
            self._pinned[source] = self._pinned.get(source, 0) + 1
        if checkpoint_result is None and source in own:
            checkpoint_result = next(r for c, r in trial.checkpoint_results if c.path == source)
        reset = _Reset(new_config, new_experiment_tag, source, dict(checkpoint_result or {}), foreign)
        for pending in (self._reset_at_decision, self._reset_on_start):
            previous = pending.pop(trial.trial_id, None)
            if previous is not None:  # a later reset replaces an earlier, unapplied one
                self._unpin(previous)
        if trial.trial_id in self._deciding and trial.status == Trial.RUNNING:
            self._reset_at_decision[trial.trial_id] = reset
            return
        self._reset_on_start[trial.trial_id] = reset
        if trial.status == Trial.RUNNING:
            self.pause_trial(trial, should_checkpoint=False)
        elif trial.trial_id in self._slot_of:
            # Queued on a worker with its old spec (or just starting): handed back
            # ("dropped") or paused, then restarted with the reset.
            self.trial_executor.pause_trial(trial)

    def _reset_fields(self, trial: Trial, reset: _Reset) -> Dict[str, Any]:
        """The spec fields of the run segment that carries ``reset`` out.  The trial takes
        the new config now: until then it ran (and may have ended) with the old one."""
        trial.config = reset.config
        trial.experiment_tag = reset.tag
        self._config_json[trial.trial_id] = config_to_json(reset.config)
        iteration = int(reset.result.get("training_iteration", trial.iteration))
        time_total = float(reset.result.get("time_total_s", self._table.get_time_total(trial._row)))
        fields: Dict[str, Any] = {"config": reset.config, "iteration": iteration, "time_total": time_total,
                                  "restore": None, "clone_from": None}
        if reset.source is None:
            iteration, time_total = trial.iteration, self._table.get_time_total(trial._row)
            fields.update(iteration=iteration, time_total=time_total)
        elif reset.foreign:
            index = self._next_checkpoint_index.get(trial.trial_id, len(trial.checkpoints))
            self._next_checkpoint_index[trial.trial_id] = index + 1
            self._cloning[trial.trial_id] = reset
            fields.update(clone_from=reset.source, ckpt_index=index)
        else:
            fields["restore"] = reset.source
            fields["ckpt_index"] = self._next_checkpoint_index.get(trial.trial_id, len(trial.checkpoints))
            rows = self._checkpoint_rows.get(reset.source, trial.results_seen)
            if trial.results_seen > rows:  # its own older checkpoint: the later history goes
                self._rewind(trial, iteration, time_total, rows)
        self._table.set_iteration(trial._row, iteration)
        self._table.set_time_total(trial._row, time_total)
        # Asked again: the new config and iteration may move the scheduler's points.
        fields["decide"] = self._decision_points(trial)
        return fields

    # ---- snapshots and restore -----------------------------------------------------------
    def checkpoint(self, force: bool = False) -> Optional[str]:
        """Write an atomic snapshot of the experiment (trials, TrialTable, searcher,
        scheduler, stopper and callback state); returns its path when one was written.

        ``checkpoint_period="auto"`` keeps snapshot time under ~5% of wall time
        (``FASTTUNE_GLOBAL_CHECKPOINT_S`` overrides the period, in seconds)."""
        if self.experiment_path is None:
            return None
        now = time.monotonic()
        if not force:
            period = self._checkpoint_period
            if period == "auto":
                period = max(_MIN_SNAPSHOT_PERIOD_S, 20.0 * self._snapshot_cost)
            if now - self._last_snapshot < float(period):
                return None
            suggestion = self._search_alg.pending_suggestion
            if suggestion is not None and not suggestion.is_set():
                return None  # saving the searcher would wait for it: the next step saves
        started = time.monotonic()
        path = self._write_snapshot()
        self._snapshot_cost = time.monotonic() - started
        self._last_snapshot = time.monotonic()
        return path

    def _write_snapshot(self) -> str:
        self._files.flush()  # every result the snapshot counts is on disk first
        records, dirnames = self._records, self._dirnames
        packed = []
        for row, trial in enumerate(self._trials):
            record = records[row]
            if record is None:
                dirnames[row] = trial.storage_dirname
                record, pickled = _state.trial_record(
                    trial, self._keysets, self._checkpoint_rows,
                    self._next_checkpoint_index.get(trial.trial_id, len(trial.checkpoints)))
                if pickled:
                    self._pickled_in_records[row] = pickled
                else:
                    self._pickled_in_records.pop(row, None)
                if trial.is_finished() and trial.trial_id not in self._slot_of:
                    # Kept for good: no worker holds it, so no event can change it again
                    # (a restore only starts a new runner).
                    records[row] = record
            packed.append(record)
        experiment = self._experiment
        state = {
            "format": _state.FORMAT_VERSION,
            "timestamp": time.time(),
            "trainable_name": experiment.trainable_name if experiment is not None else None,
            "trial_ids": list(experiment.trial_id_state) if experiment is not None else None,
            "elapsed_s": time.monotonic() - self._start_time,
            "iteration": self._iteration,
            "table": self._table.snapshot(),
            "keysets": self._keysets.keys,
            "dirnames": dirnames,  # beside the records too: a restore reads them all at once
            # What a restore will unpickle from trial records, told before it decodes any.
            "pickled_in_records": self._pickled_in_records,
            "searcher": self._policy_state(self._search_alg, "searcher"),
            "scheduler": self._policy_state(self._scheduler, "scheduler"),
            "stopper": self._stopper.get_state() if self._stopper is not None else None,
            "callbacks": self._callbacks.get_state(),
        }
        if not self._snapshot_seq:
            # An earlier run under the same name left snapshots: this run's come after
            # them (the newest is the one a restore reads; older ones are rotated out).
            self._snapshot_seq = _state.latest_seq(self.experiment_path)
        self._snapshot_seq += 1
        return _state.write_snapshot(self.experiment_path, state, packed, self._snapshot_seq)

    def _policy_state(self, policy: Any, kind: str) -> Any:
        """The policy's saved state for the snapshot; one that cannot be saved (it does
        not pickle, say) leaves it out with one warning, and the sweep goes on."""
        try:
            return _policy_state(policy, kind)
        except Exception as exc:  # noqa: BLE001 - user and library objects fail in many ways
            if kind not in self._unsaved_policies:
                self._unsaved_policies.add(kind)
                logger.warning(
                    "The %s %s cannot save its state (%s: %s); experiment snapshots go on without it, so a "
                    "restored experiment starts this %s afresh.", kind, type(policy).__name__,
                    type(exc).__name__, exc, kind)
            return None

    def resume(
        self,
        resume_unfinished: bool = True,
        resume_errored: bool = False,
        restart_errored: bool = False,
        resume_config: Any = None,
    ) -> List[str]:
        """Load the experiment's latest snapshot from ``experiment_path`` and go on from it.

        Finished trials stay finished.  Unfinished ones continue from their latest
        checkpoint (``resume_unfinished=False``: they are marked TERMINATED); errored ones
        stay ERROR unless ``resume_errored`` (continue from their checkpoint) or
        ``restart_errored`` (start over).  ``resume_config`` (a ``tune.ResumeConfig``)
        replaces the three flags.  The searcher, scheduler, stopper and callbacks take
        their saved state back.  Call after :meth:`setup_experiments`, before the first
        :meth:`step`.  Returns what was loaded with (cloud)pickle, for the caller to tell.
        """
        from fasttune.tune_config import ResumeConfig

        if self._trials:
            raise TuneError("TrialRunner.resume() must come before any trial is added.")
        if self._experiment is None:
            raise TuneError("TrialRunner.resume() needs the experiment: call setup_experiments() first.")
        if resume_config is None:
            resume_config = ResumeConfig.from_flags(resume_unfinished, resume_errored, restart_errored)
        loader = _state.Loader()
        gc_was_enabled = gc.isenabled()
        gc.disable()  # millions of small objects, none cyclic: the collector only costs here
        try:
            return self._resume(loader, resume_config)
        finally:
            if gc_was_enabled:
                gc.enable()

    def _resume(self, loader: Any, resume_config: Any) -> List[str]:
        state, path = _state.load_latest(self.experiment_path, loader)
        try:
            table = core.TrialTable.from_snapshot(state["table"])
        except ValueError as exc:
            raise TuneError(f"The TrialTable in {path} cannot be read ({exc}); the experiment cannot be restored.") from exc
        records = state["trials"]
        if not len(table) == len(records) == len(state["dirnames"]):
            raise TuneError(f"{path} is inconsistent: its table has {len(table)} rows for {len(records)} trials "
                            f"and {len(state['dirnames'])} trial directories; the experiment cannot be restored.")
        self._table = table
        self._results = core.ResultBuffer(table, self._metric)
        self._keysets = _state.KeySets(state["keysets"])
        self._snapshot_seq = _state.latest_seq(self.experiment_path)
        if state.get("trial_ids"):
            self._experiment.set_trial_id_state(*state["trial_ids"])
        self._start_time = time.monotonic() - float(state.get("elapsed_s") or 0.0)
        self._iteration = int(state.get("iteration") or 0)
        pickled = self._restore_policies(state)
        self._records = [None] * len(records)
        self._dirnames = list(state["dirnames"])
        cache: Dict[Any, Any] = {}  # what the restored trials share (see _state.decode_trial)
        ended = []
        for row, record in enumerate(records):
            trial = self._restore_trial(row, record, resume_config, loader, cache)
            if trial is not None:
                ended.append(trial)
        if overrides(self._scheduler, TrialScheduler, "on_trial_add"):
            for trial in self._trials:
                self._scheduler.on_trial_add(self, trial)
        folder = f"not-in-snapshot-{self._snapshot_seq:010d}"
        moved = set_aside_unknown_trial_dirs(
            self.experiment_path, [os.path.join(self.experiment_path, name) for name in self._dirnames], folder)
        if moved:
            logger.warning(
                "%d trial directories in %s are not in its latest snapshot (the interrupted run made them "
                "after it); they are moved to %s, and the searcher makes those trials again.",
                len(moved), self.experiment_path, os.path.join(self.experiment_path, folder))
        for trial in ended:
            self._search_alg.on_trial_complete(trial.trial_id, result=trial.last_result or None)
        self._pickled_in_records = dict(state.get("pickled_in_records") or {})
        in_records = collections.Counter(name for names in self._pickled_in_records.values() for name in names)
        pickled = [f"{count} {name} object(s) in trial records" for name, count in sorted(in_records.items())] + pickled
        counts = self._table.counts()
        logger.info(
            "Restored %d trials from %s: %d to run, %d paused, %d terminated, %d errored.",
            len(records), path, counts[core.PENDING], counts[core.PAUSED], counts[core.TERMINATED],
            counts[core.ERROR])
        return pickled

    def _restore_policies(self, state: Dict[str, Any]) -> List[str]:
        pickled = []
        for kind, policy in (("searcher", self._search_alg), ("scheduler", self._scheduler)):
            saved = state.get(kind)
            if not saved:
                continue
            blobs = saved.values() if isinstance(saved, dict) else [saved]
            names = sorted({name for blob in blobs for name in unpickled_in(blob)})
            _restore_policy_state(policy, kind, saved)
            if names:
                pickled.append(f"in the {kind}'s state ({type(policy).__name__}): {', '.join(names)}")
        if state.get("stopper") is not None and self._stopper is not None:
            self._stopper.set_state(state["stopper"])
        if state.get("callbacks"):
            self._callbacks.set_state(state["callbacks"])
        return pickled

    def _restore_trial(self, row: int, record: bytes, resume_config: Any, loader: Any,
                       cache: Dict[Any, Any]) -> Optional[Trial]:
        """Restore row ``row``; returns the trial if the restore itself ended it (an
        unfinished trial under ``SKIP``), for the searcher to hear."""
        experiment = self._experiment
        status = core.STATUS_NAMES[self._table.get_status(row)]
        if status == Trial.TERMINATED:
            how = resume_config.finished
        elif status == Trial.ERROR:
            how = resume_config.errored
        else:
            how = resume_config.unfinished
        skip, restart = type(how).SKIP, type(how).RESTART
        args = (record, row, self._dirnames[row], self._table, self._keysets, self.experiment_path,
                cache, loader)
        kwargs = dict(trainable_name=experiment.trainable_name, stopping_criterion=experiment.stopping_criterion,
                      max_failures=experiment.max_failures, checkpoint_config=experiment.checkpoint_config)
        if how == skip and status in (Trial.TERMINATED, Trial.ERROR):
            # It stays as it is: decoded when first used, and its record goes into the
            # next snapshot unchanged.
            trial = _state.lazy_trial(*args, **kwargs)
            self._records[row] = _state.as_bin(record)
            self._trials.append(trial)
            self._by_id[trial.trial_id] = trial
            return None
        trial, checkpoint_rows, next_index = _state.decode_trial(*args, **kwargs)
        trial_id = trial.trial_id
        self._checkpoint_rows.update(checkpoint_rows)
        self._next_checkpoint_index[trial_id] = next_index
        if how == skip:
            trial.set_status(Trial.TERMINATED)
        else:
            if how == restart:
                for checkpoint in trial.checkpoints:
                    self._checkpoint_rows.pop(checkpoint.path, None)
                    self._files.remove_checkpoint(checkpoint.path)
                trial.checkpoint_results, trial.checkpoints = [], []
                self._table.set_iteration(row, 0)
                self._table.set_time_total(row, 0.0)
                trial.last_result = {}
            trial.error = trial.error_msg = trial.error_file = None
            if status != Trial.PAUSED or how == restart:
                if status != Trial.PENDING:
                    trial.set_status(Trial.PENDING)
                self._unassigned[trial_id] = trial
            trial.end_time = None
            # The interrupted run may have gone on with it after the snapshot: its files
            # are rewound when it next starts (to the rows its checkpoint counts), and
            # checkpoints the snapshot does not list go now, before any worker writes.
            self._rewind_on_start.add(trial_id)
            prune_checkpoints_now(trial.path, [os.path.basename(c.path) for c in trial.checkpoints])
            if trial.start_time is not None:
                self._config_json[trial_id] = config_to_json(trial.config)  # its params.json is written
        self._trials.append(trial)
        self._by_id[trial_id] = trial
        return trial if how == skip else None

    def update_pending_trial_resources(self, resources: Any) -> None:
        """Give every PENDING trial new resources (e.g. after a restore on another
        cluster): a dict such as ``{"cpu": 2, "gpu": 1}`` or a PlacementGroupFactory."""
        for trial in self._unassigned.values():
            if trial.status != Trial.PENDING:
                continue
            trial.update_resources(resources)
            self.trial_executor.check_feasible(trial)

    def end_experiment_callbacks(self) -> None:
        self._callbacks.call("on_experiment_end", trials=self._trials)

    def cleanup(self) -> None:
        if self._server is not None:
            self._server.shutdown()  # first: no request is taken while the loop winds down
        # No searcher thread outlives fit(), also when the loop ended with an error.
        self._search_alg.close(timeout=_SUGGEST_GRACE_S)
        self.trial_executor.cleanup()
        self._files.close_all()


def _policy_state(policy: Any, kind: str) -> Any:
    """A searcher's ``save_to_dir`` files or a scheduler's ``save`` bytes (None: it keeps
    no state), read back so they go into the one atomic snapshot."""
    import tempfile

    if kind == "scheduler":
        if not overrides(policy, TrialScheduler, "save"):
            return None
        with tempfile.TemporaryDirectory(prefix="fasttune-state-") as tmp:
            path = os.path.join(tmp, "scheduler.pkl")
            policy.save(path)
            with open(path, "rb") as f:
                return f.read()
    if not overrides(policy, SearchAlgorithm, "save_to_dir"):
        return None
    with tempfile.TemporaryDirectory(prefix="fasttune-state-") as tmp:
        if policy.save_to_dir(tmp, "snapshot") is False:
            return None
        files = {}
        for name in os.listdir(tmp):
            with open(os.path.join(tmp, name), "rb") as f:
                files[name] = f.read()
        return files or None


def _restore_policy_state(policy: Any, kind: str, saved: Any) -> None:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="fasttune-state-") as tmp:
        try:
            if kind == "scheduler":
                path = os.path.join(tmp, "scheduler.pkl")
                with open(path, "wb") as f:
                    f.write(saved)
                policy.restore(path)
            else:
                for name, data in saved.items():
                    with open(os.path.join(tmp, name), "wb") as f:
                        f.write(data)
                policy.restore_from_dir(tmp)
        except Exception as exc:
            raise TuneError(
                f"The {kind} {type(policy).__name__} could not take back its saved state "
                f"({type(exc).__name__}: {exc}); restore with the same {kind} the experiment ran with."
            ) from exc
