"""Behaviour of ResultBuffer (result completion, stop rules, result.json and
progress.csv bytes), checked on both implementations, and the compiled float
formatter against float.__repr__."""
import csv
import io
import json
import math
import random
import struct
import time

import numpy as np
import pytest

import fasttune._core as compiled
import fasttune._core_fallback as twin

AUTO_KEYS = [
    "timestamp", "checkpoint_dir_name", "done", "training_iteration", "trial_id", "date",
    "time_this_iter_s", "time_total_s", "pid", "hostname", "node_ip", "time_since_restore",
    "iterations_since_restore",
]
CONFIG = '{"lr": 0.1, "name": "caf\\u00e9"}'


@pytest.fixture(params=[compiled, twin], ids=["compiled", "python"])
def core(request):
    return request.param


def make(core, metric="loss", stop=None, mode="min", start_time=1000.0, rows=1):
    table = core.TrialTable(mode)
    for _ in range(rows):
        table.add()
    buf = core.ResultBuffer(table, metric)
    buf.open_trial(0, "t_00000", CONFIG, stop, start_time=start_time, hostname="host",
                   node_ip="10.0.0.1", pid=42)
    return table, buf


def parse_csv(data):
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))


def test_automatic_fields_values_and_order(core):
    table, buf = make(core)
    out = buf.ingest(0, [{"loss": 2.0, "acc": 0.5}, {"loss": 1.0, "acc": 0.7}],
                     [1001.5, 1004.0], {1: "checkpoint_000001"})
    first, second = out.results
    assert list(first) == ["loss", "acc"] + AUTO_KEYS
    assert first["timestamp"] == 1001 and first["checkpoint_dir_name"] is None
    assert first["done"] is False and first["training_iteration"] == 1
    assert first["trial_id"] == "t_00000"
    assert first["date"] == time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(1001.5))
    assert first["time_this_iter_s"] == 1.5 and first["time_total_s"] == 1.5
    assert (first["pid"], first["hostname"], first["node_ip"]) == (42, "host", "10.0.0.1")
    assert first["time_since_restore"] == 1.5 and first["iterations_since_restore"] == 1
    assert second["checkpoint_dir_name"] == "checkpoint_000001"
    assert second["time_this_iter_s"] == 2.5 and second["time_total_s"] == 4.0
    assert second["training_iteration"] == 2 and second["iterations_since_restore"] == 2
    assert out.last is second and buf.last_result(0) is second
    assert not out.stopped and out.error is None
    assert table.get_iteration(0) == 2 and table.get_time_total(0) == 4.0
    assert table.get_last_metric(0) == 1.0 and table.get_best_metric(0) == 1.0


def test_user_values_for_setdefault_keys_stay_in_place(core):
    _, buf = make(core)
    user = {"timestamp": 5, "loss": 1.0, "date": "yesterday", "time_this_iter_s": 9.0,
            "done": False, "training_iteration": 99, "trial_id": "mine", "config": {"x": 1}}
    frozen = json.dumps(user)
    (r,) = buf.ingest(0, [user], [1002.0]).results
    assert json.dumps(user) == frozen  # the user's dict is not mutated
    assert list(r) == ["timestamp", "loss", "date", "time_this_iter_s", "done",
                       "training_iteration", "trial_id", "checkpoint_dir_name",
                       "time_total_s", "pid", "hostname", "node_ip", "time_since_restore",
                       "iterations_since_restore"]
    assert r["timestamp"] == 5 and r["date"] == "yesterday" and r["time_this_iter_s"] == 9.0
    assert r["training_iteration"] == 1 and r["trial_id"] == "t_00000"  # overwritten
    assert "config" not in r


def test_segments_continue_iteration_and_time_from_the_table(core):
    table, buf = make(core, metric=None)
    buf.ingest(0, [{"x": 1}, {"x": 2}], [1001.0, 1003.0])
    buf.close_trial(0)
    with pytest.raises(ValueError, match="trial row 0 is not open"):
        buf.ingest(0, [{"x": 3}], [1004.0])
    buf.open_trial(0, "t_00000", CONFIG, None, start_time=2000.0, hostname="other",
                   node_ip="10.0.0.2", pid=43)
    out = buf.ingest(0, [{"x": 3}, {"x": 4}], [2000.5, 2001.0])
    assert [r["training_iteration"] for r in out.results] == [3, 4]
    assert [r["iterations_since_restore"] for r in out.results] == [1, 2]
    assert [r["time_since_restore"] for r in out.results] == [0.5, 1.0]
    assert [r["time_total_s"] for r in out.results] == [3.5, 4.0]
    assert out.results[0]["hostname"] == "other"
    assert out.csv_bytes.count(b"\r\n") == 2  # no second header after the restore
    assert table.get_iteration(0) == 4


def test_json_lines_parse_back_to_result_plus_config(core):
    _, buf = make(core)
    metrics = [
        {"loss": 0.1 + i, "nested": {"a": i, "b": {"c": "x,\"y\"\n"}}, "s": "é\u2028",
         "l": [1, 2.5, None, True], "n": None, "big": 10 ** 30}
        for i in range(3)
    ]
    out = buf.ingest(0, metrics, [1001.0, 1002.0, 1003.0])
    lines = out.json_bytes.decode("utf-8").splitlines(keepends=True)
    assert len(lines) == 3 and all(line.endswith("}\n") for line in lines)
    for line, r in zip(lines, out.results):
        assert json.loads(line) == {**r, "config": json.loads(CONFIG)}
        assert line.rstrip("\n").endswith(', "config": ' + CONFIG + "}")
        assert line.encode("ascii", "ignore").decode() == line  # ensure_ascii
        assert line[:-len(CONFIG) - 14] == json.dumps(r)[:-1]


def test_json_matches_json_dumps_for_awkward_values(core):
    _, buf = make(core, metric=None)
    values = {
        "nan": float("nan"), "inf": float("inf"), "ninf": float("-inf"), "negzero": -0.0,
        "tiny": 5e-324, "huge": 1.7976931348623157e308, "e16": 1e16, "e-5": 1e-5,
        "np64": np.float64(0.1), "np32": np.float32(0.1), "npint": np.int64(3),
        "npbool": np.bool_(True), "tuple": (1, (2, 3)), "set": {1}, "bytes": b"x",
        "intkeys": [{1: "a", 2.5: "b", None: "c", False: "d"}], "ctrl": "\x00\x1f\x7f",
        "surrogate": "\ud800", "deep": [[[[[[[[[[1]]]]]]]]]], "obj": ValueError("boom"),
    }
    out = buf.ingest(0, [values], [1001.0])
    expected = json.dumps(out.results[0], default=str)[:-1] + ', "config": ' + CONFIG + "}\n"
    assert out.json_bytes == expected.encode("utf-8")
    assert b'"obj": "boom"' in out.json_bytes and b'"npint": "3"' in out.json_bytes


def test_deeply_nested_lists_match_json_and_cycles_raise_like_json(core):
    _, buf = make(core, metric=None)
    deep = [1]
    for _ in range(300):
        deep = [deep]
    out = buf.ingest(0, [{"deep": deep}], [1001.0])
    assert out.json_bytes == (json.dumps(out.results[0])[:-1] + ', "config": ' + CONFIG
                              + "}\n").encode()
    cycle = [1]
    cycle.append(cycle)
    with pytest.raises(ValueError, match="Circular reference detected"):
        buf.ingest(0, [{"cycle": cycle}], [1002.0])


def test_csv_matches_dictwriter_and_parses_back(core):
    _, buf = make(core)
    metrics = [{"loss": 1.5, "n": {"a": 1, "b": "q\"uote,comma"}, "s": "line\nbreak\rx",
                "none": None, "flag": True, "u": "ünï", "f": float("nan")},
               {"loss": 0.5, "n": {"a": 2}, "extra": 1}]
    out = buf.ingest(0, metrics, [1001.0, 1002.0])
    flat_keys = ["loss", "n/a", "n/b", "s", "none", "flag", "u", "f"] + AUTO_KEYS
    assert buf.csv_header(0) == flat_keys and buf.csv_header_written(0)
    expected = io.StringIO()
    writer = csv.DictWriter(expected, fieldnames=flat_keys, extrasaction="ignore")
    writer.writeheader()
    for r in out.results:
        flat = {**{k: v for k, v in r.items() if k != "n"},
                **{f"n/{k}": v for k, v in r["n"].items()}}
        writer.writerow(flat)
    assert out.csv_bytes == expected.getvalue().encode("utf-8")
    rows = parse_csv(out.csv_bytes)
    assert rows[0]["n/b"] == "q\"uote,comma" and rows[0]["s"] == "line\nbreak\rx"
    assert rows[0]["none"] == "" and rows[0]["flag"] == "True" and rows[0]["f"] == "nan"
    assert rows[1]["n/b"] == "" and "extra" not in rows[1]  # extras are ignored
    assert float(rows[1]["time_total_s"]) == 2.0


def test_csv_header_is_written_once_and_can_be_restored(core):
    table, buf = make(core, rows=2)
    first = buf.ingest(0, [{"loss": 1.0}], [1001.0]).csv_bytes
    second = buf.ingest(0, [{"loss": 2.0}], [1002.0]).csv_bytes
    assert first.startswith(b"loss,timestamp,") and first.count(b"\r\n") == 2
    assert second.count(b"\r\n") == 1 and not second.startswith(b"loss")
    # A resumed run declares row 1's file as already started.
    assert not buf.csv_header_written(1) and buf.csv_header(1) is None
    buf.set_csv_header(1, ["loss", "training_iteration"])
    buf.open_trial(1, "t_00001", "{}", None, start_time=0.0, hostname="h", node_ip="i", pid=1)
    assert buf.ingest(1, [{"loss": 3.0}], [1.0]).csv_bytes == b"3.0,1\r\n"
    with pytest.raises(ValueError, match="at least one key"):
        buf.set_csv_header(1, [])
    with pytest.raises(TypeError, match="must be strings"):
        buf.set_csv_header(1, ["a", 1])


def test_single_column_header_quotes_an_empty_cell(core):
    _, buf = make(core, metric=None)
    buf.set_csv_header(0, ["missing"])
    assert buf.ingest(0, [{"x": 1}], [1001.0]).csv_bytes == b'""\r\n'


def test_missing_metric_keeps_earlier_results_only(core):
    table, buf = make(core)
    out = buf.ingest(0, [{"loss": 1.0}, {"acc": 1.0}, {"loss": 0.5}], [1001.0, 1002.0, 1003.0])
    assert len(out.results) == 1 and out.json_bytes.count(b"\n") == 1
    assert out.error == (
        "Trial t_00000 reported a result without the metric 'loss' set in "
        "TuneConfig(metric=...). The result has the keys ['acc', 'checkpoint_dir_name', "
        "'date', 'done', 'hostname', 'iterations_since_restore', 'node_ip', 'pid', "
        "'time_since_restore', 'time_this_iter_s', 'time_total_s', 'timestamp', "
        "'training_iteration', 'trial_id']. Report the metric with tune.report({'loss': ...}) "
        "or set TuneConfig(metric=...) to one of those keys.")
    assert table.get_iteration(0) == 1 and not out.stopped
    assert buf.ingest(0, [{"loss": 0.5}], [1003.0]).results[0]["training_iteration"] == 2


def test_a_missing_metric_records_nan_when_the_metric_is_not_required(core):
    # TUNE_DISABLE_STRICT_METRIC_CHECKING=1: the result is taken, its metric is NaN, the best stays.
    table = core.TrialTable("min")
    table.add()
    buf = core.ResultBuffer(table, "loss", require_metric=False)
    buf.open_trial(0, "t_00000", CONFIG, None, start_time=1000.0, hostname="host", node_ip="10.0.0.1", pid=42)
    out = buf.ingest(0, [{"loss": 1.0}, {"acc": 1.0}], [1001.0, 1002.0])
    assert out.error is None and len(out.results) == 2
    assert table.get_iteration(0) == 2
    assert math.isnan(table.get_last_metric(0)) and table.get_best_metric(0) == 1.0


def test_nested_metric_is_found_by_its_flat_name(core):
    table, buf = make(core, metric="val/loss")
    out = buf.ingest(0, [{"val": {"loss": 0.25}}], [1001.0])
    assert out.error is None and table.get_last_metric(0) == 0.25


@pytest.mark.parametrize("value, recorded", [
    (np.float32(0.5), 0.5), (np.int64(3), 3.0), (True, 1.0), (7, 7.0), ("0.5", math.nan),
    (None, math.nan), ([1.0], math.nan), (10 ** 400, math.nan),
])
def test_recorded_metric_value(core, value, recorded):
    table, buf = make(core)
    buf.ingest(0, [{"loss": value}], [1001.0])
    got = table.get_last_metric(0)
    assert (math.isnan(got) and math.isnan(recorded)) or got == recorded


def test_stop_criterion_stops_and_drops_the_rest(core):
    table, buf = make(core, stop={"training_iteration": 2})
    out = buf.ingest(0, [{"loss": 3.0}, {"loss": 2.0}, {"loss": 1.0}], [1001.0, 1002.0, 1003.0])
    assert out.stopped and out.error is None
    assert [r["done"] for r in out.results] == [False, True]
    assert json.loads(out.json_bytes.splitlines()[-1])["done"] is True
    assert parse_csv(out.csv_bytes)[-1]["done"] == "True"
    assert table.get_iteration(0) == 2 and table.get_best_metric(0) == 2.0


def test_nested_stop_key_and_first_reached_criterion(core):
    _, buf = make(core, metric=None, stop={"val/acc": 0.9, "missing": 1})
    out = buf.ingest(0, [{"val": {"acc": 0.95}}], [1001.0])
    assert out.stopped and out.results[0]["done"] is True  # stops before checking "missing"


def test_user_done_stops(core):
    _, buf = make(core, metric=None)
    out = buf.ingest(0, [{"x": 1, "done": 1}, {"x": 2}], [1001.0, 1002.0])
    assert out.stopped and len(out.results) == 1 and out.results[0]["done"] is True
    assert list(out.results[0])[:2] == ["x", "done"]


def test_missing_stop_key_is_an_error(core):
    _, buf = make(core, metric=None, stop={"acc": 0.9})
    out = buf.ingest(0, [{"x": 1}], [1001.0])
    assert out.results == [] and out.json_bytes == b"" and out.csv_bytes == b""
    assert out.error.startswith("Trial t_00000: the stop criterion 'acc' is not in the result. "
                                "The result has the keys ['checkpoint_dir_name', ")
    assert out.error.endswith("'x']. Fix the key in RunConfig(stop=...).")
    assert not buf.csv_header_written(0)


def test_incomparable_stop_value_is_an_error(core):
    _, buf = make(core, metric=None, stop={"x": 1})
    out = buf.ingest(0, [{"x": "text"}], [1001.0])
    assert out.error == ("Trial t_00000: the stop criterion 'x' cannot compare the result's "
                         "value 'text' with the threshold 1. Fix RunConfig(stop=...) or the "
                         "reported value.")


def test_non_string_keys_are_refused(core):
    _, buf = make(core, metric=None)
    out = buf.ingest(0, [{"x": 1}, {"x": {2: 3}}], [1001.0, 1002.0])
    assert len(out.results) == 1
    assert out.error == ("Trial t_00000 reported a result with the key 2, which is not a "
                         "string; result keys must be strings.")


def test_bad_batches_raise_before_anything_is_kept(core):
    table, buf = make(core, metric=None)
    with pytest.raises(ValueError, match="got 2 results but 1 times"):
        buf.ingest(0, [{}, {}], [1.0])
    with pytest.raises(TypeError, match=r"metrics\[1\] is a list, not a dict"):
        buf.ingest(0, [{}, []], [1.0, 2.0])
    with pytest.raises(ValueError, match=r"times\[1\] is nan"):
        buf.ingest(0, [{}, {}], [1.0, float("nan")])
    with pytest.raises(IndexError, match="no trial row 3"):
        buf.ingest(3, [], [])
    assert table.get_iteration(0) == 0 and buf.last_result(0) is None


def test_empty_batch(core):
    _, buf = make(core)
    out = buf.ingest(0, [], [])
    assert (out.results, out.json_bytes, out.csv_bytes, out.stopped, out.error, out.last) == \
        ([], b"", b"", False, None, None)


def test_constructor_arguments_are_checked(core):
    with pytest.raises(TypeError, match="needs a TrialTable"):
        core.ResultBuffer(object(), None)
    with pytest.raises(TypeError, match="metric must be a string or None"):
        core.ResultBuffer(core.TrialTable(), 3)
    _, buf = make(core)
    with pytest.raises(TypeError, match="stop must be a dict"):
        buf.open_trial(0, "t", "{}", [("a", 1)], start_time=0.0, hostname="h",
                       node_ip="i", pid=1)


# --- the compiled float formatter -----------------------------------------

def special_floats():
    out = [0.0, -0.0, math.inf, -math.inf, math.nan, 5e-324, 2.2250738585072014e-308,
           2.2250738585072009e-308, 1.7976931348623157e308, 1e16, 1e15, 9999999999999998.0,
           1e-4, 1e-5, 9.999999999999999e-5, 0.1, 0.3, 1 / 3, 1e22, 1e23, 2.0 ** 53]
    for e in range(-1074, 1024, 3):
        x = math.ldexp(1.0, e)
        out += [x, math.nextafter(x, 0), math.nextafter(x, math.inf)]
    out += [k / 10 ** d for k in range(1, 400) for d in range(0, 8)]
    return out


def test_float_formatter_matches_repr():
    rng = random.Random(20240405)
    values = special_floats()
    values += [struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
               for _ in range(100_000)]
    values += [rng.random() * 10 ** rng.randint(-20, 20) for _ in range(50_000)]
    mismatches = [x for x in values if compiled._float_repr(x) != repr(x)]
    assert mismatches == []


@pytest.mark.parametrize("value, threshold, stops", [
    (True, True, True), (False, True, False), (np.True_, True, True), (1, True, True),
    (0.5, True, False), (True, 1, True), (False, 0, True), (True, 1.5, False),
])
def test_bool_stop_thresholds_compare_as_ray_tune_does(core, value, threshold, stops):
    # Ray Tune stops once result[key] >= threshold, bools being the ints they are.
    _, buf = make(core, metric=None, stop={"flag": threshold})
    out = buf.ingest(0, [{"flag": value}], [1001.0])
    assert out.error is None and out.stopped is stops


def test_closing_a_trial_lets_go_of_its_last_result_and_keeps_its_csv_header(core):
    table, buf = make(core, metric=None)
    last = buf.ingest(0, [{"x": 1}, {"x": 2}], [1001.0, 1003.0]).results[-1]
    assert buf.last_result(0) is last
    header = buf.csv_header(0)
    buf.close_trial(0)
    assert buf.last_result(0) is None and buf.csv_header(0) == header


def test_rows_with_the_same_columns_share_one_csv_header(core):
    table, buf = make(core, metric=None, rows=2)
    buf.open_trial(1, "t_00001", CONFIG, None, start_time=1000.0, hostname="host", node_ip="127.0.0.1", pid=42)
    buf.ingest(0, [{"x": 1}], [1001.0])
    buf.ingest(1, [{"x": 2}], [1001.0])
    assert buf.csv_header(0) == buf.csv_header(1)


def test_the_python_twin_keeps_one_header_tuple_for_rows_with_the_same_columns():
    table, buf = make(twin, metric=None, rows=2)
    buf.open_trial(1, "t_00001", CONFIG, None, start_time=1000.0, hostname="host", node_ip="127.0.0.1", pid=42)
    buf.ingest(0, [{"x": 1}], [1001.0])
    buf.ingest(1, [{"x": 2}], [1001.0])
    assert buf._csv_headers[0] is buf._csv_headers[1]
