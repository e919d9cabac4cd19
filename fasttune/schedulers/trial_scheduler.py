"""The scheduler interface: decides, per result, whether a trial goes on.

Every hook gets the runner as ``tune_controller``, seen through
:class:`TuneControllerView` (what a scheduler may ask of it).  A scheduler also says
*when* it needs to decide (:meth:`TrialScheduler.decision_points`).
Between those iterations a trial reports without waiting for the driver; at them, the
trial blocks until the scheduler's decision arrives.  A scheduler that does not say gets
a decision at every result, which is exactly Ray Tune's behaviour.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Sequence, Union

from fasttune.schedulers._controller import TuneControllerView

if TYPE_CHECKING:  # pragma: no cover
    from fasttune.experiment.trial import Trial

WireDecisionPoints = Union[str, List[Any]]


class DecisionPoints:
    """When a trial must wait for its scheduler: never, at every result, at given
    iterations, or every ``n`` iterations (optionally from ``start`` up to ``until``).

    Two DecisionPoints are equal when they name the same iterations, whatever their form:
    ``every(4, start=6, until=18)`` equals ``at([6, 10, 14, 18])``, and is what goes to the
    worker instead of the list (four numbers, however long the run).

    Example:
        >>> from fasttune.schedulers import DecisionPoints
        >>> DecisionPoints.at([1, 3, 9]).to_wire()
        ['at', [1, 3, 9]]
        >>> DecisionPoints.every(4, start=6, until=19).to_wire()
        ['every', 4, 6, 18]
        >>> DecisionPoints.every(4, start=6, until=18) == DecisionPoints.at([6, 10, 14, 18])
        True
    """

    __slots__ = ("_wire", "_test")

    def __init__(self, wire: WireDecisionPoints) -> None:
        self._wire = wire
        self._test: Any = None  # the membership test, made on first use

    def __contains__(self, iteration: int) -> bool:
        """Whether a trial that reported ``iteration`` waits for a decision there (the
        worker asks this at every result, so the test is built once).

        >>> points = DecisionPoints.every(4, start=6, until=14)
        >>> [i for i in range(20) if i in points]
        [6, 10, 14]
        >>> 8 in DecisionPoints.every(4), 9 in DecisionPoints.every(4)
        (True, False)
        """
        test = self._test
        if test is None:
            test = self._test = _membership(self._wire)
        return test(iteration)

    @classmethod
    def never(cls) -> "DecisionPoints":
        return cls("never")

    @classmethod
    def every_result(cls) -> "DecisionPoints":
        return cls("every_result")

    @classmethod
    def at(cls, iterations: Iterable[int]) -> "DecisionPoints":
        return cls(["at", sorted({int(i) for i in iterations})])

    @classmethod
    def every(cls, n: int, start: Optional[int] = None, until: Optional[int] = None) -> "DecisionPoints":
        """Iterations ``start, start + n, start + 2n, ...`` (``start`` defaults to ``n``:
        the multiples of ``n``), up to and including ``until`` when given.

        On the wire: ``["every", n]`` for the multiples of ``n``, else
        ``["every", n, start, last]`` (``last`` the final iteration named, or None).
        """
        if int(n) < 1:
            raise ValueError(f"DecisionPoints.every(n) needs n >= 1, got {n}.")
        n = int(n)
        if start is not None and int(start) < 1:
            raise ValueError(f"DecisionPoints.every(start=...) needs start >= 1, got {start}.")
        first = n if start is None else int(start)
        if until is None:
            if first == n:
                return cls(["every", n])
            return cls(["every", n, first, None])
        last = first + (int(until) - first) // n * n
        if last < first:
            return cls.at([])
        return cls(["every", n, first, last])

    def to_wire(self) -> WireDecisionPoints:
        return self._wire

    def _form(self) -> tuple:
        """("at", iterations) for a finite set, ("every", n, first) for an endless one."""
        wire = self._wire
        if wire == "never":
            return ("at", ())
        if wire == "every_result":
            return ("every", 1, 1)
        if wire[0] == "at":
            return ("at", tuple(wire[1]))
        n = wire[1]
        first = wire[2] if len(wire) > 2 else n
        last = wire[3] if len(wire) > 2 else None
        if last is None:
            return ("every", n, first)
        if last == first:
            return ("at", (first,))
        return ("range", first, last, n)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DecisionPoints):
            return False
        a, b = self._form(), other._form()
        if a[0] == "range":
            a, b = b, a
        if b[0] == "range":
            first, last, n = b[1:]
            if a[0] == "range":
                return a[1:] == b[1:]
            if a[0] != "at" or len(a[1]) != (last - first) // n + 1:
                return False
            return a[1] == tuple(range(first, last + 1, n))
        return a == b

    def __repr__(self) -> str:
        return f"DecisionPoints({self._wire!r})"


def _membership(wire: WireDecisionPoints) -> Any:
    """A one-argument test for the iterations the wire form names."""
    if wire == "never":
        return lambda iteration: False
    if wire == "every_result":
        return lambda iteration: True
    if wire[0] == "at":
        return frozenset(int(i) for i in wire[1]).__contains__
    n = max(1, int(wire[1]))
    if len(wire) == 2:
        return lambda iteration: iteration % n == 0
    first, last = int(wire[2]), None if wire[3] is None else int(wire[3])
    if last is None:
        return lambda iteration: iteration >= first and (iteration - first) % n == 0
    return lambda iteration: first <= iteration <= last and (iteration - first) % n == 0


class TrialScheduler:
    """Base class of schedulers; the defaults run every trial to its end (FIFO)."""

    CONTINUE = "CONTINUE"
    PAUSE = "PAUSE"
    STOP = "STOP"
    NOOP = "NOOP"

    _metric: Optional[str] = None
    _mode: Optional[str] = None

    @property
    def metric(self) -> Optional[str]:
        return self._metric

    @property
    def mode(self) -> Optional[str]:
        return self._mode

    def set_search_properties(self, metric: Optional[str], mode: Optional[str], **spec: Any) -> bool:
        if self._metric and metric and self._metric != metric:
            return False
        if self._mode and mode and self._mode != mode:
            return False
        if metric:
            self._metric = metric
        if mode:
            self._mode = mode
        return True

    def decision_points(self, trial: "Trial") -> DecisionPoints:
        """Iterations at which this scheduler must decide for ``trial`` before it goes on.

        The default, every result, is always correct; built-in schedulers narrow it.
        """
        return DecisionPoints.every_result()

    def pauses_for_waiting_trials(self, trial: "Trial") -> bool:
        """Whether, at each of ``trial``'s decision points, this scheduler answers PAUSE
        whenever another trial waits to run (time-sharing, as PBT does).

        Then a worker with another trial queued behind ``trial`` hands itself over at a
        decision point without waiting for the answer, when it can resume ``trial`` from
        that point (a checkpoint came with the result, or a class trainable saves one).
        The scheduler still sees every result and still decides: a STOP ends the paused
        trial, a reset applies when it resumes, and a CONTINUE (a guess that was wrong)
        resumes it from that checkpoint, so the trial's history is the same either way.
        The default, False, always waits for the answer.
        """
        return False

    def on_trial_add(self, tune_controller: TuneControllerView, trial: "Trial") -> None:
        pass

    def on_trial_error(self, tune_controller: TuneControllerView, trial: "Trial") -> None:
        pass

    def on_trial_result(self, tune_controller: TuneControllerView, trial: "Trial", result: Dict[str, Any]) -> str:
        return TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller: TuneControllerView, trial: "Trial", result: Dict[str, Any]) -> None:
        pass

    def on_trial_remove(self, tune_controller: TuneControllerView, trial: "Trial") -> None:
        pass

    def choose_trial_to_run(self, tune_controller: TuneControllerView) -> Optional["Trial"]:
        """A PENDING trial to start next (the earliest added), or a PAUSED one."""
        for status in ("PENDING", "PAUSED"):
            trial = tune_controller.first_trial_with_status(status)
            if trial is not None:
                return trial
        return None

    def debug_string(self) -> str:
        return f"Using {type(self).__name__} scheduling algorithm."

    def save(self, checkpoint_path: str) -> None:
        raise NotImplementedError

    def restore(self, checkpoint_path: str) -> None:
        raise NotImplementedError


class FIFOScheduler(TrialScheduler):
    """Runs trials in the order they were added and never stops one early."""

    def decision_points(self, trial: "Trial") -> DecisionPoints:
        return DecisionPoints.never()

    def debug_string(self) -> str:
        return "Using FIFO scheduling algorithm."


def overrides(obj: Any, base: type, method: str) -> bool:
    """Whether ``obj``'s class replaces ``base.method`` (so calling it can matter)."""
    return getattr(type(obj), method, None) is not getattr(base, method, None)


__all__: Sequence[str] = ["TrialScheduler", "FIFOScheduler", "DecisionPoints", "TuneControllerView"]
