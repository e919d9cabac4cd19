"""The event loop: the Event pair a step waits on, and a scheduler that pauses trials for
waiting ones (as PBT does): a worker hands itself to its queued trial at a decision point
without a round trip, and the scheduler's decision on that result still holds."""
import os
import threading

import pytest

import fasttune as tune
from fasttune.execution._protocol import Yielded
from fasttune.execution._wake import EitherEvent
from fasttune.execution.trial_runner import TrialRunner
from fasttune.schedulers import DecisionPoints, FIFOScheduler
from fasttune_testing import fit, lines, report_with_step_checkpoint, restored_step
from runner_testing import StubExecutor, random_search_runner

STEPS = 12


def test_either_event_is_set_by_either_and_wakes_a_waiter():
    suggestion, request = threading.Event(), threading.Event()
    wake = EitherEvent(suggestion, request)
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
    """Decides every 4 iterations; pauses for waiting trials, but answers ``answer`` at
    iteration ``at`` (to every trial)."""

    def __init__(self, answer=None, at=None):
        super().__init__()
        self.answer, self.at = answer, at
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
        if iteration == self.at:
            return self.answer
        waiting = tune_controller.table.count(1) + tune_controller.table.count(2)  # PENDING, PAUSED
        return self.PAUSE if waiting else self.CONTINUE


@pytest.fixture
def yielded(monkeypatch):
    """``(trial_id, iteration)`` of every "yielded" event the runner handled."""
    seen = []
    handle = TrialRunner._on_batch

    def recording(self, slot, events):
        seen.extend((event.trial_id, event.iteration) for event in events if isinstance(event, Yielded))
        return handle(self, slot, events)

    monkeypatch.setattr(TrialRunner, "_on_batch", recording)
    return seen


QS = (1, 2, 3, 4, 5, 6)


def _sweep(storage, scheduler, name):
    # Six 1-CPU trials on two CPUs: once each worker has replied, a trial waits queued
    # behind each running one.
    return fit(tune.with_resources(counting, {"cpu": 1}), storage, space={"q": tune.grid_search(list(QS))},
               name=name, tune_config=tune.TuneConfig(scheduler=scheduler, metric="step", mode="max"))


def _history(result):
    return [(r["training_iteration"], r["step"]) for r in lines(os.path.join(result.path, "result.json"))]


@pytest.mark.usefixtures("ray_session")
def test_yielded_trials_resume_from_the_decision_point_with_unchanged_histories(storage, yielded):
    scheduler = TimeSharing()
    grid = _sweep(storage, scheduler, "yield")
    assert yielded  # workers handed themselves over without asking
    assert grid.num_errors == 0 and grid.num_terminated == len(QS)
    for result in grid:
        assert _history(result) == [(i, i) for i in range(1, STEPS + 1)]
    restored = {r["restored_from"] for result in grid for r in lines(os.path.join(result.path, "result.json"))}
    assert restored & {4, 8}  # a yielded trial resumed from its checkpoint at the point
    # The scheduler decided on every decision point of every trial, yielded or not.
    assert sorted(scheduler.decided) == sorted((q, i) for q in QS for i in (4, 8, 12))


@pytest.mark.usefixtures("ray_session")
@pytest.mark.parametrize("answer", ["CONTINUE", "STOP"])
def test_the_decision_on_a_yielded_result_still_holds(storage, yielded, answer):
    scheduler = TimeSharing(answer=answer, at=8)
    grid = _sweep(storage, scheduler, f"yield-{answer.lower()}")
    assert 8 in {iteration for _, iteration in yielded}  # some trials yielded at 8
    assert grid.num_errors == 0 and grid.num_terminated == len(QS)
    for result in grid:
        if answer == "STOP":  # yielded at 8 or not, each trial ends there
            rows = lines(os.path.join(result.path, "result.json"))
            assert _history(result) == [(i, i) for i in range(1, 9)] and rows[-1]["done"] is True
        else:  # a trial that yielded at 8 resumes from that checkpoint later
            assert _history(result) == [(i, i) for i in range(1, STEPS + 1)]
    assert {(q, 12) for q in QS} & set(scheduler.decided) == ({(q, 12) for q in QS} if answer == "CONTINUE" else set())


class _CleanupFails(StubExecutor):
    def cleanup(self):
        raise RuntimeError("the workers could not be released")


def _train(config):
    tune.report({"loss": config["x"]})


def test_the_files_close_when_the_executor_cleanup_raises_and_that_error_is_the_one_raised(
        tmp_path, monkeypatch, caplog):
    """Closing the files comes after the executor's cleanup: when that raises, they still
    close (staged results reach disk), and a write failure seen as they do is logged."""
    import logging

    from fasttune.logger._trial_files import TrialFiles

    closed = []

    def close_all(files):
        closed.append(files)
        raise OSError(28, "Writing trial result files failed (no room)")

    monkeypatch.setattr(TrialFiles, "close_all", close_all)
    runner = random_search_runner(str(tmp_path / "exp"), _train, {"x": tune.uniform(0, 1)}, 1, random_state=3,
                                  executor=_CleanupFails())
    with caplog.at_level(logging.ERROR, logger="fasttune.execution.trial_runner"):
        with pytest.raises(RuntimeError, match="the workers could not be released"):
            runner.cleanup()
    assert len(closed) == 1
    assert "Writing trial result files failed (no room)" in caplog.text
