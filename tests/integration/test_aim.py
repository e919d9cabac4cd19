"""fasttune.integration.aim on real sweeps, read back from a real local Aim repository: one run
per trial with its hyperparameters and trial fields, Ray Tune's metric names at Ray Tune's steps
(with the reported epoch and context), only the chosen metrics when asked, and a closed run for a
trial that failed."""
import os

import aim
import numpy as np
import pytest
from aim.sdk.index_manager import RepoIndexManager

import fasttune as tune
from fasttune.error import TuneError
from fasttune.integration.aim import AimLoggerCallback
from fasttune_testing import fit
from tracking_testing import imports_library, missing_library_message

pytestmark = pytest.mark.usefixtures("ray_session")

QUIET_RUNS = dict(system_tracking_interval=None, capture_terminal_logs=False)  # no threads of Aim's own


def runs_in(repo_path):
    """``{trial_id: run}`` of every run in the repository, read as Aim's UI reads them (once
    indexed)."""
    repo = aim.Repo(repo_path)
    indexer = RepoIndexManager.get_index_manager(repo)
    for run_hash in repo.list_all_runs():
        indexer.index(run_hash)
    return {run["trial_id"]: run for run in repo.iter_runs()}


def series(run):
    """``{(metric name, context): (steps, values, epochs)}`` of a run."""
    out = {}
    for metric in run.metrics():
        steps, (values, epochs, _times) = metric.data.items_list()
        out[metric.name, tuple(sorted(metric.context.to_dict().items()))] = (list(steps), list(values), list(epochs))
    return out


def three_steps(config):
    for i in range(1, 4):
        tune.report({"loss": config["x"] * i, "nested": {"a": 0.5 * i}, "name": "text", "nan": float("nan"),
                     "np": np.float32(i)})


def test_one_run_per_trial_with_hparams_and_every_metric_at_its_step(tmp_path):
    repo = str(tmp_path / "aim")
    results = fit(three_steps, str(tmp_path / "storage"), space={"x": tune.grid_search([1, 2])},
                  callbacks=[AimLoggerCallback(repo=repo, experiment_name="sweep", **QUIET_RUNS)])
    trials = {result.metrics["trial_id"]: result for result in results}
    runs = runs_in(repo)
    assert sorted(runs) == sorted(trials)
    steps = [1, 2, 3]
    for trial_id, result in trials.items():
        run, x = runs[trial_id], result.config["x"]
        assert run.experiment == "sweep"
        assert run["hparams"] == {"x": x}
        assert run["trial_log_dir"] == result.path
        assert run["trial_ip"] == result.metrics["node_ip"]
        assert run.end_time is not None  # closed when the trial ended
        tracked = series(run)
        # Ray Tune's choice of fields: every finite number but config, pid, timestamp,
        # time_total_s and training_iteration (the step); strings and NaN are left out.
        assert sorted(name for name, _ in tracked) == [
            "ray/tune/done", "ray/tune/iterations_since_restore", "ray/tune/loss", "ray/tune/nested/a",
            "ray/tune/np", "ray/tune/time_since_restore", "ray/tune/time_this_iter_s"]
        assert tracked["ray/tune/loss", ()][:2] == (steps, [x * 1, x * 2, x * 3])
        assert tracked["ray/tune/nested/a", ()][:2] == (steps, [0.5, 1.0, 1.5])
        assert tracked["ray/tune/np", ()][:2] == (steps, [1.0, 2.0, 3.0])
        assert tracked["ray/tune/done", ()][:2] == (steps, [0, 0, 0])
        assert tracked["ray/tune/iterations_since_restore", ()][:2] == (steps, steps)


def epochs_and_context_then_fail(config):
    for i in range(1, 4):
        tune.report({"loss": 10.0 - i, "acc": 0.1 * i, "epoch": i - 1, "context": {"subset": "valid"},
                     "timesteps_total": 100 * i if config["timesteps"] else None})
        if config["fail"] and i == 2:
            raise RuntimeError("failing on purpose")


def test_chosen_metrics_epoch_context_default_repo_and_a_failed_trial(tmp_path):
    storage = str(tmp_path / "storage")
    space = {"fail": tune.grid_search([False, True]), "timesteps": True, "skipped": np.float32(0.5)}
    results = fit(epochs_and_context_then_fail, storage, space=space, name="exp",
                  callbacks=[AimLoggerCallback(metrics=["loss"], **QUIET_RUNS)])
    by_fail = {result.config["fail"]: result for result in results}
    assert by_fail[True].error is not None
    runs = runs_in(os.path.join(storage, "exp"))  # the default repository: the experiment's directory
    assert sorted(runs) == sorted(result.metrics["trial_id"] for result in results)
    for fail, result in by_fail.items():
        run = runs[result.metrics["trial_id"]]
        assert run.experiment == "exp"  # the default experiment: the directory's name
        assert run["hparams"] == {"fail": fail}  # the searched parameters only
        assert run.end_time is not None  # closed also when the trial failed
        tracked = series(run)
        context = (("subset", "valid"),)
        steps = [100, 200] if fail else [100, 200, 300]  # timesteps_total, when reported, is the step
        assert list(tracked) == [("ray/tune/loss", context)]
        assert tracked["ray/tune/loss", context] == (steps, [9.0, 8.0, 7.0][:len(steps)], [0, 1, 2][:len(steps)])


class _Trial:
    # What the callback reads of a trial.
    trial_id = "t1"
    path = "/nowhere"
    evaluated_params = {"x": 1}
    experiment_dir_name = "exp"

    def get_ray_actor_ip(self):
        return None


def test_a_failure_in_the_tracking_process_is_raised_when_the_experiment_ends(tmp_path):
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    callback = AimLoggerCallback(repo=str(not_a_directory), **QUIET_RUNS)
    callback.setup()
    callback.log_trial_start(_Trial())
    with pytest.raises(TuneError, match=r"Aim logging failed 1 time\(s\); the first: start\('t1',\): FileExistsError"):
        callback.on_experiment_end([])
    assert callback._runs == {} and callback._process is None  # a later fit() starts afresh


def test_bad_arguments_say_what_is_wrong():
    with pytest.raises(ValueError, match=r"metrics=\[\].*non-empty list"):
        AimLoggerCallback(metrics=[])
    with pytest.raises(ValueError, match="metrics='loss'"):
        AimLoggerCallback(metrics="loss")
    with pytest.raises(TypeError, match="takes a directory or an aim.Repo, got int"):
        AimLoggerCallback(repo=3)


def test_without_aim_the_callback_says_what_to_install():
    assert missing_library_message('aim', 'fasttune.integration.aim', 'AimLoggerCallback') == (
        'AimLoggerCallback needs aim: pip install "fasttune[aim]" (or pip install aim).')


def test_importing_the_callback_does_not_import_aim():
    assert not imports_library('aim', 'fasttune.integration.aim', 'fasttune.logger.aim')
    from fasttune.logger.aim import AimLoggerCallback as at_ray_tunes_path

    assert at_ray_tunes_path is AimLoggerCallback


def test_the_callback_pickles_with_its_settings_for_tuner_restore():
    import ray.cloudpickle as cloudpickle

    callback = AimLoggerCallback(repo="runs", experiment_name="sweep", metrics=["loss"], capture_terminal_logs=False)
    copy = cloudpickle.loads(cloudpickle.dumps(callback))
    assert (copy._repo_path, copy._experiment_name, copy._metrics, copy._aim_run_kwargs) == (
        "runs", "sweep", frozenset({"loss"}), {"capture_terminal_logs": False})
    assert copy._runs == {}
