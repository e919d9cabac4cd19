"""The snapshot file format: atomic files, rotation, fallback, refusal of newer formats."""
import datetime
import logging
import os
import struct
import zlib

import msgpack
import pytest

from fasttune.error import TuneError
from fasttune.execution import _experiment_state as state


def _write(path, seq, payload=None):
    return state.write_snapshot(str(path), payload or {"format": 1, "seq": seq}, [state.pack(["t", seq])], seq)


def test_latest_snapshot_wins_and_only_the_newest_are_kept(tmp_path):
    for seq in (1, 2, 3):
        _write(tmp_path, seq)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["experiment_state-0000000002.msgpack", "experiment_state-0000000003.msgpack"]
    loaded, path = state.load_latest(str(tmp_path))
    assert loaded["seq"] == 3 and loaded["trials"] == [["t", 3]]
    assert path.endswith("experiment_state-0000000003.msgpack")
    assert state.latest_seq(str(tmp_path)) == 3
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "garbage"])
def test_a_damaged_latest_snapshot_falls_back_to_the_previous_with_a_warning(tmp_path, caplog, damage):
    _write(tmp_path, 1)
    newest = _write(tmp_path, 2)
    data = open(newest, "rb").read()
    damaged = {
        "truncate": data[: len(data) - 5],
        "flip": data[:-3] + bytes([data[-3] ^ 0xFF]) + data[-2:],
        "empty": b"",
        "garbage": b"not a snapshot at all, just text",
    }[damage]
    with open(newest, "wb") as f:
        f.write(damaged)
    with caplog.at_level(logging.WARNING):
        loaded, path = state.load_latest(str(tmp_path))
    assert loaded["seq"] == 1 and path.endswith("0000000001.msgpack")
    assert "cannot be read" in caplog.text and os.path.basename(newest) in caplog.text


def test_every_snapshot_damaged_is_a_clear_error(tmp_path):
    newest = _write(tmp_path, 1)
    with open(newest, "r+b") as f:
        f.truncate(20)
    with pytest.raises(TuneError, match="None of the experiment snapshots .* can be read.*ResultGrid.from_path"):
        state.load_latest(str(tmp_path))


def test_a_directory_without_snapshots_is_not_an_experiment(tmp_path):
    with pytest.raises(TuneError, match="is not a fasttune experiment directory.*Tuner.can_restore"):
        state.load_latest(str(tmp_path))


def test_a_snapshot_of_a_newer_format_is_refused_not_skipped(tmp_path):
    _write(tmp_path, 1)
    newest = _write(tmp_path, 2)
    data = bytearray(open(newest, "rb").read())
    struct.pack_into("<H", data, 8, state.FORMAT_VERSION + 1)
    with open(newest, "wb") as f:
        f.write(bytes(data))
    with pytest.raises(state.NewerExperimentState, match="newer fasttune .*Upgrade fasttune"):
        state.load_latest(str(tmp_path))


def test_spliced_records_read_back_as_one_array(tmp_path):
    big = {f"k{i}": i for i in range(20)}  # a map16 header, not a fixmap
    records = [state.pack([i, {"x": i}]) for i in range(3)]
    state.write_snapshot(str(tmp_path), big, records, 1)
    loaded, _ = state.load_latest(str(tmp_path))
    assert loaded["trials"] == [[0, {"x": 0}], [1, {"x": 1}], [2, {"x": 2}]]
    assert all(loaded[f"k{i}"] == i for i in range(20))


def _snapshot_joined_whole(state_doc, records):
    """The snapshot bytes as the writer made them before it streamed: the state packed
    whole, re-headed with one more entry, and everything joined into one payload."""
    body = state.pack(state_doc)
    entries = body[len(state._map_header(len(state_doc))):]
    payload = b"".join([state._map_header(len(state_doc) + 1) + entries, state.pack("trials"), b"\xdd",
                        struct.pack(">I", len(records))] + records)
    header = state._HEADER.pack(state._MAGIC, 1, 0, len(payload), zlib.crc32(payload))
    return header + payload


@pytest.mark.parametrize("n_records", [0, 3, 2 * state._PIECES_PER_BLOCK + 5])
@pytest.mark.parametrize("n_entries", [3, 15, 20])  # a fixmap that stays one, one that becomes a map16, a map16
def test_the_streamed_snapshot_has_the_bytes_of_the_joined_one(tmp_path, n_records, n_entries):
    doc = {f"k{i}": [i, {"x": i / 3}, "s" * i] for i in range(n_entries)}
    doc["k1"] = bytes(range(256)) * 300  # the table: a bin32, written without a copy
    doc["k2"] = datetime.date(2026, 1, 2)  # cloudpickled in place
    # A searcher's saved files (names to bytes), spliced in without a copy: bin8, bin16,
    # bin32 and empty files; a map of 17 files (a map16); a map holding other values too.
    doc["searcher"] = {"a.pkl": b"x" * 200, "b.pkl": b"y" * 70000, "c": b"", "d": b"z" * 300}
    doc["many files"] = {f"f{i}": bytes([i]) * i for i in range(17)}
    doc["mixed"] = {"a": b"x", "b": 3}
    records = [state.as_bin(state.pack([i, {"loss": i * 0.5}, "trial" * (i % 7)])) for i in range(n_records)]
    path = state.write_snapshot(str(tmp_path), doc, records, 1)
    assert open(path, "rb").read() == _snapshot_joined_whole(doc, records)
    loaded, _ = state.load_latest(str(tmp_path))
    assert len(loaded["trials"]) == n_records and loaded["k1"] == doc["k1"]


def test_keysets_store_each_key_tuple_once():
    keysets = state.KeySets()
    a = keysets.encode({"loss": 1.0, "training_iteration": 3})
    b = keysets.encode({"loss": 2.0, "training_iteration": 4})
    c = keysets.encode({"acc": 0.5})
    assert a[0] == b[0] != c[0] and len(keysets.keys) == 2
    again = state.KeySets(keysets.keys)
    assert again.decode(b) == {"loss": 2.0, "training_iteration": 4}
    assert again.decode(c) == {"acc": 0.5}
    assert keysets.encode({}) is None and again.decode(None) == {}


def test_a_reader_of_format_1_refuses_a_snapshot_with_uploads_and_reads_the_others(tmp_path, monkeypatch):
    # Checkpoint entries may carry their upload's token and node: such a snapshot says it is
    # of format 2, and a reader of format 1 says it is newer instead of calling it damaged;
    # a snapshot without them stays format 1, which that reader reads.
    with_uploads, without = tmp_path / "with", tmp_path / "without"
    state.write_snapshot(str(with_uploads), {"seq": 1}, [state.pack(["t", 1])], 1, state.UPLOADS_FORMAT)
    _write(without, 1)
    monkeypatch.setattr(state, "FORMAT_VERSION", 1)
    with pytest.raises(state.NewerExperimentState, match="state format 2; this version reads up to 1"):
        state.load_latest(str(with_uploads))
    assert state.load_latest(str(without))[0]["seq"] == 1


def _steps_with_checkpoints(config):
    import fasttune as tune
    from fasttune_testing import report_with_step_checkpoint, restored_step

    for step in range(restored_step() + 1, 5):
        report_with_step_checkpoint({"score": step}, step)


def test_a_local_sweeps_snapshots_say_their_checkpoints_carry_histories_and_restore(ray_session, tmp_path):
    import fasttune as tune

    grid = tune.Tuner(_steps_with_checkpoints, param_space={"x": tune.grid_search([1, 2])},
                      tune_config=tune.TuneConfig(metric="score", mode="max"),
                      run_config=tune.RunConfig(name="exp", storage_path=str(tmp_path), verbose=0)).fit()
    experiment = str(tmp_path / "exp")
    # No record of a local sweep carries an upload, but its checkpoints carry the trials'
    # histories: its last snapshot is format 3, which an earlier fasttune refuses rather
    # than misreads; the tuner's file stays format 1.  (Format 1 records: test_cut_history_kept.)
    def version(path):
        return struct.unpack_from("<H", open(path, "rb").read(), 8)[0]

    assert version(state.snapshot_paths(experiment)[0]) == state.HISTORIES_FORMAT
    assert version(os.path.join(experiment, state.TUNER_FILE)) == 1
    trials = state.read_trials(experiment)
    assert sorted((t.status, os.path.basename(t.checkpoints[-1].path)) for t in trials) == [
        ("TERMINATED", "checkpoint_000003")] * 2
    restored = tune.Tuner.restore(experiment, _steps_with_checkpoints).fit()
    assert restored.num_errors == 0
    assert sorted(r.checkpoint.path for r in restored) == sorted(r.checkpoint.path for r in grid)


def test_a_searchers_saved_files_go_into_the_snapshot_without_a_copy(tmp_path, monkeypatch):
    files = {"searcher-state.pkl": b"s" * 100_000, "extra": b"e" * 10}
    written = []
    write_file = state.write_file

    def keep_parts(path, payload, version=1):
        written.extend(payload)
        write_file(path, payload, version)

    monkeypatch.setattr(state, "write_file", keep_parts)
    state.write_snapshot(str(tmp_path), {"format": 1, "searcher": files}, [], 1)
    assert any(part is files["searcher-state.pkl"] for part in written)  # the very bytes object
    assert state.load_latest(str(tmp_path))[0]["searcher"] == files



@pytest.mark.parametrize("n", [0, 1, 15, 16, 31, 32, 255, 256, 65535, 65536])
def test_the_hand_made_headers_are_msgpacks_at_each_size_boundary(n):
    """A snapshot splices bytes behind headers it makes itself; at every size where msgpack
    changes a header's form they must be msgpack's own (else the file holds other bytes)."""
    from fasttune._serialization import bin_header

    blob = msgpack.packb(b"\0" * n, use_bin_type=True)
    assert bin_header(n) == blob[:len(blob) - n]
    mapping = msgpack.packb({i: None for i in range(n)})
    entries = b"".join(msgpack.packb(i) + msgpack.packb(None) for i in range(n))
    assert state._map_header(n) == mapping[:len(mapping) - len(entries)]
