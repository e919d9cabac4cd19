"""A config that PBT's exploit hands to ``reset_trial`` but no worker can be sent (a
lock) fails that one trial, as such a config does for a new trial: the trial ends as
ERROR with the config it ran with and an ``error.txt`` naming the key; the others finish."""
import os
import tempfile
import threading

import pytest

import fasttune as tune
from fasttune.schedulers.pbt import PopulationBasedTraining
from fasttune_testing import fit, lines

pytestmark = pytest.mark.usefixtures("ray_session")

STEPS = 6


def constant_score(config):
    """Reports ``config["score"]`` with a checkpoint at every step (so the better trial
    always has one to clone)."""
    checkpoint = tune.get_checkpoint()
    start = 0
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            with open(os.path.join(d, "step")) as f:
                start = int(f.read())
    for step in range(start + 1, STEPS + 1):
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "step"), "w") as f:
                f.write(str(step))
            tune.report({"score": config["score"]}, checkpoint=tune.Checkpoint.from_directory(d))


def with_a_lock(config):
    return dict(config, lock=threading.Lock())


def test_an_exploit_to_a_config_no_worker_can_be_sent_fails_only_that_trial(storage):
    # Synchronous PBT: both trials wait at the perturbation point, so the worse one
    # exploits the better one there, whatever order their results came in.
    pbt = PopulationBasedTraining(time_attr="training_iteration", metric="score", mode="max",
                                  perturbation_interval=2, quantile_fraction=0.5, synch=True,
                                  custom_explore_fn=with_a_lock)
    grid = fit(tune.with_resources(constant_score, {"cpu": 0.5}), storage, {"score": tune.grid_search([1, 2])},
               tune_config=tune.TuneConfig(scheduler=pbt))

    by_score = {r.config["score"]: r for r in grid}
    assert sorted(by_score) == [1, 2]
    better, worse = by_score[2], by_score[1]
    assert better.error is None and better.metrics["training_iteration"] == STEPS
    assert isinstance(worse.error, tune.TuneError) and "config['lock'] is a lock" in str(worse.error)
    assert worse.config == {"score": 1}  # the config it ran with
    with open(os.path.join(worse.path, "error.txt")) as f:
        assert "config['lock'] is a lock" in f.read()
    # It stopped at the perturbation point, its results so far kept.
    assert [r["training_iteration"] for r in lines(os.path.join(worse.path, "result.json"))] == [1, 2]
