"""Sweeps whose storage_path is in storage (a real S3 API: moto's server), on one machine:
what lands in the bucket, what is left locally, checkpoints in storage for function and
class trainables and for PBT's exploits, a restore from a driver that has nothing local,
``fasttune ls`` of the URI, clear errors before any trial when storage cannot be written,
and an upload that fails mid-sweep."""
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import uuid
from urllib.parse import unquote

import pytest
from pyarrow import fs as pyarrow_fs

import fasttune as tune
from fasttune import _storage as storage
from fasttune.cli import main
from fasttune.error import TuneError
from fasttune.schedulers import PopulationBasedTraining
from fasttune_testing import report_with_json_checkpoint, report_with_step_checkpoint, restored_json, restored_step
from restore_testing import wait_until_other_jobs_have_no_live_actors


pytestmark = pytest.mark.ray

TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ITERATIONS = 6  # a checkpoint at 2, 4 and 6: checkpoint_000000..2
X_VALUES = [1, 2, 3]
SNAPSHOT = re.compile(r"^experiment_state-\d+\.msgpack$")
TRIAL_FILES = {"params.json", "result.json", "progress.csv"}


# ---- trainables -----------------------------------------------------------------------
def train(config):
    """Reports ``score = x * step`` for steps 1..ITERATIONS, with a checkpoint holding the
    step every other step; resumes after its checkpoint's step.  Writes a file into its
    trial directory on the worker too (the node's scratch space: not synced, as
    SyncConfig(sync_artifacts=False) is the default, and removed when the trial ends)."""
    start = restored_step()
    for step in range(start + 1, ITERATIONS + 1):
        with open(os.path.join(tune.get_context().get_trial_dir(), "artifact.txt"), "a") as f:
            f.write(f"{step}\n")
        metrics = {"score": config["x"] * step, "step": step, "restored_from": start}
        if step % 2 == 0:
            report_with_step_checkpoint(metrics, step)
        else:
            tune.report(metrics)


def train_unless_marker_says_stop(config):
    """``train``, after leaving a marker file: proof that a trial started."""
    with open(config["marker"], "a") as f:
        f.write("started\n")
    train(config)


class Accumulator(tune.Trainable):
    """A class trainable adding ``x`` to its total each step; checkpoints hold the total."""

    def setup(self, config):
        self.total = 0

    def step(self):
        self.total += self.config["x"]
        return {"total": self.total, "done": self.iteration + 1 >= 4}

    def save_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "total"), "w") as f:
            f.write(str(self.total))

    def load_checkpoint(self, checkpoint):
        with open(os.path.join(checkpoint, "total")) as f:
            self.total = int(f.read())


# ---- helpers ----------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """This process's storage cache (the driver's staging copy, its downloaded
    checkpoints): empty at each test's start, so a test sees exactly what a sweep left."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("FASTTUNE_STORAGE_CACHE", str(cache))
    return cache


@pytest.fixture
def prefix(s3_bucket):
    """A prefix in the bucket no other test writes under."""
    return f"{s3_bucket}/sweeps-{uuid.uuid4().hex[:8]}"


def s3_uri(path, endpoint):
    return f"s3://{path}?endpoint_override={endpoint}&scheme=http"


def stored_tree(filesystem, path):
    """``{relative path: bytes}`` of every file below ``path`` on ``filesystem``."""
    tree = {}
    for info in filesystem.get_file_info(pyarrow_fs.FileSelector(path, recursive=True, allow_not_found=True)):
        if info.type == pyarrow_fs.FileType.File:
            with filesystem.open_input_stream(info.path) as f:
                tree[info.path[len(path) + 1:]] = f.read()
    return tree


def rows(data):
    return [json.loads(line) for line in data.decode().splitlines()]


def files_in(directory):
    """Relative paths of the files below ``directory`` ([] when it does not exist)."""
    return sorted(os.path.relpath(os.path.join(d, name), directory)
                  for d, _, names in os.walk(directory) for name in names)


def worker_scratch_files(location):
    """The files left in the scratch directory Ray's workers use for the experiment at
    ``location``; asked of a Ray worker, since its cache root is the one Ray's processes
    inherited, not this test's."""
    import ray

    def files_below_scratch(at):  # self-contained: workers cannot import this test module
        import os as worker_os

        from fasttune import _storage as worker_storage

        scratch = worker_storage.node_scratch(at)
        return sorted(worker_os.path.relpath(worker_os.path.join(d, name), scratch)
                      for d, _, names in worker_os.walk(scratch) for name in names)

    return ray.get(ray.remote(num_cpus=0)(files_below_scratch).remote(location))


def run_sweep(storage_path, trainable=train, space=None, **run_kwargs):
    run_kwargs.setdefault("checkpoint_config", tune.CheckpointConfig(num_to_keep=2))
    tuner = tune.Tuner(
        trainable,
        param_space=space if space is not None else {"x": tune.grid_search(X_VALUES)},
        tune_config=run_kwargs.pop("tune_config", tune.TuneConfig(metric="score", mode="max")),
        run_config=tune.RunConfig(name="exp", storage_path=storage_path, verbose=0, **run_kwargs))
    return tuner.fit()


def assert_sweep_in_storage(grid, filesystem, path, cache):
    """What the sweep of ``train`` over X_VALUES with num_to_keep=2 leaves: in storage
    at ``path`` on ``filesystem``, in the results, and on this machine."""
    tree = stored_tree(filesystem, path)
    top = {name for name in tree if "/" not in name}
    snapshots = {name for name in top if SNAPSHOT.match(name)}
    # One snapshot: the default sync period (300 s) is longer than the sweep, so only the
    # last sync, at the end, sent one, and it is the driver's newest.
    (snapshot,) = snapshots
    assert top == {"tuner.msgpack", snapshot}, sorted(top)
    staging = os.path.dirname(grid[0].path)
    assert snapshot == max(n for n in os.listdir(staging) if SNAPSHOT.match(n))
    assert tree[snapshot] == open(os.path.join(staging, snapshot), "rb").read()

    assert len(grid) == len(X_VALUES) and grid.num_errors == 0
    trial_dirs = {os.path.basename(r.path): r for r in grid}
    assert {name.split("/")[0] for name in tree if "/" in name} == set(trial_dirs)
    for name, result in trial_dirs.items():
        x = result.config["x"]
        files = {rel[len(name) + 1:] for rel in tree if rel.startswith(name + "/")}
        # Exactly the two newest checkpoints (steps 4 and 6); the first one was deleted.
        assert {f for f in files if f.startswith("checkpoint_")} == {
            "checkpoint_000001/step", "checkpoint_000002/step"}, sorted(files)
        # The trial's files (TensorBoard's too), no artifacts of the worker's.
        (events,) = [f for f in files if f.startswith("events.out.tfevents")]
        assert {f for f in files if not f.startswith("checkpoint_")} == TRIAL_FILES | {events}, sorted(files)
        assert tree[f"{name}/checkpoint_000001/step"] == b"4" and tree[f"{name}/checkpoint_000002/step"] == b"6"
        assert json.loads(tree[f"{name}/params.json"]) == {"x": x}
        history = rows(tree[f"{name}/result.json"])
        assert [r["training_iteration"] for r in history] == list(range(1, ITERATIONS + 1))
        assert [r["score"] for r in history] == [x * step for step in range(1, ITERATIONS + 1)]
        csv_lines = tree[f"{name}/progress.csv"].decode().splitlines()
        assert len(csv_lines) == ITERATIONS + 1  # a header and one row per iteration
        # The staging copy the driver wrote is what went up.
        for file in TRIAL_FILES:
            assert tree[f"{name}/{file}"] == open(os.path.join(result.path, file), "rb").read()

        # The result's checkpoints point into storage and open there.
        assert result.checkpoint.filesystem is not None
        assert [c.path for c, _ in result.best_checkpoints] == [
            grid_child(grid, name, "checkpoint_000001"), grid_child(grid, name, "checkpoint_000002")]
        assert result.checkpoint.path == grid_child(grid, name, "checkpoint_000002")
        with result.checkpoint.as_directory() as local:
            assert files_in(local) == ["step"] and open(os.path.join(local, "step")).read() == "6"
    # On this machine: the driver's staging copy and the checkpoints opened just now;
    # nothing in the workers' scratch directories.
    assert sorted(os.listdir(cache)) == ["checkpoints", "staging"]
    assert worker_scratch_files(storage.resolve(grid.experiment_path, grid_filesystem(grid))) == []


def grid_filesystem(grid):
    """The filesystem a grid's checkpoints are on when it was given explicitly (None for a URI)."""
    return None if storage.is_uri(grid.experiment_path) else grid[0].checkpoint.filesystem


def grid_child(grid, *parts):
    """The name in storage of ``parts`` below the grid's experiment."""
    path = grid.experiment_path
    return storage.join_uri(path, *parts) if storage.is_uri(path) else "/".join([path, *parts])


# ---- 1, 2, 6: a sweep in storage, named four ways; fasttune ls of the URI ----------------
def test_a_sweep_to_an_s3_uri_lands_there_whole(ray_session, prefix, s3_endpoint, s3_filesystem, private_cache,
                                                capsys):
    grid = run_sweep(s3_uri(prefix, s3_endpoint))
    assert grid.experiment_path == s3_uri(f"{prefix}/exp", s3_endpoint)
    assert_sweep_in_storage(grid, s3_filesystem, f"{prefix}/exp", private_cache)
    # Read back by its URI, the experiment is the same.
    again = tune.ResultGrid.from_path(grid.experiment_path)
    assert sorted((r.config["x"], r.metrics["score"], r.checkpoint.path) for r in again) == \
        sorted((r.config["x"], r.metrics["score"], r.checkpoint.path) for r in grid)
    # 6: fasttune ls lists its trials.
    capsys.readouterr()
    assert main(["ls", grid.experiment_path, "--format", "json", "--sort", "config/x"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(row["config/x"], row["status"], row["training_iteration"], row["score"]) for row in listed] == [
        (x, "TERMINATED", ITERATIONS, x * ITERATIONS) for x in X_VALUES]
    assert sorted(row["trial_id"] for row in listed) == sorted(r.metrics["trial_id"] for r in grid)


def test_a_sweep_with_an_experiment_level_store_keeps_it_in_storage_and_restores_from_there(
        ray_session, prefix, s3_endpoint, s3_filesystem, private_cache, capsys):
    uri = s3_uri(prefix, s3_endpoint)
    grid = run_sweep(uri, results_store="experiment")
    tree = stored_tree(s3_filesystem, f"{prefix}/exp")
    # The store and the checkpoints went up; no trial has a file of results.
    assert [n for n in tree if n.startswith("results/")] == ["results/000001.jsonl"]
    assert not [n for n in tree if n.split("/")[-1] in TRIAL_FILES or "tfevents" in n]
    for result in grid:
        name = os.path.basename(result.path)
        assert {n for n in tree if n.startswith(name + "/")} == {
            f"{name}/checkpoint_000001/step", f"{name}/checkpoint_000002/step"}

    def histories(results):
        return {r.config["x"]: list(r.metrics_dataframe["score"]) for r in results}

    expected = {x: [x * step for step in range(1, ITERATIONS + 1)] for x in X_VALUES}
    assert histories(grid) == expected
    again = tune.ResultGrid.from_path(grid.experiment_path)
    assert histories(again) == expected
    for result in again:  # its checkpoints open from storage
        with result.checkpoint.as_directory() as local:
            assert open(os.path.join(local, "step")).read() == "6"
    # One trial read by its URI: the store is in the experiment above it.
    name = os.path.basename(grid[0].path)
    one = tune.Result.from_path(storage.join_uri(grid.experiment_path, name))
    assert one.metrics["score"] == grid[0].metrics["score"] and one.config == grid[0].config
    assert one.checkpoint.path == grid_child(grid, name, "checkpoint_000002")
    capsys.readouterr()
    # fasttune ls of that URI lists the trial from the store as well.
    assert main(["ls", storage.join_uri(grid.experiment_path, name), "--format", "json",
                 "--columns", "trial_id,status,training_iteration,score,config/x"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"trial_id": grid[0].metrics["trial_id"], "status": "TERMINATED", "training_iteration": ITERATIONS,
         "score": grid[0].config["x"] * ITERATIONS, "config/x": grid[0].config["x"]}]
    # A name the store does not hold: the error names the URI given, not this node's copy of it.
    missing = storage.join_uri(grid.experiment_path, "no_such_trial")
    assert main(["ls", missing]) == 1
    err = capsys.readouterr().err
    assert f"{missing} is in an experiment whose results store" in err and "names no trial 'no_such_trial'" in err
    assert main(["ls", grid.experiment_path, "--format", "json", "--sort", "config/x"]) == 0
    assert [row["score"] for row in json.loads(capsys.readouterr().out)] == [x * ITERATIONS for x in X_VALUES]
    # Restored on a machine with nothing of it (an empty cache), it runs nothing again.
    import shutil

    shutil.rmtree(private_cache)
    restored = tune.Tuner.restore(grid.experiment_path, trainable=train).fit()
    assert histories(restored) == expected
    assert [n for n in stored_tree(s3_filesystem, f"{prefix}/exp") if n.startswith("results/")] == [
        "results/000001.jsonl"]


def test_a_sweep_on_an_explicit_s3_filesystem(ray_session, prefix, s3_filesystem, private_cache):
    grid = run_sweep(prefix, storage_filesystem=s3_filesystem)
    assert grid.experiment_path == f"{prefix}/exp"
    assert grid[0].checkpoint.filesystem is s3_filesystem
    assert_sweep_in_storage(grid, s3_filesystem, f"{prefix}/exp", private_cache)


@pytest.mark.parametrize("named_as", ["fsspec", "file-uri"])
def test_a_sweep_on_a_filesystem_with_real_directories(ray_session, tmp_path, private_cache, named_as):
    """An fsspec filesystem wrapped for pyarrow, and a file:// URI: unlike S3, a file's
    directory must exist before it is written."""
    root = str(tmp_path / "storage")
    os.makedirs(root)
    if named_as == "fsspec":
        import fsspec  # noqa: PLC0415 - not needed by the other tests

        filesystem = pyarrow_fs.PyFileSystem(pyarrow_fs.FSSpecHandler(fsspec.filesystem("file")))
        grid = run_sweep(root, storage_filesystem=filesystem)
        assert grid.experiment_path == f"{root}/exp"
    else:
        filesystem = pyarrow_fs.LocalFileSystem()
        grid = run_sweep(f"file://{root}")
        assert grid.experiment_path == f"file://{root}/exp"
    assert_sweep_in_storage(grid, filesystem, f"{root}/exp", private_cache)


# ---- 3: a class trainable ------------------------------------------------------------------
def test_a_class_trainable_checkpoints_into_storage(ray_session, prefix, s3_endpoint, s3_filesystem, private_cache):
    grid = run_sweep(s3_uri(prefix, s3_endpoint), trainable=Accumulator, space={"x": tune.grid_search([1, 10])},
                     tune_config=tune.TuneConfig(metric="total", mode="max"),
                     checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=2, num_to_keep=1))
    assert grid.num_errors == 0 and len(grid) == 2
    tree = stored_tree(s3_filesystem, f"{prefix}/exp")
    for result in grid:
        name, x = os.path.basename(result.path), result.config["x"]
        # Checkpoints at iterations 2 and 4; num_to_keep=1 left the second only.
        assert {f[len(name) + 1:] for f in tree if f.startswith(f"{name}/checkpoint_")} == {
            "checkpoint_000001/total"}
        assert tree[f"{name}/checkpoint_000001/total"] == str(4 * x).encode()
        history = rows(tree[f"{name}/result.json"])
        assert [(r["training_iteration"], r["total"]) for r in history] == [(i, i * x) for i in range(1, 5)]
        assert result.checkpoint.path == grid_child(grid, name, "checkpoint_000001")
        with result.checkpoint.as_directory() as local:
            assert open(os.path.join(local, "total")).read() == str(4 * x)
    assert worker_scratch_files(storage.resolve(grid.experiment_path)) == []


# ---- 9: checkpoint metadata in storage, and re-reading refreshes ------------------------------
def test_readers_see_what_changes_in_storage(ray_session, prefix, s3_endpoint, s3_filesystem):
    """Checkpoint.set_metadata on a checkpoint in storage, and a result rewritten there:
    the next read sees each (this process's cached copies are refreshed)."""
    grid = run_sweep(s3_uri(prefix, s3_endpoint), space={"x": tune.grid_search([1, 2])})
    by_x = {r.config["x"]: r for r in grid}
    checkpoint = by_x[1].checkpoint
    assert checkpoint.get_metadata() == {}  # downloads it into this process's cache
    checkpoint.set_metadata({"note": "best so far", "step": 6})
    assert checkpoint.get_metadata() == {"note": "best so far", "step": 6}  # not the stale copy
    name = os.path.basename(by_x[1].path)
    stored = stored_tree(s3_filesystem, f"{prefix}/exp/{name}/checkpoint_000002")
    assert stored == {"step": b"6", ".metadata.json": json.dumps({"note": "best so far", "step": 6}).encode()}
    checkpoint.update_metadata({"step": 7})
    assert tune.Checkpoint(checkpoint.path).get_metadata() == {"note": "best so far", "step": 7}

    first = tune.ResultGrid.from_path(grid.experiment_path)
    assert sorted(r.metrics["score"] for r in first) == [6, 12]
    assert next(r for r in first if r.config["x"] == 1).checkpoint.get_metadata() == {"note": "best so far",
                                                                                       "step": 7}
    # Storage changes under the reader: a trial's last result is rewritten.
    history = rows(stored_tree(s3_filesystem, f"{prefix}/exp/{name}")["result.json"])
    history[-1]["score"] = 600
    with s3_filesystem.open_output_stream(f"{prefix}/exp/{name}/result.json") as f:
        f.write("".join(json.dumps(r) + "\n" for r in history).encode())
    second = tune.ResultGrid.from_path(grid.experiment_path)
    assert sorted(r.metrics["score"] for r in second) == [12, 600]
    assert second.get_dataframe().set_index("config/x")["score"].to_dict() == {1: 600, 2: 12}


# ---- 7: storage that cannot be written: one error before any trial ----------------------------
def test_a_bad_uri_scheme_is_refused_before_any_trial(ray_session, tmp_path):
    marker = tmp_path / "started"
    with pytest.raises(TuneError, match=r"nosuch://bucket/runs is not a storage location") as info:
        run_sweep("nosuch://bucket/runs", trainable=train_unless_marker_says_stop,
                  space={"x": 1, "marker": str(marker)})
    assert "s3://bucket/prefix" in str(info.value)
    assert not marker.exists()


def test_a_missing_bucket_is_one_error_naming_the_uri_before_any_trial(ray_session, s3_endpoint, tmp_path):
    marker = tmp_path / "started"
    storage_path = s3_uri("no-such-bucket/runs", s3_endpoint)
    with pytest.raises(TuneError) as info:
        run_sweep(storage_path, trainable=train_unless_marker_says_stop, space={"x": 1, "marker": str(marker)})
    message = str(info.value)
    assert message.startswith(f"Cannot write to {s3_uri('no-such-bucket/runs/exp', s3_endpoint)}: ")
    assert "bucket" in message and "credentials" in message
    assert not marker.exists()


def test_wrong_credentials_are_one_error_naming_the_uri_before_any_trial(ray_session, prefix, s3_endpoint,
                                                                         tmp_path, require_s3_keys):
    marker = tmp_path / "started"
    storage_path = s3_uri(prefix, s3_endpoint)
    with require_s3_keys():
        with pytest.raises(TuneError) as info:
            run_sweep(storage_path, trainable=train_unless_marker_says_stop, space={"x": 1, "marker": str(marker)})
    message = str(info.value)
    assert message.startswith(f"Cannot write to {s3_uri(prefix + '/exp', s3_endpoint)}: ")
    assert "AWS_ACCESS_KEY_ID" in message
    assert not marker.exists()


# ---- 8: an upload that fails mid-sweep ---------------------------------------------------------
class TrialsAtTheEnd(tune.Callback):
    """Keeps the trials as the experiment ended, for their failure counts."""

    def __init__(self):
        self.trials = []

    def on_experiment_end(self, trials, **info):
        self.trials = list(trials)


def test_a_refused_checkpoint_upload_restarts_the_trial_from_its_checkpoint_in_storage(
        ray_session, prefix, faulty_s3, s3_filesystem):
    # The third checkpoint (step 6) of the trial with x=3: its one file's upload is refused once.
    faulty_s3.fail("_x=3/checkpoint_000002/", times=1)
    ended = TrialsAtTheEnd()
    grid = run_sweep(s3_uri(prefix, faulty_s3.address), failure_config=tune.FailureConfig(max_failures=1),
                     callbacks=[ended])
    assert grid.num_errors == 0
    failed = next(os.path.basename(r.path) for r in grid if r.config["x"] == 3)
    # One request refused: the upload of the checkpoint's file (pyarrow starts it with a
    # POST, CreateMultipartUpload).
    assert [path for _, path in faulty_s3.refused()] == [f"/{prefix}/exp/{failed}/checkpoint_000002/step"]
    assert {t.config["x"]: t.num_failures for t in ended.trials} == {1: 0, 2: 0, 3: 1}
    tree = stored_tree(s3_filesystem, f"{prefix}/exp")
    for result in grid:
        name, x = os.path.basename(result.path), result.config["x"]
        history = rows(tree[f"{name}/result.json"])
        assert [r["training_iteration"] for r in history] == list(range(1, ITERATIONS + 1))
        assert [r["score"] for r in history] == [x * step for step in range(1, ITERATIONS + 1)]
        # x=3 went on from its checkpoint at step 4, in storage: steps 5 and 6 ran again.
        restarted = [4, 4] if x == 3 else [0, 0]
        assert [r["restored_from"] for r in history] == [0, 0, 0, 0] + restarted
        assert {f[len(name) + 1:] for f in tree if f.startswith(f"{name}/checkpoint_")} == {
            "checkpoint_000001/step", "checkpoint_000002/step"}
        assert tree[f"{name}/checkpoint_000002/step"] == b"6"
        if x == 3:  # the failure it recovered from is on record, as for a local experiment
            errors = tree[f"{name}/error.txt"].decode()
            assert errors.count("Failure #") == 1
            assert f"Cannot write to {s3_uri(f'{prefix}/exp/{name}/checkpoint_000002', faulty_s3.address)}" in errors
        else:
            assert f"{name}/error.txt" not in tree


def test_a_refused_checkpoint_upload_without_retries_errors_that_trial_only(ray_session, prefix, faulty_s3,
                                                                             s3_filesystem):
    faulty_s3.fail("_x=3/checkpoint_000002/", times=1)
    grid = run_sweep(s3_uri(prefix, faulty_s3.address), failure_config=tune.FailureConfig(max_failures=0))
    assert grid.num_errors == 1
    failed = next(os.path.basename(r.path) for r in grid if r.config["x"] == 3)
    assert [path for _, path in faulty_s3.refused()] == [f"/{prefix}/exp/{failed}/checkpoint_000002/step"]
    tree = stored_tree(s3_filesystem, f"{prefix}/exp")
    for result in grid:
        name, x = os.path.basename(result.path), result.config["x"]
        history = rows(tree[f"{name}/result.json"])
        checkpoints = {f[len(name) + 1:] for f in tree if f.startswith(f"{name}/checkpoint_")}
        if x != 3:
            assert result.error is None
            assert [r["training_iteration"] for r in history] == list(range(1, ITERATIONS + 1))
            assert checkpoints == {"checkpoint_000001/step", "checkpoint_000002/step"}
            continue
        failed_upload = s3_uri(f"{prefix}/exp/{name}/checkpoint_000002", faulty_s3.address)
        assert f"Cannot write to {failed_upload}" in str(result.error)
        assert "Access Denied (refused by the test proxy)" in str(result.error)
        assert f"Cannot write to {failed_upload}" in tree[f"{name}/error.txt"].decode()
        # Everything reported before the failed one stays: steps 1..5, the checkpoints at 2 and 4.
        assert [r["training_iteration"] for r in history] == [1, 2, 3, 4, 5]
        assert [r["score"] for r in history] == [3, 6, 9, 12, 15]
        assert checkpoints == {"checkpoint_000000/step", "checkpoint_000001/step"}
        assert result.checkpoint.path == storage.join_uri(grid.experiment_path, name, "checkpoint_000001")
        with result.checkpoint.as_directory() as local:
            assert open(os.path.join(local, "step")).read() == "4"


# ---- 4: PBT: exploits copy checkpoints inside storage ------------------------------------------
PBT_STEPS = 5  # perturbation points at 2 and 4


def climb(config):
    """Adds ``lr`` to its value each step, with a checkpoint of (value, step) every step;
    each result says what it resumed from."""
    restored = restored_json({"value": 0, "step": 0})
    value = restored["value"]
    for step in range(restored["step"] + 1, PBT_STEPS + 1):
        value += config["lr"]
        report_with_json_checkpoint({"value": value, "lr": config["lr"], "restored": restored},
                                    {"value": value, "step": step})


def halve_lr(config):
    """PBT's explore: the donor's lr halved, so the clone stays behind the donor."""
    return dict(config, lr=config["lr"] / 2)


def test_pbt_exploits_copy_the_donors_checkpoint_inside_storage(ray_session, prefix, faulty_s3, s3_filesystem):
    random.seed(7)
    pbt = PopulationBasedTraining(time_attr="training_iteration", perturbation_interval=2, quantile_fraction=0.5,
                                  custom_explore_fn=halve_lr, synch=True)
    # Through the proxy, refusing nothing: it records how each object got there.
    grid = run_sweep(s3_uri(prefix, faulty_s3.address), trainable=climb, space={"lr": tune.grid_search([1, 10])},
                     tune_config=tune.TuneConfig(metric="value", mode="max", scheduler=pbt),
                     checkpoint_config=tune.CheckpointConfig())
    assert grid.num_errors == 0
    by_lr = {r.metrics["trial_id"]: r for r in grid}
    donor = next(r for r in grid if r.config["lr"] == 10)
    clone = next(r for r in grid if r is not donor)
    assert set(by_lr) == {donor.metrics["trial_id"], clone.metrics["trial_id"]}
    tree = stored_tree(s3_filesystem, f"{prefix}/exp")
    donor_dir, clone_dir = os.path.basename(donor.path), os.path.basename(clone.path)

    # The donor (ahead at every perturbation point) ran undisturbed.
    donor_rows = rows(tree[f"{donor_dir}/result.json"])
    assert [(r["training_iteration"], r["value"], r["lr"]) for r in donor_rows] == [
        (i, 10 * i, 10) for i in range(1, PBT_STEPS + 1)]
    # Synchronous PBT pauses whichever trial reaches a perturbation point first (that
    # order is the machine's) and resumes it from its own checkpoint there: the donor only
    # ever resumed from its own state.
    assert all(r["restored"]["value"] == 10 * r["restored"]["step"] < r["value"] for r in donor_rows)
    # The clone, behind at 2 and at 4, continued each time from the donor's state at that
    # point, with the donor's lr halved; each iteration is in its history once.
    clone_rows = rows(tree[f"{clone_dir}/result.json"])
    assert [(r["training_iteration"], r["value"], r["lr"], r["restored"]) for r in clone_rows] == [
        (1, 1, 1, {"value": 0, "step": 0}),
        (2, 2, 1, {"value": 0, "step": 0}),
        (3, 25, 5, {"value": 20, "step": 2}),
        (4, 30, 5, {"value": 20, "step": 2}),
        (5, 45, 5, {"value": 40, "step": 4}),
    ]
    assert clone.config["lr"] == 5 and clone.metrics["value"] == 45

    # In storage: each trial's own checkpoints, and in the clone's directory a copy of
    # the donor's checkpoints at 2 and 4, made by the S3 server (a copy request naming
    # the donor's object), not uploaded from a node.
    def checkpoint_states(trial_dir):
        return {rel[len(trial_dir) + 1:].split("/")[0]: json.loads(data) for rel, data in tree.items()
                if rel.startswith(f"{trial_dir}/checkpoint_")}

    donor_checkpoints = checkpoint_states(donor_dir)
    assert sorted(donor_checkpoints.values(), key=lambda s: s["step"]) == [
        {"value": 10 * i, "step": i} for i in range(1, PBT_STEPS + 1)]
    clone_checkpoints = checkpoint_states(clone_dir)
    copied = {name: state for name, state in clone_checkpoints.items() if state in donor_checkpoints.values()}
    assert sorted(copied.values(), key=lambda s: s["step"]) == [{"value": 20, "step": 2}, {"value": 40, "step": 4}]
    assert sorted(v["value"] for n, v in clone_checkpoints.items() if n not in copied) == [1, 2, 25, 30, 45]
    donor_name_of = {state["step"]: name for name, state in donor_checkpoints.items()}
    for name, state in copied.items():
        target = f"/{prefix}/exp/{clone_dir}/{name}/state.json"
        writes = [r for r in faulty_s3.requests if r.path == target and r.method in ("PUT", "POST")]
        assert [unquote(r.headers.get("x-amz-copy-source", "").split("?")[0]) for r in writes] == [
            f"{prefix}/exp/{donor_dir}/{donor_name_of[state['step']]}/state.json"], writes
    # The exploits are in PBT's log, in storage too.
    exploits = [json.loads(line) for line in tree["pbt_global.txt"].decode().splitlines()]
    assert [(e[0], e[1], e[2], e[3], e[5]["lr"]) for e in exploits] == [
        (clone.metrics["trial_id"], donor.metrics["trial_id"], 2, 2, 5),
        (clone.metrics["trial_id"], donor.metrics["trial_id"], 4, 4, 5)]
    assert worker_scratch_files(storage.resolve(grid.experiment_path)) == []


# ---- 5: Tuner.restore from the URI, in a new driver with nothing local --------------------------
RUNNING_AT_INTERRUPT = 2  # trials started before the interruption (one per CPU of the session)


def train_interrupted_once(config):
    """``train``; in the first run (while ``<control>/driver_pid`` exists) each trial
    stops after reporting step 3 and waits to be ended."""
    start = restored_step()
    for step in range(start + 1, ITERATIONS + 1):
        metrics = {"score": config["x"] * step, "step": step, "restored_from": start}
        if step % 2 == 0:
            report_with_step_checkpoint(metrics, step)
        else:
            tune.report(metrics)
        if step == 3 and os.path.exists(os.path.join(config["control"], "driver_pid")):
            threading.Event().wait()  # nothing more from this run; the driver ends the worker


class InterruptWhenTwoAtStepThree(tune.Callback):
    """The first run's Ctrl-C: once the driver has the step-3 results of the two trials
    that run at once (one per CPU of the session), so it ends with those two at step 3
    (checkpoint at 2) and the third not started.  Inert in the restored run."""

    def __init__(self, control):
        self.control = control
        self.at_step_three = set()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if result["training_iteration"] == 3 and os.path.exists(os.path.join(self.control, "driver_pid")):
            self.at_step_three.add(trial.trial_id)
            if len(self.at_step_three) == RUNNING_AT_INTERRUPT:
                os.kill(os.getpid(), signal.SIGINT)


def drive_first_run(address, uri, control):
    """A driver: the sweep until a trial interrupts it, syncing at every snapshot."""
    import ray

    ray.init(address=address, log_to_driver=False, configure_logging=False)
    with open(os.path.join(control, "driver_pid"), "w") as f:
        f.write(str(os.getpid()))
    tune.Tuner(
        train_interrupted_once,
        param_space={"x": tune.grid_search(X_VALUES), "control": control},
        tune_config=tune.TuneConfig(metric="score", mode="max"),
        run_config=tune.RunConfig(name="exp", storage_path=uri, verbose=0,
                                  callbacks=[InterruptWhenTwoAtStepThree(control)],
                                  sync_config=tune.SyncConfig(sync_period=0),
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=2)),
    ).fit()
    os.remove(os.path.join(control, "driver_pid"))  # the restored run goes through


def drive_restore(address, uri, control):
    """A driver on a machine with nothing local: restores the experiment from ``uri``."""
    import ray

    assert not os.path.exists(os.environ["FASTTUNE_STORAGE_CACHE"])
    ray.init(address=address, log_to_driver=False, configure_logging=False)
    print("CAN_RESTORE", tune.Tuner.can_restore(uri))
    grid = tune.Tuner.restore(uri, trainable=train_interrupted_once).fit()
    print("RESULTS", json.dumps(sorted([r.config["x"], r.metrics["training_iteration"], r.error is None,
                                        r.checkpoint.path] for r in grid)))


def run_driver(phase, ray_session, uri, control, env):
    address = ray_session.get_runtime_context().gcs_address
    env = dict(env, PYTHONPATH=os.pathsep.join([TESTS_DIR, os.path.dirname(__file__),
                                                os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, __file__, phase, json.dumps([address, uri, control])], env=env,
                          capture_output=True, text=True, timeout=240)


def test_restore_from_the_uri_in_a_new_driver_with_nothing_local(ray_session, prefix, s3_endpoint, s3_filesystem,
                                                                  tmp_path, capsys):
    uri = s3_uri(prefix, s3_endpoint)
    control = tmp_path / "control"
    control.mkdir()
    first = run_driver("first", ray_session, uri, str(control),
                       dict(os.environ, FASTTUNE_STORAGE_CACHE=str(tmp_path / "first-machine")))
    assert first.returncode == 0, first.stderr[-3000:]
    assert "interrupted (Ctrl-C); its state is saved" in first.stderr
    wait_until_other_jobs_have_no_live_actors(ray_session)

    experiment = storage.join_uri(uri, "exp")
    assert tune.Tuner.can_restore(experiment)
    capsys.readouterr()
    assert main(["ls", experiment, "--format", "json", "--sort", "config/x"]) == 0
    before = json.loads(capsys.readouterr().out)
    # Its state in storage: the two trials that ran stopped at step 3, the third never started.
    assert [(row["config/x"], row["status"], row.get("training_iteration")) for row in before] == [
        (1, "RUNNING", 3), (2, "RUNNING", 3), (3, "PENDING", None)]

    # A new machine: its own HOME and storage cache, nothing of the first run on disk.
    home = tmp_path / "fresh-home"
    home.mkdir()
    env = dict(os.environ, HOME=str(home), FASTTUNE_STORAGE_CACHE=str(tmp_path / "fresh-machine"))
    if env.get("RAY_AUTH_MODE") == "token" and not (env.get("RAY_AUTH_TOKEN") or env.get("RAY_AUTH_TOKEN_PATH")):
        # The cluster's token, as its user would bring it along.
        env["RAY_AUTH_TOKEN_PATH"] = os.path.expanduser("~/.ray/auth_token")
    restored = run_driver("restore", ray_session, experiment, str(control), env)
    assert restored.returncode == 0, restored.stderr[-3000:]
    assert "CAN_RESTORE True" in restored.stdout
    results = json.loads(restored.stdout.split("RESULTS ", 1)[1])
    tree = stored_tree(s3_filesystem, f"{prefix}/exp")
    names = {json.loads(tree[rel])["x"]: rel.split("/")[0] for rel in tree if rel.endswith("/params.json")}
    assert results == [[x, ITERATIONS, True, storage.join_uri(experiment, names[x], "checkpoint_000002")]
                       for x in X_VALUES]
    for x, name in names.items():
        history = rows(tree[f"{name}/result.json"])
        assert [r["training_iteration"] for r in history] == list(range(1, ITERATIONS + 1))
        assert [r["score"] for r in history] == [x * step for step in range(1, ITERATIONS + 1)]
        # The two that were interrupted went on from their checkpoint at step 2, in storage.
        resumed_at = 2 if x in (1, 2) else 0
        assert [r["restored_from"] for r in history] == [0, 0] + [resumed_at] * 4
        assert {rel[len(name) + 1:] for rel in tree if rel.startswith(f"{name}/checkpoint_")} == {
            "checkpoint_000001/step", "checkpoint_000002/step"}


if __name__ == "__main__":  # a driver of the restore test, in a process of its own
    {"first": drive_first_run, "restore": drive_restore}[sys.argv[1]](*json.loads(sys.argv[2]))
