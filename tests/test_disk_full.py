"""A result file that can take no more bytes (a full disk, a file-size limit) stops the
sweep with one error naming the file, after a final snapshot that counts only what is on
disk; once there is room again, Tuner.restore continues with every result exactly once."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

import fasttune as tune
from fasttune.execution import _experiment_state as state
from fasttune.logger._trial_files import TrialFiles
from fasttune.result import trial_rows

import disk_full_testing
import restore_testing
from restore_testing import ITERATIONS, CHECKPOINT_EVERY, counting_trainable, wait_until_other_jobs_have_no_live_actors

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


def _rows_on_disk(trial_dir, results_store):
    """The iterations of the trial's whole rows: its result.json, or its rows in the store."""
    if results_store == "per_trial":
        result_file = os.path.join(trial_dir, "result.json")
        return disk_full_testing.whole_rows(result_file) if os.path.exists(result_file) else []
    return [row["training_iteration"] for row in trial_rows(trial_dir)]


@pytest.mark.ray
@pytest.mark.parametrize("results_store", ["per_trial", "experiment"])
def test_a_full_result_file_stops_the_sweep_once_and_restore_continues_exactly_once(ray_session, tmp_path,
                                                                                    results_store):
    tmp, storage = str(tmp_path / "work"), str(tmp_path / "results")
    os.makedirs(tmp)
    restore_testing.set_phase(tmp, "first")
    # Between FULL_AFTER_ROWS and one more line of ~LINE_BYTES (lines vary by a few bytes).  The
    # store holds all trials' rows in one file, and their config lines (each with the pad):
    # room for a few more, so that some trial reports its first checkpoint.
    extra_rows = 0 if results_store == "per_trial" else 3
    limit = int((disk_full_testing.FULL_AFTER_ROWS + extra_rows + 0.5) * disk_full_testing.LINE_BYTES)
    # Snapshots only at the first step and at the end: what a restore resumes from is the final one.
    env = dict(os.environ, FASTTUNE_GLOBAL_CHECKPOINT_S="100000",
               PYTHONPATH=os.pathsep.join([TESTS_DIR, os.environ.get("PYTHONPATH", "")]))
    args = json.dumps([ray_session.get_runtime_context().gcs_address, tmp, storage, 7, limit, results_store])
    proc = subprocess.run([sys.executable, os.path.join(TESTS_DIR, "disk_full_testing.py"), args], env=env,
                          capture_output=True, text=True, timeout=240, start_new_session=True)
    wait_until_other_jobs_have_no_live_actors(ray_session)
    restore_testing.set_phase(tmp, "restore")
    path = os.path.join(storage, "full")

    assert proc.returncode == 3, proc.stdout[-3000:] + proc.stderr[-3000:]
    raised = json.loads(proc.stdout.split("FIT RAISED ", 1)[1].splitlines()[0])
    assert raised["message"].startswith("Writing trial result files failed"), raised
    if results_store == "per_trial":
        assert "File too large: '" + path in raised["message"] and "result.json'" in raised["message"], raised
    else:
        segment = os.path.join(path, "results", "000001.jsonl")
        assert "File too large: '" + segment + "'" in raised["message"], raised
        with open(segment, "rb") as f:
            assert f.read().endswith(b"\n")  # whole batches only
    assert "Tuner.restore()" in raised["message"]
    # Told once: nothing logs it (or a failure of the final snapshot) again.
    assert "Writing trial result files failed" not in proc.stderr, proc.stderr[-3000:]
    assert "failed too" not in proc.stderr, proc.stderr[-3000:]

    # The final snapshot counts only whole rows on disk: every checkpoint it lists was
    # saved within them, and the torn tail is gone.
    before = {t.trial_id: t for t in state.read_trials(path)}
    assert len(before) == disk_full_testing.NUM_SAMPLES
    resumable = 0
    for trial in before.values():
        rows = _rows_on_disk(trial.path, results_store)
        assert rows == list(range(1, len(rows) + 1)), trial.path
        assert len(rows) <= disk_full_testing.FULL_AFTER_ROWS
        assert trial.status != "TERMINATED"  # none can have all its rows on disk
        for _, saved_with in trial.checkpoint_results:
            assert saved_with["training_iteration"] <= len(rows), trial.trial_id
        resumable += bool(trial.checkpoints)
    assert resumable >= 1  # the final snapshot (the first one has no checkpoint yet)

    grid = tune.Tuner.restore(path, trainable=counting_trainable).fit()

    assert len(grid) == disk_full_testing.NUM_SAMPLES and grid.num_errors == 0
    for result in grid:
        assert _rows_on_disk(result.path, results_store) == list(range(1, ITERATIONS + 1)), result.path
    restarted = dict(restore_testing.logged_starts(tmp, "restore", ray_session.get_runtime_context().get_job_id()))
    for trial_id, trial in before.items():
        saved_at = trial.checkpoint_results[-1][1]["training_iteration"] if trial.checkpoints else 0
        assert restarted[trial_id] == saved_at
        assert saved_at % CHECKPOINT_EVERY == 0


_FILL_TMPFS = textwrap.dedent("""
    import json, os, subprocess, sys
    from fasttune.logger._trial_files import TrialFiles
    root = sys.argv[1]
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", root], check=True)
    files = TrialFiles(write_csv=True)
    trial_dir = os.path.join(root, "trial")
    files.init_trial(trial_dir, {"x": 1})
    row = lambda i: (json.dumps({"training_iteration": i, "pad": "p" * 900}) + "\\n").encode()
    files.write(trial_dir, row(1), b"training_iteration\\r\\n1\\r\\n")
    for i in range(2, 200):  # far more than 64 KiB
        files.write(trial_dir, row(i), str(i).encode() + b"\\r\\n")
    try:
        files.flush()
        error = None
    except OSError as exc:
        error = str(exc)
    files.flush()  # told once
    kept = files.keep_whole_rows(trial_dir)
    files.close_all()
    with open(os.path.join(trial_dir, "result.json"), "rb") as f:
        json_data = f.read()
    with open(os.path.join(trial_dir, "progress.csv"), "rb") as f:
        csv_data = f.read()
    print(json.dumps({"error": error, "kept": kept, "unwritten": sorted(files.unwritten_trial_dirs),
                      "json": json_data.decode(), "csv": csv_data.decode(), "listing": os.listdir(trial_dir)}))
""")


def test_on_a_full_tmpfs_result_files_keep_whole_rows_and_the_error_names_the_file(tmp_path):
    """A real ENOSPC: a 64 KiB tmpfs, mounted in a mount namespace of its own (the tests
    run as root), filled by one trial's results."""
    root = tmp_path / "small"
    root.mkdir()
    proc = subprocess.run(["unshare", "--mount", sys.executable, "-c", _FILL_TMPFS, str(root)],
                          capture_output=True, text=True, timeout=120, env=os.environ)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.splitlines()[-1])
    trial_dir = os.path.join(str(root), "trial")
    assert "No space left on device: '" + os.path.join(trial_dir, "result.json") + "'" in out["error"] \
        or "No space left on device: '" + os.path.join(trial_dir, "progress.csv") + "'" in out["error"], out["error"]
    assert "Tuner.restore()" in out["error"]
    assert out["unwritten"] == [trial_dir]
    rows = [json.loads(line)["training_iteration"] for line in out["json"].splitlines()]
    assert out["json"].endswith("\n") and rows == list(range(1, len(rows) + 1))
    assert 10 < len(rows) < 199 and out["kept"] == len(rows)
    assert out["csv"].split("\r\n") == ["training_iteration"] + [str(i) for i in rows] + [""]
    assert sorted(out["listing"]) == ["params.json", "progress.csv", "result.json"]  # no temporary left


def test_keep_whole_rows_cuts_a_torn_tail_and_rows_only_one_file_has(tmp_path):
    trial_dir = tmp_path / "t"
    trial_dir.mkdir()
    lines = [json.dumps({"training_iteration": i}) + "\n" for i in (1, 2, 3)]
    (trial_dir / "result.json").write_text("".join(lines) + '{"training_iteration": 4')
    (trial_dir / "progress.csv").write_bytes(b"training_iteration\r\n1\r\n2\r\n")
    files = TrialFiles(write_csv=True)
    assert files.keep_whole_rows(str(trial_dir)) == 2
    assert (trial_dir / "result.json").read_text() == "".join(lines[:2])
    assert (trial_dir / "progress.csv").read_bytes() == b"training_iteration\r\n1\r\n2\r\n"
    files.close_all()


class _RaisesOnTheFirstResult(tune.Callback):
    def on_trial_result(self, iteration, trials, trial, result, **info):
        raise ValueError("a callback failed")


def _reports_twice(config):
    tune.report({"loss": 1.0})
    tune.report({"loss": 2.0})


@pytest.mark.ray
def test_a_write_failure_seen_while_the_loops_error_winds_down_is_logged_and_that_error_raised(
        ray_session, tmp_path, monkeypatch, caplog):
    """The callback's error leaves the loop first; the result write fails on the writer
    thread and is seen only as the files close: fit() raises the callback's error (what
    stopped the sweep), and the write failure is logged with it, not lost."""
    import errno
    import logging

    def full(self, trial_dir, json_bytes, csv_bytes):
        raise OSError(errno.ENOSPC, "No space left on device", os.path.join(trial_dir, "result.json"))

    monkeypatch.setattr(TrialFiles, "_stage_results", full)
    with caplog.at_level(logging.ERROR):
        with pytest.raises(tune.TuneError, match=r"_RaisesOnTheFirstResult\.on_trial_result raised ValueError"):
            tune.Tuner(_reports_twice, run_config=tune.RunConfig(
                name="both", storage_path=str(tmp_path), verbose=0, callbacks=[_RaisesOnTheFirstResult()])).fit()
    assert "Writing trial result files failed (OSError: [Errno 28] No space left on device" in caplog.text
