"""Sweeps whose experiment lives in S3 (moto's server) on a real three-node Ray cluster on
this machine (tests/cluster/cluster_testing.py): a head without CPUs and two worker
nodes with two CPUs each (three on one in the restore test), each worker node with a
private tmpfs over the driver's cache root (``FASTTUNE_STORAGE_CACHE``: its staging
copy, caches and scratch space), so nothing works through a local path the nodes would
share on one machine but not on a real cluster (issue 15).  Each test runs its driver in
a process of its own (storage_cluster_driver.py, pbt_cluster_driver.py) and reads what
storage holds afterwards itself."""
import json
import os
import posixpath
import shutil
import signal
import subprocess
import sys
import time

import pytest
from pyarrow import fs as pyarrow_fs  # the test extra: a missing pyarrow fails, never skips

import pbt_cluster_driver as pbt
import s3_server
from cluster_testing import kill_leftovers, short_tempdir
from storage_cluster_driver import CHECKPOINT_EVERY, HOLD_AT, ITERATIONS, TICKER, TRIALS

HERE = os.path.dirname(os.path.abspath(__file__))
DRIVER_TIMEOUT_S = 240


def driver_command(mode, shared, nodes_root, uri):
    return [sys.executable, os.path.join(HERE, "storage_cluster_driver.py"), mode, str(shared), nodes_root, uri]


def driver_env(cache, **extra):
    # The AWS credentials come from the cluster_s3 fixture, through os.environ.
    return dict(os.environ, RAY_AUTH_MODE="disabled", FASTTUNE_STORAGE_CACHE=cache, **extra)


def run_driver(mode, shared, nodes_root, uri, env):
    """Run storage_cluster_driver.py to its end; returns the JSON line it printed last."""
    return run_driver_command(driver_command(mode, shared, nodes_root, uri), nodes_root, env)


def run_driver_command(command, nodes_root, env):
    """Run a driver to its end; returns the JSON line it printed last."""
    try:
        driver = subprocess.run(command, capture_output=True, text=True, timeout=DRIVER_TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired as exc:  # say where it stood
        raise AssertionError(f"the driver ran over {DRIVER_TIMEOUT_S} s:\n{(exc.stdout or b'')[-2000:]!r}\n"
                             f"{(exc.stderr or b'')[-4000:]!r}") from None
    finally:
        kill_leftovers(nodes_root)  # nodes a failed driver left running
    assert driver.returncode == 0, driver.stdout[-3000:] + driver.stderr[-5000:]
    return json.loads(driver.stdout.strip().splitlines()[-1])


@pytest.fixture
def nodes_root():
    root = short_tempdir()
    yield root
    kill_leftovers(root)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def bucket(cluster_s3, request):
    """A bucket of this test's own."""
    name = request.node.name.replace("_", "-")[5:60].strip("-")
    s3_server.filesystem(cluster_s3).create_dir(name)
    return name


def read_text(fs, path):
    with fs.open_input_stream(path) as f:
        return f.read().decode()


def names_in(fs, path):
    return {posixpath.basename(info.path) for info in fs.get_file_info(pyarrow_fs.FileSelector(path))}


def stored_trials(fs, experiment, key=lambda rows: rows[0]["config"]["x"]):
    """What storage holds of each trial of the experiment at ``experiment`` (a path on
    ``fs``), keyed by ``key(rows)`` (the trial's config x): the names in its directory,
    its result rows, and the state in each of its checkpoints."""
    trials = {}
    for info in fs.get_file_info(pyarrow_fs.FileSelector(experiment)):
        if info.type != pyarrow_fs.FileType.Directory:
            continue
        rows = [json.loads(line) for line in read_text(fs, f"{info.path}/result.json").splitlines()]
        names = names_in(fs, info.path)
        checkpoints = {name: json.loads(read_text(fs, f"{info.path}/{name}/state.json"))
                       for name in names if name.startswith("checkpoint_")}
        trials[key(rows)] = {"names": names, "rows": rows, "checkpoints": checkpoints}
    return trials


def test_a_sweep_on_two_nodes_lands_in_s3_and_leaves_nothing_on_the_nodes(cluster_s3, bucket, nodes_root, tmp_path):
    fs = s3_server.filesystem(cluster_s3)
    cache = os.path.join(nodes_root, "cache")
    report = run_driver("sweep", tmp_path, nodes_root, s3_server.uri(cluster_s3, f"{bucket}/runs"), driver_env(cache))

    assert report["errors"] == 0
    assert report["experiment_path"] == s3_server.uri(cluster_s3, f"{bucket}/runs/sweep")
    trials = stored_trials(fs, f"{bucket}/runs/sweep")
    assert sorted(trials) == list(range(TRIALS))
    kept = {f"checkpoint_{n:06d}": n * CHECKPOINT_EVERY + CHECKPOINT_EVERY - 1
            for n in range(ITERATIONS // CHECKPOINT_EVERY - 2, ITERATIONS // CHECKPOINT_EVERY)}
    for x, trial in trials.items():
        assert [row["i"] for row in trial["rows"]] == list(range(ITERATIONS)), f"trial x={x}"
        assert {row["restored_from"] for row in trial["rows"]} == {None}
        # num_to_keep=2: the last two of the four checkpoints, each with what was saved.
        assert trial["checkpoints"] == {name: {"i": i, "x": x} for name, i in kept.items()}, f"trial x={x}"
        events = {name for name in trial["names"] if name.startswith("events.out.tfevents.")}
        assert len(events) == 1  # TensorBoard's file: its name holds the time and the host
        assert trial["names"] - events == {"params.json", "result.json", "progress.csv", *kept}
        # The trial's scratch directory lay below the node's cache root (its private tmpfs).
        assert all(row["trial_dir"].startswith(cache + os.sep) for row in trial["rows"])
        # Result.checkpoint points into storage.
        assert report["checkpoints"][str(x)].startswith(f"s3://{bucket}/runs/sweep/")
    # Four trials at once on 2 + 2 CPUs: both worker nodes ran trials.
    assert {row["node"] for trial in trials.values() for row in trial["rows"]} == set(report["nodes"])
    for node, listing in report["leftovers"].items():
        assert_nothing_left(node, listing)


def assert_nothing_left(node, listing):
    """Nothing is left below the node's cache root: no checkpoint, no scratch file, no
    trial directory.  Only empty directories that many trials share may stay: the cache's
    own ones (``checkpoints``, ``scratch``) and the experiment's scratch directory; a
    worker ending one trial cannot tell whether another one on its node is about to use
    them."""
    assert listing["node"] == node and listing["exists"]
    assert listing["files"] == [], f"node {node} kept {listing['files']}"
    shared = [d for d in listing["dirs"] if "/" not in d or posixpath.dirname(d) == "scratch"]
    assert listing["dirs"] == shared, f"node {node} kept {listing['dirs']}"
    assert set(d for d in shared if "/" not in d) <= {"checkpoints", "scratch"}


def test_a_killed_nodes_trials_resume_from_their_checkpoints_in_s3_on_the_other_node(cluster_s3, bucket, nodes_root,
                                                                                      tmp_path):
    fs = s3_server.filesystem(cluster_s3)
    cache = os.path.join(nodes_root, "cache")
    report = run_driver("node-death", tmp_path, nodes_root, s3_server.uri(cluster_s3, f"{bucket}/runs"),
                        driver_env(cache))

    assert report["errors"] == 0
    killed = report["killed"]
    assert killed in report["nodes"]
    survivor = next(node for node in report["nodes"] if node != killed)
    trials = stored_trials(fs, f"{bucket}/runs/node_death")
    assert sorted(trials) == list(range(TRIALS))
    # Every trial held after iteration HOLD_AT when the node died: the last checkpoint
    # of each (made on its node and uploaded from there) is the one of iteration
    # HOLD_AT - 1.
    last_checkpoint = (HOLD_AT + 1) // CHECKPOINT_EVERY * CHECKPOINT_EVERY - 1
    every_checkpoint = {f"checkpoint_{n:06d}": n * CHECKPOINT_EVERY + CHECKPOINT_EVERY - 1
                        for n in range(ITERATIONS // CHECKPOINT_EVERY)}
    on_killed = {x for x, trial in trials.items() if trial["rows"][0]["node"] == killed}
    assert len(on_killed) == 2 and 0 in on_killed  # four trials at once on 2 + 2 CPUs
    for x, trial in trials.items():
        rows = trial["rows"]
        assert [row["i"] for row in rows] == list(range(ITERATIONS)), f"trial x={x}"
        assert trial["checkpoints"] == {name: {"i": i, "x": x} for name, i in every_checkpoint.items()}
        if x in on_killed:
            # The rows after its last checkpoint were rewound; it went on from that
            # checkpoint, downloaded from storage on the node that remained.
            first_run = [(row["node"], row["restored_from"]) for row in rows[:last_checkpoint + 1]]
            restarted = [(row["node"], row["restored_from"]) for row in rows[last_checkpoint + 1:]]
            assert first_run == [(killed, None)] * (last_checkpoint + 1), f"trial x={x}"
            assert restarted == [(survivor, last_checkpoint)] * (ITERATIONS - last_checkpoint - 1), f"trial x={x}"
            assert report["recoveries"][str(x)] == 1
            assert "error.txt" in trial["names"]
            assert "died" in read_text(fs, f"{bucket}/runs/node_death/{trial_dirname(fs, bucket, x)}/error.txt")
        else:
            assert [(row["node"], row["restored_from"]) for row in rows] == [(survivor, None)] * ITERATIONS
            assert str(x) not in report["recoveries"] and "error.txt" not in trial["names"]
    # The checkpoints the restarted trials downloaded are gone from the surviving node too.
    assert list(report["leftovers"]) == [survivor]
    assert_nothing_left(survivor, report["leftovers"][survivor])


def trial_dirname(fs, bucket, x):
    for info in fs.get_file_info(pyarrow_fs.FileSelector(f"{bucket}/runs/node_death")):
        if info.type == pyarrow_fs.FileType.Directory and \
                json.loads(read_text(fs, f"{info.path}/params.json"))["x"] == x:
            return posixpath.basename(info.path)
    raise AssertionError(f"no trial with x={x}")


def test_pbt_exploits_clone_checkpoints_in_s3_between_trials_on_different_nodes(cluster_s3, bucket, nodes_root,
                                                                                 tmp_path):
    fs = s3_server.filesystem(cluster_s3)
    cache = os.path.join(nodes_root, "cache")
    command = [sys.executable, os.path.join(HERE, "pbt_cluster_driver.py"), str(tmp_path), nodes_root,
               s3_server.uri(cluster_s3, f"{bucket}/runs")]
    report = run_driver_command(command, nodes_root, driver_env(cache))

    assert report["errors"] == 0
    fast, slow = report["nodes"]
    trials = stored_trials(fs, f"{bucket}/runs/pbt", key=lambda rows: rows[0]["trial_id"])
    assert len(trials) == len(pbt.RATES)
    first_rate = {trial_id: trial["rows"][0]["config"]["rate"] for trial_id, trial in trials.items()}
    first_node = {trial_id: trial["rows"][0]["node"] for trial_id, trial in trials.items()}
    assert sorted(first_rate.values()) == pbt.RATES
    assert sorted(first_node.values()) == sorted([fast, fast, slow, slow])
    saved = [row["saved"] for trial in trials.values() for row in trial["rows"] if "saved" in row]
    exploits = []
    for trial_id, trial in trials.items():
        rows = trial["rows"]
        # Exact histories: each iteration once; after an exploit the trial goes on from
        # its donor's checkpoint, on its donor's clock.
        assert [row["i"] for row in rows] == list(range(pbt.ITERATIONS)), trial_id
        assert [row["training_iteration"] for row in rows] == list(range(1, pbt.ITERATIONS + 1)), trial_id
        for row in rows:
            if row["restored"] is not None:
                exploits.append((trial_id, row))
                # It restored what the donor's checkpoint held: what the donor saved, as
                # storage has it in the donor's directory and (copied) in its own.
                restored = row["restored"]
                assert restored in saved
                assert restored in trials[restored["trial"]]["checkpoints"].values()
                assert restored in trial["checkpoints"].values()
                assert row["i"] == restored["i"] + 1 == pbt.PERTURBATION_INTERVAL
    # The slow node's lowest trial cloned the fast node's best one: a checkpoint made
    # and uploaded on the other node.
    top = max((t for t in trials if first_node[t] == fast), key=first_rate.get)
    low = min((t for t in trials if first_node[t] == slow), key=first_rate.get)
    assert [(row["node"], row["restored"]["node"], row["restored"]["trial"])
            for trial_id, row in exploits if trial_id == low] == [(slow, fast, top)]
    for node, listing in report["leftovers"].items():
        assert_nothing_left(node, listing)


def wait_for_file(path, process, timeout_s=DRIVER_TIMEOUT_S):
    """Wait until ``process`` writes ``path``; fail if it exits first or takes too long."""
    deadline = time.monotonic() + timeout_s
    while not os.path.exists(path):
        assert process.poll() is None, f"the driver exited with {process.returncode} before writing {path}"
        assert time.monotonic() < deadline, f"the driver did not write {path} within {timeout_s} s"
        time.sleep(0.05)  # polling for the file the driver writes


def test_restore_from_s3_in_a_fresh_driver_process_goes_on_from_the_interrupted_sweep(cluster_s3, bucket, nodes_root,
                                                                                       tmp_path):
    fs = s3_server.filesystem(cluster_s3)
    shared = tmp_path / "shared"
    shared.mkdir()
    # The first driver: its own cluster, staging copy and cache.  It is SIGKILLed once
    # storage holds a snapshot that counts every trial's checkpoint of iteration
    # HOLD_AT - 1 (the trials hold after iteration HOLD_AT until the file resume exists).
    first_root = short_tempdir()
    try:
        with open(tmp_path / "first.log", "w") as log:
            first = subprocess.Popen(
                driver_command("interrupt", shared, first_root, s3_server.uri(cluster_s3, f"{bucket}/runs")),
                env=driver_env(os.path.join(first_root, "cache")), stdout=log, stderr=subprocess.STDOUT)
            try:
                wait_for_file(str(shared / "stored"), first)
            except AssertionError:
                first.kill()
                first.wait()
                raise AssertionError(open(tmp_path / "first.log").read()[-5000:]) from None
            first.send_signal(signal.SIGKILL)
            first.wait()
    finally:
        kill_leftovers(first_root)  # its nodes: the machine it ran on is gone
        shutil.rmtree(first_root, ignore_errors=True)
    with open(shared / "first_nodes.json") as f:
        first_nodes = json.load(f)
    (shared / "resume").touch()

    # The second driver: a fresh HOME and cache on a fresh cluster; nothing local.
    home = tmp_path / "home"
    home.mkdir()
    experiment_uri = s3_server.uri(cluster_s3, f"{bucket}/runs/interrupted")
    report = run_driver("restore", shared, nodes_root, experiment_uri,
                        driver_env(os.path.join(nodes_root, "cache"), HOME=str(home)))

    assert report["errors"] == 0
    assert report["experiment_path"] == experiment_uri
    second_nodes = report["nodes"]
    assert not set(first_nodes) & set(second_nodes)
    trials = stored_trials(fs, f"{bucket}/runs/interrupted")
    assert sorted(trials) == list(range(TRIALS)) + [TICKER]
    cluster_of = {**{node: "first" for node in first_nodes}, **{node: "second" for node in second_nodes}}
    # The ticker made no checkpoint: the restored run started it afresh (its rows from
    # the first driver were rewound), and it reported once.
    ticker = trials.pop(TICKER)
    assert [(row["i"], cluster_of.get(row["node"])) for row in ticker["rows"]] == [(0, "second")]
    assert ticker["checkpoints"] == {}
    last_checkpoint = (HOLD_AT + 1) // CHECKPOINT_EVERY * CHECKPOINT_EVERY - 1
    every_checkpoint = {f"checkpoint_{n:06d}": n * CHECKPOINT_EVERY + CHECKPOINT_EVERY - 1
                        for n in range(ITERATIONS // CHECKPOINT_EVERY)}
    for x, trial in trials.items():
        rows = trial["rows"]
        assert [row["i"] for row in rows] == list(range(ITERATIONS)), f"trial x={x}"
        # Up to its last checkpoint from the first driver's cluster; the rows after it
        # were rewound and made again from that checkpoint on the second cluster.
        assert [(cluster_of.get(row["node"]), row["restored_from"]) for row in rows] == \
            [("first", None)] * (last_checkpoint + 1) + \
            [("second", last_checkpoint)] * (ITERATIONS - last_checkpoint - 1), f"trial x={x}"
        assert trial["checkpoints"] == {name: {"i": i, "x": x} for name, i in every_checkpoint.items()}
