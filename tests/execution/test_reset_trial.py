"""TrialRunner.reset_trial: a trial goes on with a new config from another trial's
checkpoint (PBT's exploit), in place at a decision point or through pause and resume."""
import json
import os

import pytest

import fasttune as tune
from fasttune.execution._protocol import Cloned, Ended
from fasttune.schedulers import DecisionPoints, TrialScheduler
from fasttune_testing import fit, lines

pytestmark = pytest.mark.usefixtures("ray_session")

STEPS = 10


def counter_function(config):
    checkpoint = tune.get_checkpoint()
    x, start = 0, 0
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            with open(os.path.join(d, "state.json")) as f:
                x, start = json.load(f)
    import tempfile

    for step in range(start + 1, STEPS + 1):
        x += config["inc"]
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "state.json"), "w") as f:
                json.dump([x, step], f)
            tune.report({"x": x, "pid": os.getpid(), "instance": 0, "resets": 0},
                        checkpoint=tune.Checkpoint.from_directory(d))


class CounterClass(tune.Trainable):
    def setup(self, config):
        self.x = 0
        self.resets = 0

    def step(self):
        self.x += self.config["inc"]
        return {"x": self.x, "pid": os.getpid(), "instance": id(self), "resets": self.resets,
                "done": self.iteration + 1 >= STEPS}

    def save_checkpoint(self, checkpoint_dir):
        return {"x": self.x}

    def load_checkpoint(self, checkpoint):
        self.x = checkpoint["x"]

    def reset_config(self, new_config):
        self.resets += 1
        return True


class ExploitOnce(TrialScheduler):
    """At the bottom trial's iteration ``at``, continue it from the top trial's checkpoint
    of iteration ``donor_iteration`` with ``inc=1000``."""

    def __init__(self, at=4, donor_iteration=6, then=TrialScheduler.CONTINUE):
        self.at, self.donor_iteration, self.then = at, donor_iteration, then
        self.done = False

    def decision_points(self, trial):
        return DecisionPoints.at([self.at])

    def on_trial_result(self, tune_controller, trial, result):
        if self.done or trial.config["role"] != "bottom" or result["training_iteration"] != self.at:
            return self.CONTINUE
        self.done = True
        donor = next(t for t in tune_controller.get_trials() if t.config["role"] == "top")
        checkpoint, donor_result = next(
            (c, r) for c, r in donor.checkpoint_results if r["training_iteration"] == self.donor_iteration)
        tune_controller.reset_trial(trial, dict(trial.config, inc=1000), "exploited",
                                    checkpoint=checkpoint, checkpoint_result=donor_result)
        return self.then


def _sweep(trainable, storage, scheduler, reuse_actors, **run_kwargs):
    # One at a time: the top trial has finished (all its checkpoints kept) before the
    # bottom trial starts, so the donor checkpoint is known.
    return fit(
        trainable, storage,
        space={"role": tune.grid_search(["top", "bottom"]), "inc": tune.sample_from(
            lambda spec: 1 if spec.config.role == "top" else 100)},
        tune_config=tune.TuneConfig(scheduler=scheduler, max_concurrent_trials=1, reuse_actors=reuse_actors),
        **run_kwargs,
    )


def _bottom(grid):
    return next(r for r in grid if r.config["role"] == "bottom")


@pytest.mark.parametrize("trainable", [counter_function, CounterClass], ids=["function", "class"])
def test_reset_at_a_decision_point_continues_in_place_from_the_donor_checkpoint(storage, trainable):
    extra = {} if trainable is counter_function else {
        "checkpoint_config": tune.CheckpointConfig(checkpoint_frequency=1)}
    grid = _sweep(trainable, storage, ExploitOnce(), reuse_actors=False, **extra)
    bottom = _bottom(grid)
    rows = lines(os.path.join(bottom.path, "result.json"))
    assert [r["training_iteration"] for r in rows] == [1, 2, 3, 4, 7, 8, 9, 10]
    assert [r["x"] for r in rows] == [100, 200, 300, 400, 1006, 2006, 3006, 4006]
    assert [r["config"]["inc"] for r in rows] == [100] * 4 + [1000] * 4
    # In place: the same process throughout, and for a class trainable the same instance,
    # reconfigured through reset_config (reuse_actors=False: never reused otherwise).
    assert len({r["pid"] for r in rows}) == 1
    assert len({r["instance"] for r in rows}) == 1
    if trainable is CounterClass:
        assert [r["resets"] for r in rows] == [0] * 4 + [1] * 4
    assert bottom.config["inc"] == 1000
    assert bottom.metrics["x"] == 4006
    # The donor's checkpoint was copied into the bottom trial's own directory.
    copies = [c for c, r in bottom.best_checkpoints if r["training_iteration"] == 6]
    assert copies and os.path.dirname(copies[0].path) == bottom.path


def test_reset_of_a_trial_being_paused_applies_when_it_resumes(storage):
    grid = _sweep(counter_function, storage, ExploitOnce(then=TrialScheduler.PAUSE), reuse_actors=True)
    bottom = _bottom(grid)
    rows = lines(os.path.join(bottom.path, "result.json"))
    assert [r["training_iteration"] for r in rows] == [1, 2, 3, 4, 7, 8, 9, 10]
    assert [r["x"] for r in rows] == [100, 200, 300, 400, 1006, 2006, 3006, 4006]
    assert [r["config"]["inc"] for r in rows] == [100] * 4 + [1000] * 4
    assert bottom.config["inc"] == 1000 and bottom.metrics["x"] == 4006


def test_reset_of_a_finished_trial_is_a_clear_error():
    from fasttune.error import TuneError
    from fasttune.execution import TrialRunner
    from fasttune.experiment import Trial

    runner = TrialRunner()
    trial = Trial("t", config={})
    trial._attach(runner.table, runner.table.add())
    trial.set_status(Trial.RUNNING)
    trial.set_status(Trial.TERMINATED)
    with pytest.raises(TuneError, match="only a live trial can be reset"):
        runner.reset_trial(trial, {}, "tag")


class ResetFromMissingCheckpoint(ExploitOnce):
    def on_trial_result(self, tune_controller, trial, result):
        if trial.config["role"] == "bottom" and result["training_iteration"] == self.at:
            import shutil
            import tempfile

            gone = tempfile.mkdtemp(suffix="_gone_checkpoint")
            checkpoint = tune.Checkpoint.from_directory(gone)
            shutil.rmtree(gone)
            self.gone = gone
            tune_controller.reset_trial(trial, dict(trial.config, inc=1000), "exploited",
                                        checkpoint=checkpoint, checkpoint_result={"training_iteration": 1})
        return self.CONTINUE


def test_reset_from_a_checkpoint_that_is_gone_errors_the_trial_and_says_why(storage):
    scheduler = ResetFromMissingCheckpoint()
    grid = _sweep(counter_function, storage, scheduler, reuse_actors=True)
    bottom = _bottom(grid)
    assert bottom.error is not None
    assert scheduler.gone in str(bottom.error)
    assert "does not exist" in str(bottom.error)
    rows = lines(os.path.join(bottom.path, "result.json"))
    assert [r["training_iteration"] for r in rows] == [1, 2, 3, 4]  # nothing reported is lost


def test_a_donor_checkpoint_waiting_to_be_copied_outlives_its_own_trials_retention(tmp_path, monkeypatch):
    from fasttune.execution import TrialRunner
    from fasttune.experiment import Trial

    runner = TrialRunner(experiment_path=str(tmp_path))
    monkeypatch.setattr(runner.trial_executor, "check_feasible", lambda trial: None)
    keep_one = tune.CheckpointConfig(num_to_keep=1)
    donor = Trial("t", config={"role": "top"}, experiment_path=str(tmp_path), checkpoint_config=keep_one)
    bottom = Trial("t", config={"role": "bottom"}, experiment_path=str(tmp_path), checkpoint_config=keep_one)
    for trial in (donor, bottom):
        runner.add_trial(trial)
        trial.set_status(Trial.RUNNING)
    bottom.set_status(Trial.PAUSED)

    def save(trial, name, iteration):
        os.makedirs(os.path.join(trial.path, name))
        runner._checkpoints.record(trial, runner._states[trial.trial_id], name, {"training_iteration": iteration},
                                   iteration)

    save(donor, "checkpoint_000000", 4)
    source = donor.checkpoint
    runner.reset_trial(bottom, {"role": "bottom", "inc": 7}, "exploited",
                       checkpoint=source, checkpoint_result=donor.checkpoint_results[-1][1])
    save(donor, "checkpoint_000001", 8)  # retention drops checkpoint_000000 from the donor
    runner._files.flush()
    assert [os.path.basename(c.path) for c in donor.checkpoints] == ["checkpoint_000001"]
    assert os.path.isdir(source.path), "pinned until the bottom trial has copied it"

    state = runner._states[bottom.trial_id]
    reset, state.reset_on_start = state.reset_on_start, None
    fields = runner._resets.spec_fields(bottom, state, reset, runner._rewind, runner.decision_points_wire)
    assert fields["clone_from"] == source.path and fields["iteration"] == 4
    assert bottom.config == {"role": "bottom", "inc": 7} and bottom.experiment_tag == "exploited"
    os.makedirs(os.path.join(bottom.path, "checkpoint_000000"))
    runner._on_batch(0, [Cloned(bottom.trial_id, "checkpoint_000000")])
    runner._files.flush()
    assert not os.path.exists(source.path), "deleted once the copy is confirmed"
    assert bottom.checkpoint_results[-1][1] == {"training_iteration": 4}
    runner._files.close_all()


def _runner_holding_one_trial(tmp_path, monkeypatch, *statuses):
    """A runner without Ray whose worker 0 holds one trial (moved through ``statuses``);
    returns it, the trial, and the trials the executor was asked to pause."""
    from fasttune.execution import TrialRunner
    from fasttune.experiment import Trial

    runner = TrialRunner(experiment_path=str(tmp_path))
    monkeypatch.setattr(runner.trial_executor, "check_feasible", lambda trial: None)
    interrupts = []
    monkeypatch.setattr(runner.trial_executor, "pause_trial", lambda trial, should_checkpoint=True: interrupts.append(trial))
    monkeypatch.setattr(runner.trial_executor, "trial_ended", lambda slot, trial: None)
    trial = Trial("t", config={"inc": 1}, experiment_path=str(tmp_path))
    runner.add_trial(trial)
    for status in statuses:
        trial.set_status(status)
    runner.table.set_worker_slot(trial._row, 0)
    return runner, trial, interrupts


def test_a_reset_that_arrives_after_the_trials_last_result_leaves_its_config_alone(tmp_path, monkeypatch):
    from fasttune.experiment import Trial

    runner, trial, interrupts = _runner_holding_one_trial(tmp_path, monkeypatch, Trial.RUNNING)

    # Between decision points: the trial is paused, the new config waits for its restart.
    runner.reset_trial(trial, {"inc": 1000}, "exploited")
    assert interrupts == [trial] and trial.status == Trial.PAUSED
    assert trial.config == {"inc": 1}
    # ...but it had already finished: it ends TERMINATED with the config it ran with.
    runner._on_batch(0, [Ended("done", trial.trial_id)])
    assert trial.status == Trial.TERMINATED
    assert trial.config == {"inc": 1} and trial.experiment_tag == ""
    assert runner._states[trial.trial_id].reset_on_start is None
    runner._files.close_all()


def test_a_reset_of_a_paused_trial_queued_on_a_worker_takes_it_back_and_keeps_it_paused(tmp_path, monkeypatch):
    from fasttune.experiment import Trial

    # Being resumed: queued on worker 0 with its old spec.
    runner, trial, interrupts = _runner_holding_one_trial(tmp_path, monkeypatch, Trial.RUNNING, Trial.PAUSED)

    runner.reset_trial(trial, {"inc": 1000}, "exploited")
    assert interrupts == [trial]
    runner._on_batch(0, [Ended("dropped", trial.trial_id)])
    assert trial.status == Trial.PAUSED and not runner.is_trial_held(trial)
    assert runner._states[trial.trial_id].reset_on_start is not None  # applied when it is chosen again
    runner._files.close_all()


def test_a_start_that_was_to_copy_the_donor_checkpoint_and_is_taken_back_copies_it_when_restarted(
        tmp_path, monkeypatch):
    # Synchronous PBT: a trial told to pause at its decision point is reset before its
    # worker says it paused, so reset_trial pauses it once more; that late interrupt can
    # reach the worker after the trial was started again there, and take that start back
    # ("dropped") before the donor's checkpoint was copied.  The restart must still copy it:
    # going on with the new config from the trial's own checkpoint is another schedule.
    from fasttune.execution import TrialRunner
    from fasttune.experiment import Trial

    runner = TrialRunner(experiment_path=str(tmp_path))
    monkeypatch.setattr(runner.trial_executor, "check_feasible", lambda trial: None)
    starts = []
    monkeypatch.setattr(runner.trial_executor, "start_trial", lambda trial, spec, queue=True: starts.append(spec) or 0)
    donor = Trial("t", config={"role": "top"}, experiment_path=str(tmp_path))
    bottom = Trial("t", config={"role": "bottom"}, experiment_path=str(tmp_path))
    for trial in (donor, bottom):
        runner.add_trial(trial)
        trial.set_status(Trial.RUNNING)
    bottom.set_status(Trial.PAUSED)
    os.makedirs(os.path.join(donor.path, "checkpoint_000000"))
    runner._checkpoints.record(donor, runner._states[donor.trial_id], "checkpoint_000000",
                               {"training_iteration": 4}, 4)
    source = donor.checkpoint
    runner.reset_trial(bottom, {"role": "bottom", "inc": 7}, "exploited",
                       checkpoint=source, checkpoint_result={"training_iteration": 4})

    runner._start_trial(bottom)
    runner._on_batch(0, [Ended("dropped", bottom.trial_id)])
    assert bottom.status == Trial.PAUSED and not runner.is_trial_held(bottom)
    runner._start_trial(bottom)

    assert [(spec.get("clone_from"), spec["iteration"], spec["config"]) for spec in starts] == [
        (source.path, 4, {"role": "bottom", "inc": 7})] * 2
    runner._files.flush()
    assert os.path.isdir(source.path), "pinned until the restarted trial has copied it"
    runner._files.close_all()


class KillAtSecondSeven(tune.Callback):
    """SIGKILLs the bottom trial's worker the second time it reports iteration 7 (the
    first 7 is from before its exploit)."""

    def __init__(self):
        self.sevens = 0

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if trial.config["role"] == "bottom" and result["training_iteration"] == 7:
            self.sevens += 1
            if self.sevens == 2:
                import signal

                os.kill(result["pid"], signal.SIGKILL)


def test_a_restart_after_an_exploit_to_an_earlier_iteration_keeps_every_logged_result(storage):
    # The bottom trial runs 1..8, continues from the donor's iteration-4 checkpoint (5, 6,
    # 7 again, with inc=1000), then its worker dies; it restarts from its latest checkpoint
    # (iteration 6 or 7) and finishes.  Every line logged up to that checkpoint stays,
    # although iterations repeat: nothing is cut at the first line past its iteration.
    scheduler = ExploitOnce(at=8, donor_iteration=4)
    grid = _sweep(counter_function, storage, scheduler, reuse_actors=True, callbacks=[KillAtSecondSeven()],
                  failure_config=tune.FailureConfig(max_failures=1))
    bottom = _bottom(grid)
    assert bottom.error is None
    with open(os.path.join(bottom.path, "error.txt")) as f:
        assert "died" in f.read()  # the worker was killed once, and the trial recovered
    rows = lines(os.path.join(bottom.path, "result.json"))
    iterations = [r["training_iteration"] for r in rows]
    assert iterations[:8] == list(range(1, 9))
    assert [r["x"] for r in rows[:8]] == [100 * i for i in range(1, 9)]
    after = rows[8:]
    # From the clone on: 5, 6, (7,) then the restart continues to 10 with each of those once.
    assert [r["training_iteration"] for r in after] == list(range(5, 11))
    assert [r["x"] for r in after] == [4 + 1000 * i for i in range(1, 7)]
