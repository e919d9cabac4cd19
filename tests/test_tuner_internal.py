"""TunerInternal's members that Ray Tune's has: the results, the run config, the trainable
and param space, and its constructor's parameter order."""
import os

import pytest

import fasttune as tune
from fasttune.impl.tuner_internal import TunerInternal


def two_steps(config):
    for step in range(2):
        tune.report({"score": config["x"] * 10 + step})


def test_a_new_experiment_has_no_results_until_it_runs(storage):
    space = {"x": tune.grid_search([1, 2])}
    run_config = tune.RunConfig(name="unrun", storage_path=storage, verbose=0)
    internal = TunerInternal(trainable=two_steps, param_space=space, run_config=run_config)
    assert internal.trainable is two_steps and internal.param_space is space
    assert internal.get_run_config() is run_config
    with pytest.raises(RuntimeError, match=r"has not been run yet.*call Tuner.fit\(\) first"):
        internal.get_results()


@pytest.mark.usefixtures("ray_session")
def test_results_after_fit_and_of_a_restored_experiment_not_run_again(storage):
    tuner = tune.Tuner(two_steps, param_space={"x": tune.grid_search([1, 2])},
                       tune_config=tune.TuneConfig(metric="score", mode="max"),
                       run_config=tune.RunConfig(name="ran", storage_path=storage, verbose=0))
    grid = tuner.fit()
    assert tuner._local_tuner.get_results() is grid
    path = os.path.join(storage, "ran")
    # Ray Tune's order: restore_path, storage_filesystem, resume_config, trainable.
    restored = TunerInternal(path, None, None, two_steps)
    again = restored.get_results()
    assert sorted(r.metrics["score"] for r in again) == [11, 21]
    assert again.get_best_result().config == {"x": 2}  # the metric and mode it was run with
