"""fasttune.integration.mlflow against a real MLflow tracking store (SQLite, what MLflow 3 wants
for a local store), read back with ``mlflow.MlflowClient``: MLflowLoggerCallback lays a real sweep
out as Ray Tune does (one run per trial: name, tags, params, metrics per step, artifacts, status),
a failing trial's run is FAILED, and setup_mlflow opens a run inside a trial."""
import shutil

import pytest
from mlflow import MlflowClient

import fasttune as tune
from fasttune.error import TuneError
from fasttune.integration.mlflow import MLflowLoggerCallback, setup_mlflow
from fasttune_testing import fit

pytestmark = pytest.mark.usefixtures("ray_session")


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory):
    # Creating MLflow's tables takes seconds: made once, copied for each test.
    folder = tmp_path_factory.mktemp("mlflow")
    MlflowClient(tracking_uri=f"sqlite:///{folder}/mlflow.db").search_experiments()
    return folder / "mlflow.db"


@pytest.fixture
def tracking_uri(empty_store, tmp_path):
    shutil.copy(empty_store, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path}/mlflow.db"


def runs_by_name(client, experiment_name):
    experiment = client.get_experiment_by_name(experiment_name)
    return {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}


def history(client, run, key):
    return [(metric.step, metric.value) for metric in sorted(client.get_metric_history(run.info.run_id, key),
                                                                 key=lambda metric: metric.step)]


def mlflow_three_steps(config):
    for i in range(1, 4):
        tune.report({"loss": config["lr"] * i, "nested": {"acc": i / 10}, "note": "text", "flag": i == 3})


def test_each_trial_is_a_run_with_its_params_metrics_per_step_artifacts_and_status(storage, tracking_uri, tmp_path):
    client = MlflowClient(tracking_uri=tracking_uri)
    client.create_experiment("sweep", artifact_location=str(tmp_path / "artifacts"))
    callback = MLflowLoggerCallback(tracking_uri, experiment_name="sweep", tags={"owner": "tests"},
                                    save_artifact=True)
    grid = fit(mlflow_three_steps, storage, {"lr": tune.grid_search([0.5, 2.0]), "model": {"depth": 3}},
               callbacks=[callback])
    assert grid.num_errors == 0

    runs = runs_by_name(client, "sweep")
    assert sorted(runs) == sorted(_trial_name(result) for result in grid)
    for result in grid:
        run = runs[_trial_name(result)]
        lr = result.config["lr"]
        assert run.info.status == "FINISHED"
        assert run.data.tags["trial_name"] == _trial_name(result) and run.data.tags["owner"] == "tests"
        assert run.data.params == {"lr": str(lr), "model/depth": "3"}
        assert history(client, run, "loss") == [(1, lr), (2, 2 * lr), (3, 3 * lr)]
        assert history(client, run, "nested/acc") == [(1, 0.1), (2, 0.2), (3, 0.3)]
        assert history(client, run, "flag") == [(1, 0.0), (2, 0.0), (3, 1.0)]
        assert history(client, run, "config/lr") == [(1, lr), (2, lr), (3, lr)]
        assert "note" not in run.data.metrics and "date" not in run.data.metrics
        artifacts = {artifact.path for artifact in client.list_artifacts(run.info.run_id)}
        assert {"params.json", "result.json"} <= artifacts


def _trial_name(result):
    # The trial's name, as str(trial) gives it: "<trainable>_<trial id>".
    return f"mlflow_three_steps_{result.metrics['trial_id']}"


def mlflow_fails_at_two(config):
    tune.report({"loss": 1.0})
    tune.report({"loss": 0.5})
    raise RuntimeError("fails on purpose")


def test_a_failing_trial_is_a_failed_run_with_what_it_reported(storage, tracking_uri):
    callback = MLflowLoggerCallback(tracking_uri, experiment_name="failing", log_params_on_trial_end=True)
    grid = fit(mlflow_fails_at_two, storage, {"seed": 7}, callbacks=[callback])
    assert grid.num_errors == 1
    client = MlflowClient(tracking_uri=tracking_uri)
    (run,) = runs_by_name(client, "failing").values()
    assert run.info.status == "FAILED"
    assert run.data.params == {"seed": "7"}  # logged at the end
    assert history(client, run, "loss") == [(1, 1.0), (2, 0.5)]
    assert client.list_artifacts(run.info.run_id) == []  # save_artifact is off


def test_bad_tags_are_refused():
    with pytest.raises(TypeError, match=r"tags=\.\.\.\) must be a dict"):
        MLflowLoggerCallback(tags=["owner"])


def test_a_failing_store_call_surfaces_as_a_tune_error(tracking_uri):
    callback = MLflowLoggerCallback(tracking_uri, experiment_name="broken")
    callback.setup()
    MlflowClient(tracking_uri=tracking_uri).delete_experiment(callback.experiment_id)  # no new run in it
    callback.log_trial_result_batch(0, _Unstarted(), [{"training_iteration": 1}], [0.0])
    with pytest.raises(TuneError, match=r"MLflow tracking failed 1 time\(s\); the first: results\('gone'"):
        callback.on_experiment_end([])


def test_a_result_the_tracking_thread_cannot_send_ends_its_thread_and_process_with_a_tune_error(
        tracking_uri, monkeypatch):
    """The thread that pickles the messages for the tracking process fails on a result it
    cannot pickle: the end of the experiment says so as a TuneError naming MLflow, and ends
    the thread and the process all the same (the process, kept as it starts, has exited)."""
    import threading

    from fasttune.integration._tracking_process import TrackingProcess

    started = []
    start = TrackingProcess._start
    monkeypatch.setattr(TrackingProcess, "_start", staticmethod(lambda: started.append(start()) or started[-1]))
    callback = MLflowLoggerCallback(tracking_uri, experiment_name="unpicklable")
    callback.setup()
    callback.log_trial_result_batch(0, _Unstarted(), [{"training_iteration": 1, "lock": threading.Lock()}], [0.0])
    with pytest.raises(TuneError, match=r"MLflow tracking stopped taking results \(TypeError: cannot pickle"):
        callback.on_experiment_end([])
    assert [t for t in threading.enumerate() if t.name == "fasttune-mlflow"] == []
    assert len(started) == 1 and started[0].poll() is not None


class _Unstarted:
    # What the callback reads of a trial.
    trial_id = "gone"

    def __str__(self):
        return "gone"


def mlflow_logs_inside(config):
    mlflow = setup_mlflow(config, tracking_uri=config["uri"], experiment_name="inside",
                          create_experiment_if_not_exists=True, run_name=f"run_{config['x']}",
                          tags={"where": "trial"})
    for step in range(3):
        mlflow.log_metric("inner", config["x"] * step, step=step)
    tune.report({"done_steps": 3})
    mlflow.end_run()


def test_setup_mlflow_starts_a_run_for_the_trial_with_its_config(storage, tracking_uri):
    grid = fit(mlflow_logs_inside, storage, {"x": tune.grid_search([1, 2]), "uri": tracking_uri},
               tune_config=tune.TuneConfig(max_concurrent_trials=1))
    assert grid.num_errors == 0
    client = MlflowClient(tracking_uri=tracking_uri)
    runs = runs_by_name(client, "inside")
    assert sorted(runs) == ["run_1", "run_2"]
    for x in (1, 2):
        run = runs[f"run_{x}"]
        assert run.info.status == "FINISHED" and run.data.tags["where"] == "trial"
        assert run.data.params == {"x": str(x), "uri": tracking_uri}
        assert history(client, run, "inner") == [(0, 0.0), (1, float(x)), (2, 2.0 * x)]


def test_setup_mlflow_without_an_experiment_says_what_to_pass(tracking_uri):
    with pytest.raises(ValueError, match="create_experiment_if_not_exists=True"):
        setup_mlflow({"x": 1}, tracking_uri=tracking_uri, experiment_name="missing")

