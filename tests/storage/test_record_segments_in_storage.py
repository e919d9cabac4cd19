"""Record segments (snapshot format 4) of a sweep kept in storage (moto's S3 server): a
simulated sweep in this process, a snapshot at every step, uploads after each snapshot (or
every third one) that the runner waits for, and segments small enough to be written and
merged many times.

Whenever a snapshot goes up, storage must hold the segments it names already; after every
upload the test reads each snapshot storage holds on its own (with storage's segment files
only), and each one the staging copy holds: a segment missing in storage, or one removed
while a snapshot there still names it, makes that read fail.  At the end storage holds the
segments its snapshots name (the merged-away ones are gone, there and in the staging copy),
and ``Tuner.restore`` of the URI from a driver with nothing local reads every trial back,
goes on, and retires the first run's segments."""
import json
import os
import uuid

import pytest
from pyarrow import fs as pyarrow_fs

import fasttune as tune
from fasttune import _storage
from fasttune.execution import _experiment_state as state
from fasttune.execution import _snapshots
from fasttune.execution._storage_sync import StorageSync
from fasttune.search import BasicVariantGenerator
from fasttune.simulation import Simulation, learning_curve_table, reference_trial_order
from ctrl_c_testing import CtrlCAtResult
from s3_server import uri

N_TRIALS = 40
N_EPOCHS = 3
SEGMENT_MIN_RECORDS = 4  # a segment every few finished trials...
MAX_SEGMENTS = 2  # ...and a merge every third one


@pytest.fixture(scope="module")
def table():
    return learning_curve_table(N_TRIALS, seed=0, n_epochs=N_EPOCHS)


@pytest.fixture(autouse=True)
def small_segments(tmp_path, monkeypatch):
    """Snapshots at every step, small segments, and this test's own storage cache (the
    driver's staging copy: empty at first, as on a machine that ran nothing)."""
    monkeypatch.setenv("FASTTUNE_STORAGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FASTTUNE_GLOBAL_CHECKPOINT_S", "0")
    monkeypatch.setattr(_snapshots, "SEGMENT_MIN_RECORDS", SEGMENT_MIN_RECORDS)
    monkeypatch.setattr(_snapshots, "_MAX_SEGMENTS", MAX_SEGMENTS)


@pytest.fixture
def prefix(s3_bucket):
    return f"{s3_bucket}/segments-{uuid.uuid4().hex[:8]}"


def experiment_files(filesystem, path):
    """``{name: bytes}`` of the snapshots and record segments directly below ``path`` on
    ``filesystem`` (a pyarrow filesystem)."""
    files = {}
    for info in filesystem.get_file_info(pyarrow_fs.FileSelector(path, allow_not_found=True)):
        if info.type == pyarrow_fs.FileType.File and (state.is_snapshot_name(info.base_name)
                                                      or info.base_name.startswith("experiment_records-")):
            with filesystem.open_input_stream(info.path) as f:
                files[info.base_name] = f.read()
    return files


def local_files(directory):
    return experiment_files(pyarrow_fs.LocalFileSystem(), directory)


def snapshots_of(files):
    return sorted(name for name in files if state.is_snapshot_name(name))


def segments_of(files):
    return {name for name in files if name.startswith("experiment_records-")}


def read_alone(files, snapshot, directory):
    """The state of snapshot ``snapshot`` read by ``load_latest`` from ``directory`` holding
    it and the segment files of ``files`` only (no other snapshot to fall back to)."""
    os.makedirs(directory)
    for name in segments_of(files) | {snapshot}:
        with open(os.path.join(directory, name), "wb") as f:
            f.write(files[name])
    loaded, path = state.load_latest(directory)
    assert os.path.basename(path) == snapshot
    return loaded


def unpacked_alone(snapshot_bytes, directory):
    """A snapshot's state as written (without its segments' records)."""
    path = os.path.join(directory, "alone.msgpack")
    with open(path, "wb") as f:
        f.write(snapshot_bytes)
    return state.DataOnlyLoader().unpack(state.read_file(path))


def named_segments(snapshot_bytes, directory):
    """The segment files a snapshot names."""
    return {entry[0] for entry in unpacked_alone(snapshot_bytes, directory).get("segments") or []}


class UploadWatch:
    """Has every ``every``-th snapshot uploaded before the runner goes on (its sync, on the
    sync's thread, started as ``SyncConfig(sync_period=0)`` starts one; the runner waits
    for it; the other snapshots start none), and after every sync reads each snapshot in
    storage and in the staging copy on its own: what failed is kept in ``problems``."""

    def __init__(self, monkeypatch, filesystem, path, scratch, every=1):
        self.filesystem, self.path, self.scratch = filesystem, path, scratch
        self.problems, self.syncs, self.written, self.staging = [], 0, 0, None
        self.stored_segments_seen = set()  # every segment storage held after some sync
        # Segments storage kept after a sync for its older snapshot only: the staging
        # copy's snapshots (newer) named them no more.
        self.kept_for_storage = set()
        watch = self
        sync, snapshot_written = StorageSync.sync, StorageSync.snapshot_written

        def sync_then_check(self, final=False):
            sync(self, final)
            watch.staging = self.storage.staging
            try:
                watch.check(self.storage.staging)
            except Exception as exc:  # noqa: BLE001 - the sync thread would only log it
                watch.problems.append(f"after sync {watch.syncs}: {type(exc).__name__}: {exc}")

        def written_then_uploaded(self, path):
            watch.written += 1
            self._period = 0.0 if watch.written % every == 0 else float("inf")
            snapshot_written(self, path)
            self.wait()

        upload_file = _storage.upload_file

        def upload_checking_segments_first(source, location):
            # A snapshot goes up only once storage holds every segment it names (a reader
            # listing storage meanwhile reads it whole).
            name = location.path.rsplit("/", 1)[-1]
            if state.is_snapshot_name(name):
                with open(source, "rb") as f:
                    named = named_segments(f.read(), watch.scratch)
                stored = segments_of(experiment_files(location.filesystem, location.path.rsplit("/", 1)[0]))
                if not named <= stored:
                    watch.problems.append(f"{name} was uploaded before its segments {sorted(named - stored)}")
            upload_file(source, location)

        os.makedirs(scratch, exist_ok=True)
        monkeypatch.setattr(_storage, "upload_file", upload_checking_segments_first)
        monkeypatch.setattr(StorageSync, "sync", sync_then_check)
        monkeypatch.setattr(StorageSync, "snapshot_written", written_then_uploaded)

    def check(self, staging):
        self.syncs += 1
        named = {}
        for where, files in (("storage", experiment_files(self.filesystem, self.path)),
                             ("staging", local_files(staging))):
            named[where] = set()
            for snapshot in snapshots_of(files):
                directory = os.path.join(self.scratch, f"{self.syncs}-{where}-{snapshot}")
                loaded = read_alone(files, snapshot, directory)
                assert all(record is not None for record in loaded["trials"]), (where, snapshot)
                named[where] |= {entry[0] for entry in loaded.get("segments") or []}
            if where == "storage":
                self.stored_segments_seen |= segments_of(files)
        self.kept_for_storage |= named["storage"] - named["staging"]


def tune_config(table):
    return tune.TuneConfig(metric="loss", mode="min", num_samples=N_TRIALS,
                           search_alg=BasicVariantGenerator(points_to_evaluate=reference_trial_order(table, N_TRIALS,
                                                                                                     seed=0)))


def run(table, storage_path, name, callbacks=()):
    # The runner's loop (the direct one checks for a snapshot only every 64 steps), with
    # each trial's files, which ResultGrid.from_path reads.
    return tune.Tuner(Simulation(table, num_workers=3, write_results=True, engine="runner"),
                      param_space=table.search_space, tune_config=tune_config(table),
                      run_config=tune.RunConfig(name=name, storage_path=storage_path, verbose=0,
                                                sync_config=tune.SyncConfig(sync_period=0),
                                                callbacks=list(callbacks))).fit()


def by_config(grid, done=True):
    """Each trial's last metrics that a restore keeps as they were, by its config (``done``:
    with the ``done`` a trial's last result has in the runner, which its result.json's last
    line does not have, with or without storage)."""
    return {json.dumps(result.config, sort_keys=True): (result.metrics.get("loss"), result.metrics.get("epoch"),
                                                        result.metrics.get("training_iteration"))
            + ((result.metrics.get("done"),) if done else ())
            for result in grid}


def assert_storage_holds_what_its_snapshots_name(filesystem, path, staging, scratch):
    stored = experiment_files(filesystem, path)
    snapshots = snapshots_of(stored)
    assert len(snapshots) == state.KEEP
    named = set()
    for snapshot in snapshots:
        named |= named_segments(stored[snapshot], scratch)
    assert named and segments_of(stored) == named  # none missing, none left over
    assert segments_of(local_files(staging)) == named
    return stored


def test_a_sweep_in_storage_uploads_its_segments_and_removes_the_merged_ones(table, tmp_path, prefix, s3_endpoint,
                                                                              s3_filesystem, monkeypatch):
    watch = UploadWatch(monkeypatch, s3_filesystem, f"{prefix}/exp", str(tmp_path / "scratch"))
    grid = run(table, uri(s3_endpoint, prefix), "exp")
    assert watch.problems == []
    assert watch.syncs > N_TRIALS  # (a sync after every snapshot)

    stored = assert_storage_holds_what_its_snapshots_name(s3_filesystem, f"{prefix}/exp", watch.staging,
                                                          str(tmp_path))
    # Merged-away segments were in storage, and are gone.
    assert len(watch.stored_segments_seen - segments_of(stored)) >= MAX_SEGMENTS
    newest = snapshots_of(stored)[-1]
    loaded = read_alone(stored, newest, str(tmp_path / "newest"))
    assert loaded["format"] == state.SEGMENTS_FORMAT and len(loaded["trials"]) == N_TRIALS
    # The snapshot does not hold the finished trials' records again: it has nil in their
    # places, but for the few finished since the last segment.
    raw = unpacked_alone(stored[newest], str(tmp_path))
    held = [record for record in raw["trials"] if record is not None]
    assert len(held) <= max(SEGMENT_MIN_RECORDS, N_TRIALS // 8)
    assert sum(map(len, held)) * 5 < sum(len(record) for record in loaded["trials"])
    assert sum(name is not None for name in raw["dirnames"]) == len(held)

    from_storage = tune.ResultGrid.from_path(uri(s3_endpoint, f"{prefix}/exp"))
    assert len(from_storage) == N_TRIALS
    assert by_config(from_storage, done=False) == by_config(grid, done=False)


def test_a_restore_from_storage_reads_the_segments_back_and_retires_them(table, tmp_path, prefix, s3_endpoint,
                                                                         s3_filesystem, monkeypatch):
    whole = by_config(run(table, str(tmp_path / "local"), "whole"))
    watch = UploadWatch(monkeypatch, s3_filesystem, f"{prefix}/cut", str(tmp_path / "scratch"))
    first = run(table, uri(s3_endpoint, prefix), "cut", callbacks=[CtrlCAtResult(N_TRIALS * N_EPOCHS // 2)])
    finished_first = {config: metrics for config, metrics in by_config(first).items() if metrics[3] is True}
    assert SEGMENT_MIN_RECORDS * MAX_SEGMENTS < len(finished_first) < N_TRIALS
    first_stored = experiment_files(s3_filesystem, f"{prefix}/cut")
    first_segments = segments_of(first_stored)
    # The snapshot a restore reads holds nil for most finished trials: their records are in
    # the segments it names.
    newest = unpacked_alone(first_stored[snapshots_of(first_stored)[-1]], str(tmp_path))
    assert {entry[0] for entry in newest["segments"]} <= first_segments
    assert sum(record is None for record in newest["trials"]) >= len(finished_first) - SEGMENT_MIN_RECORDS

    # Another machine: nothing local, the experiment comes from storage.
    monkeypatch.setenv("FASTTUNE_STORAGE_CACHE", str(tmp_path / "other-machine"))
    syncs_before = watch.syncs
    restored = tune.Tuner.restore(uri(s3_endpoint, f"{prefix}/cut"),
                                  trainable=Simulation(table, num_workers=3, write_results=True, engine="runner"))
    grid = restored.fit()
    assert watch.problems == []
    assert watch.syncs - syncs_before > 2
    # Every trial, the ones finished before the restore as they were (their records came
    # from storage's segments), the others run to their end as in a sweep never interrupted.
    assert by_config(grid) == whole
    assert by_config(grid).items() >= finished_first.items()
    stored = assert_storage_holds_what_its_snapshots_name(s3_filesystem, f"{prefix}/cut", watch.staging,
                                                          str(tmp_path))
    assert not first_segments & segments_of(stored)  # the first run's segments are retired


def test_a_merged_away_segment_stays_in_storage_while_a_snapshot_there_names_it(table, tmp_path, prefix, s3_endpoint,
                                                                                 s3_filesystem, monkeypatch):
    """Uploads only at every third snapshot: storage's older snapshot is older than the
    staging copy's, and still names segments merged away since."""
    watch = UploadWatch(monkeypatch, s3_filesystem, f"{prefix}/exp", str(tmp_path / "scratch"), every=3)
    grid = run(table, uri(s3_endpoint, prefix), "exp")
    assert watch.problems == []
    assert watch.written > N_TRIALS and watch.syncs < watch.written
    assert watch.kept_for_storage  # (else this test could not see a removal come too early)

    stored = experiment_files(s3_filesystem, f"{prefix}/exp")
    named = set()
    for snapshot in snapshots_of(stored):
        named |= named_segments(stored[snapshot], str(tmp_path))
    assert named <= segments_of(stored)
    assert len(watch.stored_segments_seen - segments_of(stored)) >= MAX_SEGMENTS
    from_storage = tune.ResultGrid.from_path(uri(s3_endpoint, f"{prefix}/exp"))
    assert by_config(from_storage, done=False) == by_config(grid, done=False)


def test_a_fresh_run_under_the_name_of_one_in_storage_removes_that_run_s_segments(table, tmp_path, prefix,
                                                                                  s3_endpoint, s3_filesystem,
                                                                                  monkeypatch):
    """As in a local directory, where the new run's first snapshot retires the segment
    files it finds: in storage the staging copy starts empty, and the earlier run's
    segments are in storage only."""
    watch = UploadWatch(monkeypatch, s3_filesystem, f"{prefix}/exp", str(tmp_path / "scratch"))
    run(table, uri(s3_endpoint, prefix), "exp")
    earlier = segments_of(experiment_files(s3_filesystem, f"{prefix}/exp"))
    assert earlier

    grid = run(table, uri(s3_endpoint, prefix), "exp")  # not a restore: a sweep of its own
    assert watch.problems == []
    assert len(grid) == N_TRIALS
    stored = assert_storage_holds_what_its_snapshots_name(s3_filesystem, f"{prefix}/exp", watch.staging,
                                                          str(tmp_path))
    assert not earlier & segments_of(stored)
