"""The direct loop: a simulated sweep whose trials only go on or stop, run without the
runner's per-event machinery.

``TrialRunner.step()`` serves every executor and every scheduler: worker records, the
core's ``ResultBuffer`` (which renders each result for files), decision points answered
one message at a time.  Under FIFO or ASHA a simulated trial only continues or stops,
writes no file and has no checkpoint, and much of that work does nothing.  This loop does
what the :class:`~fasttune.simulation.SimulatedExecutor` and the runner's handlers would,
in the same order, and hands the runner what its books need: trials come from
``runner.next_trial_to_start()`` (the scheduler's choice or the searcher's next, added),
complete results go to ``runner.judge_results()`` (the stopper, scheduler, searcher and
callbacks), ends to ``runner.finish_trial()``; the runner keeps the trials, the table and
the snapshots, and ``fit()`` returns the same ``ResultGrid``.  Every reply is an event at
a simulated time, taken earliest first (ties in the order they were scheduled), as the
executor's; a start comes before any event, as in a step.  A snapshot saves each running
trial as the executor saves a segment (``running_states``), so a restore, which runs on
the runner's loop, goes on from it as from the runner's own; the runner's stops (a spent
time budget's) reach a running trial through the executor (``interrupt``), as a segment's.

``direct_loop_refusal`` says which sweeps qualify (``Simulation(engine=...)`` chooses);
``tests/simulation/test_direct_loop.py`` runs each kind on both loops and compares what
they save, return and tell callbacks.
"""
from __future__ import annotations

import bisect
import heapq
import math
import os
import time
from array import array
from typing import Any, Dict, List, Optional

import numpy as np

from fasttune._corelib import metric_number
from fasttune._flatten import flatten_dict
from fasttune.execution import _protocol as protocol
from fasttune.execution._stop_criteria import StopCriteria
from fasttune.execution._trial_state import stay_when_flattened
from fasttune.schedulers.async_hyperband import AsyncHyperBandScheduler
from fasttune.schedulers.trial_scheduler import FIFOScheduler, TrialScheduler
from fasttune.simulation._blackbox import Blackbox
from fasttune.simulation._executor import SimulatedExecutor, curve_of, record_state
from fasttune.simulation._tabular import TabularBlackbox

__all__ = ["DirectLoop", "ResultDateText", "direct_loop_refusal"]

# The schedulers whose decisions are only CONTINUE and STOP, for the trial judged alone.
_SCHEDULERS = (FIFOScheduler, AsyncHyperBandScheduler)
# Callback hooks the direct loop calls as the runner does (a step's hooks it does not).
_STEP_HOOKS = ("on_step_begin", "on_step_end")
# Steps between two checks for a snapshot due (which comes at most every 2 s anyway).
_STEPS_PER_CHECK = 64
# The automatic fields a stop criterion may name, which every result has as a number.
_STOP_FIELDS = frozenset(("training_iteration", "iterations_since_restore", "time_total_s", "time_since_restore",
                          "timestamp", "time_this_iter_s"))
# Sets of config keys whose flat names the loop keeps (see DirectLoop._flat_config).
_KEY_SETS_KEPT = 64
# numpy dtype kinds whose values are plain numbers once converted: bool, int, unsigned, float.
_NUMBER_KINDS = "biuf"
# What a result gets beside the blackbox's metrics and fidelity (ResultBuffer.ingest).
_AUTOMATIC = frozenset((
    "timestamp", "checkpoint_dir_name", "done", "training_iteration", "trial_id", "date", "time_this_iter_s",
    "time_total_s", "pid", "hostname", "node_ip", "time_since_restore", "iterations_since_restore", "config"))


def direct_loop_refusal(executor: SimulatedExecutor, *, scheduler: Any, metric: Optional[str], stopper: Any,
                        stop: Any, callbacks: Any, fail_fast: Any, server_port: Any, results_store: str) -> Optional[str]:
    """Why a simulated sweep with these settings runs on the runner's loop rather than the
    direct one (None: it can run on the direct loop).

    Example:
        >>> from fasttune.callback import CallbackList
        >>> from fasttune.schedulers import ASHAScheduler, HyperBandScheduler
        >>> from fasttune.simulation import SimulatedExecutor, reference_asha_table
        >>> executor = SimulatedExecutor(reference_asha_table(), checkpoint_at=None)
        >>> settings = dict(metric="loss", stopper=None, stop=None, callbacks=CallbackList(), fail_fast=False,
        ...                 server_port=None, results_store="per_trial")
        >>> direct_loop_refusal(executor, scheduler=ASHAScheduler(), **settings) is None
        True
        >>> direct_loop_refusal(executor, scheduler=HyperBandScheduler(), **settings)
        'its scheduler, HyperBandScheduler, may pause trials (the direct loop runs FIFOScheduler and AsyncHyperBandScheduler)'
    """
    blackbox = executor.blackbox
    if type(scheduler) not in _SCHEDULERS:
        names = " and ".join(cls.__name__ for cls in _SCHEDULERS)
        return f"its scheduler, {type(scheduler).__name__}, may pause trials (the direct loop runs {names})"
    if stopper is not None:
        return "it has a stopper (RunConfig(stop=<a function or Stopper>))"
    if fail_fast:
        return "it fails fast (RunConfig(failure_config=FailureConfig(fail_fast=...)))"
    if server_port is not None:
        return "it serves the experiment over HTTP (server_port)"
    if executor.writes_result_files or results_store != "per_trial":
        return "it writes results to files"
    if executor.checkpoint_at is not None:
        return f"its trials checkpoint (checkpoint_at={executor.checkpoint_at!r})"
    if os.environ.get("FASTTUNE_SYNCHRONOUS") == "1":
        return "FASTTUNE_SYNCHRONOUS=1 asks for a decision at every result"
    step_hooks = [hook for hook in _STEP_HOOKS if callbacks.wants(hook)]
    if step_hooks:
        return f"a callback counts steps ({step_hooks[0]})"
    reported = [*blackbox.metric_names, blackbox.fidelity_name]
    clashing = [name for name in reported if name in _AUTOMATIC]
    if clashing:
        return f"the blackbox reports {clashing[0]!r}, a name the runner fills in itself"
    if metric is not None and metric not in reported and metric not in _AUTOMATIC:
        return f"the metric {metric!r} is not one the blackbox reports"
    for key, threshold in (stop or {}).items():
        # (Then the worker's check and the driver's agree, and neither can fail.)
        if key not in reported and key not in _STOP_FIELDS:
            return f"its stop criterion {key!r} is not a value every result has"
        if key in blackbox.metric_names and not _reports_numbers(blackbox):
            return (f"its stop criterion {key!r} is a metric of a blackbox whose own curve() may report values "
                    "that are not numbers")
        if not isinstance(threshold, (int, float)) or isinstance(threshold, bool):
            return f"its stop criterion {key!r} has a threshold that is not a number ({threshold!r})"
    return None


class _Run:
    """A trial on a virtual worker: where it stands on its curve, and its next reply."""

    __slots__ = ("trial", "trial_id", "config", "columns", "step_seconds", "schedule", "answers", "watch", "position",
                 "start", "previous", "results", "times", "values", "flat_results", "flat_config", "end", "failure",
                 "heard_start", "heard", "delivered", "due", "seq", "awaiting", "interrupted", "stop", "metric_column",
                 "judged_as_is")

    def __init__(self, trial: Any, start: float) -> None:
        self.trial = trial
        self.trial_id: str = trial.trial_id
        self.config: Dict[str, Any] = trial.config
        self.columns: List[Any] = []  # (metric name, values) in the blackbox's order
        self.metric_column: Optional[List[Any]] = None  # the experiment metric's values, where they are numbers
        self.step_seconds: List[float] = []
        self.schedule: Any = None  # the DecisionForm's schedule from its start, if it has one
        self.answers: Optional[List[bool]] = None  # whether each position waits for a decision
        self.watch: Any = None  # ... or what answers that result by result
        self.position = 0  # fidelities done (= results reported: a trial here never resumes)
        self.start = start
        self.previous = start  # the time of its last result (for time_this_iter_s)
        # Its next reply: the results, their times and table metric values, and how it ends.
        self.results: List[Dict[str, Any]] = []
        self.times: List[float] = []
        self.values: List[float] = []
        self.flat_results: List[Dict[str, Any]] = []  # ... and each one flattened, where flat_config is made
        self.flat_config: Optional[Dict[str, Any]] = None  # the config's keys in a flat result
        self.judged_as_is = False  # its results read as their flat form where the runner reads them
        self.end = "done"  # "decide" (at a decision point), "done" (its curve's end) or "stop" (a STOP's, its stop dict's)
        self.failure: Optional[str] = None  # the traceback of a blackbox that failed
        self.heard_start = False  # whether the runner has had its first reply
        # What the runner has heard of it: when its last result was, and how many results.
        self.heard = start
        self.delivered = 0
        self.due = start  # when its next reply is due, and that reply's number (-1: being handled)
        self.seq = -1
        self.awaiting = False  # its reply, at a decision point, is being handled
        self.interrupted = False  # ended by the runner's stop (its end is known there already)
        stop = trial.stopping_criterion
        self.stop = StopCriteria(stop) if stop else None  # RunConfig(stop={...}), checked as the worker does


class DirectLoop:
    """Runs ``runner``'s simulated sweep to its end on ``executor``'s virtual workers and
    clock (see the module docstring); :meth:`run` stands for the loop of
    ``runner.step()`` calls."""

    def __init__(self, runner: Any, executor: SimulatedExecutor, metric: Optional[str]) -> None:
        self.runner = runner
        self.executor = executor
        self.metric = metric
        self._runs: Dict[int, _Run] = {}  # by slot
        self._slot_of: Dict[str, int] = {}  # a running trial's slot, by trial id
        self._events: List[Any] = []  # (due, seq, slot)
        blackbox = executor.blackbox
        self._fidelity_name = blackbox.fidelity_name
        self._fidelity_values = blackbox.fidelities.tolist()
        self._plain_fidelities = blackbox.fidelities.dtype.kind in _NUMBER_KINDS
        self._str_fidelity = type(self._fidelity_name) is str
        # A table's own curves are rows of its columns: whether they are numbers under str names is known here.
        self._numeric_curves = type(blackbox).curve is TabularBlackbox.curve and _numbers_by_name(blackbox.metric_table)
        self._dates = ResultDateText()
        self._flat_config_names: Dict[tuple, tuple] = {}  # see _flat_config
        self._judged_as_is = False  # see run
        executor.loop_elsewhere = self  # (its snapshots save running_states; the runner's stops reach interrupt)

    def run(self, progress: Any, interrupted: Any) -> None:
        """Step until the sweep is finished, or a Ctrl-C (``interrupted.presses``)."""
        runner, events, executor, runs = self.runner, self._events, self.executor, self._runs
        clock, deadline = executor.clock, executor.deadline
        # (Bound once: a few steps a trial, each calling most of them.)
        is_finished, next_trial_to_start, end_step = runner.is_finished, runner.next_trial_to_start, runner.end_step
        has_free_slot, advance_to, progress_step = executor.has_free_slot, clock.advance_to, progress.step
        heappop, start, reply = heapq.heappop, self._start, self._reply
        # Whether only the scheduler reads results, at keys a flat copy keeps as they are
        # (not the config's): worked out once, the sweep's policies being set by now (a
        # judge patched onto the scheduler from inside the sweep still gets the results so).
        keys = runner.keys_judged_alone()
        self._judged_as_is = self._str_fidelity and stay_when_flattened(keys) and "config" not in keys
        steps = 0
        waiting = None  # the trial that waits for a free worker: asked for again only once one is free
        while not is_finished() and not interrupted.presses:
            if deadline is not None:
                runner.stop_all_if_budget_spent()
            # (With no worker free, the runner's answer is None and changes nothing once a
            # trial waits: each step of its loop asks the scheduler and searcher in vain.)
            trial = None
            if has_free_slot() or waiting is None or waiting.status != waiting.PENDING:
                trial = next_trial_to_start()
                waiting = runner.first_trial_with_status("PENDING") if trial is None else None
            if trial is not None:
                start(trial)
            else:
                while events:  # (replies an interrupt replaced are passed over, in the same step)
                    run = runs.get(events[0][2])
                    if run is not None and run.seq == events[0][1]:
                        break
                    heappop(events)
                if not events:
                    if is_finished():  # (the budget's stop ended the last trials: a step, as the runner's)
                        end_step(steps % _STEPS_PER_CHECK == 0)
                        progress_step()
                    return  # else nothing runs and nothing starts: the runner's loop says why
                if deadline is not None and events[0][0] > deadline:
                    advance_to(deadline)  # nothing happens after the budget: the next step stops all
                else:
                    due, _, slot = heappop(events)
                    advance_to(due)
                    reply(slot)
            end_step(steps % _STEPS_PER_CHECK == 0)  # (check: the first step's too, its snapshot is the first)
            steps += 1
            progress_step()

    # ---- a trial's segment, as SimulatedExecutor runs one ----------------------------------
    def _start(self, trial: Any) -> None:
        executor, runner = self.executor, self.runner
        slot = executor.take_slot()
        runner.hold_trial(trial, slot)
        self._slot_of[trial.trial_id] = slot
        now = executor.clock.now
        run = self._runs[slot] = _Run(trial, now)
        decisions = executor.decisions_under(runner.decision_points_wire(trial))
        curve, run.failure = curve_of(executor.blackbox, run.config)
        if run.failure is not None:
            self._schedule(slot, run, now)
            return
        metrics, step_seconds = curve
        columns = {name: values.tolist() for name, values in metrics.items()}
        run.columns = list(columns.items())
        config = run.config
        numbers = self._numeric_curves or _numbers_by_name(metrics)
        if type(config) is dict and config and self._plain_fidelities and numbers:
            # Numbers under str keys, and the config: a result's flat form is itself plus the
            # config's keys, as TrialState.flatten_result makes it (made here with each result),
            # unless only the scheduler reads it, at keys other than the config's: there each
            # result reads as that flat form (as the runner would judge it, without checking).
            if self._judged_as_is:
                run.judged_as_is = True
            else:
                run.flat_config = self._flat_config(config)
        metric = self.metric
        if metric in columns and metric != self._fidelity_name and metrics[metric].dtype.kind in _NUMBER_KINDS:
            run.metric_column = columns[metric]
        run.step_seconds = step_seconds.tolist()
        schedule = run.schedule = decisions.schedule(0, columns, numbers)
        if schedule is not None:
            run.answers = schedule.answers
        else:
            run.watch = decisions.points.watch()
        self._advance(slot, run, now)

    def _flat_config(self, config: Dict[str, Any]) -> Dict[str, Any]:
        """``flatten_dict(config, "/", "config")``, with the flat names of a config's keys
        worked out once for each set of str keys (a sweep's configs nearly all share one)."""
        keys = tuple(config)
        # (Checked at each call: a str subclass's key, a str Enum's, equals a str key yet flattens otherwise.)
        if not all(type(key) is str for key in keys):
            return flatten_dict(config, "/", "config")
        names = self._flat_config_names.get(keys)
        if names is None:
            if len(self._flat_config_names) >= _KEY_SETS_KEPT:
                self._flat_config_names.clear()
            names = self._flat_config_names[keys] = tuple(["config/" + key for key in keys])
        for value in config.values():
            if isinstance(value, dict) and value:
                return flatten_dict(config, "/", "config")  # (a nested dict's keys are flattened too)
        return dict(zip(names, config.values()))

    def _advance(self, slot: int, run: _Run, now: float) -> None:
        """Run ``run`` from ``now`` to its next decision point or its end: the results it
        reports (complete, as the runner's ResultBuffer makes them), and that reply's event."""
        step_seconds, fidelity_name, fidelity_values = run.step_seconds, self._fidelity_name, self._fidelity_values
        columns, answers, watch, stop = run.columns, run.answers, run.watch, run.stop
        # One metric, decision points known ahead and no stop criterion: each result is made at once.
        plain = len(columns) == 1 and answers is not None and stop is None
        metric_name, metric_values = columns[0] if plain else (None, None)
        metric, metric_column = self.metric, run.metric_column
        trial_id, config, start = run.trial_id, run.config, run.start
        results, times, values, flat_results = run.results, run.times, run.values, run.flat_results
        flat_config, date_of = run.flat_config, self._dates.of
        position, previous = run.position, run.previous
        t = now
        last = len(step_seconds)
        end = "done"
        stopped = False
        while position < last:
            i = position
            t += step_seconds[i]
            position += 1
            since_start = t - start
            date = date_of(math.floor(t))
            # The fields and their order are ResultBuffer.ingest's (the blackbox's, the runner's, then
            # its config); "done" is the driver's check of the stop dict, on the result it ends on.
            if plain:
                at_decision = answers[i]
                result = {metric_name: metric_values[i], fidelity_name: fidelity_values[i], "timestamp": int(t),
                          "checkpoint_dir_name": None, "done": False, "training_iteration": position,
                          "trial_id": trial_id, "date": date, "time_this_iter_s": t - previous,
                          "time_total_s": 0.0 + since_start, "pid": 0, "hostname": "simulated",
                          "node_ip": "127.0.0.1", "time_since_restore": since_start,
                          "iterations_since_restore": position}  # (_complete's, without a call)
            else:
                reported = {name: column[i] for name, column in columns}
                reported[fidelity_name] = fidelity_values[i]
                at_decision = answers[i] if answers is not None else watch(position, dict(reported), since_start)
                stopped = stop is not None and stop.reached(
                    reported, iteration=position, since_restore=position, time_total=since_start,
                    time_since_restore=since_start, now=t, time_this_iter=t - previous)
                result = _complete(reported, t, stopped, position, trial_id, date, t - previous, since_start)
            if flat_config is not None:
                flat_results.append({**result, **flat_config})
            result["config"] = config
            results.append(result)
            times.append(t)
            if metric_column is not None:
                values.append(float(metric_column[i]))  # (what core.metric_number gives for a plain number)
            else:
                values.append(metric_number(result.get(metric)) if metric is not None else math.nan)
            if stopped:
                end = "stop"  # its reply ends it, on the result that reached its stop criterion
                break
            previous = t  # (not for the result a stop ends on: as the executor's last_time)
            if at_decision:
                end = "decide"
                break
        run.position, run.previous, run.end = position, previous, end
        self._schedule(slot, run, t)

    def _schedule(self, slot: int, run: _Run, due: float) -> None:
        # (awaiting, as the executor's segment: at a decision point once this reply is out)
        run.due, run.seq, run.awaiting = due, self.executor.next_seq(), run.end == "decide" and run.failure is None
        heapq.heappush(self._events, (due, run.seq, slot))

    def _reply(self, slot: int) -> None:
        """The reply of the trial on ``slot`` reaches the runner (as ``TrialRunner._on_batch``)."""
        run, runner = self._runs[slot], self.runner
        run.seq = -1
        trial = run.trial
        if not run.heard_start:
            run.heard_start = True
            runner.trial_started(trial, run.start)
        if run.failure is not None:
            self._finish(slot, run, run.failure)
            return
        decision = TrialScheduler.CONTINUE
        if run.results:
            results, times, values, flat_results = run.results, run.times, run.values, run.flat_results
            run.results, run.times, run.values, run.flat_results = [], [], [], []
            if run.flat_config is None:
                flat_results = results if run.judged_as_is else None
            decision = runner.judge_results(trial, results, times, values, flat_results)
        if run.end != "decide":
            self._finish(slot, run)
            return
        if trial.status != trial.RUNNING:
            decision = TrialScheduler.STOP  # ended meanwhile (by the runner, never by these schedulers)
        run.heard, run.delivered = run.previous, run.position  # (its answer says all of it reached the runner)
        if decision in (TrialScheduler.CONTINUE, TrialScheduler.NOOP):
            self._advance(slot, run, self.executor.clock.now + self.executor.decision_overhead_s)
        elif decision == TrialScheduler.STOP:
            run.end = "stop"
            self._schedule(slot, run, self.executor.clock.now)  # (awaiting no more)
        else:
            raise RuntimeError(f"The direct loop got {decision!r} for trial {trial}; its scheduler was to "
                               "stop or continue trials only (see direct_loop_refusal).")

    def interrupt(self, trial: Any, how: str) -> bool:
        """The runner stops ``trial`` now (``SimulatedExecutor._interrupt``'s part for a
        trial this loop runs): the results it reported by now stay, later ones never happen,
        and its reply ends it; False when it runs here no more."""
        slot = self._slot_of.get(trial.trial_id)
        if slot is None:
            return False
        run, now = self._runs[slot], self.executor.clock.now
        if (run.failure is not None or run.end != "decide") and run.due <= now:
            return True  # it ended (or failed) by now: that reply stands, as the real worker's would
        if how != "stopped":
            raise RuntimeError(f"The direct loop was asked to pause trial {trial}; it only stops trials.")
        kept = bisect.bisect_right(run.times, now)
        del run.results[kept:], run.times[kept:], run.values[kept:], run.flat_results[kept:]
        run.end, run.interrupted = "stop", True
        self._schedule(slot, run, now)
        return True

    # ---- snapshots -------------------------------------------------------------------------
    def running_states(self) -> List[Dict[str, Any]]:
        """Each running trial's state as ``SimulatedExecutor`` saves a segment's, so that a
        restore (on the runner's loop) goes on with its pending reply as if never interrupted
        (not one the runner stopped: it ended that trial already)."""
        return [self._state_of(run) for run in self._runs.values()
                if (run.seq >= 0 or run.awaiting) and not run.interrupted]

    def _state_of(self, run: _Run) -> Dict[str, Any]:
        records: List[Any] = []
        if run.seq >= 0:  # its reply is on the way (else, being handled, it reached the runner)
            if not run.heard_start:
                records.append(protocol.Started(run.trial_id, run.start, 0, "simulated", "127.0.0.1"))
            if run.failure is not None:
                records.append(protocol.Failed(run.trial_id, run.failure, None))
            else:
                if run.results:
                    reported = [name for name, _ in run.columns] + [self._fidelity_name]
                    metrics = [{name: result[name] for name in reported} for result in run.results]
                    records.append(protocol.Results(run.trial_id, metrics, array("d", run.times).tobytes(), {}))
                if run.end == "decide":
                    records.append(protocol.Decide(run.trial_id, run.position, False))
                else:
                    records.append(protocol.Ended("stopped" if run.end == "stop" else "done", run.trial_id))
        unanswered = run.awaiting and run.seq < 0
        delivered, heard = (run.position, run.previous) if unanswered else (run.delivered, run.heard)
        if run.schedule is not None:
            watch = run.schedule.states[run.position - 1] if run.position else run.schedule.initial
        else:
            watch = getattr(run.watch, "state", None)
        return {"trial_id": run.trial_id, "iteration": delivered, "heard": heard, "position": run.position,
                "count": run.position, "base_iteration": 0, "base_time": 0.0, "start_time": run.start,
                "last_time": run.previous, "ckpt_index": 0, "due": run.due, "seq": run.seq, "awaiting": run.awaiting,
                "ended": run.failure is not None or run.end != "decide", "watch": watch,
                "records": [record_state(record) for record in records]}

    def _finish(self, slot: int, run: _Run, failure: Optional[str] = None) -> None:
        del self._runs[slot], self._slot_of[run.trial_id]
        self.executor.release_slot(slot)
        self.runner.finish_trial(run.trial, failure)


# Two digits of each second of a minute, as strftime's %S writes them.
_SECONDS_TEXT = tuple(f"{second:02d}" for second in range(60))
# Local minutes whose text ResultDateText keeps (a day's).
_MINUTES_KEPT = 1440


class ResultDateText:
    """A result's ``date`` at a whole second, as the core's ResultBuffer writes it
    (``time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(second))``), with each local minute's
    text worked out once: a simulated result comes every few seconds, and within a minute
    only the seconds change.  The minutes of the last day or so are kept, not just the
    latest: a trial's results are made ahead of the clock, so the workers' results go back
    and forth across minutes.

    Example:
        >>> import time
        >>> dates = ResultDateText()
        >>> all(dates.of(second) == time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(second))
        ...     for second in range(1_700_000_000, 1_700_000_200, 7))
        True
    """

    __slots__ = ("_prefix_of_minute", "_minute_start", "_prefix", "_zone")

    def __init__(self) -> None:
        self._forget()

    def _forget(self) -> None:
        self._zone = time.tzname  # (time.tzset() makes a new one: the texts kept are another zone's)
        # By ``second // 60``: the text of a local minute that is those 60 seconds (its
        # zone's offset from UTC is whole minutes, and unchanged within it).
        self._prefix_of_minute: Dict[int, str] = {}
        # The last minute of a zone whose offset has seconds in it (its minutes are not UTC's).
        self._minute_start: float = math.inf  # (no minute yet)
        self._prefix = ""

    def of(self, second: int) -> str:
        if time.tzname is not self._zone:
            self._forget()
        minute, second_of_minute = divmod(second, 60)
        prefix = self._prefix_of_minute.get(minute)
        if prefix is not None:
            return prefix + _SECONDS_TEXT[second_of_minute]
        offset = second - self._minute_start
        if 0 <= offset < 60:
            return self._prefix + _SECONDS_TEXT[offset]
        local = time.localtime(second)
        start = second - local.tm_sec
        first, last = time.localtime(start), time.localtime(start + 59)
        # (A minute that a change of UTC offset or a leap second cuts is written second by second.)
        if local.tm_sec < 60 and first.tm_gmtoff == local.tm_gmtoff == last.tm_gmtoff and (
                first.tm_sec, last.tm_sec, first.tm_min, last.tm_min) == (0, 59, local.tm_min, local.tm_min):
            prefix = time.strftime("%Y-%m-%d_%H-%M-", local)
            if start == minute * 60:
                if len(self._prefix_of_minute) >= _MINUTES_KEPT:
                    self._prefix_of_minute.clear()  # (a sweep's clock moves on: the old minutes are done)
                self._prefix_of_minute[minute] = prefix
            else:
                self._minute_start, self._prefix = start, prefix
            return prefix + _SECONDS_TEXT[local.tm_sec]
        return time.strftime("%Y-%m-%d_%H-%M-%S", local)


def _numbers_by_name(metrics: Dict[Any, np.ndarray]) -> bool:
    """Whether each of ``metrics`` (name -> values) holds plain numbers, under a str name."""
    return all(type(name) is str and values.dtype.kind in _NUMBER_KINDS for name, values in metrics.items())


def _reports_numbers(blackbox: Any) -> bool:
    """Whether every metric value ``blackbox`` reports is a number: its curves are the base
    class's (float arrays of ``evaluate``'s values) or a table's numeric columns."""
    if type(blackbox).curve is Blackbox.curve:
        return True
    return type(blackbox).curve is TabularBlackbox.curve and all(
        values.dtype.kind in _NUMBER_KINDS for values in blackbox.metric_table.values())


def _complete(reported: Dict[str, Any], t: float, stopped: bool, position: int, trial_id: str, date: str,
              this_iter: float, since_start: float) -> Dict[str, Any]:
    """The result of ``reported`` without its config, as ResultBuffer.ingest completes it (the
    same as _advance's dict display for one metric, which saves a call)."""
    return {**reported, "timestamp": int(t), "checkpoint_dir_name": None, "done": stopped,
            "training_iteration": position, "trial_id": trial_id, "date": date, "time_this_iter_s": this_iter,
            "time_total_s": 0.0 + since_start, "pid": 0, "hostname": "simulated", "node_ip": "127.0.0.1",
            "time_since_restore": since_start, "iterations_since_restore": position}
