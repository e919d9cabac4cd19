"""Class trainables (fasttune.Trainable) in whole sweeps on the shared local Ray session."""
import os
import pickle
import threading

import numpy as np
import pytest

import fasttune as tune
from fasttune_testing import (
    KillAtIterationOnce,
    PauseOnceAtThree,
    assert_history_of_a_kill_at_five,
    fit as _fit,
    lines as _lines,
)
from fasttune.trainable.trainable import DICT_CHECKPOINT_FILE

pytestmark = pytest.mark.usefixtures("ray_session")




def _checkpoint_dirs(path):
    return sorted(d for d in os.listdir(path) if d.startswith("checkpoint_"))


def walk_function(config):
    rng = np.random.default_rng(config["seed"])
    value = 0.0
    for _ in range(40):
        value += rng.normal(config["drift"], 1.0)
        tune.report({"value": value})


class WalkClass(tune.Trainable):
    def setup(self, config):
        self.rng = np.random.default_rng(config["seed"])
        self.value = 0.0

    def step(self):
        self.value += self.rng.normal(self.config["drift"], 1.0)
        return {"value": self.value}

    def save_checkpoint(self, checkpoint_dir):
        return {"value": self.value, "rng": self.rng.bit_generator.state}

    def load_checkpoint(self, checkpoint):
        self.value = checkpoint["value"]
        self.rng.bit_generator.state = checkpoint["rng"]


_IGNORED = {"time_this_iter_s", "time_total_s", "time_since_restore", "timestamp", "date", "pid",
            "hostname", "node_ip", "trial_id", "checkpoint_dir_name", "experiment_tag"}


def _histories(grid):
    out = {}
    for result in grid:
        rows = _lines(os.path.join(result.path, "result.json"))
        key = (result.config["seed"], result.config["drift"])
        out[key] = [{k: v for k, v in row.items() if k not in _IGNORED} for row in rows]
    return out


def test_class_and_function_doing_the_same_computation_give_identical_histories(storage):
    space = {"seed": tune.grid_search([1, 2]), "drift": tune.grid_search([-0.1, 0.3])}
    config = tune.TuneConfig(metric="value", mode="max")
    function = _fit(walk_function, storage, space, name="fn", tune_config=config, stop={"value": 8, "training_iteration": 40})
    klass = _fit(WalkClass, storage, space, name="cls", tune_config=config, stop={"value": 8, "training_iteration": 40},
                 checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=5))
    assert _histories(function) == _histories(klass)
    assert all(len(h) > 1 for h in _histories(klass).values())
    assert function.get_best_result().metrics["value"] == klass.get_best_result().metrics["value"]


class Accumulate(tune.Trainable):
    def setup(self, config):
        self.total = 0

    def step(self):
        self.total += self.config["inc"]
        return {"total": self.total, "seen_iteration": self.iteration}

    def save_checkpoint(self, checkpoint_dir):
        return {"total": self.total}

    def load_checkpoint(self, checkpoint):
        self.total = checkpoint["total"]


def test_checkpoint_frequency_and_at_end_persist_into_the_trial(storage):
    grid = _fit(Accumulate, storage, {"inc": 2}, stop={"training_iteration": 7},
                checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=3, checkpoint_at_end=True))
    (result,) = list(grid)
    assert _checkpoint_dirs(result.path) == ["checkpoint_000000", "checkpoint_000001", "checkpoint_000002"]
    rows = _lines(os.path.join(result.path, "result.json"))
    assert [r["training_iteration"] for r in rows] == list(range(1, 8))
    assert [r["seen_iteration"] for r in rows] == list(range(7))
    assert {r["training_iteration"]: r.get("checkpoint_dir_name") for r in rows if r.get("checkpoint_dir_name")} == {
        3: "checkpoint_000000", 6: "checkpoint_000001"}
    assert os.path.basename(result.checkpoint.path) == "checkpoint_000002"  # the one at the end
    with open(os.path.join(result.checkpoint.path, DICT_CHECKPOINT_FILE), "rb") as f:
        assert pickle.load(f) == {"total": 14}
    assert result.metrics["training_iteration"] == 7 and result.metrics["done"] is True


def test_paused_class_trial_checkpoints_and_resumes_at_the_same_iteration(storage):
    scheduler = PauseOnceAtThree()
    grid = _fit(Accumulate, storage, {"inc": tune.grid_search([1, 10])}, stop={"training_iteration": 6},
                tune_config=tune.TuneConfig(scheduler=scheduler))
    assert len(scheduler.paused) == 2
    for result in grid:
        inc = result.config["inc"]
        rows = _lines(os.path.join(result.path, "result.json"))
        assert [r["training_iteration"] for r in rows] == [1, 2, 3, 4, 5, 6]
        assert [r["total"] for r in rows] == [inc * i for i in range(1, 7)]  # state survived the pause
        assert [r["seen_iteration"] for r in rows] == [0, 1, 2, 3, 4, 5]
        assert rows[3]["iterations_since_restore"] == 1
        # Taken when it paused, and at its end (a Tuner's default for a class trainable).
        assert _checkpoint_dirs(result.path) == ["checkpoint_000000", "checkpoint_000001"]
        assert result.error is None


class FailingSave(Accumulate):
    def save_checkpoint(self, checkpoint_dir):
        if self.iteration >= 4:
            with open(os.path.join(checkpoint_dir, "half_written"), "w") as f:
                f.write("x")
            raise RuntimeError("cannot save on purpose")
        return {"total": self.total}


def test_failing_save_checkpoint_errors_the_trial_and_keeps_its_previous_checkpoint(storage):
    grid = _fit(FailingSave, storage, {"inc": 1}, stop={"training_iteration": 10},
                checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=2))
    (result,) = list(grid)
    assert isinstance(result.error, tune.TuneError)
    assert "FailingSave.save_checkpoint() raised RuntimeError: cannot save on purpose" in str(result.error)
    assert "cannot save on purpose" in open(os.path.join(result.path, "error.txt")).read()
    assert _checkpoint_dirs(result.path) == ["checkpoint_000000"]
    assert os.path.basename(result.checkpoint.path) == "checkpoint_000000"
    with open(os.path.join(result.checkpoint.path, DICT_CHECKPOINT_FILE), "rb") as f:
        assert pickle.load(f) == {"total": 2}
    assert [r["training_iteration"] for r in _lines(os.path.join(result.path, "result.json"))] == [1, 2, 3]


class Reusable(tune.Trainable):
    def setup(self, config):
        self.setups = getattr(self, "setups", 0) + 1
        self.resets = 0

    def step(self):
        return {"pid": os.getpid(), "setups": self.setups, "resets": self.resets,
                "x": self.config["x"], "me": self.trial_id, "done": True}

    def reset_config(self, new_config):
        self.resets += 1
        return self.config.get("reset_ok", True)


def test_reused_worker_resets_the_live_instance_or_builds_a_fresh_one(storage):
    one_at_a_time = tune.TuneConfig(max_concurrent_trials=1)
    grid = _fit(Reusable, storage, {"x": tune.grid_search([1, 2, 3])}, name="reset", tune_config=one_at_a_time)
    rows = sorted((r.metrics for r in grid), key=lambda m: m["x"])
    assert len({m["pid"] for m in rows}) == 1
    assert [(m["setups"], m["resets"]) for m in rows] == [(1, 0), (1, 1), (1, 2)]  # setup never again
    assert all(m["me"] == m["trial_id"] and m["done"] for m in rows)

    grid = _fit(Reusable, storage, {"x": tune.grid_search([1, 2, 3]), "reset_ok": False}, name="fresh",
                tune_config=one_at_a_time)
    rows = sorted((r.metrics for r in grid), key=lambda m: m["x"])
    assert len({m["pid"] for m in rows}) == 1  # same process ...
    assert [(m["setups"], m["resets"]) for m in rows] == [(1, 0)] * 3  # ... fresh instances


class Heavy(tune.Trainable):
    @classmethod
    def default_resource_request(cls, config):
        return {"cpu": 2}

    def step(self):
        return {"resources": tune.get_context().get_trial_resources(), "done": True}


def test_default_resource_request_applies_unless_resources_are_given(storage):
    grid = _fit(Heavy, storage, name="default")
    assert grid[0].metrics["resources"] == {"CPU": 2.0}
    grid = _fit(tune.with_resources(Heavy, {"cpu": 1}), storage, name="given")
    assert grid[0].metrics["resources"] == {"CPU": 1.0}


class WithData(tune.Trainable):
    def setup(self, config, data=None):
        self.data = data

    def step(self):
        return {"total": sum(self.data) * self.config["m"], "done": True}


def test_with_parameters_passes_arguments_to_setup(storage):
    grid = _fit(tune.with_parameters(WithData, data=list(range(10))), storage, {"m": 2})
    assert grid[0].metrics["total"] == 90 and grid[0].error is None


class BlocksAfterFive(tune.Trainable):
    def setup(self, config):
        self.step_value = 0
        self.restored_from = 0

    def step(self):
        if self.step_value == 5 and not os.path.exists(self.config["marker"]):
            open(self.config["marker"], "w").close()
            # The first run goes no further than its 5th result: killed here, whatever the timing.
            threading.Event().wait(120)
        self.step_value += 1
        return {"step": self.step_value, "restored_from": self.restored_from, "done": self.step_value >= 12}

    def save_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "step"), "w") as f:
            f.write(str(self.step_value))

    def load_checkpoint(self, checkpoint_dir):
        self.step_value = self.restored_from = int(open(os.path.join(checkpoint_dir, "step")).read())


def test_killed_class_trial_restarts_from_its_latest_checkpoint_with_a_full_history(storage, tmp_path):
    killer = KillAtIterationOnce(5)
    grid = _fit(BlocksAfterFive, storage, {"marker": str(tmp_path / "marker")}, callbacks=[killer],
                failure_config=tune.FailureConfig(max_failures=1),
                checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=1, num_to_keep=2))
    (result,) = list(grid)
    assert_history_of_a_kill_at_five(killer, result)
    # One checkpoint per iteration, numbered on across the restart; the last two are kept.
    assert _checkpoint_dirs(result.path) == ["checkpoint_000010", "checkpoint_000011"]
    assert open(os.path.join(result.checkpoint.path, "step")).read() == "12"
    assert [m["training_iteration"] for _, m in result.best_checkpoints] == [11, 12]


class DoneAtThree(tune.Trainable):
    def setup(self, config):
        self.steps = 0

    def step(self):
        self.steps += 1
        return {"score": self.steps, "done": self.steps == 3}


class Records(tune.schedulers.FIFOScheduler):
    """Notes the iterations it was asked to decide on, and the result each trial completed with."""

    def __init__(self):
        super().__init__()
        self.decided, self.completed = [], []

    def on_trial_result(self, tune_controller, trial, result):
        self.decided.append(result["training_iteration"])
        return super().on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result):
        self.completed.append(result["training_iteration"])


def test_the_result_a_trainable_marks_done_ends_the_trial_without_a_scheduler_decision(tmp_path):
    """As Ray Tune: a done result ends the trial; the scheduler is not asked to decide on it
    (a PBT exploit decided there would be logged but never run), it hears on_trial_complete."""
    scheduler = Records()
    grid = tune.Tuner(DoneAtThree, tune_config=tune.TuneConfig(scheduler=scheduler),
                      run_config=tune.RunConfig(name="done", storage_path=str(tmp_path), verbose=0)).fit()
    assert grid[0].metrics["training_iteration"] == 3 and grid[0].error is None
    assert scheduler.decided == [1, 2] and scheduler.completed == [3]
