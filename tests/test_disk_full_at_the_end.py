"""A result write that fails only as the driver closes its files at the end (the last
batch met a full disk after the loop's last check) still ends the experiment as usual:
the final snapshot, the end-of-experiment callbacks and the last upload to storage come
first, then fit() raises the one disk-full error naming the file."""
import json
import os
import subprocess
import sys

import pytest

from fasttune.execution import _experiment_state as state

import restore_testing
from restore_testing import ITERATIONS, wait_until_other_jobs_have_no_live_actors

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.ray
def test_a_full_disk_seen_first_at_the_end_still_saves_ends_and_uploads_the_experiment(ray_session, tmp_path):
    import disk_full_testing

    tmp, storage = str(tmp_path / "work"), str(tmp_path / "storage")
    os.makedirs(tmp)
    os.makedirs(storage)
    restore_testing.set_phase(tmp, "first")
    # Every row but the last fits (lines are ~LINE_BYTES long, one batch each).
    limit = int((ITERATIONS - 0.5) * disk_full_testing.LINE_BYTES)
    env = dict(os.environ, FASTTUNE_GLOBAL_CHECKPOINT_S="100000", FASTTUNE_STORAGE_CACHE=str(tmp_path / "cache"),
               PYTHONPATH=os.pathsep.join([TESTS_DIR, os.environ.get("PYTHONPATH", "")]))
    args = json.dumps([ray_session.get_runtime_context().gcs_address, tmp, f"file://{storage}", limit])
    proc = subprocess.run([sys.executable, os.path.join(TESTS_DIR, "disk_full_at_the_end_testing.py"), args],
                          env=env, capture_output=True, text=True, timeout=240, start_new_session=True)
    wait_until_other_jobs_have_no_live_actors(ray_session)

    assert proc.returncode == 3, proc.stdout[-3000:] + proc.stderr[-3000:]
    raised = json.loads(proc.stdout.split("FIT RAISED ", 1)[1].splitlines()[0])
    staged = os.path.join(str(tmp_path / "cache"), "staging")
    assert raised["message"].startswith("Writing trial result files failed"), raised
    assert "File too large: '" + staged in raised["message"] and "result.json'" in raised["message"], raised
    # Told once, and nothing claims the snapshot was not saved.
    assert "Writing trial result files failed" not in proc.stderr, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    # The end-of-experiment callbacks ran, after the trial was set back to be continued.
    with open(os.path.join(tmp, "ended")) as f:
        assert f.read() == "PENDING"

    # The final snapshot reached storage, and with it the result rows it counts.
    (local,) = [os.path.join(root, "full") for root in (os.path.join(staged, d) for d in os.listdir(staged))]
    in_storage = os.path.join(storage, "full")
    newest = os.path.basename(state.snapshot_paths(local)[0])  # newest first
    assert os.path.basename(state.snapshot_paths(in_storage)[0]) == newest
    with open(os.path.join(local, newest), "rb") as a, open(os.path.join(in_storage, newest), "rb") as b:
        assert a.read() == b.read()
    (trial,) = state.read_trials(in_storage)
    rows = disk_full_testing.whole_rows(os.path.join(local, os.path.basename(trial.path), "result.json"))
    # Every batch is one result; how many fit depends a little on the paths in the config.
    assert rows == list(range(1, len(rows) + 1)) and 0 < len(rows) < ITERATIONS
    assert trial.results_seen == len(rows) and trial.status == "PENDING"
    assert disk_full_testing.whole_rows(os.path.join(in_storage, os.path.basename(trial.path), "result.json")) == rows
