"""Nodes that join in the middle of a sweep get work (issue 15).  A real Ray cluster on
this machine (tests/cluster/cluster_testing.py), its driver in a process of its own."""
import json
import os
import shutil
import subprocess
import sys

from cluster_testing import kill_leftovers, short_tempdir
from node_join_driver import ITERATIONS, TRIALS
from node_return_driver import ITERATIONS as RETURN_ITERATIONS

HERE = os.path.dirname(os.path.abspath(__file__))


def _run_driver(name, tmp_path):
    """Run the driver script ``name`` on a cluster of its own; its JSON report."""
    nodes_root = short_tempdir()
    try:
        driver = subprocess.run(
            [sys.executable, os.path.join(HERE, name), str(tmp_path), nodes_root],
            capture_output=True, text=True, timeout=240, env=dict(os.environ, RAY_AUTH_MODE="disabled"))
    except subprocess.TimeoutExpired as exc:  # the new node got no trial, so none went on
        raise AssertionError(f"the driver ran over 240 s:\n{(exc.stdout or b'')[-2000:]!r}\n"
                             f"{(exc.stderr or b'')[-4000:]!r}") from None
    finally:
        kill_leftovers(nodes_root)
        shutil.rmtree(nodes_root, ignore_errors=True)
    assert driver.returncode == 0, driver.stdout[-3000:] + driver.stderr[-3000:]
    return json.loads(driver.stdout.strip().splitlines()[-1])


def test_a_node_that_joins_mid_sweep_runs_pending_trials(tmp_path):
    """The first node's trials wait until a trial has reported from the joined node, so the
    sweep ends only if the executor gave that node trials."""
    report = _run_driver("node_join_driver.py", tmp_path)
    assert report["errors"] == 0 and sorted(report["trials"], key=int) == [str(x) for x in range(TRIALS)]
    on_joined = [x for x, trial in report["trials"].items() if trial["nodes"] == [report["joined"]]]
    assert on_joined, report
    for x, trial in report["trials"].items():
        assert trial["iterations"] == list(range(ITERATIONS)), f"trial x={x}"
        assert trial["nodes"] in ([report["first"]], [report["joined"]])


def test_trials_of_a_lost_node_wait_pending_for_a_new_one(tmp_path):
    """The only worker node dies: its trials wait PENDING, with one warning that says why,
    until a new node joins, then restart there with each iteration once."""
    report = _run_driver("node_return_driver.py", tmp_path)
    assert report["errors"] == 0 and sorted(report["trials"]) == ["0", "1"]
    for x, trial in report["trials"].items():
        assert trial["iterations"] == list(range(RETURN_ITERATIONS)), f"trial x={x}"
        assert trial["nodes"] == [report["replacement"]], f"trial x={x}: its first run's rows were rewound"
    waiting = [m for m in report["warnings"] if "wait until nodes with those resources join" in m]
    assert len(waiting) == 1 and "{'CPU': 0.0}" in waiting[0], report["warnings"]


def test_workers_spread_over_the_nodes(tmp_path):
    """Two trials on two idle nodes with 4 CPUs each run one on each (Ray's default policy packs
    them onto one node while it is under half busy)."""
    report = _run_driver("spread_driver.py", tmp_path)
    assert sorted(report["ran_on"].values()) == sorted(report["nodes"])
