"""The writers take their calls in batches: a short trial's files are each created once,
with all their content, and closed at once; what does not fit on a full disk is kept
batch by batch."""
import json
import os
import subprocess
import sys
import textwrap
import threading
from types import SimpleNamespace

import pytest

from fasttune import _corelib as core
from fasttune._jsonable import json_default
from fasttune.logger import _trial_files
from fasttune.logger._tb_records import file_version_record
from fasttune.logger._trial_files import TrialFiles, params_text
from fasttune.logger._writer_thread import WriterThread
from fasttune.logger.tensorboardx import _EventFiles


def _hold(writer):
    """Keep ``writer``'s thread busy until the returned event is set, so that the calls
    submitted meanwhile make one batch."""
    release = threading.Event()
    writer.submit(release.wait)
    return release


def test_calls_gathered_in_a_batch_are_committed_after_them_and_before_a_wait_returns():
    events = []
    writer = WriterThread("test files", linger_s=0.05, commit=lambda: events.append("commit"))
    release = _hold(writer)
    for i in range(5):
        writer.submit(events.append, i)
    release.set()
    writer.wait()
    assert events == [0, 1, 2, 3, 4, "commit"]
    writer.submit(events.append, 5)
    writer.flush()  # cuts the linger short, and commits first
    assert events[-2:] == [5, "commit"]
    writer.close()


def test_a_short_trials_files_are_opened_once_with_all_their_content_and_closed(tmp_path, monkeypatch):
    opened = []  # the files the batches' appends open (a descriptor of -1 is opened)

    def counting_batch(ops):
        for op in ops:
            if op[0] == core.FILE_APPEND and op[2] < 0:
                opened.extend(os.path.basename(path) for path in (op[1], op[4]) if path is not None)
        return core.write_file_batch(ops)

    counting_core = SimpleNamespace(**{name: getattr(core, name) for name in core.__all__})
    counting_core.write_file_batch = counting_batch
    monkeypatch.setattr(_trial_files, "core", counting_core)
    files = TrialFiles(write_csv=True)
    trial_dir = str(tmp_path / "t")
    release = _hold(files._writer)
    files.init_trial(trial_dir, {"x": 0.5})
    files.write(trial_dir, b'{"training_iteration": 1}\n', b"training_iteration\r\n1\r\n")
    files.write(trial_dir, b'{"training_iteration": 2}\n', b"2\r\n")
    files.close(trial_dir)
    release.set()
    files.flush()
    assert sorted(opened) == ["progress.csv", "result.json"]
    assert files._open == {}  # closed with the batch
    assert (tmp_path / "t" / "result.json").read_bytes() == b'{"training_iteration": 1}\n{"training_iteration": 2}\n'
    assert (tmp_path / "t" / "progress.csv").read_bytes() == b"training_iteration\r\n1\r\n2\r\n"
    assert json.loads((tmp_path / "t" / "params.json").read_text()) == {"x": 0.5}
    # A trial that goes on keeps its files open for its next batches.
    files.write(trial_dir, b'{"training_iteration": 3}\n', b"3\r\n")
    files.flush()
    assert list(files._open) == [trial_dir]
    files.close_all()
    assert (tmp_path / "t" / "progress.csv").read_bytes().endswith(b"2\r\n3\r\n")


def test_params_text_is_jsons_indented_sorted_text():
    configs = [{"lr": 0.1, "act": "relu", "n": 3, "flag": True, "none": None},
               {"nan": float("nan"), "inf": float("inf"), "neg": -float("inf"), "big": 10 ** 30},
               {"üñí": "ç\"\\\n", "": ""}, {}, {"nested": {"b": 1, "a": [1, 2]}}, {1: "int key"}]
    for config in configs:
        assert params_text(config) == json.dumps(config, indent=2, sort_keys=True, default=json_default)


def test_event_files_are_written_once_per_batch_and_make_the_trials_directory(tmp_path):
    files = _EventFiles()
    path = str(tmp_path / "trial" / "events.out.tfevents.1.host")
    files.create(path, 1.0)  # the trial's directory is not there yet
    files.append(path, b"first")
    files.append(path, b"second")
    files.commit()
    files.append(path, b"third")
    files.close(path)
    files.commit()
    with open(path, "rb") as f:
        assert f.read() == file_version_record(1.0) + b"firstsecondthird"
    assert files._open == {}


_FILL_TO_THE_LIMIT = textwrap.dedent("""
    import json, os, resource, sys
    from fasttune.logger._trial_files import TrialFiles
    from fasttune.logger.tensorboardx import _EventFiles
    root = sys.argv[1]
    resource.setrlimit(resource.RLIMIT_FSIZE, (550, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    out = {}
    events = _EventFiles()
    for i in range(10):
        events.append(root + "/events", bytes([65 + i]) * 100)
    try:
        events.commit()
    except OSError as exc:
        out["events"] = [exc.errno, exc.filename]
    events.close_all()
    files = TrialFiles(write_csv=False)
    files.init_trial(root + "/trial", {"x": 1})
    for i in range(10):
        files.write(root + "/trial", bytes([65 + i]) * 99 + b"\\n", b"")
    files.close(root + "/trial")
    try:
        files.flush()
    except OSError as exc:
        out["results"] = [exc.errno, sorted(files.unwritten_trial_dirs)]
    files.close_all()
    print(json.dumps(out))
""")


@pytest.mark.parametrize("pure_python", ["0", "1"])
def test_records_and_batches_that_do_not_fit_together_are_kept_whole_one_by_one(tmp_path, pure_python):
    """Over RLIMIT_FSIZE (Python ignores SIGXFSZ: the write is short, then fails with
    EFBIG, as on a full disk): the joined write is cut back, then the event records (and
    a trial's result batches) that fit go in whole.  With either core."""
    import errno

    root = str(tmp_path)
    proc = subprocess.run([sys.executable, "-c", _FILL_TO_THE_LIMIT, root], capture_output=True, text=True,
                          timeout=60, env=dict(os.environ, FASTTUNE_PUREPYTHON=pure_python))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out["events"] == [errno.EFBIG, root + "/events"]
    assert out["results"][0] == errno.EFBIG and out["results"][1] == [root + "/trial"]
    with open(root + "/events", "rb") as f:
        assert f.read() == b"".join(bytes([65 + i]) * 100 for i in range(5))
    with open(root + "/trial/result.json", "rb") as f:
        assert f.read() == b"".join(bytes([65 + i]) * 99 + b"\n" for i in range(5))


def test_config_to_json_is_json_dumps_text():
    import numpy as np

    from fasttune.logger._trial_files import config_to_json

    for config in ({"lr": 0.1, "nested": {"a": [1, 2.5]}, "s": "ü"}, {"nan": float("nan"), "np": np.float32(0.5)},
                   {}, {"f": len}):
        assert config_to_json(config) == json.dumps(config, default=json_default)


def test_a_params_failure_costs_no_trial_its_results(tmp_path):
    """params.json cannot be replaced (a directory is in its place): that failure is
    raised, and every trial's results are written all the same, now and later."""
    files = TrialFiles(write_csv=True)
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    os.makedirs(os.path.join(a, "params.json"))
    release = _hold(files._writer)
    files.init_trial(a, {"x": 1})
    files.write(a, b'{"i": 1}\n', b"i\r\n1\r\n")
    files.init_trial(b, {"x": 2})
    files.write(b, b'{"i": 1}\n', b"i\r\n1\r\n")
    release.set()
    with pytest.raises(OSError) as raised:
        files.flush()
    assert "params.json" in str(raised.value.__cause__.filename)
    files.write(b, b'{"i": 2}\n', b"2\r\n")
    files.close_all()
    assert files.unwritten_trial_dirs == set()
    assert (tmp_path / "a" / "result.json").read_bytes() == b'{"i": 1}\n'
    assert (tmp_path / "b" / "result.json").read_bytes() == b'{"i": 1}\n{"i": 2}\n'
    assert json.loads((tmp_path / "b" / "params.json").read_text()) == {"x": 2}


def test_a_batch_never_holds_many_more_files_open_than_the_bound(tmp_path, monkeypatch):
    """Trials that close and trials that open in one batch: the closing ones' files close
    before the new ones open (bound 4 trials, 2 files each, plus the pair being opened)."""
    monkeypatch.setattr(_trial_files, "MAX_OPEN_TRIALS", 4)
    files = TrialFiles(write_csv=True)
    old = [str(tmp_path / f"old{i}") for i in range(4)]
    new = [str(tmp_path / f"new{i}") for i in range(4)]
    for trial_dir in old:
        files.init_trial(trial_dir, {})
        files.write(trial_dir, b'{"i": 1}\n', b"i\r\n1\r\n")
    files.flush()
    assert len(files._open) == 4
    baseline = len(os.listdir("/proc/self/fd")) - 8  # less the old trials' files
    peak = [0]
    real_open = os.open

    def counting_open(*args, **kwargs):
        fd = real_open(*args, **kwargs)
        peak[0] = max(peak[0], len(os.listdir("/proc/self/fd")) - baseline)
        return fd

    release = _hold(files._writer)
    for trial_dir in new:  # staged first: they open files
        files.init_trial(trial_dir, {})
        files.write(trial_dir, b'{"i": 1}\n', b"i\r\n1\r\n")
    for trial_dir in old:
        files.write(trial_dir, b'{"i": 2}\n', b"2\r\n")
        files.close(trial_dir)
    monkeypatch.setattr(_trial_files, "core", _twin_core(monkeypatch, counting_open))
    release.set()
    files.flush()
    assert sorted(files._open) == sorted(new)
    # 4 trials x 2 files, and a listdir's own descriptor.
    assert peak[0] <= 8 + 1
    files.close_all()


def _twin_core(monkeypatch, counting_open):
    """The pure-Python core, whose os.open calls ``counting_open`` (the compiled one's
    opens cannot be watched)."""
    from fasttune import _core_fallback

    monkeypatch.setattr(_core_fallback.os, "open", counting_open)
    twin_core = SimpleNamespace(**{name: getattr(core, name) for name in core.__all__})
    twin_core.write_file_batch = _core_fallback.write_file_batch
    return twin_core


def test_a_trial_directory_the_file_system_cannot_name_costs_only_that_trial(tmp_path):
    files = TrialFiles(write_csv=False)
    a, bad = str(tmp_path / "a"), str(tmp_path / "b\ud800")
    release = _hold(files._writer)
    files.init_trial(a, {"x": 1})
    files.write(a, b'{"i": 1}\n', b"")
    files.init_trial(bad, {"x": 2})
    release.set()
    with pytest.raises(OSError) as raised:
        files.flush()
    assert isinstance(raised.value.__cause__, UnicodeEncodeError)
    files.write(a, b'{"i": 2}\n', b"")
    files.close_all()
    assert files.unwritten_trial_dirs == set()
    assert (tmp_path / "a" / "result.json").read_bytes() == b'{"i": 1}\n{"i": 2}\n'


@pytest.mark.parametrize("pure_python", [False, True])
def test_a_result_file_that_cannot_be_cut_back_is_named_and_its_batches_are_not_appended_again(
        tmp_path, monkeypatch, pure_python):
    """result.json is a FIFO (which cannot be cut back: it keeps what went into it) and
    progress.csv is /dev/full (ENOSPC, as on a full disk).  The failure names result.json,
    the trial counts as having lost results (its snapshot cuts its files to the rows both
    hold), and its two batches are not appended again one by one (they are in the FIFO)."""
    import errno

    from fasttune import _core_fallback

    if pure_python:
        monkeypatch.setattr(_trial_files.core, "write_file_batch", _core_fallback.write_file_batch)
    trial_dir = tmp_path / "t"
    trial_dir.mkdir()
    os.mkfifo(trial_dir / "result.json")
    os.symlink("/dev/full", trial_dir / "progress.csv")
    reader = os.open(trial_dir / "result.json", os.O_RDONLY | os.O_NONBLOCK)  # the core's open does not block
    files = TrialFiles(write_csv=True)
    release = _hold(files._writer)
    files.write(str(trial_dir), b'{"i": 1}\n', b"i\r\n1\r\n")
    files.write(str(trial_dir), b'{"i": 2}\n', b"2\r\n")
    release.set()
    with pytest.raises(OSError) as raised:
        files.flush()
    files.close_all()
    failure = raised.value.__cause__
    assert isinstance(failure, core.AppendNotCutBack)
    assert (failure.errno, failure.uncut_paths) == (errno.ENOSPC, (str(trial_dir / "result.json"),))
    assert "could not be cut back" in str(raised.value) and "Tuner.restore()" in str(raised.value)
    assert files.unwritten_trial_dirs == {str(trial_dir)}
    assert os.read(reader, 1000) == b'{"i": 1}\n{"i": 2}\n'
    os.close(reader)


def test_a_result_file_not_cut_back_is_raised_before_another_trials_failure_in_the_batch(tmp_path):
    """Another trial's config that cannot be written (keys JSON cannot sort) fails first in
    the batch; the torn result file (as above) is still the failure raised."""
    trial_dir = tmp_path / "t"
    trial_dir.mkdir()
    os.mkfifo(trial_dir / "result.json")
    os.symlink("/dev/full", trial_dir / "progress.csv")
    reader = os.open(trial_dir / "result.json", os.O_RDONLY | os.O_NONBLOCK)
    files = TrialFiles(write_csv=True)
    release = _hold(files._writer)
    files.init_trial(str(tmp_path / "a"), {1: 1, "x": 2})
    files.write(str(trial_dir), b'{"i": 1}\n', b"i\r\n1\r\n")
    release.set()
    with pytest.raises(OSError) as raised:
        files.flush()
    files.close_all()
    os.close(reader)
    assert isinstance(raised.value.__cause__, core.AppendNotCutBack)
    assert raised.value.__cause__.uncut_paths == (str(trial_dir / "result.json"),)


def _torn_event_file(files, path):
    """Make ``files`` (an _EventFiles) tear a record in ``path``, a FIFO: its first commit
    opens it; made non-blocking, the next append takes one pipe buffer of a bigger record,
    then fails with EAGAIN, and a pipe cannot be cut back.  Returns the FIFO's read end and
    the torn record."""
    import fcntl

    os.mkfifo(path)
    reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # the core's open does not block
    files.append(path, b"whole")
    files.commit()
    descriptor = files._open[path][0]
    os.set_blocking(descriptor, False)
    return reader, b"t" * (fcntl.fcntl(descriptor, 1032) + 1)  # F_GETPIPE_SZ


def test_an_event_file_not_cut_back_is_raised_first_and_written_no_more(tmp_path):
    """Another file's failure (a name the file system cannot take) comes first in the
    commit; the torn record is raised.  TensorBoard stops reading a file at a torn record,
    so nothing more is appended to it (the file closes), while other files go on."""
    files = _EventFiles()
    torn, other = str(tmp_path / "torn"), str(tmp_path / "other")
    reader, too_big = _torn_event_file(files, torn)
    assert os.read(reader, 100) == b"whole"
    files.append(str(tmp_path / "\ud800"), b"x")
    files.append(torn, too_big)
    with pytest.raises(core.AppendNotCutBack) as raised:
        files.commit()
    assert raised.value.uncut_paths == (torn,)
    kept = len(os.read(reader, len(too_big)))
    assert 0 < kept < len(too_big)  # the torn record
    files.append(torn, b"later")
    files.append(other, b"later")
    files.close(torn)
    files.commit()
    files.close_all()
    assert os.read(reader, 100) == b""  # closed, with nothing after the torn record
    os.close(reader)
    assert (tmp_path / "other").read_bytes() == b"later"
