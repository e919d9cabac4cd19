"""A worker node keeps a copy of each checkpoint it uploads (``fasttune._storage``'s node
cache), so that the trial's next run segment there resumes without a request to storage.

Against moto's S3 server through the recording proxy (``faulty_s3``, refusing nothing), so
that each test counts the requests a resume makes.  The sweep runs on Ray's workers; the
other tests drive a worker's checkpoint places (``StoredCheckpoints``) in this process,
each "node" a cache root of its own (``FASTTUNE_STORAGE_CACHE``).
"""
import json
import os
import struct
import uuid

import pytest

import fasttune as tune
from fasttune import _storage as storage
from fasttune.execution._experiment_state import HISTORIES_FORMAT
from fasttune.execution._worker_checkpoints import StoredCheckpoints
from fasttune_testing import PauseOnceAtThree, report_with_step_checkpoint, restored_step

ITERATIONS = 6


def train(config):
    """Reports steps 1..ITERATIONS with a checkpoint of the step at each even one; resumes
    after its checkpoint's step."""
    start = restored_step()
    for step in range(start + 1, ITERATIONS + 1):
        metrics = {"score": config["x"] * step, "restored_from": start}
        if step % 2 == 0:
            report_with_step_checkpoint(metrics, step)
        else:
            tune.report(metrics)


def s3_uri(path, endpoint):
    return f"s3://{path}?endpoint_override={endpoint}&scheme=http"


@pytest.fixture
def prefix(s3_bucket):
    return f"{s3_bucket}/node-cache-{uuid.uuid4().hex[:8]}"


def checkpoint_reads(requests):
    """(method, path) of each request that read a checkpoint's object."""
    return [(r.method, r.path) for r in requests if r.method in ("GET", "HEAD") and "/checkpoint_" in r.path]


def kept_on_ray_node(trial_location):
    """The tokens of the kept copies of the trial at ``trial_location`` on Ray's node (its
    workers' cache root, not this test's)."""
    import ray

    def kept(at):
        from fasttune import _storage as worker_storage

        return [k.token for k in worker_storage.kept_checkpoints(at)]

    return ray.get(ray.remote(num_cpus=0)(kept).remote(trial_location))


def test_a_trial_that_pauses_resumes_from_its_nodes_copy_without_reading_storage(ray_session, prefix, faulty_s3,
                                                                                  tmp_path, monkeypatch):
    monkeypatch.setenv("FASTTUNE_STORAGE_CACHE", str(tmp_path / "driver-cache"))
    tuner = tune.Tuner(
        train, param_space={"x": tune.grid_search([1, 2])},
        tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=PauseOnceAtThree()),
        run_config=tune.RunConfig(name="exp", storage_path=s3_uri(prefix, faulty_s3.address), verbose=0))
    grid = tuner.fit()
    during_fit = list(faulty_s3.requests)
    assert grid.num_errors == 0
    for result in grid:
        x = result.config["x"]
        history = [json.loads(line) for line in open(os.path.join(result.path, "result.json"))]
        # Paused at step 3, resumed from the checkpoint of step 2: what it restored is right.
        assert [(r["training_iteration"], r["score"], r["restored_from"]) for r in history] == [
            (1, x, 0), (2, 2 * x, 0), (3, 3 * x, 2), (4, 4 * x, 2), (5, 5 * x, 2), (6, 6 * x, 2)]
    # Each resume used the copy its node kept when it uploaded that checkpoint: no request
    # read a checkpoint (without the node's copy: a LIST, a HEAD and a GET per resume).
    assert checkpoint_reads(during_fit) == []
    assert len([r for r in during_fit if r.method == "PUT" and "/checkpoint_" in r.path]) == 2 * 3
    # The trials ended: their nodes' copies are gone.
    experiment = storage.resolve(grid.experiment_path)
    for result in grid:
        assert kept_on_ray_node(experiment.join(os.path.basename(result.path))) == []


# ---- a worker's checkpoint places, in this process --------------------------------------
@pytest.fixture
def experiment(prefix, faulty_s3, tmp_path):
    """An ExperimentStorage on the proxy, and its staging directory (the driver's names)."""
    staging = str(tmp_path / "staging" / "exp")
    return storage.ExperimentStorage(storage.resolve(s3_uri(f"{prefix}/exp", faulty_s3.address)), staging)


class Node:
    """A worker on a node of its own: its own cache root."""

    def __init__(self, kept, root, monkeypatch):
        self.root, self._monkeypatch = str(root), monkeypatch
        self.places = StoredCheckpoints(kept)
        self.kept = kept

    def __enter__(self):
        self._monkeypatch.setenv("FASTTUNE_STORAGE_CACHE", self.root)
        return self.places

    def __exit__(self, *exc):
        return False

    def kept_tokens(self, trial_dir):
        with self:
            return [k.token for k in storage.kept_checkpoints(self.kept.location_of(trial_dir))]


def user_checkpoint(tmp_path, step, size=1):
    """A directory as a user reports it: ``step`` written ``size`` times."""
    directory = tmp_path / f"user-{uuid.uuid4().hex[:6]}"
    directory.mkdir()
    (directory / "step").write_text(str(step) * size)
    return tune.Checkpoint.from_directory(str(directory))


def resume(places, path, token):
    """What a resuming trainable reads from the checkpoint at ``path`` (``token``: the
    upload the driver names), as a worker's run segment does."""
    places.resuming(path, token)
    with places.checkpoint(path).as_directory() as directory:
        step = open(os.path.join(directory, "step")).read()
    places.restored(path)
    return step


@pytest.fixture
def node_a(experiment, tmp_path, monkeypatch):
    return Node(experiment, tmp_path / "node-a", monkeypatch)


@pytest.fixture
def node_b(experiment, tmp_path, monkeypatch):
    return Node(experiment, tmp_path / "node-b", monkeypatch)


def test_a_rewritten_checkpoint_is_read_from_storage_under_its_new_token(experiment, node_a, node_b, faulty_s3,
                                                                          tmp_path):
    trial_dir = os.path.join(experiment.staging, "trial_0")
    path = os.path.join(trial_dir, "checkpoint_000002")
    # Node A uploads checkpoint_000002 (a segment whose report never reached the driver);
    # the retry, on node B, writes checkpoint_000002 again with other content.
    with node_a as places:
        stale = places.persist(user_checkpoint(tmp_path, 4), trial_dir, "checkpoint_000002")
    with node_b as places:
        fresh = places.persist(user_checkpoint(tmp_path, 6), trial_dir, "checkpoint_000002")
    assert stale != fresh and node_a.kept_tokens(trial_dir) == [stale] and node_b.kept_tokens(trial_dir) == [fresh]

    # The driver resumes the trial on node A from the checkpoint it recorded (the retry's):
    # node A's copy is of another upload, so it reads storage, and gets the new content.
    start = len(faulty_s3.requests)
    with node_a as places:
        assert resume(places, path, fresh) == "6"
    assert [method for method, _ in checkpoint_reads(faulty_s3.requests[start:])] == ["HEAD", "GET"]
    # What it downloaded is node A's copy of that upload now: the next resume reads nothing.
    assert node_a.kept_tokens(trial_dir) == [fresh]
    start = len(faulty_s3.requests)
    with node_a as places:
        assert resume(places, path, fresh) == "6"
    with node_b as places:
        assert resume(places, path, fresh) == "6"
    assert checkpoint_reads(faulty_s3.requests[start:]) == []


def test_a_segment_that_downloaded_its_checkpoint_keeps_the_newer_one_it_uploaded(experiment, node_a, node_b,
                                                                                   faulty_s3, tmp_path):
    trial_dir = os.path.join(experiment.staging, "trial_0")
    with node_b as places:
        first = places.persist(user_checkpoint(tmp_path, 2), trial_dir, "checkpoint_000000")
    # The trial resumes on node A (a download), reports a newer checkpoint, then pauses.
    with node_a as places:
        places.resuming(os.path.join(trial_dir, "checkpoint_000000"), first)
        with places.checkpoint(os.path.join(trial_dir, "checkpoint_000000")).as_directory() as directory:
            assert open(os.path.join(directory, "step")).read() == "2"
        newer = places.persist(user_checkpoint(tmp_path, 4), trial_dir, "checkpoint_000001")
        places.segment_ended(trial_dir, os.path.join(trial_dir, "checkpoint_000000"))
    # Node A keeps the newer one, which the trial's next resume needs: it reads nothing.
    assert node_a.kept_tokens(trial_dir) == [newer]
    start = len(faulty_s3.requests)
    with node_a as places:
        assert resume(places, os.path.join(trial_dir, "checkpoint_000001"), newer) == "4"
    assert checkpoint_reads(faulty_s3.requests[start:]) == []


def test_an_exploit_on_the_donors_node_resumes_from_its_copy_without_reading_storage(experiment, node_a,
                                                                                      faulty_s3, tmp_path):
    donor_dir, clone_dir = (os.path.join(experiment.staging, name) for name in ("trial_0", "trial_1"))
    donor = os.path.join(donor_dir, "checkpoint_000001")
    with node_a as places:
        donor_token = places.persist(user_checkpoint(tmp_path, 4), donor_dir, "checkpoint_000001")
        start = len(faulty_s3.requests)
        # PBT's exploit: the donor's checkpoint copied inside storage into the clone's
        # directory, then the clone resumes from it on the same node.
        token = places.clone(donor, clone_dir, "checkpoint_000003", donor_token)
        assert resume(places, os.path.join(clone_dir, "checkpoint_000003"), token) == "4"
        copies = [r for r in faulty_s3.requests[start:] if r.method == "PUT"]
        assert checkpoint_reads(faulty_s3.requests[start:]) == []
        assert [r.headers.get("x-amz-copy-source", "").split("?")[0].endswith("trial_0/checkpoint_000001/step")
                for r in copies] == [True]
        # Without the donor's token (an older snapshot), the clone's resume downloads it.
        token = places.clone(donor, clone_dir, "checkpoint_000004")
        start = len(faulty_s3.requests)
        assert resume(places, os.path.join(clone_dir, "checkpoint_000004"), token) == "4"
    assert [method for method, _ in checkpoint_reads(faulty_s3.requests[start:])] == ["HEAD", "GET"]


def test_no_token_always_reads_storage(experiment, node_a, faulty_s3, tmp_path):
    # A checkpoint an older snapshot names carries no token: never taken from a node's copy.
    trial_dir = os.path.join(experiment.staging, "trial_0")
    with node_a as places:
        places.persist(user_checkpoint(tmp_path, 2), trial_dir, "checkpoint_000000")
        start = len(faulty_s3.requests)
        assert resume(places, os.path.join(trial_dir, "checkpoint_000000"), None) == "2"
    assert [method for method, _ in checkpoint_reads(faulty_s3.requests[start:])] == ["HEAD", "GET"]


def test_a_node_keeps_one_copy_per_trial_and_drops_it_when_the_trial_ends(experiment, node_a, faulty_s3, tmp_path):
    trial_dir = os.path.join(experiment.staging, "trial_0")
    other_dir = os.path.join(experiment.staging, "trial_1")
    with node_a as places:
        places.persist(user_checkpoint(tmp_path, 2), trial_dir, "checkpoint_000000")
        newest = places.persist(user_checkpoint(tmp_path, 4), trial_dir, "checkpoint_000001")
        other = places.persist(user_checkpoint(tmp_path, 2), other_dir, "checkpoint_000000")
    assert node_a.kept_tokens(trial_dir) == [newest] and node_a.kept_tokens(other_dir) == [other]
    start = len(faulty_s3.requests)
    with node_a as places:
        assert resume(places, os.path.join(trial_dir, "checkpoint_000001"), newest) == "4"
        # A segment that ends paused keeps it; the trial's end (done or stopped) drops it.
        places.segment_ended(trial_dir, None)
        assert node_a.kept_tokens(trial_dir) == [newest]
        places.segment_ended(trial_dir, None, trial_ended=True)
    assert checkpoint_reads(faulty_s3.requests[start:]) == []
    assert node_a.kept_tokens(trial_dir) == [] and node_a.kept_tokens(other_dir) == [other]


def test_the_least_recently_used_copies_go_beyond_the_byte_bound(experiment, node_a, faulty_s3, tmp_path,
                                                                   monkeypatch):
    monkeypatch.setenv(storage.NODE_CACHE_BYTES_ENV, "300")  # three checkpoints of 100 bytes
    trial_dirs = [os.path.join(experiment.staging, f"trial_{i}") for i in range(4)]
    tokens = []
    with node_a as places:
        for i, trial_dir in enumerate(trial_dirs[:3]):
            tokens.append(places.persist(user_checkpoint(tmp_path, i, size=100), trial_dir, "checkpoint_000000"))
        # Last used in this order, long ago: trial_0, trial_2, trial_1.
        for trial_dir, used_at in zip(trial_dirs, [1000, 3000, 2000]):
            (kept,) = storage.kept_checkpoints(experiment.location_of(trial_dir))
            os.utime(kept.path, (used_at, used_at))
        # trial_0 resumes from its copy: the most recently used now.
        start = len(faulty_s3.requests)
        assert resume(places, os.path.join(trial_dirs[0], "checkpoint_000000"), tokens[0]) == "0" * 100
        assert checkpoint_reads(faulty_s3.requests[start:]) == []
        # A fourth copy would exceed the bound: the least recently used one (trial_2's) goes.
        tokens.append(places.persist(user_checkpoint(tmp_path, 3, size=100), trial_dirs[3], "checkpoint_000000"))
        # One larger than the bound is not kept, and evicts nothing.
        places.persist(user_checkpoint(tmp_path, 9, size=301), trial_dirs[1], "checkpoint_000001")
    assert [node_a.kept_tokens(d) for d in trial_dirs] == [[tokens[0]], [tokens[1]], [], [tokens[3]]]


def test_a_bound_of_zero_keeps_nothing(experiment, node_a, faulty_s3, tmp_path, monkeypatch):
    monkeypatch.setenv(storage.NODE_CACHE_BYTES_ENV, "0")
    trial_dir = os.path.join(experiment.staging, "trial_0")
    with node_a as places:
        token = places.persist(user_checkpoint(tmp_path, 2), trial_dir, "checkpoint_000000")
        start = len(faulty_s3.requests)
        assert resume(places, os.path.join(trial_dir, "checkpoint_000000"), token) == "2"
    assert [method for method, _ in checkpoint_reads(faulty_s3.requests[start:])] == ["HEAD", "GET"]
    assert node_a.kept_tokens(trial_dir) == []
    assert not os.listdir(os.path.join(node_a.root, "checkpoints"))


FULL_DISK_WORKER = """
import os, resource, sys
import fasttune as tune
from fasttune import _storage as storage
from fasttune.execution._experiment_state import HISTORIES_FORMAT
from fasttune.execution._worker_checkpoints import StoredCheckpoints

uri, staging, user_dir = sys.argv[1:4]
kept = storage.ExperimentStorage(storage.resolve(uri), staging)
places = StoredCheckpoints(kept)
# Files this process writes stop at 1000 bytes (EFBIG, as on a full disk): the upload only
# reads the user's 5000-byte file, the node's copy of it cannot be written.
resource.setrlimit(resource.RLIMIT_FSIZE, (1000, resource.RLIM_INFINITY))
token = places.persist(tune.Checkpoint.from_directory(user_dir), os.path.join(staging, "trial_0"),
                       "checkpoint_000000")
print(token, len(storage.kept_checkpoints()), sorted(os.listdir(os.path.join(storage.cache_root(), "checkpoints"))))
"""


def test_a_full_disk_skips_the_nodes_copy_and_the_upload_stands(experiment, faulty_s3, s3_filesystem, tmp_path):
    import subprocess
    import sys

    user_dir = tmp_path / "user"
    user_dir.mkdir()
    (user_dir / "step").write_text("7" * 5000)
    env = dict(os.environ, FASTTUNE_STORAGE_CACHE=str(tmp_path / "node"),
               PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    done = subprocess.run([sys.executable, "-c", FULL_DISK_WORKER, experiment.location.uri, experiment.staging,
                           str(user_dir)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    token, kept, left = done.stdout.split(maxsplit=2)
    assert len(token) == 32 and kept == "0" and left.strip() == "[]"  # nothing kept, nothing half-made
    with s3_filesystem.open_input_stream(f"{experiment.location.path}/trial_0/checkpoint_000000/step") as f:
        assert f.read() == b"7" * 5000


# ---- a trainable that writes into the directory it restored from -----------------------
def train_writing_into_its_restored_directory(config):
    """Saves its step into the directory it restored from (a fresh one at first) at each
    even step, and fails once, after such a save and before reporting it."""
    checkpoint = tune.get_checkpoint()
    state, work = 0, None
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            state, work = int(open(os.path.join(directory, "state")).read()), directory
    start = state
    for step in range(start + 1, ITERATIONS + 1):
        metrics = {"step": step, "restored_from": start}
        if step % 2:
            tune.report(metrics)
            continue
        if work is None:
            work = os.path.join(config["scratch"], f"work-{uuid.uuid4().hex[:8]}")
            os.makedirs(work)
        with open(os.path.join(work, "state"), "w") as f:  # rewrites the file in place, as torch.save does
            f.write(str(step))
        if start and not os.path.exists(config["failed_once"]):
            open(config["failed_once"], "w").close()
            raise RuntimeError("fails once after saving, before reporting")
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(work))


def test_a_trainable_writing_into_its_restored_directory_resumes_as_without_the_nodes_copy(ray_session, tmp_path,
                                                                                             monkeypatch):
    monkeypatch.setenv("FASTTUNE_STORAGE_CACHE", str(tmp_path / "driver-cache"))
    store = tmp_path / "store"
    store.mkdir()
    config = {"scratch": str(tmp_path), "failed_once": str(tmp_path / "failed-once")}
    grid = tune.Tuner(
        train_writing_into_its_restored_directory, param_space=config,
        tune_config=tune.TuneConfig(metric="step", mode="max", scheduler=PauseOnceAtThree()),
        run_config=tune.RunConfig(name="exp", storage_path=f"file://{store}", verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=2))).fit()
    assert grid.num_errors == 0 and os.path.exists(config["failed_once"])
    (result,) = grid
    history = [json.loads(line) for line in open(store / "exp" / os.path.basename(result.path) / "result.json")]
    # Paused at step 3 and resumed from step 2's checkpoint, then failed after writing 4
    # into that directory: the retry resumes from step 2's checkpoint as storage holds it
    # (with the node's copy shared with the trainable's directory it read 4).
    assert [(r["step"], r["restored_from"]) for r in history] == [(1, 0), (2, 0), (3, 2), (4, 2), (5, 2), (6, 2)]
    # The snapshot's format is the one its checkpoints' histories need (test_checkpoint_uploads
    # covers that a finished trial's record carries no upload), also after a restore.
    snapshot = sorted(name for name in os.listdir(store / "exp") if name.startswith("experiment_state-"))[-1]
    assert struct.unpack_from("<H", open(store / "exp" / snapshot, "rb").read(), 8) == (HISTORIES_FORMAT,)
    tune.Tuner.restore(f"file://{store}/exp", trainable=train_writing_into_its_restored_directory).fit()
    latest = sorted(name for name in os.listdir(store / "exp") if name.startswith("experiment_state-"))[-1]
    assert latest != snapshot
    assert struct.unpack_from("<H", open(store / "exp" / latest, "rb").read(), 8) == (HISTORIES_FORMAT,)


def uploaded_by(node, experiment, tmp_path):
    """``(trial dir, checkpoint path, token)`` of trial_0's checkpoint 0 (step 2), uploaded by ``node``."""
    trial_dir = os.path.join(experiment.staging, "trial_0")
    path = os.path.join(trial_dir, "checkpoint_000000")
    with node as places:
        token = places.persist(user_checkpoint(tmp_path, 2), trial_dir, "checkpoint_000000")
    return trial_dir, path, token


def write_into(places, path, token, text):
    """A segment resuming from ``path`` (upload ``token``) that writes ``text`` into the
    directory it restored from, then pauses; returns what it read."""
    places.resuming(path, token)
    with places.checkpoint(path).as_directory() as directory:
        read = open(os.path.join(directory, "step")).read()
        with open(os.path.join(directory, "step"), "w") as f:
            f.write(text)
    places.segment_ended(os.path.dirname(path), path)
    return read


def test_writing_into_a_directory_resumed_from_the_nodes_copy_leaves_the_copy_alone(experiment, node_a,
                                                                                   faulty_s3, tmp_path):
    trial_dir = os.path.join(experiment.staging, "trial_0")
    path = os.path.join(trial_dir, "checkpoint_000000")
    with node_a as places:
        token = places.persist(user_checkpoint(tmp_path, 2), trial_dir, "checkpoint_000000")
        start = len(faulty_s3.requests)
        assert write_into(places, path, token, "scribbled") == "2"
        assert resume(places, path, token) == "2"
    assert checkpoint_reads(faulty_s3.requests[start:]) == [] and node_a.kept_tokens(trial_dir) == [token]


def test_a_download_the_trainable_wrote_into_is_not_kept(experiment, node_a, node_b, faulty_s3, tmp_path):
    trial_dir, path, token = uploaded_by(node_b, experiment, tmp_path)
    with node_a as places:
        assert write_into(places, path, token, "scribbled") == "2"  # downloaded, then written into
    assert node_a.kept_tokens(trial_dir) == []
    start = len(faulty_s3.requests)
    with node_a as places:
        assert resume(places, path, token) == "2"  # downloaded again, unchanged: kept this time
    assert [method for method, _ in checkpoint_reads(faulty_s3.requests[start:])] == ["HEAD", "GET"]
    assert node_a.kept_tokens(trial_dir) == [token]


def write_same_size_keeping_times(places, path, token, text):
    """As write_into, but the new content has the old size and the file gets its old times
    back (what copy2, tar -p or rsync -t do)."""
    places.resuming(path, token)
    with places.checkpoint(path).as_directory() as directory:
        target = os.path.join(directory, "step")
        before = os.stat(target)
        with open(target, "w") as f:
            f.write(text)
        os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert os.stat(target).st_size == before.st_size
    places.segment_ended(os.path.dirname(path), path)


def test_a_download_rewritten_at_its_size_and_times_is_not_kept(experiment, node_a, node_b, tmp_path):
    trial_dir, path, token = uploaded_by(node_b, experiment, tmp_path)
    with node_a as places:
        write_same_size_keeping_times(places, path, token, "9")
    assert node_a.kept_tokens(trial_dir) == []


def test_a_download_whose_times_cannot_be_set_is_read_and_not_kept(experiment, node_a, node_b, tmp_path,
                                                                    monkeypatch):
    # A filesystem that refuses utime (some FUSE and network mounts): the record of the
    # download cannot be made, so the copy is not kept; the resume itself goes on.
    trial_dir, path, token = uploaded_by(node_b, experiment, tmp_path)

    def refused(*args, **kwargs):
        raise PermissionError(1, "Operation not permitted")

    with node_a as places:
        monkeypatch.setattr(storage.os, "utime", refused)
        places.resuming(path, token)
        with places.checkpoint(path).as_directory() as directory:
            assert open(os.path.join(directory, "step")).read() == "2"
        places.segment_ended(trial_dir, path)
        monkeypatch.undo()
    assert node_a.kept_tokens(trial_dir) == []
    assert not [name for name in os.listdir(os.path.join(node_a.root, "checkpoints")) if name.endswith(".tmp")]


def test_a_download_without_its_record_is_not_kept(experiment, node_a, node_b, tmp_path):
    trial_dir, path, token = uploaded_by(node_b, experiment, tmp_path)
    with node_a as places:
        places.resuming(path, token)
        with places.checkpoint(path).as_directory() as directory:
            (record,) = [name for name in os.listdir(os.path.dirname(directory)) if name.endswith(".json")]
            os.unlink(os.path.join(os.path.dirname(directory), record))
        places.segment_ended(trial_dir, path)
    assert node_a.kept_tokens(trial_dir) == []
    assert [name for name in os.listdir(os.path.join(node_a.root, "checkpoints"))] == []


def test_a_clone_writing_into_its_restored_directory_leaves_the_donors_copy_alone(experiment, node_a, faulty_s3,
                                                                                  tmp_path):
    donor_dir, clone_dir = (os.path.join(experiment.staging, name) for name in ("trial_0", "trial_1"))
    donor = os.path.join(donor_dir, "checkpoint_000003")
    with node_a as places:
        donor_token = places.persist(user_checkpoint(tmp_path, 3), donor_dir, "checkpoint_000003")
        token = places.clone(donor, clone_dir, "checkpoint_000004", donor_token)
        start = len(faulty_s3.requests)
        assert write_into(places, os.path.join(clone_dir, "checkpoint_000004"), token, "clone-trained") == "3"
        assert resume(places, donor, donor_token) == "3"
        assert resume(places, os.path.join(clone_dir, "checkpoint_000004"), token) == "3"
    assert checkpoint_reads(faulty_s3.requests[start:]) == []


def test_a_clones_copy_is_used_now_not_when_the_donors_was(experiment, node_a, tmp_path):
    donor_dir, clone_dir = (os.path.join(experiment.staging, name) for name in ("trial_0", "trial_1"))
    with node_a as places:
        donor_token = places.persist(user_checkpoint(tmp_path, 3), donor_dir, "checkpoint_000003")
        (donor_copy,) = storage.kept_checkpoints(experiment.location_of(donor_dir))
        os.utime(donor_copy.path, (1000, 1000))
        places.clone(os.path.join(donor_dir, "checkpoint_000003"), clone_dir, "checkpoint_000004", donor_token)
        (clone_copy,) = storage.kept_checkpoints(experiment.location_of(clone_dir))
    # Else the clone's copy would be the first the byte bound evicts.
    assert os.stat(clone_copy.path).st_mtime > os.stat(donor_copy.path).st_mtime + 3600


# ---- the node cache's own upkeep --------------------------------------------------------
def test_what_the_node_keeps_is_what_was_uploaded_when_the_user_writes_meanwhile(experiment, node_a, s3_filesystem,
                                                                                 tmp_path, monkeypatch):
    trial_dir = os.path.join(experiment.staging, "trial_0")
    user = user_checkpoint(tmp_path, 2)
    upload = storage.upload_directory

    def upload_then_user_writes(source, location):
        upload(source, location)
        with open(os.path.join(user.path, "step"), "w") as f:  # the user's next step, while report() runs
            f.write("4")

    monkeypatch.setattr(storage, "upload_directory", upload_then_user_writes)
    with node_a as places:
        token = places.persist(user, trial_dir, "checkpoint_000000")
        (kept,) = storage.kept_checkpoints(experiment.location_of(trial_dir))
    with s3_filesystem.open_input_stream(f"{experiment.location.path}/trial_0/checkpoint_000000/step") as f:
        uploaded = f.read().decode()
    assert kept.token == token and open(os.path.join(kept.path, "step")).read() == uploaded == "2"


# A process that makes a copy in the node's scratch, tells its path on stdout, and holds it
# until its stdin closes (or it is killed).
_SCRATCH_HOLDER = """
import os, sys
from fasttune import _storage as storage
with storage.node_cache_scratch() as made:
    os.makedirs(os.path.join(made, "files"))
    open(os.path.join(made, "files", "weights"), "w").write("half a copy")
    print(made, flush=True)
    sys.stdin.read()
"""


def scratch_holder(root):
    """A child process holding a scratch directory in the cache at ``root``; returns it and
    the directory (the child has locked it when it tells it)."""
    import subprocess
    import sys

    env = dict(os.environ, FASTTUNE_STORAGE_CACHE=str(root), PYTHONPATH=os.pathsep.join(sys.path))
    child = subprocess.Popen([sys.executable, "-c", _SCRATCH_HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             env=env, text=True)
    return child, child.stdout.readline().strip()


def test_scratch_a_killed_process_left_goes_with_the_next_copy_and_a_live_ones_stays(experiment, node_a, tmp_path):
    import signal

    dead, dead_scratch = scratch_holder(node_a.root)
    live, live_scratch = scratch_holder(node_a.root)
    os.kill(dead.pid, signal.SIGKILL)
    assert os.waitpid(dead.pid, 0)[0] == dead.pid
    dead.stdout.close()
    assert os.path.isfile(os.path.join(dead_scratch, "files", "weights"))  # the kill left it
    with node_a as places:
        places.persist(user_checkpoint(tmp_path, 2), os.path.join(experiment.staging, "trial_0"), "checkpoint_000000")
        assert len(storage.kept_checkpoints()) == 1
    assert not os.path.exists(dead_scratch)
    with open(os.path.join(live_scratch, "files", "weights")) as f:  # a slow copy still being made
        assert f.read() == "half a copy"
    live.stdin.close()  # it ends, and removes its own
    assert live.wait() == 0 and not os.path.exists(live_scratch)
    live.stdout.close()


def test_a_worker_starting_removes_what_killed_processes_left(experiment, node_a, monkeypatch):
    dead, dead_scratch = scratch_holder(node_a.root)
    dead.kill()
    dead.wait()
    dead.stdout.close()
    gone = os.path.join(node_a.root, "checkpoints", ".gone-" + uuid.uuid4().hex)  # a removal cut short
    os.makedirs(os.path.join(gone, "sub"))
    monkeypatch.setenv("FASTTUNE_STORAGE_CACHE", node_a.root)
    StoredCheckpoints(experiment)
    assert not os.path.exists(dead_scratch) and not os.path.exists(gone)


@pytest.mark.parametrize("swept_after", ["mkdir", "open"])
def test_scratch_swept_before_its_process_locked_it_stays(monkeypatch, tmp_path, swept_after):
    monkeypatch.setenv("FASTTUNE_STORAGE_CACHE", str(tmp_path))
    module = os
    call, swept = getattr(module, swept_after), []

    def then_swept(*args, **kwargs):
        made = call(*args, **kwargs)
        directory = args[0] if swept_after == "mkdir" else os.path.dirname(args[0])
        if not swept and os.path.basename(directory).startswith(".unlocked-"):
            # Another worker's sweep comes between the scratch's making and its lock.
            swept.append((storage.remove_dead_scratch(), os.path.isdir(directory)))
        return made

    monkeypatch.setattr(module, swept_after, then_swept)
    with storage.node_cache_scratch() as made:
        assert swept == [(0, True)] and os.path.isdir(made)
        assert os.path.basename(made).startswith(".scratch-")
        assert storage.remove_dead_scratch() == 0 and os.path.isdir(made)  # this one is locked


def test_scratch_that_cannot_be_locked_is_never_swept(monkeypatch, tmp_path):
    import errno
    import fcntl

    monkeypatch.setenv("FASTTUNE_STORAGE_CACHE", str(tmp_path))
    flock, refused = fcntl.flock, []

    def no_lock_once(fd, operation):
        if not refused:  # a network file system's lock service away for a moment
            refused.append(fd)
            raise OSError(errno.ENOLCK, "No locks available")
        return flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", no_lock_once)
    with storage.node_cache_scratch() as made:
        os.makedirs(os.path.join(made, "files"))
        # The next sweep's locks work: it must still tell this live copy from a dead one.
        assert refused and storage.remove_dead_scratch() == 0 and os.path.isdir(os.path.join(made, "files"))
    assert not os.path.exists(made)


def test_a_sweep_locks_with_a_descriptor_open_for_writing(monkeypatch, tmp_path):
    import errno
    import fcntl

    monkeypatch.setenv("FASTTUNE_STORAGE_CACHE", str(tmp_path))
    flock = fcntl.flock

    def as_nfs4(fd, operation):  # NFSv4 refuses flock on a descriptor opened read-only
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY:
            raise OSError(errno.EBADF, "Bad file descriptor")
        return flock(fd, operation)

    dead, dead_scratch = scratch_holder(tmp_path)
    dead.kill()
    dead.wait()
    dead.stdout.close()
    monkeypatch.setattr(fcntl, "flock", as_nfs4)
    with storage.node_cache_scratch() as made:
        assert storage.remove_dead_scratch() == 1 and not os.path.exists(dead_scratch) and os.path.isdir(made)


def test_a_sweep_leaves_its_own_process_scratch_where_locks_would_not_stop_it(monkeypatch, tmp_path):
    import fcntl

    monkeypatch.setenv("FASTTUNE_STORAGE_CACHE", str(tmp_path))
    with storage.node_cache_scratch() as made:
        # NFS emulates flock with POSIX locks: the process holding one takes it again.
        monkeypatch.setattr(fcntl, "flock", lambda fd, operation: None)
        assert storage.remove_dead_scratch() == 0 and os.path.isdir(made)


def test_a_sweep_leaves_the_scratch_of_fasttune_versions_without_locks(monkeypatch, tmp_path):
    import tempfile

    monkeypatch.setenv("FASTTUNE_STORAGE_CACHE", str(tmp_path))
    kept_root = os.path.join(str(tmp_path), "checkpoints")
    os.makedirs(kept_root)
    older = tempfile.mkdtemp(prefix=".incoming-", dir=kept_root)  # an older worker's copy being made, unlocked
    with storage.node_cache_scratch() as made:  # a sweep of this version's, whose locks work
        assert storage.remove_dead_scratch() == 0 and os.path.isdir(older) and os.path.isdir(made)


def test_uploading_a_directory_that_is_gone_raises_and_writes_nothing(tmp_path):
    from pyarrow import fs

    out = tmp_path / "storage"
    at = storage.Location(fs.LocalFileSystem(), str(out / "checkpoint_000000"), f"file://{out}/checkpoint_000000")
    with pytest.raises(FileNotFoundError, match="is gone"):
        storage.upload_directory(str(tmp_path / "removed-meanwhile"), at)
    assert not out.exists()  # no empty checkpoint stands for the lost one


def test_the_least_recently_used_copies_go_beyond_the_count_bound(experiment, node_a, tmp_path, monkeypatch):
    monkeypatch.setenv(storage.NODE_CACHE_ENTRIES_ENV, "10")
    trial_dirs = [os.path.join(experiment.staging, f"trial_{i}") for i in range(11)]
    with node_a as places:
        tokens = [places.persist(user_checkpoint(tmp_path, i), trial_dir, "checkpoint_000000")
                  for i, trial_dir in enumerate(trial_dirs[:10])]
        for i, trial_dir in enumerate(trial_dirs[:10]):  # last used: trial_9 first ... trial_0 last
            (kept,) = storage.kept_checkpoints(experiment.location_of(trial_dir))
            os.utime(kept.path, (10_000 - i, 10_000 - i))
        tokens.append(places.persist(user_checkpoint(tmp_path, 10), trial_dirs[10], "checkpoint_000000"))
    # Eleven copies: down to nine (nine tenths of the bound), the two least recently used gone.
    assert [node_a.kept_tokens(d) for d in trial_dirs] == [[t] for t in tokens[:8]] + [[], [], [tokens[10]]]


def test_a_copy_kept_across_filesystems_never_appears_partial(experiment, node_a, tmp_path, monkeypatch):
    import errno
    import re
    import shutil

    rename, move, moved_to, crossing = os.rename, shutil.move, [], []
    kept_name = re.compile(r"^[0-9a-f]{24}\.[0-9a-f]{24}\.")

    def rename_not_across(source, target, *args, **kwargs):
        # The directory to keep lies on another filesystem than the kept copies.
        if not crossing and kept_name.match(os.path.basename(target)):
            crossing.append(source)
        if crossing and source == crossing[0]:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return rename(source, target, *args, **kwargs)

    def recording_move(source, target, *args, **kwargs):
        moved_to.append(os.path.basename(target))
        return move(source, target, *args, **kwargs)

    monkeypatch.setattr(os, "rename", rename_not_across)
    monkeypatch.setattr(shutil, "move", recording_move)
    trial_dir = os.path.join(experiment.staging, "trial_0")
    with node_a as places:
        token = places.persist(user_checkpoint(tmp_path, 2), trial_dir, "checkpoint_000000")
        (kept,) = storage.kept_checkpoints(experiment.location_of(trial_dir))
    # Copied under a scratch name, then renamed: no reader sees a kept name half-copied.
    assert crossing and moved_to and not any(kept_name.match(name) for name in moved_to)
    assert kept.token == token and open(os.path.join(kept.path, "step")).read() == "2"
    assert os.listdir(os.path.join(node_a.root, "checkpoints")) == [os.path.basename(kept.path)]
