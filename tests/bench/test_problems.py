"""The quality suite's problems have their known optima, and their iterative versions
converge to the function from above."""
import math
import random

import pytest

from bench.problems import BRANIN, HARTMANN6, PROBLEMS, ROSENBROCK4, branin, hartmann6, rosenbrock, toy_step


@pytest.mark.parametrize("point", [(-math.pi, 12.275), (math.pi, 2.275), (9.42478, 2.475)])
def test_branin_minimisers_reach_the_known_optimum(point):
    assert branin(point) == pytest.approx(0.397887, abs=1e-6)
    assert BRANIN.optimum == 0.397887


def test_hartmann6_minimiser_reaches_the_known_optimum():
    assert hartmann6(HARTMANN6.argmin) == pytest.approx(-3.32237, abs=1e-5)
    assert HARTMANN6.optimum == -3.32237


def test_rosenbrock_minimum_is_zero_at_ones():
    assert rosenbrock([1.0] * 4) == 0.0
    assert ROSENBROCK4.f(ROSENBROCK4.argmin) == ROSENBROCK4.optimum == 0.0
    assert rosenbrock([0.0] * 4) == 3.0  # (1 - 0)^2 for each of the 3 pairs


@pytest.mark.parametrize("problem", list(PROBLEMS.values()), ids=list(PROBLEMS))
def test_no_point_of_the_domain_beats_the_optimum(problem):
    rng = random.Random(0)
    for _ in range(5000):
        x = [rng.uniform(lo, hi) for lo, hi in problem.bounds]
        assert problem.f(x) >= problem.optimum - 1e-5


@pytest.mark.parametrize("problem", list(PROBLEMS.values()), ids=list(PROBLEMS))
def test_iterative_loss_converges_to_the_function_from_above(problem):
    config = {n: (lo + hi) / 3 for n, (lo, hi) in problem.space_bounds().items()}
    f = problem.value(config)
    losses = [problem.loss(config, t) for t in (1, 2, 10, 1000)]
    assert losses == sorted(losses, reverse=True)
    assert all(v > f for v in losses)
    assert losses[-1] - f < problem.scale * 1.5 / 1000 + 1e-12
    assert problem.loss(config, 5) == problem.loss(dict(config), 5)  # a pure function


def test_toy_progress_follows_the_learning_rate():
    assert toy_step(0.0, 0.01) == 1.0   # at the optimum: full step
    assert toy_step(0.0, 0.02) == 0.0   # one octave off: no progress
    assert toy_step(10.0, 0.16) == 9.5  # far off: progress shrinks by at most 0.5
