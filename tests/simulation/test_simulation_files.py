"""What a simulated sweep writes: by default no file per trial (the ResultGrid holds each
trial's last result); with ``Simulation(write_results=True)`` the files of a real run, which
``fasttune ls`` and ``plot`` read."""
import json
import os

import pytest

import fasttune as tune
from fasttune.cli import main
from fasttune.schedulers import ASHAScheduler
from fasttune.search import BasicVariantGenerator
from fasttune.simulation import Simulation, learning_curve_table, reference_trial_order
from fasttune_testing import fit

N_TRIALS = 6


@pytest.fixture(scope="module")
def table():
    return learning_curve_table(40, seed=0, n_epochs=9)


def sweep(table, storage, name, **simulation_kwargs):
    config = tune.TuneConfig(
        metric="loss", mode="min", num_samples=N_TRIALS,
        scheduler=ASHAScheduler(time_attr="epoch", max_t=9, grace_period=1, reduction_factor=3),
        search_alg=BasicVariantGenerator(points_to_evaluate=reference_trial_order(table, N_TRIALS, seed=0)))
    return fit(Simulation(table, num_workers=2, **simulation_kwargs), str(storage), space=table.search_space,
               name=name, tune_config=config)


def files_under(path):
    return sorted(os.path.relpath(os.path.join(folder, name), path)
                  for folder, _, names in os.walk(path) for name in names)


def test_by_default_no_file_is_written_per_trial_and_the_grid_holds_the_last_results(table, tmp_path):
    grid = sweep(table, tmp_path, "quiet")
    written = sweep(table, tmp_path, "written", write_results=True)
    experiment = os.path.join(tmp_path, "quiet")
    assert not any(os.path.exists(result.path) for result in grid)  # not even a trial directory
    # The experiment's own files only: the Tuner's settings and the snapshot restore reads.
    assert all(os.sep not in name for name in files_under(experiment))
    assert {name for name in files_under(experiment)} == {
        name for name in files_under(os.path.join(tmp_path, "written")) if os.sep not in name}
    # The same sweep, so the same last results, best trial and table of results.
    def last(results):
        return [{key: r.metrics[key] for key in ("loss", "epoch", "training_iteration", "time_total_s")} for r in results]

    assert last(grid) == last(written) and len(grid) == N_TRIALS and not grid.errors
    assert grid.get_best_result().config == written.get_best_result().config
    assert grid.get_dataframe()["loss"].tolist() == written.get_dataframe()["loss"].tolist()


def test_write_results_writes_the_files_of_a_real_run_which_ls_reads(table, tmp_path, capsys):
    grid = sweep(table, tmp_path, "written", write_results=True)
    for result in grid:
        names = set(os.listdir(result.path))
        assert {"params.json", "result.json", "progress.csv"} <= names
        with open(os.path.join(result.path, "result.json")) as f:
            rows = [json.loads(line) for line in f]
        assert rows[-1]["loss"] == result.metrics["loss"]
        assert [row["epoch"] for row in rows] == list(range(1, result.metrics["epoch"] + 1))
        with open(os.path.join(result.path, "params.json")) as f:
            assert json.load(f) == result.config
    assert main(["ls", os.path.join(tmp_path, "written"), "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert sorted(row["training_iteration"] for row in listed) == sorted(
        r.metrics["training_iteration"] for r in grid)


@pytest.mark.parametrize("logger", ["JsonLoggerCallback", "CSVLoggerCallback", "TBXLoggerCallback"])
def test_a_file_logger_given_to_a_simulation_without_files_is_refused_with_the_way_out(table, tmp_path, logger):
    import fasttune.logger as loggers

    def config():
        return tune.TuneConfig(metric="loss", mode="min", num_samples=2,
                               search_alg=BasicVariantGenerator(points_to_evaluate=reference_trial_order(table, 2)))

    with pytest.raises(ValueError, match=r"writes trial files.*Simulation\(\.\.\., write_results=True\)"):
        fit(Simulation(table), str(tmp_path), space=table.search_space, name="refused", tune_config=config(),
            callbacks=[getattr(loggers, logger)()])
    grid = fit(Simulation(table, write_results=True), str(tmp_path), space=table.search_space, name="kept",
               tune_config=config(), callbacks=[getattr(loggers, logger)()])
    assert len(grid) == 2 and all(os.path.isdir(result.path) for result in grid)


def test_a_sweep_without_result_files_renders_no_config_for_its_rows(table, tmp_path, monkeypatch):
    # Rendering a config for rows no file keeps is work for nothing; with files, each trial's is
    # rendered once (and its result.json carries it).
    from fasttune.execution import _trial_state

    rendered = []
    original = _trial_state.config_to_json
    monkeypatch.setattr(_trial_state, "config_to_json", lambda config: rendered.append(config) or original(config))
    sweep(table, tmp_path, "quiet")
    assert rendered == []
    grid = sweep(table, tmp_path, "written", write_results=True)
    assert len(rendered) == N_TRIALS
    for result in grid:
        with open(os.path.join(result.path, "result.json")) as f:
            assert all(json.loads(line)["config"] == result.config for line in f)
