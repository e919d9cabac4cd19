"""StorageSync, the driver's uploads of an experiment's staging copy, on a real pyarrow
filesystem (a local directory behind ``pyarrow.fs.PyFileSystem``) that records every
write and can be told to fail: what is uploaded, in which order, when checkpoints are
deleted, and what a failing upload does."""
import logging
import os
import threading

import pytest
from pyarrow import fs

from fasttune import _storage as storage
from fasttune.error import TuneError
from fasttune.execution import _experiment_state as state
from fasttune.execution._storage_sync import StorageSync, prepare_staging
from fasttune.syncer import SyncConfig


class RecordingHandler(fs.FileSystemHandler):
    """A local directory as a pyarrow filesystem that records the files written and the
    directories deleted, and fails writes of paths containing any of ``fail``."""

    def __init__(self, root):
        self.local = fs.SubTreeFileSystem(str(root), fs.LocalFileSystem())
        self.written, self.deleted, self.fail = [], [], set()
        self.lock = threading.Lock()
        # A write of a path containing ``gate`` waits for ``opened``, having set ``entered``.
        self.gate, self.entered, self.opened = None, threading.Event(), threading.Event()

    def open_output_stream(self, path, metadata):
        if any(part in path for part in self.fail):
            raise OSError(f"injected failure writing {path}")
        if self.gate is not None and self.gate in path:
            self.entered.set()
            self.opened.wait()
        with self.lock:
            self.written.append(path)
        self.local.create_dir(os.path.dirname(path) or "/", recursive=True)
        return self.local.open_output_stream(path)

    def delete_dir_contents(self, path, missing_dir_ok=False):
        with self.lock:
            self.deleted.append(path)
        self.local.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_dir(self, path):
        self.local.delete_dir(path)

    # The rest: the local directory's own.
    def get_type_name(self):
        return "recording"

    def normalize_path(self, path):
        return path

    def get_file_info(self, paths):
        return self.local.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self.local.get_file_info(selector)

    def create_dir(self, path, recursive):
        self.local.create_dir(path, recursive=recursive)

    def delete_root_dir_contents(self):
        self.local.delete_dir_contents("/", accept_root_dir=True)

    def delete_file(self, path):
        self.local.delete_file(path)

    def move(self, src, dest):
        self.local.move(src, dest)

    def copy_file(self, src, dest):
        self.local.copy_file(src, dest)

    def open_input_stream(self, path):
        return self.local.open_input_stream(path)

    def open_input_file(self, path):
        return self.local.open_input_file(path)

    def open_append_stream(self, path, metadata):
        return self.local.open_append_stream(path)


@pytest.fixture
def kept(tmp_path):
    """An experiment kept at ``exp`` on a recording filesystem, staged in ``staging/exp``."""
    (tmp_path / "bucket").mkdir()
    handler = RecordingHandler(tmp_path / "bucket")
    location = storage.Location(fs.PyFileSystem(handler), "exp", "exp")
    staged = storage.ExperimentStorage(location, str(tmp_path / "staging" / "exp"))
    os.makedirs(staged.staging)
    return staged, handler, tmp_path / "bucket" / "exp"


def _write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(data)


def _snapshot(staging, seq):
    return state.write_snapshot(staging, {"n": seq}, [], seq)


def test_uploads_changed_files_then_the_snapshot_and_leaves_checkpoints_to_workers(kept):
    staged, handler, stored = kept
    trial = os.path.join(staged.staging, "trial_0")
    _write(os.path.join(trial, "result.json"), '{"i": 0}\n')
    _write(os.path.join(trial, "params.json"), "{}")
    _write(os.path.join(trial, "checkpoint_000000", "model.bin"), "weights")  # a worker's, not the driver's
    _write(os.path.join(trial, ".result.json.1234.tmp"), "half")  # an atomic write in progress
    sync = StorageSync(staged, SyncConfig(sync_period=3600))
    sync.snapshot_written(_snapshot(staged.staging, 1))
    sync.sync()
    assert handler.written[-1] == "exp/experiment_state-0000000001.msgpack"  # after every file it counts
    assert sorted(handler.written[:-1]) == ["exp/trial_0/params.json", "exp/trial_0/result.json"]
    assert (stored / "trial_0" / "result.json").read_text() == '{"i": 0}\n'

    handler.written.clear()
    with open(os.path.join(trial, "result.json"), "a") as f:
        f.write('{"i": 1}\n')
    sync.snapshot_written(_snapshot(staged.staging, 2))
    sync.sync()
    # Only what changed; the unchanged params.json is not sent again.
    assert handler.written == ["exp/trial_0/result.json", "exp/experiment_state-0000000002.msgpack"]
    assert (stored / "trial_0" / "result.json").read_text() == '{"i": 0}\n{"i": 1}\n'

    handler.written.clear()
    sync.sync()
    assert handler.written == []


def test_storage_keeps_the_newest_snapshot_and_the_one_before(kept):
    staged, handler, stored = kept
    sync = StorageSync(staged, SyncConfig(sync_period=3600))
    for seq in (1, 2, 3, 4):
        sync.snapshot_written(_snapshot(staged.staging, seq))
        if seq != 2:  # snapshot 2 was written and rotated out between two syncs: never sent
            sync.sync()
    names = sorted(p.name for p in stored.iterdir() if state.is_snapshot_name(p.name))
    assert names == ["experiment_state-0000000003.msgpack", "experiment_state-0000000004.msgpack"]
    assert "exp/experiment_state-0000000002.msgpack" not in handler.written


def test_a_dropped_checkpoint_stays_until_no_snapshot_in_storage_names_it(kept):
    staged, handler, stored = kept
    for index in (0, 1):
        _write(str(stored / "trial_0" / f"checkpoint_00000{index}" / "model.bin"), "weights")
    sync = StorageSync(staged, SyncConfig(sync_period=3600))
    sync.snapshot_written(_snapshot(staged.staging, 1))  # names checkpoint_000000
    sync.delete_checkpoint_later(os.path.join(staged.staging, "trial_0", "checkpoint_000000"))
    sync.sync()  # the snapshot in storage still names it
    assert (stored / "trial_0" / "checkpoint_000000").is_dir()
    sync.snapshot_written(_snapshot(staged.staging, 2))  # written after retention dropped it
    sync.sync()
    assert (stored / "trial_0" / "checkpoint_000000").is_dir()  # the snapshot kept before it names it
    sync.snapshot_written(_snapshot(staged.staging, 3))
    sync.sync()  # now neither snapshot in storage names it
    assert not (stored / "trial_0" / "checkpoint_000000").exists()
    assert (stored / "trial_0" / "checkpoint_000001" / "model.bin").read_text() == "weights"


def test_the_last_sync_leaves_retentions_outcome_in_storage(kept):
    staged, handler, stored = kept
    _write(str(stored / "trial_0" / "checkpoint_000000" / "model.bin"), "weights")
    sync = StorageSync(staged, SyncConfig(sync_period=3600))
    sync.snapshot_written(_snapshot(staged.staging, 1))
    sync.sync()
    sync.delete_checkpoint_later(os.path.join(staged.staging, "trial_0", "checkpoint_000000"))
    sync.snapshot_written(_snapshot(staged.staging, 2))
    sync.finish()  # the final snapshot no longer names it: it goes, as num_to_keep says
    assert not (stored / "trial_0" / "checkpoint_000000").exists()


def test_prune_deletes_unreported_checkpoints_but_not_those_waiting_for_deletion(kept):
    staged, handler, stored = kept
    for index in (0, 1, 2, 3):
        _write(str(stored / "trial_0" / f"checkpoint_00000{index}" / "model.bin"), "weights")
    sync = StorageSync(staged, SyncConfig(sync_period=3600))
    trial = os.path.join(staged.staging, "trial_0")
    sync.delete_checkpoint_later(os.path.join(trial, "checkpoint_000000"))  # a stored snapshot may name it
    sync.prune_checkpoints(trial, ["checkpoint_000001"])
    assert sorted(p.name for p in (stored / "trial_0").iterdir()) == ["checkpoint_000000", "checkpoint_000001"]


def test_a_failed_background_sync_is_retried_and_the_last_one_uploads_everything(kept, caplog):
    staged, handler, stored = kept
    _write(os.path.join(staged.staging, "trial_0", "result.json"), '{"i": 0}\n')
    sync = StorageSync(staged, SyncConfig(sync_period=0))
    handler.fail.add("result.json")
    with caplog.at_level(logging.WARNING, logger="fasttune.execution._storage_sync"):
        sync.snapshot_written(_snapshot(staged.staging, 1))  # due at once: a sync on its thread
        sync.wait()
    assert "injected failure writing exp/trial_0/result.json" in caplog.text
    assert staged.staging in caplog.text  # where the files are meanwhile
    assert not (stored / "experiment_state-0000000001.msgpack").exists()  # never before its rows
    handler.fail.clear()
    sync.finish()
    assert (stored / "trial_0" / "result.json").read_text() == '{"i": 0}\n'
    assert (stored / "experiment_state-0000000001.msgpack").exists()


def test_a_snapshot_written_during_a_sync_goes_up_when_it_ends(kept):
    staged, handler, stored = kept
    _write(os.path.join(staged.staging, "trial_0", "result.json"), '{"i": 0}\n')
    sync = StorageSync(staged, SyncConfig(sync_period=0))
    handler.gate = "result.json"
    sync.snapshot_written(_snapshot(staged.staging, 1))  # a sync starts, and waits in its upload
    handler.entered.wait()
    sync.snapshot_written(_snapshot(staged.staging, 2))  # while it runs: no second sync starts
    handler.opened.set()
    sync.wait()  # no further snapshot is written, yet the second one is in storage
    names = sorted(p.name for p in stored.iterdir() if state.is_snapshot_name(p.name))
    # The first was superseded before that sync got to it: the newer one went instead.
    assert names == ["experiment_state-0000000002.msgpack"]
    assert (stored / "trial_0" / "result.json").read_text() == '{"i": 0}\n'


def test_a_snapshot_rotated_out_locally_before_its_upload_still_goes_up(kept):
    staged, handler, stored = kept
    sync = StorageSync(staged, SyncConfig(sync_period=3600))
    first = _snapshot(staged.staging, 1)
    with open(first, "rb") as f:
        written = f.read()
    sync.snapshot_written(first)
    for seq in (2, 3):  # written by a runner that does not tell (KEEP=2 rotates 1 out locally)
        _snapshot(staged.staging, seq)
    assert not os.path.exists(first)
    sync.sync()
    assert (stored / "experiment_state-0000000001.msgpack").read_bytes() == written
    sync.finish()
    assert [p for p in os.listdir(staged.staging) if p.startswith(".upload-")] == []


def test_a_fresh_run_numbers_its_snapshots_after_those_in_storage(kept):
    staged, handler, stored = kept
    for seq in (56, 57):  # an earlier run under this name
        _snapshot(str(stored), seq)
    sync = StorageSync(staged, SyncConfig(sync_period=3600))
    sync.check_writable()
    assert sync.newest_stored_seq == 57
    sync.snapshot_written(_snapshot(staged.staging, 58))
    sync.sync()
    names = sorted(p.name for p in stored.iterdir() if state.is_snapshot_name(p.name))
    assert names == ["experiment_state-0000000057.msgpack", "experiment_state-0000000058.msgpack"]


def test_a_last_sync_that_fails_raises_naming_the_staging_copy(kept):
    staged, handler, stored = kept
    _write(os.path.join(staged.staging, "trial_0", "result.json"), '{"i": 0}\n')
    sync = StorageSync(staged, SyncConfig(sync_period=3600))
    handler.fail.add("result.json")
    with pytest.raises(TuneError, match="last upload to exp failed") as error:
        sync.finish()
    assert staged.staging in str(error.value) and "injected failure" in str(error.value)


def test_storage_that_cannot_be_written_is_one_clear_error(kept):
    staged, handler, stored = kept
    _write(os.path.join(staged.staging, "tuner.msgpack"), "settings")
    handler.fail.add("tuner.msgpack")
    with pytest.raises(TuneError, match=r"Cannot write to exp: injected failure.*Check that the bucket exists"):
        StorageSync(staged).check_writable()


def test_prepare_staging_takes_storage_unless_the_local_copy_is_as_new(kept):
    staged, handler, stored = kept
    _snapshot(str(stored), 3)
    _write(str(stored / "tuner.msgpack"), "from storage")
    _write(str(stored / "trial_0" / "checkpoint_000000" / "model.bin"), "weights")
    _snapshot(staged.staging, 2)
    _write(os.path.join(staged.staging, "tuner.msgpack"), "older, local")
    prepare_staging(staged, resume=True)  # storage's snapshot 3 is newer
    assert open(os.path.join(staged.staging, "tuner.msgpack")).read() == "from storage"
    assert os.listdir(os.path.join(staged.staging, "trial_0", "checkpoint_000000")) == []  # files stay in storage

    _snapshot(staged.staging, 4)
    _write(os.path.join(staged.staging, "tuner.msgpack"), "newer, local")  # this driver got further
    prepare_staging(staged, resume=True)
    assert open(os.path.join(staged.staging, "tuner.msgpack")).read() == "newer, local"

    prepare_staging(staged, resume=False)  # a fresh run starts from nothing
    assert not os.path.exists(staged.staging)


def test_after_a_resume_downloads_the_experiment_only_what_changed_since_goes_back_up(kept):
    staged, handler, stored = kept
    _snapshot(str(stored), 3)
    _write(str(stored / "trial_0" / "result.json"), '{"i": 0}\n')
    _write(str(stored / "trial_0" / "stdout"), "line 1\n")
    prepare_staging(staged, resume=True)
    # A worker appends to the trial's output in storage after the download...
    _write(str(stored / "trial_0" / "stdout"), "line 1\nline 2\n")
    handler.written.clear()
    sync = StorageSync(staged, SyncConfig(sync_period=3600))
    sync.sync()
    # ...and the driver's older copy does not go back over it: nothing changed locally.
    assert handler.written == []
    assert (stored / "trial_0" / "stdout").read_text() == "line 1\nline 2\n"
    with open(os.path.join(staged.staging, "trial_0", "result.json"), "a") as f:
        f.write('{"i": 1}\n')
    sync.sync()
    assert handler.written == ["exp/trial_0/result.json"]


def test_a_restore_of_an_experiment_level_store_takes_what_the_snapshot_did_not_count_out_of_storage_too(kept):
    from fasttune import _results_store as results_store
    from fasttune.logger._experiment_results import ExperimentResultFiles

    staged, handler, stored = kept
    sync = StorageSync(staged, SyncConfig(sync_period=3600))
    files = ExperimentResultFiles(staged.staging, storage_sync=sync)
    trial = os.path.join(staged.staging, "t")
    files.init_trial(trial, {}, trial_id="T")
    files.write(trial, b'{"trial_id": "T", "i": 1}\n', b"")
    files.flush()
    position = files.position()
    files.write(trial, b'{"trial_id": "T", "i": 2}\n', b"")
    files.close_all()
    # A later segment, as an earlier restore of this run would have begun.
    _write(os.path.join(staged.staging, "results", "000002.jsonl"), '{"trial_id": "T", "i": 3}\n')
    sync.sync()
    assert sorted(os.listdir(stored / "results")) == ["000001.jsonl", "000002.jsonl"]

    ExperimentResultFiles(staged.staging, storage_sync=sync).restore_position(position, "aside")
    assert sorted(os.listdir(stored / "results")) == ["000001.jsonl"]  # the uncounted segment is gone there
    sync.sync()  # the segment cut back goes up whole
    assert (stored / "results" / "000001.jsonl").read_bytes() == open(
        os.path.join(staged.staging, "results", "000001.jsonl"), "rb").read()
    assert [r["i"] for r in results_store.read_store(str(stored))["t"].rows] == [1]


def test_a_fresh_run_under_the_name_of_one_in_storage_numbers_its_store_after_that_runs(kept):
    """Its staging copy starts empty: the segments in storage must not be written over."""
    from fasttune import _results_store as results_store
    from fasttune.logger._experiment_results import ExperimentResultFiles

    staged, handler, stored = kept
    _write(str(stored / "results" / "000001.jsonl"), '["trial", "t_first", "F", {}]\n{"trial_id": "F", "i": 1}\n')
    files = ExperimentResultFiles(staged.staging, storage_sync=StorageSync(staged, SyncConfig(sync_period=3600)))
    trial = os.path.join(staged.staging, "t_second")
    files.init_trial(trial, {}, trial_id="S")
    files.write(trial, b'{"trial_id": "S", "i": 1}\n', b"")
    files.close_all()
    assert os.listdir(os.path.join(staged.staging, "results")) == ["000002.jsonl"]
