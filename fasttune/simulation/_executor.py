"""``SimulatedExecutor``: the runner's executor for blackbox trials in simulated time.

It implements the executor boundary (:class:`~fasttune.execution.trial_executor.TrialExecutor`)
in-process: a trial is a blackbox's learning curve, replayed one fidelity per result, and
each step takes the simulated seconds the blackbox says.  ``num_workers`` virtual workers
run trials side by side.  Every worker's next reply is an event at a simulated time; the
runner takes them earliest first (ties in the order they were scheduled), and the clock
jumps to each.  Nothing the tuner computes moves the clock (only ``decision_overhead_s``
per decision, when set), and the runner asks its searcher on the loop's thread
(``deterministic``), so two runs with the same seeds are identical.

A worker replies at a trial's next decision point, stop criterion or end, with every
result since its last reply, as the real worker does: results between decision points
reach the runner as one batch at the time of the batch's last one, so the scheduler's
decisions are taken in simulated-time order.

Checkpoints hold no files: a checkpoint of a simulated trial is the fidelity it reached,
kept here by its path, so pausing, resuming and PBT's exploit (``clone_from``) go on from
the right fidelity.

A restore goes on exactly: :meth:`SimulatedExecutor.get_state` (saved in the experiment's
snapshots, see ``Simulation.state_callback``) holds the clock, the budget's deadline, the
checkpoints' fidelities and each running segment with the reply it was about to send; the
runner restarts those trials from the point their last reply reached, and each goes on
with that reply at the simulated time it was due; one whose reply the runner had but not
yet answered (an error ended the loop first) goes on as if answered when it restarts.  (Results a segment had produced past
a stop or pause the runner asked for between decision points are not kept: the runner had
ended that trial already.)
"""
from __future__ import annotations

import heapq
import os
import threading
import traceback
from array import array
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from fasttune._decision_points import DecisionPoints
from fasttune.execution import _protocol as protocol
from fasttune.execution._stop_criteria import StopCriteria
from fasttune.execution.trial_executor import EVENT_BATCH, EVENT_START
from fasttune.simulation._blackbox import Blackbox

__all__ = ["DecisionForm", "SimulatedClock", "SimulatedExecutor", "curve_of", "record_state"]

# Where a checkpoint is taken: at the trial's decision points (what PBT and a pause need).
CHECKPOINT_AT_DECISIONS = "decision_points"
# How many decision-point forms an executor keeps worked out (ASHA's brackets, HyperBand's, ... are few).
MAX_DECISION_FORMS = 256


class SimulatedClock:
    """The experiment's clock in a simulation: ``time()`` and ``monotonic()`` (the two the
    runner reads) both answer the simulated now, which only :meth:`advance_to` moves.

    Example:
        >>> clock = SimulatedClock(start=100.0)
        >>> clock.advance_to(102.5)
        >>> clock.time(), clock.monotonic()
        (102.5, 102.5)
    """

    __slots__ = ("now",)

    def __init__(self, start: float = 0.0) -> None:
        self.now = float(start)

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def advance_to(self, when: float) -> None:
        if when > self.now:
            self.now = when


class _Segment:
    """One run segment of a trial on a virtual worker: where its curve stands, the records
    of its next reply, and when that reply is due."""

    __slots__ = ("trial_id", "spec", "slot", "metrics", "step_seconds", "position", "count",
                 "base_iteration", "base_time", "start_time", "last_time", "decisions", "at_decision_point",
                 "schedule", "stop", "ckpt_index", "checkpoint_key_prefix", "records", "due", "seq", "awaiting",
                 "ended", "heard", "delivered", "interrupted")

    def __init__(self, slot: int, spec: Dict[str, Any], decisions: "DecisionForm") -> None:
        self.slot = slot
        self.trial_id: str = spec["trial_id"]
        self.spec = spec
        self.metrics: Dict[str, Any] = {}
        self.step_seconds: Any = None
        self.position = 0  # fidelities done
        self.count = 0  # results reported in this segment
        self.base_iteration: int = spec.get("iteration", 0)
        self.base_time: float = spec.get("time_total", 0.0)
        self.start_time = self.last_time = 0.0
        self.decisions = decisions
        # Whether a result waits for a decision: the schedule's answer at its position where the
        # segment has one (see DecisionForm), else its watch's (made when the segment starts).
        self.at_decision_point: Any = None
        self.schedule: Optional[_Schedule] = None
        stop = spec.get("stop")
        self.stop = StopCriteria(stop) if stop else None
        self.ckpt_index: int = spec.get("ckpt_index", 0)
        self.checkpoint_key_prefix: Optional[str] = None  # see SimulatedExecutor._key
        self.records: List[Any] = []  # of the next reply
        self.due = 0.0  # when the next reply is due
        self.seq = -1  # its entry in the event heap (older entries are stale)
        self.awaiting = False  # at a decision point, waiting for the runner's answer
        self.ended = False
        # What the runner has heard of this segment: when its last result was, and how many
        # results (as of the segment's latest advance).
        self.heard = 0.0
        self.delivered = 0
        self.interrupted = False  # ended by the runner's stop or pause: it knows the end already


class _Schedule(NamedTuple):
    """When a segment that starts at one position of its curve waits for decisions:
    ``answers[i]`` for its result at position ``i``, ``states[i]`` its watch's ``state``
    after that result (positions before the start hold ``initial``, the state before any)."""

    answers: List[bool]
    states: List[Any]
    initial: Any


class DecisionForm:
    """The decision points of one wire form (``DecisionPoints.to_wire()``), shared by the
    segments that run under it.

    Where the form reaches values of the blackbox's fidelity (``DecisionPoints.reaching``
    with the scheduler's ``time_attr`` the fidelity, as ASHA's on ``epoch``), a result's
    answer depends on its fidelity alone once the metrics the form needs are there: every
    segment that starts at the same position waits at the same positions.  The form's own
    watch works those out once per starting position, and a result then costs a look-up."""

    __slots__ = ("points", "needs", "fidelity_name", "fidelity_values", "by_start")

    def __init__(self, wire: Any, fidelity_name: str, fidelity_values: List[Any]) -> None:
        self.points = DecisionPoints(wire)
        self.fidelity_name = fidelity_name
        self.fidelity_values = fidelity_values
        self.by_start: Dict[int, _Schedule] = {}
        # (The watch reads these two automatic fields from its arguments, not from the result.)
        on_fidelity = (isinstance(wire, (list, tuple)) and len(wire) == 4 and wire[0] == "reach"
                       and wire[1] == fidelity_name and fidelity_name not in ("training_iteration", "time_total_s"))
        self.needs: Optional[Tuple[str, ...]] = tuple(wire[3]) if on_fidelity else None

    def schedule(self, start: int, metrics: Dict[str, List[Any]], numbers: bool = False) -> Optional[_Schedule]:
        """The schedule of a segment that starts at position ``start`` of the curve
        ``metrics`` (name -> values), or None where its watch must answer each result;
        ``numbers``: every value is known to be a number (none is looked for)."""
        needs = self.needs
        if needs is None:
            return None
        for need in needs:
            if need != self.fidelity_name:
                values = metrics.get(need)
                if values is None or (not numbers and None in values):
                    return None  # a result without it waits, whatever its fidelity
        schedule = self.by_start.get(start)
        if schedule is None:
            schedule = self.by_start[start] = self._work_out(start)
        return schedule

    def _work_out(self, start: int) -> _Schedule:
        needs = self.needs or ()
        watch = self.points.watch()
        initial = getattr(watch, "state", None)
        n_fidelities = len(self.fidelity_values)
        answers, states = [False] * n_fidelities, [initial] * n_fidelities
        for position in range(start, n_fidelities):
            # What the watch reads of a result here: the fidelity, and that the needed metrics are there.
            result = dict.fromkeys(needs, 0.0)
            result[self.fidelity_name] = self.fidelity_values[position]
            answers[position] = bool(watch(0, result, 0.0))
            states[position] = getattr(watch, "state", None)
        return _Schedule(answers, states, initial)


class SimulatedExecutor:
    """Runs blackbox trials on ``num_workers`` virtual workers in simulated time.

    Args:
        blackbox: the problem every trial runs (a :class:`~fasttune.simulation.Blackbox`).
        num_workers: how many trials run at once.
        decision_overhead_s: simulated seconds a trial waits for each decision (0: none).
        start_time: the clock's value when the experiment starts (``timestamp`` and
            ``date`` of results derive from it; fixed, so runs are identical).
        time_budget_s: the experiment's budget in simulated seconds: no result past it is
            produced (the runner then stops every trial).
        checkpoint_at: ``"decision_points"`` (a checkpoint with each result at a decision
            point), ``None`` (none), or ``n`` (every ``n``-th fidelity).
        write_results: whether the runner writes each trial's ``params.json``,
            ``result.json`` (and ``progress.csv``); off by default, for speed.
    """

    #: The runner reads the experiment's time from here ...
    clock: SimulatedClock
    #: ... and asks its searcher on the loop's thread, so the run is reproducible.
    deterministic = True
    #: Whether the runner writes the trials' result files (see ``write_results``).
    writes_result_files: bool

    def __init__(self, blackbox: Blackbox, num_workers: int = 1, *, decision_overhead_s: float = 0.0,
                 start_time: float = 0.0, time_budget_s: Optional[float] = None,
                 checkpoint_at: Any = CHECKPOINT_AT_DECISIONS, write_results: bool = False) -> None:
        if not isinstance(blackbox, Blackbox):
            raise TypeError(f"SimulatedExecutor needs a fasttune.simulation.Blackbox, got {type(blackbox).__name__}.")
        if not isinstance(num_workers, int) or isinstance(num_workers, bool) or num_workers < 1:
            raise ValueError(f"num_workers must be a positive int, got {num_workers!r}.")
        if decision_overhead_s < 0:
            raise ValueError(f"decision_overhead_s must be >= 0, got {decision_overhead_s!r}.")
        if not (checkpoint_at in (None, CHECKPOINT_AT_DECISIONS)
                or (isinstance(checkpoint_at, int) and not isinstance(checkpoint_at, bool) and checkpoint_at > 0)):
            raise ValueError(f"checkpoint_at must be {CHECKPOINT_AT_DECISIONS!r}, None or a positive int, "
                             f"got {checkpoint_at!r}.")
        self.blackbox = blackbox
        self.num_workers = num_workers
        self.decision_overhead_s = float(decision_overhead_s)
        self.checkpoint_at = checkpoint_at
        self.writes_result_files = bool(write_results)
        self.clock = SimulatedClock(start_time)
        self._deadline = None if time_budget_s is None else self.clock.now + float(time_budget_s)
        self._free = list(range(num_workers))  # a heap: the lowest free slot is taken first
        self._segments: Dict[int, _Segment] = {}  # by slot
        self._by_trial: Dict[str, _Segment] = {}
        self._events: List[Tuple[float, int, int]] = []  # (due, seq, slot)
        self._seq = 0
        self._checkpoint_positions: Dict[str, int] = {}  # checkpoint key (see _key) -> fidelities done
        # After a restore: the segments that were running when the experiment was saved, by
        # trial id, taken up again when the runner restarts their trials (see set_state).
        self._in_flight: Dict[str, Dict[str, Any]] = {}
        self._left_running: List[Dict[str, Any]] = []  # what cleanup() found running
        # A loop that runs trials on these workers itself (the direct loop): it saves its running
        # trials' states (running_states(), as _segment_state's) and takes their interrupts.
        self.loop_elsewhere: Any = None
        self._fidelity_values = blackbox.fidelities.tolist()  # plain Python values, for the results
        self._fidelity_name = blackbox.fidelity_name
        self._decisions: Dict[Any, DecisionForm] = {}  # by the wire form's hashable copy (see decisions_under)
        # The last wire form asked for (kept alive here, so its identity names it) and its DecisionForm.
        self._last_decisions: Optional[Tuple[Any, DecisionForm]] = None

    # ---- what the runner asks -------------------------------------------------------
    def register_trainable(self, name: str, trainable: Any) -> None:
        """Nothing to load: every trial runs the blackbox."""

    def check_feasible(self, trial: Any) -> None:
        """Any trial fits a virtual worker."""

    def has_resources_for_trial(self, trial: Any, queue: bool = True) -> bool:
        return self.has_free_slot()

    def cluster_resources(self) -> Dict[str, float]:
        return {"CPU": float(self.num_workers)}

    def start_trial(self, trial: Any, spec: Dict[str, Any], queue: bool = True) -> int:
        slot = self.take_slot()
        segment = _Segment(slot, spec, self.decisions_under(spec.get("decide", "every_result")))
        self._segments[slot] = segment
        self._by_trial[segment.trial_id] = segment
        saved = self._in_flight.pop(segment.trial_id, None)
        at_saved_point = saved is not None and spec.get("iteration", 0) == saved["iteration"]
        unanswered = at_saved_point and saved["awaiting"] and saved["seq"] < 0
        if at_saved_point and not (unanswered and "clone_from" in spec):
            self._resume_in_flight(segment, trial.config, saved)
        else:
            # A reset the runner answers that reply with starts after the decision, as reset_trial's.
            self._begin(segment, trial.config, self.clock.now + (self.decision_overhead_s if unanswered else 0.0))
        return slot

    def send_decision(self, slot: int, trial_id: str, decision: str) -> None:
        segment = self._segments.get(slot)
        if segment is None or segment.trial_id != trial_id or not segment.awaiting:
            return  # answered already (an interrupt ended it)
        segment.awaiting = False
        # The reply it answers reached the runner: all the segment's results so far did.
        segment.heard, segment.delivered = segment.last_time, segment.count
        if decision == protocol.CONTINUE:
            self._advance(segment, self.clock.now + self.decision_overhead_s)
        else:
            self._end(segment, "stopped" if decision == protocol.STOP else "paused", self.clock.now)

    def reset_trial(self, trial: Any, new_config: Dict[str, Any], new_experiment_tag: str,
                    fields: Optional[Dict[str, Any]] = None) -> bool:
        segment = self._by_trial.get(trial.trial_id)
        if segment is None or not segment.awaiting:
            return False
        slot = segment.slot
        spec = dict(segment.spec, **(fields or {}))
        fresh = _Segment(slot, spec, self.decisions_under(spec.get("decide", "every_result")))
        self._segments[slot] = fresh
        self._by_trial[fresh.trial_id] = fresh
        self._begin(fresh, new_config, self.clock.now + self.decision_overhead_s)
        return True

    def stop_trial(self, trial: Any) -> bool:
        return self._interrupt(trial, "stopped")

    def pause_trial(self, trial: Any, should_checkpoint: bool = True) -> bool:
        return self._interrupt(trial, "paused")

    def trial_ended(self, slot: int, trial: Any) -> None:
        segment = self._segments.get(slot)
        if segment is not None and segment.trial_id == trial.trial_id and segment.ended:
            del self._segments[slot]
            if self._by_trial.get(trial.trial_id) is segment:
                del self._by_trial[trial.trial_id]
            self.release_slot(slot)

    @property
    def deadline(self) -> Optional[float]:
        """When the time budget runs out on the clock (None: no budget): no reply due after it is taken."""
        return self._deadline

    def has_free_slot(self) -> bool:
        return bool(self._free)

    def take_slot(self) -> int:
        """A free virtual worker for a trial that starts now: the lowest."""
        return heapq.heappop(self._free)

    def release_slot(self, slot: int) -> None:
        """Virtual worker ``slot``'s trial has ended."""
        heapq.heappush(self._free, slot)

    def next_seq(self) -> int:
        """The number of a reply scheduled now: replies due at the same time come in this order."""
        seq = self._seq
        self._seq = seq + 1
        return seq

    def adapt_depth(self, slot: int, whole_trials_in_reply: int, starved: int = 0) -> None:
        """Virtual workers hold one trial at a time: nothing to adapt."""

    def get_next_executor_event(self, next_trial_exists: bool, wake: Optional[threading.Event] = None,
                                timeout: Optional[float] = None,
                                wake_poll_s: Optional[float] = None) -> Optional[Tuple[int, int, Any]]:
        if next_trial_exists and self._free:
            return EVENT_START, -1, None
        events = self._events
        while events:
            due, seq, slot = events[0]
            segment = self._segments.get(slot)
            if segment is None or segment.seq != seq:
                heapq.heappop(events)  # superseded by an interrupt, or its trial is gone
                continue
            if self._deadline is not None and due > self._deadline:
                # Nothing happens after the budget: the runner sees it spent and stops all.
                self.clock.advance_to(self._deadline)
                return None
            heapq.heappop(events)
            self.clock.advance_to(due)
            if self._in_flight:
                self._in_flight.clear()  # the clock moved on: a trial restarted now starts afresh
            records, segment.records, segment.seq = segment.records, [], -1
            return EVENT_BATCH, slot, records
        return None

    def await_resources(self, trial: Any) -> Optional[str]:
        return None

    def worker_died(self, slot: int) -> List[Any]:
        return []  # virtual workers do not die

    def cleanup(self) -> None:
        # The loop ended (an interrupt, an error): the final snapshot saves what was running.
        self._left_running.extend(self._running_states())
        self.loop_elsewhere = None
        self._segments.clear()
        self._by_trial.clear()
        self._events.clear()
        self._free = list(range(self.num_workers))

    # ---- running a segment ------------------------------------------------------------
    def _begin(self, segment: _Segment, config: Dict[str, Any], now: float) -> None:
        """A segment starts at ``now``: it takes its curve, resumes from its checkpoint
        (another trial's, for PBT's exploit) and runs to its next reply."""
        segment.start_time = segment.last_time = segment.heard = now
        segment.records.append(protocol.Started(segment.trial_id, now, 0, "simulated", "127.0.0.1"))
        spec = segment.spec
        curve, failure = curve_of(self.blackbox, config)
        if failure is not None:
            segment.records.append(protocol.Failed(segment.trial_id, failure, None))
            self._reply(segment, now, ended=True)
            return
        metrics, step_seconds = curve
        segment.metrics = {name: values.tolist() for name, values in metrics.items()}
        segment.step_seconds = step_seconds.tolist()
        restore = spec.get("restore")
        source = spec.get("clone_from")
        if source:
            name = self._checkpoint_name(segment)
            self._checkpoint_positions[self._key(segment, name)] = self._checkpoint_positions.get(_key(source), 0)
            segment.records.append(protocol.Cloned(segment.trial_id, name))
            restore = self._path(segment, name)
        segment.position = self._checkpoint_positions.get(_key(restore), 0) if restore else 0
        segment.schedule = segment.decisions.schedule(segment.position, segment.metrics)
        if segment.schedule is None:
            segment.at_decision_point = segment.decisions.points.watch()
        self._advance(segment, now)

    def _advance(self, segment: _Segment, now: float) -> None:
        """Run ``segment`` from ``now`` to its next decision point, stop criterion or end,
        and schedule that reply."""
        # The loop runs on locals, written back once: it is the simulator's per-result cost.
        metric_columns = list(segment.metrics.items())
        single_metric, single_values = metric_columns[0] if len(metric_columns) == 1 else (None, None)
        step_seconds, fidelity_name, fidelity_values = segment.step_seconds, self._fidelity_name, self._fidelity_values
        schedule = segment.schedule
        answers = schedule.answers if schedule is not None else None
        watch, stop = segment.at_decision_point, segment.stop
        checkpoint_at = self.checkpoint_at
        checkpoint_at_decisions = checkpoint_at == CHECKPOINT_AT_DECISIONS
        checkpoint_every = checkpoint_at if isinstance(checkpoint_at, int) else 0
        base_iteration, base_time, start_time = segment.base_iteration, segment.base_time, segment.start_time
        position, count, last_time = segment.position, segment.count, segment.last_time
        results: List[Dict[str, Any]] = []
        times = array("d")
        checkpoints: Dict[int, str] = {}
        end: Any = None
        t = now
        last = len(step_seconds)
        while position < last:
            i = position
            t += step_seconds[i]
            position += 1
            count += 1
            if single_metric is not None:
                result = {single_metric: single_values[i], fidelity_name: fidelity_values[i]}
            else:
                result = {name: values[i] for name, values in metric_columns}
                result[fidelity_name] = fidelity_values[i]
            iteration = base_iteration + count
            time_total = base_time + (t - start_time)  # the driver's arithmetic
            at_decision = answers[i] if answers is not None else watch(iteration, result, time_total)
            if (at_decision and checkpoint_at_decisions) or (checkpoint_every and position % checkpoint_every == 0):
                name = self._checkpoint_name(segment)
                self._checkpoint_positions[self._key(segment, name)] = position
                checkpoints[len(results)] = name
            results.append(result)
            times.append(t)
            if stop is not None and stop.reached(
                    result, iteration=iteration, since_restore=count,
                    time_total=time_total, time_since_restore=t - start_time,
                    now=t, time_this_iter=t - last_time):
                end = protocol.Ended("stopped", segment.trial_id)
                break
            last_time = t
            if at_decision:
                end = protocol.Decide(segment.trial_id, iteration, False)
                break
        else:
            end = protocol.Ended("done", segment.trial_id)
        segment.position, segment.count, segment.last_time = position, count, last_time
        if results:
            segment.records.append(protocol.Results(segment.trial_id, results, times.tobytes(), checkpoints))
        segment.records.append(end)
        segment.awaiting = type(end) is protocol.Decide
        self._reply(segment, t, ended=not segment.awaiting)

    def _interrupt(self, trial: Any, how: str) -> bool:
        """End ``trial``'s segment now: the results it reported by now stay, later ones
        never happen (the real worker's interrupt takes effect at its next report)."""
        segment = self._by_trial.get(trial.trial_id)
        if segment is None:
            return self.loop_elsewhere.interrupt(trial, how) if self.loop_elsewhere is not None else False
        now = self.clock.now
        if segment.ended and segment.due <= now:
            return True  # it ended (or failed) by now: that reply stands, as the real worker's would
        kept: List[Any] = []
        for record in segment.records:
            if isinstance(record, protocol.Results):
                times = array("d")
                times.frombytes(record.times)
                keep = sum(1 for t in times if t <= now)
                if keep:
                    checkpoints = {i: name for i, name in record.checkpoints.items() if i < keep}
                    kept.append(protocol.Results(record.trial_id, record.metrics[:keep], times[:keep].tobytes(),
                                                 checkpoints))
            elif isinstance(record, (protocol.Started, protocol.Cloned)):
                kept.append(record)
            # a Decide or Ended not reached by now is replaced by this end
        segment.records = kept
        segment.awaiting = False
        segment.interrupted = True
        self._end(segment, how, now)
        return True

    def _end(self, segment: _Segment, how: str, now: float) -> None:
        segment.records.append(protocol.Ended(how, segment.trial_id))
        self._reply(segment, now, ended=True)

    def _reply(self, segment: _Segment, due: float, ended: bool) -> None:
        segment.ended = ended
        segment.due = due
        segment.seq = self.next_seq()
        heapq.heappush(self._events, (due, segment.seq, segment.slot))

    def decisions_under(self, wire: Any) -> DecisionForm:
        """The shared :class:`DecisionForm` of a spec's ``decide`` wire form."""
        last = self._last_decisions
        if last is not None and last[0] is wire:
            return last[1]  # the same form object (a scheduler's, made once) as the last trial's
        key = _frozen(wire)
        try:
            decisions = self._decisions.get(key)
        except TypeError:  # a form nested deeper than today's: not kept
            return DecisionForm(wire, self._fidelity_name, self._fidelity_values)
        if decisions is None:
            if len(self._decisions) >= MAX_DECISION_FORMS:
                self._decisions.clear()  # forms made per trial (PBT's) would pile up
            decisions = self._decisions[key] = DecisionForm(wire, self._fidelity_name, self._fidelity_values)
        self._last_decisions = (wire, decisions)
        return decisions

    def _checkpoint_name(self, segment: _Segment) -> str:
        name = f"checkpoint_{segment.ckpt_index:06d}"
        segment.ckpt_index += 1
        return name

    @staticmethod
    def _path(segment: _Segment, name: str) -> str:
        return os.path.join(segment.spec.get("trial_dir") or "", name)

    def _key(self, segment: _Segment, name: str) -> str:
        """``_key`` of the segment's checkpoint ``name`` (a name without "/"), with the
        trial directory's part worked out once per segment: it does not depend on the name."""
        prefix = segment.checkpoint_key_prefix
        if prefix is None:
            prefix = segment.checkpoint_key_prefix = _key(self._path(segment, "_"))[:-1]
        return prefix + name

    # ---- snapshots and restore ----------------------------------------------------------
    def get_state(self) -> Dict[str, Any]:
        """What a restore needs to go on exactly (plain data, for the experiment snapshot):
        the clock, the budget's deadline, the checkpoints' fidelities, and each running
        segment's position and the reply it was about to send."""
        return {"now": self.clock.now, "deadline": self._deadline, "seq": self._seq,
                "checkpoints": dict(self._checkpoint_positions),
                "running": self._left_running + self._running_states()}

    def _running_states(self) -> List[Dict[str, Any]]:
        """The segments with a reply on the way that the runner does not expect otherwise:
        not those it stopped or paused itself (it ended their trials already)."""
        states = [self._segment_state(segment) for segment in self._segments.values()
                  if (segment.seq >= 0 or segment.awaiting) and not segment.interrupted]
        return states + self.loop_elsewhere.running_states() if self.loop_elsewhere is not None else states

    def set_state(self, state: Dict[str, Any]) -> None:
        """Take back :meth:`get_state`'s state (before the runner adopts its trials): the
        clock goes on from where it stopped, and a running trial the runner restarts from
        the point its last reply reached goes on with the reply it was about to send, at
        the simulated time it was due, as if never interrupted."""
        self.clock.now = float(state["now"])
        self._deadline = state["deadline"]
        self._seq = int(state["seq"])
        self._checkpoint_positions = dict(state["checkpoints"])
        self._in_flight = {saved["trial_id"]: saved for saved in state["running"]}

    @staticmethod
    def _segment_state(segment: _Segment) -> Dict[str, Any]:
        # Waiting for the answer to a reply the runner has (an error ended the loop before it
        # answered): every result so far reached it, as when it answers.
        unanswered = segment.awaiting and segment.seq < 0
        delivered, heard = (segment.count, segment.last_time) if unanswered else (segment.delivered, segment.heard)
        return {
            "trial_id": segment.trial_id, "iteration": segment.base_iteration + delivered,
            "heard": heard, "position": segment.position, "count": segment.count,
            "base_iteration": segment.base_iteration, "base_time": segment.base_time,
            "start_time": segment.start_time, "last_time": segment.last_time, "ckpt_index": segment.ckpt_index,
            "due": segment.due, "seq": segment.seq, "awaiting": segment.awaiting, "ended": segment.ended,
            # what its decision points have reached (points on an attribute keep some)
            "watch": _watch_state(segment),
            "records": [record_state(record) for record in segment.records],
        }

    def _resume_in_flight(self, segment: _Segment, config: Dict[str, Any], saved: Dict[str, Any]) -> None:
        """Put back a segment saved running: its curve, position and pending reply."""
        metrics, step_seconds = self.blackbox.curve(config)
        segment.metrics = {name: values.tolist() for name, values in metrics.items()}
        segment.step_seconds = step_seconds.tolist()
        for field in ("position", "count", "base_iteration", "base_time", "start_time", "last_time", "ckpt_index",
                      "awaiting", "ended", "heard"):
            setattr(segment, field, saved[field])
        segment.delivered = saved["iteration"] - segment.base_iteration
        segment.at_decision_point = segment.decisions.points.watch()  # it goes on from the state saved
        if saved.get("watch") is not None:
            segment.at_decision_point.state = saved["watch"]
        records = [_record_from_state(record) for record in saved["records"]]
        if not records or type(records[0]) is not protocol.Started:
            # The runner starts the trial again: it hears it start where it last heard of it,
            # and counts its time from there on the checkpoint's total.  The segment counts
            # the same way from now on, so that its stop criteria and decision points see the
            # driver's time_total_s to the bit (the sums differ in the last place otherwise).
            records.insert(0, protocol.Started(segment.trial_id, segment.heard, 0, "simulated", "127.0.0.1"))
            segment.base_time = float(segment.spec.get("time_total", 0.0))
            segment.start_time = segment.heard
        segment.records = records
        if segment.awaiting and saved["seq"] < 0:
            # Its reply had reached the runner, which goes on with it now: as its answer.
            segment.awaiting = False
            self._advance(segment, self.clock.now + self.decision_overhead_s)
            return
        segment.due = saved["due"]
        segment.seq = saved["seq"]
        heapq.heappush(self._events, (segment.due, segment.seq, segment.slot))


def curve_of(blackbox: Blackbox, config: Dict[str, Any]) -> Tuple[Any, Optional[str]]:
    """``(blackbox.curve(config), None)``, or ``(None, the traceback)`` for a config the
    blackbox cannot answer, which fails that trial only."""
    try:
        return blackbox.curve(config), None
    except Exception:  # noqa: BLE001 - the trial's error, with its traceback
        return None, traceback.format_exc()


def _watch_state(segment: _Segment) -> Any:
    """What the segment's decision points have reached (points on an attribute keep some),
    as its watch holds it, or as its schedule says the watch would."""
    schedule = segment.schedule
    if schedule is None:
        return getattr(segment.at_decision_point, "state", None)
    return schedule.states[segment.position - 1] if segment.position else schedule.initial


def _frozen(wire: Any) -> Any:
    """A hashable copy of a ``DecisionPoints`` wire form: a string, or a list whose items
    are values or lists of values (as tuples here)."""
    if type(wire) is not list:
        return wire
    return tuple([tuple(value) if type(value) is list else value for value in wire])


def _key(path: str) -> str:
    """A checkpoint's key: its trial directory's name and its own, so that the fidelities
    kept stay found when the experiment is restored from another place."""
    return os.path.join(os.path.basename(os.path.dirname(path)), os.path.basename(path))


_RECORD_TYPES = {cls.__name__: cls for cls in (protocol.Started, protocol.Results, protocol.Decide, protocol.Ended,
                                               protocol.Failed, protocol.Cloned)}


def record_state(record: Any) -> List[Any]:
    """A worker record of a segment's pending reply as plain data (for the snapshot)."""
    fields = list(record)
    if type(record) is protocol.Results:  # int keys: as pairs, which any snapshot format keeps
        fields[3] = sorted(record.checkpoints.items())
    return [type(record).__name__, fields]


def _record_from_state(saved: List[Any]) -> Any:
    name, fields = saved
    if name == "Results":
        fields = list(fields)
        fields[3] = {int(index): checkpoint for index, checkpoint in fields[3]}
    return _RECORD_TYPES[name](*fields)
