"""How each worker event changes the experiment: the handlers the runner's dispatch
(``TrialRunner._on_batch``) calls, one per record kind of ``_protocol``, and what a
trial's end, failure or lost worker sets off.

A result's path: ``_on_results`` hands the batch to the core's ``ResultBuffer.ingest``
(automatic fields, stop criteria, the rendered JSON/CSV bytes), records the checkpoints
that came with it, lets the stopper, scheduler, searcher and callbacks judge each result
(``_judge_batch``: ``_decide``, ``_tell_callbacks``), and appends the bytes to the trial's files on
the writer thread (``TrialFiles.write``: ``result.json``, ``progress.csv``).  ``judge_results`` and
its neighbours do the same for a loop that makes complete results itself (the simulation's
direct loop).

This is a part of :class:`~fasttune.execution.trial_runner.TrialRunner` (a mixin): the
state it uses is created in ``TrialRunner.__init__`` and ``RunnerView.__init__``.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Dict, List, Optional, Tuple

from fasttune.checkpoint import Checkpoint
from fasttune.error import TuneError
from fasttune.execution import _protocol as protocol
from fasttune.execution._checkpoint_book import KeptHistory
from fasttune.execution._trial_state import reads_as_flattened
from fasttune.experiment.trial import Trial, failure_text
from fasttune.schedulers._common import MetricNotANumber
from fasttune.schedulers.trial_scheduler import TrialScheduler

logger = logging.getLogger(__name__)

_WORKER_DECISION = {
    TrialScheduler.CONTINUE: protocol.CONTINUE,
    TrialScheduler.NOOP: protocol.CONTINUE,
    TrialScheduler.STOP: protocol.STOP,
    TrialScheduler.PAUSE: protocol.PAUSE,
}


class TrialEventHandlers:
    """The runner's handlers of worker events (see the module docstring)."""

    def _on_started(self, slot: int, trial: Trial, event: protocol.Started) -> None:
        self._started_here.add(trial.trial_id)
        state = self._states[trial.trial_id]
        state.node = event.node_id or event.node_ip
        state.decision_in_flight = None  # one of a run that failed before its end
        restored = trial.checkpoint is not None
        if trial.status in (Trial.PENDING, Trial.PAUSED):
            trial.set_status(Trial.RUNNING)
        trial.start_time = trial.start_time or event.start_time
        self._results.open_trial(
            trial._row, trial.trial_id, state.config_json, trial.stopping_criterion or None,
            start_time=event.start_time, hostname=event.hostname, node_ip=event.node_ip, pid=event.pid)
        hook = "on_trial_restore" if restored else "on_trial_start"
        self._callbacks.call(hook, iteration=self._iteration, trials=self._trials, trial=trial)

    def _on_results(self, slot: int, trial: Trial, event: protocol.Results) -> None:
        # (array("d", ...) would be the same floats, but it is an audited call: with an audit
        # hook installed, as filelock installs one, each costs a Python call.)
        times = memoryview(event.times).cast("d").tolist()
        checkpoints = event.checkpoints
        table, row = self._table, trial._row
        # The trial's history before the batch, which a cut inside it goes back to (plain
        # values: a NamedTuple made per batch costs more than the rest of this).
        last_before, metrics_before = trial.last_result, (table.get_last_metric(row), table.get_best_metric(row))
        ingested = self._results.ingest(row, event.metrics, times, checkpoints or None)
        results = ingested.results
        count = len(results)
        self.results_processed += count
        trial.results_seen += count
        config = trial.config
        for result in results:  # as Ray Tune's results carry it (result.json has it once already)
            result["config"] = config
        if ingested.last is not None:
            trial.last_result = ingested.last
        saved: Dict[int, Checkpoint] = {}  # by result index: callbacks hear of each after its result
        saved_any = False  # retention applies once the batch is judged (and maybe cut)
        if checkpoints:
            logged_before = trial.results_seen - count
            state, tokens = self._states[trial.trial_id], event.tokens
            indices = [index for index in sorted(checkpoints) if index < count]
            # Each is saved with its result, the trial's own last then.
            metrics = self._metrics_after(metrics_before, ingested.metric_values, [index + 1 for index in indices])
            for index, metrics_then in zip(indices, metrics):
                saved_any = True
                saved[index] = self._checkpoints.record(trial, state, checkpoints[index], results[index],
                                                        logged_before + index + 1, tokens.get(index, ""), state.node,
                                                        retain=False, metrics=metrics_then)
        # Late results of a trial the driver already ended are logged, not judged.
        judged = ingested.error is None and trial.status == Trial.RUNNING

        def write_batch() -> None:
            # The batch is counted (results_seen, its checkpoints) above: it reaches the
            # trial's files even when a scheduler, searcher or callback raised (a Ctrl-C
            # included), or the final snapshot would count results no file holds.
            if count and results[-1].get("done") is True:
                # The result a scheduler or stopper ended the trial on says so on disk too
                # (at a decision point it is the batch's last; between them, it stays false),
                # also when a callback raised after the decision (_decide marked it first).
                ingested.mark_last_done()
            self._files.write(trial.path, ingested.json_bytes, ingested.csv_bytes)

        try:
            decision = self._judge_batch(trial, results, times, judged, last_before, metrics_before,
                                         ingested.metric_values, saved, write_batch)
        except MetricNotANumber as error:
            # One trial's bad result, not the scheduler's fault: that trial fails (the
            # results from the bad one on are not counted), the sweep goes on.
            self._fail_running_trial(trial, str(error), error)
            return
        finally:
            # Also when the write raised (e.g. a Ctrl-C while waiting for the writer): the
            # snapshot on the way out counts what it leaves.
            if saved_any:
                self._checkpoints.retain(trial)
        if self._callbacks_see_batches and results:
            self._callbacks.call("on_trial_result_batch", iteration=self._iteration, trials=self._trials, trial=trial,
                                 results=results, times=times[:count])
        if ingested.error is not None:
            # A result the driver refuses (strict metric checking) ends the run, as in Ray
            # Tune: its trial fails saying why (error.txt, ERROR), the other trials are left
            # as they are, so the final snapshot keeps them for a restore to run.
            self._fail_running_trial(trial, ingested.error, None, fatal=True)
            return
        if not judged or ingested.stopped:
            return  # at its stop criterion the worker ends the trial itself
        if decision in (TrialScheduler.STOP, TrialScheduler.PAUSE):
            # Answered at the trial's decision point when it is blocked there; the
            # interrupt covers a decision taken between decision points.
            state = self._states[trial.trial_id]
            state.decision = decision
            if state.at_decision_point:
                return  # its Decide event follows in this batch: the answer carries it
            if decision == TrialScheduler.STOP:
                self.trial_executor.stop_trial(trial)
            else:
                self.trial_executor.pause_trial(trial)

    def _judge_batch(self, trial: Trial, results: List[Dict[str, Any]], times: List[float], judged: bool,
                     last_before: Dict[str, Any], metrics_before: Tuple[float, float], metric_values: List[float],
                     saved: Dict[int, Checkpoint], write: Any = None,
                     flat_results: Optional[List[Dict[str, Any]]] = None) -> str:
        """Let the stopper, scheduler and searcher judge a batch of ``trial``'s counted
        ``results`` (``judged``: it may be; each is decided on until one ends the trial;
        ``flat_results``: each flattened, where the caller made them), and the callbacks hear
        each and the checkpoints saved with it (``saved``, by result index), in order; the
        batch's decision.  ``write()`` (its files) comes after, also when one of them raised;
        ``last_before``, ``metrics_before``: the trial's last result and table row's (last,
        best) metric before the batch, and ``metric_values`` what the row recorded of each
        result, for a cut."""
        count = len(results)
        decision = TrialScheduler.CONTINUE
        judging = judged and (self._scheduler_sees_results or self._searcher_sees_results
                              or self._callbacks_see_results or self._stopper is not None)
        decided = 0  # results of the batch the stopper, scheduler and searcher have judged
        deciding = False
        judged_only: Optional[int] = None  # after an error inside a policy: how many results of the batch stay counted
        try:
            if judging:
                for index, result in enumerate(results):
                    # Once a decision ends the trial, later results of the batch (already
                    # reported) still reach searchers and callbacks.
                    deciding = True
                    verdict = self._decide(trial, result, decide=decision == TrialScheduler.CONTINUE,
                                           flat=flat_results[index] if flat_results is not None else None)
                    decided = index + 1
                    deciding = False
                    if decision == TrialScheduler.CONTINUE and verdict != TrialScheduler.CONTINUE:
                        decision = verdict
                    self._tell_callbacks(trial, result)
                    checkpoint = saved.get(index)
                    if checkpoint is not None:
                        self._checkpoint_callbacks(trial, checkpoint)
                        del saved[index]  # (kept while they run: _tell_rest finishes a hook that raised)
            if saved:  # nothing judged the batch: the callbacks hear only its checkpoints
                self._tell_checkpoints(trial, [saved[index] for index in sorted(saved)])
        except BaseException as error:
            # Taken first, for every error (it frees the traceback a callback's failure holds):
            # a callback raising in _decide_rest (a trial HyperBand's halving stops ends there)
            # would replace it.
            failure = self._callbacks.take_failure(error)
            # A callback (or a Ctrl-C between policies) raised before the batch was judged to
            # its end: the snapshot on the way out counts the whole batch and its checkpoints,
            # so the policies judge the rest now.  Not when the error came while a policy
            # judged a result (its own, or a Ctrl-C then): which of them heard it is unknown,
            # and one that hears a result twice counts it twice; it and the results after it
            # are then not counted (see _count_judged_only), so a restore reports them again.
            if judging and deciding:
                # Only while the trial goes on: once a STOP or PAUSE is taken (on this
                # result too), nothing would report the rest again.
                if trial.status == Trial.RUNNING and self._states[trial.trial_id].decision_in_flight is None:
                    judged_only = decided
            elif judging:
                try:
                    if decided < count:
                        self._decide_rest(trial, results[decided:], decision)
                    # Counted and logged, the rest (and the hook that raised, on the last result
                    # too) is never reported again, so the callbacks hear it; not after a second
                    # Ctrl-C, which asks to exit at once (as in Ray Tune, no callback runs then).
                    if isinstance(error, Exception):
                        self._tell_rest(trial, results, decided, saved, times, failure)
                finally:
                    self._callbacks.take_failure(error)  # forgets one a callback left in _decide_rest
            raise
        finally:
            try:
                if write is not None:
                    write()
            finally:
                if judged_only is not None:
                    self._count_judged_only(trial, results, judged_only, last_before, metrics_before, metric_values)
        return decision

    def keys_judged_alone(self) -> Optional[Tuple[str, ...]]:
        """The result keys the scheduler reads (its ``result_keys``) where no other policy
        reads a result's flattened form (no stopper, no searcher that hears results): at
        those keys, a result that reads as its flattened copy is judged as it is; None
        where the scheduler may read any key, or another policy needs the copy."""
        if self._stopper is None and self._scheduler_sees_results and not self._searcher_sees_results:
            return self._scheduler.result_keys()
        return None

    def _decide(self, trial: Trial, result: Dict[str, Any], decide: bool = True,
                flat: Optional[Dict[str, Any]] = None) -> str:
        """The stopper's and scheduler's decision on ``result`` (CONTINUE unless
        ``decide``; ``flat``: it flattened, if the caller has it), which the searcher then
        hears of; callbacks do not hear of it here."""
        # A scheduler that reads only keys the result holds as its flattened copy would
        # (ASHA's time and metric) judges the result itself: no copy is made for it, unless
        # the searcher needs one anyway.
        as_is = flat is None and decide and reads_as_flattened(result, self.keys_judged_alone())
        if flat is None and not as_is:
            flat = self._states[trial.trial_id].flatten_result(result)
        decision = TrialScheduler.CONTINUE
        if decide:
            if self._stopper is not None and self._stopper(trial.trial_id, result):
                decision = TrialScheduler.STOP
            elif result.get("done"):
                # As Ray Tune: the trial's last result ends it; the scheduler hears of it
                # in on_trial_complete, and never decides on it (an exploit there never runs).
                decision = TrialScheduler.STOP
            elif self._scheduler_sees_results:
                decision = self._scheduler.on_trial_result(self, trial, result if as_is else flat)
            if decision == TrialScheduler.STOP:
                result["done"] = True  # as Ray Tune passes it on: this is the trial's last
            if decision in (TrialScheduler.STOP, TrialScheduler.PAUSE) and trial.status == Trial.RUNNING:
                # Kept until the trial's end is seen (a snapshot until then has it RUNNING),
                # before a callback can raise: a restore carries it out, not the trial on.
                state = self._states[trial.trial_id]
                if state.decision_in_flight is None:  # the worker acts on the first
                    state.decision_in_flight = (decision, result.get("training_iteration"))
        # A trial the scheduler ended while judging this result (e.g. a reset it could not
        # carry out) is complete for the searcher already.
        if decision != TrialScheduler.STOP and self._searcher_sees_results and not trial.is_finished():
            if flat is None:
                flat = self._states[trial.trial_id].flatten_result(result)
            self._search_alg.on_trial_result(trial.trial_id, flat)
        if self._stopper is not None and self._stopper.stop_all():
            self._stop_all()
        return decision

    def _tell_callbacks(self, trial: Trial, result: Dict[str, Any]) -> None:
        if self._callbacks_see_results:
            self._callbacks.call("on_trial_result", iteration=self._iteration, trials=self._trials, trial=trial, result=result)

    def _decide_rest(self, trial: Trial, results: List[Dict[str, Any]], decision: str) -> None:
        """Let the stopper, scheduler and searcher judge ``results``, the rest of a batch
        whose judging raised (``decision``: the batch's so far), as they would have: a
        STOP or PAUSE they take is in flight (``TrialState.decision_in_flight``) and the
        last result says ``done`` if it ends the trial, so that a restore goes on from the
        batch's end exactly.  Callbacks hear of the results afterwards (``_tell_rest``; they
        may hear a trial end a scheduler's decision brings about first, e.g. HyperBand's
        halving); a policy or callback raising here leaves the rest unjudged (the error
        already on its way is the one raised, this one is logged)."""
        try:
            for result in results:
                verdict = self._decide(trial, result, decide=decision == TrialScheduler.CONTINUE)
                if decision == TrialScheduler.CONTINUE:
                    decision = verdict
        except Exception:  # noqa: BLE001 - the batch's own error is the one raised
            logger.exception("Judging the rest of trial %s's results after the error below failed too.", trial)

    def _tell_rest(self, trial: Trial, results: List[Dict[str, Any]], told: int, saved: Dict[int, Checkpoint],
                   times: List[float], failure: Optional[Tuple[str, int, TuneError]]) -> None:
        """After a callback raised on ``results[told - 1]`` or its checkpoint (``failure``,
        from ``CallbackList.take_failure``; None when it was no callback's): the callbacks
        after it hear what it failed on (``CallbackList.finish``), all hear that result's
        checkpoint (or ``on_trial_save``) if they had not, then each later result and its
        checkpoint, in order, then the batch (``on_trial_result_batch``); each callback
        whatever the others do (failures are logged: the first error is the one raised)."""
        callbacks, common = self._callbacks, dict(iteration=self._iteration, trials=self._trials, trial=trial)
        call = callbacks.call_each
        for index in range(max(told - 1, 0), len(results)):
            checkpoint = saved.pop(index, None)
            if index >= told:
                call("on_trial_result", result=results[index], **common)
            elif callbacks.finish(failure, "on_checkpoint", checkpoint=checkpoint, **common):
                call("on_trial_save", **common)
                continue
            elif callbacks.finish(failure, "on_trial_save", **common):
                continue
            else:
                callbacks.finish(failure, "on_trial_result", result=results[index], **common)
            if checkpoint is not None:
                call("on_checkpoint", checkpoint=checkpoint, **common)
                call("on_trial_save", **common)
        call("on_trial_result_batch", results=results, times=times[:len(results)], **common)

    def _count_judged_only(self, trial: Trial, results: List[Dict[str, Any]], kept: int,
                           last_before: Dict[str, Any], metrics_before: Tuple[float, float],
                           metric_values: List[float]) -> None:
        """An error inside a policy (its own, or a Ctrl-C) stopped the judging of this batch
        at ``results[kept]``: the trial counts only its results before that one (its files,
        checkpoints, iteration, last result and table metrics; ``last_before``,
        ``metrics_before``: its last result and metrics before the batch), so that a
        restore goes on from its latest checkpoint within them and the policies judge the
        rest, the one being judged included, when it is reported again, rather than going
        on past results no policy judged.  (Which policies heard that one is unknown; a
        policy that had changed its state on it and then raised hears it twice after the
        restore, which no cut can prevent.)"""
        last = results[kept - 1] if kept else last_before
        rows = trial.results_seen - (len(results) - kept)
        self._checkpoints.forget_after(trial, rows)
        metrics = self._metrics_after(metrics_before, metric_values, [kept])[0]
        self._rewind(trial, last.get("training_iteration", 0), last.get("time_total_s", 0.0), rows,
                     KeptHistory(last, metrics))

    def _metrics_after(self, before: Tuple[float, float], metric_values: List[float],
                       counts: List[int]) -> List[Tuple[float, float]]:
        """The (last, best) metric a table row that held ``before`` holds once it has
        recorded the first ``count`` of ``metric_values`` (what the row recorded of a
        batch's results), for each of ``counts`` (ascending): a scratch row of the core's
        table records them, by its rule."""
        if self._metric is None:
            return [before] * len(counts)  # (every value is nan)
        scratch = self._metrics_scratch
        scratch.set_metrics(0, *before)
        record = scratch.record_result
        found, done = [], 0
        for count in counts:
            for value in metric_values[done:count]:
                record(0, 0, 0.0, value)
            done = count
            found.append((scratch.get_last_metric(0), scratch.get_best_metric(0)))
        return found

    def _on_decide(self, slot: int, trial: Trial, event: protocol.Decide) -> None:
        state = self._states[trial.trial_id]
        self._starved += event.starved
        state.at_decision_point = False  # answered now: a later reset pauses it
        decision, state.decision = state.decision or TrialScheduler.CONTINUE, None
        if trial.status != Trial.RUNNING:
            decision = TrialScheduler.PAUSE if trial.status == Trial.PAUSED else TrialScheduler.STOP
        reset, state.reset_at_decision = state.reset_at_decision, None
        if reset is not None and decision in (TrialScheduler.CONTINUE, TrialScheduler.NOOP):
            fields = self._resets.spec_fields(trial, state, reset, self._rewind, self.decision_points_wire)
            self._take_config(trial, state)
            self.trial_executor.reset_trial(trial, trial.config, trial.experiment_tag, fields)
            return
        if reset is not None:
            state.reset_on_start = reset  # applies when the trial resumes
        self.trial_executor.send_decision(slot, trial.trial_id, _WORKER_DECISION[decision])

    def _on_yielded(self, slot: int, trial: Trial, event: protocol.Yielded) -> None:
        # Paused by its worker at this decision point for the trial queued behind it (its
        # Ended("paused") follows): the decision taken on the results still holds.  PAUSE
        # is what was expected; a reset waits for the resume; a CONTINUE resumes it later
        # from this point's checkpoint.
        state = self._states[trial.trial_id]
        state.at_decision_point = False
        decision, state.decision = state.decision or TrialScheduler.CONTINUE, None
        if state.reset_at_decision is not None:
            state.reset_on_start, state.reset_at_decision = state.reset_at_decision, None
        if decision == TrialScheduler.STOP and trial.status == Trial.RUNNING:
            self._complete(trial)  # its "paused" event then closes it

    def _on_cloned(self, slot: int, trial: Trial, event: protocol.Cloned) -> None:
        state = self._states[trial.trial_id]
        reset, state.cloning = state.cloning, None
        try:
            # Saved with the donor's result; a cut back to it keeps the trial's own history.
            checkpoint = self._checkpoints.record(
                trial, state, event.name, reset.result if reset else trial.last_result, trial.results_seen,
                event.token, state.node, metrics=self._row_metrics(trial),
                own_last=trial.last_result if reset else None)
            self._tell_checkpoints(trial, [checkpoint])
        finally:  # the donor's checkpoint is unpinned also when a callback raised
            self._resets.release(reset)

    def _on_checkpoint_saved(self, slot: int, trial: Trial, event: protocol.CheckpointSaved) -> None:
        # Saved after the trial's last reported result (at end, or before a pause).
        state = self._states[trial.trial_id]
        checkpoint = self._checkpoints.record(trial, state, event.name, trial.last_result, trial.results_seen,
                                              event.token, state.node, metrics=self._row_metrics(trial))
        self._tell_checkpoints(trial, [checkpoint])

    def _row_metrics(self, trial: Trial) -> Tuple[float, float]:
        """``trial``'s table row's (last, best) metric now."""
        row = trial._row
        return self._table.get_last_metric(row), self._table.get_best_metric(row)

    def _checkpoint_callbacks(self, trial: Trial, checkpoint: Checkpoint) -> None:
        # As Ray Tune: on_checkpoint, then on_trial_save, once the checkpoint is recorded.
        self._callbacks.call("on_checkpoint", iteration=self._iteration, trials=self._trials, trial=trial, checkpoint=checkpoint)
        self._callbacks.call("on_trial_save", iteration=self._iteration, trials=self._trials, trial=trial)

    def _tell_checkpoints(self, trial: Trial, checkpoints: List[Checkpoint]) -> None:
        """The callbacks hear each of ``checkpoints``, in order, outside the judging of a
        batch (whose errors ``_tell_rest`` finishes): at a trial's end or pause, a clone,
        or a batch nothing judges.  As there, after a callback raised, the callbacks after
        it hear what it failed on, all hear that checkpoint's ``on_trial_save`` if they had
        not, and each the checkpoints after it, each whatever the others do (failures are
        logged); then the first error is raised."""
        callbacks, common = self._callbacks, dict(iteration=self._iteration, trials=self._trials, trial=trial)
        for position, checkpoint in enumerate(checkpoints):
            try:
                self._checkpoint_callbacks(trial, checkpoint)
            except Exception as error:  # a second Ctrl-C (not an Exception) exits at once, as in _tell_rest
                failure = callbacks.take_failure(error)
                if callbacks.finish(failure, "on_checkpoint", checkpoint=checkpoint, **common):
                    callbacks.call_each("on_trial_save", **common)
                else:
                    callbacks.finish(failure, "on_trial_save", **common)
                for later in checkpoints[position + 1:]:
                    callbacks.call_each("on_checkpoint", checkpoint=later, **common)
                    callbacks.call_each("on_trial_save", **common)
                raise

    # ---- trials on workers a caller drives itself (fasttune.simulation's direct loop) -------
    # The same steps as the handlers above, for a loop that produces complete results itself
    # and writes no trial files: the runner keeps the trials, policies and snapshots.
    def hold_trial(self, trial: Trial, slot: int) -> None:
        """``trial`` starts on the caller's worker ``slot`` (as :meth:`_start_trial` does)."""
        self._unassigned.pop(trial.trial_id, None)
        self._table.set_worker_slot(trial._row, slot)

    def trial_started(self, trial: Trial, start_time: float) -> None:
        """Its worker began ``trial`` at ``start_time`` (as :meth:`_on_started`)."""
        if trial.status in (Trial.PENDING, Trial.PAUSED):
            trial.set_status(Trial.RUNNING)
        trial.start_time = trial.start_time or start_time
        hook = "on_trial_restore" if trial.checkpoint is not None else "on_trial_start"
        self._callbacks.call(hook, iteration=self._iteration, trials=self._trials, trial=trial)

    def judge_results(self, trial: Trial, results: List[Dict[str, Any]], times: List[float],
                      metric_values: List[float], flat_results: Optional[List[Dict[str, Any]]] = None) -> str:
        """A batch of ``trial``'s results, complete as ``ResultBuffer.ingest`` makes them
        (the config last; ``metric_values``: each one's value of the table's metric, nan
        where it has none; ``flat_results``: each one flattened, where the caller made them,
        or the results themselves where each reads as flattened at :meth:`keys_judged_alone`):
        counted, judged in order by the stopper, scheduler and searcher (deciding until one
        ends the trial), heard by the callbacks (as :meth:`_on_results`); the batch's decision."""
        table, row = self._table, trial._row
        last_before, metrics_before = trial.last_result, (table.get_last_metric(row), table.get_best_metric(row))
        for result, value in zip(results, metric_values):
            table.record_result(row, result["training_iteration"], result["time_total_s"], value)
        count = len(results)
        self.results_processed += count
        trial.results_seen += count
        trial.last_result = results[-1]
        try:
            decision = self._judge_batch(trial, results, times, trial.status == Trial.RUNNING, last_before,
                                         metrics_before, metric_values, {}, flat_results=flat_results)
        except MetricNotANumber as error:
            self._fail_running_trial(trial, str(error), error)  # as _on_results: that trial alone
            return TrialScheduler.STOP
        if self._callbacks_see_batches:
            self._callbacks.call("on_trial_result_batch", iteration=self._iteration, trials=self._trials, trial=trial,
                                 results=results, times=times)
        return decision

    def finish_trial(self, trial: Trial, traceback_text: Optional[str] = None) -> None:
        """``trial``'s worker ended it: on its own or at a STOP, else (``traceback_text``)
        with a failure (as :meth:`_on_trial_end`)."""
        self._release(trial)
        state = self._states[trial.trial_id]
        state.decision = state.decision_in_flight = None
        if traceback_text is not None:
            self._on_trial_failure(trial, traceback_text, None)
            return
        if not trial.is_finished():
            self._complete(trial)
        self._close_trial(trial)

    def _on_trial_end(self, slot: int, trial: Trial, event: Any) -> None:
        trial_id = trial.trial_id
        if trial_id in self._started_here:
            self._whole_trials += 1
        self._release(trial)
        state = self._states[trial_id]
        # A function that returned on its own, not at a STOP or PAUSE the runner sent.
        returned = not isinstance(event, protocol.Failed) and event.how == "done" and state.decision_in_flight is None
        state.decision = state.decision_in_flight = None
        self.trial_executor.trial_ended(slot, trial)
        if isinstance(event, protocol.Failed):
            self._on_trial_failure(trial, event.traceback_text, event.exception_blob)
            return
        how = event.how
        if how == "paused" or how == "dropped":  # (else "done" or "stopped": the trial is over)
            if not trial.is_finished():
                # A late pause can take back a start that was to copy a donor's checkpoint.
                self._resets.redo_unconfirmed_copy(state)
            if how == "paused":
                if trial.status == Trial.RUNNING:
                    trial.set_status(Trial.PAUSED)
                elif trial.is_finished():
                    self._close_trial(trial)  # stopped while its pause was on the way
                return
            if trial.status in (Trial.PENDING, Trial.PAUSED):
                # Handed back before it started: it waits to be chosen again.
                if trial.status == Trial.PENDING:
                    self._unassigned[trial_id] = trial
                return
        if trial.status in (Trial.RUNNING, Trial.PENDING, Trial.PAUSED):
            if returned and trial.status == Trial.RUNNING and self._stopper is not None and trial.last_result:
                # As Ray Tune: the stopper hears the last result once more, marked done, when
                # the function returns (a stopper across trials, e.g. ExperimentPlateauStopper,
                # counts it); the trial is over whatever it answers.
                self._stopper(trial_id, dict(trial.last_result, done=True))
            self._complete(trial)
        self._close_trial(trial)
        if returned and self._stopper is not None and self._stopper.stop_all():
            self._stop_all()

    def _complete(self, trial: Trial) -> None:
        if trial.last_result:
            # The scheduler hears the last result (of a trial that stopped at its stop
            # criterion, or said it is done) only now: a metric it cannot compare there
            # fails the trial, as at any other result, rather than ending the run.
            try:
                self._scheduler._check_final_result(trial, trial.last_result)
            except MetricNotANumber as error:
                self._fail_running_trial(trial, str(error), error, ended=True)
                return
        trial.set_status(Trial.TERMINATED)
        trial.end_time = self._clock.time()
        result = dict(trial.last_result)
        if result:  # a trial ended before its first result has none to mark
            result["done"] = True
            trial.last_result = result
            # Judged flattened, as every result before it (no copy where only the scheduler
            # reads it, at keys that read the same on it: as for each result).
            keys = self.keys_judged_alone()
            if self._completion_read and (keys is None or not reads_as_flattened(result, keys)):
                result = self._states[trial.trial_id].flatten_result(result)
        self._scheduler.on_trial_complete(self, trial, result)
        self._search_alg.on_trial_complete(trial.trial_id, result=result)
        self._callbacks.call("on_trial_complete", iteration=self._iteration, trials=self._trials, trial=trial)

    def _end_with_error(self, trial: Trial, failure: BaseException) -> None:
        """``trial`` ends as ERROR for ``failure``, which the scheduler, searcher and callbacks hear."""
        trial.set_status(Trial.ERROR)
        trial.error = failure
        self._scheduler.on_trial_error(self, trial)
        self._search_alg.on_trial_complete(trial.trial_id, error=True)  # no result, as in Ray Tune
        self._callbacks.call("on_trial_error", iteration=self._iteration, trials=self._trials, trial=trial)

    def _close_trial(self, trial: Trial) -> None:
        state = self._states[trial.trial_id]
        state.decision_in_flight = None
        if state.reset_at_decision is not None or state.reset_on_start is not None or state.cloning is not None:
            self._resets.drop(state)  # (a trial with no reset left, nearly every one, has nothing to drop)
        if self._files.writes_results:  # (else closing is nothing: its path is not made for it)
            self._files.close(trial.path)
        self._results.close_trial(trial._row)
        if self._snapshots is not None and trial.is_finished():
            # Its snapshot record is packed now and the trial made compact: a finished
            # trial keeps its record, not its Python objects (issue 20's memory per trial).
            self._snapshots.trial_finished(trial, self._states, self._checkpoints.rows, self._table)

    def _on_config_not_carried(self, trial: Trial, error: BaseException) -> None:
        """A new trial whose config cannot be sent to a worker ends as ERROR at once; it
        keeps its config with that value replaced by a placeholder (snapshots pack it)."""
        trial.config = protocol.carried_copy(trial.config)
        trial.evaluated_params = protocol.carried_copy(trial.evaluated_params)
        self._files.init_trial(trial.path, trial.config, trial.trial_id)
        text = f"Trial {trial} was not started: {error}"
        failure = TuneError(text)
        failure.__cause__ = error
        self._on_trial_failure(trial, text, None, failure)

    def _on_trial_failure(self, trial: Trial, traceback_text: str, exc_blob: Optional[bytes],
                          error: Optional[BaseException] = None) -> None:
        """``trial`` failed: ``exc_blob`` is what it raised, pickled (or None); ``error``
        the exception to record when the driver made it."""
        if trial.is_finished():
            # The driver had already ended it (a stop it asked for may surface as an error;
            # one it failed, e.g. for a bad result, reports what stopping it raised).
            self._close_trial(trial)
            return
        if exc_blob:
            try:
                import ray.cloudpickle as cloudpickle

                error = cloudpickle.loads(exc_blob)
            except Exception:  # noqa: BLE001 - the traceback text still tells the story
                error = None
        if error is not None and not isinstance(error, Exception):
            # SystemExit, KeyboardInterrupt...: raised again in the driver (fail_fast="raise")
            # it would end the driver as if it were its own (exit status 0, a Ctrl-C).
            wrapped = TuneError(f"Trial {trial} raised {error!r}, which is not an "
                                f"Exception; it ended the trial:\n{traceback_text}")
            wrapped.__cause__ = error
            error = wrapped
        self._record_error(trial, traceback_text, error)
        if self._fail_fast == "raise":
            self._fatal = trial.error
            trial.set_status(Trial.ERROR)
            self._close_trial(trial)
            self._stop_all()
            return
        if trial.status == Trial.RUNNING and trial.should_recover() and not self._stopping_all:
            state = self._states[trial.trial_id]
            self._resets.redo_unconfirmed_copy(state)
            state.prune_on_start = True
            trial.set_status(Trial.PENDING)
            self._unassigned[trial.trial_id] = trial
            self._results.close_trial(trial._row)
            self._callbacks.call("on_trial_recover", iteration=self._iteration, trials=self._trials, trial=trial)
            return
        if trial.status != Trial.ERROR:
            trial.set_status(Trial.ERROR)
        trial.end_time = self._clock.time()
        try:
            # No worker writes to this trial again: checkpoints its last worker saved but
            # never reported (it died first), or half-copied ones, would lie there untracked.
            self._checkpoints.prune_unrecorded(trial)
            self._scheduler.on_trial_error(self, trial)
            self._search_alg.on_trial_complete(trial.trial_id, error=True)  # no result, as in Ray Tune
            self._callbacks.call("on_trial_error", iteration=self._iteration, trials=self._trials, trial=trial)
        finally:
            # Closed (its record packed, the trial compact) once all that hear of the failure
            # have: they may still change it.
            self._close_trial(trial)
        if self._fail_fast:
            self._stop_all()

    def _record_error(self, trial: Trial, traceback_text: str, error: Optional[BaseException]) -> None:
        """Count a failure of ``trial``, write it to its ``error.txt`` and keep it on the trial."""
        failures = trial._record_failure()
        header = f"Failure # {failures} (occurred at {time.strftime('%Y-%m-%d_%H-%M-%S')})"
        trial.error_file = self._files.write_error(trial.path, header, traceback_text)
        trial.error_msg = traceback_text
        trial.error = error if error is not None else TuneError(failure_text(str(trial), traceback_text))
        if self._callbacks.wants("on_trial_error") or self._callbacks.wants("on_trial_recover"):
            # On disk before those callbacks read it (trial.get_error()), as in Ray Tune; a
            # write failure is reported where the loop checks for one, not in the middle of this.
            self._files.wait()

    def _on_worker_death(self, slot: int, exc: BaseException) -> None:
        """A worker died, or sent a reply the driver cannot read (``MalformedReply``; the
        executor ended it): its running trial fails, the ones queued behind it wait for
        another worker.  After a malformed reply the first trial fails even when its start
        was in that reply (else it would start, and send the same, again and again)."""
        malformed = isinstance(exc, protocol.MalformedReply)
        for index, trial in enumerate(self.trial_executor.worker_died(slot)):
            self._release(trial)
            if index == 0 and (trial.status == Trial.RUNNING or (malformed and not trial.is_finished())):
                if malformed:
                    text = (f"The worker running trial {trial} sent a reply the driver cannot read, so it "
                            f"was ended: {exc}")
                else:
                    text = f"The worker process running trial {trial} died: {type(exc).__name__}: {exc}"
                self._on_trial_failure(trial, text, None)
            elif trial.status == Trial.PENDING:
                self._unassigned[trial.trial_id] = trial
            elif trial.is_finished():  # (ended by the driver, TERMINATED or ERROR)
                self._close_trial(trial)
