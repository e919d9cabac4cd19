"""The time budget holds between the starts of one step: no trial starts after it ran out."""
import fasttune as tune
from fasttune.execution.trial_executor import EVENT_START

from runner_testing import StubExecutor, random_search_runner


class StepClock:
    """An experiment clock that moves only when a test moves it."""

    def __init__(self):
        self.now = 1000.0

    def monotonic(self):
        return self.now

    def time(self):
        return self.now


class SlowStartExecutor(StubExecutor):
    """Every worker is free, and each start costs ``start_s`` seconds of the executor's clock
    (which the runner takes as the experiment's)."""

    def __init__(self, start_s):
        super().__init__()
        self.clock, self.start_s, self.started = StepClock(), start_s, []

    def has_resources_for_trial(self, trial, queue=True):
        return True

    def start_trial(self, trial, spec, asks_ahead):
        self.started.append(trial.trial_id)
        self.clock.now += self.start_s
        return len(self.started) - 1

    def stop_trial(self, trial):
        return trial.trial_id in self.started

    def get_next_executor_event(self, next_trial_exists, **wake):
        assert next_trial_exists, "the test takes one step, which starts trials"
        return EVENT_START, -1, None


def never_called(config):
    raise AssertionError("the executor runs no trainable")


def test_no_trial_starts_in_the_same_step_after_the_budget_ran_out(tmp_path):
    # Budget 10 s, each start 4 s: the starts at 0, 4 and 8 s are within it; at 12 s it has
    # run out, so the other two trials end unstarted (one step could start all five).
    executor = SlowStartExecutor(start_s=4.0)
    runner = random_search_runner(str(tmp_path / "exp"), never_called, {"x": tune.uniform(0, 1)}, num_samples=5,
                                  random_state=0, executor=executor, time_budget_s=10.0)
    trials = runner.get_trials()
    runner.step()
    assert executor.started == [t.trial_id for t in trials[:3]]
    assert [t.status for t in trials[3:]] == ["TERMINATED", "TERMINATED"]
    assert all(not runner.is_trial_held(t) for t in trials[3:])
