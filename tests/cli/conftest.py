"""Real small experiments for the command-line tests, made once per test run: a plain
sweep (one trial fails), a PBT sweep with policy logs, and a copy of the plain one made
to look like a run still going (a torn last result line, a trial directory newer than
the snapshot)."""
import json
import os
import shutil

import pytest

import fasttune as tune
from fasttune.schedulers.pbt import PopulationBasedTraining

from cli_testing import FAILING_X, NEW_TRIAL, PBT_STEPS, PLAIN_X, TORN_LINE
from fasttune_testing import fit, report_with_json_checkpoint, restored_json


def plain_trainable(config):
    for i in range(5):
        if config["x"] == FAILING_X and i == 2:
            raise ValueError("this trial fails on purpose")
        # Its own timestamps (a result's timestamp is kept when reported), spread over
        # seconds so that the best-so-far plot has more than one point.
        tune.report({"loss": config["x"] * (5 - i) + 0.25 * i, "acc": i / config["x"], "nested": {"a": i},
                     "timestamp": 1_700_000_000 + 3 * i + config["x"]})


def pbt_trainable(config):
    q, start = restored_json([0.0, 0])
    for step in range(start + 1, PBT_STEPS + 1):
        q += config["lr"]
        if step % 2 == 0:
            report_with_json_checkpoint({"q": q}, [q, step])
        else:
            tune.report({"q": q})


@pytest.fixture(scope="session")
def plain_experiment(ray_session, tmp_path_factory):
    storage = str(tmp_path_factory.mktemp("cli_plain"))
    grid = fit(plain_trainable, storage, name="plain",
               space={"x": tune.grid_search(PLAIN_X), "name": tune.grid_search(["a", "b"])},
               tune_config=tune.TuneConfig(metric="loss", mode="min"))
    assert grid.num_errors == 2
    return grid.experiment_path


@pytest.fixture(scope="session")
def pbt_experiment(ray_session, tmp_path_factory):
    storage = str(tmp_path_factory.mktemp("cli_pbt"))
    pbt = PopulationBasedTraining(time_attr="training_iteration", perturbation_interval=4,
                                  hyperparam_mutations={"lr": tune.uniform(0.001, 1.0)}, log_config=True)
    grid = fit(tune.with_resources(pbt_trainable, {"cpu": 0.5}), storage, name="pbt",
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
