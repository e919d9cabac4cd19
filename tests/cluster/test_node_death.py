"""A worker node dies the way a machine does (its raylet and workers SIGKILLed together)
in the middle of a sweep: its trials restart on the node that remains, and every
``result.json`` holds each iteration exactly once (issue 15).  A real three-node Ray
cluster on this machine, worker nodes with disks of their own (tests/cluster/cluster_testing.py)."""
import json
import os
import shutil
import subprocess
import sys

from cluster_testing import kill_leftovers, short_tempdir
from node_death_driver import ITERATIONS

HERE = os.path.dirname(os.path.abspath(__file__))


def test_a_killed_nodes_trials_restart_on_the_other_node_with_each_iteration_once(tmp_path):
    nodes_root = short_tempdir()
    try:
        driver = subprocess.run(
            [sys.executable, os.path.join(HERE, "node_death_driver.py"), str(tmp_path), nodes_root],
            capture_output=True, text=True, timeout=240, env=dict(os.environ, RAY_AUTH_MODE="disabled"))
    except subprocess.TimeoutExpired as exc:  # say where it stood
        raise AssertionError(f"the driver ran over 240 s:\n{(exc.stdout or b'')[-2000:]!r}\n"
                             f"{(exc.stderr or b'')[-4000:]!r}") from None
    finally:
        kill_leftovers(nodes_root)  # nodes a failed driver left running
        shutil.rmtree(nodes_root, ignore_errors=True)
    assert driver.returncode == 0, driver.stdout[-3000:] + driver.stderr[-3000:]
    report = json.loads(driver.stdout.strip().splitlines()[-1])
    killed, survivor = report["killed"], next(n for n in report["nodes"] if n != report["killed"])
    assert killed in report["nodes"]
    assert report["errors"] == 0 and sorted(report["trials"]) == ["0", "1", "2", "3"]
    for x, trial in report["trials"].items():
        assert trial["iterations"] == list(range(ITERATIONS)), f"trial x={x}"
    restarted = report["trials"]["0"]
    assert "died" in restarted["error"]  # it failed once, with its worker
    assert restarted["nodes"] == [survivor]  # the rows of its first run on the dead node were rewound
