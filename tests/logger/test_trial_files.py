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


def test_rewind_stops_at_a_line_nested_too_deep_to_parse(tmp_path):
    """A damaged row that json.loads cannot parse without overflowing the stack ends what
    a restart keeps, as any other bad row does (no RecursionError out of the restore)."""
    files = TrialFiles()
    trial_dir = str(tmp_path / "t")
    files.init_trial(trial_dir, {})
    files.write(trial_dir, _row(1) + _row(2), b"training_iteration,v\r\n1,1.5\r\n2,3.0\r\n")
    files.flush()
    with open(os.path.join(trial_dir, "result.json"), "ab") as f:
        f.write(b"[" * 100_000 + b"]" * 100_000 + b"\n" + _row(4))
    files.rewind(trial_dir, 4)
    files.close_all()
    with open(os.path.join(trial_dir, "result.json")) as f:
        assert [json.loads(line)["training_iteration"] for line in f] == [1, 2]


def test_a_failed_write_surfaces_with_a_clear_error(tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    files = TrialFiles()
    files.init_trial(str(blocker / "trial"), {})
    with pytest.raises(OSError, match="storage path is writable"):
        files.flush()


def test_remove_checkpoint_deletes_the_directory_on_the_writer_thread(tmp_path):
    files = TrialFiles()
    trial_dir = tmp_path / "t"
    for name in ("checkpoint_000000", "checkpoint_000001"):
        (trial_dir / name / "sub").mkdir(parents=True)
        (trial_dir / name / "sub" / "data").write_bytes(b"x" * 10)
    files.remove_checkpoint(str(trial_dir / "checkpoint_000000"))
    files.remove_checkpoint(str(tmp_path / "gone_already"))  # missing: not an error
    files.flush()
    assert sorted(os.listdir(trial_dir)) == ["checkpoint_000001"]
    files.close_all()
