"""Reading an experiment never runs code, and damage stays with what it is in.

``fasttune ls`` / ``fasttune plot`` (real subprocesses), ``ResultGrid.from_path``,
``ExperimentAnalysis`` and ``Tuner.can_restore`` read a real experiment whose snapshots
and Tuner file hold crafted pickles: none of them may unpickle one (unpickling it makes a
marker directory), while ``Tuner.restore`` and the restore's loader do, as documented.
Crafted nesting (msgpack extension entries, JSON) is a clear error or warning naming the
file, never a crash; one trial's bad result line leaves the other trials whole.
"""
import json
import logging
import os
import shutil
import subprocess
import sys

import msgpack
import pytest

import fasttune as tune
from fasttune._serialization import DataOnlyLoader, Loader, PickledObject, pack
from fasttune.execution._experiment_state import (
    TUNER_FILE,
    CorruptExperimentState,
    load_latest,
    read_file,
    snapshot_paths,
    write_file,
)
from fasttune_testing import fit

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_FIELD = 1  # a trial record's config (RECORD_FIELDS)
DEEP = 200  # extension entries nested this deep overflowed the C stack (exit 139)


class Planted:
    """What an attacker leaves in a file: unpickling it makes the directory ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker, 0o777, True))  # exist_ok: planted in several places


def trainable(config):
    for i in range(3):
        tune.report({"loss": config["x"] * (3 - i), "nested": {"step": i}})


@pytest.fixture(scope="module")
def experiment(ray_session, tmp_path_factory):
    storage = str(tmp_path_factory.mktemp("reading"))
    grid = fit(trainable, storage, name="exp", space={"x": tune.grid_search([1, 2, 3])},
               tune_config=tune.TuneConfig(metric="loss", mode="min"))
    assert grid.num_errors == 0 and len(grid) == 3
    return grid.experiment_path


@pytest.fixture
def copy(experiment, tmp_path):
    path = str(tmp_path / "exp")
    shutil.copytree(experiment, path)
    return path


def rewrite(path, change):
    """Decode the state file ``path`` without any extension hook (pickles stay bytes),
    let ``change`` edit it, and write it back with a valid header."""
    doc = msgpack.unpackb(read_file(path), raw=False, strict_map_key=False)
    change(doc)
    write_file(path, msgpack.packb(doc, use_bin_type=True))


def as_entry(value):
    """``value`` as pack() writes it, as one msgpack entry to put into a decoded state."""
    return msgpack.unpackb(pack(value), raw=False)


def deep_tuple():
    data = msgpack.packb([1])
    for _ in range(DEEP):
        data = msgpack.packb([msgpack.ExtType(2, data)])  # 2: a tuple
    return msgpack.ExtType(2, data)


def trial_dirs(path):
    return sorted(os.path.join(path, n) for n in os.listdir(path) if os.path.isfile(os.path.join(path, n, "params.json")))


def fasttune_cli(*args):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "fasttune.cli", *args], capture_output=True, text=True, env=env,
                          timeout=120)


@pytest.fixture
def planted(copy, tmp_path):
    """The experiment with a crafted pickle in each snapshot's callbacks, stopper and first
    trial's config, and in the Tuner file's callbacks; the markers each would make."""
    markers = {"snapshot": str(tmp_path / "ran_from_snapshot"), "tuner": str(tmp_path / "ran_from_tuner_file")}

    def plant_in_snapshot(state):
        state["callbacks"] = [as_entry(Planted(markers["snapshot"]))]
        state["stopper"] = as_entry(Planted(markers["snapshot"]))
        record = msgpack.unpackb(state["trials"][0], raw=False, strict_map_key=False)
        record[CONFIG_FIELD]["planted"] = as_entry(Planted(markers["snapshot"]))
        state["trials"][0] = msgpack.packb(record, use_bin_type=True)

    def plant_in_tuner_file(doc):
        doc["fields"]["run_config.callbacks"] = pack(Planted(markers["tuner"]))

    assert len(snapshot_paths(copy)) == 2
    for path in snapshot_paths(copy):
        rewrite(path, plant_in_snapshot)
    rewrite(os.path.join(copy, TUNER_FILE), plant_in_tuner_file)
    return copy, markers


def assert_nothing_ran(markers):
    assert [m for m in markers.values() if os.path.exists(m)] == []


@pytest.mark.ray
def test_ls_and_plot_never_unpickle(planted, tmp_path):
    path, markers = planted
    listing = fasttune_cli("ls", path, "--format", "json")
    assert listing.returncode == 0, listing.stderr
    rows = json.loads(listing.stdout)
    assert sorted(r["config/x"] for r in rows) == [1, 2, 3] and {r["status"] for r in rows} == {"TERMINATED"}
    assert all(r["training_iteration"] == 3 for r in rows)
    image = tmp_path / "curves.png"
    plotted = fasttune_cli("plot", path, "-o", str(image))
    assert plotted.returncode == 0, plotted.stderr
    assert image.read_bytes().startswith(b"\x89PNG")
    assert_nothing_ran(markers)


@pytest.mark.ray
def test_analysis_readers_never_unpickle_and_show_what_they_left(planted):
    path, markers = planted
    grid = tune.ResultGrid.from_path(path)
    analysis = tune.ExperimentAnalysis(path, default_metric="loss", default_mode="min")
    assert tune.Tuner.can_restore(path)
    state, _ = load_latest(path)
    assert_nothing_ran(markers)
    assert sorted(r.config["x"] for r in grid) == [1, 2, 3]
    assert len(analysis.trials) == 3 and analysis.best_config["x"] == 1
    (config,) = [t.config for t in analysis.trials if "planted" in t.config]
    # A placeholder that says what it is, named from the pickle's opcodes (none run).
    shown = repr(config["planted"])
    assert shown.startswith("<pickled object, not loaded (") and "refers to os.makedirs" in shown
    assert "refers to os.makedirs" in repr(state["callbacks"][0]) and "refers to os.makedirs" in repr(state["stopper"])


@pytest.mark.ray
def test_restore_does_unpickle_what_readers_leave_alone(planted):
    path, markers = planted
    load_latest(path, Loader())  # the loader TrialRunner.resume reads the snapshot with
    assert os.path.isdir(markers["snapshot"]) and not os.path.exists(markers["tuner"])
    tune.Tuner.restore(path, trainable=trainable)
    assert os.path.isdir(markers["tuner"])


@pytest.mark.ray
def test_deeply_nested_extension_entries_are_a_clear_error_not_a_crash(copy):
    def nest(state):
        state["callbacks"] = [deep_tuple()]

    for path in snapshot_paths(copy):
        rewrite(path, nest)
    rewrite(os.path.join(copy, TUNER_FILE), lambda doc: doc["fields"].update(param_space=msgpack.packb(deep_tuple())))
    listing = fasttune_cli("ls", copy, "--format", "json")
    assert listing.returncode == 0, listing.stderr
    assert "Traceback" not in listing.stderr
    assert os.path.basename(snapshot_paths(copy)[0]) in listing.stderr
    assert "nest more than 32 deep" in listing.stderr and "statuses are guessed from their files" in listing.stderr
    assert sorted(r["config/x"] for r in json.loads(listing.stdout)) == [1, 2, 3]
    with pytest.raises(CorruptExperimentState, match="experiment_state-.*nest more than 32 deep"):
        load_latest(copy)
    with pytest.raises(CorruptExperimentState, match=f"{TUNER_FILE}: the setting param_space .*nest more than 32 deep"):
        tune.Tuner.restore(copy, trainable=trainable)
    analysis = tune.ExperimentAnalysis(copy, default_metric="loss", default_mode="min")
    assert sorted(t.config["x"] for t in analysis.trials) == [1, 2, 3]


@pytest.mark.ray
def test_deeply_nested_json_is_a_warning_naming_the_file_not_a_traceback(copy, caplog):
    first, second, _ = trial_dirs(copy)
    result_path = os.path.join(first, "result.json")
    with open(result_path) as f:
        lines = f.readlines()
    lines.insert(1, '{"a": ' * 5000 + "1" + "}" * 5000 + "\n")
    with open(result_path, "w") as f:
        f.writelines(lines)
    params_path = os.path.join(second, "params.json")
    with open(params_path, "w") as f:
        f.write("[" * 5000 + "]" * 5000)
    listing = fasttune_cli("ls", copy, "--format", "json", "--columns", "path,training_iteration")
    assert listing.returncode == 0, listing.stderr
    assert "Traceback" not in listing.stderr
    assert f"{result_path}, line 2, is nested more than 256 levels deep" in listing.stderr
    rows = {r["path"]: r for r in json.loads(listing.stdout)}
    assert [rows[d]["training_iteration"] for d in trial_dirs(copy)] == [1, 3, 3]
    with caplog.at_level(logging.WARNING):
        grid = tune.ResultGrid.from_path(copy)
    assert f"{params_path} is not valid JSON (nested more than 256 levels deep)" in caplog.text
    assert [r.metrics["training_iteration"] for r in grid] == [1, 3, 3] and grid[1].config["x"] == 2
    with pytest.raises(ValueError, match=f"{params_path} is not valid JSON \\(nested more than 256 levels deep\\)"):
        tune.Result.from_path(second)


def last_iterations(reader, path):
    """Each trial's last training_iteration by directory, and the warnings logged, as
    ``reader`` (fasttune ls, ResultGrid.from_path or ExperimentAnalysis) reads ``path``."""
    if reader == "ls":
        listing = fasttune_cli("ls", path, "--format", "json", "--columns", "path,training_iteration")
        assert listing.returncode == 0, listing.stderr
        return {r["path"]: r["training_iteration"] for r in json.loads(listing.stdout)}, listing.stderr
    if reader == "ResultGrid.from_path":
        return {r.path: r.metrics["training_iteration"] for r in tune.ResultGrid.from_path(path)}, None
    analysis = tune.ExperimentAnalysis(path, default_metric="loss", default_mode="min")
    return {t.path: t.last_result["training_iteration"] for t in analysis.trials}, None


@pytest.mark.ray
@pytest.mark.parametrize("reader", ["ls", "ResultGrid.from_path", "ExperimentAnalysis"])
def test_one_bad_result_line_fails_only_that_trial_and_names_file_and_line(copy, caplog, reader):
    bad, *good = trial_dirs(copy)
    result_path = os.path.join(bad, "result.json")
    with open(result_path) as f:
        lines = f.readlines()
    assert len(lines) == 3
    with open(result_path, "w") as f:
        f.writelines([lines[0], "this is no JSON\n", *lines[1:]])
    with caplog.at_level(logging.WARNING):
        iterations, stderr = last_iterations(reader, copy)
    # The bad trial shows its results before the bad line; the others all of theirs.
    assert iterations == {bad: 1, good[0]: 3, good[1]: 3}
    warned = stderr if reader == "ls" else caplog.text
    assert warned.count(f"{result_path}, line 2, is not a JSON object") == 1


def test_deeply_nested_checkpoint_metadata_is_a_clear_error(tmp_path):
    (tmp_path / ".metadata.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="metadata.json' is not valid JSON"):
        tune.Checkpoint(str(tmp_path)).get_metadata()


def test_a_placeholder_names_what_it_can_of_damaged_pickle_bytes():
    data = pack([Planted("/nowhere")])
    placeholder = DataOnlyLoader().unpack(data)[0]
    assert placeholder.refers_to() == ["os.makedirs"]
    torn = PickledObject(placeholder.data[:-12])  # cut before the pickle's end: names what precedes
    assert torn.refers_to() == ["os.makedirs"] and repr(torn).startswith(f"<pickled object, not loaded ({len(torn.data)} bytes")


# Run with the recursion limit raised past the nesting: a parser that recursed through
# it would overflow the C stack (exit 139) instead of raising RecursionError.
DEEP_JSON_UNDER_A_HIGH_RECURSION_LIMIT = r"""
import json, logging, os, sys
sys.setrecursionlimit(10**6)
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
import fasttune as tune
from fasttune.logger._trial_files import TrialFiles
from fasttune.result import parse_json, read_json_lines

directory = sys.argv[1]
deep = "[" * 500_000 + "]" * 500_000
try:
    parse_json(deep)
except ValueError as exc:
    print("parse_json:", exc)
result_path = os.path.join(directory, "trial", "result.json")
os.makedirs(os.path.dirname(result_path))
with open(result_path, "w") as f:
    f.write('{"i": 1}\n' + deep + '\n{"i": 3}\n')
print("read_json_lines:", read_json_lines(result_path, on_bad_line="warn"))
with open(os.path.join(directory, ".metadata.json"), "w") as f:
    f.write(deep)
try:
    tune.Checkpoint(directory).get_metadata()
except ValueError as exc:
    print("get_metadata:", exc)
print("keep_whole_rows:", TrialFiles(write_csv=False).keep_whole_rows(os.path.dirname(result_path)))
"""


def test_deep_json_is_refused_before_parsing_whatever_the_recursion_limit(tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    ran = subprocess.run([sys.executable, "-c", DEEP_JSON_UNDER_A_HIGH_RECURSION_LIMIT, str(tmp_path)],
                         capture_output=True, text=True, env=env, timeout=120)
    assert ran.returncode == 0, (ran.returncode, ran.stderr[-2000:])
    result_path = tmp_path / "trial" / "result.json"
    assert ran.stdout.splitlines() == [
        "parse_json: nested more than 256 levels deep",
        "read_json_lines: [{'i': 1}]",
        f"get_metadata: Checkpoint metadata file '{tmp_path / '.metadata.json'}' is not valid JSON (nested more than "
        "256 levels deep); fix or delete it, then call set_metadata() again.",
        "keep_whole_rows: 1",
    ]
    assert ran.stderr.splitlines() == [
        f"WARNING {result_path}, line 2, is nested more than 256 levels deep; the results file is corrupt before its "
        "last line. Fix or remove that line. Read: the 1 results before it; the 2 lines from it on are left out."]
