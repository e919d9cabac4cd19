"""Reading back a sweep whose trials have no result files (a simulated sweep writes none):
each reader gives such a trial the last result its newest snapshot record keeps.

``ResultGrid.from_path`` (and ``Tuner.restore(...).get_results()``, a URI's local copy),
``ExperimentAnalysis`` and ``fasttune ls`` agree with what ``fit()`` returned; result files,
then the experiment's results store, win over the snapshot; nothing is unpickled, and a
damaged snapshot still leaves the result files read.  No Ray: every sweep is simulated.
"""
import glob
import json
import logging
import os
import re
import shutil

import msgpack
import pytest

import fasttune as tune
from fasttune import _corelib as core
from fasttune._serialization import pack
from fasttune.cli import main
from fasttune.execution._experiment_state import (
    RECORD_FIELDS, CorruptExperimentState, load_latest, read_file, snapshot_paths, write_file)
from fasttune.schedulers import ASHAScheduler
from fasttune.search import BasicVariantGenerator
from fasttune.simulation import Simulation, learning_curve_table, reference_trial_order

N_TRIALS = 12
CONFIG_FIELD, LAST_RESULT_FIELD = (RECORD_FIELDS.index(name) for name in ("config", "last_result"))
SENTINEL_LOSS = 999.0  # a last result no trial of these sweeps reports


class Planted:
    """What an attacker leaves in a file: unpickling it makes the directory ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker, 0o777, True))


@pytest.fixture(scope="module")
def table():
    return learning_curve_table(60, seed=0, n_epochs=9)


def sweep(table, storage, name, **run_kwargs):
    simulation_kwargs = {key: run_kwargs.pop(key) for key in ("write_results",) if key in run_kwargs}
    tuner = tune.Tuner(
        Simulation(table, num_workers=3, **simulation_kwargs), param_space=table.search_space,
        tune_config=tune.TuneConfig(
            metric="loss", mode="min", num_samples=N_TRIALS,
            scheduler=ASHAScheduler(time_attr="epoch", max_t=9, grace_period=1, reduction_factor=3),
            search_alg=BasicVariantGenerator(points_to_evaluate=reference_trial_order(table, N_TRIALS, seed=0),
                                             random_state=0)),
        run_config=tune.RunConfig(storage_path=str(storage), name=name, verbose=0, **run_kwargs))
    return tuner.fit()


@pytest.fixture(scope="module")
def quiet(table, tmp_path_factory):
    """A simulated sweep with no file per trial: (fit's grid, its experiment directory)."""
    grid = sweep(table, tmp_path_factory.mktemp("quiet"), "quiet")
    assert not any(os.path.exists(result.path) for result in grid)
    return grid, grid.experiment_path


@pytest.fixture(scope="module")
def written(table, tmp_path_factory):
    """The same sweep, writing each trial's result files."""
    grid = sweep(table, tmp_path_factory.mktemp("written"), "written", write_results=True)
    return grid, grid.experiment_path


def copy_of(experiment, tmp_path):
    path = str(tmp_path / os.path.basename(experiment))
    shutil.copytree(experiment, path)
    return path


def edit_records(experiment, change):
    """Let ``change(row, record, table, keysets)`` edit each trial record that holds a last
    result in every snapshot (decoded without an extension hook: pickles stay as they
    are), and write the snapshots back."""
    for path in snapshot_paths(experiment):
        state = msgpack.unpackb(read_file(path), raw=False, strict_map_key=False)
        # (A snapshot with record segments keeps most records in them: editing only the
        # ones it holds itself would leave the test reading unedited records.)
        assert state.get("segments") is None, f"{path} keeps its records in segments: edit_records cannot edit them"
        table = core.TrialTable.from_snapshot(state["table"])
        for row, packed in enumerate(state["trials"]):
            record = msgpack.unpackb(packed, raw=False, strict_map_key=False)
            if record[LAST_RESULT_FIELD] is None:
                continue  # not started in an older snapshot
            change(row, record, table, state["keysets"])
            state["trials"][row] = msgpack.packb(record, use_bin_type=True)
        state["table"] = table.snapshot()
        write_file(path, msgpack.packb(state, use_bin_type=True))


def set_last_loss(value):
    def change(row, record, table, keysets):
        keyset, values = record[LAST_RESULT_FIELD]
        values[keysets[keyset].index("loss")] = value
    return change


def by_name(results):
    return {os.path.basename(result.path): result for result in results}


def assert_same_results(read, fitted):
    """``read`` (a grid read from the directory) holds exactly ``fitted``'s trials, by directory name."""
    read, fitted = by_name(read), by_name(fitted)
    assert sorted(read) == sorted(fitted) and len(read) == N_TRIALS
    for name, result in fitted.items():
        assert read[name].metrics == result.metrics and read[name].metrics["loss"] < SENTINEL_LOSS
        assert read[name].config == result.config and read[name].error is None


def test_from_path_gives_each_trial_the_last_result_fit_returned(quiet):
    grid, experiment = quiet
    read = tune.ResultGrid.from_path(experiment)
    # The same trials, with the same paths, configs and last results, in directory-name order.
    assert [os.path.basename(r.path) for r in read] == sorted(os.path.basename(r.path) for r in grid)
    fitted = {result.path: result for result in grid}
    for result in read:
        assert result.metrics == fitted[result.path].metrics and result.config == fitted[result.path].config
        assert result.error is None and result.metrics_dataframe is None  # no history kept, as in fit()'s
    assert read.num_terminated == grid.num_terminated == N_TRIALS
    assert read.get_best_result("loss", "min").path == grid.get_best_result().path
    # The whole-history scopes see the one result kept.
    assert read.get_best_result("loss", "min", scope="all").path == grid.get_best_result().path
    restored = tune.Tuner.restore(experiment, trainable=Simulation(learning_curve_table(60, seed=0, n_epochs=9)))
    restored_grid = restored.get_results()
    assert restored_grid.get_best_result().path == grid.get_best_result().path  # the Tuner's metric and mode
    assert_same_results(restored_grid, grid)
    # A URI: the grid of the local copy, which holds the snapshot too.
    assert_same_results(tune.ResultGrid.from_path("file://" + experiment), grid)


def test_analysis_ls_and_plot_give_each_trial_its_last_result_as_its_one_row(quiet, capsys, tmp_path):
    grid, experiment = quiet
    analysis = tune.ExperimentAnalysis(experiment, default_metric="loss", default_mode="min")
    assert analysis.best_config == grid.get_best_result().config
    frame = analysis.dataframe()
    assert sorted(frame["loss"]) == sorted(r.metrics["loss"] for r in grid) and len(frame) == N_TRIALS
    assert [len(f) for f in analysis.trial_dataframes.values()] == [1] * N_TRIALS
    assert main(["ls", experiment, "--format", "json"]) == 0
    listed = {row["trial_id"]: row for row in json.loads(capsys.readouterr().out)}
    assert {trial_id: (row["loss"], row["best:loss"], row["status"]) for trial_id, row in listed.items()} == {
        r.metrics["trial_id"]: (r.metrics["loss"], r.metrics["loss"], "TERMINATED") for r in grid}
    image = tmp_path / "curves.png"
    assert main(["plot", experiment, "-o", str(image)]) == 0
    assert image.read_bytes().startswith(b"\x89PNG")


def test_result_files_win_over_the_snapshot(written, tmp_path):
    grid, experiment = written
    path = copy_of(experiment, tmp_path)
    edit_records(path, set_last_loss(SENTINEL_LOSS))
    assert_same_results(tune.ResultGrid.from_path(path), grid)


def test_the_results_store_wins_over_the_snapshot(table, tmp_path):
    grid = sweep(table, tmp_path, "stored", results_store="experiment", write_results=True)
    assert os.path.isdir(os.path.join(grid.experiment_path, "results"))
    edit_records(grid.experiment_path, set_last_loss(SENTINEL_LOSS))
    assert_same_results(tune.ResultGrid.from_path(grid.experiment_path), grid)


def test_a_trial_whose_files_hold_no_result_gets_the_snapshots_last_result(written, tmp_path, capsys):
    grid, experiment = written
    path = copy_of(experiment, tmp_path)
    emptied = sorted(by_name(grid))[3]
    for name in ("result.json", "progress.csv"):
        os.remove(os.path.join(path, emptied, name))
    with open(os.path.join(path, emptied, "params.json")) as f:
        params = json.load(f)
    read = by_name(tune.ResultGrid.from_path(path))
    fitted = by_name(grid)[emptied]
    assert read[emptied].metrics == fitted.metrics and read[emptied].config == params == fitted.config
    assert read[emptied].metrics_dataframe is None
    assert main(["ls", path, "--format", "json", "--columns", "path,loss"]) == 0
    listed = {os.path.basename(row["path"]): row["loss"] for row in json.loads(capsys.readouterr().out)}
    assert listed == {name: result.metrics["loss"] for name, result in by_name(grid).items()}


@pytest.mark.parametrize("experiment_kind", ["quiet", "written"])
def test_the_statuses_are_the_records(experiment_kind, request, tmp_path):
    """With result files or without, a trial's status is its record's (a running trial whose
    files go on is not finished), in from_path's grid and in ExperimentAnalysis'."""
    grid, experiment = request.getfixturevalue(experiment_kind)
    path = copy_of(experiment, tmp_path)
    running = sorted(by_name(grid))[6]

    def interrupt(row, record, table, keysets):
        if record[0] == by_name(grid)[running].metrics["trial_id"]:  # as if interrupted after a restart
            for status in (core.PENDING, core.RUNNING):  # the transitions the table allows
                table.set_status(row, status)

    edit_records(path, interrupt)
    for read in (tune.ResultGrid.from_path(path), tune.ExperimentAnalysis(path).result_grid):
        # The running trial is not counted as finished.
        assert read.num_errors == 0 and read.num_terminated == N_TRIALS - 1
        assert by_name(read)[running]._status == "RUNNING"
        assert by_name(read)[running].metrics == by_name(grid)[running].metrics


def test_a_failed_trial_without_its_error_file_has_the_error_fit_returned(table, tmp_path):
    # A config the table does not hold fails its trial (a real failure, not an edited record).
    points = reference_trial_order(table, N_TRIALS, seed=0)
    points[4] = dict(points[4], lr=12345.0)
    fitted = tune.Tuner(
        Simulation(table), param_space=table.search_space,
        tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=N_TRIALS,
                                    search_alg=BasicVariantGenerator(points_to_evaluate=points, random_state=0)),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="failing", verbose=0)).fit()
    (failed,) = [result for result in fitted if result.error is not None]
    # Its directory holds only its error.txt: without it, the error is the snapshot's.
    assert sorted(os.listdir(failed.path)) == ["error.txt"]
    shutil.rmtree(failed.path)
    for grid in (tune.ResultGrid.from_path(fitted.experiment_path),
                 tune.ExperimentAnalysis(fitted.experiment_path).result_grid):
        read = by_name(grid)
        assert sorted(read) == sorted(by_name(fitted)) and fitted.num_errors == 1
        for name, result in by_name(fitted).items():
            assert read[name].metrics == result.metrics and read[name].config == result.config
            assert str(read[name].error) == str(result.error) and read[name]._status == result._status
        assert str(read[os.path.basename(failed.path)].error).startswith("Trial ")  # (not "None")


def test_a_pickled_object_in_a_last_result_is_a_placeholder_never_unpickled(quiet, tmp_path, capsys):
    grid, experiment = quiet
    path = copy_of(experiment, tmp_path)
    marker = str(tmp_path / "ran")
    planted = msgpack.unpackb(pack(Planted(marker)), raw=False)

    def plant(row, record, table, keysets):
        keyset, values = record[LAST_RESULT_FIELD]
        values[keysets[keyset].index("loss")] = planted

    edit_records(path, plant)
    read = tune.ResultGrid.from_path(path)
    analysis = tune.ExperimentAnalysis(path)
    assert main(["ls", path, "--format", "json"]) == 0
    listing = capsys.readouterr().out
    assert not os.path.exists(marker)
    shown = [repr(result.metrics["loss"]) for result in read] + [repr(t.last_result["loss"]) for t in analysis.trials]
    assert len(shown) == 2 * N_TRIALS
    assert all(s.startswith("<pickled object, not loaded (") and "refers to os.makedirs" in s for s in shown)
    listed = json.loads(listing)  # each placeholder as its text
    assert len(listed) == N_TRIALS and all("refers to os.makedirs" in row["loss"] for row in listed)


def test_a_damaged_snapshot_is_a_warning_and_the_result_files_are_read(written, tmp_path, caplog, capsys):
    grid, experiment = written
    path = copy_of(experiment, tmp_path)
    for snapshot in snapshot_paths(path):
        with open(snapshot, "r+b") as f:
            f.truncate(os.path.getsize(snapshot) // 2)
    with caplog.at_level(logging.WARNING):
        read = tune.ResultGrid.from_path(path)
    assert_same_results(read, grid)
    assert any("cannot be read" in record.getMessage() for record in caplog.records)
    analysis = tune.ExperimentAnalysis(path, default_metric="loss", default_mode="min")
    assert analysis.best_config == grid.get_best_result().config
    assert main(["ls", path, "--format", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == N_TRIALS


def test_a_last_result_kept_without_its_config_gets_the_trials_config(quiet, tmp_path):
    grid, experiment = quiet
    path = copy_of(experiment, tmp_path)

    def drop_config(row, record, table, keysets):
        keyset, values = record[LAST_RESULT_FIELD]
        keys = keysets[keyset]
        if "config" in keys:
            without = [key for key in keys if key != "config"]
            if without not in keysets:
                keysets.append(without)
            record[LAST_RESULT_FIELD] = [keysets.index(without),
                                         [value for key, value in zip(keys, values) if key != "config"]]

    edit_records(path, drop_config)
    # As fit()'s Result has them: the last result, and the config under "config".
    assert_same_results(tune.ResultGrid.from_path(path), grid)


def set_dirname(experiment, row, dirname, snapshots=None):
    """Name ``dirname`` as the directory of trial ``row`` in ``snapshots`` (default: all)."""
    for snapshot in snapshots or snapshot_paths(experiment):
        state = msgpack.unpackb(read_file(snapshot), raw=False, strict_map_key=False)
        assert state.get("segments") is None, f"{snapshot} keeps its directory names in segments too"
        state["dirnames"][row] = dirname
        write_file(snapshot, msgpack.packb(state, use_bin_type=True))


@pytest.mark.parametrize("dirname", ["../outside", "../outside/", 7, "", ".", "..", "a\0b", None])
def test_a_snapshot_naming_no_plain_trial_directory_cannot_be_read_by_any_reader(written, tmp_path, caplog, dirname):
    grid, experiment = written
    path = copy_of(experiment, tmp_path)
    # What a path out of the experiment would read.
    os.makedirs(tmp_path / "outside")
    (tmp_path / "outside" / "result.json").write_text(json.dumps({"loss": SENTINEL_LOSS, "trial_id": "out"}) + "\n")
    newest = snapshot_paths(path)[0]
    set_dirname(path, 0, dirname)
    with caplog.at_level(logging.WARNING):
        read = tune.ResultGrid.from_path(path)
        analysis = tune.ExperimentAnalysis(path, default_metric="loss", default_mode="min")
        frames = analysis.trial_dataframes
    assert f"names the trial directory {dirname!r}" in caplog.text and os.path.basename(newest) in caplog.text
    assert_same_results(read, grid)  # the trials' result files, read all the same
    assert len(frames) == N_TRIALS and all(SENTINEL_LOSS not in list(frame["loss"]) for frame in frames.values())
    assert all(os.path.dirname(trial.path) == path for trial in analysis.trials)
    with pytest.raises(CorruptExperimentState, match=os.path.basename(newest)):
        load_latest(path)
    # A restore is held to the same rule.
    with pytest.raises(CorruptExperimentState, match=f"names the trial directory {re.escape(repr(dirname))}"):
        tune.Tuner.restore(path, trainable=Simulation(learning_curve_table(60, seed=0, n_epochs=9))).fit()


@pytest.mark.parametrize("as_what", ["map", "str"])
def test_trial_directory_names_that_are_not_a_list_make_the_snapshot_unreadable(written, tmp_path, as_what):
    """A map of names (its keys) or a string (its characters) would be iterated as names
    without the check a list gets: "../outside" as a key, "/" as a character."""
    grid, experiment = written
    path = copy_of(experiment, tmp_path)
    for snapshot in snapshot_paths(path):
        state = msgpack.unpackb(read_file(snapshot), raw=False, strict_map_key=False)
        names = ["../outside"] + state["dirnames"][1:]
        state["dirnames"] = {name: 0 for name in names} if as_what == "map" else "/" * len(names)
        write_file(snapshot, msgpack.packb(state, use_bin_type=True))
    kind = "dict" if as_what == "map" else "str"
    with pytest.raises(CorruptExperimentState, match=f"trial directory names are a {kind}, not a list"):
        load_latest(path)
    read = tune.ResultGrid.from_path(path)
    assert_same_results(read, grid)  # the trials' result files, read all the same
    assert all(os.path.dirname(result.path) == path for result in read)


def test_a_newest_snapshot_naming_no_plain_trial_directory_falls_back_to_the_one_before(quiet, tmp_path, caplog):
    grid, experiment = quiet
    path = copy_of(experiment, tmp_path)
    newest, before = snapshot_paths(path)[:2]
    set_dirname(path, 0, "../outside", [newest])
    with caplog.at_level(logging.WARNING):
        assert load_latest(path)[1] == before
    assert "names the trial directory '../outside'" in caplog.text and os.path.basename(newest) in caplog.text


def test_a_snapshot_naming_a_file_as_a_trial_directory_leaves_that_trial_out(quiet, tmp_path, caplog, capsys):
    grid, experiment = quiet
    path = copy_of(experiment, tmp_path)
    assert os.path.isfile(os.path.join(path, "tuner.msgpack"))
    state = msgpack.unpackb(read_file(snapshot_paths(path)[0]), raw=False, strict_map_key=False)
    left_out = state["dirnames"][0]
    set_dirname(path, 0, "tuner.msgpack")
    kept = {name: result for name, result in by_name(grid).items() if name != left_out}
    restored = tune.Tuner.restore(path, trainable=Simulation(learning_curve_table(60, seed=0, n_epochs=9)))
    with caplog.at_level(logging.WARNING):
        grids = [tune.ResultGrid.from_path(path), restored.get_results()]
    # A restore refuses it (it must not drop a trial), and leaves the file as it was.
    before = read_file(os.path.join(path, "tuner.msgpack"))
    with pytest.raises(CorruptExperimentState, match="row 0 names the trial directory 'tuner.msgpack', which is a file"):
        restored.fit()
    assert read_file(os.path.join(path, "tuner.msgpack")) == before
    with caplog.at_level(logging.WARNING):
        analysis = tune.ExperimentAnalysis(path, default_metric="loss", default_mode="min")
        assert main(["ls", path, "--format", "json", "--columns", "path,loss"]) == 0
    for read in grids:
        assert {name: (r.metrics, r.config) for name, r in by_name(read).items()} == {
            name: (r.metrics, r.config) for name, r in kept.items()}
    assert sorted(os.path.basename(t.path) for t in analysis.trials) == sorted(kept)
    assert len(analysis.trial_dataframes) == N_TRIALS - 1
    listed = {os.path.basename(row["path"]): row["loss"] for row in json.loads(capsys.readouterr().out)}
    assert listed == {name: result.metrics["loss"] for name, result in kept.items()}
    assert "trial tuner.msgpack is left out: its directory name is a file of the experiment" in caplog.text


def test_a_broken_link_where_a_trial_directory_was_does_not_refuse_a_restore(written, tmp_path):
    """Only a file named as a trial directory is refused: a dangling link there (the trial's
    files moved away) is no file of the experiment's, and the finished trial stays as it was."""
    grid, experiment = written
    path = copy_of(experiment, tmp_path)
    moved = sorted(by_name(grid))[0]
    shutil.rmtree(os.path.join(path, moved))
    os.symlink(str(tmp_path / "gone"), os.path.join(path, moved))
    restored = tune.Tuner.restore(path, trainable=Simulation(learning_curve_table(60, seed=0, n_epochs=9))).fit()
    assert {name: r.metrics for name, r in by_name(restored).items()} == {
        name: r.metrics for name, r in by_name(grid).items()}


def truncate_record(record):
    del record[5:]


def config_not_a_dict(record):
    record[CONFIG_FIELD] = [["lr", 0.1]]  # (a list dict() would take)


@pytest.mark.parametrize("damage, problem", [(truncate_record, "its record cannot be read"),
                                             (config_not_a_dict, "its config is a list, not a dict")])
def test_one_bad_record_leaves_out_its_trial_alone(quiet, tmp_path, caplog, capsys, damage, problem):
    grid, experiment = quiet
    path = copy_of(experiment, tmp_path)
    bad = sorted(by_name(grid))[2]
    bad_id = by_name(grid)[bad].metrics["trial_id"]

    def change(row, record, table, keysets):
        if record[0] == bad_id:
            damage(record)

    edit_records(path, change)
    kept = {name: result for name, result in by_name(grid).items() if name != bad}
    with caplog.at_level(logging.WARNING):
        read = tune.ResultGrid.from_path(path)
        analysis = tune.ExperimentAnalysis(path)
        assert main(["ls", path, "--format", "json", "--columns", "path,loss"]) == 0
    assert {name: (r.metrics, r.config) for name, r in by_name(read).items()} == {
        name: (r.metrics, r.config) for name, r in kept.items()}
    assert sorted(t.trial_id for t in analysis.trials) == sorted(r.metrics["trial_id"] for r in kept.values())
    listed = {os.path.basename(row["path"]): row["loss"] for row in json.loads(capsys.readouterr().out)}
    assert listed == {name: result.metrics["loss"] for name, result in kept.items()}
    assert f"trial {bad} is left out: " in caplog.text and problem in caplog.text
    left_out = [r.getMessage() for r in caplog.records if "is left out" in r.getMessage()]
    assert len(left_out) == 3  # from_path, the analysis and ls: each says it once
    assert all(message.count(bad) == 1 and message.count("experiment_state-") == 1 for message in left_out)


def test_a_sweep_with_record_segments_reads_back_as_fit_returned_it(tmp_path):
    n_trials = 2_100  # over the 2,000 records a snapshot moves into a segment
    table = learning_curve_table(60, seed=1, n_epochs=3)
    fitted = tune.Tuner(
        Simulation(table), param_space=table.search_space,
        tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=n_trials,
                                    search_alg=BasicVariantGenerator(random_state=0)),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="segmented", verbose=0)).fit()
    assert glob.glob(os.path.join(fitted.experiment_path, "experiment_records-*.msgpack"))
    read = by_name(tune.ResultGrid.from_path(fitted.experiment_path))
    fitted = by_name(fitted)
    assert len(read) == len(fitted) == n_trials
    assert all(read[name].metrics == result.metrics and read[name].config == result.config
               and read[name]._status == result._status and read[name].error is None
               for name, result in fitted.items())
    with pytest.raises(AssertionError, match="segments"):  # the helpers refuse to edit what they cannot
        edit_records(os.path.dirname(next(iter(read.values())).path), set_last_loss(SENTINEL_LOSS))
