"""A callback raising in ``on_checkpoint`` stops the sweep with its error; the callbacks
after it still hear that checkpoint, and every callback its ``on_trial_save``, whatever
kind of checkpoint it was: one saved with a result, at the trial's end, or at a pause."""
import os

import pytest

import fasttune as tune
from fasttune.error import TuneError

from fasttune_testing import PauseOnceAtThree

pytestmark = pytest.mark.ray


class Counter(tune.Trainable):
    def setup(self, config):
        self.total = 0

    def step(self):
        self.total += 1
        return {"total": self.total}

    def save_checkpoint(self, checkpoint_dir):
        return {"total": self.total}

    def load_checkpoint(self, checkpoint):
        self.total = checkpoint["total"]


class Hears(tune.Callback):
    """Keeps the checkpoint hooks it hears: (hook, checkpoint directory name)."""

    def __init__(self):
        self.heard = []

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        self.heard.append(("on_checkpoint", os.path.basename(checkpoint.path)))

    def on_trial_save(self, iteration, trials, trial, **info):
        self.heard.append(("on_trial_save", os.path.basename(trial.checkpoint.path)))


class RaisesOnCheckpoint(Hears):
    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        super().on_checkpoint(iteration, trials, trial, checkpoint, **info)
        raise ValueError("cannot take it")


# Each makes one checkpoint: at iteration 2 of 3, at the end, or at the pause at iteration 3.
KINDS = {
    "with_a_result": dict(checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=2), stop=3),
    "at_the_end": dict(checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=True), stop=4),
    "at_a_pause": dict(scheduler=PauseOnceAtThree(), stop=4),
}


@pytest.mark.usefixtures("ray_session")
@pytest.mark.parametrize("kind", list(KINDS))
def test_the_callbacks_after_one_raising_in_on_checkpoint_still_hear_the_checkpoint(storage, kind):
    raising, after = RaisesOnCheckpoint(), Hears()
    settings = dict(KINDS[kind])
    tune_config = tune.TuneConfig(scheduler=settings.pop("scheduler", None))
    run_config = tune.RunConfig(name=kind, storage_path=storage, verbose=0, callbacks=[raising, after],
                                stop={"training_iteration": settings.pop("stop")}, **settings)

    with pytest.raises(TuneError, match=r"RaisesOnCheckpoint\.on_checkpoint raised ValueError: cannot take it") as info:
        tune.Tuner(Counter, tune_config=tune_config, run_config=run_config).fit()

    assert isinstance(info.value.__cause__, ValueError)
    heard = [("on_checkpoint", "checkpoint_000000"), ("on_trial_save", "checkpoint_000000")]
    assert (raising.heard, after.heard) == (heard, heard)
