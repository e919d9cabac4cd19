import json
import math
import sys

import pytest

from fasttune.error import TuneError
from fasttune.result import Result
from fasttune.result_grid import ResultGrid

NAN, INF = float("nan"), float("inf")


def write_trial(exp, name, config, history, error=None, tail=""):
    """A trial directory as the runner writes it: params.json, result.json, error.txt."""
    d = exp / name
    d.mkdir(parents=True)
    (d / "params.json").write_text(json.dumps(config))
    with open(d / "result.json", "w") as f:
        for i, row in enumerate(history):
            f.write(json.dumps(dict(row, training_iteration=i + 1, config=config)) + "\n")
        f.write(tail)
    if error is not None:
        (d / "error.txt").write_text(error)
    return d


def losses(values):
    return [{"loss": v} for v in values]


# Hand-computed per-trial scores of "loss" (mode="min"):
#            last   avg            last-5-avg  last-10-avg      all(min)
#   a         9     55/7 = 7.857    9           55/7 = 7.857      1
#   b         5     95/16 = 5.9375  2.6         4.7               2
#   c         4     4               4           4                 4
#   d         5     80/30 = 2.667   5           5                 1.5
#   e         3     223/12 = 18.58  16.6        18.3              3
HISTORIES = {
    "a": [1] + [9] * 6,
    "b": [8] * 10 + [2] * 5 + [5],
    "c": [4] * 12,
    "d": [1.5] * 20 + [5] * 10,
    "e": [20] * 11 + [3],
}


@pytest.fixture
def exp(tmp_path):
    exp = tmp_path / "exp"
    for name, values in HISTORIES.items():
        write_trial(exp, f"trial_{name}", {"name": name}, losses(values))
    return exp


@pytest.fixture
def grid(exp):
    return ResultGrid.from_path(exp)


def best_name(grid, **kwargs):
    return grid.get_best_result(**kwargs).config["name"]


@pytest.mark.parametrize(
    "scope, expected",
    [("last", "e"), ("avg", "d"), ("last-5-avg", "b"), ("last-10-avg", "c"), ("all", "a")],
)
def test_each_scope_min(grid, scope, expected):
    assert best_name(grid, metric="loss", mode="min", scope=scope) == expected


@pytest.mark.parametrize(
    "scope, expected",
    # max: last a=9; avg e=18.58; last-5-avg e=16.6; last-10-avg e=18.3; all e=20
    [("last", "a"), ("avg", "e"), ("last-5-avg", "e"), ("last-10-avg", "e"), ("all", "e")],
)
def test_each_scope_max(grid, scope, expected):
    assert best_name(grid, metric="loss", mode="max", scope=scope) == expected


def test_avg_windows_count_only_rows_with_the_metric(tmp_path):
    exp = tmp_path / "exp"
    # x: values 10, 1, 1, 1, 1, 1 with metric-less rows in between -> last-5-avg 1
    write_trial(exp, "x", {"name": "x"}, [{"loss": 10}] + [{"loss": 1}, {"other": 0}] * 5)
    # y: last 5 rows are 2 -> last-5-avg 2; but its own metric-less rows must not count
    write_trial(exp, "y", {"name": "y"}, losses([2] * 5))
    grid = ResultGrid.from_path(exp)
    assert best_name(grid, metric="loss", mode="min", scope="last-5-avg") == "x"
    # "last" uses the last result: x's last row has no "loss", so y wins.
    assert best_name(grid, metric="loss", mode="min", scope="last") == "y"


def test_defaults_from_tune_config(exp):
    grid = ResultGrid.from_path(exp, default_metric="loss", default_mode="max")
    assert best_name(grid) == "a"
    assert best_name(grid, mode="min") == "e"


def test_missing_metric_or_mode_is_value_error(grid):
    with pytest.raises(ValueError, match=r"TuneConfig\(metric=\.\.\., mode=\.\.\.\)"):
        grid.get_best_result()
    with pytest.raises(ValueError, match=r"No mode for metric 'loss'.*TuneConfig"):
        grid.get_best_result(metric="loss")


def test_bad_mode_and_scope(grid):
    with pytest.raises(ValueError, match=r"mode='best'.*\['min', 'max'\]"):
        grid.get_best_result("loss", "best")
    with pytest.raises(ValueError, match=r"scope='last-3-avg'.*'last-10-avg'"):
        grid.get_best_result("loss", "min", scope="last-3-avg")


def test_no_trial_reported_metric_is_runtime_error(grid):
    with pytest.raises(RuntimeError, match="'accuracy'.*filter_nan_and_inf=False"):
        grid.get_best_result("accuracy", "max")


def test_single_trial_returned_directly(tmp_path):
    exp = tmp_path / "exp"
    write_trial(exp, "only", {"name": "only"}, losses([1.0]))
    grid = ResultGrid.from_path(exp)
    assert best_name(grid) == "only"


def test_nested_metric_with_slash(tmp_path):
    g = ResultGrid(
        [Result({"val": {"loss": 2.0}}, None, None, "/e/a"),
         Result({"val": {"loss": 1.0}}, None, None, "/e/b")],
        "/e",
    )
    assert g.get_best_result("val/loss", "min").path == "/e/b"


def test_inf_filtered_by_default(tmp_path):
    exp = tmp_path / "exp"
    write_trial(exp, "inf", {"name": "inf"}, losses([INF]))
    write_trial(exp, "fin", {"name": "fin"}, losses([5.0]))
    grid = ResultGrid.from_path(exp)
    assert best_name(grid, metric="loss", mode="max") == "fin"
    assert best_name(grid, metric="loss", mode="max", filter_nan_and_inf=False) == "inf"


def test_neg_inf_filtered_for_min(tmp_path):
    exp = tmp_path / "exp"
    write_trial(exp, "a", {"name": "a"}, losses([-INF]))
    write_trial(exp, "b", {"name": "b"}, losses([0.5]))
    grid = ResultGrid.from_path(exp)
    assert best_name(grid, metric="loss", mode="min") == "b"
    assert best_name(grid, metric="loss", mode="min", filter_nan_and_inf=False) == "a"


def test_nan_only_trials(tmp_path):
    exp = tmp_path / "exp"
    write_trial(exp, "a", {"name": "a"}, losses([NAN]))
    write_trial(exp, "b", {"name": "b"}, losses([NAN]))
    grid = ResultGrid.from_path(exp)
    with pytest.raises(RuntimeError, match="'loss'.*NaN"):
        grid.get_best_result("loss", "min")
    assert best_name(grid, metric="loss", mode="min", filter_nan_and_inf=False) == "a"


def test_nan_ranks_last_when_not_filtered(tmp_path):
    exp = tmp_path / "exp"
    write_trial(exp, "a", {"name": "a"}, losses([NAN]))
    write_trial(exp, "b", {"name": "b"}, losses([7.0]))
    grid = ResultGrid.from_path(exp)
    for mode in ("min", "max"):
        assert best_name(grid, metric="loss", mode=mode, filter_nan_and_inf=False) == "b"


def test_nan_in_history_poisons_avg_but_not_all(tmp_path):
    exp = tmp_path / "exp"
    write_trial(exp, "a", {"name": "a"}, losses([1.0, NAN, 2.0]))
    write_trial(exp, "b", {"name": "b"}, losses([3.0, 3.0, 3.0]))
    grid = ResultGrid.from_path(exp)
    assert best_name(grid, metric="loss", mode="min", scope="avg") == "b"
    assert best_name(grid, metric="loss", mode="min", scope="all") == "a"


def test_history_read_only_when_scope_needs_it(tmp_path, caplog):
    exp = tmp_path / "exp"
    for name, v in (("a", 1.0), ("b", 2.0)):
        write_trial(exp, name, {"name": name}, losses([v]))
    grid = ResultGrid.from_path(exp)
    # Corrupt result.json *after* loading: "last" must not reread it, "avg" must (and
    # reads the rows before the bad line, with a warning naming it).
    (exp / "a" / "result.json").write_text('{"loss": 5.0}\nbroken\n{"loss": 0.0}\n')
    assert best_name(grid, metric="loss", mode="min") == "a"
    assert caplog.text == ""
    assert best_name(grid, metric="loss", mode="min", scope="avg") == "b"
    assert f"{exp / 'a' / 'result.json'}, line 2, is not a JSON object" in caplog.text


def test_history_falls_back_to_last_metrics_without_result_json():
    g = ResultGrid(
        [Result({"loss": 3.0}, None, None, "/nowhere/a"),
         Result({"loss": 2.0}, None, None, "/nowhere/b")],
        "/nowhere",
    )
    assert g.get_best_result("loss", "min", scope="avg").path == "/nowhere/b"


def test_truncated_last_line_in_grid(tmp_path):
    exp = tmp_path / "exp"
    # a: complete rows 3.0, 1.0 (avg 2.0) plus a cut-off row that would say 0.0
    write_trial(exp, "a", {"name": "a"}, losses([3.0, 1.0]), tail='{"loss": 0.0, "tr')
    write_trial(exp, "b", {"name": "b"}, losses([1.9, 1.9]))
    grid = ResultGrid.from_path(exp)
    assert grid[0].metrics["loss"] == 1.0
    assert best_name(grid, metric="loss", mode="min") == "a"
    # Had the fragment counted, a's avg would be 4/3 and beat b's 1.9.
    assert best_name(grid, metric="loss", mode="min", scope="avg") == "b"
    assert best_name(grid, metric="loss", mode="min", scope="all") == "a"


def test_container_protocol_and_counts(tmp_path):
    exp = tmp_path / "exp"
    write_trial(exp, "t0", {"i": 0}, losses([1.0]))
    write_trial(exp, "t1", {"i": 1}, losses([2.0]), error="Traceback...\nValueError: bad\n")
    write_trial(exp, "t2", {"i": 2}, [], error="OOM")
    (exp / "not_a_trial").mkdir()
    (exp / "experiment_state.json").write_text("{}")
    grid = ResultGrid.from_path(exp)
    assert grid.experiment_path == str(exp)
    assert len(grid) == 3
    assert [r.config["i"] for r in grid] == [0, 1, 2]
    assert grid[-1].config == {"i": 2}
    assert grid.num_errors == 2 and grid.num_terminated == 1
    assert all(isinstance(e, TuneError) for e in grid.errors)
    assert [str(e) for e in grid.errors] == ["Traceback...\nValueError: bad\n", "OOM"]
    with pytest.raises(IndexError, match="out of range for 3 results"):
        grid[3]
    with pytest.raises(TypeError, match="indices must be integers"):
        grid["t0"]


def test_constructor_validation():
    with pytest.raises(TypeError, match="item 0"):
        ResultGrid([{"loss": 1}], "/e")
    with pytest.raises(ValueError, match="default_mode='up'"):
        ResultGrid([], "/e", default_mode="up")


def test_empty_grid():
    g = ResultGrid([], "/e")
    assert len(g) == 0 and list(g) == [] and g.errors == []
    with pytest.raises(RuntimeError, match="'loss'"):
        g.get_best_result("loss", "min")


def test_from_path_missing_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="gone"):
        ResultGrid.from_path(tmp_path / "gone")


def test_repr(tmp_path):
    g = ResultGrid(
        [Result({"loss": 1.0}, None, None, "/e/a"),
         Result(None, None, TuneError("x"), "/e/b")],
        "/e",
    )
    text = repr(g)
    assert "experiment_path='/e'" in text and "num_results=2" in text and "num_errors=1" in text
    assert "'/e/a'" in text and "'/e/b'" in text and "TuneError('x')" in text


# -- get_dataframe -----------------------------------------------------------------------

def test_dataframe_last_results(tmp_path):
    pytest.importorskip("pandas")
    exp = tmp_path / "exp"
    write_trial(exp, "a", {"lr": 0.1, "opt": {"beta": 0.9}},
                [{"loss": 3.0, "val": {"acc": 0.5}}, {"loss": 1.0, "val": {"acc": 0.7}}])
    write_trial(exp, "b", {"lr": 0.2, "opt": {"beta": 0.8}},
                [{"loss": 0.5, "val": {"acc": 0.9}}, {"loss": 2.0, "val": {"acc": 0.6}}])
    df = ResultGrid.from_path(exp).get_dataframe()
    assert len(df) == 2
    assert {"loss", "val/acc", "training_iteration", "config/lr", "config/opt/beta",
            "logdir", "path"} <= set(df.columns)
    assert "config" not in df.columns
    assert list(df["loss"]) == [1.0, 2.0]
    assert list(df["val/acc"]) == [0.7, 0.6]
    assert list(df["config/lr"]) == [0.1, 0.2]
    assert list(df["config/opt/beta"]) == [0.9, 0.8]
    assert list(df["logdir"]) == [str(exp / "a"), str(exp / "b")]
    assert list(df["path"]) == list(df["logdir"])


def test_dataframe_filtered_best_row_per_trial(tmp_path):
    pytest.importorskip("pandas")
    exp = tmp_path / "exp"
    write_trial(exp, "a", {"lr": 0.1}, losses([3.0, 1.0, 2.0]))
    write_trial(exp, "b", {"lr": 0.2}, losses([0.5, NAN, 4.0]))
    write_trial(exp, "c", {"lr": 0.3}, [{"acc": 1.0}])  # never reported loss
    grid = ResultGrid.from_path(exp)
    df_min = grid.get_dataframe(filter_metric="loss", filter_mode="min")
    # c never reported loss: its last result, as Ray Tune gives it (NaN in the loss column).
    assert list(df_min["loss"])[:2] == [1.0, 0.5] and math.isnan(df_min["loss"].iloc[2])
    assert list(df_min["training_iteration"]) == [2, 1, 1]
    assert list(df_min["config/lr"]) == [0.1, 0.2, 0.3]
    assert df_min["acc"].iloc[2] == 1.0
    df_max = grid.get_dataframe(filter_metric="loss", filter_mode="max")
    assert list(df_max["loss"])[:2] == [3.0, 4.0]
    assert list(df_max["training_iteration"]) == [1, 3, 1]


def test_dataframe_config_fallback_and_failed_trial():
    pytest.importorskip("pandas")
    g = ResultGrid(
        [Result({"loss": 1.0}, None, None, "/e/a", _config={"lr": 0.3}),
         Result(None, None, TuneError("x"), "/e/b", _config={"lr": 0.4})],
        "/e",
    )
    df = g.get_dataframe()
    assert list(df["config/lr"]) == [0.3, 0.4]
    assert df["loss"].iloc[0] == 1.0 and math.isnan(df["loss"].iloc[1])
    assert list(df["path"]) == ["/e/a", "/e/b"]


def test_dataframe_filter_args_together(grid):
    with pytest.raises(ValueError, match="filter_metric and filter_mode together"):
        grid.get_dataframe(filter_metric="loss")
    with pytest.raises(ValueError, match="filter_metric and filter_mode together"):
        grid.get_dataframe(filter_mode="min")
    with pytest.raises(ValueError, match="filter_mode='low'"):
        grid.get_dataframe(filter_metric="loss", filter_mode="low")


def test_dataframe_without_pandas(grid, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r'get_dataframe needs pandas: pip install "fasttune\[pandas\]"'):
        grid.get_dataframe()


def test_filesystem_is_the_one_the_experiment_is_on(tmp_path, monkeypatch):
    fs = pytest.importorskip("pyarrow.fs", reason="storage needs pyarrow (the test extra)")
    monkeypatch.setenv("FASTTUNE_STORAGE_CACHE", str(tmp_path / "cache"))
    exp = tmp_path / "exp"
    write_trial(exp, "a", {"name": "a"}, losses([1.0]))
    assert isinstance(ResultGrid.from_path(exp).filesystem, fs.LocalFileSystem)
    filesystem = fs.SubTreeFileSystem(str(tmp_path), fs.LocalFileSystem())
    grid = ResultGrid.from_path("exp", storage_filesystem=filesystem)
    assert grid.filesystem is filesystem and grid.experiment_path == "exp" and len(grid) == 1


def test_a_list_of_results_needs_the_experiment_path():
    with pytest.raises(TypeError, match="needs the experiment's path"):
        ResultGrid([Result({"loss": 1.0}, None, None, "/e/a")])
