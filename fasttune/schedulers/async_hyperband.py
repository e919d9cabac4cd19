"""Asynchronous successive halving (ASHA), ``ray.tune.schedulers.AsyncHyperBandScheduler``.

Each bracket has *rungs* at ``grace_period * reduction_factor**(s + k)`` (``k = 0, 1, ...``,
``s`` the bracket's index) up to ``max_t``.  When a trial first reaches a rung, its metric
is compared with the values recorded at that rung so far: below the top
``1 / reduction_factor`` quantile of them (linear interpolation, as numpy's percentile)
it is stopped; either way its value is recorded.  With ``stop_last_trials`` every trial
is stopped once it reaches ``max_t``.

Decision points: with ``time_attr="training_iteration"`` a trial only waits for the
driver at its bracket's rung milestones (rounded up to whole iterations) and at
``max_t``, the only iterations at which the decision can be anything but CONTINUE.
(A trial whose result at a rung lacks the metric is judged at its next result that has
it, as in Ray Tune; that verdict takes effect at its next decision point.)  Any other
``time_attr`` cannot be mapped to iterations, so every result is a decision point.

Each rung keeps its values sorted, so a verdict costs O(log n) comparisons plus an
insertion into a list, and no pass over the trials.  Differences from Ray Tune: rung
milestones are computed exactly (Ray Tune's floating-point count of rungs drops the rung
at ``max_t`` for e.g. ``max_t=1000, reduction_factor=10``); with one bracket no random
number is drawn.

Example:
    >>> from fasttune.schedulers import ASHAScheduler
    >>> asha = ASHAScheduler(metric="loss", mode="min", max_t=16, grace_period=1, reduction_factor=4)
    >>> asha.rung_milestones()
    [[1, 4, 16]]
"""
from __future__ import annotations

import heapq
import math
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

import numpy as np

from fasttune._flatten import lookup_nested
from fasttune.schedulers._common import (
    check_mode,
    check_name,
    check_number,
    load_state,
    metric_value,
    require_metric_and_mode,
    save_state,
    starts_over,
)
from fasttune.schedulers.trial_scheduler import DecisionPoints, TrialScheduler

if TYPE_CHECKING:  # pragma: no cover
    from fasttune.experiment.trial import Trial
    from fasttune.schedulers._controller import TuneControllerView

_STATE_VERSION = 1


def _snap(value: float) -> Any:
    """An integral float (up to rounding error) as an int, so milestones compare exactly."""
    if isinstance(value, int):
        return value
    nearest = round(value)
    if abs(value - nearest) <= 1e-9 * max(1.0, abs(value)):
        return int(nearest)
    return value


def rung_milestones(grace_period: float, max_t: float, reduction_factor: float, s: int) -> List[Any]:
    """The ascending milestones of bracket ``s``: ``grace_period * rf**(s + k) <= max_t``.

    Example:
        >>> rung_milestones(1, 100, 4, 0), rung_milestones(1, 100, 4, 1)
        ([1, 4, 16, 64], [4, 16, 64])
    """
    out: List[Any] = []
    k = s
    while True:
        milestone = _snap(grace_period * reduction_factor ** k)
        if milestone > max_t:
            return out
        out.append(milestone)
        k += 1


def percentile_of_sorted(values: List[float], fraction: float) -> float:
    """numpy's default (linear) percentile of ascending ``values`` at ``fraction`` in [0, 1],
    in O(1).

    Example:
        >>> percentile_of_sorted([2.0, 4.0], 0.5)
        3.0
    """
    n = len(values)
    lo = _rank(n, fraction)
    return _between(values[lo], values[min(lo + 1, n - 1)], (n - 1) * fraction - lo)


def _rank(n: int, fraction: float) -> int:
    """The index numpy's linear percentile at ``fraction`` of ``n`` sorted values
    interpolates from (its virtual index, rounded down, within the values), to the next."""
    virtual = (n - 1) * fraction
    if virtual >= n - 1:
        return n - 1
    return math.floor(virtual) if virtual > 0 else 0


def _between(a: float, b: float, gamma: float) -> float:
    """numpy's linear interpolation from ``a`` to ``b`` at ``gamma`` (symmetric, for accuracy;
    NaN where an infinity is involved, as numpy's, also at ``gamma == 0`` and ``a is b``)."""
    diff = b - a
    if gamma >= 0.5:
        return b - diff * (1.0 - gamma)
    return a + diff * gamma


class _Rung:
    """Values recorded at one milestone: by trial id, and the non-NaN ones split at the rank
    the cutoff starts from (the lowest ``rank + 1`` in a max-heap, the rest in a min-heap), so
    that a record and a cutoff cost O(log n) however many trials reached the rung."""

    __slots__ = ("milestone", "fraction", "recorded", "_low", "_high")

    def __init__(self, milestone: Any, fraction: float) -> None:
        self.milestone = milestone
        self.fraction = fraction
        self.recorded: Dict[str, float] = {}
        self._low: List[float] = []  # negated, so that heapq's smallest is the largest of them
        self._high: List[float] = []

    def cutoff(self) -> Optional[float]:
        """The value a trial must reach not to be stopped here (None: nothing to beat):
        ``percentile_of_sorted`` of the values at ``fraction``."""
        low, high = self._low, self._high
        if not low:
            return None
        n = len(low) + len(high)
        a = -low[0]
        return _between(a, high[0] if high else a, (n - 1) * self.fraction - (len(low) - 1))

    def record(self, trial_id: str, value: float) -> None:
        self.recorded[trial_id] = value
        if math.isnan(value):
            return
        low, high = self._low, self._high
        if low and value <= -low[0]:
            heapq.heappush(low, -value)
        else:
            heapq.heappush(high, value)
        self._balance()

    def forget(self, trial_id: str) -> None:
        """Drop the trial's value, if it has one here (rare: a trial that starts over)."""
        value = self.recorded.pop(trial_id, None)
        if value is None or math.isnan(value):
            return
        if self._low and value <= -self._low[0]:
            self._low.remove(-value)
            heapq.heapify(self._low)
        else:
            self._high.remove(value)
            heapq.heapify(self._high)
        self._balance()

    def _balance(self) -> None:
        """Move values between the heaps until the low one holds the lowest ``rank + 1``."""
        low, high = self._low, self._high
        n = len(low) + len(high)
        wanted = _rank(n, self.fraction) + 1 if n else 0
        while len(low) > wanted:
            heapq.heappush(high, -heapq.heappop(low))
        while len(low) < wanted:
            heapq.heappush(low, -heapq.heappop(high))

    def __getstate__(self) -> Dict[str, Any]:
        return {"milestone": self.milestone, "fraction": self.fraction, "recorded": self.recorded}

    def __setstate__(self, state: Any) -> None:
        # An older version pickled (None, its slots), with the values in one sorted list and
        # no fraction: its bracket gives that (_Bracket.__setstate__), and records them again.
        slots = state[1] if isinstance(state, tuple) else state
        self.milestone, self.fraction = slots["milestone"], slots.get("fraction")
        self.recorded, self._low, self._high = {}, [], []
        for trial_id, value in slots["recorded"].items():
            if self.fraction is None:
                self.recorded[trial_id] = value  # (recorded again once the fraction is known)
            else:
                self.record(trial_id, value)


class _Bracket:
    """One ASHA bracket: its rungs, highest milestone first."""

    def __init__(self, milestones: List[Any], fraction: float, stop_last_trials: bool) -> None:
        self.rungs = [_Rung(m, fraction) for m in reversed(milestones)]
        self.fraction = fraction
        self.stop_last_trials = stop_last_trials

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        for rung in self.rungs:
            if rung.fraction is None:  # an older version's rung (see _Rung.__setstate__)
                recorded, rung.recorded, rung.fraction = rung.recorded, {}, self.fraction
                for trial_id, value in recorded.items():
                    rung.record(trial_id, value)

    def on_result(self, trial_id: str, time: float, value: float) -> str:
        for rung in self.rungs:
            if time < rung.milestone:
                continue
            if trial_id in rung.recorded:
                if not self.stop_last_trials:
                    break  # already judged at the highest rung it reached: go on
                continue  # a lower rung it skipped (time jumped) may still judge it
            cutoff = rung.cutoff()
            rung.record(trial_id, value)
            if cutoff is not None and value < cutoff:
                return TrialScheduler.STOP
            return TrialScheduler.CONTINUE
        return TrialScheduler.CONTINUE

    def describe(self) -> str:
        parts = []
        for rung in self.rungs:
            cutoff = rung.cutoff()
            shown = "None" if cutoff is None else f"{cutoff:.4g}"
            parts.append(f"Iter {rung.milestone}: {shown} ({len(rung.recorded)} recorded)")
        return "Bracket: " + " | ".join(parts) if parts else "Bracket: no rungs"


class AsyncHyperBandScheduler(TrialScheduler):
    """Asynchronous successive halving: stop a trial at a rung when it is not in the top
    ``1 / reduction_factor`` of the trials that reached that rung before it.

    Args:
        time_attr: Result key measuring progress; must increase monotonically
            (``training_iteration`` lets trials run between rungs without waiting).
        metric: Result key to rank trials by; defaults to ``TuneConfig(metric=...)``.
        mode: ``"min"`` or ``"max"``; defaults to ``TuneConfig(mode=...)``.
        max_t: Trials are stopped once ``time_attr`` reaches this (with
            ``stop_last_trials``).
        grace_period: The first rung: no trial is stopped before it.
        reduction_factor: Keep the top ``1 / reduction_factor`` at each rung; rungs are
            this factor apart.
        brackets: Number of brackets; bracket ``s`` starts its rungs at
            ``grace_period * reduction_factor**s``.  A trial joins a bracket at random,
            bracket ``s`` with probability proportional to ``e**(number of its rungs)``
            (numpy's global random state, as Ray Tune).
        stop_last_trials: Whether trials reaching ``max_t`` are stopped; with False they
            go on (still judged at a rung at ``max_t``, if there is one).

    Example:
        >>> import fasttune as tune
        >>> from fasttune.schedulers import AsyncHyperBandScheduler
        >>> scheduler = AsyncHyperBandScheduler(max_t=81, grace_period=1, reduction_factor=3)
        >>> config = tune.TuneConfig(metric="loss", mode="min", scheduler=scheduler)
        >>> scheduler.rung_milestones()
        [[1, 3, 9, 27, 81]]
    """

    def __init__(
        self,
        time_attr: str = "training_iteration",
        metric: Optional[str] = None,
        mode: Optional[str] = None,
        max_t: float = 100,
        grace_period: float = 1,
        reduction_factor: float = 4,
        brackets: int = 1,
        stop_last_trials: bool = True,
    ) -> None:
        owner = type(self).__name__
        self._time_attr = check_name(time_attr, "time_attr", owner)
        self._metric = check_name(metric, "metric", owner, optional=True)
        self._mode = check_mode(mode, owner)
        check_number(max_t, "max_t", owner, greater_than=0)
        check_number(grace_period, "grace_period", owner, greater_than=0)
        if grace_period > max_t:
            raise ValueError(
                f"{owner}(grace_period={grace_period!r}) is larger than max_t={max_t!r}; no "
                "trial could ever reach a rung. Use grace_period <= max_t."
            )
        check_number(reduction_factor, "reduction_factor", owner, greater_than=1)
        check_number(brackets, "brackets", owner, at_least=1, integer=True)
        if not isinstance(stop_last_trials, bool):
            raise TypeError(f"{owner}(stop_last_trials=...) must be True or False, got {stop_last_trials!r}.")
        self._max_t = _snap(max_t)
        self._grace_period = grace_period
        self._reduction_factor = reduction_factor
        self._stop_last_trials = stop_last_trials
        # numpy.percentile divides the percentage by 100: the same fraction, bit for bit.
        self._fraction = ((1 - 1 / reduction_factor) * 100) / 100
        self._brackets = [
            _Bracket(rung_milestones(grace_period, self._max_t, reduction_factor, s), self._fraction, stop_last_trials)
            for s in range(int(brackets))
        ]
        self._bracket_of: Dict[str, int] = {}
        # Each bracket's decision points, made once (with the metric they need; it may be set later).
        self._decision_points_of: Dict[int, Any] = {}
        self._num_stopped = 0

    # ---- introspection -----------------------------------------------------------------
    def rung_milestones(self) -> List[List[Any]]:
        """Each bracket's rung milestones, ascending."""
        return [[rung.milestone for rung in reversed(b.rungs)] for b in self._brackets]

    def bracket_of(self, trial: "Trial") -> int:
        """The index of the bracket ``trial`` was assigned to (assigning it now if new)."""
        return self._assign(trial.trial_id)

    @property
    def num_stopped(self) -> int:
        return self._num_stopped

    # ---- the scheduler interface -------------------------------------------------------
    @property
    def resumes_from_checkpoints(self) -> bool:
        # It only stops trials; a subclass may pause them.
        return type(self) is not AsyncHyperBandScheduler

    def decision_points(self, trial: "Trial") -> DecisionPoints:
        """Rung milestones and ``max_t``: those iterations with
        ``time_attr="training_iteration"``, else the results where ``time_attr`` reaches them."""
        index = self._assign(trial.trial_id)
        made = self._decision_points_of.get(index)
        if made is not None and made[0] == self._metric:
            return made[1]
        points = {rung.milestone for rung in self._brackets[index].rungs}
        if self._stop_last_trials:
            points.add(self._max_t)
        if self._time_attr == "training_iteration":
            decision_points = DecisionPoints.at({math.ceil(point) for point in points})
        else:
            decision_points = DecisionPoints.reaching(self._time_attr, points, needs=[self._metric])
        self._decision_points_of[index] = (self._metric, decision_points)
        return decision_points

    def on_trial_add(self, tune_controller: TuneControllerView, trial: "Trial") -> None:
        """A trial added again that starts over (restored with ``restart_errored``) is
        judged at every rung again: the values its earlier run recorded are forgotten, so
        that its new ones are compared there as a new trial's are."""
        if self._metric is None or self._mode is None:
            require_metric_and_mode(self)
        known = trial.trial_id in self._bracket_of
        index = self._assign(trial.trial_id)
        if known and starts_over(trial):
            for rung in self._brackets[index].rungs:
                rung.forget(trial.trial_id)

    def on_trial_result(self, tune_controller: TuneControllerView, trial: "Trial", result: Dict[str, Any]) -> str:
        metric, mode = self._metric, self._mode
        if metric is None or mode is None:
            require_metric_and_mode(self)
        time = result.get(self._time_attr)
        raw = result.get(metric)
        if time is None or raw is None:
            return TrialScheduler.CONTINUE  # as Ray Tune: results without them are not judged
        if self._stop_last_trials and time >= self._max_t:
            self._num_stopped += 1
            return TrialScheduler.STOP
        value = metric_value(raw, metric, type(self).__name__, trial)
        sign = 1.0 if mode == "max" else -1.0
        trial_id = trial.trial_id
        action = self._brackets[self._assign(trial_id)].on_result(trial_id, time, sign * value)
        if action == TrialScheduler.STOP:
            self._num_stopped += 1
        return action

    def result_keys(self) -> Optional[Tuple[str, ...]]:
        """The time attribute and the metric, which :meth:`on_trial_result` reads alone
        (None when a subclass, a patch or the instance replaces it, or before the metric is set)."""
        if (self._metric is None or type(self).on_trial_result is not _ASHA_ON_TRIAL_RESULT
                or "on_trial_result" in vars(self)):
            return None
        return self._time_attr, self._metric

    def on_trial_complete(self, tune_controller: TuneControllerView, trial: "Trial", result: Dict[str, Any]) -> None:
        """A trial that ended on its own still records its last value at the rung it
        reached (so later trials are judged against it)."""
        final = self._final_value(trial, result)
        if final is not None:
            time, value = final
            sign = 1.0 if self._mode == "max" else -1.0
            self._brackets[self._assign(trial.trial_id)].on_result(trial.trial_id, time, sign * value)

    def _check_final_result(self, trial: "Trial", result: Dict[str, Any]) -> None:
        if type(result.get(self._metric)) is not float:  # (a float is a number: the usual case, at once)
            self._final_value(trial, result)

    def _final_value(self, trial: "Trial", result: Dict[str, Any]) -> Optional[Tuple[Any, float]]:
        """(time, metric) of ``trial``'s final ``result`` as :meth:`on_trial_complete` records
        it; None when it records nothing (raises ``MetricNotANumber`` for a metric it cannot compare)."""
        time = lookup_nested(result, self._time_attr)
        raw = lookup_nested(result, self._metric) if self._metric is not None else None
        if time is None or raw is None or self._mode is None:
            return None
        return time, metric_value(raw, self._metric, type(self).__name__, trial)

    def debug_string(self) -> str:
        brackets = " ; ".join(b.describe() for b in self._brackets)
        return f"Using AsyncHyperBand: num_stopped={self._num_stopped}; {brackets}"

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
            "grace_period": self._grace_period,
            "reduction_factor": self._reduction_factor,
            "stop_last_trials": self._stop_last_trials,
            "brackets": [[(rung.milestone, dict(rung.recorded)) for rung in b.rungs] for b in self._brackets],
            "bracket_of": dict(self._bracket_of),
            "num_stopped": self._num_stopped,
        })

    def restore(self, checkpoint_path: str) -> None:
        """Replace this scheduler's state with the one saved at ``checkpoint_path``."""
        state = load_state(checkpoint_path, type(self).__name__)
        self._time_attr = state["time_attr"]
        self._metric = state["metric"]
        self._mode = state["mode"]
        self._max_t = state["max_t"]
        self._grace_period = state["grace_period"]
        self._reduction_factor = state["reduction_factor"]
        self._stop_last_trials = state["stop_last_trials"]
        self._fraction = ((1 - 1 / self._reduction_factor) * 100) / 100
        self._brackets = []
        self._decision_points_of = {}
        for rungs in state["brackets"]:
            bracket = _Bracket([m for m, _ in reversed(rungs)], self._fraction, self._stop_last_trials)
            for rung, (_, recorded) in zip(bracket.rungs, rungs):
                for trial_id, value in recorded.items():
                    rung.record(trial_id, value)
            self._brackets.append(bracket)
        self._bracket_of = dict(state["bracket_of"])
        self._num_stopped = state["num_stopped"]

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("_decision_points_of", {})  # (pickled by a version that kept none)

    # ---- internals ---------------------------------------------------------------------
    def _assign(self, trial_id: str) -> int:
        index = self._bracket_of.get(trial_id)
        if index is None:
            if len(self._brackets) == 1:
                index = 0
            else:
                sizes = np.array([len(b.rungs) for b in self._brackets], dtype=float)
                weights = np.exp(sizes - sizes.max())
                index = int(np.random.choice(len(self._brackets), p=weights / weights.sum()))
            self._bracket_of[trial_id] = index
        return index


ASHAScheduler = AsyncHyperBandScheduler

# ASHA's own judge, as defined: what result_keys answers for (a patched class has another).
_ASHA_ON_TRIAL_RESULT = AsyncHyperBandScheduler.on_trial_result

__all__ = ["AsyncHyperBandScheduler", "ASHAScheduler", "rung_milestones", "percentile_of_sorted"]
