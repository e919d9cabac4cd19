"""The per-trial files, written on the writer thread."""
import json
import os

import pytest

from fasttune.logger._trial_files import TrialFiles


def _row(i):
    return (json.dumps({"training_iteration": i, "v": i * 1.5}) + "\n").encode()


def test_operations_land_in_order_after_flush(tmp_path):
    files = TrialFiles()
    trial_dir = str(tmp_path / "t1")
    files.init_trial(trial_dir, {"lr": 0.1, "nested": {"a": [1, 2]}})
    files.write(trial_dir, _row(1) + _row(2), b"training_iteration,v\r\n1,1.5\r\n2,3.0\r\n")
    files.write(trial_dir, _row(3), b"3,4.5\r\n")
    files.flush()
    with open(os.path.join(trial_dir, "params.json")) as f:
        assert json.load(f) == {"lr": 0.1, "nested": {"a": [1, 2]}}
    with open(os.path.join(trial_dir, "result.json")) as f:
        assert [json.loads(line)["training_iteration"] for line in f] == [1, 2, 3]
    with open(os.path.join(trial_dir, "progress.csv"), newline="") as f:
        assert f.read() == "training_iteration,v\r\n1,1.5\r\n2,3.0\r\n3,4.5\r\n"
    path = files.write_error(trial_dir, "Failure # 1", "Traceback: boom")
    files.close_all()
    assert open(path).read() == "Failure # 1\nTraceback: boom\n"


def test_rewind_keeps_each_iteration_up_to_the_checkpoint_once(tmp_path):
    files = TrialFiles()
    trial_dir = str(tmp_path / "t")
    files.init_trial(trial_dir, {})
    csv_rows = b"training_iteration,v\r\n" + b"".join(f"{i},{i * 1.5}\r\n".encode() for i in range(1, 6))
    files.write(trial_dir, b"".join(_row(i) for i in range(1, 6)), csv_rows)
    header = files.rewind(trial_dir, 3)
    assert header == ["training_iteration", "v"]
    files.write(trial_dir, _row(4), b"4,6.0\r\n")
    files.close_all()
    with open(os.path.join(trial_dir, "result.json")) as f:
        assert [json.loads(line)["training_iteration"] for line in f] == [1, 2, 3, 4]
    with open(os.path.join(trial_dir, "progress.csv"), newline="") as f:
        assert f.read().splitlines() == ["training_iteration,v", "1,1.5", "2,3.0", "3,4.5", "4,6.0"]


def test_a_failed_write_surfaces_with_a_clear_error(tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    files = TrialFiles()
    files.init_trial(str(blocker / "trial"), {})
    with pytest.raises(OSError, match="storage path is writable"):
        files.flush()
