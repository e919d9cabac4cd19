"""The median stopping rule, ``ray.tune.schedulers.MedianStoppingRule``.

At every result at ``time_attr = T >= grace_period``, a trial is stopped (paused with
``hard_stop=False``) when its best result so far is worse than the median, over the
other trials that have reached ``T``, of their *running averages*: the mean of each
trial's results with ``grace_period <= time_attr <= T``.  With fewer than
``min_samples_required`` such trials there is no verdict; the trial then yields (is
paused) when other trials wait to run and it has run ``min_time_slice`` since it last
yielded.

Every trial's results after the grace period are kept in one flat numpy store with
running sums, so a decision costs a few vectorised passes over the trials (a guess at
each trial's position for ``T``, checked, and a vectorised binary search where the
guess was wrong) and no Python loop over trials.

Differences from Ray Tune, deliberate: a trial's final result is counted once (Ray
Tune records it again when the trial completes); a trial with no result in
``[grace_period, T]``, or with a NaN running average, is not one of the samples (in Ray
Tune its NaN average makes the median NaN, which stops every trial judged against it);
after a trial restarts from a checkpoint, its results after that checkpoint are
replaced by the new ones.

Trials start in this order: PENDING ones, then new ones while the search algorithm
gives them, then PAUSED ones (those that yielded, and with ``hard_stop=False`` those the
rule paused): fasttune's runner creates a trial only when the scheduler has none to run,
so this is what Ray Tune's eager trial creation amounts to.

Decision points: every result, since any result after the grace period may stop or
pause the trial, depending on the others.

Example:
    >>> from fasttune.schedulers import MedianStoppingRule
    >>> rule = MedianStoppingRule(time_attr="training_iteration", metric="acc", mode="max",
    ...                           grace_period=5, min_samples_required=3)
    >>> rule.debug_string()
    'Using MedianStoppingRule: num_stopped=0.'
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

import numpy as np

from fasttune._flatten import lookup_nested
from fasttune.schedulers._common import (
    check_mode,
    check_name,
    check_number,
    load_state,
    metric_value,
    TrialRequests,
    anything_runs,
    require_metric_and_mode,
    save_state,
    starts_over,
    trials_waiting,
)
from fasttune.schedulers.trial_scheduler import DecisionPoints, TrialScheduler

if TYPE_CHECKING:  # pragma: no cover
    from fasttune.experiment.trial import Trial
    from fasttune.schedulers._controller import TuneControllerView

_STATE_VERSION = 1


class _Histories:
    """Per trial, its results with time >= grace: times and running sums, each trial in
    its own segment of two flat arrays (a full segment moves to the end, twice as big)."""

    def __init__(self) -> None:
        self.times = np.zeros(1024)
        self.sums = np.zeros(1024)
        self.used = 0
        self.start = np.zeros(64, dtype=np.int64)
        self.count = np.zeros(64, dtype=np.int64)
        self.capacity = np.zeros(64, dtype=np.int64)
        self.last_time = np.full(64, -np.inf)  # time of the trial's last result (any)
        self.best = np.full(64, np.nan)  # best metric so far, in "max" orientation
        self.trials = 0

    def new_trial(self) -> int:
        index = self.trials
        if index == len(self.start):
            grow = len(self.start)
            self.start = np.concatenate([self.start, np.zeros(grow, dtype=np.int64)])
            self.count = np.concatenate([self.count, np.zeros(grow, dtype=np.int64)])
            self.capacity = np.concatenate([self.capacity, np.zeros(grow, dtype=np.int64)])
            self.last_time = np.concatenate([self.last_time, np.full(grow, -np.inf)])
            self.best = np.concatenate([self.best, np.full(grow, np.nan)])
        self.trials += 1
        return index

    def truncate(self, index: int, time: float) -> None:
        """Forget the trial's results at ``time`` or later (it restarted from earlier)."""
        start, count = int(self.start[index]), int(self.count[index])
        self.count[index] = int(np.searchsorted(self.times[start:start + count], time, side="left"))

    def forget(self, index: int) -> None:
        """Forget all of the trial's results (it starts over)."""
        self.count[index] = 0
        self.last_time[index] = -np.inf
        self.best[index] = np.nan

    def append(self, index: int, time: float, value: float) -> None:
        count = int(self.count[index])
        if count == self.capacity[index]:
            self._move(index, max(8, 2 * count))
        position = int(self.start[index]) + count
        self.times[position] = time
        self.sums[position] = value + (self.sums[position - 1] if count else 0.0)
        self.count[index] = count + 1

    def _move(self, index: int, capacity: int) -> None:
        if self.used + capacity > len(self.times):
            size = max(2 * len(self.times), self.used + capacity)
            self.times = np.concatenate([self.times, np.zeros(size - len(self.times))])
            self.sums = np.concatenate([self.sums, np.zeros(size - len(self.sums))])
        old, count, new = int(self.start[index]), int(self.count[index]), self.used
        self.times[new:new + count] = self.times[old:old + count]
        self.sums[new:new + count] = self.sums[old:old + count]
        self.start[index] = new
        self.capacity[index] = capacity
        self.used += capacity

    def running_means(self, time: float, exclude: int) -> np.ndarray:
        """Each other trial that reached ``time``: the mean of its results up to ``time``
        (those with none there, or a NaN mean, are left out)."""
        rows = np.flatnonzero(self.last_time[:self.trials] >= time)
        rows = rows[rows != exclude]
        if rows.size == 0:
            return np.empty(0)
        start, count = self.start[rows], self.count[rows]
        times = self.times
        # How many of each trial's results are at or before ``time``: first a guess that
        # is exact for one result per unit of time (training_iteration), then a
        # vectorised binary search for the trials where it is not.
        first = times[np.where(count > 0, start, 0)]
        guess = np.clip(np.floor(time - first) + 1, 0, count).astype(np.int64)
        below = (guess == 0) | (times[start + np.maximum(guess - 1, 0)] <= time)
        above = (guess == count) | (times[np.minimum(start + guess, len(times) - 1)] > time)
        wrong = np.flatnonzero(~(below & above))
        if wrong.size:
            lo = np.zeros(wrong.size, dtype=np.int64)
            hi = count[wrong].copy()
            base = start[wrong]
            while True:
                active = lo < hi
                if not active.any():
                    break
                mid = (lo + hi) // 2
                at_or_before = times[base + np.where(active, mid, 0)] <= time
                lo = np.where(active & at_or_before, mid + 1, lo)
                hi = np.where(active & ~at_or_before, mid, hi)
            guess[wrong] = lo
        has = guess > 0
        means = self.sums[(start + guess - 1)[has]] / guess[has]
        return means[~np.isnan(means)]


class MedianStoppingRule(TrialScheduler):
    """Stop trials whose best result is worse than the median of the other trials'
    running averages at the same point in time.

    Args:
        time_attr: Result key measuring progress; must increase monotonically.
        metric: Result key to judge trials by; defaults to ``TuneConfig(metric=...)``.
        mode: ``"min"`` or ``"max"``; defaults to ``TuneConfig(mode=...)``.
        grace_period: No trial is judged before this much ``time_attr``; running
            averages start here.
        min_samples_required: The fewest other trials that must have reached the same
            point for a verdict.
        min_time_slice: Without enough samples, a trial yields to waiting trials at most
            once per this much ``time_attr``.
        hard_stop: Stop trials (True) or pause them (False: they resume, and run without
            further judgement, once no other trial is waiting).

    Example:
        >>> import fasttune as tune
        >>> from fasttune.schedulers import MedianStoppingRule
        >>> scheduler = MedianStoppingRule(grace_period=10.0, min_samples_required=4)
        >>> config = tune.TuneConfig(metric="loss", mode="min", scheduler=scheduler)
    """

    def __init__(
        self,
        time_attr: str = "time_total_s",
        metric: Optional[str] = None,
        mode: Optional[str] = None,
        grace_period: float = 60.0,
        min_samples_required: int = 3,
        min_time_slice: float = 0,
        hard_stop: bool = True,
    ) -> None:
        owner = type(self).__name__
        self._time_attr = check_name(time_attr, "time_attr", owner)
        self._metric = check_name(metric, "metric", owner, optional=True)
        self._mode = check_mode(mode, owner)
        self._grace_period = check_number(grace_period, "grace_period", owner, at_least=0)
        self._min_samples_required = check_number(
            min_samples_required, "min_samples_required", owner, at_least=1, integer=True)
        self._min_time_slice = check_number(min_time_slice, "min_time_slice", owner, at_least=0)
        if not isinstance(hard_stop, bool):
            raise TypeError(f"{owner}(hard_stop=...) must be True or False, got {hard_stop!r}.")
        self._hard_stop = hard_stop
        self._histories = _Histories()
        self._index: Dict[str, int] = {}
        self._stopped: Dict[str, None] = {}  # trials stopped or paused by the rule
        self._last_pause: Dict[str, float] = {}
        self._requests = TrialRequests()

    @property
    def num_stopped(self) -> int:
        return len(self._stopped)

    # ---- the scheduler interface -------------------------------------------------------
    def decision_points(self, trial: "Trial") -> DecisionPoints:
        """Every result: the verdict depends on the other trials' progress."""
        return DecisionPoints.every_result()

    def on_trial_add(self, tune_controller: TuneControllerView, trial: "Trial") -> None:
        """A trial added again that starts over (restored with ``restart_errored``) is
        judged again as a new trial: its earlier run's results and best are forgotten."""
        require_metric_and_mode(self)
        self._requests.trial_added()
        index = self._index.get(trial.trial_id)
        if index is not None and starts_over(trial):
            self._histories.forget(index)
            self._stopped.pop(trial.trial_id, None)
            self._last_pause.pop(trial.trial_id, None)

    def choose_trial_to_run(self, tune_controller: TuneControllerView) -> Optional["Trial"]:
        """PENDING trials first, then new trials while the search algorithm gives them,
        then PAUSED ones: a trial that yielded for lack of samples makes room for new
        trials (as with Ray Tune's eager trial creation), and paused trials resume when
        no new trial comes."""
        pending = tune_controller.first_trial_with_status("PENDING")
        if pending is not None:
            return pending
        self._requests.observe(tune_controller)
        paused = tune_controller.first_trial_with_status("PAUSED")
        if paused is None or (self._requests.may_come(tune_controller) and anything_runs(tune_controller)):
            if paused is not None:
                self._requests.ask()
            return None
        return paused

    def on_trial_result(self, tune_controller: TuneControllerView, trial: "Trial", result: Dict[str, Any]) -> str:
        if self._metric is None or self._mode is None:
            require_metric_and_mode(self)
        time = result.get(self._time_attr)
        raw = result.get(self._metric)
        if time is None or raw is None:
            return TrialScheduler.CONTINUE  # as Ray Tune: results without them are not judged
        trial_id = trial.trial_id
        if trial_id in self._stopped:
            return TrialScheduler.CONTINUE  # paused by the rule, resumed: runs unjudged
        index = self._record(trial_id, float(time), metric_value(raw, self._metric, type(self).__name__, trial))
        if time < self._grace_period:
            return TrialScheduler.CONTINUE
        means = self._histories.running_means(float(time), exclude=index)
        if means.size < self._min_samples_required:
            return self._insufficient_samples(tune_controller, trial_id, float(time))
        median = float(np.median(means))
        if self._mode == "min":
            median = -median  # compared with the best result in "max" orientation
        best = self._histories.best[index]
        if math.isnan(best) or median > best:
            self._stopped[trial_id] = None
            return TrialScheduler.STOP if self._hard_stop else TrialScheduler.PAUSE
        return TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller: TuneControllerView, trial: "Trial", result: Dict[str, Any]) -> None:
        """Count the final result unless it was already seen (it usually was)."""
        final = self._final_value(trial, result)
        if final is not None:
            self._record(trial.trial_id, *final)

    def _check_final_result(self, trial: "Trial", result: Dict[str, Any]) -> None:
        if type(result.get(self._metric)) is not float:  # (a float is a number: the usual case, at once)
            self._final_value(trial, result)

    def _final_value(self, trial: "Trial", result: Dict[str, Any]) -> Optional[Tuple[float, float]]:
        """(time, metric) of ``trial``'s final ``result`` as :meth:`on_trial_complete` counts
        it; None when it counts nothing (raises ``MetricNotANumber`` for a metric it cannot compare)."""
        time = lookup_nested(result, self._time_attr)
        raw = lookup_nested(result, self._metric) if self._metric is not None else None
        if time is None or raw is None or self._mode is None or trial.trial_id in self._stopped:
            return None
        index = self._index.get(trial.trial_id)
        if index is not None and float(time) <= self._histories.last_time[index]:
            return None
        return float(time), metric_value(raw, self._metric, type(self).__name__, trial)

    def debug_string(self) -> str:
        return f"Using MedianStoppingRule: num_stopped={len(self._stopped)}."

    # ---- persistence -------------------------------------------------------------------
    def save(self, checkpoint_path: str) -> None:
        """Pickle the scheduler's state (trials by id) to ``checkpoint_path``."""
        save_state(checkpoint_path, {
            "scheduler": type(self).__name__,
            "version": _STATE_VERSION,
            "time_attr": self._time_attr,
            "metric": self._metric,
            "mode": self._mode,
            "grace_period": self._grace_period,
            "min_samples_required": self._min_samples_required,
            "min_time_slice": self._min_time_slice,
            "hard_stop": self._hard_stop,
            "histories": self._histories,
            "index": dict(self._index),
            "stopped": list(self._stopped),
            "last_pause": dict(self._last_pause),
            "requests": self._requests,
        })

    def restore(self, checkpoint_path: str) -> None:
        """Replace this scheduler's state with the one saved at ``checkpoint_path``."""
        state = load_state(checkpoint_path, type(self).__name__)
        for key in ("time_attr", "metric", "mode", "grace_period", "min_samples_required",
                    "min_time_slice", "hard_stop", "histories"):
            setattr(self, f"_{key}", state[key])
        self._index = dict(state["index"])
        self._stopped = dict.fromkeys(state["stopped"])
        self._last_pause = dict(state["last_pause"])
        self._requests = state["requests"]

    # ---- internals ---------------------------------------------------------------------
    def _record(self, trial_id: str, time: float, value: float) -> int:
        histories = self._histories
        index = self._index.get(trial_id)
        if index is None:
            index = self._index[trial_id] = histories.new_trial()
        if time < histories.last_time[index]:
            histories.truncate(index, time)  # restarted from an earlier checkpoint
        histories.last_time[index] = time
        if time >= self._grace_period:
            histories.append(index, time, value)
        oriented = value if self._mode == "max" else -value
        best = histories.best[index]
        if not math.isnan(oriented) and (math.isnan(best) or oriented > best):
            histories.best[index] = oriented
        return index

    def _insufficient_samples(self, tune_controller: TuneControllerView, trial_id: str, time: float) -> str:
        if time - self._last_pause.get(trial_id, -math.inf) <= self._min_time_slice:
            return TrialScheduler.CONTINUE
        if not trials_waiting(tune_controller):
            return TrialScheduler.CONTINUE
        self._last_pause[trial_id] = time
        return TrialScheduler.PAUSE


__all__ = ["MedianStoppingRule"]
