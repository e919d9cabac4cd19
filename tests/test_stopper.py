"""Stoppers: per-trial and experiment-wide stopping rules."""
import datetime
import types

import pytest

from fasttune.stopper import timeout as timeout_module
from fasttune.stopper import (
    CombinedStopper,
    FunctionStopper,
    MaximumIterationStopper,
    NoopStopper,
    Stopper,
    TimeoutStopper,
)


class FakeClock:
    def __init__(self, now=1000.0):
        self.now = now

    def monotonic(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(timeout_module, "time", types.SimpleNamespace(monotonic=fake.monotonic))
    return fake


def test_base_class_is_abstract():
    with pytest.raises(NotImplementedError):
        Stopper()("t", {})
    with pytest.raises(NotImplementedError):
        Stopper().stop_all()


def test_noop_stopper():
    s = NoopStopper()
    assert s("t", {"training_iteration": 10**6}) is False
    assert s.stop_all() is False


def test_function_stopper_passes_arguments_and_coerces_to_bool():
    seen = []

    def fn(trial_id, result):
        seen.append((trial_id, result["x"]))
        return result["x"] if result["x"] else None

    s = FunctionStopper(fn)
    assert s("a", {"x": 0}) is False
    assert s("b", {"x": 5}) is True
    assert seen == [("a", 0), ("b", 5)]
    assert s.stop_all() is False


def test_function_stopper_needs_callable():
    with pytest.raises(TypeError, match="callable"):
        FunctionStopper({"x": 1})


def test_maximum_iteration_stopper_counts_per_trial():
    s = MaximumIterationStopper(3)
    assert [s("a", {}) for _ in range(2)] == [False, False]
    assert s("b", {}) is False
    assert s("a", {}) is True
    assert [s("b", {}) for _ in range(2)] == [False, True]
    assert s.stop_all() is False


@pytest.mark.parametrize("bad", [0, -2])
def test_maximum_iteration_stopper_rejects_bad_max(bad):
    with pytest.raises(ValueError, match="max_iter"):
        MaximumIterationStopper(bad)


def test_combined_stopper_any_and_calls_every_member():
    counter = MaximumIterationStopper(2)
    always = FunctionStopper(lambda tid, r: True)
    combined = CombinedStopper(always, counter)
    assert combined("a", {}) is True
    # the counter saw the first result although `always` already said stop
    assert counter("a", {}) is True
    assert CombinedStopper(NoopStopper(), FunctionStopper(lambda t, r: r["x"] > 1))("a", {"x": 2})
    assert not CombinedStopper(NoopStopper(), NoopStopper())("a", {"x": 2})
    assert not CombinedStopper()("a", {})


def test_combined_stopper_stop_all(clock):
    timeout = TimeoutStopper(10)
    combined = CombinedStopper(NoopStopper(), timeout)
    assert combined.stop_all() is False
    clock.now += 10
    assert combined.stop_all() is True
    assert CombinedStopper(NoopStopper()).stop_all() is False


@pytest.mark.parametrize("timeout", [30, 30.0, datetime.timedelta(seconds=30)])
def test_timeout_stopper(clock, timeout):
    s = TimeoutStopper(timeout)
    assert s("t", {"training_iteration": 1}) is False
    assert s.stop_all() is False  # the budget starts at the first check
    clock.now += 29.5
    assert s.stop_all() is False
    clock.now += 0.5
    assert s.stop_all() is True
    assert s("t", {}) is False


@pytest.mark.parametrize("bad", [0, -1, datetime.timedelta(0), datetime.timedelta(seconds=-5)])
def test_timeout_stopper_rejects_non_positive(bad):
    with pytest.raises(ValueError, match="positive"):
        TimeoutStopper(bad)


@pytest.mark.parametrize("bad, error", [("soon", ValueError), (None, TypeError), (object(), TypeError)])
def test_timeout_stopper_rejects_non_durations(bad, error):
    with pytest.raises(error):
        TimeoutStopper(bad)
