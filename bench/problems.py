"""Test problems for the quality suite: Branin, Hartmann-6, Rosenbrock-4 and the PBT toy.

Each synthetic function is a :class:`Problem`: a box domain, a function to minimise and
its known optimum, plus an *iterative* version for schedulers, where a trial "trains"
towards ``f(x)``::

    loss(x, t) = f(x) + scale * u(x) / t        t = 1, 2, ... (training iterations)

``u(x)`` in [0.5, 1.5) is a deterministic pseudo-random factor of the point, so early
rankings are informative but not exact (what early stopping bets on), and every loss is
a pure function of the config and the iteration: the suite is reproducible bit for bit.

The PBT toy problem (:data:`PBT_TOY`) is the one in ``tests/schedulers/test_pbt_e2e.py``:
progress ``q`` grows when ``lr`` follows an optimum that moves with ``q``, so a fixed
``lr`` stalls and a schedule that follows the optimum keeps going (maximise ``q``).

Example:
    >>> from bench.problems import BRANIN, HARTMANN6, ROSENBROCK4
    >>> round(BRANIN.f([3.141592653589793, 2.275]), 6)
    0.397887
    >>> round(HARTMANN6.f(HARTMANN6.argmin), 5)
    -3.32237
    >>> ROSENBROCK4.f([1.0, 1.0, 1.0, 1.0])
    0.0
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

__all__ = [
    "Problem",
    "branin",
    "hartmann6",
    "rosenbrock",
    "toy_step",
    "ToyProblem",
    "BRANIN",
    "HARTMANN6",
    "ROSENBROCK4",
    "PBT_TOY",
    "PROBLEMS",
]


def branin(x: Sequence[float]) -> float:
    """The Branin-Hoo function on [-5, 10] x [0, 15]; minimum 0.397887 at (-pi, 12.275),
    (pi, 2.275) and (9.42478, 2.475).

    Example:
        >>> round(branin([9.42478, 2.475]), 5)
        0.39789
    """
    x1, x2 = float(x[0]), float(x[1])
    b = 5.1 / (4.0 * math.pi ** 2)
    c = 5.0 / math.pi
    t = 1.0 / (8.0 * math.pi)
    return (x2 - b * x1 * x1 + c * x1 - 6.0) ** 2 + 10.0 * (1.0 - t) * math.cos(x1) + 10.0


_H6_ALPHA = (1.0, 1.2, 3.0, 3.2)
_H6_A = (
    (10.0, 3.0, 17.0, 3.5, 1.7, 8.0),
    (0.05, 10.0, 17.0, 0.1, 8.0, 14.0),
    (3.0, 3.5, 1.7, 10.0, 17.0, 8.0),
    (17.0, 8.0, 0.05, 10.0, 0.1, 14.0),
)
_H6_P = (
    (0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886),
    (0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991),
    (0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650),
    (0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381),
)


def hartmann6(x: Sequence[float]) -> float:
    """The 6-dimensional Hartmann function on [0, 1]^6; minimum -3.32237.

    Example:
        >>> hartmann6([0.5] * 6) > -3.32237
        True
    """
    total = 0.0
    for alpha, a_row, p_row in zip(_H6_ALPHA, _H6_A, _H6_P):
        inner = sum(a * (float(xj) - p) ** 2 for a, xj, p in zip(a_row, x, p_row))
        total -= alpha * math.exp(-inner)
    return total


def rosenbrock(x: Sequence[float]) -> float:
    """The Rosenbrock function in any dimension; minimum 0 at (1, ..., 1).

    Example:
        >>> rosenbrock([1.0, 1.0, 1.0])
        0.0
    """
    xs = [float(v) for v in x]
    return sum(100.0 * (b - a * a) ** 2 + (1.0 - a) ** 2 for a, b in zip(xs, xs[1:]))


def _point_factor(x: Sequence[float]) -> float:
    """A deterministic pseudo-random number in [0.5, 1.5) for a point (how fast a trial
    at ``x`` converges): the fractional part of a sine hash, the same on every run."""
    h = sum(math.sin(12.9898 * (i + 1) * float(v) + 78.233 * i) for i, v in enumerate(x))
    return 0.5 + (h * 43758.5453) % 1.0


@dataclass(frozen=True)
class Problem:
    """A box-bounded function to minimise with a known optimum.

    Example:
        >>> BRANIN.space_bounds()["x0"]
        (-5.0, 10.0)
        >>> BRANIN.loss({"x0": 3.14159, "x1": 2.275}, t=1_000_000) < 0.3979
        True
    """

    name: str
    f: Callable[[Sequence[float]], float]
    bounds: Tuple[Tuple[float, float], ...]
    optimum: float
    argmin: Tuple[float, ...]
    scale: float  # of the 1/t convergence term in the iterative version

    @property
    def dim(self) -> int:
        return len(self.bounds)

    @property
    def names(self) -> List[str]:
        return [f"x{i}" for i in range(self.dim)]

    def space_bounds(self) -> Dict[str, Tuple[float, float]]:
        """Parameter name -> (low, high)."""
        return dict(zip(self.names, self.bounds))

    def point(self, config: Dict[str, float]) -> List[float]:
        return [config[n] for n in self.names]

    def value(self, config: Dict[str, float]) -> float:
        """``f`` at the config's point (a searcher trial's single result)."""
        return self.f(self.point(config))

    def loss(self, config: Dict[str, float], t: int) -> float:
        """The iterative version at training iteration ``t >= 1``."""
        x = self.point(config)
        return self.f(x) + self.scale * _point_factor(x) / t


BRANIN = Problem("branin", branin, ((-5.0, 10.0), (0.0, 15.0)), 0.397887,
                 (math.pi, 2.275), scale=10.0)
HARTMANN6 = Problem("hartmann6", hartmann6, ((0.0, 1.0),) * 6, -3.32237,
                    (0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573), scale=1.0)
ROSENBROCK4 = Problem("rosenbrock4", rosenbrock, ((-2.048, 2.048),) * 4, 0.0,
                      (1.0, 1.0, 1.0, 1.0), scale=100.0)


def _triangle(x: float) -> float:
    x %= 2.0
    return x if x <= 1.0 else 2.0 - x


def toy_step(q: float, lr: float) -> float:
    """One step of the PBT toy problem: progress ``q`` grows by up to 1 when ``lr`` is
    near an optimum that moves with ``q`` (a triangle wave between 0.01 and 0.04 in log
    scale) and shrinks by up to 0.5 when it is far.

    Example:
        >>> toy_step(0.0, 0.01)
        1.0
        >>> toy_step(0.0, 0.08)
        0.0
    """
    optimal = 0.01 * 2 ** (2 * _triangle(q / 40))
    return max(0.0, q + max(-0.5, 1 - abs(math.log2(lr / optimal))))


@dataclass(frozen=True)
class ToyProblem:
    """The PBT toy problem: maximise progress ``q`` by choosing ``lr`` over time."""

    name: str = "pbt_toy"
    lr_bounds: Tuple[float, float] = (0.001, 0.1)
    steps: int = 100
    optimum: Optional[float] = None  # the best schedule's q is not known in closed form


PBT_TOY = ToyProblem()

PROBLEMS = {p.name: p for p in (BRANIN, HARTMANN6, ROSENBROCK4)}
