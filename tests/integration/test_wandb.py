"""fasttune.integration.wandb in W&B's offline mode, reading back the runs' transaction logs:
WandbLoggerCallback makes one run per trial of a real sweep as Ray Tune does (id, name, group,
config, one history row per result at its training_iteration, checkpoints as artifacts, the exit
code of a failing trial), and setup_wandb opens a run inside a trial."""
import os

import pytest

import fasttune as tune
from fasttune.integration.wandb import WandbLoggerCallback, setup_wandb
from fasttune_testing import fit

from wandb_testing import offline_runs

pytestmark = pytest.mark.usefixtures("ray_session")


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_DIR", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))


def wandb_three_steps(config):
    for i in range(1, 4):
        checkpoint = None
        if i == 2:
            folder = os.path.join(tune.get_context().get_trial_dir(), "ckpt_src")
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, "weights.txt"), "w") as f:
                f.write(str(i))
            checkpoint = tune.Checkpoint.from_directory(folder)
        tune.report({"loss": config["lr"] * i, "nested": {"acc": i / 10}, "note": "text", "secret": 1,
                     "vector": [1, 2]}, checkpoint=checkpoint)


def test_each_trial_is_a_run_with_its_config_and_one_row_per_result(storage):
    callback = WandbLoggerCallback(project="sweeps", excludes=["secret"], upload_checkpoints=True)
    grid = fit(wandb_three_steps, storage, {"lr": tune.grid_search([0.5, 2.0]), "model": {"depth": 3}},
               name="wandb_exp", callbacks=[callback])
    assert grid.num_errors == 0
    for result in grid:
        trial_id = result.metrics["trial_id"]
        (run,) = offline_runs(result.path).values()  # in the trial's directory, as Ray Tune puts them
        lr = result.config["lr"]
        assert run.run.run_id == trial_id and run.run.display_name == f"wandb_three_steps_{trial_id}"
        assert run.run.project == "sweeps" and run.run.run_group == "wandb_exp"
        assert run.config["lr"] == lr and run.config["model"] == {"depth": 3}
        assert run.config["trial_id"] == trial_id and run.config["trial_log_path"] == result.path
        assert "hostname" in run.config and "pid" in run.config
        assert [row["_step"] for row in run.rows] == [1, 2, 3]
        assert [row["loss"] for row in run.rows] == [lr, 2 * lr, 3 * lr]
        assert [row["nested/acc"] for row in run.rows] == [0.1, 0.2, 0.3]
        logged = set().union(*run.rows)
        assert not logged & {"note", "secret", "vector", "done", "trial_id", "hostname", "pid", "config/lr"}
        assert run.exit_code == 0
        assert [(a.name, a.type) for a in run.artifacts] == [(f"checkpoint_wandb_three_steps_{trial_id}", "model")]


def wandb_fails_at_two(config):
    tune.report({"loss": 1.0})
    tune.report({"loss": 0.5})
    raise RuntimeError("fails on purpose")


def test_a_failing_trial_finishes_its_run_with_exit_code_1_and_log_config_logs_the_config(storage):
    callback = WandbLoggerCallback(project="sweeps", group="mine", log_config=True)
    grid = fit(wandb_fails_at_two, storage, {"seed": 7}, callbacks=[callback])
    assert grid.num_errors == 1
    (result,) = grid
    (run,) = offline_runs(result.path).values()
    assert run.run.run_group == "mine"
    assert [(row["_step"], row["loss"], row["config/seed"]) for row in run.rows] == [(1, 1.0, 7), (2, 0.5, 7)]
    assert run.exit_code == 1


def test_the_project_is_required(monkeypatch):
    monkeypatch.delenv("WANDB_PROJECT_NAME", raising=False)
    with pytest.raises(ValueError, match="needs a project"):
        WandbLoggerCallback().setup()


def test_excludes_must_be_names():
    with pytest.raises(TypeError, match=r"excludes=\.\.\.\) must be a list of key names"):
        WandbLoggerCallback(project="p", excludes="loss")


def test_online_without_a_key_says_how_to_give_one(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc from a `wandb login`
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    with pytest.raises(ValueError, match="No W&B API key"):
        WandbLoggerCallback(project="p").setup()


def wandb_logs_inside(config):
    # Ray's workers started before the test set $WANDB_MODE: the trial says offline itself.
    run = setup_wandb(config, project="inside", dir=config["dir"], mode="offline")
    for step in range(1, 3):
        run.log({"inner": config["x"] * step}, step=step)
    tune.report({"done_steps": 2})
    run.finish()


def test_setup_wandb_starts_a_run_for_the_trial_with_its_config(storage, tmp_path):
    folder = str(tmp_path / "inside")
    os.makedirs(folder)
    grid = fit(wandb_logs_inside, storage, {"x": tune.grid_search([1, 2]), "dir": folder}, name="inside_exp",
               tune_config=tune.TuneConfig(max_concurrent_trials=1))
    assert grid.num_errors == 0
    runs = offline_runs(folder)
    assert sorted(runs) == sorted(result.metrics["trial_id"] for result in grid)
    for result in grid:
        run = runs[result.metrics["trial_id"]]
        x = result.config["x"]
        assert run.run.display_name == f"wandb_logs_inside_{result.metrics['trial_id']}"
        assert run.run.run_group == "inside_exp" and run.run.project == "inside"
        assert run.config["x"] == x and run.config["dir"] == folder
        assert [(row["_step"], row["inner"]) for row in run.rows] == [(1, x), (2, 2 * x)]
        assert run.exit_code == 0

