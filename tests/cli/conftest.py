"""Real small experiments for the command-line tests, made once per test run: a plain
sweep (one trial fails), one sweep with the results store and without (some trials
checkpoint, one fails), a PBT sweep with policy logs, and a copy of the plain one made
to look like a run still going (a torn last result line, a trial directory newer than
the snapshot).  The trainables live in cli_testing: workers import them by module name,
and "conftest" names the root conftest there."""
import json
import os
import shutil

import pytest

import fasttune as tune
from fasttune.schedulers.pbt import PopulationBasedTraining

from cli_testing import NEW_TRIAL, PLAIN_X, STORE_X, TORN_LINE, checkpointing_trainable, pbt_trainable, plain_trainable
from fasttune_testing import fit, seeded_generators


@pytest.fixture(scope="session")
def plain_experiment(ray_session, tmp_path_factory):
    storage = str(tmp_path_factory.mktemp("cli_plain"))
    grid = fit(plain_trainable, storage, name="plain",
               space={"x": tune.grid_search(PLAIN_X), "name": tune.grid_search(["a", "b"])},
               tune_config=tune.TuneConfig(metric="loss", mode="min"))
    assert grid.num_errors == 2
    return grid.experiment_path


@pytest.fixture(scope="session")
def store_and_per_trial_experiments(ray_session, tmp_path_factory):
    """The same sweep twice: with RunConfig(results_store="experiment"), and with Ray Tune's
    per-trial files; the experiment paths, in that order."""
    storage = str(tmp_path_factory.mktemp("cli_store"))
    paths = []
    for name, results_store in [("in_store", "experiment"), ("in_files", "per_trial")]:
        grid = fit(checkpointing_trainable, storage, name=name, space={"x": tune.grid_search(STORE_X)},
                   tune_config=tune.TuneConfig(metric="loss", mode="min"), results_store=results_store)
        assert grid.num_errors == 1
        paths.append(grid.experiment_path)
    return tuple(paths)


@pytest.fixture(scope="session")
def pbt_experiment(ray_session, tmp_path_factory):
    storage = str(tmp_path_factory.mktemp("cli_pbt"))
    pbt = PopulationBasedTraining(time_attr="training_iteration", perturbation_interval=4,
                                  hyperparam_mutations={"lr": tune.uniform(0.001, 1.0)}, log_config=True)
    # One trial at a time on the session's two CPUs, seeded: the exploits are a function of
    # the seed, not of which trials happen to have reported when one is judged.
    with seeded_generators(0):
        grid = fit(tune.with_resources(pbt_trainable, {"cpu": 2}), storage, name="pbt",
                   space={"lr": tune.grid_search([0.01, 0.1, 0.5, 1.0])},
                   tune_config=tune.TuneConfig(metric="q", mode="max", scheduler=pbt))
    assert os.path.getsize(os.path.join(grid.experiment_path, "pbt_global.txt")) > 0
    return grid.experiment_path


@pytest.fixture(scope="session")
def running_experiment(plain_experiment, tmp_path_factory):
    """The plain experiment as a reader may find a running one: the last line of one
    trial's result.json half written, and a trial directory the snapshot does not hold."""
    path = str(tmp_path_factory.mktemp("cli_running") / "plain")
    shutil.copytree(plain_experiment, path)
    first = os.path.join(path, sorted(n for n in os.listdir(path) if n.startswith("plain_"))[0])
    with open(os.path.join(first, "result.json"), "a") as f:
        f.write(TORN_LINE)
    new = os.path.join(path, NEW_TRIAL)
    os.mkdir(new)
    with open(os.path.join(new, "params.json"), "w") as f:
        json.dump({"name": "a", "x": 7}, f)
    rows = [{"loss": 7.0 - i, "acc": 0.5, "nested": {"a": i}, "training_iteration": i + 1, "trial_id": "new_99999",
             "timestamp": 1_800_000_000 + i, "time_total_s": 0.5 * (i + 1), "done": False,
             "config": {"name": "a", "x": 7}} for i in range(2)]
    with open(os.path.join(new, "result.json"), "w") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows) + '{"loss": -5.0, "train')
    return path
