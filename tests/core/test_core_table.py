"""Behaviour of TrialTable and EventSelector, checked on both implementations."""
import copy
import math
import pickle
import struct

import numpy as np
import pytest

import fasttune._core as compiled
import fasttune._core_fallback as twin
import fasttune._core_shared as shared

STATUSES = range(5)
LEGAL = {
    0: {1, 2, 3, 4},
    1: {0, 2, 3, 4},
    2: {0, 1, 3, 4},
    3: {0},
    4: {0, 3},
}
COLUMNS = {
    "status": np.uint8,
    "iteration": np.int64,
    "failures": np.int32,
    "last_metric": np.float64,
    "best_metric": np.float64,
    "time_total_s": np.float64,
    "worker_slot": np.int32,
}


@pytest.fixture(params=[compiled, twin], ids=["compiled", "python"])
def core(request):
    return request.param


def table_state(t):
    """Everything observable about a table, nan-safe for comparison."""
    return (
        len(t), t.mode, t.counts(), [t.rows(s) for s in STATUSES],
        {name: t.column(name).tobytes() for name in COLUMNS},
    )


def test_constants_match(core):
    assert (core.PENDING, core.RUNNING, core.PAUSED, core.TERMINATED, core.ERROR) == (0, 1, 2, 3, 4)
    assert core.STATUS_NAMES == ("PENDING", "RUNNING", "PAUSED", "TERMINATED", "ERROR")
    assert core.SNAPSHOT_VERSION == 1
    assert (core.EVENT_START, core.EVENT_BATCH, core.EVENT_ERROR) == (0, 1, 2)
    assert issubclass(core.IllegalTransition, ValueError)
    assert issubclass(core.CorruptSnapshot, ValueError)


def test_new_rows_start_pending_and_empty(core):
    t = core.TrialTable()
    assert [t.add() for _ in range(3)] == [0, 1, 2]
    assert len(t) == 3
    for row in range(3):
        assert t.get_status(row) == core.PENDING
        assert t.get_iteration(row) == 0
        assert t.get_failures(row) == 0
        assert np.isnan(t.get_last_metric(row)) and np.isnan(t.get_best_metric(row))
        assert t.get_time_total(row) == 0.0
        assert t.get_worker_slot(row) == -1
    assert t.counts() == (3, 0, 0, 0, 0)


@pytest.mark.parametrize("old", STATUSES)
@pytest.mark.parametrize("new", STATUSES)
def test_every_transition_rule(core, old, new):
    t = core.TrialTable()
    t.add()
    row = t.add()
    # Reach `old` by a legal path.
    path = {0: [], 1: [1], 2: [2], 3: [3], 4: [4]}[old]
    for status in path:
        t.set_status(row, status)
    assert t.get_status(row) == old
    before = table_state(t)
    if new == old:
        assert t.set_status(row, new) == old
        assert table_state(t) == before
    elif new in LEGAL[old]:
        assert t.set_status(row, new) == old
        assert t.get_status(row) == new
        assert t.rows(new) == ([0, 1] if new == 0 else [1])
        assert t.count(old) == (1 if old == 0 else 0)
    else:
        allowed = ", ".join(sorted(core.STATUS_NAMES[s] for s in LEGAL[old]))
        names = core.STATUS_NAMES
        with pytest.raises(core.IllegalTransition) as info:
            t.set_status(row, new)
        assert str(info.value) == (f"trial row 1 cannot go from {names[old]} to {names[new]}; "
                                   f"from {names[old]} it may go to {allowed}")
        assert table_state(t) == before


def test_unknown_status_and_bad_rows(core):
    t = core.TrialTable()
    t.add()
    with pytest.raises(ValueError, match="unknown trial status 7"):
        t.set_status(0, 7)
    with pytest.raises(ValueError, match="unknown trial status -1"):
        t.count(-1)
    with pytest.raises(ValueError, match="unknown trial status 5"):
        t.rows(5)
    accessors = [
        lambda r: t.get_status(r), lambda r: t.set_status(r, 1), lambda r: t.get_iteration(r),
        lambda r: t.set_iteration(r, 1), lambda r: t.get_failures(r),
        lambda r: t.increment_failures(r), lambda r: t.get_last_metric(r),
        lambda r: t.get_best_metric(r), lambda r: t.get_time_total(r),
        lambda r: t.set_time_total(r, 1.0), lambda r: t.get_worker_slot(r),
        lambda r: t.set_worker_slot(r, 1), lambda r: t.record_result(r, 1, 1.0, 1.0),
    ]
    for access in accessors:
        for row in (1, -1, 10 ** 6):
            with pytest.raises(IndexError) as info:
                access(row)
            assert str(info.value) == f"no trial row {row} (table has 1 rows)"
    assert table_state(t)[2] == (1, 0, 0, 0, 0)


def test_mode_is_validated(core):
    with pytest.raises(ValueError) as info:
        core.TrialTable("x")
    assert str(info.value) == "mode must be 'min', 'max' or None, got 'x'"
    assert core.TrialTable("max").mode == "max"


def test_counts_and_rows_follow_transitions(core):
    t = core.TrialTable()
    for _ in range(200):
        t.add()
    for row in range(0, 200, 3):
        t.set_status(row, core.RUNNING)
    for row in range(0, 200, 6):
        t.set_status(row, core.TERMINATED)
    running = [r for r in range(0, 200, 3) if r % 6]
    terminated = list(range(0, 200, 6))
    assert t.rows(core.RUNNING) == running
    assert t.rows(core.TERMINATED) == terminated
    assert t.rows(core.PENDING) == [r for r in range(200) if r % 3]
    assert t.counts() == (200 - len(running) - len(terminated), len(running), 0,
                          len(terminated), 0)
    assert sum(t.counts()) == len(t)
    assert t.count(core.RUNNING) == len(running)


def test_rows_on_a_large_table_are_exact(core):
    t = core.TrialTable()
    n = 50_000
    for _ in range(n):
        t.add()
    chosen = list(range(7, n, 97))
    for row in reversed(chosen):
        t.set_status(row, core.PAUSED)
    assert t.rows(core.PAUSED) == chosen
    assert t.count(core.PENDING) == n - len(chosen)
    assert len(t.rows(core.PENDING)) == n - len(chosen)


def test_counters_and_setters(core):
    t = core.TrialTable()
    row = t.add()
    assert t.increment_failures(row) == 1
    assert t.increment_failures(row) == 2
    t.set_iteration(row, 12)
    t.set_time_total(row, 3.5)
    t.set_worker_slot(row, 4)
    assert (t.get_failures(row), t.get_iteration(row), t.get_time_total(row),
            t.get_worker_slot(row)) == (2, 12, 3.5, 4)
    with pytest.raises(ValueError, match="iteration must be >= 0, got -1"):
        t.set_iteration(row, -1)
    with pytest.raises(ValueError, match=r"must be -1 \(none\) or 0..2147483647, got -2"):
        t.set_worker_slot(row, -2)


def test_held_count_follows_worker_slots(core):
    t = core.TrialTable()
    rows = [t.add() for _ in range(4)]
    assert t.held_count() == 0
    t.set_worker_slot(rows[0], 0)
    t.set_worker_slot(rows[2], 5)
    assert t.held_count() == 2
    t.set_worker_slot(rows[2], 6)  # moving to another worker: still held
    assert t.held_count() == 2
    t.set_worker_slot(rows[0], -1)
    t.set_worker_slot(rows[1], -1)  # releasing a row that held none
    assert t.held_count() == 1
    with pytest.raises(ValueError):
        t.set_worker_slot(rows[3], -2)
    assert t.held_count() == 1
    assert core.TrialTable.from_snapshot(t.snapshot()).held_count() == 1
    assert pickle.loads(pickle.dumps(t)).held_count() == 1


@pytest.mark.parametrize("mode, expected_best", [("min", 1.0), ("max", 5.0), (None, 2.0)])
def test_best_metric_follows_mode_and_ignores_nan(core, mode, expected_best):
    t = core.TrialTable(mode)
    row = t.add()
    for i, metric in enumerate([3.0, 1.0, float("nan"), 5.0, 2.0, float("nan")]):
        t.record_result(row, i + 1, float(i), metric)
    assert t.get_best_metric(row) == expected_best
    assert np.isnan(t.get_last_metric(row))
    assert t.get_iteration(row) == 6 and t.get_time_total(row) == 5.0


def test_set_metrics_puts_a_row_back_to_the_metrics_of_a_point_in_its_history(core):
    t = core.TrialTable("min")
    other, row = t.add(), t.add()
    t.record_result(other, 1, 1.0, 0.5)
    for i, metric in enumerate([3.0, 1.0, 2.0]):
        t.record_result(row, i + 1, float(i), metric)
    t.set_metrics(row, 3.0, 3.0)  # back to its first result
    assert (t.get_last_metric(row), t.get_best_metric(row)) == (3.0, 3.0)
    assert t.get_iteration(row) == 3 and t.get_time_total(row) == 2.0  # only the metrics change
    t.record_result(row, 2, 1.0, 4.0)  # its next results count from there, by the table's rule
    assert (t.get_last_metric(row), t.get_best_metric(row)) == (4.0, 3.0) and t.get_best_metric(other) == 0.5
    t.set_metrics(row, math.nan, math.nan)  # back to no result
    t.record_result(row, 1, 0.0, 5.0)
    assert t.get_best_metric(row) == 5.0
    with pytest.raises(IndexError):
        t.set_metrics(2, 1.0, 1.0)


def test_columns_are_read_only_typed_copies(core):
    t = core.TrialTable("min")
    for _ in range(3):
        t.add()
    t.set_status(1, core.RUNNING)
    t.record_result(2, 4, 1.5, 0.25)
    for name, dtype in COLUMNS.items():
        col = t.column(name)
        assert col.dtype == dtype and col.shape == (3,)
        assert not col.flags.writeable
        with pytest.raises(ValueError):
            col[0] = 1
    assert list(t.column("status")) == [0, 1, 0]
    assert list(t.column("iteration")) == [0, 0, 4]
    assert t.column("best_metric")[2] == 0.25
    snapshot_of_column = t.column("status")
    t.set_status(0, core.PAUSED)
    t.add()
    assert list(snapshot_of_column) == [0, 1, 0]  # a copy, not a live view
    with pytest.raises(KeyError) as info:
        t.column("nope")
    assert "valid columns are status, iteration" in str(info.value)


def test_snapshot_roundtrip_is_exact(core):
    t = core.TrialTable("max")
    for i in range(5):
        t.add()
        t.record_result(i, i, i * 1.5, float(i) if i != 2 else float("nan"))
    t.set_status(1, core.RUNNING)
    t.set_status(3, core.ERROR)
    t.increment_failures(3)
    t.set_worker_slot(1, 9)
    data = t.snapshot()
    assert data[:4] == b"FTTT"
    assert struct.unpack_from("<HBBQ", data, 4) == (1, 2, 0, 5)
    assert len(data) == 16 + 5 * 41
    restored = core.TrialTable.from_snapshot(data)
    assert table_state(restored) == table_state(t)
    assert restored.snapshot() == data
    assert restored.add() == 5  # a restored table keeps growing


def _golden_little_endian_snapshot():
    """The snapshot of a "max" table whose two rows are a RUNNING one (iteration 3, total
    2.5 s, metric 0.75, one failure, worker 9) and a PENDING one, encoded by hand:
    little-endian, whatever the CPU's byte order."""
    nan = float("nan")
    return (b"FTTT" + struct.pack("<HBBQ", 1, 2, 0, 2)
            + struct.pack("<BB", 1, 0) + struct.pack("<qq", 3, 0) + struct.pack("<ii", 1, 0)
            + struct.pack("<dd", 0.75, nan) + struct.pack("<dd", 0.75, nan) + struct.pack("<dd", 2.5, 0.0)
            + struct.pack("<ii", 9, -1))


def test_snapshot_bytes_are_little_endian_on_any_cpu(core):
    table = core.TrialTable("max")
    table.add()
    table.add()
    table.set_status(0, core.RUNNING)
    table.record_result(0, 3, 2.5, 0.75)
    table.increment_failures(0)
    table.set_worker_slot(0, 9)
    golden = _golden_little_endian_snapshot()
    assert table.snapshot() == golden
    assert core.TrialTable.from_snapshot(golden).snapshot() == golden
    # Columns in big-endian order (as a big-endian CPU's own arrays are) give the same bytes.
    columns = {name: table.column(name).astype(np.dtype(dtype).newbyteorder(">")) for name, dtype in shared.COLUMNS}
    assert shared.snapshot_bytes("max", 2, columns.__getitem__) == golden


def test_tables_pickle_and_copy_through_snapshots(core):
    t = core.TrialTable("min")
    t.add()
    t.set_status(t.add(), core.RUNNING)
    t.record_result(1, 3, 2.0, 0.5)
    for clone in (pickle.loads(pickle.dumps(t)), copy.deepcopy(t)):
        assert type(clone) is type(t) and clone is not t
        assert table_state(clone) == table_state(t)


def test_snapshots_are_byte_identical_across_implementations():
    tables = [compiled.TrialTable("min"), twin.TrialTable("min")]
    for t in tables:
        for i in range(4):
            t.add()
            t.record_result(i, i + 1, 0.1 * i, 1.0 / (i + 1))
        t.set_status(2, 1)
    assert tables[0].snapshot() == tables[1].snapshot()
    restored = twin.TrialTable.from_snapshot(tables[0].snapshot())
    assert table_state(restored) == table_state(tables[1])


def test_newer_snapshot_version_is_refused(core):
    data = bytearray(core.TrialTable().snapshot())
    struct.pack_into("<H", data, 4, 7)
    with pytest.raises(core.CorruptSnapshot) as info:
        core.TrialTable.from_snapshot(bytes(data))
    assert str(info.value) == ("TrialTable snapshot format version 7 is newer than this "
                               "fasttune supports (1); upgrade fasttune")


def test_corrupt_snapshots_are_refused_with_a_reason(core):
    t = core.TrialTable()
    t.add()
    t.add()
    good = t.snapshot()
    cases = {
        good[:10]: "truncated: 10 bytes",
        good[:-1]: "truncated: its header says 2 rows",
        good + b"\0": "but its header says 2 rows",
        b"XXXX" + good[4:]: "not a TrialTable snapshot",
        b"": "truncated: 0 bytes",
    }
    bad_status = bytearray(good)
    bad_status[16 + 1] = 9
    cases[bytes(bad_status)] = "row 1 has an invalid status value 9"
    bad_mode = bytearray(good)
    bad_mode[6] = 3
    cases[bytes(bad_mode)] = "unknown mode code 3"
    for data, reason in cases.items():
        with pytest.raises(core.CorruptSnapshot) as info:
            core.TrialTable.from_snapshot(data)
        assert reason in str(info.value)


# --- EventSelector ---------------------------------------------------------

def drain(selector, next_trial_exists=False):
    out = []
    while (event := selector.pop(next_trial_exists)) is not None:
        out.append(event)
    return out


def test_start_comes_first_but_only_when_a_trial_can_start(core):
    s = core.EventSelector()
    s.push(2, core.EVENT_BATCH)
    s.push(-1, core.EVENT_START)
    assert len(s) == 2
    assert s.pop(False) == (2, core.EVENT_BATCH)
    assert s.pop(False) is None  # START pending but no trial to start
    assert len(s) == 1
    assert s.pop(True) == (-1, core.EVENT_START)
    assert len(s) == 0 and s.pop(True) is None


def test_duplicates_collapse_and_error_precedes_batch(core):
    s = core.EventSelector()
    for _ in range(3):
        s.push(1, core.EVENT_BATCH)
        s.push(-1, core.EVENT_START)
    s.push(1, core.EVENT_ERROR)
    assert len(s) == 3
    assert drain(s, True) == [(-1, 0), (1, core.EVENT_ERROR), (1, core.EVENT_BATCH)]


def test_round_robin_wraps_around(core):
    s = core.EventSelector()
    for slot in (5, 1, 3):
        s.push(slot, core.EVENT_BATCH)
    assert s.pop(False) == (1, 1)
    s.push(0, core.EVENT_BATCH)
    s.push(1, core.EVENT_BATCH)
    assert drain(s) == [(3, 1), (5, 1), (0, 1), (1, 1)]
    s.push(70, core.EVENT_BATCH)  # beyond the first 64 slots
    s.push(2, core.EVENT_BATCH)
    assert drain(s) == [(2, 1), (70, 1)]


def test_discard_drops_a_slots_events(core):
    s = core.EventSelector()
    s.push(4, core.EVENT_BATCH)
    s.push(4, core.EVENT_ERROR)
    s.push(6, core.EVENT_BATCH)
    s.discard(4)
    s.discard(123)  # nothing pending there: no-op
    assert len(s) == 1
    assert drain(s) == [(6, 1)]


def test_no_slot_starves_under_continuous_pushes(core):
    s = core.EventSelector()
    n_slots = 8
    served = [0] * n_slots
    for slot in range(n_slots):
        s.push(slot, core.EVENT_BATCH)
    last_served = {slot: 0 for slot in range(n_slots)}
    for step in range(1, 801):
        s.push(0, core.EVENT_BATCH)  # slot 0 is always ready again
        slot, kind = s.pop(False)
        served[slot] += 1
        assert step - last_served[slot] <= n_slots or last_served[slot] == 0
        last_served[slot] = step
        s.push(slot, core.EVENT_BATCH)  # every worker replies again at once
    assert max(served) - min(served) <= 1


def test_event_arguments_are_validated(core):
    s = core.EventSelector()
    with pytest.raises(ValueError, match="unknown event kind 3"):
        s.push(0, 3)
    with pytest.raises(ValueError, match="worker slot must be in 0..1048575, got -1"):
        s.push(-1, core.EVENT_BATCH)
    with pytest.raises(ValueError, match="got 1048576"):
        s.push(core.MAX_WORKER_SLOT + 1, core.EVENT_ERROR)
    s.push(core.MAX_WORKER_SLOT, core.EVENT_ERROR)
    assert s.pop(False) == (core.MAX_WORKER_SLOT, core.EVENT_ERROR)
