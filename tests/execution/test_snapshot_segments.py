"""Snapshot format 4: finished trials' records go once into record segment files, which
later snapshots name instead of holding them again.  What a reader gets back is what a
snapshot holding every record gives, byte for byte; a segment that is missing, damaged,
replaced or named as a path makes its snapshot unreadable (the one before is read); and
the segment files on disk are exactly those the kept snapshots name."""
import logging
import os
import struct

import pytest

import fasttune as tune
from fasttune._serialization import DataOnlyLoader, pack
from fasttune.execution import _experiment_state as state
from fasttune.execution import _snapshots
from fasttune.experiment import experiment as experiment_module
from fasttune.schedulers import ASHAScheduler
from fasttune.search import BasicVariantGenerator
from fasttune.simulation import Simulation, learning_curve_table, reference_trial_order
from ctrl_c_testing import CtrlCAtResult
from fasttune_testing import fit

N_TRIALS = 150


@pytest.fixture(scope="module")
def table():
    return learning_curve_table(N_TRIALS, seed=0, n_epochs=9)


@pytest.fixture(autouse=True)
def same_trial_ids(monkeypatch):
    """Each experiment draws its trial ids' prefix at random: every sweep here gets the same."""
    monkeypatch.setattr(experiment_module.secrets, "token_hex", lambda n: "5eed5eed"[:2 * n])


@pytest.fixture
def snapshot_often(monkeypatch):
    monkeypatch.setenv("FASTTUNE_GLOBAL_CHECKPOINT_S", "0")  # a snapshot at each of the loop's checks


@pytest.fixture
def small_segments(monkeypatch, snapshot_often):
    """Segments of a few records, merged past two: a small sweep makes and retires several."""
    written = Written()
    write_segment = state.write_segment

    def noting(experiment_path, seq, rows, dirnames, records):
        entry = write_segment(experiment_path, seq, rows, dirnames, records)
        written.append(entry[0])
        written.rows_of[(experiment_path, entry[0])] = set(rows)
        return entry

    monkeypatch.setattr(_snapshots, "SEGMENT_MIN_RECORDS", 5)
    monkeypatch.setattr(_snapshots, "_MAX_SEGMENTS", 2)
    monkeypatch.setattr(_snapshots._state, "write_segment", noting)
    write = _snapshots.SnapshotWriter.write

    def write_then_check(writer, *args, **kwargs):
        # After each snapshot (and the removals it allows), every kept snapshot can still be read.
        path = write(writer, *args, **kwargs)
        missing = named_by_kept_snapshots(writer.experiment_path) - segment_files(writer.experiment_path)
        written.checks.append(sorted(missing))
        saved = raw(path)
        written.named.append({entry[0] for entry in saved.get("segments") or []})
        written.nil_rows.append({row for row, record in enumerate(saved["trials"]) if record is None})
        return path

    monkeypatch.setattr(_snapshots.SnapshotWriter, "write", write_then_check)
    return written


class Written(list):
    """The names of the segments written, and what each snapshot's check found missing."""

    def __init__(self):
        super().__init__()
        self.checks = []
        self.named = []  # by snapshot written: the segments it names, and the rows it holds nil for
        self.nil_rows = []
        self.rows_of = {}  # (experiment directory, segment name) -> the rows it holds

    def assert_every_kept_snapshot_readable_throughout(self):
        assert len(self.checks) > 3 and not any(self.checks)


def sweep(table, storage, name, **run_kwargs):
    points = reference_trial_order(table, N_TRIALS, seed=0)
    return fit(Simulation(table, num_workers=3), storage, name=name, space=table.search_space,
               tune_config=tune.TuneConfig(
                   metric="loss", mode="min", num_samples=N_TRIALS,
                   scheduler=ASHAScheduler(time_attr="epoch", max_t=9, grace_period=1, reduction_factor=3),
                   search_alg=BasicVariantGenerator(points_to_evaluate=points)), **run_kwargs)


def raw(path):
    """A snapshot file's state as written (its segments' places still nil)."""
    return DataOnlyLoader().unpack(state.read_file(path))


def without_trainable_name(loaded):
    """The trial directories' names of a loaded snapshot, without the trainable's name they start with."""
    prefix = loaded["trainable_name"] + "_"
    assert all(name.startswith(prefix) for name in loaded["dirnames"])
    return [name[len(prefix):] for name in loaded["dirnames"]]


def format_of(path):
    return struct.unpack_from("<H", open(path, "rb").read(), 8)[0]


def named_by_kept_snapshots(experiment):
    return {entry[0] for path in state.snapshot_paths(experiment) for entry in raw(path).get("segments") or []}


def segment_files(experiment):
    return {os.path.basename(path) for path in state.segment_paths(experiment)}


def test_segments_hold_the_finished_records_once_and_give_back_what_a_whole_snapshot_holds(
        table, tmp_path, small_segments, monkeypatch):
    with_segments = os.path.join(tmp_path, "segments")
    grid = sweep(table, str(tmp_path), "segments")
    monkeypatch.setattr(_snapshots, "SEGMENT_MIN_RECORDS", 10 ** 9)
    whole = os.path.join(tmp_path, "whole")
    sweep(table, str(tmp_path), "whole")
    newest = state.snapshot_paths(with_segments)[0]
    assert format_of(newest) == state.SEGMENTS_FORMAT and raw(newest)["segments"]
    assert "segments" not in raw(state.snapshot_paths(whole)[0])  # (below the threshold: as before)
    assert format_of(state.snapshot_paths(whole)[0]) < state.SEGMENTS_FORMAT
    # Read back, the records and directory names are those of the whole snapshot, byte for byte.
    ours, theirs = state.load_latest(with_segments)[0], state.load_latest(whole)[0]
    assert ours["trials"] == theirs["trials"]
    assert without_trainable_name(ours) == without_trainable_name(theirs)  # (the second sweep's is "simulation_2")
    assert len(ours["trials"]) == N_TRIALS and None not in ours["trials"]
    finished_bytes = sum(len(record) for record in theirs["trials"])
    assert os.path.getsize(newest) < os.path.getsize(state.snapshot_paths(whole)[0]) - finished_bytes // 2
    assert sorted(trial.last_result["loss"] for trial in state.read_trials(with_segments)) == sorted(
        r.metrics["loss"] for r in grid)
    # Several segments were merged away, and the files left are exactly those the kept snapshots name.
    assert len(small_segments) > len(segment_files(with_segments)) >= 1
    assert segment_files(with_segments) == named_by_kept_snapshots(with_segments)
    small_segments.assert_every_kept_snapshot_readable_throughout()


def test_a_sweep_restored_from_segments_ends_as_if_never_interrupted_and_keeps_naming_them(
        table, tmp_path, small_segments, monkeypatch):
    monkeypatch.setattr(_snapshots, "_MAX_SEGMENTS", 100)  # (no merge: the restored run's snapshots keep them)
    whole = sweep(table, str(tmp_path), "whole")
    cut = os.path.join(tmp_path, "cut")
    sweep(table, str(tmp_path), "cut", callbacks=[CtrlCAtResult(200)])
    assert sum(trial.status == "TERMINATED" for trial in state.read_trials(cut)) < N_TRIALS  # it was cut short
    latest = {entry[0] for entry in raw(state.snapshot_paths(cut)[0])["segments"]}
    orphan = "experiment_records-0000009999.msgpack"  # as a driver killed before its snapshot leaves one
    state.write_segment(cut, 9999, [0], ["x"], [record(("x", 1))])
    before, segments_before = len(small_segments.named), len(small_segments)
    restored = tune.Tuner.restore(cut, trainable=Simulation(table, num_workers=3)).fit()
    assert sorted((r.config["row"], r.metrics["training_iteration"], r.metrics["loss"]) for r in restored) == sorted(
        (r.config["row"], r.metrics["training_iteration"], r.metrics["loss"]) for r in whole)
    after = small_segments.named[before:]
    assert len(after) >= 3 and all(latest <= named for named in after)  # named again, not written again
    adopted = set().union(*(small_segments.rows_of[(cut, name)] for name in latest))
    assert adopted and adopted <= small_segments.nil_rows[before]  # the first snapshot holds none of them
    assert not any(small_segments.rows_of[(cut, name)] & adopted for name in small_segments[segments_before:])
    assert segment_files(cut) == named_by_kept_snapshots(cut) and orphan not in segment_files(cut)
    small_segments.assert_every_kept_snapshot_readable_throughout()


@pytest.fixture
def three_trials(tmp_path, monkeypatch):
    """A runner (no Ray) of three trials, whose kept records go into a segment at each snapshot."""
    from test_runner_snapshots import _runner

    monkeypatch.setattr(_snapshots, "SEGMENT_MIN_RECORDS", 1)
    path = str(tmp_path / "exp")
    runner, _ = _runner(path, num_samples=3)
    for _ in range(3):
        runner.add_trial(runner.search_alg.next_trial())
    return path, runner


def test_a_record_that_changed_after_it_went_into_a_segment_reads_back_changed(three_trials):
    from test_runner_snapshots import _finish

    path, runner = three_trials
    for trial, loss in zip(runner.get_trials(), (0.1, 0.2, 0.3)):
        _finish(runner, trial, loss)
    runner.checkpoint(force=True)
    assert raw(state.snapshot_paths(path)[0])["trials"] == [None, None, None]  # all three in a segment
    # A failed result write reopens a finished trial (TrialRunner._count_only_written_results).
    reopened = runner.get_trials()[1]
    reopened.last_result = dict(reopened.last_result, loss=0.9)
    reopened.set_status("PENDING")
    runner._snapshots.forget_record(1)
    runner.checkpoint(force=True)
    newest = raw(state.snapshot_paths(path)[0])
    assert newest["trials"][1] is not None and newest["segments"]  # held by the snapshot, beside the segment
    trials = state.read_trials(path)
    assert [(t.status, t.last_result["loss"]) for t in trials] == [
        ("TERMINATED", 0.1), ("PENDING", 0.9), ("TERMINATED", 0.3)]


# ---- damaged and crafted segments ----------------------------------------------------------
def record(value):
    return state.as_bin(pack(value))


@pytest.fixture
def experiment(tmp_path):
    """Snapshot 1 holds its two records itself; snapshot 2 has them in a segment."""
    path = str(tmp_path)
    records = [record(("a", 1)), record(("b", 2))]
    state.write_snapshot(path, {"format": 1, "dirnames": ["t_0", "t_1"]}, records, seq=1)
    entry = state.write_segment(path, 2, [0, 1], ["t_0", "t_1"], records)
    state.write_snapshot(path, {"format": 4, "dirnames": [None, None], "segments": [entry]}, [state.NIL] * 2,
                         seq=2, version=4)
    return path


def test_a_snapshot_reads_its_records_from_its_segment(experiment):
    loaded, path = state.load_latest(experiment)
    assert path.endswith("experiment_state-0000000002.msgpack")
    assert [DataOnlyLoader().unpack(r) for r in loaded["trials"]] == [("a", 1), ("b", 2)]
    assert loaded["dirnames"] == ["t_0", "t_1"]


def damage(path):
    with open(path, "r+b") as f:
        f.seek(-3, os.SEEK_END)
        byte = f.read(1)
        f.seek(-3, os.SEEK_END)
        f.write(bytes([byte[0] ^ 0xFF]))


def replace_segment(path):
    """Another valid segment under the same name (say, one an interrupted run wrote)."""
    directory, name = os.path.split(path)
    state.write_segment(directory, int(name.split("-")[1].split(".")[0]), [0, 1], ["t_0", "t_1"],
                        [record(("x", 9)), record(("y", 9))])


@pytest.mark.parametrize("change, why", [
    (damage, "checksum"),
    (os.remove, "missing"),
    (replace_segment, "not the one it was written with"),
])
def test_a_snapshot_whose_segment_is_damaged_missing_or_replaced_falls_back_to_the_one_before(
        experiment, change, why, caplog):
    change(os.path.join(experiment, "experiment_records-0000000002.msgpack"))
    with caplog.at_level(logging.WARNING):
        loaded, path = state.load_latest(experiment)
    assert path.endswith("experiment_state-0000000001.msgpack")
    assert [DataOnlyLoader().unpack(r) for r in loaded["trials"]] == [("a", 1), ("b", 2)]
    assert why in caplog.text and "experiment_records-0000000002.msgpack" in caplog.text
    os.remove(path)
    with pytest.raises(state.CorruptExperimentState, match=why):
        state.load_latest(experiment)


def rewrite_newest(experiment, change):
    """Snapshot 2 written again as ``change(its state, its records)`` makes it."""
    loaded = raw(os.path.join(experiment, "experiment_state-0000000002.msgpack"))
    records = [state.NIL if r is None else state.as_bin(r) for r in loaded.pop("trials")]
    change(loaded, records)
    state.write_snapshot(experiment, loaded, records, seq=2, version=4)


@pytest.mark.parametrize("name", ["../experiment_records-0000000002.msgpack", "/etc/passwd",
                                  "experiment_records-0000000002.msgpack/..", "tuner.msgpack", 7])
def test_a_segment_named_as_anything_but_a_segment_file_of_the_experiment_is_never_opened(experiment, name, tmp_path):
    (tmp_path.parent / "experiment_records-0000000002.msgpack").write_bytes(
        open(os.path.join(experiment, "experiment_records-0000000002.msgpack"), "rb").read())
    rewrite_newest(experiment, lambda loaded, records: loaded["segments"][0].__setitem__(0, name))
    os.remove(os.path.join(experiment, "experiment_state-0000000001.msgpack"))
    with pytest.raises(state.CorruptExperimentState, match="names a record segment as"):
        state.load_latest(experiment)


def segment_holding(experiment, rows, dirnames, records):
    """Snapshot 2's segment written again with these contents (its entry updated to match)."""
    entry = state.write_segment(experiment, 2, rows, dirnames, records)
    rewrite_newest(experiment, lambda loaded, _: loaded.__setitem__("segments", [entry]))


@pytest.mark.parametrize("rows, dirnames, records, why", [
    ([0, 2], ["t_0", "t_1"], [record(1), record(2)], "a record that is not one"),  # row 2: no such trial
    ([0, -1], ["t_0", "t_1"], [record(1), record(2)], "a record that is not one"),
    ([0, 1], ["t_0", 5], [record(1), record(2)], "a record that is not one"),
    ([0, 0], ["t_0", "t_0"], [record(1), record(2)], "in no segment"),  # row 1 left without a record
])
def test_a_segment_that_does_not_fill_its_places_exactly_makes_its_snapshot_unreadable(
        experiment, rows, dirnames, records, why):
    segment_holding(experiment, rows, dirnames, records)
    os.remove(os.path.join(experiment, "experiment_state-0000000001.msgpack"))
    with pytest.raises(state.CorruptExperimentState, match=why):
        state.load_latest(experiment)


def test_a_record_the_snapshot_holds_itself_stays_over_its_segments(experiment):
    # A trial that changed after its record went into a segment (a failed result write
    # reopened it): the snapshot holds its new record, which the segment's does not replace.
    def reopened(loaded, records):
        records[1] = record(("b", 3))
        loaded["dirnames"][1] = "t_1"

    rewrite_newest(experiment, reopened)
    loaded, _ = state.load_latest(experiment)
    assert [DataOnlyLoader().unpack(r) for r in loaded["trials"]] == [("a", 1), ("b", 3)]


def test_a_segment_named_twice_or_holding_an_extension_entry_makes_its_snapshot_unreadable(experiment):
    import msgpack

    os.remove(os.path.join(experiment, "experiment_state-0000000001.msgpack"))
    rewrite_newest(experiment, lambda loaded, _: loaded["segments"].append(list(loaded["segments"][0])))
    with pytest.raises(state.CorruptExperimentState, match="names a record segment twice"):
        state.load_latest(experiment)
    # A pickle where a row number goes: refused before anything in it is loaded.
    pickled = msgpack.ExtType(1, b"\x80\x04\x95")
    crc = state.write_file(os.path.join(experiment, "experiment_records-0000000003.msgpack"),
                           msgpack.packb([[0, pickled], ["t_0", "t_1"], [record(1), record(2)]], use_bin_type=True), 4)
    rewrite_newest(experiment, lambda loaded, _: loaded.__setitem__(
        "segments", [["experiment_records-0000000003.msgpack", 2, crc]]))
    with pytest.raises(state.CorruptExperimentState, match="extension entry"):
        state.load_latest(experiment, state.Loader())


def test_a_snapshot_rotated_out_while_listed_is_no_damage_the_reader_lists_again(experiment, caplog, monkeypatch):
    # A running sweep wrote snapshot 3 and removed snapshot 2 after the reader listed them.
    listings = [[os.path.join(experiment, "experiment_state-0000000002.msgpack")]]
    newest = os.path.join(experiment, "experiment_state-0000000002.msgpack")
    os.rename(newest, os.path.join(experiment, "experiment_state-0000000003.msgpack"))
    os.remove(os.path.join(experiment, "experiment_state-0000000001.msgpack"))
    real_listing = state.snapshot_paths
    monkeypatch.setattr(state, "snapshot_paths", lambda path: listings.pop() if listings else real_listing(path))
    with caplog.at_level(logging.WARNING):
        loaded, path = state.load_latest(experiment)
    assert path.endswith("experiment_state-0000000003.msgpack") and len(loaded["trials"]) == 2
    assert "cannot be read" not in caplog.text


def test_an_errored_trial_restarted_by_a_restore_is_saved_anew_not_read_from_its_segment(three_trials):
    from test_runner_snapshots import _finish, _runner

    path, runner = three_trials
    first, failed, third = runner.get_trials()
    _finish(runner, first, 0.1)
    _finish(runner, third, 0.3)
    failed.set_status("RUNNING")
    failed.set_status("ERROR")
    runner.checkpoint(force=True)
    assert raw(state.snapshot_paths(path)[0])["trials"] == [None, None, None]  # all three in a segment
    resumed, _ = _runner(path, num_samples=3)
    resumed.resume(restart_errored=True)
    restarted = resumed.get_trials()[1]
    assert restarted.status == "PENDING"
    _finish(resumed, restarted, 0.7)  # it ran again, and ended
    resumed.checkpoint(force=True)
    assert [(t.status, t.last_result["loss"]) for t in state.read_trials(path)] == [
        ("TERMINATED", 0.1), ("TERMINATED", 0.7), ("TERMINATED", 0.3)]
