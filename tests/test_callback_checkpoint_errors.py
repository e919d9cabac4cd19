"""A callback raising in ``on_checkpoint`` stops the sweep with its error; the callbacks
after it still hear that checkpoint, and every callback its ``on_trial_save``, whatever
kind of checkpoint it was: one saved with a result, at the trial's end, or at a pause."""
import os
from array import array

import pytest

import fasttune as tune
from fasttune.error import TuneError
from fasttune.execution import _protocol as protocol

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


# Without Ray: the runner's event handlers are fed by hand.

def _runner_with_running_trials(tmp_path, monkeypatch, callbacks, num_samples=1):
    """A runner without Ray holding ``num_samples`` RUNNING trials; the specs it starts
    them with are in ``runner.started``."""
    from fasttune.execution import TrialRunner
    from fasttune.experiment import Trial

    runner = TrialRunner(experiment_path=str(tmp_path), callbacks=callbacks)
    runner.started = []
    monkeypatch.setattr(runner.trial_executor, "check_feasible", lambda trial: None)
    monkeypatch.setattr(runner.trial_executor, "start_trial",
                        lambda trial, spec, queue=True: runner.started.append(spec) or 0)
    for index in range(num_samples):
        trial = Trial("t", config={"index": index}, experiment_path=str(tmp_path))
        runner.add_trial(trial)
        runner._start_trial(trial)
        runner._on_started(0, trial, protocol.Started(trial.trial_id, 1.0, 11, "host", "192.0.2.2"))
    return runner


def test_after_a_callback_raised_on_a_checkpoint_of_an_unjudged_batch_all_hear_the_later_ones(tmp_path, monkeypatch):
    raising, after = RaisesOnCheckpoint(), Hears()
    runner = _runner_with_running_trials(tmp_path, monkeypatch, [raising, after])
    trial = runner.get_trials()[0]
    assert not (runner._scheduler_sees_results or runner._searcher_sees_results or runner._callbacks_see_results)

    with pytest.raises(TuneError, match=r"RaisesOnCheckpoint\.on_checkpoint raised ValueError"):
        # Nothing judges this batch: its two checkpoints are told together.
        runner._on_results(0, trial, protocol.Results(
            trial.trial_id, [{"total": 1}, {"total": 2}], array("d", [1.0, 2.0]).tobytes(),
            {0: "checkpoint_000000", 1: "checkpoint_000001"}))

    for heard in (raising.heard, after.heard):
        assert [name for hook, name in heard if hook == "on_checkpoint"] == ["checkpoint_000000", "checkpoint_000001"]
    assert [hook for hook, _ in after.heard].count("on_trial_save") == 2
    runner._files.close_all()


def test_a_callback_raising_on_a_cloned_checkpoint_leaves_the_others_hearing_it_and_the_donor_unpinned(
        tmp_path, monkeypatch):
    from fasttune.experiment import Trial

    raising, after = RaisesOnCheckpoint(), Hears()
    runner = _runner_with_running_trials(tmp_path, monkeypatch, [raising, after], num_samples=2)
    donor, clone = runner.get_trials()
    runner._on_results(0, donor, protocol.Results(donor.trial_id, [{"total": 1}], array("d", [1.0]).tobytes(), {}))
    runner._checkpoints.record(donor, runner._states[donor.trial_id], "checkpoint_000000", donor.last_result, 1)
    runner._release(clone)
    clone.set_status(Trial.PAUSED)
    runner.reset_trial(clone, {"x": 1}, "exploited", checkpoint=donor.checkpoint,
                       checkpoint_result=donor.checkpoint_results[-1][1])
    runner._start_trial(clone)
    assert runner.started[-1]["clone_from"] == donor.checkpoint.path
    assert donor.checkpoint.path in runner._checkpoints._pins  # until the copy is confirmed

    with pytest.raises(TuneError, match=r"RaisesOnCheckpoint\.on_checkpoint raised ValueError"):
        runner._on_cloned(0, clone, protocol.Cloned(clone.trial_id, "checkpoint_000000"))

    heard = [("on_checkpoint", "checkpoint_000000"), ("on_trial_save", "checkpoint_000000")]
    assert (raising.heard, after.heard) == (heard, heard)
    assert os.path.dirname(clone.checkpoint.path) == clone.path
    assert not runner._checkpoints._pins  # the copy is confirmed: the donor's checkpoint is free
    runner._files.close_all()
