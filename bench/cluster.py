"""Cluster benchmark family (issue 15): fasttune with its experiment in S3 on a simulated
Ray cluster, beside fasttune on one node with local storage and Ray Tune 2.60 on the same
cluster, in one invocation.

    python -m bench.cluster                          # all four workloads, 3 repeats
    python -m bench.cluster --quick --repeats 1      # smoke check, small sizes
    python -m bench.cluster --workloads throughput,pbt64 --sides fasttune_s3,raytune_s3
    python -m bench.cluster --workloads checkpoints --size checkpoints.raytune_s3=10

The cluster (``tests/cluster/cluster_testing.py``'s ``LocalCluster``): a head node with 0
CPUs and two worker nodes with 2 CPUs each, every node a ``ray start`` process tree on
127.0.0.1; each worker node in its own mount namespace with a private tmpfs over the
directories where nodes keep local files (fasttune's cache/staging/scratch root and the
trainables' scratch directory), so nothing can pass between driver and workers through a
shared disk.  Storage: a moto S3 server (``python -m moto.server``), fresh for every run,
reached through ``s3://bench/runs?endpoint_override=127.0.0.1:PORT&scheme=http``; the AWS
credentials (``testing``) are in the environment of the driver and of every node.

Sides (who runs, where, storage):

  fasttune_s3     fasttune on the cluster, ``storage_path`` the S3 URI
  fasttune_local  fasttune on one node (``ray.init(num_cpus=2)``), storage on local disk
                  (``--storage-root``): the number of the single-machine suite, same run
  raytune_s3      Ray Tune on the cluster, ``storage_path`` the same kind of S3 URI
  pyarrow_loop    no engine: one process on a worker node uploads the checkpoint workload's
                  bytes to the same server in a plain pyarrow loop (the bandwidth limit)
  fasttune_sync   the driver alone (no Ray): StorageSync against the S3 server

Workloads:

  throughput   bench.workloads.result_throughput: 2 trials reporting N results each as
               fast as they can; results/s over the whole fit()
  pbt64        PBT over a population of 64 (1 CPU each), a perturbation and a checkpoint
               every 4 iterations, N iterations (as bench.workloads' pbt_population_64, with
               its checkpoints written in a node-local scratch directory); results/s
  checkpoints  16 trials of N iterations, a 10 MB checkpoint every 5 (Ray Tune's release
               test durable_trainable, scaled down); MB of checkpoints per second of fit()
  snapshots    a real 10,000-trial experiment (built by a local sweep, untimed), then
               StorageSync uploading it: the first whole upload, a sync with nothing new, and
               syncs after k trials changed plus a new snapshot; seconds per sync and the
               share of wall time at the default sync_period

Every run is its own process (the driver), started by this one, which also starts and
stops the S3 server and kills whatever the run left behind (its nodes included), then
waits for the CPUs to settle.  Sides alternate, the order flipped every repeat.  Output:
Markdown on stdout, ``bench/out/cluster-<timestamp>.{json,md}`` and
``bench/out/cluster-latest.{json,md}``; exit status 1 if a run failed.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import glob
import importlib
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from bench.sweeps import cpu_busy_fraction, format_number, write_report
from bench.bench_state import StubExecutor
from bench.workloads import fit_and_count, pbt_trainable

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLUSTER_TESTING = os.path.join(REPO_ROOT, "tests", "cluster")
OUT_DIR = os.path.join(REPO_ROOT, "bench", "out")
MARKER = "@@CLUSTER_JSON@@ "

BUCKET = "bench"
CHECKPOINT_BYTES = 10 * 1000 ** 2  # Ray Tune's durable_trainable: 10 MB
CHECKPOINT_TRIALS = 16
CHECKPOINT_EVERY = 5
WORKER_NODES = 2
CPUS_PER_WORKER = 2
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


@dataclass(frozen=True)
class Side:
    """Who runs a workload, on what, with which storage."""

    engine: Optional[str]  # the module used as ``tune``; None: no engine
    cluster: bool
    s3: bool
    description: str


SIDES: Dict[str, Side] = {
    "fasttune_s3": Side("fasttune", True, True, "fasttune, head (0 CPUs) + 2 worker nodes x 2 CPUs, storage in S3"),
    "fasttune_local": Side("fasttune", False, False, "fasttune, one node (2 CPUs), storage on local disk"),
    "raytune_s3": Side("ray.tune", True, True, "Ray Tune, the same cluster, storage in S3"),
    "pyarrow_loop": Side(None, True, True, "a plain pyarrow upload loop in one process on a worker node"),
    "fasttune_sync": Side("fasttune", False, True, "fasttune's StorageSync on the driver (no Ray), S3"),
}


@dataclass(frozen=True)
class Workload:
    name: str
    unit: str
    description: str
    sides: Tuple[str, ...]
    sizes: Dict[str, int]
    quick_sizes: Dict[str, int]
    size_meaning: str
    higher_is_better: bool = True
    # (name, numerator side, denominator side, target or None) of the summary's ratios
    ratios: Tuple[Tuple[str, str, str, Optional[float]], ...] = field(default_factory=tuple)

    def size_for(self, side: str, quick: bool) -> int:
        table = self.quick_sizes if quick else self.sizes
        return table.get(side, table["default"])


_THROUGHPUT_RATIOS = (
    ("fasttune S3 cluster / fasttune local one node (target >= 0.5)", "fasttune_s3", "fasttune_local", 0.5),
    ("fasttune S3 cluster / Ray Tune S3 cluster (target >= 50)", "fasttune_s3", "raytune_s3", 50.0),
)

WORKLOADS: Dict[str, Workload] = {w.name: w for w in (
    Workload("throughput", "results/s", "2 trials (1 CPU each) reporting N small results each in a tight loop "
             "(bench.workloads.result_throughput); default loggers on",
             ("fasttune_s3", "fasttune_local", "raytune_s3"),
             {"default": 20_000, "raytune_s3": 1_000}, {"default": 200}, "results per trial (2 trials)",
             ratios=_THROUGHPUT_RATIOS),
    Workload("pbt64", "results/s", "PBT, population 64 (1 CPU each), perturbation and checkpoint every 4 "
             "iterations, checkpoints written in a node-local scratch directory",
             ("fasttune_s3", "fasttune_local", "raytune_s3"),
             {"default": 40, "raytune_s3": 12}, {"default": 8}, "iterations per trial (population 64)",
             ratios=_THROUGHPUT_RATIOS),
    Workload("checkpoints", "MB/s", f"{CHECKPOINT_TRIALS} trials, a 10 MB checkpoint every {CHECKPOINT_EVERY} "
             "iterations, iterations as fast as they go (durable_trainable scaled down); checkpoint MB per "
             "second of fit(); pyarrow_loop: the same bytes uploaded by one process on a worker node",
             ("fasttune_s3", "pyarrow_loop", "raytune_s3"),
             {"default": 10, "raytune_s3": 5}, {"default": 5}, f"iterations per trial ({CHECKPOINT_TRIALS} trials)",
             ratios=(("fasttune S3 / plain pyarrow loop (share of the bandwidth limit)", "fasttune_s3",
                      "pyarrow_loop", None),
                     ("Ray Tune S3 / plain pyarrow loop", "raytune_s3", "pyarrow_loop", None),
                     ("fasttune S3 / Ray Tune S3", "fasttune_s3", "raytune_s3", None))),
    Workload("snapshots", "s per sync", "StorageSync of a real N-trial experiment: seconds of one periodic "
             "sync after 200 trials changed and a new snapshot (details in the snapshot table)",
             ("fasttune_sync",), {"default": 10_000}, {"default": 1_000}, "trials (10 results each)",
             higher_is_better=False),
)}


# --------------------------------------------------------------------------
# Small helpers shared by both sides
# --------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def s3_uri(endpoint: str, prefix: str) -> str:
    """The URI of ``prefix`` in the bench bucket of the S3 server at ``endpoint``."""
    return f"s3://{BUCKET}/{prefix}?endpoint_override={endpoint}&scheme=http&region=us-east-1"


def s3_filesystem(endpoint: str):
    from pyarrow import fs

    return fs.S3FileSystem(endpoint_override=endpoint, scheme="http", access_key="testing", secret_key="testing",
                           region="us-east-1", allow_bucket_creation=True)


class S3Server:
    """A moto S3 server on a free loopback port with the bench bucket, logging to a file
    (a pipe nobody reads would fill and stall it)."""

    def __init__(self, log_dir: str) -> None:
        self.port = _free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self._log = open(os.path.join(log_dir, f"moto-{self.port}.log"), "w+b")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log, stderr=self._log, env=dict(os.environ, **AWS_ENV), start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            if self._process.poll() is not None:
                self._log.seek(0)
                raise RuntimeError(f"moto's S3 server exited: {self._log.read().decode(errors='replace')[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("moto's S3 server did not listen within 60 s") from None
                time.sleep(0.1)  # polling for a server to come up
        s3_filesystem(self.endpoint).create_dir(BUCKET)

    def stop(self) -> None:
        try:
            os.killpg(self._process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._process.wait()
        self._log.close()
        os.unlink(self._log.name)


def count_checkpoints(endpoint: str, prefix: str) -> Dict[str, int]:
    """Checkpoint directories below ``prefix`` in the bucket and the bytes of their files."""
    from pyarrow import fs

    s3 = s3_filesystem(endpoint)
    dirs, total = set(), 0
    for info in s3.get_file_info(fs.FileSelector(f"{BUCKET}/{prefix}", recursive=True, allow_not_found=True)):
        parts = info.path.split("/")
        inside = next((i for i, p in enumerate(parts) if p.startswith("checkpoint_")), None)
        if inside is None:
            continue
        dirs.add("/".join(parts[:inside + 1]))
        if info.type == fs.FileType.File and parts[-1] == "data.bin":
            total += info.size
    return {"checkpoints_in_storage": len(dirs), "checkpoint_bytes_in_storage": total}


# --------------------------------------------------------------------------
# Workloads (child side), each written once against a ``tune`` module
# --------------------------------------------------------------------------

def run_pbt64(tune, size: int, storage_path: str, scratch: str) -> Dict[str, Any]:
    schedulers = importlib.import_module(tune.__name__ + ".schedulers")
    pbt = schedulers.PopulationBasedTraining(
        time_attr="training_iteration", perturbation_interval=4,
        hyperparam_mutations={"lr": tune.uniform(0.001, 0.1)}, metric="score", mode="max")
    out = fit_and_count(
        tune, tune.with_resources(pbt_trainable(tune), {"cpu": 1}), name="pbt64", storage_path=storage_path,
        param_space={"lr": tune.uniform(0.001, 0.1), "n": size, "scratch": scratch},
        tune_config=tune.TuneConfig(num_samples=64, scheduler=pbt, reuse_actors=True),
        stop={"training_iteration": size})
    # Exploits repeat iterations (a clone goes on from its donor's checkpoint): complete is
    # every trial reaching the last iteration, not a count of lines.
    out["complete"] = out["errors"] == 0 and out["trials"] == 64 and out["reported_iterations"] == 64 * size
    return out


def checkpoint_trainable(tune):
    """Reports as fast as it can; every ``every``-th result carries a checkpoint of
    ``bytes`` bytes written in ``config["scratch"]`` (node-local)."""

    def trainable(config):
        payload = random.Random(config["seed"]).randbytes(config["bytes"])
        for step in range(1, config["n"] + 1):
            if step % config["every"] == 0:
                with tempfile.TemporaryDirectory(dir=config["scratch"]) as d:
                    with open(os.path.join(d, "data.bin"), "wb") as f:
                        f.write(payload)
                    tune.report({"score": step}, checkpoint=tune.Checkpoint.from_directory(d))
            else:
                tune.report({"score": step})

    return trainable


def run_checkpoints(tune, size: int, storage_path: str, scratch: str, endpoint: str) -> Dict[str, Any]:
    out = fit_and_count(
        tune, tune.with_resources(checkpoint_trainable(tune), {"cpu": 1}), name="checkpoints",
        storage_path=storage_path,
        param_space={"seed": tune.grid_search(list(range(CHECKPOINT_TRIALS))), "n": size,
                     "every": CHECKPOINT_EVERY, "bytes": CHECKPOINT_BYTES, "scratch": scratch},
        tune_config=tune.TuneConfig(num_samples=1))
    expected = CHECKPOINT_TRIALS * (size // CHECKPOINT_EVERY)
    out.update(count_checkpoints(endpoint, "runs/checkpoints"))
    out["expected_checkpoints"] = expected
    out["checkpoint_bytes"] = expected * CHECKPOINT_BYTES
    out["complete"] = (out["errors"] == 0 and out["trials"] == CHECKPOINT_TRIALS
                       and out["results"] == CHECKPOINT_TRIALS * size
                       and out["checkpoints_in_storage"] == expected
                       and out["checkpoint_bytes_in_storage"] == expected * CHECKPOINT_BYTES)
    return out


def upload_loop(endpoint: str, count: int, nbytes: int) -> Dict[str, Any]:
    """Upload ``count`` objects of ``nbytes`` each, one after another, with pyarrow's
    S3FileSystem; returns the seconds and this process's node."""
    import ray

    s3 = s3_filesystem(endpoint)
    payload = random.Random(0).randbytes(nbytes)
    t0 = time.perf_counter()
    for i in range(count):
        with s3.open_output_stream(f"{BUCKET}/loop/checkpoint_{i:06d}/data.bin") as f:
            f.write(payload)
    return {"upload_s": time.perf_counter() - t0, "node_id": ray.get_runtime_context().get_node_id()}


def run_pyarrow_loop(size: int, endpoint: str) -> Dict[str, Any]:
    import ray

    count = CHECKPOINT_TRIALS * (size // CHECKPOINT_EVERY)
    task = ray.remote(num_cpus=1)(upload_loop)  # the head has no CPUs: it runs on a worker node
    t0 = time.perf_counter()
    got = ray.get(task.remote(endpoint, count, CHECKPOINT_BYTES))
    out = {"fit_s": got["upload_s"], "task_s": time.perf_counter() - t0, "loop_node": got["node_id"],
           "checkpoint_bytes": count * CHECKPOINT_BYTES, "expected_checkpoints": count}
    out.update(count_checkpoints(endpoint, "loop"))
    out["complete"] = (out["checkpoints_in_storage"] == count
                       and out["checkpoint_bytes_in_storage"] == count * CHECKPOINT_BYTES)
    return out


def storage_latency(endpoint: str, count: int = 20) -> Dict[str, Any]:
    """Median milliseconds, on this node, of what a fasttune worker does with a small
    checkpoint in S3: upload it (``upload_directory``, as before ``report()`` returns), copy
    it inside storage (``copy_directory``, a PBT exploit) and download it
    (``download_directory``, a resume); beside a plain PUT of the same bytes."""
    import ray

    from fasttune._storage import copy_directory, download_directory, resolve, upload_directory

    s3 = s3_filesystem(endpoint)
    base = resolve(s3_uri(endpoint, "latency"))
    source, downloads = tempfile.mkdtemp(prefix="latency-"), tempfile.mkdtemp(prefix="latency-")
    with open(os.path.join(source, "state.json"), "w") as f:
        json.dump([0.5, 4], f)
    timings: Dict[str, List[float]] = {"put_ms": [], "upload_ms": [], "copy_ms": [], "download_ms": []}

    def timed(key, action):
        started = time.perf_counter()
        action()
        timings[key].append((time.perf_counter() - started) * 1e3)

    for i in range(count):
        def put():
            with s3.open_output_stream(f"{BUCKET}/latency/plain_{i}/state.json") as f:
                f.write(b"[0.5, 4]")
        timed("put_ms", put)
        timed("upload_ms", lambda: upload_directory(source, base.join(f"trial/checkpoint_{i:06d}")))
        timed("copy_ms", lambda: copy_directory(base.join(f"trial/checkpoint_{i:06d}"),
                                                base.join(f"clone/checkpoint_{i:06d}")))
        timed("download_ms", lambda: download_directory(base.join(f"clone/checkpoint_{i:06d}"),
                                                        os.path.join(downloads, str(i))))
    shutil.rmtree(source, ignore_errors=True)
    shutil.rmtree(downloads, ignore_errors=True)
    out = {key: statistics.median(values) for key, values in timings.items()}
    out["node_id"] = ray.get_runtime_context().get_node_id()
    return out


def snapshot_trainable(config):
    """10 results and a small checkpoint at the last: a finished trial's files and records."""
    import fasttune as tune

    for step in range(1, 11):
        if step == 10:
            with tempfile.TemporaryDirectory(dir=config["scratch"]) as d:
                with open(os.path.join(d, "state.json"), "w") as f:
                    json.dump([config["x"], step], f)
                tune.report({"loss": config["x"] / step}, checkpoint=tune.Checkpoint.from_directory(d))
        else:
            tune.report({"loss": config["x"] / step})


def _append_result(trial_dir: str) -> None:
    """A new row in the trial's result files, as a result arriving does."""
    for name in ("result.json", "progress.csv"):
        path = os.path.join(trial_dir, name)
        if os.path.exists(path):
            with open(path, "rb") as f:
                lines = f.read().splitlines(keepends=True)
            with open(path, "ab") as f:
                f.write(lines[-1])


def run_snapshots(size: int, storage_root: str, endpoint: str, repeats: int = 3) -> Dict[str, Any]:
    """Build a real ``size``-trial experiment with a local sweep (untimed), then time
    StorageSync uploading it to S3 (see the module docstring)."""
    import ray

    import fasttune as tune
    from fasttune._storage import ExperimentStorage, resolve
    from fasttune.execution._storage_sync import StorageSync
    from fasttune.execution.trial_runner import TrialRunner
    from fasttune.search.basic_variant import BasicVariantGenerator

    os.makedirs(storage_root, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix="scratch-", dir=storage_root)
    t0 = time.perf_counter()
    grid = tune.Tuner(
        tune.with_resources(snapshot_trainable, {"cpu": 1}),
        param_space={"x": tune.uniform(0.0, 1.0), "scratch": scratch},
        tune_config=tune.TuneConfig(num_samples=size, metric="loss", mode="min"),
        run_config=tune.RunConfig(name="snapshots", storage_path=storage_root, verbose=0)).fit()
    out: Dict[str, Any] = {"build_s": time.perf_counter() - t0, "trials": len(grid), "errors": grid.num_errors}
    ray.shutdown()
    experiment_dir = os.path.join(storage_root, "snapshots")
    trial_dirs = sorted(p for p in glob.glob(os.path.join(experiment_dir, "*")) if os.path.isdir(p))
    out["trial_dirs"] = len(trial_dirs)
    staged = [os.path.join(directory, name) for directory, _, names in os.walk(experiment_dir)
              if "checkpoint_" not in directory for name in names]
    out["staged_files"] = len(staged)
    out["staged_bytes"] = sum(os.path.getsize(path) for path in staged)

    # A runner restored from the experiment writes the new snapshots, as a driver would.
    experiment = tune.Experiment("snapshots", snapshot_trainable, config={"x": tune.uniform(0.0, 1.0)},
                                 num_samples=size, storage_path=storage_root)
    # Syncs run only when called here (never on the runner's background thread); the share
    # of wall time is for the default period.
    sync = StorageSync(ExperimentStorage(resolve(s3_uri(endpoint, "runs/snapshots")), experiment_dir),
                       tune.SyncConfig(sync_period=10 ** 9))
    out["sync_period_s"] = sync_period = float(tune.SyncConfig().sync_period)
    searcher = BasicVariantGenerator()
    runner = TrialRunner(search_alg=searcher, trial_executor=StubExecutor(), experiment_path=experiment_dir,
                         metric="loss", mode="min", storage_sync=sync)
    searcher.add_configurations([experiment])
    runner.setup_experiments([experiment], size)
    runner.resume()

    def timed(action) -> float:
        started = time.perf_counter()
        action()
        return time.perf_counter() - started

    out["snapshot_write_s"] = [timed(lambda: runner.checkpoint(force=True))]
    newest = max(glob.glob(os.path.join(experiment_dir, "experiment_state-*")), key=os.path.getmtime)
    out["snapshot_bytes"] = os.path.getsize(newest)
    # The first sync sends every trial's files (what the end of a sweep this size pays).
    out["first_sync_s"] = timed(sync.sync)
    out["idle_sync_s"] = [timed(sync.sync) for _ in range(repeats)]  # nothing new: the walk alone
    s3 = s3_filesystem(endpoint)
    with open(newest, "rb") as f:
        snapshot = f.read()

    def put_snapshot():
        with s3.open_output_stream(f"{BUCKET}/plain/snapshot.msgpack") as f:
            f.write(snapshot)

    out["plain_snapshot_put_s"] = [timed(put_snapshot) for _ in range(repeats)]
    rng = random.Random(0)
    for changed in (0, 10, 200):
        key = f"sync_{changed}_changed_s"
        out[key] = []
        for _ in range(repeats):
            for trial_dir in rng.sample(trial_dirs, min(changed, len(trial_dirs))):
                _append_result(trial_dir)
            out["snapshot_write_s"].append(timed(lambda: runner.checkpoint(force=True)))
            out[key].append(timed(sync.sync))
    for key in list(out):
        if isinstance(out[key], list) and out[key] and isinstance(out[key][0], float):
            out[key + "_median"] = statistics.median(out[key])
    out["fit_s"] = out["sync_200_changed_s_median"]
    out["sync_share_at_default_period"] = out["sync_200_changed_s_median"] / sync_period
    out["complete"] = out["errors"] == 0 and out["trials"] == size and sync.syncs == 1 + repeats * 4
    return out


# --------------------------------------------------------------------------
# Child side: one side, one workload, one repeat, a fresh process (the driver)
# --------------------------------------------------------------------------

def _emit(record: Dict[str, Any]) -> None:
    sys.stdout.flush()
    sys.stdout.write(MARKER + json.dumps(record, default=str) + "\n")
    sys.stdout.flush()


def _start_cluster(node_root: str, private: List[str]):
    """Head (0 CPUs) + worker nodes with private tmpfs over ``private``; this process joins."""
    sys.path.insert(0, CLUSTER_TESTING)
    from cluster_testing import LocalCluster

    cluster = LocalCluster(node_root)
    cluster.__enter__()
    try:
        for n in range(WORKER_NODES):
            cluster.add_node(f"w{n}", num_cpus=CPUS_PER_WORKER, private=private)
    except BaseException:
        cluster.shutdown()
        raise
    return cluster


def _child_main(spec: Dict[str, Any]) -> int:
    side, workload, size = SIDES[spec["side"]], spec["workload"], int(spec["size"])
    record: Dict[str, Any] = {"side": spec["side"], "workload": workload, "size": size}
    os.environ.update(AWS_ENV)
    root = tempfile.mkdtemp(prefix=f"cluster-{spec['side']}-", dir=spec["storage_root"])
    # Nodes keep local files here: fasttune's cache/staging/scratch root and the trainables'
    # scratch; each worker node has a tmpfs of its own over both.
    cache, scratch = os.path.join(root, "cache"), os.path.join(root, "scratch")
    os.makedirs(cache)
    os.makedirs(scratch)
    os.environ["FASTTUNE_STORAGE_CACHE"] = cache  # before the nodes start: they inherit it
    endpoint = spec.get("endpoint")
    storage = s3_uri(endpoint, "runs") if side.s3 else os.path.join(root, "storage")
    cluster = None
    profiler = None
    try:
        import ray

        t0 = time.perf_counter()
        if side.cluster:
            cluster = _start_cluster(spec["node_root"], [cache, scratch])
        elif workload != "snapshots":
            ray.init(num_cpus=2, include_dashboard=False)
        else:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        record["ray_start_s"] = time.perf_counter() - t0
        record["nodes_alive"] = sum(1 for n in ray.nodes() if n["Alive"])
        tune = importlib.import_module(side.engine) if side.engine else None
        if tune is not None:
            record["engine_version"] = getattr(tune, "__version__", None) or ray.__version__
        if spec.get("profile"):
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        if spec["side"] == "pyarrow_loop":
            out = run_pyarrow_loop(size, endpoint)
        elif workload == "throughput":
            from bench.workloads import result_throughput

            out = result_throughput(tune, size, storage)
        elif workload == "pbt64":
            out = run_pbt64(tune, size, storage, scratch)
        elif workload == "checkpoints":
            out = run_checkpoints(tune, size, storage, scratch, endpoint)
        elif workload == "snapshots":
            out = run_snapshots(size, os.path.join(root, "local"), endpoint)
        else:
            raise ValueError(f"unknown workload {workload!r}")
        if profiler is not None:
            profiler.disable()
            record["profile"] = _profile_text(profiler)
        if spec["side"] == "fasttune_s3" and workload == "pbt64":
            # What each checkpoint costs a worker node (untimed in the rate): the bound on it.
            out["worker_storage_ms"] = ray.get(ray.remote(num_cpus=1)(storage_latency).remote(endpoint))
        record.update(out)
        record["value"] = _value(workload, out)
        record["status"] = "ok" if out.get("complete") else "incomplete"
    except Exception as exc:
        record.update(status="error", reason=f"{type(exc).__name__}: {exc}",
                      traceback=traceback.format_exc()[-4000:])
    _emit(record)
    try:
        if cluster is not None:
            cluster.shutdown()
        else:
            import ray

            ray.shutdown()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


def _profile_text(profiler, lines: int = 40) -> str:
    import io
    import pstats

    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(lines)
    return text.getvalue()[-12000:]


def _value(workload: str, out: Dict[str, Any]) -> float:
    if out["fit_s"] <= 0:
        return float("nan")
    if workload in ("throughput", "pbt64"):
        return out["results"] / out["fit_s"]
    if workload == "checkpoints":
        return out["checkpoint_bytes"] / 1e6 / out["fit_s"]
    return out["fit_s"]  # snapshots: seconds of one periodic sync


# --------------------------------------------------------------------------
# Parent side
# --------------------------------------------------------------------------

def _loadavg() -> Optional[List[float]]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _kill_processes_naming(root: str) -> None:
    """SIGKILL the process groups of processes whose command line names ``root`` (the
    nodes of a run whose driver died before stopping them)."""
    sys.path.insert(0, CLUSTER_TESTING)
    from cluster_testing import kill_leftovers

    kill_leftovers(root)


def settle(max_s: float = 30.0, busy_below: float = 0.3) -> float:
    """Wait (at most ``max_s``) until the CPUs are nearly idle after a run's teardown;
    the machine is shared, so the bar is lower than bench.sweeps' and the wait shorter."""
    t0 = time.perf_counter()
    os.sync()
    while time.perf_counter() - t0 < max_s:
        busy = cpu_busy_fraction()
        if busy is None or busy < busy_below:
            break
    return round(time.perf_counter() - t0, 2)


def run_one(spec: Dict[str, Any], timeout: float, log_dir: str) -> Dict[str, Any]:
    """One run in a fresh driver process, with its own S3 server and node directory."""
    side = SIDES[spec["side"]]
    server = S3Server(log_dir) if side.s3 else None
    node_root = tempfile.mkdtemp(prefix="ftb-", dir="/tmp")  # short: AF_UNIX paths stop at 107 bytes
    spec = dict(spec, endpoint=server.endpoint if server else None, node_root=node_root)
    env = dict(os.environ, **AWS_ENV, RAY_AUTH_MODE="disabled", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = REPO_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    load = _loadavg()
    t0 = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "bench.cluster", "--_child", json.dumps(spec)], cwd=REPO_ROOT,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    timed_out = False
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _kill_processes_naming(node_root)
        shutil.rmtree(node_root, ignore_errors=True)
        if server is not None:
            server.stop()
    wall = time.perf_counter() - t0
    record = None
    for line in reversed(stdout.splitlines()):
        if line.startswith(MARKER):
            record = json.loads(line[len(MARKER):])
            break
    if record is None:
        record = {"side": spec["side"], "workload": spec["workload"], "size": spec["size"],
                  "status": "timeout" if timed_out else "crashed",
                  "reason": f"no result within {timeout:.0f}s" if timed_out
                  else f"driver exited {process.returncode} without a result"}
    if record.get("status") != "ok":
        record["stderr_tail"] = stderr[-3000:]
    record["process_wall_s"] = round(wall, 2)
    record["loadavg_before"] = load
    record["settle_s"] = settle()
    return record


def _median(values: List[float]) -> Optional[float]:
    return statistics.median(values) if values else None


def summarize(workloads: List[str], sides_of: Dict[str, List[str]], sizes, runs) -> List[Dict[str, Any]]:
    rows = []
    for name in workloads:
        workload = WORKLOADS[name]
        row: Dict[str, Any] = {"workload": name, "unit": workload.unit, "description": workload.description,
                               "size_meaning": workload.size_meaning, "sides": {}, "ratios": []}
        for side in sides_of[name]:
            mine = [r for r in runs if r["workload"] == name and r["side"] == side]
            values = [r["value"] for r in mine if r.get("status") == "ok"]
            row["sides"][side] = {
                "size": sizes[(name, side)], "runs": len(mine), "ok": len(values), "values": values,
                "median": _median(values), "min": min(values) if values else None,
                "max": max(values) if values else None,
                "median_fit_s": _median([r["fit_s"] for r in mine if r.get("status") == "ok"]),
                "problems": [f"{r.get('status')}: {r.get('reason', '')}" for r in mine if r.get("status") != "ok"],
            }
        for label, top, bottom, target in workload.ratios:
            a = row["sides"].get(top, {}).get("median")
            b = row["sides"].get(bottom, {}).get("median")
            ratio = a / b if a and b else None
            row["ratios"].append({"label": label, "ratio": ratio, "target": target,
                                  "met": None if ratio is None or target is None else ratio >= target})
        if name == "snapshots":
            row["snapshot_details"] = _snapshot_details([r for r in runs if r["workload"] == name
                                                         and r.get("status") == "ok"])
        rows.append(row)
    return rows


SNAPSHOT_FIGURES = (
    ("snapshot_bytes", "snapshot size (MB)", 1e-6),
    ("snapshot_write_s_median", "write a snapshot (ms)", 1e3),
    ("first_sync_s", "first sync: every trial's files + snapshot (s)", 1.0),
    ("idle_sync_s_median", "sync with nothing new: the walk over the staging copy (ms)", 1e3),
    ("sync_0_changed_s_median", "sync: a new snapshot, no trial changed (ms)", 1e3),
    ("plain_snapshot_put_s_median", "plain pyarrow PUT of the same snapshot (ms)", 1e3),
    ("sync_10_changed_s_median", "sync: 10 trials changed + new snapshot (ms)", 1e3),
    ("sync_200_changed_s_median", "sync: 200 trials changed + new snapshot (ms)", 1e3),
    ("sync_share_at_default_period", "share of wall time syncing (200 changed per period, default sync_period)",
     100.0),
)


def _snapshot_details(runs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    details = []
    for key, label, scale in SNAPSHOT_FIGURES:
        values = [r[key] * scale for r in runs if key in r]
        details.append({"figure": key, "label": label, "median": _median(values),
                        "min": min(values) if values else None, "max": max(values) if values else None})
    return details


def render_markdown(report: Dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"# fasttune cluster benchmark ({report['started']})", "",
        f"- command: `{report['command']}`",
        f"- repeats: {report['repeats']}  quick: {report['quick']}  side order: alternating, flipped every repeat",
        f"- machine: {m['cpu_count']} CPUs (affinity {m['cpu_affinity']}), {m['mem_total_gib']} GiB, "
        f"{m['platform']}",
        f"- versions: python {m['python']}, ray {m['ray']}, pyarrow {report['pyarrow']}, moto {report['moto']}, "
        f"git {m['git_rev']}",
        f"- cluster: head (0 CPUs) + {WORKER_NODES} worker nodes x {CPUS_PER_WORKER} CPUs, private tmpfs per "
        f"worker node; S3: a fresh moto server per run; local storage root `{report['storage_root']}`",
        f"- loadavg start {m['loadavg_start']} end {report['loadavg_end']}; "
        f"before each run min–max {report['loadavg_range']}",
        "",
        "| workload | unit | side | median | min–max | size | ok |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report["summary"]:
        for side, d in row["sides"].items():
            lines.append(f"| {row['workload']} | {row['unit']} | {side} | {format_number(d['median'])} | "
                         f"{format_number(d['min'])}–{format_number(d['max'])} | {d['size']:,} | {d['ok']}/{d['runs']} |")
    lines += ["", "| workload | ratio of medians | value | target |", "|---|---|---|---|"]
    for row in report["summary"]:
        for ratio in row["ratios"]:
            verdict = "" if ratio["met"] is None else (" met" if ratio["met"] else " **not met**")
            target = f">= {ratio['target']:g}{verdict}" if ratio["target"] is not None else "—"
            value = f"{ratio['ratio']:.3g}" if ratio["ratio"] is not None else "—"
            lines.append(f"| {row['workload']} | {ratio['label']} | {value} | {target} |")
    for row in report["summary"]:
        if row.get("snapshot_details"):
            size = row["sides"]["fasttune_sync"]["size"]
            lines += ["", f"Experiment snapshot upload at {size:,} trials (StorageSync to moto S3; medians over "
                      "runs of each run's median):", "", "| figure | median | min–max |", "|---|---|---|"]
            for d in row["snapshot_details"]:
                lines.append(f"| {d['label']} | {format_number(d['median'])} | {format_number(d['min'])}–{format_number(d['max'])} |")
    problems = [f"- {row['workload']} / {side}: {p}" for row in report["summary"]
                for side, d in row["sides"].items() for p in d["problems"]]
    if problems:
        lines += [""] + problems
    lines += ["", "Rates are over the whole `Tuner.fit()` wall-clock (cluster start, `ray.init` and the S3 "
              "server's start untimed); pyarrow_loop: the upload loop's own time on the worker node."]
    return "\n".join(lines) + "\n"


def _parse_sizes(items: List[str]) -> Dict[Tuple[str, str], int]:
    """--size WORKLOAD=N or WORKLOAD.SIDE=N -> {(workload, side or '*'): N}"""
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        if not value:
            raise SystemExit(f"--size expects WORKLOAD[.SIDE]=N, got {item!r}")
        name, _, side = key.partition(".")
        if name not in WORKLOADS or (side and side not in SIDES):
            raise SystemExit(f"--size {item}: unknown workload or side")
        out[(name, side or "*")] = int(value.replace("_", ""))
    return out


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--_child"]:
        return _child_main(json.loads(argv[1]))
    parser = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help=f"comma list of {','.join(WORKLOADS)}")
    parser.add_argument("--sides", default=None,
                        help=f"comma list of {','.join(SIDES)} (default: each workload's own)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small sizes for smoke checks")
    parser.add_argument("--size", action="append", default=[], metavar="WORKLOAD[.SIDE]=N")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per run before it is killed")
    parser.add_argument("--storage-root", default=None,
                        help="where local storage, fasttune's staging/cache and the scratch directories go "
                             "(default: the system temp dir; e.g. /dev/shm)")
    parser.add_argument("--profile", action="store_true", help="cProfile the driver during each workload")
    parser.add_argument("--out-dir", default=OUT_DIR)
    args = parser.parse_args(argv)

    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    for w in workloads:
        if w not in WORKLOADS:
            parser.error(f"unknown workload {w!r}; known: {', '.join(WORKLOADS)}")
    chosen = [s.strip() for s in args.sides.split(",")] if args.sides else None
    for s in chosen or []:
        if s not in SIDES:
            parser.error(f"unknown side {s!r}; known: {', '.join(SIDES)}")
    sides_of = {w: [s for s in WORKLOADS[w].sides if chosen is None or s in chosen] for w in workloads}
    overrides = _parse_sizes(args.size)
    sizes = {(w, s): overrides.get((w, s), overrides.get((w, "*"), WORKLOADS[w].size_for(s, args.quick)))
             for w in workloads for s in sides_of[w]}
    storage_root = args.storage_root or tempfile.gettempdir()

    from bench.sweeps import machine_facts

    started = _dt.datetime.now().strftime("%Y-%m-%dT%H:%M:%S")
    command = "python -m bench.cluster " + " ".join(argv)
    machine = machine_facts()
    print(f"[cluster] {command}", file=sys.stderr)
    os.makedirs(args.out_dir, exist_ok=True)
    runs: List[Dict[str, Any]] = []
    for repeat in range(args.repeats):
        for w in workloads:
            order = sides_of[w] if repeat % 2 == 0 else sides_of[w][::-1]
            for side in order:
                spec = {"side": side, "workload": w, "size": sizes[(w, side)], "storage_root": storage_root,
                        "profile": args.profile}
                record = run_one(spec, args.timeout, args.out_dir)
                record["repeat"] = repeat
                runs.append(record)
                shown = (f"{WORKLOADS[w].unit} {format_number(record.get('value'))} (fit {record.get('fit_s', 0):.2f}s)"
                         if record.get("status") == "ok" else f"{record.get('status')}: {record.get('reason', '')}")
                print(f"[cluster] rep {repeat + 1}/{args.repeats} {w} {side} size={sizes[(w, side)]:,}: {shown}",
                      file=sys.stderr)

    import moto
    import pyarrow

    loads = [r["loadavg_before"][0] for r in runs if r.get("loadavg_before")]
    report = {
        "kind": "cluster", "started": started, "finished": _dt.datetime.now().strftime("%Y-%m-%dT%H:%M:%S"),
        "command": command, "repeats": args.repeats, "quick": args.quick, "workloads": workloads,
        "sides": {s: SIDES[s].description for w in workloads for s in sides_of[w]},
        "sizes": {f"{w}.{s}": n for (w, s), n in sizes.items()}, "machine": machine,
        "pyarrow": pyarrow.__version__, "moto": moto.__version__, "storage_root": storage_root,
        "loadavg_end": _loadavg(),
        "loadavg_range": f"{min(loads):.1f}–{max(loads):.1f}" if loads else "n/a",
        "summary": summarize(workloads, sides_of, sizes, runs), "runs": runs,
    }
    markdown = render_markdown(report)
    print(markdown)
    base = write_report(args.out_dir, "cluster-", started, report, markdown)
    print(f"[cluster] wrote {base}.json and {base}.md", file=sys.stderr)
    return 1 if any(r.get("status") != "ok" for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
