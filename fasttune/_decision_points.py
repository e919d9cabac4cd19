"""When a trial must wait for its scheduler: :class:`DecisionPoints`, a small value class.

Schedulers declare them (``TrialScheduler.decision_points``); the runner sends their wire
form in a trial's spec; the worker tests each result against them.  This
module imports nothing from fasttune but the leaf helper ``_flatten`` (how a scheduler
looks a nested result key up), so both sides can use it.
"""
from __future__ import annotations

import bisect
import numbers
from typing import Any, Callable, Iterable, List, Mapping, Optional, Union

from fasttune._flatten import lookup_nested

WireDecisionPoints = Union[str, List[Any]]


class DecisionPoints:
    """When a trial must wait for its scheduler: never, at every result, at given
    iterations, every ``n`` iterations (optionally from ``start`` up to ``until``), or where
    another result attribute reaches given values (:meth:`reaching`).

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
        worker asks this at every result, so the test is built once).  Points on another
        attribute (:meth:`reaching`) need the result: :meth:`watch` tests them.

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

    @classmethod
    def reaching(cls, attr: str, values: Iterable[float], needs: Iterable[str] = ()) -> "DecisionPoints":
        """The results at which ``attr`` (``time_total_s``, or a reported one such as
        ``epoch``; it must not decrease) first reaches each of ``values``: what a scheduler
        with ``time_attr=attr`` acts on.  A result that skips several values waits once for
        each, at it and the next ones.  A result without ``attr`` or one of ``needs`` (the
        metric the scheduler judges by; empty names are left out) always waits, and
        reaches nothing.

        Example:
            >>> points = DecisionPoints.reaching("epoch", [1, 3, 9])
            >>> watch = points.watch()
            >>> [epoch for epoch in range(1, 12) if watch(epoch, {"epoch": epoch}, 0.0)]
            [1, 3, 9]
            >>> watch = points.watch()  # a trial whose epochs jump
            >>> [epoch for epoch in (2, 10, 11, 12, 13) if watch(0, {"epoch": epoch}, 0.0)]
            [2, 10, 11]
        """
        return cls(["reach", str(attr), sorted({float(v) for v in values}), _needed(needs)])

    @classmethod
    def reaching_every(cls, attr: str, interval: float, *, start: float = 0.0, since: float = 0.0,
                       needs: Iterable[str] = ()) -> "DecisionPoints":
        """The results at which ``attr`` is at least ``start`` and has grown by ``interval``
        since the last of them (the first: since ``since``), with the scheduler's own
        arithmetic (``value - last >= interval``): PBT's perturbation points on
        ``time_total_s``.  A result without ``attr`` or one of ``needs`` always waits.

        Example:
            >>> watch = DecisionPoints.reaching_every("time_total_s", 10.0, start=15.0).watch()
            >>> [t for t in (4.0, 12.0, 16.0, 20.0, 26.5, 30.0, 37.0) if watch(0, {}, t)]
            [16.0, 26.5, 37.0]
        """
        return cls(["reach_every", str(attr), float(interval), float(start), float(since), _needed(needs)])

    def watch(self) -> Callable[[int, Mapping[str, Any], float], bool]:
        """A test for one run segment of a trial: ``watch(iteration, metrics, time_total)``
        says whether the result the trial just reported (its ``iteration``, the metrics it
        reported, its ``time_total_s``) waits for a decision.  Points on an attribute keep
        what the segment has reached in the test's ``state`` (a simulator's snapshot saves
        it); the others test the iteration alone."""
        wire = self._wire
        if isinstance(wire, (list, tuple)) and len(wire) == 4 and wire[0] == "reach":
            return _ReachWatch(str(wire[1]), [float(v) for v in wire[2]], [str(k) for k in wire[3]])
        if isinstance(wire, (list, tuple)) and len(wire) == 6 and wire[0] == "reach_every":
            return _ReachEveryWatch(str(wire[1]), float(wire[2]), float(wire[3]), float(wire[4]),
                                    [str(k) for k in wire[5]])
        test = _membership(wire)
        return lambda iteration, metrics, time_total: test(iteration)

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
        if wire[0] == "reach":
            return ("reach", wire[1], tuple(wire[2]), tuple(wire[3]))
        if wire[0] == "reach_every":
            return ("reach_every", *wire[1:5], tuple(wire[5]))
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


_last_stateless_watch: tuple = (None, None)  # (wire form, its test) of watch_wire's last call


def watch_wire(wire: WireDecisionPoints) -> Callable[[int, Mapping[str, Any], float], bool]:
    """``DecisionPoints(wire).watch()``, reusing the last test made for an equal wire form
    when it keeps no state (it tests the iteration alone): a worker asks for one per run
    segment, nearly always for the form it asked for last.

    >>> watch_wire(["at", [1, 4]]) is watch_wire(["at", [1, 4]])
    True
    >>> watch_wire(["reach", "epoch", [1.0], []]) is watch_wire(["reach", "epoch", [1.0], []])
    False
    """
    global _last_stateless_watch
    last_wire, test = _last_stateless_watch
    if test is not None and wire == last_wire:
        return test
    test = DecisionPoints(wire).watch()
    if not isinstance(test, (_ReachWatch, _ReachEveryWatch)):
        _last_stateless_watch = (wire, test)
    return test


def _needed(needs: Iterable[Optional[str]]) -> List[str]:
    """The result keys a form waits for, sorted; a scheduler without a metric yet names None."""
    return sorted({str(key) for key in needs if key})


def _attribute(attr: str, iteration: int, metrics: Mapping[str, Any], time_total: float,
               needs: List[str]) -> Optional[float]:
    """The result's ``attr`` as a scheduler reads it; None when it is missing, not a
    number, or one of ``needs`` is missing (the result must wait: the scheduler decides
    whether it counts)."""
    if attr == "training_iteration":
        value: Any = iteration
    elif attr == "time_total_s":
        value = time_total
    else:
        value = lookup_nested(metrics, attr)
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or value != value:
        return None
    if any(lookup_nested(metrics, key) is None for key in needs):
        return None
    return value


class _ReachWatch:
    """The test of a ``reaching`` form for one run segment; ``state`` is how many values
    it has passed (a new segment starts at none, so its first result past a value waits
    once more: the scheduler has judged it there already and goes on)."""

    __slots__ = ("attr", "values", "needs", "state")

    def __init__(self, attr: str, values: List[float], needs: List[str]) -> None:
        self.attr, self.values, self.needs, self.state = attr, values, needs, 0

    def __call__(self, iteration: int, metrics: Mapping[str, Any], time_total: float) -> bool:
        value = _attribute(self.attr, iteration, metrics, time_total, self.needs)
        if value is None:
            return True
        if bisect.bisect_right(self.values, value) > self.state:
            self.state += 1
            return True
        return False


class _ReachEveryWatch:
    """The test of a ``reaching_every`` form for one run segment; ``state`` is the value
    at its last point."""

    __slots__ = ("attr", "interval", "start", "needs", "state")

    def __init__(self, attr: str, interval: float, start: float, since: float, needs: List[str]) -> None:
        self.attr, self.interval, self.start, self.needs, self.state = attr, interval, start, needs, since

    def __call__(self, iteration: int, metrics: Mapping[str, Any], time_total: float) -> bool:
        value = _attribute(self.attr, iteration, metrics, time_total, self.needs)
        if value is None:
            return True
        if value < self.start or value - self.state < self.interval:
            return False
        self.state = value
        return True


def _membership(wire: WireDecisionPoints) -> Any:
    """A one-argument test for the iterations the wire form names (a form it does not
    know means every result, the safe reading)."""
    if wire == "never":
        return lambda iteration: False
    if isinstance(wire, (list, tuple)) and len(wire) == 2 and wire[0] == "at":
        return frozenset(int(i) for i in wire[1]).__contains__
    if isinstance(wire, (list, tuple)) and len(wire) in (2, 4) and wire[0] == "every":
        n = max(1, int(wire[1]))
        if len(wire) == 2:
            return lambda iteration: iteration % n == 0
        first, last = int(wire[2]), None if wire[3] is None else int(wire[3])
        if last is None:
            return lambda iteration: iteration >= first and (iteration - first) % n == 0
        return lambda iteration: first <= iteration <= last and (iteration - first) % n == 0
    return lambda iteration: True


__all__ = ["DecisionPoints", "WireDecisionPoints", "watch_wire"]
