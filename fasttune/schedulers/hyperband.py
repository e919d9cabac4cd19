"""Synchronous HyperBand, ``ray.tune.schedulers.HyperBandScheduler``.

Trials are grouped into *brackets* of successive halving.  With ``eta =
reduction_factor`` and ``S = round(log(max_t) / log(eta)) + 1``, bracket ``s`` (``s = 0,
1, ..., S - 1``, one *band* of brackets after another) takes ``n_s = ceil(S / (s + 1) *
eta**s)`` trials and starts them with a budget of ``r_s = floor(max_t / eta**s)``.  A
trial that reaches its bracket's current milestone is PAUSED until every trial of the
bracket has reached it; then the bracket keeps the best ``ceil(n / eta)`` trials
(stopping the rest), multiplies the milestone by ``eta`` (capped at ``max_t``) and
resumes the kept trials from their checkpoints.  After ``s`` halvings the bracket's
trials are stopped at its last milestone (with ``stop_last_trials``; without, they run on).

For ``max_t=81, eta=3`` the brackets are (n, r) = (5, 81), (8, 27), (15, 9), (34, 3),
(81, 1): the first five trials form bracket 0, the next eight bracket 1, and so on.
Trials are ranked by their latest metric (one that never reported it ranks last; ties
keep the later-added trial).  ``choose_trial_to_run`` returns PENDING trials first, then
kept PAUSED trials, oldest first; a trial is restarted from its latest checkpoint.

Differences from Ray Tune, deliberate and documented:

* A bracket takes exactly ``n_s`` trials, in the order trials are added.  Ray Tune counts
  only the bracket's live trials, which with its eager trial creation comes to the same;
  fasttune creates trials lazily, and counting live trials would let a bracket whose
  trials end quickly absorb every later trial.
* Since fasttune's runner creates a trial only when the scheduler has none to run,
  ``choose_trial_to_run`` asks for new trials (returns None) while the newest bracket
  has room, and a bracket with room halves only once it is full, or the search
  algorithm is finished or declined to add a trial (a concurrency limit counts paused
  trials), or nothing else could run.  Ray Tune's eager trial creation fills brackets
  the same way; under such a limit both halve the trials the bracket has.
* A trial reaching its bracket's last milestone is stopped at once, rather than paused
  until its bracket-mates get there and then stopped: the same final state, one pause
  and checkpoint fewer.

A trial restored to start over (``Tuner.restore(..., restart_errored=True)``) is judged
again from its first milestone: one that had left its bracket (it errored) goes back into
it when the bracket has not halved since, else into the newest bracket as a new trial.

Decision points: with ``time_attr="training_iteration"`` a trial waits for the driver only
at its bracket's milestones, the only iterations at which the decision can be anything
but CONTINUE; any other ``time_attr`` decides at every result.

Example:
    >>> from fasttune.schedulers import HyperBandScheduler
    >>> hb = HyperBandScheduler(metric="acc", mode="max", max_t=81, reduction_factor=3)
    >>> [(n, r) for n, r, _ in hb.bracket_shapes()]
    [(5, 81), (8, 27), (15, 9), (34, 3), (81, 1)]
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from fasttune.schedulers._common import (
    check_mode,
    check_name,
    check_number,
    load_state,
    metric_value,
    starts_over,
    TrialRequests,
    anything_runs,
    require_metric_and_mode,
    save_state,
)
from fasttune.schedulers.trial_scheduler import DecisionPoints, TrialScheduler

if TYPE_CHECKING:  # pragma: no cover
    from fasttune.experiment.trial import Trial
    from fasttune.schedulers._controller import TuneControllerView

_STATE_VERSION = 1
_WORST = float("-inf")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _floor(value: float) -> int:
    nearest = round(value)
    if abs(value - nearest) <= 1e-9 * max(1.0, abs(value)):
        return int(nearest)
    return math.floor(value)


def _ceil(value: float) -> int:
    nearest = round(value)
    if abs(value - nearest) <= 1e-9 * max(1.0, abs(value)):
        return int(nearest)
    return math.ceil(value)


def bracket_size(s: int, s_max_1: int, eta: float) -> int:
    """``n_s = ceil(s_max_1 / (s + 1) * eta**s)``, exact for integer ``eta``."""
    if _is_int(eta):
        numerator = s_max_1 * int(eta) ** s
        return -(-numerator // (s + 1))
    return _ceil(s_max_1 / (s + 1) * eta ** s)


def bracket_budget(s: int, max_t: float, eta: float) -> int:
    """``r_s = floor(max_t / eta**s)``, exact for integer ``max_t`` and ``eta``."""
    if _is_int(max_t) and _is_int(eta):
        return int(max_t) // int(eta) ** s
    return _floor(max_t * eta ** (-s))


def next_milestone(milestone: int, eta: float, max_t: float) -> int:
    """The milestone after ``milestone``: ``int(min(milestone * eta, max_t))``."""
    return _floor(min(milestone * eta, max_t))


class _Bracket:
    """One bracket of successive halving; trials by id, their latest time and value."""

    def __init__(self, s: int, n0: int, r0: int, max_t: float, eta: float, stop_last_trials: bool) -> None:
        self.s = s
        self.n0 = self.n = n0
        self.r0 = self.milestone = r0
        self.halves = s
        self.max_t = max_t
        self.eta = eta
        self.stop_last_trials = stop_last_trials
        self.live: Dict[str, List[float]] = {}  # trial id -> [time, signed value]
        self.reached = 0  # live trials whose time is at least the milestone
        self.added = 0
        self.stopped = 0

    def milestones(self) -> List[int]:
        out = [self.r0]
        for _ in range(self.s):
            out.append(next_milestone(out[-1], self.eta, self.max_t))
        return out

    def filled(self) -> bool:
        return self.added >= self.n0

    def add(self, trial_id: str) -> None:
        self.live[trial_id] = [0.0, _WORST]
        self.added += 1

    def update(self, trial_id: str, time: float, value: Optional[float]) -> None:
        entry = self.live[trial_id]
        self.reached += (time >= self.milestone) - (entry[0] >= self.milestone)
        entry[0] = time
        if value is not None:
            entry[1] = _WORST if math.isnan(value) else value

    def start_over(self, trial_id: str) -> None:
        """The trial runs again from scratch: it has reached nothing and reported nothing."""
        entry = self.live[trial_id]
        if entry[0] >= self.milestone:
            self.reached -= 1
        entry[0], entry[1] = 0.0, _WORST

    def keeps_going(self, trial_id: str) -> bool:
        """Whether the trial may go on without waiting (Ray Tune's ``continue_trial``)."""
        if self.halves == 0 and not self.stop_last_trials:
            return True
        return self.live[trial_id][0] < self.milestone

    def at_milestone(self) -> bool:
        """Every live trial is at the milestone.  A trial of the bracket that has not
        reported yet counts as time 0, so the runner's PENDING trial holds the round."""
        return bool(self.live) and self.reached == len(self.live)

    def remove(self, trial_id: str) -> bool:
        entry = self.live.pop(trial_id, None)
        if entry is None:
            return False
        if entry[0] >= self.milestone:
            self.reached -= 1
        return True

    def halve(self) -> Tuple[List[str], List[str]]:
        """Keep the best ``ceil(n / eta)`` (ties: the later-added one ranks higher, as
        Ray Tune's stable sort); returns (kept in the order they were added, dropped
        worst first) and moves the milestone on."""
        self.halves -= 1
        self.n = _ceil(self.n / self.eta)
        self.milestone = next_milestone(self.milestone, self.eta, self.max_t)
        ranked = sorted(self.live, key=lambda trial_id: self.live[trial_id][1])
        cut = max(len(ranked) - self.n, 0)
        dropped = ranked[:cut]
        for trial_id in dropped:
            del self.live[trial_id]
        self.stopped += len(dropped)
        self.reached = sum(1 for entry in self.live.values() if entry[0] >= self.milestone)
        return list(self.live), dropped

    def describe(self) -> str:
        return f"s={self.s} n={self.n}/{self.n0} milestone={self.milestone} live={len(self.live)}"


class HyperBandScheduler(TrialScheduler):
    """HyperBand: brackets of successive halving that pause trials at each milestone
    until the whole bracket is there, then keep the top ``1 / reduction_factor``.

    Args:
        time_attr: Result key measuring progress; must increase monotonically
            (``training_iteration`` lets trials run between milestones without waiting).
        metric: Result key to rank trials by; defaults to ``TuneConfig(metric=...)``.
        mode: ``"min"`` or ``"max"``; defaults to ``TuneConfig(mode=...)``.
        max_t: The most ``time_attr`` a trial gets (at least 1).
        reduction_factor: ``eta``: each halving keeps ``1/eta`` of a bracket's trials and
            gives them ``eta`` times the budget.
        stop_last_trials: Whether a bracket's trials are stopped at its last milestone.

    Trials must be able to resume from a checkpoint: a paused function trainable
    restarts from the checkpoint it last reported (from scratch without one); a class
    trainable is checkpointed when it pauses.

    Example:
        >>> import fasttune as tune
        >>> from fasttune.schedulers import HyperBandScheduler
        >>> scheduler = HyperBandScheduler(max_t=9, reduction_factor=3)
        >>> config = tune.TuneConfig(metric="loss", mode="min", scheduler=scheduler)
        >>> scheduler.bracket_shapes()
        [(3, 9, [9]), (5, 3, [3, 9]), (9, 1, [1, 3, 9])]
    """

    def __init__(
        self,
        time_attr: str = "training_iteration",
        metric: Optional[str] = None,
        mode: Optional[str] = None,
        max_t: float = 81,
        reduction_factor: float = 3,
        stop_last_trials: bool = True,
    ) -> None:
        owner = type(self).__name__
        self._time_attr = check_name(time_attr, "time_attr", owner)
        self._metric = check_name(metric, "metric", owner, optional=True)
        self._mode = check_mode(mode, owner)
        check_number(max_t, "max_t", owner, at_least=1)
        check_number(reduction_factor, "reduction_factor", owner, greater_than=1)
        if not isinstance(stop_last_trials, bool):
            raise TypeError(f"{owner}(stop_last_trials=...) must be True or False, got {stop_last_trials!r}.")
        self._max_t = max_t
        self._eta = reduction_factor
        self._stop_last_trials = stop_last_trials
        self._s_max_1 = int(round(math.log(max_t) / math.log(reduction_factor))) + 1
        self._bands: List[List[Optional[_Bracket]]] = [[]]
        self._current: Optional[_Bracket] = None
        self._bracket_of: Dict[str, _Bracket] = {}
        self._resumable: Dict[str, None] = {}  # kept trials to resume, oldest first
        # Trials that errored while in their bracket: its halvings left then (see _start_again).
        self._left_at: Dict[str, int] = {}
        # Trials it stopped on their own result, until they end: the time of that result
        # (a restore that cut it hears it again; see _take_back_decision).
        self._dropped_on: Dict[str, float] = {}
        # False after restoring a state saved before _left_at was kept (see _take_back_decision).
        self._left_at_known = True
        self._num_stopped = 0
        self._requests = TrialRequests()
        self._trials: Dict[str, "Trial"] = {}  # not saved: trials are looked up by id

    # ---- introspection -----------------------------------------------------------------
    def bracket_shapes(self) -> List[Tuple[int, int, List[int]]]:
        """(n_s, r_s, milestones) of the brackets of one band, ``s = 0, 1, ...``; brackets
        whose budget would be 0 are left out (as Ray Tune skips them)."""
        out = []
        for s in range(self._s_max_1):
            r0 = bracket_budget(s, self._max_t, self._eta)
            if r0 > 0:
                b = _Bracket(s, bracket_size(s, self._s_max_1, self._eta), r0, self._max_t, self._eta, True)
                out.append((b.n0, b.r0, b.milestones()))
        return out

    def brackets(self) -> List[List[str]]:
        """The live trial ids of every bracket created so far, in creation order."""
        return [list(b.live) for band in self._bands for b in band if b is not None]

    def bracket_of(self, trial: "Trial") -> Optional[Tuple[int, int, int]]:
        """(band index, s, current milestone) of ``trial``'s bracket, or None."""
        bracket = self._bracket_of.get(trial.trial_id)
        if bracket is None:
            return None
        for band_index, band in enumerate(self._bands):
            if any(b is bracket for b in band):
                return band_index, bracket.s, bracket.milestone
        return None  # pragma: no cover

    @property
    def num_stopped(self) -> int:
        return self._num_stopped

    def state(self) -> Dict[str, int]:
        """How many brackets were made, over every band, and how many trials were stopped
        (the counts Ray Tune's ``state()`` gives)."""
        brackets = sum(1 for band in self._bands for b in band if b is not None)
        return {"num_brackets": brackets, "num_stopped": self._num_stopped}

    # ---- the scheduler interface -------------------------------------------------------
    def decision_points(self, trial: "Trial") -> DecisionPoints:
        """The milestones of ``trial``'s bracket: those iterations with
        ``time_attr="training_iteration"``, else the results where ``time_attr`` reaches
        them; every result for a trial this scheduler was not told about."""
        bracket = self._bracket_of.get(trial.trial_id)
        if bracket is None:
            return DecisionPoints.every_result()
        if self._time_attr == "training_iteration":
            return DecisionPoints.at(bracket.milestones())
        return DecisionPoints.reaching(self._time_attr, bracket.milestones(), needs=[self._metric])

    def on_trial_add(self, tune_controller: TuneControllerView, trial: "Trial") -> None:
        require_metric_and_mode(self)
        self._trials[trial.trial_id] = trial
        self._requests.trial_added()
        if trial.trial_id in self._bracket_of:
            self._take_back_decision(tune_controller, trial)  # known from a restored state
            return
        if self._current is None or self._current.filled():
            self._current = self._new_bracket()
        self._current.add(trial.trial_id)
        self._bracket_of[trial.trial_id] = self._current

    def on_trial_result(self, tune_controller: TuneControllerView, trial: "Trial", result: Dict[str, Any]) -> str:
        if self._metric is None or self._mode is None:
            require_metric_and_mode(self)
        trial_id = trial.trial_id
        bracket = self._bracket_of.get(trial_id)
        if bracket is None:
            self.on_trial_add(tune_controller, trial)
            bracket = self._bracket_of[trial_id]
        elif trial_id not in bracket.live:
            # Dropped from its bracket; stopped again on the result it was dropped on, which
            # a restore reports again when the runner did not count it.
            dropped_on = self._dropped_on.get(trial_id)
            time = result.get(self._time_attr)
            if dropped_on is not None and time is not None and time >= dropped_on:
                return TrialScheduler.STOP
            return TrialScheduler.CONTINUE
        self._trials[trial_id] = trial
        self._resumable.pop(trial_id, None)  # reporting: it was resumed
        time = result.get(self._time_attr)
        if time is None:
            raise ValueError(
                f"HyperBandScheduler(time_attr={self._time_attr!r}): trial {trial} reported a "
                f"result without {self._time_attr!r}; report it in every result or choose "
                "another time_attr (training_iteration is always there)."
            )
        raw = result.get(self._metric)
        value = None
        if raw is not None:
            value = metric_value(raw, self._metric, type(self).__name__, trial)
            value = value if self._mode == "max" else -value
        bracket.update(trial_id, time, value)
        if bracket.keeps_going(trial_id):
            return TrialScheduler.CONTINUE
        if bracket.halves == 0:  # its last milestone, with stop_last_trials
            action = self._at_last_milestone(tune_controller, bracket, trial_id)
        else:
            action = self._process(tune_controller, bracket, trial_id)
        return action

    def on_trial_complete(self, tune_controller: TuneControllerView, trial: "Trial", result: Dict[str, Any]) -> None:
        self._drop(tune_controller, trial)

    def on_trial_error(self, tune_controller: TuneControllerView, trial: "Trial") -> None:
        self._drop(tune_controller, trial, errored=True)

    def on_trial_remove(self, tune_controller: TuneControllerView, trial: "Trial") -> None:
        self._drop(tune_controller, trial)

    def choose_trial_to_run(self, tune_controller: TuneControllerView) -> Optional["Trial"]:
        """A PENDING trial first.  Then, while the newest bracket still has room and the
        search algorithm may add trials, None, so that the runner adds one (fasttune
        creates trials lazily; Ray Tune fills brackets by creating trials ahead).  Else
        a PAUSED trial its bracket kept, oldest first."""
        pending = tune_controller.first_trial_with_status("PENDING")
        if pending is not None:
            return pending
        bracket = self._current
        if bracket is not None and bracket.halves > 0 and bracket.live and not bracket.filled():
            self._requests.observe(tune_controller)
            waiting = bracket.at_milestone()
            if not self._requests.may_come(tune_controller):
                if waiting:
                    self._process(tune_controller, bracket, None, force=True)
            elif waiting and not anything_runs(tune_controller):
                # Asking for a trial now would stall the runner if none came: run a kept
                # trial meanwhile, or halve the bracket with the trials it has.
                resumable = self._next_resumable(tune_controller)
                if resumable is not None:
                    return resumable
                self._process(tune_controller, bracket, None, force=True)
            else:
                self._requests.ask()
                return None
        return self._next_resumable(tune_controller)

    def debug_string(self) -> str:
        active = [b for band in self._bands for b in band if b is not None and b.live]
        total = self.state()["num_brackets"]
        brackets = "; ".join(b.describe() for b in active) or "no live brackets"
        return f"Using HyperBand: num_stopped={self._num_stopped} total_brackets={total}; {brackets}"

    # ---- persistence -------------------------------------------------------------------
    def save(self, checkpoint_path: str) -> None:
        """Pickle the scheduler's state (trials by id) to ``checkpoint_path``."""
        save_state(checkpoint_path, {
            "scheduler": type(self).__name__,
            "version": _STATE_VERSION,
            "time_attr": self._time_attr,
            "metric": self._metric,
            "mode": self._mode,
            "max_t": self._max_t,
            "eta": self._eta,
            "stop_last_trials": self._stop_last_trials,
            # Bracket objects hold trial ids only; pickled together, they stay shared.
            "bands": self._bands,
            "current": self._current,
            "bracket_of": self._bracket_of,
            "resumable": list(self._resumable),
            "left_at": self._left_at,
            "left_at_known": self._left_at_known,
            "dropped_on": self._dropped_on,
            "num_stopped": self._num_stopped,
            "requests": self._requests,
        })

    def restore(self, checkpoint_path: str) -> None:
        """Replace this scheduler's state with the one saved at ``checkpoint_path``."""
        state = load_state(checkpoint_path, type(self).__name__)
        self._time_attr = state["time_attr"]
        self._metric = state["metric"]
        self._mode = state["mode"]
        self._max_t = state["max_t"]
        self._eta = state["eta"]
        self._stop_last_trials = state["stop_last_trials"]
        self._s_max_1 = int(round(math.log(self._max_t) / math.log(self._eta))) + 1
        self._bands = state["bands"]
        self._current = state["current"]
        self._bracket_of = state["bracket_of"]
        self._resumable = dict.fromkeys(state["resumable"])
        # (Neither is in a state saved before it was kept.)
        self._left_at_known = state.get("left_at_known", "left_at" in state)
        self._left_at = dict(state.get("left_at") or {})
        self._dropped_on = dict(state.get("dropped_on") or {})
        self._num_stopped = state["num_stopped"]
        self._requests = state["requests"]
        self._trials = {}

    # ---- internals ---------------------------------------------------------------------
    def _new_bracket(self) -> _Bracket:
        while True:
            band = self._bands[-1]
            if len(band) >= self._s_max_1:
                band = []
                self._bands.append(band)
            s = self._bracket_s(len(band))
            r0 = bracket_budget(s, self._max_t, self._eta)
            if r0 <= 0:
                band.append(None)  # too small a budget for this bracket (as Ray Tune)
                continue
            bracket = _Bracket(s, bracket_size(s, self._s_max_1, self._eta), r0, self._max_t, self._eta,
                               self._stop_last_trials)
            band.append(bracket)
            return bracket

    def _bracket_s(self, position: int) -> int:
        """The ``s`` of a band's ``position``-th bracket: smallest ``s`` (fewest trials) first."""
        return position

    def _at_last_milestone(self, tune_controller: TuneControllerView, bracket: _Bracket, trial_id: str) -> str:
        """The decision for a trial at its bracket's last milestone: it is done."""
        self._dropped_on[trial_id] = bracket.live[trial_id][0]
        bracket.remove(trial_id)
        return TrialScheduler.STOP

    def _process(
        self, tune_controller: TuneControllerView, bracket: _Bracket, current: Optional[str], force: bool = False
    ) -> str:
        """Halve ``bracket`` as often as its trials allow; the decision for ``current``
        (the trial whose result is being judged, if any).  A bracket with room for more
        trials waits for them (unless ``force``): they start from its first milestone."""
        action = TrialScheduler.PAUSE
        # The bookkeeping is done before any trial is stopped: a callback raising while one
        # ends must not leave the halving half-applied in a snapshot.
        to_stop: List[str] = []
        current_time = bracket.live[current][0] if current in bracket.live else None
        while bracket.halves > 0 and bracket.at_milestone():
            if not (force or bracket.filled()) and self._requests.may_come(tune_controller):
                break
            kept, dropped = bracket.halve()
            self._num_stopped += len(dropped)
            for trial_id in dropped:
                self._resumable.pop(trial_id, None)
                if trial_id == current:
                    action = TrialScheduler.STOP
                else:
                    to_stop.append(trial_id)
            for trial_id in kept:
                if bracket.keeps_going(trial_id):
                    if trial_id == current:
                        action = TrialScheduler.CONTINUE
                    else:
                        self._resumable[trial_id] = None
                # else: already past the new milestone; it waits there
        if bracket.halves == 0 and bracket.stop_last_trials:
            # Trials already at the last milestone are done.
            for trial_id in [t for t, entry in bracket.live.items() if entry[0] >= bracket.milestone]:
                bracket.remove(trial_id)
                self._resumable.pop(trial_id, None)
                if trial_id == current:
                    action = TrialScheduler.STOP
                else:
                    to_stop.append(trial_id)
        if action == TrialScheduler.STOP:
            self._dropped_on[current] = current_time
        self._stop_each(tune_controller, to_stop)
        return action

    def _stop_each(self, tune_controller: TuneControllerView, trial_ids: List[str]) -> None:
        """Stop each of ``trial_ids``, also when stopping another raised (a callback's
        ``on_trial_complete``); the first error is raised once all are stopped."""
        first_error: Optional[BaseException] = None
        for trial_id in trial_ids:
            try:
                self._stop(tune_controller, trial_id)
            except BaseException as error:  # a Ctrl-C too: the halving is applied first
                if first_error is None:
                    first_error = error
        if first_error is not None:
            raise first_error

    def _take_back_decision(self, tune_controller: TuneControllerView, trial: "Trial") -> None:
        """A restored trial that ran at the snapshot comes back PENDING, also when this
        scheduler had paused it at its milestone or stopped it and the decision was still
        on its way to the worker: it is paused (until its bracket decides) or stopped now,
        as it was to be, rather than started to run past that point; one stopped on a
        result the runner then did not count (an error after the decision) runs to that
        result again and is stopped there, as it was.  One restored to start over (nothing
        reported) runs to its milestone again, ranked as one that has not reported yet: its
        bracket does not halve on what its earlier run reported; one that had left its
        bracket (an errored trial restarted, or resumed from its checkpoint) is judged again
        too (see :meth:`_start_again`), not run unjudged past ``max_t``."""
        if trial.status != "PENDING":
            return
        trial_id = trial.trial_id
        bracket = self._bracket_of[trial_id]
        dropped_on = self._dropped_on.get(trial_id)
        if dropped_on is not None:
            result = trial.last_result
            if result.get("done") or (result and self._progress(trial)[0] >= dropped_on):
                tune_controller.stop_trial(trial)  # the result it was stopped on counted
            return  # on_trial_result stops it on that result again
        if starts_over(trial):
            if trial_id in bracket.live:
                bracket.start_over(trial_id)
            else:
                self._start_again(trial_id, bracket)
            return
        if trial_id not in bracket.live:
            left_unknown = self._left_at_known and trial_id not in self._left_at
            if trial.last_result.get("done") or left_unknown:
                # Its last result ended it, or its bracket dropped it (the stop cut off); a
                # state saved before _left_at was kept cannot tell: it is judged again.
                tune_controller.stop_trial(trial)
                return
            # An errored trial resumed from its checkpoint: judged again from where it is.
            time, value = self._progress(trial)
            bracket = self._start_again(trial_id, bracket, time, value)
            if bracket.halves == 0 and not bracket.keeps_going(trial_id):
                tune_controller.stop_trial(trial)  # at its bracket's last milestone: done
                return
        else:
            time, value = self._progress(trial)
            if bracket.live[trial_id][0] != time:
                # Its bracket heard of a result the runner then did not count (an error
                # while this scheduler judged it): the trial reports it again.
                bracket.update(trial_id, time, value)
        if not bracket.keeps_going(trial_id):
            tune_controller.pause_trial(trial)

    def _progress(self, trial: "Trial") -> Tuple[float, float]:
        """``trial``'s time and signed value by its last result (``_WORST`` without one)."""
        result = trial.last_result
        raw = result.get(self._metric)
        value = _WORST
        if raw is not None:
            value = metric_value(raw, self._metric, type(self).__name__, trial)
            value = _WORST if math.isnan(value) else (value if self._mode == "max" else -value)
        return float(result.get(self._time_attr) or 0.0), value

    def _start_again(self, trial_id: str, left: _Bracket, time: float = 0.0, value: float = _WORST) -> _Bracket:
        """A trial that had left bracket ``left`` (it ended, e.g. errored) runs again, from
        scratch or (``time``, ``value``: its progress) from a checkpoint: back in ``left``
        when that bracket has not halved since (its bracket-mates wait for it at the same
        milestone, as if it had never failed), else into the newest bracket with room (or a
        new one), as Ray Tune adds a restarted trial; either way it is judged at its
        bracket's milestones, which returns."""
        if self._left_at.pop(trial_id, None) == left.halves:
            left.live[trial_id] = [0.0, _WORST]
            left.update(trial_id, time, value)
            return left
        if self._current is None or self._current.filled():
            self._current = self._new_bracket()
        self._current.add(trial_id)
        self._current.update(trial_id, time, value)
        self._bracket_of[trial_id] = self._current
        return self._current

    def _drop(self, tune_controller: TuneControllerView, trial: "Trial", errored: bool = False) -> None:
        """``trial`` ended: leave its bracket, which may now be ready to halve; where it left
        is kept for an errored trial only (the one that may run again)."""
        self._resumable.pop(trial.trial_id, None)
        self._dropped_on.pop(trial.trial_id, None)
        bracket = self._bracket_of.get(trial.trial_id)
        if bracket is None or not bracket.remove(trial.trial_id):
            return
        if errored:
            self._left_at[trial.trial_id] = bracket.halves
        if bracket.live and (bracket.halves > 0 or bracket.stop_last_trials):
            self._process(tune_controller, bracket, None)

    def _next_resumable(self, tune_controller: TuneControllerView) -> Optional["Trial"]:
        """The oldest kept trial that is PAUSED and not yet handed to a worker."""
        if not self._resumable:
            return None
        gone = []
        chosen = None
        for trial_id in self._resumable:
            trial = self._trial(tune_controller, trial_id)
            if trial is None or trial.is_finished():
                gone.append(trial_id)
                continue
            if trial.status == "PAUSED" and not tune_controller.is_trial_held(trial):  # not with a worker yet
                chosen = trial
                break
            # RUNNING: its pause is still on the way, or it was just resumed.
        for trial_id in gone:
            del self._resumable[trial_id]
        return chosen

    def _stop(self, tune_controller: TuneControllerView, trial_id: str) -> None:
        trial = self._trial(tune_controller, trial_id)
        if trial is not None and not trial.is_finished():
            tune_controller.stop_trial(trial)

    def _trial(self, tune_controller: TuneControllerView, trial_id: str) -> Optional["Trial"]:
        trial = self._trials.get(trial_id)
        if trial is None:
            trial = tune_controller.get_trial(trial_id)
            if trial is None:  # rebuild the index once (after a restore)
                self._trials.update({t.trial_id: t for t in tune_controller.get_trials()})
                trial = self._trials.get(trial_id)
            elif trial is not None:
                self._trials[trial_id] = trial
        return trial


__all__ = ["HyperBandScheduler", "bracket_size", "bracket_budget", "next_milestone"]
