"""The event loop: one ``step()`` starts a trial or handles one worker reply.

Follow a result: a worker's reply arrives from the executor as EVENT_BATCH, decoded into
the records of ``_protocol`` -> ``_on_batch`` here hands each record to its handler in
``_trial_events`` -> ``_on_results``: the core's ``ResultBuffer.ingest`` fills the
automatic fields and renders the JSON/CSV bytes, the stopper, scheduler, searcher and
callbacks judge the results, and ``TrialFiles.write`` appends the bytes to the trial's
``result.json`` (and ``progress.csv``) on the writer thread.

Beside this file: ``_runner_view`` (the queries schedulers and reporters make),
``_trial_events`` (the event handlers), ``_trial_state`` (the record kept per trial),
``_checkpoint_book`` (retention and pins), ``_resets`` (PBT's exploits in flight),
``_snapshots`` (saving and restoring the experiment), ``trial_executor`` (the contract
with the executor) and ``_protocol`` (the worker protocol).
"""
from __future__ import annotations

import logging
import math
import os
import time
from typing import Any, Dict, List, Optional

from fasttune import _corelib as core
from fasttune._flatten import flatten_dict
from fasttune._atomic import sync_filesystem
from fasttune.callback import CallbackList
from fasttune.checkpoint import Checkpoint
from fasttune.constants import strict_metric_checking
from fasttune.error import TuneError
from fasttune.execution import _protocol as protocol
from fasttune.execution import _snapshots
from fasttune.execution._checkpoint_book import CheckpointBook, KeptHistory
from fasttune.execution._experiment_state import collector_paused
from fasttune.execution._resets import ResetBook
from fasttune.execution._runner_view import RunnerView
from fasttune.execution._trial_events import TrialEventHandlers
from fasttune.execution._trial_state import TrialState
from fasttune.execution._wake import wake_sources
from fasttune.execution.ray_trial_executor import RayTrialExecutor
from fasttune.execution.trial_executor import EVENT_BATCH, EVENT_ERROR, EVENT_START, TrialExecutor
from fasttune.experiment.trial import Trial
from fasttune.logger._experiment_results import ExperimentResultFiles
from fasttune.logger._trial_files import TrialFiles
from fasttune.logger.csv import CSVLoggerCallback
from fasttune.result import RESULT_FILE, read_json_lines
from fasttune.schedulers.trial_scheduler import DecisionPoints, FIFOScheduler, TrialScheduler, overrides
from fasttune.search.search_algorithm import SearchAlgorithm
from fasttune.stopper import Stopper

logger = logging.getLogger(__name__)

# How long a suggestion still being made when the experiment stops is waited for
# before it is abandoned (its thread cannot be stopped; it ends when suggest returns).
_SUGGEST_GRACE_S = 10.0
# Most trials one step starts when several can start at once (see _start_more).
_STARTS_PER_STEP = 64


class TrialRunner(TrialEventHandlers, RunnerView):
    """Runs the trials of one experiment to completion (``ray.tune.execution.trial_runner``).

    ``server_port`` serves the experiment over HTTP from the first :meth:`step` on (a
    :class:`fasttune.web_server.TuneServer` on ``server_host``, 127.0.0.1 by default;
    0 takes any free port): clients list, add and stop trials.  Schedulers see the
    runner through :class:`fasttune.schedulers.TuneControllerView`'s members.

    How ``fit()`` drives it (``impl/tuner_internal.py``; it needs Ray, so it is shown here,
    not run)::

        runner = TrialRunner(search_alg=searcher, experiment_path="/tmp/exp")
        runner.setup_experiments([experiment], total_num_samples)
        while not runner.is_finished():
            runner.step()
        runner.cleanup()
    """

    def __init__(
        self,
        search_alg: Optional[SearchAlgorithm] = None,
        scheduler: Optional[TrialScheduler] = None,
        trial_executor: Optional[TrialExecutor] = None,
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
        storage_sync: Any = None,
        results_store: str = "per_trial",
    ) -> None:
        from fasttune.search.basic_variant import BasicVariantGenerator

        super().__init__(core.TrialTable(mode), metric, search_alg or BasicVariantGenerator(),
                         scheduler or FIFOScheduler(), experiment_path)
        self.trial_executor: TrialExecutor = trial_executor or RayTrialExecutor()
        # The experiment's clock is the executor's (a simulated executor's counts simulated
        # seconds); a deterministic executor needs the searcher asked on the loop's thread.
        self._clock: Any = getattr(self.trial_executor, "clock", time)
        self._search_inline = bool(getattr(self.trial_executor, "deterministic", False))
        self._stopper = stopper
        self._callbacks = CallbackList(callbacks)
        self._fail_fast = fail_fast
        self._time_budget_s = time_budget_s
        self._max_concurrent = max_concurrent_trials
        synchronous = synchronous or os.environ.get("FASTTUNE_SYNCHRONOUS") == "1"
        # Synchronous mode and a stopper need a decision at every result; otherwise the
        # scheduler's own decision points (and its yields at them) hold.
        self._scheduler_points = not (synchronous or stopper is not None)

        self._results = core.ResultBuffer(self._table, metric, require_metric=strict_metric_checking())
        # progress.csv is the CSV logger's file; result.json is always written, unless the
        # experiment keeps all trials' results in one store (RunConfig(results_store=...)).
        if results_store == "experiment" and experiment_path:
            self._files: TrialFiles = ExperimentResultFiles(experiment_path, storage_sync=storage_sync)
        else:
            self._files = TrialFiles(write_csv=any(isinstance(c, CSVLoggerCallback) for c in callbacks or []),
                                     storage_sync=storage_sync,
                                     write_results=getattr(self.trial_executor, "writes_result_files", True))
        self._storage_sync = storage_sync  # the experiment is kept in storage: uploads after snapshots
        self._told_waiting = False  # PENDING trials wait for nodes to come back: said once
        # Whether closing the files saved (or tried to save) the final snapshot, after a failed
        # result write: fit() then does not try the same state again (a second traceback).
        self.final_snapshot_tried = False
        self._checkpoints = CheckpointBook(self._files)
        # One row that counts a trial's metrics up to a point inside a batch (_metrics_after).
        self._metrics_scratch = core.TrialTable(mode)
        self._metrics_scratch.add()
        self._resets = ResetBook(self._checkpoints, self._table)
        period = os.environ.get("FASTTUNE_GLOBAL_CHECKPOINT_S") or checkpoint_period
        self._snapshots = _snapshots.SnapshotWriter(experiment_path, period) if experiment_path else None
        if self._snapshots is not None:
            self._snapshots.checkpoint_uploads = self._checkpoints.uploads
            self._snapshots.checkpoint_histories = self._checkpoints.histories
            if storage_sync is not None:
                self._snapshots.hand_retired = storage_sync.retire_file
        if storage_sync is not None and self._snapshots is not None:
            # Numbered after those storage holds (an earlier run's), as after local ones.
            self._snapshots.seq = storage_sync.newest_stored_seq
        self._policies = _snapshots.Policies(self._search_alg, self._scheduler, stopper, self._callbacks)
        self._iteration = 0
        self._start_time = self._clock.monotonic()
        self._stopped_at: Optional[float] = None
        # Set while the search algorithm makes a trial in the background and the loop
        # should wake when it is ready (see next_trial_to_start).
        self._awaiting: Any = None
        # Whether the step's next_trial_to_start added a trial from the searcher: one that
        # failed at once (a config no worker can be sent) starts nothing, yet the sweep moved.
        self._added_new_trial = False
        self._fatal: Optional[BaseException] = None
        # Trials' directory names, once a trial whose name may repeat another's is added.
        self._dirnames: Optional[set] = None
        # After a restore: the trials a worker held at the snapshot, started again before
        # the scheduler chooses any other (the run never interrupted had them running on).
        self._restart_first: List[Trial] = []
        self.results_processed = 0
        self._server_address = None if server_port is None else (server_host, server_port)

        self._scheduler_sees_results = overrides(self._scheduler, TrialScheduler, "on_trial_result")
        self._searcher_sees_results = overrides(self._search_alg, SearchAlgorithm, "on_trial_result")
        # Whether a completed trial's result is read (the grid and random search's own
        # bookkeeping reads none of it): it is flattened only then.
        searcher_reads = overrides(self._search_alg, SearchAlgorithm, "on_trial_complete") and not (
            isinstance(self._search_alg, BasicVariantGenerator)
            and not overrides(self._search_alg, BasicVariantGenerator, "on_trial_complete"))
        self._completion_read = searcher_reads or overrides(self._scheduler, TrialScheduler, "on_trial_complete")
        self._callbacks_see_results = self._callbacks.wants("on_trial_result")
        self._callbacks_see_batches = self._callbacks.wants("on_trial_result_batch")
        # Several trials start in one step unless something counts steps (a callback's step
        # hooks) or the executor is deterministic (its events keep their one-per-step order).
        self._step_hooks = self._callbacks.wants("on_step_begin") or self._callbacks.wants("on_step_end")
        self._starts_per_step = 1 if (self._search_inline or self._step_hooks) else _STARTS_PER_STEP
        # Tallies of the worker reply being handled, for the executor's hand-ahead depth.
        self._started_here: set = set()
        self._whole_trials = self._starved = 0
        self._handlers = {
            protocol.Results: self._on_results, protocol.Started: self._on_started,
            protocol.Decide: self._on_decide, protocol.Yielded: self._on_yielded,
            protocol.Cloned: self._on_cloned, protocol.CheckpointSaved: self._on_checkpoint_saved,
            protocol.Ended: self._on_trial_end, protocol.Failed: self._on_trial_end,
        }

    # ---- trials ---------------------------------------------------------------------------
    def add_trial(self, trial: Trial, queue: bool = True) -> None:
        """Add a trial; it starts when the scheduler chooses it and resources allow.

        ``queue=False``: it is never queued behind a busy worker's trial (it waits for an
        idle worker or room for a new one), for a trial someone asked to run now.  A trial
        whose config cannot be sent to a worker is added as ERROR, naming the key; a trial
        whose id the runner has already is refused (ValueError): it would get a second row."""
        if trial.trial_id in self._by_id:
            raise ValueError(f"trial {trial.trial_id} was added to this experiment already; "
                             "a trial is added once (make a new Trial to run its config again)")
        self.trial_executor.check_feasible(trial)
        if trial.dirname_may_repeat:
            self._claim_dirname(trial)
        try:
            protocol.wire_config(trial.config)
            not_carried = None
        except protocol.ConfigNotCarried as exc:
            not_carried = exc
        pending = trial._status == Trial.PENDING  # (what _attach puts in its row: read before, it is cheaper)
        trial._attach(self._table, self._table.add())
        self._trials.append(trial)
        self._by_id[trial.trial_id] = trial
        self._states[trial.trial_id] = TrialState(queueable=queue)
        if self._snapshots is not None:
            self._snapshots.add_row()
        if pending and not_carried is None:
            self._unassigned[trial.trial_id] = trial
        self._scheduler.on_trial_add(self, trial)
        if not_carried is not None:
            self._on_config_not_carried(trial, not_carried)

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
        if self._step_hooks:
            self._callbacks.call("on_step_begin", iteration=self._iteration, trials=self._trials)
        self.stop_all_if_budget_spent()
        next_trial = self.next_trial_to_start()
        # The wait also ends when the searcher's suggestion is ready or a TuneServer request came.
        deadline = self._stopped_at + _SUGGEST_GRACE_S if self._stopped_at is not None else (
            None if self._time_budget_s is None else self._start_time + self._time_budget_s)
        wake = wake_sources(self._awaiting, self._server.wake if self._server is not None else None, deadline)
        event = self.trial_executor.get_next_executor_event(next_trial is not None, **wake)
        if event is not None:
            kind, slot, payload = event
            if kind == EVENT_START:
                self._start_trial(next_trial)
                self._start_more()
            elif kind == EVENT_BATCH:
                self._on_batch(slot, payload)
            elif kind == EVENT_ERROR:
                self._on_worker_death(slot, payload)
        served = self._server is not None and self._server.serve_pending()
        if (event is None and not served and next_trial is None and self._awaiting is None
                and not self._added_new_trial and not self._table.held_count()
                and not self.is_finished()):
            self._await_resources_or_raise()
        self.end_step()
        if self._step_hooks:
            self._callbacks.call("on_step_end", iteration=self._iteration, trials=self._trials)
        if self._fatal is not None:
            raise self._fatal

    def end_step(self, check: bool = True) -> None:
        """What ends each step of the loop (:meth:`step`'s, or that of a loop which runs
        trials itself, as ``fasttune.simulation``'s direct loop): the step is counted, and
        unless ``check`` is False (a loop that checks every few steps) a failed result write
        stops the sweep (then cleanup's snapshot) and a snapshot is written when due."""
        self._iteration += 1
        if check:
            self._files.check()
            self.checkpoint()

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

    def stop_all_if_budget_spent(self) -> bool:
        """Stop every trial once ``time_budget_s`` has run out on the experiment's clock (the
        executor's: simulated seconds in a simulation); True once stopping."""
        if not self._stopping_all and self._time_budget_s is not None and self._budget_spent():
            logger.info("Time budget of %.1fs reached; stopping all trials.", self._time_budget_s)
            self._stop_all()
        return self._stopping_all

    def _budget_spent(self) -> bool:
        now = self._clock.monotonic()
        # An executor with a clock of its own moves it to its deadline and no further (a
        # simulation's): reaching it is the budget's end, with no rounding of now - start.
        deadline = getattr(self.trial_executor, "deadline", None)
        return now >= deadline if deadline is not None else now - self._start_time >= self._time_budget_s

    def next_trial_to_start(self) -> Optional[Trial]:
        """The trial to start now, if a worker can take one: the scheduler's choice, else a
        new one from the searcher (added here; it waits PENDING while no worker is free)."""
        self._awaiting = None
        self._added_new_trial = False
        if self._stopping_all:
            self._end_late_suggestion()
            return None
        if self._max_concurrent and self._table.held_count() >= self._max_concurrent:
            return None
        trial = self._held_at_snapshot() if self._restart_first else None
        if trial is None:
            trial = self._scheduler.choose_trial_to_run(self)
        if trial is None and not self._search_alg.is_finished():
            # Never waits: a searcher that makes its trials in the background answers
            # None until its suggestion is ready, and the step wakes for it.  Under a
            # deterministic executor it is asked here, so its time never changes the run.
            new_trial = self._search_alg.next_trial() if self._search_inline else self._search_alg.poll_trial()
            if new_trial is not None:
                self.add_trial(new_trial)
                self._added_new_trial = True
                trial = self._scheduler.choose_trial_to_run(self)
            else:
                self._awaiting = self._search_alg.pending_suggestion
        if trial is None or not self.trial_executor.has_resources_for_trial(trial, self._may_queue(trial)):
            return None
        return trial

    def _held_at_snapshot(self) -> Optional[Trial]:
        """The first restored trial that a worker held at the snapshot and that waits to
        start again (those started or ended meanwhile leave the list)."""
        waiting = self._restart_first
        while waiting:
            trial = waiting[0]
            if trial.status in (Trial.PENDING, Trial.PAUSED) and not self.is_trial_held(trial):
                return trial
            waiting.pop(0)
        return None

    def _start_more(self) -> None:
        """After a start, the trials that can start now start in the same step (up to
        ``_starts_per_step``): a start comes before any worker event anyway, so the order
        is the same, and a sweep of short trials does not pay a whole step per trial.
        Starts can take time (a worker made, a trial's files written): the budget is
        checked before each, so none starts after it ran out."""
        for _ in range(self._starts_per_step - 1):
            if self._fatal is not None or self.stop_all_if_budget_spent():
                return
            trial = self.next_trial_to_start()
            if trial is None:
                return
            self._start_trial(trial)

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

    def _claim_dirname(self, trial: Trial) -> None:
        """No two trials share a directory: a name another trial of this experiment has, or
        one an earlier run left in its directory, gets the first free ``_2``, ``_3``, ...
        (Ray Tune adds a random suffix)."""
        if self._dirnames is None:  # (made when first needed: default names never repeat)
            self._dirnames = {known.storage_dirname for known in self._trials}
        name = base = trial.storage_dirname
        experiment_path, number = trial.local_experiment_path, 1
        while name in self._dirnames or (experiment_path is not None
                                         and os.path.lexists(os.path.join(experiment_path, name))):
            number += 1
            name = f"{base}_{number}"
        if name != base:
            trial._rename_dir(name)
        self._dirnames.add(name)

    def _take_config(self, trial: Trial, state: TrialState) -> None:
        """When the trial's config is new (first start, a PBT reset, ``trial.set_config``),
        its result rows and its params.json carry it from now on, as in Ray Tune."""
        if state.take_config(trial.config, render=self._files.writes_results):
            self._files.init_trial(trial.path, trial.config, trial.trial_id)

    def _start_trial(self, trial: Trial) -> None:
        state = self._states[trial.trial_id]
        if state.prune_on_start:
            state.prune_on_start = False
            self._checkpoints.prune_unrecorded(trial, now=True)
        if state.config_source is None:  # its first start
            self._take_config(trial, state)
        reset, state.reset_on_start = state.reset_on_start, None
        if reset is not None:
            if state.rewind_on_start:  # restored: what the killed run wrote after the snapshot goes
                state.rewind_on_start = False
                self._rewind(trial, trial.iteration, self._table.get_time_total(trial._row), trial.results_seen,
                             KeptHistory(trial.last_result))
            fields = self._resets.spec_fields(trial, state, reset, self._rewind, self.decision_points_wire)
            restore_path, iteration, time_total = fields["restore"], fields["iteration"], fields["time_total"]
        else:
            fields = {}
            restore = trial.checkpoint
            restore_path = restore.path if restore else None
            saved_with = trial.checkpoint_results[-1][1] if restore else {}
            iteration = saved_with.get("training_iteration", 0)
            time_total = saved_with.get("time_total_s", 0.0)
            rows = self._checkpoints.rows.get(restore_path, 0) if restore else 0
            if state.rewind_on_start or trial.iteration != iteration or trial.results_seen != rows:
                state.rewind_on_start = False
                kept = self._checkpoints.kept_history(restore_path, saved_with)
                self._rewind(trial, iteration, time_total, rows, kept)
        self._take_config(trial, state)  # a reset, or a scheduler's trial.set_config, changed it
        spec = protocol.trial_spec(
            trial, self.experiment_path, decide=self.decision_points_wire(trial),
            yields=self._scheduler_points and bool(self._scheduler.pauses_for_waiting_trials(trial)),
            iteration=iteration, time_total=time_total, ckpt_index=state.next_index(trial), restore=restore_path,
            log_to_file=(self._experiment and self._experiment.spec.get("log_to_file")) or (None, None))
        spec.update(fields)
        spec.update(self._checkpoints.restore_fields(spec["restore"]))  # in storage: which upload, kept where
        if not self._files.makes_trial_dirs:
            spec["trial_dir_on_demand"] = True  # made by what needs it: a checkpoint, captured output
        self._unassigned.pop(trial.trial_id, None)  # a PAUSED trial resuming was never in it
        self._table.set_worker_slot(trial._row, self.trial_executor.start_trial(trial, spec, self._may_queue(trial)))

    def _may_queue(self, trial: Trial) -> bool:
        """Whether ``trial`` may wait in a busy worker's queue of next trials."""
        return self._search_alg.asks_ahead and self._states[trial.trial_id].queueable

    def decision_points_wire(self, trial: Trial) -> Any:
        """Where ``trial``'s worker waits for a decision (a ``DecisionPoints`` wire form)."""
        # Only the scheduler's own points let a worker pause a trial for a queued one
        # without asking (``pauses_for_waiting_trials``, the spec's "yield").
        if not self._scheduler_points:
            return DecisionPoints.every_result().to_wire()
        return self._scheduler.decision_points(trial).to_wire()

    def _rewind(self, trial: Trial, iteration: int, time_total: float, rows: int, kept: KeptHistory) -> None:
        """Cut ``trial``'s history back to its first ``rows`` results, which leave it with
        ``kept`` (its last result, its table row's last and best metric): no value it
        dropped is shown, ranked or returned."""
        header = self._files.rewind(trial.path, rows)
        if rows < trial.results_seen:  # (else the trial and its row already count just these results)
            trial.last_result = dict(kept.last_result)
            self._restore_metrics(trial, rows, kept)
        trial.results_seen = rows
        self._table.set_iteration(trial._row, iteration)
        self._table.set_time_total(trial._row, time_total)
        if header is not None:
            self._results.set_csv_header(trial._row, header)

    def _restore_metrics(self, trial: Trial, rows: int, kept: KeptHistory) -> None:
        """The row's last and best metric as ``kept`` says.  Where it does not know them (a
        checkpoint of an older snapshot), they are counted again from the trial's
        result.json's first ``rows`` results; without one (the experiment's results store,
        whose reading costs the whole store) from ``kept.last_result`` alone, so the best
        is the last kept value."""
        row = trial._row
        if kept.metrics is not None:
            self._table.set_metrics(row, *kept.metrics)
            return
        self._table.set_metrics(row, math.nan, math.nan)
        if self._metric is None or rows == 0:
            return
        result_path = os.path.join(trial.path, RESULT_FILE)
        if os.path.isfile(result_path):
            counted = read_json_lines(result_path, on_bad_line="warn")[:rows]
        else:
            counted = [kept.last_result] if kept.last_result else []
        for result in counted:  # (flattened without its config, as ResultBuffer.ingest reads a metric)
            flat = flatten_dict({key: value for key, value in result.items() if key != "config"})
            self._table.record_result(row, 0, 0.0, core.metric_number(flat.get(self._metric)))

    def _release(self, trial: Trial) -> None:
        """No worker holds ``trial`` any more."""
        self._table.set_worker_slot(trial._row, -1)

    # ---- worker events ---------------------------------------------------------------------
    def _on_batch(self, slot: int, events: List[Any]) -> None:
        """One worker reply: each event record goes to its handler, in order."""
        self._whole_trials = self._starved = 0
        self._started_here = set()
        # Trials at a decision point in this batch: reset_trial applies in place (or, for
        # one that yielded its worker, when it resumes), and no interrupt is sent.
        at_point = [self._states[e.trial_id] for e in events if isinstance(e, (protocol.Decide, protocol.Yielded))]
        for state in at_point:
            state.at_decision_point = True
        try:
            for event in events:
                self._handlers[type(event)](slot, self._by_id[event.trial_id], event)
        finally:
            for state in at_point:
                state.at_decision_point = False
        self.trial_executor.adapt_depth(slot, self._whole_trials, self._starved)

    # ---- control from schedulers and users ---------------------------------------------
    def stop_trial(self, trial: Trial, error: bool = False, exc: Optional[BaseException] = None) -> None:
        """End ``trial`` now: TERMINATED (or ERROR with ``error=True``)."""
        if trial.is_finished():
            return
        held = self.is_trial_held(trial) and self.trial_executor.stop_trial(trial)
        self._unassigned.pop(trial.trial_id, None)
        if error:
            self._end_with_error(trial, exc or TuneError(f"Trial {trial} was stopped with an error."))
        else:
            self._complete(trial)
        if not held:
            self._close_trial(trial)

    def pause_trial(self, trial: Trial, should_checkpoint: bool = True) -> None:
        """Release ``trial``'s worker; it resumes later from its latest checkpoint (a class
        trainable saves one when paused, unless ``should_checkpoint`` is False)."""
        if trial.status not in (Trial.RUNNING, Trial.PENDING):
            return
        if self.is_trial_held(trial):
            self.trial_executor.pause_trial(trial, should_checkpoint)
        self._unassigned.pop(trial.trial_id, None)
        trial.set_status(Trial.PAUSED)

    def reset_trial(self, trial: Trial, new_config: Dict[str, Any], new_experiment_tag: str,
                    checkpoint: Optional[Checkpoint] = None,
                    checkpoint_result: Optional[Dict[str, Any]] = None) -> None:
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
        state = self._states[trial.trial_id]
        try:
            reset = self._resets.make(trial, new_config, new_experiment_tag, checkpoint, checkpoint_result)
        except protocol.ConfigNotCarried as exc:
            self._on_reset_not_carried(trial, exc)
            return
        at_point = state.at_decision_point and trial.status == Trial.RUNNING
        self._resets.hold(state, reset, at_decision_point=at_point)
        if at_point:
            return
        if trial.status == Trial.RUNNING:
            self.pause_trial(trial)
        elif self.is_trial_held(trial):
            # Queued on a worker with its old spec (or just starting): handed back
            # ("dropped") or paused, then restarted with the reset.
            self.trial_executor.pause_trial(trial)

    def _on_reset_not_carried(self, trial: Trial, error: BaseException) -> None:
        """``reset_trial`` gave ``trial`` a config no worker can be sent: that trial ends
        as ERROR with the config it ran with (its worker stops it), as a new trial with
        such a config does; the sweep goes on (unless ``fail_fast``)."""
        self._fail_running_trial(trial, f"Trial {trial} could not be reset: {error}", error)

    def _fail_running_trial(self, trial: Trial, text: str, error: Optional[BaseException], ended: bool = False,
                            fatal: bool = False) -> None:
        """The driver fails ``trial`` for ``error`` (``text`` says why, in its error.txt
        too): ERROR, its worker stops it (``ended``: it ended already, and its caller
        closes it); the sweep goes on (unless ``fail_fast``), or with ``fatal`` ends with
        that failure, the other trials left as they are."""
        failure = TuneError(text)
        failure.__cause__ = error
        self._record_error(trial, text, failure)
        trial.end_time = self._clock.time()
        if ended:
            self._end_with_error(trial, failure)
        else:
            self.stop_trial(trial, error=True, exc=failure)
        if fatal:
            self._fatal = failure
            return
        if self._fail_fast == "raise" and self._fatal is None:  # (the first failure is the one raised)
            self._fatal = failure
        if self._fail_fast:
            self._stop_all()

    def _await_resources_or_raise(self) -> None:
        """Nothing runs and nothing can start: wait for nodes to come back if the pending
        trials fitted the cluster before (telling why once), else raise why it is stuck."""
        pending = next(iter(self._unassigned.values()), None)
        why = self.trial_executor.await_resources(pending) if pending is not None else None
        if why is None:
            raise self._stall_error()
        if not self._told_waiting:
            self._told_waiting = True
            logger.warning(why)

    # ---- snapshots and restore -----------------------------------------------------------
    def checkpoint(self, force: bool = False) -> Optional[str]:
        """Write an atomic snapshot of the experiment (trials, TrialTable, searcher,
        scheduler, stopper and callback state); returns its path when one was written.

        ``checkpoint_period="auto"`` keeps snapshot time under ~5% of wall time
        (``FASTTUNE_GLOBAL_CHECKPOINT_S`` overrides the period, in seconds)."""
        writer = self._snapshots
        if writer is None or not (force or writer.due(self._search_alg.pending_suggestion)):
            return None
        started = time.monotonic()
        self._files.flush()  # every result the snapshot counts is on disk first
        if self._files.unwritten_trial_dirs:
            self._count_only_written_results()
        # Durable before the snapshot names them: params.json, results, and the checkpoints
        # workers persisted (all in the experiment directory), in one file-system sync.
        if os.path.isdir(writer.experiment_path):  # else nothing is written there yet
            sync_filesystem(writer.experiment_path)
        path = writer.write(self._trials, self._states, self._checkpoints.rows, self._table, self._policies,
                            experiment=self._experiment, elapsed_s=self._clock.monotonic() - self._start_time,
                            iteration=self._iteration, started=started,
                            results_position=self._files.position())
        if self._storage_sync is not None:
            self._storage_sync.snapshot_written(path)
        return path

    def _count_only_written_results(self) -> None:
        """After a failed result write: each trial that lost results is cut back to the
        whole rows on disk, forgets checkpoints saved after them, and (if it had ended)
        becomes PENDING, so that a restore continues it from its latest kept checkpoint and
        every result ends up in its files exactly once."""
        unwritten = self._files.unwritten_trial_dirs
        for row, trial in enumerate(self._trials):
            if trial.path not in unwritten:
                continue
            rows = self._files.keep_whole_rows(trial.path)
            self._checkpoints.forget_after(trial, rows)
            trial.results_seen = rows
            if trial.status == Trial.TERMINATED:
                trial.set_status(Trial.PENDING)
            self._snapshots.forget_record(row)
        unwritten.clear()

    def resume(self, resume_unfinished: bool = True, resume_errored: bool = False, restart_errored: bool = False,
               resume_config: Any = None) -> List[str]:
        """Load the experiment's latest snapshot from ``experiment_path`` and go on from it.

        Finished trials stay finished.  Unfinished ones continue from their latest
        checkpoint (``resume_unfinished=False``: they are marked TERMINATED); errored ones
        stay ERROR unless ``resume_errored`` (continue from their checkpoint) or
        ``restart_errored`` (start over).  ``resume_config`` (a ``tune.ResumeConfig``)
        replaces the three flags.  The searcher, scheduler, stopper and callbacks take
        their saved state back.  A trial whose STOP or PAUSE had not reached its worker at
        the snapshot is stopped (it counts as finished for ``resume_config``) or paused, as
        it was to be.  Call after :meth:`setup_experiments`, before the first
        :meth:`step`.  Returns what was loaded with (cloud)pickle, for the caller to tell.
        """
        from fasttune.tune_config import ResumeConfig

        if self._trials:
            raise TuneError("TrialRunner.resume() must come before any trial is added.")
        if self._experiment is None:
            raise TuneError("TrialRunner.resume() needs the experiment: call setup_experiments() first.")
        if resume_config is None:
            resume_config = ResumeConfig.from_flags(resume_unfinished, resume_errored, restart_errored)
        with collector_paused():  # millions of small objects, none cyclic: the collector only costs here
            return self._adopt(_snapshots.restore(self._snapshots, self._experiment, resume_config, self._policies,
                                                  self._checkpoints, self._files))

    def _adopt(self, restored: Any) -> List[str]:
        """Go on from what a restore read back; returns what it unpickled."""
        self._table = restored.table
        self._results = core.ResultBuffer(self._table, self._metric, require_metric=strict_metric_checking())
        self._resets = ResetBook(self._checkpoints, self._table)
        self._start_time = self._clock.monotonic() - restored.elapsed_s
        self._iteration = restored.iteration
        self._trials.extend(restored.trials)
        self._by_id.update(restored.by_id)
        self._states.update(restored.states)
        self._unassigned.update(restored.unassigned)
        held = [(trial, trial.status) for trial in restored.held]
        if overrides(self._scheduler, TrialScheduler, "on_trial_add"):
            for trial in self._trials:
                self._scheduler.on_trial_add(self, trial)
        self._carry_out_decisions(restored.decisions)
        # One its scheduler paused or stopped just now (that decision was on its way at the
        # snapshot) is not restarted first: it waits for the scheduler, as it was to.
        self._restart_first = [trial for trial, status in held if trial.status == status]
        for trial in restored.ended:
            # (Flattened and done, as _complete gives it.)
            last = trial.last_result
            self._search_alg.on_trial_complete(
                trial.trial_id, result=self._states[trial.trial_id].flatten_result(dict(last, done=True)) if last else None)
        return restored.pickled

    def _carry_out_decisions(self, decisions: Dict[str, str]) -> None:
        """Restored trials whose STOP or PAUSE had not reached their worker at the snapshot
        (they came back PENDING) stop or pause now, as they were to, rather than run on past
        that point: a stopped one's scheduler, searcher and callbacks hear it complete."""
        for trial_id, decision in decisions.items():
            if decision == TrialScheduler.PAUSE:
                self.pause_trial(self._by_id[trial_id])
            else:
                self.stop_trial(self._by_id[trial_id])

    def update_pending_trial_resources(self, resources: Any) -> None:
        """Give every PENDING trial new resources (e.g. after a restore on another
        cluster): a dict such as ``{"cpu": 2, "gpu": 1}`` or a PlacementGroupFactory."""
        for trial in self._unassigned.values():
            if trial.status != Trial.PENDING:
                continue
            trial.update_resources(resources)
            self.trial_executor.check_feasible(trial)

    def end_experiment_callbacks(self, after_error: bool = False) -> None:
        """``on_experiment_end`` of every callback; ``after_error``: the experiment failed
        already, so each is called whatever the others do (their failures are logged)."""
        if after_error:
            self._callbacks.call_each("on_experiment_end", trials=self._trials)
        else:
            self._callbacks.call("on_experiment_end", trials=self._trials)

    def cleanup(self) -> None:
        try:
            if self._server is not None:
                self._server.shutdown()  # first: no request is taken while the loop winds down
            # No searcher thread outlives fit(), also when the loop ended with an error.
            self._search_alg.close(timeout=_SUGGEST_GRACE_S)
            self.trial_executor.cleanup()
        except Exception:  # (a second Ctrl-C exits at once)
            # The files still close (what is staged reaches disk, the writer thread ends); a
            # write failure seen then is logged, as the error that came first is the one raised.
            try:
                self._close_files()
            except Exception:  # noqa: BLE001 - the error above is the one raised
                logger.exception("Closing the result files after the error raised failed too.")
            raise
        self._close_files()

    def _close_files(self) -> None:
        try:
            self._files.close_all()
        except OSError:
            # A result write failed, told here for the first time: the final snapshot
            # (counting only what is on disk) still comes first.
            try:
                self.checkpoint(force=True)
            except Exception:  # noqa: BLE001 - the write failure is the error raised
                logger.exception("Saving the experiment's state after a failed result write failed too.")
            # (Not set when a Ctrl-C cut the snapshot short: fit() then tries it.)
            self.final_snapshot_tried = True
            raise
