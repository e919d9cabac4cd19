"""In a sweep: a class trainable's step() result with ``should_checkpoint: True`` makes
fasttune save a checkpoint after it, as in Ray Tune; a Tuner's class trainable also
checkpoints at its end unless ``CheckpointConfig(checkpoint_at_end=False)``; and a trainable
class made by wrap_function runs as the function it wraps."""
import os
import pickle

import pytest

import fasttune as tune
from fasttune.trainable import wrap_function
from fasttune.trainable.trainable import DICT_CHECKPOINT_FILE

pytestmark = pytest.mark.usefixtures("ray_session")


class CheckpointsWhenAsked(tune.Trainable):
    def setup(self, config):
        self.count = 0

    def step(self):
        self.count += 1
        return {"count": self.count, "should_checkpoint": self.count in self.config["at"],
                "done": self.count >= 6}

    def save_checkpoint(self, checkpoint_dir):
        return {"count": self.count}

    def load_checkpoint(self, checkpoint):
        self.count = checkpoint["count"]


def _fit(trainable, storage, space, checkpoint_config=None):
    return tune.Tuner(
        trainable, param_space=space,
        run_config=tune.RunConfig(name="exp", storage_path=storage, verbose=0, checkpoint_config=checkpoint_config),
    ).fit()


NOT_AT_END = tune.CheckpointConfig(checkpoint_at_end=False)


def _saved_counts(result):
    saved = sorted(d for d in os.listdir(result.path) if d.startswith("checkpoint_"))
    counts = []
    for name in saved:
        with open(os.path.join(result.path, name, DICT_CHECKPOINT_FILE), "rb") as f:
            counts.append(pickle.load(f)["count"])
    return saved, counts


def test_should_checkpoint_in_a_result_saves_exactly_those_checkpoints(storage):
    grid = _fit(CheckpointsWhenAsked, storage, {"at": [2, 5]}, NOT_AT_END)
    result = grid[0]
    assert result.error is None and result.metrics["count"] == 6
    saved, counts = _saved_counts(result)
    assert counts == [2, 5]
    assert result.checkpoint is not None and os.path.basename(result.checkpoint.path) == saved[-1]


def test_no_should_checkpoint_no_checkpoints(storage):
    result = _fit(CheckpointsWhenAsked, storage, {"at": []}, NOT_AT_END)[0]
    assert result.checkpoint is None
    assert not [d for d in os.listdir(result.path) if d.startswith("checkpoint_")]


def test_a_class_trainable_checkpoints_at_its_end_unless_told_not_to(storage):
    # CheckpointConfig() leaves checkpoint_at_end None: a Tuner makes that True for a class.
    result = _fit(CheckpointsWhenAsked, storage, {"at": [2, 5]})[0]
    saved, counts = _saved_counts(result)
    assert counts == [2, 5, 6]
    assert os.path.basename(result.checkpoint.path) == saved[-1]
    assert _saved_counts(_fit(CheckpointsWhenAsked, os.path.join(storage, "none"), {"at": []})[0])[1] == [6]


def reports_three(config):
    for step in range(3):
        tune.report({"step": step * config["scale"]})


def test_a_wrapped_function_class_runs_as_its_function(storage):
    result = _fit(wrap_function(reports_three), storage, {"scale": 2})[0]
    assert result.error is None
    assert (result.metrics["step"], result.metrics["training_iteration"]) == (4, 3)
