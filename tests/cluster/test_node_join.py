"""A worker node that joins in the middle of a sweep gets work (issue 15): the trials on
the first node wait until a trial has reported from the new one, so the sweep ends only
if the executor gave it trials.  A real Ray cluster on this machine
(tests/cluster/cluster_testing.py)."""
import json
import os
import shutil
import subprocess
import sys

from cluster_testing import kill_leftovers, short_tempdir
from node_join_driver import ITERATIONS, TRIALS

HERE = os.path.dirname(os.path.abspath(__file__))


def test_a_node_that_joins_mid_sweep_runs_pending_trials(tmp_path):
    nodes_root = short_tempdir()
    try:
        driver = subprocess.run(
            [sys.executable, os.path.join(HERE, "node_join_driver.py"), str(tmp_path), nodes_root],
            capture_output=True, text=True, timeout=240, env=dict(os.environ, RAY_AUTH_MODE="disabled"))
    except subprocess.TimeoutExpired as exc:  # the joined node got no trial, so none was released
        raise AssertionError(f"the driver ran over 240 s:\n{(exc.stdout or b'')[-2000:]!r}\n"
                             f"{(exc.stderr or b'')[-4000:]!r}") from None
    finally:
        kill_leftovers(nodes_root)
        shutil.rmtree(nodes_root, ignore_errors=True)
    assert driver.returncode == 0, driver.stdout[-3000:] + driver.stderr[-3000:]
    report = json.loads(driver.stdout.strip().splitlines()[-1])
    assert report["errors"] == 0 and sorted(report["trials"], key=int) == [str(x) for x in range(TRIALS)]
    on_joined = [x for x, trial in report["trials"].items() if trial["nodes"] == [report["joined"]]]
    assert on_joined, report
    for x, trial in report["trials"].items():
        assert trial["iterations"] == list(range(ITERATIONS)), f"trial x={x}"
        assert trial["nodes"] in ([report["first"]], [report["joined"]])
