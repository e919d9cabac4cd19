"""The event loop: the Event pair a step waits on, and a scheduler that pauses trials for
waiting ones (as PBT does): a worker hands itself to its queued trial at a decision point
without a round trip, and the scheduler's decision on that result still holds."""
import os
import threading

import pytest

import fasttune as tune
from fasttune.execution.trial_runner import TrialRunner, _EitherEvent
from fasttune.schedulers import DecisionPoints, FIFOScheduler
from fasttune_testing import fit, lines, report_with_step_checkpoint, restored_step

STEPS = 12


def test_either_event_is_set_by_either_and_wakes_a_waiter():
    suggestion, request = threading.Event(), threading.Event()
    wake = _EitherEvent(suggestion, request)
    assert not wake.is_set() and wake.wait(0) is False

    setter = threading.Thread(target=request.set)  # the one it does not block on
    setter.start()
    assert wake.wait(60) is True
    setter.join()
    assert wake.is_set()

    request.clear()
    suggestion.set()
    assert wake.is_set() and wake.wait(60) is True


def counting(config):
    start = restored_step()
    for step in range(start + 1, STEPS + 1):
        metrics = {"step": step, "restored_from": start}
        if step % 4 == 0:
            report_with_step_checkpoint(metrics, step)
        else:
            tune.report(metrics)


class TimeSharing(FIFOScheduler):
    """Decides every 4 iterations; pauses for waiting trials, but answers ``answer`` to
    the trial with config ``q == target`` at ``at``."""

    def __init__(self, answer=None, target=None, at=None):
        super().__init__()
        self.answer, self.target, self.at = answer, target, at
        self.decided = []

    def decision_points(self, trial):
        return DecisionPoints.every(4)

    def pauses_for_waiting_trials(self, trial):
        return True

    def on_trial_result(self, tune_controller, trial, result):
        iteration = result["training_iteration"]
        if iteration % 4:
            return self.CONTINUE
        self.decided.append((trial.config["q"], iteration))
        if trial.config["q"] == self.target and iteration == self.at:
            return self.answer
        waiting = tune_controller.table.count(1) + tune_controller.table.count(2)  # PENDING, PAUSED
        return self.PAUSE if waiting else self.CONTINUE


@pytest.fixture
def batch_kinds(monkeypatch):
    """The kinds of every worker event the runner handled."""
    kinds = []
    handle = TrialRunner._on_batch

    def recording(self, slot, events):
        kinds.extend(event[0] for event in events)
        return handle(self, slot, events)

    monkeypatch.setattr(TrialRunner, "_on_batch", recording)
    return kinds


def _sweep(storage, scheduler, name):
    # Three 1-CPU trials on two CPUs: one always waits, queued behind a running one.
    return fit(tune.with_resources(counting, {"cpu": 1}), storage, space={"q": tune.grid_search([1, 2, 3])},
               name=name, tune_config=tune.TuneConfig(scheduler=scheduler, metric="step", mode="max"))


def _history(result):
    return [(r["training_iteration"], r["step"]) for r in lines(os.path.join(result.path, "result.json"))]


@pytest.mark.usefixtures("ray_session")
def test_yielded_trials_resume_from_the_decision_point_with_unchanged_histories(storage, batch_kinds):
    scheduler = TimeSharing()
    grid = _sweep(storage, scheduler, "yield")
    assert "yielded" in batch_kinds  # workers handed themselves over without asking
    assert grid.num_errors == 0 and grid.num_terminated == 3
    for result in grid:
        assert _history(result) == [(i, i) for i in range(1, STEPS + 1)]
    restored = {r["restored_from"] for result in grid for r in lines(os.path.join(result.path, "result.json"))}
    assert restored & {4, 8}  # a yielded trial resumed from its checkpoint at the point
    # The scheduler decided on every decision point of every trial, yielded or not.
    assert sorted(scheduler.decided) == sorted((q, i) for q in (1, 2, 3) for i in (4, 8, 12))


@pytest.mark.usefixtures("ray_session")
@pytest.mark.parametrize("answer", ["CONTINUE", "STOP"])
def test_the_decision_on_a_yielded_result_still_holds(storage, batch_kinds, answer):
    # The first trial's worker has the third trial queued behind it at iteration 4.
    scheduler = TimeSharing(answer=answer, target=1, at=4)
    grid = _sweep(storage, scheduler, f"yield-{answer.lower()}")
    assert "yielded" in batch_kinds
    by_q = {result.config["q"]: result for result in grid}
    assert grid.num_errors == 0 and grid.num_terminated == 3
    if answer == "STOP":
        rows = lines(os.path.join(by_q[1].path, "result.json"))
        assert _history(by_q[1]) == [(i, i) for i in range(1, 5)] and rows[-1]["done"] is True
        assert (1, 8) not in scheduler.decided
    else:
        # Yielded although the answer is CONTINUE: it resumes from that checkpoint later.
        assert _history(by_q[1]) == [(i, i) for i in range(1, STEPS + 1)]
    for q in (2, 3):
        assert _history(by_q[q]) == [(i, i) for i in range(1, STEPS + 1)]
