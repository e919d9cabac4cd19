"""Sweeps with ``RunConfig(results_store="experiment")``: every trial's results in the
experiment's store, each exactly once through a restart; directories only for trials
that checkpoint or fail; every reader shows what a per-trial run shows."""
import json
import os

import pytest

import fasttune as tune
from fasttune import _results_store as store
from fasttune._cli._experiment import read_experiment
from fasttune.logger import CSVLoggerCallback
from fasttune_testing import fit, restored_step

STEPS = 6


def trainable(config):
    """x=0: six results; x=1: a checkpoint at odd steps, and a failure before step 5's
    report on its first run (it restarts from step 3's checkpoint); x=2: writes a file
    into its trial directory (asking for it makes it), then fails at step 2."""
    for step in range(restored_step() + 1, STEPS + 1):
        if config["x"] == 2 and step == 2:
            with open(os.path.join(tune.get_context().get_trial_dir(), "artifact.txt"), "w") as f:
                f.write("made")
            raise RuntimeError("x=2 always fails at step 2")
        if config["x"] == 1 and step == 5 and not os.path.exists(config["marker"]):
            open(config["marker"], "w").close()
            raise RuntimeError("x=1 fails once before step 5")
        metrics = {"step": step, "loss": 10 * config["x"] + 1 / step, "cwd": os.getcwd(),
                   "orig": os.environ.get("TUNE_ORIG_WORKING_DIR")}
        if config["x"] == 1 and step % 2 == 1:
            import tempfile

            with tempfile.TemporaryDirectory() as d:
                with open(os.path.join(d, "step"), "w") as f:
                    f.write(str(step))
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))
        else:
            tune.report(metrics)


def _steps(rows):
    return [row["step"] for row in rows]


@pytest.fixture(scope="module")
def swept(ray_session, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("store")
    storage = str(tmp / "storage")
    space = {"x": tune.grid_search([0, 1, 2]), "marker": str(tmp / "failed-once")}
    grid = fit(trainable, storage, space, name="exp", results_store="experiment",
               tune_config=tune.TuneConfig(metric="loss", mode="min"),
               failure_config=tune.FailureConfig(max_failures=1))
    return os.path.join(storage, "exp"), grid


def _by_x(results):
    return {r.config["x"]: r for r in results}


def test_each_result_is_in_the_store_once_and_only_trials_that_need_one_have_a_directory(swept):
    path, grid = swept
    by_x = _by_x(grid)
    assert sorted(by_x) == [0, 1, 2]
    stored = {t.config["x"]: t for t in store.read_store(path).values()}
    assert _steps(stored[0].rows) == list(range(1, STEPS + 1))
    assert _steps(stored[1].rows) == list(range(1, STEPS + 1))  # 4 came again after the restart from 3
    # The first run's step 4 is in the store too, before the line that drops it.
    lines = [json.loads(line) for _, seg in store.segment_paths(path) for line in open(seg, "rb")]
    assert [row["step"] for row in lines if isinstance(row, dict) and row["config"]["x"] == 1] == [1, 2, 3, 4, 4, 5, 6]
    # x=1 went on from its step-3 checkpoint; x=2 started over after its first failure.
    assert sorted(row for row in lines if isinstance(row, list) and row[0] == "keep") == [
        ["keep", stored[1].dirname, 3], ["keep", stored[2].dirname, 0]]
    assert _steps(stored[2].rows) == [1]
    # The trial that only reported has no directory; the one that checkpointed has its
    # checkpoints (and the error.txt of its failure), the failed one its error.txt, and no
    # trial has a file of results.
    assert not os.path.exists(by_x[0].path)
    assert sorted(os.listdir(by_x[1].path)) == ["checkpoint_000000", "checkpoint_000001", "checkpoint_000002",
                                                "error.txt"]
    assert sorted(os.listdir(by_x[2].path)) == ["artifact.txt", "error.txt"]
    entries = sorted(os.listdir(path))
    assert "results" in entries and not any(e.startswith(("events", "params", "progress")) for e in entries)
    # Trials ran in their worker's directory, not in a trial directory.
    assert {row["cwd"] for t in stored.values() for row in t.rows}.isdisjoint(r.path for r in grid)
    assert all(row["orig"] == row["cwd"] for t in stored.values() for row in t.rows)


def test_fit_and_every_reader_show_the_same_histories(swept):
    path, grid = swept
    by_x = _by_x(grid)
    assert grid.num_errors == 1 and "x=2 always fails at step 2" in str(by_x[2].error)
    assert by_x[1].metrics["step"] == STEPS and by_x[1].checkpoint.path.endswith("checkpoint_000002")
    expected = {0: list(range(1, STEPS + 1)), 1: list(range(1, STEPS + 1)), 2: [1]}
    # fit()'s grid reads histories from the store.
    frame = grid.get_dataframe(filter_metric="step", filter_mode="min")
    assert sorted(frame["step"]) == [1, 1, 1]
    assert {x: list(r.metrics_dataframe["step"]) for x, r in by_x.items()} == expected

    read = _by_x(tune.ResultGrid.from_path(path))
    assert {x: list(r.metrics_dataframe["step"]) for x, r in read.items()} == expected
    assert read[2].error is not None and read[1].checkpoint.path == by_x[1].checkpoint.path
    assert [c.path for c, _ in read[1].best_checkpoints] == [c.path for c, _ in by_x[1].best_checkpoints]

    analysis = tune.ExperimentAnalysis(path, default_metric="loss", default_mode="min")
    ids = {r.metrics["trial_id"]: x for x, r in by_x.items()}
    assert {ids[i]: list(df["step"]) for i, df in analysis.trial_dataframes.items()} == expected
    assert analysis.best_config["x"] == 0

    experiment = read_experiment(path)
    assert {ids[t.trial_id]: (t.status, _steps(t.rows)) for t in experiment.trials} == {
        0: ("TERMINATED", expected[0]), 1: ("TERMINATED", expected[1]), 2: ("ERROR", expected[2])}


def test_a_restored_finished_store_experiment_keeps_its_layout_and_reruns_nothing(swept):
    path, grid = swept
    before = store.read_store(path)
    tuner = tune.Tuner.restore(path, trainable=trainable)
    assert tuner.get_results()  # read from the store without running
    assert tuner._local_tuner.get_run_config().results_store == "experiment"
    again = tuner.fit()
    assert sorted(r.metrics["step"] for r in again) == sorted(r.metrics["step"] for r in grid)
    after = store.read_store(path)
    assert {n: _steps(t.rows) for n, t in after.items()} == {n: _steps(t.rows) for n, t in before.items()}


def test_an_unknown_store_and_per_trial_loggers_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"results_store='bogus' is not valid; use one of \['per_trial', "):
        tune.RunConfig(results_store="bogus")
    tuner = tune.Tuner(trainable, run_config=tune.RunConfig(
        storage_path=str(tmp_path), results_store="experiment", callbacks=[CSVLoggerCallback()], verbose=0))
    with pytest.raises(ValueError, match=r"CSVLoggerCallback writes trial files, and RunConfig\(results_store="):
        tuner.fit()


def test_a_simulated_sweep_with_the_store_keeps_the_histories_per_trial_files_would(tmp_path):
    from fasttune.schedulers import ASHAScheduler
    from fasttune.search import BasicVariantGenerator
    from fasttune.simulation import Simulation, learning_curve_table, reference_trial_order

    table = learning_curve_table(40, seed=0, n_epochs=9)

    def sweep(name, **run_kwargs):
        config = tune.TuneConfig(
            metric="loss", mode="min", num_samples=6,
            scheduler=ASHAScheduler(time_attr="epoch", max_t=9, grace_period=1, reduction_factor=3),
            search_alg=BasicVariantGenerator(points_to_evaluate=reference_trial_order(table, 6, seed=0)))
        simulation = Simulation(table, num_workers=2, write_results=not run_kwargs)
        return fit(simulation, str(tmp_path), space=table.search_space, name=name, tune_config=config,
                   **run_kwargs)

    in_store = sweep("store", results_store="experiment")
    in_files = sweep("files")

    def histories(results):
        return sorted((r.metrics["trial_id"][-5:], list(r.metrics_dataframe["loss"])) for r in results)

    assert histories(in_store) == histories(in_files)
    assert histories(tune.ResultGrid.from_path(str(tmp_path / "store"))) == histories(in_files)
    assert sorted(os.listdir(tmp_path / "store")) == sorted(
        ["results", "tuner.msgpack"] + [n for n in os.listdir(tmp_path / "store") if n.startswith("experiment_state")])
