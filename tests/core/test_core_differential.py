"""Differential tests: the compiled core and its pure-Python twin, driven by the
same random operation sequences, must be indistinguishable -- same return values,
same state, same bytes, same exception types and messages."""
import importlib.util
import json
import math
import struct
import sys
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import fasttune
import fasttune._core as compiled
import fasttune._core_fallback as twin

IMPLEMENTATIONS = (compiled, twin)
SETTINGS = settings(max_examples=120, stateful_step_count=30, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def canon(x):
    """A comparable picture of a value: types, nan, key order and bytes included."""
    if isinstance(x, float):
        return ("float", type(x).__name__, repr(x))
    if x is None or isinstance(x, (bool, int, str, bytes)):
        return (type(x).__name__, x)
    if isinstance(x, (list, tuple)):
        return (type(x).__name__, [canon(v) for v in x])
    if isinstance(x, dict):
        return ("dict", [(canon(k), canon(v)) for k, v in x.items()])
    if isinstance(x, np.ndarray):
        return ("ndarray", x.dtype.str, x.shape, x.tobytes(), x.flags.writeable)
    if isinstance(x, (compiled.TrialTable, twin.TrialTable)):
        return ("table", table_state(x))
    if isinstance(x, (compiled.Ingested, twin.Ingested)):
        return ("ingested", canon(x.results), x.json_bytes, x.csv_bytes, x.stopped,
                canon(x.error), canon(x.last), canon(x.metric_values))
    return (type(x).__name__, repr(x))


def outcome(fn, *args, **kwargs):
    try:
        return ("ok", canon(fn(*args, **kwargs)))
    except Exception as exc:  # the point is to compare them
        return ("raised", type(exc).__name__, str(exc))


def table_state(t):
    rows = [(t.get_status(r), t.get_iteration(r), t.get_failures(r), canon(t.get_last_metric(r)),
             canon(t.get_best_metric(r)), canon(t.get_time_total(r)), t.get_worker_slot(r))
            for r in range(len(t))]
    columns = [canon(t.column(name)) for name in
               ("status", "iteration", "failures", "last_metric", "best_metric",
                "time_total_s", "worker_slot")]
    held = t.held_count()
    assert held == int((t.column("worker_slot") >= 0).sum())
    return (len(t), t.mode, t.counts(), [t.count(s) for s in range(5)],
            [t.rows(s) for s in range(5)], rows, columns, t.snapshot(), held)


def same(objects, method, *args, **kwargs):
    """Calls ``method`` on each implementation's object and requires equal outcomes."""
    results = [outcome(getattr(obj, method), *args, **kwargs) for obj in objects]
    assert results[0] == results[1], (method, args, results)
    return results[0]


# --- TrialTable -------------------------------------------------------------

floats = st.floats(allow_nan=True, allow_infinity=True)
# Integers just past the C ssize_t range the core converts its integer arguments to.
PAST_SSIZE = (2 ** 63, -2 ** 63 - 1, 2 ** 70)
past_ssize = st.sampled_from(PAST_SSIZE)
table_rows = st.integers(-2, 24) | past_ssize


class TableMachine(RuleBasedStateMachine):
    @initialize(mode=st.sampled_from([None, "min", "max"]), n=st.integers(0, 8))
    def start(self, mode, n):
        self.tables = [impl.TrialTable(mode) for impl in IMPLEMENTATIONS]
        for _ in range(n):
            same(self.tables, "add")

    @rule()
    def add(self):
        same(self.tables, "add")

    @rule(row=table_rows, status=st.integers(-1, 5) | past_ssize)
    def set_status(self, row, status):
        same(self.tables, "set_status", row, status)

    @rule(row=table_rows)
    def increment_failures(self, row):
        same(self.tables, "increment_failures", row)

    @rule(row=table_rows, iteration=st.integers(-2, 2 ** 40) | past_ssize)
    def set_iteration(self, row, iteration):
        same(self.tables, "set_iteration", row, iteration)

    @rule(row=table_rows, value=floats)
    def set_time_total(self, row, value):
        same(self.tables, "set_time_total", row, value)

    @rule(row=table_rows, slot=st.integers(-3, 8) | st.just(2 ** 31) | past_ssize)
    def set_worker_slot(self, row, slot):
        same(self.tables, "set_worker_slot", row, slot)

    @rule(row=table_rows, iteration=st.integers(-1, 1000), total=floats, metric=floats)
    def record_result(self, row, iteration, total, metric):
        same(self.tables, "record_result", row, iteration, total, metric)

    @rule(row=table_rows, last=floats, best=floats)
    def set_metrics(self, row, last, best):
        same(self.tables, "set_metrics", row, last, best)

    @rule(name=st.sampled_from(["status", "best_metric", "last_metric", "worker_slot", "bogus"]),
          status=st.integers(-1, 5) | past_ssize)
    def queries(self, name, status):
        same(self.tables, "column", name)
        same(self.tables, "count", status)
        same(self.tables, "rows", status)
        same(self.tables, "counts")

    @rule()
    def snapshot_and_restore(self):
        snapshots = [t.snapshot() for t in self.tables]
        assert snapshots[0] == snapshots[1]
        # Each implementation also reads the other's bytes.
        self.tables = [impl.TrialTable.from_snapshot(snapshots[1 - i])
                       for i, impl in enumerate(IMPLEMENTATIONS)]

    @rule(data=st.data())
    def restore_damaged_snapshot(self, data):
        snap = bytearray(self.tables[0].snapshot())
        kind = data.draw(st.sampled_from(["truncate", "byte", "version", "append", "count"]))
        if kind == "truncate":
            snap = snap[:data.draw(st.integers(0, len(snap)))]
        elif kind == "byte":
            snap[data.draw(st.integers(0, len(snap) - 1))] = data.draw(st.integers(0, 255))
        elif kind == "version":
            struct.pack_into("<H", snap, 4, data.draw(st.integers(0, 65535)))
        elif kind == "append":
            snap += data.draw(st.binary(min_size=1, max_size=50))
        else:
            struct.pack_into("<Q", snap, 8, data.draw(st.integers(0, 2 ** 64 - 1)))
        results = [outcome(impl.TrialTable.from_snapshot, bytes(snap))
                   for impl in IMPLEMENTATIONS]
        assert results[0] == results[1]

    @invariant()
    def identical(self):
        assert table_state(self.tables[0]) == table_state(self.tables[1])


TestTableDifferential = TableMachine.TestCase
TestTableDifferential.settings = SETTINGS


# --- EventSelector ----------------------------------------------------------

slots = st.integers(-2, 140) | st.sampled_from([compiled.MAX_WORKER_SLOT,
                                                compiled.MAX_WORKER_SLOT + 1]) | past_ssize


class SelectorMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.selectors = [impl.EventSelector() for impl in IMPLEMENTATIONS]

    @rule(slot=slots, kind=st.integers(-1, 3) | past_ssize)
    def push(self, slot, kind):
        same(self.selectors, "push", slot, kind)

    @rule(slot=st.integers(0, 8), kind=st.sampled_from([1, 2]))
    def push_few_slots(self, slot, kind):
        same(self.selectors, "push", slot, kind)

    @rule(next_trial_exists=st.booleans())
    def pop(self, next_trial_exists):
        same(self.selectors, "pop", next_trial_exists)

    @rule(slot=slots)
    def discard(self, slot):
        same(self.selectors, "discard", slot)

    @invariant()
    def same_length(self):
        assert len(self.selectors[0]) == len(self.selectors[1])


TestSelectorDifferential = SelectorMachine.TestCase
TestSelectorDifferential.settings = SETTINGS


def test_integers_past_the_c_range_fail_alike_in_every_method():
    """A row (or status, slot, iteration) past ssize_t fails the core's argument conversion
    with OverflowError, before any range check and before any later argument is looked at;
    the twin raises the same, so no method differs on it."""
    calls = [("get_status", 1), ("get_iteration", 1), ("get_failures", 1),
             ("increment_failures", 1), ("get_last_metric", 1), ("get_best_metric", 1),
             ("get_time_total", 1), ("get_worker_slot", 1), ("set_status", 2),
             ("set_iteration", 2), ("set_worker_slot", 2), ("set_time_total", 1, 1.0),
             ("set_metrics", 1, 1.0, 1.0), ("record_result", 2, 1.0, 1.0), ("count", 1),
             ("rows", 1)]
    in_range, bad_type = 0, "x"
    for name, n_ints, *doubles in calls:
        for position in range(n_ints):
            for huge in PAST_SSIZE:
                for other in (in_range, 7, bad_type):
                    ints = [other] * n_ints
                    ints[position] = huge
                    tables = [impl.TrialTable("min") for impl in IMPLEMENTATIONS]
                    for table in tables:
                        table.add()
                    result = same(tables, name, *ints, *doubles)
                    # Only a bad type met first (an earlier argument) is not an overflow.
                    expected = "TypeError" if other == bad_type and position > 0 else "OverflowError"
                    assert result[:2] == ("raised", expected), (name, ints, result)
    # Likewise a later argument of a bad type fails before a missing row is noticed.
    tables = [impl.TrialTable() for impl in IMPLEMENTATIONS]
    for name, *args in [("set_status", 9, "x"), ("set_iteration", 9, 1.5),
                        ("set_worker_slot", 9, None), ("record_result", 9, "x", 1.0, 1.0),
                        ("record_result", 9, 1, "x", 1.0), ("set_time_total", 9, "x"),
                        ("set_metrics", 9, 1.0, "x")]:
        assert same(tables, name, *args)[1] == "TypeError", (name, args)
    for huge in PAST_SSIZE:
        selectors = [impl.EventSelector() for impl in IMPLEMENTATIONS]
        assert same(selectors, "push", huge, compiled.EVENT_BATCH)[1] == "OverflowError"
        assert same(selectors, "push", 1, huge)[1] == "OverflowError"
        assert same(selectors, "discard", huge)[1] == "OverflowError"


# --- ResultBuffer -----------------------------------------------------------

KEYS = ["loss", "acc", "val", "x", "a/b", "a,b", 'q"k', "é", "config", "done", "timestamp",
        "date", "time_this_iter_s", "training_iteration", "trial_id", "checkpoint_dir_name",
        "pid", "time_total_s"]
# Quotes, separators, line breaks, controls, non-ASCII, a lone surrogate, an emoji.
text = st.text(alphabet=st.sampled_from('ab ,;"\'\\\n\r\t\x00\x7fé€\u2028\ud800😀'),
               max_size=6)
keys = st.sampled_from(KEYS) | st.text(max_size=3)
mostly_str_keys = st.one_of(keys, keys, keys, keys, keys, keys, st.integers(0, 2))
leaves = (st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | floats | text
          | st.floats(width=32).map(np.float32) | floats.map(np.float64)
          | st.integers(-1000, 1000).map(np.int64) | st.booleans().map(np.bool_))
values = st.recursive(
    leaves,
    lambda children: (st.lists(children, max_size=3) | st.tuples(children, children)
                      | st.dictionaries(mostly_str_keys, children, max_size=3)),
    max_leaves=4)
metric_dicts = st.dictionaries(keys, values, max_size=6) | st.dictionaries(
    st.sampled_from(["loss", "acc", "x", "y"]), st.floats(-10, 10) | st.integers(0, 9),
    max_size=4) | st.dictionaries(
    st.sampled_from(["loss", "acc", "x", 0]), leaves, max_size=2)
stops = st.none() | st.builds(lambda n: {"training_iteration": n},
                              st.integers(1, 6)) | st.dictionaries(
    st.sampled_from(["loss", "acc", "training_iteration", "val/x", "x", "missing", "done"]),
    st.integers(-5, 30) | floats | st.just("m"), max_size=2)
times = st.floats(0, 4e9) | st.integers(0, 4_000_000_000) | st.sampled_from([-1.5, 1e300])
checkpoints = st.none() | st.dictionaries(st.integers(0, 5),
                                          st.sampled_from(["checkpoint_000003", "", "c,k"]),
                                          max_size=2)


class ResultMachine(RuleBasedStateMachine):
    @initialize(mode=st.sampled_from([None, "min", "max"]),
                metric=st.sampled_from([None, "loss", "acc", "val/x", "x"]))
    def start(self, mode, metric):
        self.tables = [impl.TrialTable(mode) for impl in IMPLEMENTATIONS]
        for _ in range(3):
            same(self.tables, "add")
        self.buffers = [impl.ResultBuffer(t, metric) for impl, t in zip(IMPLEMENTATIONS,
                                                                          self.tables)]
        self.open_rows = set()
        self.open_trial(0, "t_0", None, 1e9, "{}", "host", 1)

    @rule(row=st.sampled_from([0, 0, 1, 1, 2, 2, -1, 3]), trial_id=text, stop=stops,
          start_time=times,
          config=st.sampled_from(['{"lr": 0.1}', "{}", '{"s": "\\u00e9"}', "{}", "\ud800"]),
          hostname=text, pid=st.integers(0, 2 ** 40) | text)
    def open_trial(self, row, trial_id, stop, start_time, config, hostname, pid):
        if same(self.buffers, "open_trial", row, trial_id, config, stop, start_time=start_time,
                hostname=hostname, node_ip="10.0.0.1", pid=pid)[0] == "ok":
            self.open_rows.add(row)

    @rule(data=st.data(), batch=st.lists(metric_dicts, max_size=4), ckpts=checkpoints)
    def ingest(self, data, batch, ckpts):
        # Mostly well-formed batches for open trials that report the metric, so
        # that most batches get far; the rest probe every way to refuse one.
        row = data.draw(st.sampled_from(sorted(self.open_rows)) if self.open_rows and
                        data.draw(st.integers(0, 9)) else st.integers(-1, 3))
        metric = self.buffers[0].metric
        for result in batch:
            if metric is not None and data.draw(st.integers(0, 9)):
                value = data.draw(st.floats(-10, 10) | leaves)
                if metric == "val/x":
                    result["val"] = {"x": value}
                else:
                    result[metric] = value
        ts = data.draw(st.lists(times, min_size=len(batch), max_size=len(batch)))
        if not data.draw(st.integers(0, 19)):
            ts = data.draw(st.lists(times | st.just(math.nan), max_size=5))
        if not data.draw(st.integers(0, 19)):
            batch = batch + [["not", "a", "dict"]]
            ts = ts + [1.0]
        before = canon(batch)
        kept = []
        outs = [outcome(lambda buf=buf: kept.append(buf.ingest(row, batch, ts, ckpts)) or kept[-1])
                for buf in self.buffers]
        assert outs[0] == outs[1], outs
        assert canon(batch) == before  # the user's dicts are never mutated
        if len(kept) == 2 and data.draw(st.booleans()):
            # As the runner does when a scheduler stops the trial on the batch's last result.
            same(kept, "mark_last_done")
            assert canon(kept[0]) == canon(kept[1])

    @rule(data=st.data(), batch=st.lists(metric_dicts, min_size=1, max_size=4))
    def ingest_without_checkpoints(self, data, batch):
        self.ingest(data, batch, None)

    @rule(row=st.integers(-1, 3))
    def close_trial(self, row):
        same(self.buffers, "close_trial", row)
        self.open_rows.discard(row)

    @rule(row=st.integers(-1, 3),
          keys=st.lists(st.sampled_from(["loss", "x", "a/b", "training_iteration"]),
                        max_size=3, unique=True))
    def set_csv_header(self, row, keys):
        same(self.buffers, "set_csv_header", row, keys)

    @rule(row=st.integers(0, 2), iteration=st.integers(0, 100), total=st.floats(0, 1e6),
          status=st.integers(0, 4))
    def table_changes_between_segments(self, row, iteration, total, status):
        same(self.tables, "set_iteration", row, iteration)
        same(self.tables, "set_time_total", row, total)
        same(self.tables, "set_status", row, status)

    @invariant()
    def identical(self):
        for row in range(-1, 4):
            same(self.buffers, "last_result", row)
            same(self.buffers, "csv_header", row)
            same(self.buffers, "csv_header_written", row)
        assert table_state(self.tables[0]) == table_state(self.tables[1])


TestResultDifferential = ResultMachine.TestCase
TestResultDifferential.settings = SETTINGS


# --- choosing the implementation -------------------------------------------

def load_corelib():
    """A fresh, private copy of fasttune._corelib (the shared one stays as it is)."""
    spec = importlib.util.spec_from_file_location(
        "fasttune._corelib_under_test", fasttune.__path__[0] + "/_corelib.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_corelib_prefers_the_compiled_core(monkeypatch):
    monkeypatch.delenv("FASTTUNE_PUREPYTHON", raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lib = load_corelib()
    assert lib.IMPLEMENTATION == "compiled"
    assert lib.TrialTable is compiled.TrialTable
    assert lib.IllegalTransition is compiled.IllegalTransition


def test_corelib_honours_purepython_env(monkeypatch):
    monkeypatch.setenv("FASTTUNE_PUREPYTHON", "1")
    lib = load_corelib()
    assert lib.IMPLEMENTATION == "python"
    assert lib.ResultBuffer is twin.ResultBuffer and lib.CorruptSnapshot is twin.CorruptSnapshot


def test_corelib_falls_back_with_a_warning_when_not_built(monkeypatch):
    monkeypatch.delenv("FASTTUNE_PUREPYTHON", raising=False)
    monkeypatch.setitem(sys.modules, "fasttune._core", None)
    monkeypatch.delattr(fasttune, "_core", raising=False)
    with pytest.warns(RuntimeWarning, match=r"pip install -e \."):
        lib = load_corelib()
    assert lib.IMPLEMENTATION == "python" and lib.EventSelector is twin.EventSelector


def test_both_implementations_export_the_same_names():
    public = [name for name in twin.__all__]
    for name in public:
        assert hasattr(compiled, name), name
    for name in ("STATUS_NAMES", "SNAPSHOT_VERSION", "MAX_WORKER_SLOT", "EVENT_ERROR"):
        assert getattr(compiled, name) == getattr(twin, name)


def test_json_bytes_identical_for_a_long_mixed_history():
    """A deterministic long run, so that a regression shows up even without hypothesis."""
    rng = np.random.default_rng(7)
    metrics = [{"loss": float(rng.random()), "step": int(i), "neg": -float(rng.random()),
                "small": float(rng.random()) * 1e-7, "big": float(rng.random()) * 1e18,
                "nested": {"a": float(rng.random())}} for i in range(1000)]
    ts = [float(t) for t in 1.7e9 + np.cumsum(rng.random(1000))]
    outs = []
    for impl in IMPLEMENTATIONS:
        table = impl.TrialTable("min")
        table.add()
        buf = impl.ResultBuffer(table, "loss")
        buf.open_trial(0, "t", json.dumps({"lr": 0.1}), {"training_iteration": 900},
                       start_time=1.7e9, hostname="h", node_ip="n", pid=1)
        outs.append(outcome(buf.ingest, 0, metrics, ts))
        outs.append(table_state(table))
    assert outs[0] == outs[2] and outs[1] == outs[3]
    assert outs[0][1][4] is True  # it stopped at iteration 900


class _FloatSaysOther(float):
    def __float__(self):
        return 99.0


class _IntSaysOther(int):
    def __float__(self):
        return 99.0


@pytest.mark.parametrize("value", [
    0.25, -0.0, math.inf, math.nan, 3, -(2 ** 63), 10 ** 400, True, False, np.float32(0.5), np.int64(7),
    np.bool_(True), np.float16(1.5), None, "0.5", b"1", [1.0], {"a": 1.0}, 1 + 2j, np.array(1.0),
    _FloatSaysOther(1.5), _IntSaysOther(2),
])
def test_metric_number_is_the_same_in_both(value):
    """What the table records for a metric value (and what a cut trial's recount and the
    simulation's direct loop use): the same float, or nan, in both implementations."""
    got = [impl.metric_number(value) for impl in IMPLEMENTATIONS]
    assert canon(got[0]) == canon(got[1])
    assert type(got[0]) is float
