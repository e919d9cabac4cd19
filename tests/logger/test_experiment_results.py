"""The experiment-level results store (``RunConfig(results_store="experiment")``): its
writer keeps every result once, in order, through restarts, segments, restores and a
full disk; its reader keeps damage to the line it is on."""
import errno
import json
import logging
import os
import subprocess
import sys
import textwrap

import pytest

from fasttune import _results_store as store
from fasttune.logger._experiment_results import ExperimentResultFiles


def _line(trial_id, i, **more):
    return (json.dumps({"trial_id": trial_id, "i": i, **more}) + "\n").encode()


def _one_trial_store(exp):
    """A store's writer with the trial ``t`` (id ``T``) started; returns it and the trial's directory."""
    files = ExperimentResultFiles(exp)
    trial = os.path.join(exp, "t")
    files.init_trial(trial, {}, trial_id="T")
    return files, trial


def _rows(exp):
    return {name: [r["i"] for r in t.rows] for name, t in (store.read_store(exp) or {}).items()}


def test_results_configs_and_restarts_of_interleaved_trials_read_back_per_trial(tmp_path):
    exp = str(tmp_path)
    files = ExperimentResultFiles(exp)
    a, b = os.path.join(exp, "t_a"), os.path.join(exp, "t_b")
    files.init_trial(a, {"lr": 0.1}, trial_id="A")
    files.init_trial(b, {"lr": 0.2}, trial_id="B")
    files.write(a, _line("A", 1) + _line("A", 2), b"")
    files.write(b, _line("B", 1), b"")
    files.flush()
    files.write(a, _line("A", 3), b"")
    assert files.rewind(a, 1) is None  # restarted from a checkpoint that counts one result
    files.write(a, _line("A", 2) + _line("A", 3), b"")
    files.init_trial(b, {"lr": 0.5}, trial_id="B")  # PBT's exploit: a new config from now on
    files.write(b, _line("B", 2), b"")
    files.close(a)
    files.close_all()

    stored = store.read_store(exp)
    assert list(stored) == ["t_a", "t_b"]
    assert [r["i"] for r in stored["t_a"].rows] == [1, 2, 3]
    assert [r["i"] for r in stored["t_b"].rows] == [1, 2]
    assert (stored["t_a"].trial_id, stored["t_a"].config) == ("A", {"lr": 0.1})
    assert (stored["t_b"].trial_id, stored["t_b"].config) == ("B", {"lr": 0.5})
    # One file for both trials, no trial directory.
    assert sorted(os.listdir(exp)) == ["results"]
    assert os.listdir(os.path.join(exp, "results")) == ["000001.jsonl"]


def test_a_full_segment_is_closed_and_the_next_begun(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "SEGMENT_BYTES", 200)
    exp = str(tmp_path)
    files, trial = _one_trial_store(exp)
    for i in range(1, 11):
        files.write(trial, _line("T", i, pad="x" * 40), b"")
        files.flush()  # a batch of its own each
    files.close_all()
    segments = store.segment_paths(exp)
    assert len(segments) >= 3
    assert all(os.path.getsize(path) < 200 + 100 for _, path in segments)
    assert _rows(exp) == {"t": list(range(1, 11))}


def test_a_restore_cuts_the_store_back_to_the_snapshot_and_sets_the_rest_aside(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "SEGMENT_BYTES", 150)
    exp = str(tmp_path)
    files, trial = _one_trial_store(exp)
    files.write(trial, _line("T", 1), b"")
    files.flush()
    position = files.position()  # what a snapshot taken now records
    for i in range(2, 8):
        files.write(trial, _line("T", i, pad="y" * 60), b"")
        files.flush()
    files.close_all()
    assert len(store.segment_paths(exp)) > 2 and _rows(exp) == {"t": list(range(1, 8))}

    restored = ExperimentResultFiles(exp)
    restored.restore_position(position, "not-in-snapshot-0000000002")
    assert _rows(exp) == {"t": [1]}
    aside = os.path.join(exp, "not-in-snapshot-0000000002")
    assert _rows(aside) == {"T": list(range(2, 8))}  # kept, under the trial's id (its trial line is in the snapshot)
    restored.write(trial, _line("T", 2), b"")
    restored.close_all()
    assert _rows(exp) == {"t": [1, 2]}
    # The new rows went to a segment numbered after every earlier one, the set-aside ones too.
    assert store.segment_paths(exp)[-1][0] > max(i for i, _ in store.segment_paths(aside))


def test_a_second_restore_of_the_same_snapshot_cuts_what_the_restored_run_wrote_and_overwrites_nothing(
        tmp_path, monkeypatch):
    monkeypatch.setattr(store, "SEGMENT_BYTES", 120)
    exp = str(tmp_path)
    files, trial = _one_trial_store(exp)
    files.write(trial, _line("T", 1), b"")
    files.flush()
    position = files.position()
    for i in range(2, 6):  # after the first snapshot, over several segments
        files.write(trial, _line("T", i, pad="a" * 60), b"")
        files.flush()
    files.close_all()
    restored = ExperimentResultFiles(exp)
    aside = store.SET_ASIDE_PREFIX + "0000000002"  # both restores read the same snapshot
    restored.restore_position(position, aside)
    second_position = restored.position()  # the restored run's first snapshot, before it wrote anything
    for i in (20, 30):  # what it wrote before it was interrupted too
        restored.write(trial, _line("T", i, pad="b" * 60), b"")
        restored.flush()
    restored.close_all()

    ExperimentResultFiles(exp).restore_position(second_position, aside)
    assert _rows(exp) == {"t": [1]}
    # The restored run numbered its segments after the set-aside ones: nothing was written over.
    assert _rows(os.path.join(exp, aside)) == {"T": [2, 3, 4, 5, 20, 30]}


def test_the_reader_skips_a_damaged_line_and_keeps_the_rest(tmp_path, caplog):
    exp = str(tmp_path)
    os.mkdir(os.path.join(exp, store.STORE_DIR))
    first = os.path.join(exp, store.STORE_DIR, store.segment_name(1))
    with open(first, "wb") as f:
        f.write(store.trial_record("t_a", "A", '{"x": 1}'))
        f.write(_line("A", 1))
        f.write(b'{"trial_id": "A", "i": \n')  # torn, then more was written after it
        f.write(b'{"i": 5}\n')  # a result without its trial
        f.write(b'["keep", "t_a", -1]\n')  # not a record the store writes
        f.write(b"[" * 300 + b"]" * 300 + b"\n")  # nested too deep for any reader
        f.write(_line("A", 2))
        f.write(b'{"trial_id": "A", "i": 3')  # an older segment's torn end
    with open(os.path.join(exp, store.STORE_DIR, store.segment_name(2)), "wb") as f:
        f.write(_line("A", 4))
        f.write(b'{"trial_id": "A", "i": 5')  # the newest segment's torn end: a write in progress
    with caplog.at_level(logging.WARNING):
        assert _rows(exp) == {"t_a": [1, 2, 4]}
    warned = sorted(r.getMessage() for r in caplog.records)
    assert [m.split(", ")[1] for m in warned] == ["line 3", "line 4", "line 5", "line 6", "line 8"]
    assert all(m.startswith(first) for m in warned)
    assert "is not valid JSON" in warned[0] and "without a trial_id" in warned[1]
    assert "nested more than 256 levels deep" in warned[3] and "is cut short" in warned[4]


def test_a_store_naming_no_plain_trial_directory_or_a_file_leads_no_reader_astray(tmp_path, caplog):
    """A crafted store: a trial named ".." (and a result whose trial_id, standing for its
    directory, is a path) is left out with a warning; one named after a file of the
    experiment reads as a trial without a directory, instead of failing every reader."""
    from fasttune.result_grid import ResultGrid

    exp = tmp_path / "exp"
    os.makedirs(exp / store.STORE_DIR)
    (exp / "tuner.msgpack").write_bytes(b"not a directory")
    (tmp_path / "error.txt").write_text("outside the experiment")
    with open(exp / store.STORE_DIR / store.segment_name(1), "wb") as f:
        f.write(store.trial_record("..", "A", '{"x": 1}') + _line("A", 1))
        f.write(_line("../outside", 1))
        f.write(store.trial_record("tuner.msgpack", "B", '{"x": 2}') + _line("B", 2))
        f.write(store.trial_record("t_c", "C", '{"x": 3}') + _line("C", 3))
    with caplog.at_level(logging.WARNING):
        assert _rows(str(exp)) == {"tuner.msgpack": [2], "t_c": [3]}
        grid = ResultGrid.from_path(str(exp))
    assert "names the trial directory '..'" in caplog.text and "names the trial directory '../outside'" in caplog.text
    assert sorted((os.path.basename(r.path), r.metrics["i"], r.error) for r in grid) == [
        ("t_c", 3, None), ("tuner.msgpack", 2, None)]


def test_no_store_reads_as_none(tmp_path):
    assert store.read_store(str(tmp_path)) is None and not store.has_store(str(tmp_path))


FULL_DISK_SCRIPT = textwrap.dedent("""
    import json, os, resource, sys
    from fasttune import _results_store as store
    from fasttune.logger._experiment_results import ExperimentResultFiles

    exp = sys.argv[1]
    files = ExperimentResultFiles(exp)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    written = {"t0": 0, "t1": 0}
    error = None
    for i in range(1, 40):
        for name in written:
            trial = os.path.join(exp, name)
            if i == 1:
                files.init_trial(trial, {"name": name}, trial_id=name.upper())
            line = json.dumps({"trial_id": name.upper(), "i": i, "pad": "p" * 60}) + "\\n"
            files.write(trial, line.encode(), b"")
        try:
            files.flush()
        except OSError as exc:
            error = str(exc)
            break
        for name in written:
            written[name] = i
    files.write(os.path.join(exp, "t0"), b'{"trial_id": "T0", "i": 99}\\n', b"")  # after the failure: not written
    files.wait()
    print(json.dumps({"error": error, "written": written, "unwritten": sorted(files.unwritten_trial_dirs),
                      "kept": {name: files.keep_whole_rows(os.path.join(exp, name)) for name in written}}))
""")


def test_a_full_disk_leaves_whole_batches_and_names_the_trials_that_lost_results(tmp_path):
    """Each flushed batch holds a row of both trials; the one that does not fit keeps, in
    order, the rows that fit whole (here t0's), and nothing after them."""
    exp = str(tmp_path / "exp")
    proc = subprocess.run([sys.executable, "-c", FULL_DISK_SCRIPT, exp], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["error"].startswith("Writing trial result files failed")
    assert "File too large" in out["error"] and "Tuner.restore()" in out["error"]
    written = out["written"]["t0"]
    assert written == out["written"]["t1"] and written >= 5  # the batches flushed whole
    # t0's row of the last batch fit, t1's did not; t0 lost the row written after the failure.
    assert out["unwritten"] == sorted(os.path.join(exp, n) for n in ("t0", "t1"))
    assert out["kept"] == {"t0": written + 1, "t1": written}
    # Only whole rows are there: every line parses, and no trial's history has a hole.
    [(_, segment)] = store.segment_paths(exp)
    with open(segment, "rb") as f:
        data = f.read()
    assert data.endswith(b"\n") and len(data) <= 2000
    assert _rows(exp) == {"t0": list(range(1, written + 2)), "t1": list(range(1, written + 1))}


def test_a_trial_in_the_store_reads_as_a_result_by_its_directory(tmp_path):
    from fasttune.result import Result, trial_rows

    exp = str(tmp_path)
    files = ExperimentResultFiles(exp)
    trial = os.path.join(exp, "t_a")
    files.init_trial(trial, {"lr": 0.1}, trial_id="A")
    files.write(trial, _line("A", 1, loss=2.0) + _line("A", 2, loss=1.0), b"")
    files.close_all()
    result = Result.from_path(trial)  # its directory was never made
    assert result.metrics["loss"] == 1.0 and result.config == {"lr": 0.1} and result.path == trial
    assert result.checkpoint is None and result.error is None
    assert list(result.metrics_dataframe["i"]) == [1, 2]
    assert [r["i"] for r in trial_rows(trial)] == [1, 2]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Result.from_path(os.path.join(exp, "t_other"))


RESTART_ON_A_FULL_DISK_SCRIPT = textwrap.dedent("""
    import json, os, resource, sys
    from fasttune.logger._experiment_results import ExperimentResultFiles

    exp = sys.argv[1]
    files = ExperimentResultFiles(exp)
    trial = os.path.join(exp, "t")
    files.init_trial(trial, {}, trial_id="T")
    line = lambda i: (json.dumps({"trial_id": "T", "i": i, "pad": "p" * 100}) + "\\n").encode()
    for i in range(1, 6):
        files.write(trial, line(i), b"")
    files.flush()
    [segment] = os.listdir(os.path.join(exp, "results"))
    size = os.path.getsize(os.path.join(exp, "results", segment))
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + int(sys.argv[2]), resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    files.rewind(trial, 3)  # restarted from a checkpoint that counts 3 results ...
    files.write(trial, line(4) + line(5), b"")  # ... whose new results do not fit
    try:
        files.flush()
    except OSError as exc:
        error = str(exc)
    print(json.dumps({"error": error, "kept": files.keep_whole_rows(trial)}))
""")


@pytest.mark.parametrize("room", [10, 50])
def test_a_restart_lost_to_a_full_disk_counts_only_the_rows_it_kept(tmp_path, room):
    """The restart's new rows do not fit; its keep line fits (room 50) or not (room 10).
    Either way the trial keeps only the 3 rows its checkpoint counts, as the per-trial
    layout, which cuts result.json at once: a lost keep line's rows are still in the store,
    and the count drops them all the same."""
    exp = str(tmp_path / "exp")
    proc = subprocess.run([sys.executable, "-c", RESTART_ON_A_FULL_DISK_SCRIPT, exp, str(room)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert "File too large" in out["error"] and out["kept"] == 3
    # The old run's 4 and 5 (which the restored run reports again) stay readable only without the keep line.
    assert _rows(exp) == {"t": [1, 2, 3] if room == 50 else [1, 2, 3, 4, 5]}


def test_a_restore_names_the_trials_it_cut_off_so_their_directories_are_set_aside(tmp_path):
    from fasttune.logger._trial_files import set_aside_unknown_trial_dirs

    exp = str(tmp_path)
    files = ExperimentResultFiles(exp)
    kept, lost = os.path.join(exp, "t_kept"), os.path.join(exp, "t_lost")
    files.init_trial(kept, {}, trial_id="K")
    files.write(kept, _line("K", 1), b"")
    files.flush()
    position = files.position()
    files.init_trial(lost, {}, trial_id="L")  # made after the snapshot: the restore makes it again
    files.write(lost, _line("L", 1), b"")
    files.close_all()
    os.makedirs(lost)
    with open(os.path.join(lost, "error.txt"), "w") as f:
        f.write("its first run failed")  # no trial file: only the store names it

    cut_off = ExperimentResultFiles(exp).restore_position(position, "aside")
    assert cut_off == ["t_lost"]
    assert set_aside_unknown_trial_dirs(exp, [kept], "aside", also=cut_off) == ["t_lost"]
    assert os.listdir(os.path.join(exp, "aside", "t_lost")) == ["error.txt"] and not os.path.exists(lost)
    assert _rows(exp) == {"t_kept": [1]}


ORDER_ON_A_FULL_DISK_SCRIPT = textwrap.dedent("""
    import json, os, resource, sys
    from fasttune.logger._experiment_results import ExperimentResultFiles

    exp = sys.argv[1]
    files = ExperimentResultFiles(exp)
    trial = os.path.join(exp, "t")
    files.init_trial(trial, {}, trial_id="T")
    files.write(trial, b'{"trial_id": "T", "i": 1}\\n', b"")
    files.flush()
    [segment] = os.listdir(os.path.join(exp, "results"))
    segment = os.path.join(exp, "results", segment)
    resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(segment) + 100, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    files.write(trial, b'{"trial_id": "T", "i": 2, "pad": "' + b"p" * 200 + b'"}\\n', b"")  # does not fit ...
    files.write(trial, b'{"trial_id": "T", "i": 3}\\n', b"")  # ... and this one would, after it
    try:
        files.flush()
    except OSError as exc:
        error = str(exc)
    print(json.dumps({"error": error, "unwritten": sorted(files.unwritten_trial_dirs),
                      "position": files.position(), "size": os.path.getsize(segment)}))
""")


def test_a_piece_that_does_not_fit_stops_the_pieces_after_it(tmp_path):
    """Pieces go in whole and in order: one that would fit after one that did not is not
    written (the trial's history would get a hole), and the snapshot position is the
    segment's end."""
    exp = str(tmp_path / "exp")
    proc = subprocess.run([sys.executable, "-c", ORDER_ON_A_FULL_DISK_SCRIPT, exp], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert "File too large" in out["error"]
    assert out["unwritten"] == [os.path.join(exp, "t")]
    assert out["position"] == [1, out["size"]]
    assert _rows(exp) == {"t": [1]}


def test_nothing_is_written_after_a_torn_tail_the_cut_could_not_remove(tmp_path):
    """A write that stored half, then failed, on a file system that also refuses the cut
    back: the torn tail stays last (readers skip it); no piece is appended after it."""
    import errno

    exp = str(tmp_path)
    files = ExperimentResultFiles(exp)
    trial = os.path.join(exp, "t")
    files.init_trial(trial, {}, trial_id="T")
    files.write(trial, _line("T", 1), b"")
    files.flush()
    segment = files._segment

    class HalfThenFull:
        """The segment, failing once as a full disk does that cannot truncate either; then
        room again (space freed meanwhile), so pieces would go in after the tail."""

        def __init__(self, real):
            self.real, self.name, self.failed = real, real.name, False

        def write(self, data):
            if self.failed:
                return self.real.write(data)
            if len(data) > 40:
                return self.real.write(bytes(data[:len(data) // 2 - 3]))  # inside the first line
            self.failed = True
            raise OSError(errno.ENOSPC, "No space left on device")

        def tell(self):
            return self.real.tell()

        def fileno(self):
            return self.real.fileno()

        def truncate(self, size):
            raise OSError(errno.EIO, "Input/output error")

    files._segment = HalfThenFull(segment)
    files.write(trial, _line("T", 2) + _line("T", 3), b"")
    files.write(trial, b"{}\n", b"")  # small: it would fit, after the tail
    with pytest.raises(OSError):
        files.flush()
    files._segment = segment
    size = os.path.getsize(segment.name)
    files.close_all()
    assert files.unwritten_trial_dirs == {trial}
    with open(segment.name, "rb") as f:
        data = f.read()
    assert len(data) == size and not data.endswith(b"\n")  # the torn tail is last
    assert _rows(exp) == {"t": [1]}


class _CloseLosesAWrite:
    """A segment whose close reports a lost write (as NFS may) once the file is closed."""

    def __init__(self, handle):
        self._handle = handle

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def close(self):
        self._handle.close()
        raise OSError(errno.EIO, "the close lost a write", self._handle.name)


def test_a_segment_failing_to_close_after_a_failed_write_leaves_the_write_failure_raised(tmp_path, monkeypatch,
                                                                                         caplog):
    import fasttune.logger._experiment_results as experiment_results

    opened = ExperimentResultFiles._open_next_segment

    def open_one_that_fails_to_close(self):
        opened(self)
        self._segment = _CloseLosesAWrite(self._segment)  # noqa: SLF001 - what the writer closes at the end

    def full(handle, data, path):
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(ExperimentResultFiles, "_open_next_segment", open_one_that_fails_to_close)
    files, trial = _one_trial_store(str(tmp_path))
    files.write(trial, _line("T", 1), b"")
    files.wait()
    monkeypatch.setattr(experiment_results, "append_whole", full)
    files.write(trial, _line("T", 2), b"")

    with caplog.at_level(logging.ERROR, logger=experiment_results.__name__):
        with pytest.raises(OSError) as raised:
            files.close_all()

    assert raised.value.errno == errno.ENOSPC and "Writing" in str(raised.value)
    assert "the close lost a write" in caplog.text  # logged, not lost
    assert _rows(str(tmp_path)) == {"t": [1]}


def test_a_segment_failing_to_close_alone_is_raised(tmp_path, monkeypatch):
    opened = ExperimentResultFiles._open_next_segment

    def open_one_that_fails_to_close(self):
        opened(self)
        self._segment = _CloseLosesAWrite(self._segment)  # noqa: SLF001

    monkeypatch.setattr(ExperimentResultFiles, "_open_next_segment", open_one_that_fails_to_close)
    files, trial = _one_trial_store(str(tmp_path))
    files.write(trial, _line("T", 1), b"")
    with pytest.raises(OSError, match="the close lost a write"):
        files.close_all()
