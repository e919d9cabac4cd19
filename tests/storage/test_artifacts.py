"""``SyncConfig(sync_artifacts=True)``: the files a trial writes in its own directory
(``tune.get_context().get_trial_dir()``) reach the experiment's storage, uploaded by the
worker; without it they stay off storage.  Either way the trial's directory on the node
is scratch, gone when the trial ends."""
import os
import uuid

import pytest
import ray

import fasttune as tune
from fasttune import _storage as storage
from fasttune.execution._experiment_state import is_snapshot_name, snapshot_paths


@ray.remote(num_cpus=0)
def _files_in_node_scratch(location):
    """The files left in the scratch directory of the experiment at ``location`` on the
    node of Ray's workers (their cache root is their own environment's)."""
    root = storage.node_scratch(location)
    return [os.path.join(d, f) for d, _, files in os.walk(root) for f in files]


def _assert_nothing_left_on_the_node(s3_filesystem, stored):
    location = storage.resolve(stored, s3_filesystem)
    assert ray.get(_files_in_node_scratch.remote(location)) == []


def _train(config):
    trial_dir = tune.get_context().get_trial_dir()
    for i in range(3):
        with open(os.path.join(trial_dir, "notes.txt"), "a") as f:
            f.write(f"{config['x']}:{i}\n")
        os.makedirs(os.path.join(trial_dir, "plots"), exist_ok=True)
        with open(os.path.join(trial_dir, "plots", f"{i}.txt"), "w") as f:
            f.write(str(i))
        tune.report({"i": i})


def _sweep(s3_filesystem, bucket, name, sync_config, callbacks=None):
    return tune.Tuner(
        _train, param_space={"x": tune.grid_search([1, 2])},
        run_config=tune.RunConfig(name=name, storage_path=f"{bucket}/artifacts", storage_filesystem=s3_filesystem,
                                  verbose=0, sync_config=sync_config, callbacks=callbacks),
    ).fit()


class WritesASummaryAtTheEnd(tune.Callback):
    """Writes a file into each trial's directory when the experiment ends, as loggers do."""

    def on_experiment_end(self, trials, **info):
        for trial in trials:
            with open(os.path.join(trial.path, "summary.txt"), "w") as f:
                f.write(f"{trial.config['x']}: {trial.last_result['i']}")


@pytest.mark.parametrize("on_checkpoint", [True, False])
def test_sync_artifacts_uploads_what_a_trial_writes_in_its_directory(ray_session, s3_filesystem, s3_bucket,
                                                                     on_checkpoint):
    name = f"synced-{on_checkpoint}-{uuid.uuid4().hex[:8]}"  # a scratch directory no earlier run used
    grid = _sweep(s3_filesystem, s3_bucket, name,
                  tune.SyncConfig(sync_artifacts=True, sync_artifacts_on_checkpoint=on_checkpoint))
    assert grid.num_errors == 0
    for result in grid:
        x = result.config["x"]
        stored = f"{s3_bucket}/artifacts/{name}/{os.path.basename(result.path)}"
        with s3_filesystem.open_input_stream(f"{stored}/notes.txt") as f:
            assert f.read().decode() == "".join(f"{x}:{i}\n" for i in range(3))
        for i in range(3):
            with s3_filesystem.open_input_stream(f"{stored}/plots/{i}.txt") as f:
                assert f.read() == str(i).encode()
        with s3_filesystem.open_input_stream(f"{stored}/result.json") as f:
            assert len(f.read().splitlines()) == 3  # the driver's file, not replaced by the worker
    _assert_nothing_left_on_the_node(s3_filesystem, f"{s3_bucket}/artifacts/{name}")


def test_without_sync_artifacts_a_trials_own_files_stay_off_storage(ray_session, s3_filesystem, s3_bucket):
    name = f"unsynced-{uuid.uuid4().hex[:8]}"
    grid = _sweep(s3_filesystem, s3_bucket, name, None)
    assert grid.num_errors == 0
    from pyarrow import fs

    stored = s3_filesystem.get_file_info(fs.FileSelector(f"{s3_bucket}/artifacts/{name}", recursive=True))
    names = {os.path.basename(info.path) for info in stored if info.type == fs.FileType.File}
    assert "result.json" in names and "notes.txt" not in names
    _assert_nothing_left_on_the_node(s3_filesystem, f"{s3_bucket}/artifacts/{name}")


def test_after_fit_storage_holds_every_file_of_the_staging_copy_as_it_ended(ray_session, s3_filesystem, s3_bucket):
    """What loggers write at the very end (TensorBoard's last records, on_experiment_end)
    is uploaded too: each file of the driver's copy is in storage, byte for byte."""
    name = f"whole-{uuid.uuid4().hex[:8]}"
    grid = _sweep(s3_filesystem, s3_bucket, name, None, callbacks=[WritesASummaryAtTheEnd()])
    staging = os.path.dirname(grid[0].path)
    newest_snapshot = os.path.basename(snapshot_paths(staging)[0])  # older local ones need not be there
    compared = 0
    for directory, subdirs, files in os.walk(staging):
        subdirs[:] = [d for d in subdirs if not d.startswith("checkpoint_")]
        for file_name in files:
            if file_name.startswith(".") or (is_snapshot_name(file_name) and file_name != newest_snapshot):
                continue
            path = os.path.join(directory, file_name)
            relative = os.path.relpath(path, staging).replace(os.sep, "/")
            with open(path, "rb") as local, \
                    s3_filesystem.open_input_stream(f"{s3_bucket}/artifacts/{name}/{relative}") as stored:
                assert stored.read() == local.read(), relative
            compared += 1
    assert compared >= 2 * 3 + 2  # per trial params, result and the summary; tuner.msgpack and a snapshot
    for result in grid:
        summary = f"{s3_bucket}/artifacts/{name}/{os.path.basename(result.path)}/summary.txt"
        with s3_filesystem.open_input_stream(summary) as f:
            assert f.read().decode() == f"{result.config['x']}: 2"
