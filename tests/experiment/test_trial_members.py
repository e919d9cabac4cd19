"""The Trial members that Ray Tune callbacks and schedulers read: from a real sweep, and
on a trial of their own."""
import os

import pytest

import fasttune as tune
from fasttune.checkpoint import Checkpoint
from fasttune.config import CheckpointConfig
from fasttune.experiment.trial import CheckpointResult, Trial
from fasttune_testing import fit, report_with_step_checkpoint


def checkpoint_then_maybe_fail(config):
    report_with_step_checkpoint({"score": 1}, 1)
    tune.report({"score": 2})
    if config["fail"]:
        raise ValueError("failed on purpose")


class WhatCallbacksRead(tune.Callback):
    def __init__(self):
        self.seen = {}

    def _note(self, hook, trial):
        self.seen.setdefault(trial.config["fail"], []).append((hook, {
            "reported": trial.has_reported_at_least_once,
            "has_checkpoint": trial.has_checkpoint(),
            "latest": trial.latest_checkpoint_result,
            "node_ip": trial.node_ip,
            "actor_ip": trial.get_ray_actor_ip(),
            "error": trial.get_error(),
            "exception": trial.get_pickled_error(),
            "error_file": trial.error_file,
            "experiment": (trial.local_experiment_path, trial.local_dir, trial.experiment_dir_name),
            "trainable": trial.get_trainable_cls(),
        }))

    def on_trial_start(self, iteration, trials, trial, **info):
        self._note("start", trial)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._note("complete", trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._note("error", trial)


@pytest.mark.usefixtures("ray_session")
def test_callbacks_read_ray_tunes_trial_members_during_a_sweep(storage):
    callback = WhatCallbacksRead()
    grid = fit(checkpoint_then_maybe_fail, storage, {"fail": tune.grid_search([False, True])}, name="members",
               callbacks=[callback])
    assert grid.num_errors == 1
    experiment = (os.path.join(storage, "members"), os.path.join(storage, "members"), "members")
    for fail, end in ((False, "complete"), (True, "error")):
        (start_hook, start), (end_hook, last) = callback.seen[fail]
        assert (start_hook, end_hook) == ("start", end)
        assert not start["reported"] and not start["has_checkpoint"] and start["latest"] is None
        assert start["node_ip"] is None and start["error"] is None and start["exception"] is None
        assert last["reported"] and last["has_checkpoint"] and last["node_ip"] == last["actor_ip"]
        assert last["node_ip"]  # the node's address, as the results carry it
        assert isinstance(last["latest"], CheckpointResult) and last["latest"].metrics["score"] == 1
        assert last["experiment"] == experiment and last["trainable"] is checkpoint_then_maybe_fail
    failed = callback.seen[True][-1][1]
    assert isinstance(failed["exception"], ValueError) and "failed on purpose" in str(failed["exception"])
    assert failed["error_file"].endswith("error.txt")
    assert failed["error"].startswith("Failure # 1") and "ValueError: failed on purpose" in failed["error"]
    assert callback.seen[False][-1][1]["error"] is None


def test_members_are_declared_on_the_class_and_stay_per_trial():
    assert isinstance(Trial.__dict__["last_result"].__doc__, str)
    first, second = Trial("train"), Trial("train")
    first.last_result = {"node_ip": "10.0.0.7"}
    assert first.node_ip == "10.0.0.7" and second.node_ip is None and second.last_result == {}
    assert not second.has_reported_at_least_once


def test_checkpoint_members_follow_the_checkpoint_config_and_the_kept_checkpoints(tmp_path):
    trial = Trial("train", checkpoint_config=CheckpointConfig(checkpoint_frequency=3, checkpoint_at_end=True))
    assert (trial.checkpoint_freq, trial.checkpoint_at_end) == (3, True)
    assert (Trial("train").checkpoint_freq, Trial("train").checkpoint_at_end) == (0, None)  # Ray Tune's defaults
    kept = Checkpoint.from_directory(str(tmp_path))
    trial.checkpoints, trial.checkpoint_results = [kept], [(kept, {"loss": 0.5})]
    assert trial.has_checkpoint() and trial.latest_checkpoint_result == CheckpointResult(kept, {"loss": 0.5})
    assert trial.latest_checkpoint_result.checkpoint is kept


def test_set_config_and_experiment_tag_replace_them():
    trial = Trial("train", config={"lr": 0.1}, experiment_tag="0_lr=0.1")
    trial.set_config({"lr": 0.2})
    trial.set_experiment_tag("0_lr=0.2@perturbed")
    assert trial.config == {"lr": 0.2} and trial.experiment_tag == "0_lr=0.2@perturbed"
    with pytest.raises(TypeError, match="set_config needs a dict, got list"):
        trial.set_config([("lr", 0.3)])
    with pytest.raises(TypeError, match="set_experiment_tag needs a str, got int"):
        trial.set_experiment_tag(3)


def test_get_error_reads_the_error_file(tmp_path):
    trial = Trial("train")
    trial.error_file = str(tmp_path / "error.txt")
    assert trial.get_error() is None  # named but not written yet
    (tmp_path / "error.txt").write_text("Failure # 1\nboom\n")
    assert trial.get_error() == "Failure # 1\nboom\n"
