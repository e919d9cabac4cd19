"""fasttune.simulation's blackboxes: the reference table against the issue's formula, table
lookups (exact and nearest), file round trips, the table checks, and FunctionBlackbox."""
from __future__ import annotations

import math
import pickle

import numpy as np
import pandas as pd
import pytest

from fasttune.search.variant_generator import generate_variants
from fasttune.simulation import (
    Blackbox,
    FunctionBlackbox,
    TabularBlackbox,
    branin_blackbox,
    learning_curve_table,
    reference_asha_table,
    reference_trial_order,
)

POINTS = [(0, 1), (0, 27), (17, 3), (999, 14), (1234, 1), (1999, 27), (1999, 26)]


def issue_formula(n_configs, seed):
    """Issue 19's reference workload, written out again from the issue's text."""
    rng = np.random.default_rng(seed)
    lr = 10 ** rng.uniform(-4, -1, n_configs)
    width = rng.integers(16, 513, n_configs)
    dropout = rng.uniform(0, 0.5, n_configs)
    noise = rng.normal(0, 1, (n_configs, 27))
    x = np.log10(lr) + 2.5
    wn = (np.log2(width) - 4) / 5
    a = 0.05 + 0.1 * x**2 + 0.4 * (dropout - 0.15) ** 2 + 0.1 * (1 - wn) ** 2
    b = 0.5 + 0.5 * wn + 0.2 * dropout
    c = 0.2 + 0.6 / (1 + np.exp(-2 * (np.log10(lr) + 3)))
    e = np.arange(1, 28)
    loss = a[:, None] + b[:, None] * e[None, :] ** (-c[:, None]) + 0.005 * noise
    return lr, width, dropout, loss, 1 + 9 * wn


@pytest.fixture(scope="module")
def reference():
    return reference_asha_table()


def small_frame():
    """Two configurations x three epochs, shuffled rows."""
    return pd.DataFrame(
        {
            "lr": [0.1, 0.01, 0.1, 0.01, 0.1, 0.01],
            "opt": ["sgd", "adam", "sgd", "adam", "sgd", "adam"],
            "epoch": [1, 3, 2, 1, 3, 2],
            "loss": [0.9, 0.3, 0.7, 0.8, 0.6, 0.5],
            "acc": [0.1, 0.7, 0.3, 0.2, 0.4, 0.5],
            "time": [2.0, 7.5, 4.0, 2.5, 6.0, 5.0],
        }
    )


def small_blackbox(frame=None, **kwargs):
    return TabularBlackbox(
        small_frame() if frame is None else frame,
        config_columns=["lr", "opt"],
        fidelity_column="epoch",
        metric_columns=["loss", "acc"],
        elapsed_column="time",
        **kwargs,
    )


# The reference table


def test_reference_table_is_the_issue_formula(reference):
    lr, width, dropout, loss, epoch_seconds = issue_formula(2000, 0)
    assert (reference.n_configs, reference.max_fidelity, reference.fidelity_name) == (2000, 27, "epoch")
    assert reference.metric_names == ["loss"] and reference.fidelities.tolist() == list(range(1, 28))
    for row, epoch in POINTS:
        config = reference.config_of_row(row)
        assert config == {"row": row, "lr": lr[row], "width": width[row], "dropout": dropout[row]}
        assert reference.evaluate(config, epoch) == ({"loss": loss[row, epoch - 1]}, epoch_seconds[row])
        metrics, step_seconds = reference.curve(config)
        assert metrics["loss"].tolist() == loss[row].tolist()
        assert step_seconds.tolist() == [epoch_seconds[row]] * 27


def test_reference_table_matches_the_formula_in_plain_python(reference):
    # The same draws, the formula in Python floats: numpy's vectorised pow/exp may differ
    # from the C library's in the last bit, hence the tolerance.
    rng = np.random.default_rng(0)
    draws = [rng.uniform(-4, -1, 2000), rng.integers(16, 513, 2000), rng.uniform(0, 0.5, 2000), rng.normal(0, 1, (2000, 27))]
    for row, epoch in POINTS:
        lr, width, dropout = 10 ** float(draws[0][row]), int(draws[1][row]), float(draws[2][row])
        x, wn = math.log10(lr) + 2.5, (math.log2(width) - 4) / 5
        a = 0.05 + 0.1 * x**2 + 0.4 * (dropout - 0.15) ** 2 + 0.1 * (1 - wn) ** 2
        b = 0.5 + 0.5 * wn + 0.2 * dropout
        c = 0.2 + 0.6 / (1 + math.exp(-2 * (math.log10(lr) + 3)))
        loss = a + b * epoch ** (-c) + 0.005 * float(draws[3][row, epoch - 1])
        config = reference.config_of_row(row)
        assert (config["lr"], config["width"], config["dropout"]) == (pytest.approx(lr, rel=1e-14), width, dropout)
        metrics, seconds = reference.evaluate(config, epoch)
        assert metrics["loss"] == pytest.approx(loss, rel=1e-12) and seconds == pytest.approx(1 + 9 * wn, rel=1e-14)


def test_reference_elapsed_time_is_the_running_sum_of_the_epochs(reference):
    epoch_seconds = issue_formula(2000, 0)[4]
    np.testing.assert_array_equal(reference.elapsed[5], np.cumsum(np.full(27, epoch_seconds[5])))


def test_larger_tables_use_the_same_formula_and_other_seeds_differ():
    lr, width, dropout, loss, _ = issue_formula(10_000, 3)
    table = learning_curve_table(10_000, seed=3)
    assert table.n_configs == 10_000
    for row in (0, 4321, 9999):
        assert table.evaluate(table.config_of_row(row), 7)[0]["loss"] == loss[row, 6]
    assert table.config_of_row(0)["lr"] != reference_asha_table().config_of_row(0)["lr"]


def test_trial_order_is_the_seeded_permutation(reference):
    order = reference_trial_order(reference, n_trials=1000, seed=5)
    rows = np.random.default_rng(5).permutation(2000)[:1000].tolist()
    assert [config["row"] for config in order] == rows
    assert order[3] == reference.config_of_row(rows[3])
    with pytest.raises(ValueError, match="n_trials must be between 0 and the table's 2000"):
        reference_trial_order(reference, n_trials=2001)


def test_exact_space_samples_rows_of_the_table(reference):
    for _, config in generate_variants(reference.search_space, random_state=np.random.RandomState(7)):
        assert config == reference.config_of_row(config["row"])
    pickle.loads(pickle.dumps(reference.search_space))


# Lookups


def test_exact_lookup_reads_the_row_whatever_the_row_order_of_the_frame():
    blackbox = small_blackbox()
    assert blackbox.config_columns == ["lr", "opt"] and blackbox.n_configs == 2
    assert blackbox.config_of_row(1) == {"row": 1, "lr": 0.01, "opt": "adam"}
    assert blackbox.evaluate({"lr": 0.01, "opt": "adam"}, 1) == ({"loss": 0.8, "acc": 0.2}, 2.5)
    assert blackbox.evaluate({"lr": 0.01, "opt": "adam"}, 2) == ({"loss": 0.5, "acc": 0.5}, 2.5)
    assert blackbox.evaluate({"lr": 0.1, "opt": "sgd", "row": 0}, 3) == ({"loss": 0.6, "acc": 0.4}, 2.0)
    metrics, step_seconds = blackbox.curve({"lr": 0.01, "opt": "adam"})
    assert metrics["loss"].tolist() == [0.8, 0.5, 0.3] and step_seconds.tolist() == [2.5, 2.5, 2.5]
    one_column = TabularBlackbox(small_frame().query("opt == 'sgd'"), config_columns=["lr"], fidelity_column="epoch",
                                 metric_columns=["loss"], elapsed_column="time")
    assert pickle.loads(pickle.dumps(one_column)).evaluate({"lr": 0.1}, 2) == ({"loss": 0.7}, 2.0)


def test_exact_lookup_goes_by_the_values_whatever_the_row_key_says():
    # The row key is a shortcut only: a config whose values are another row's, or none, is that row.
    blackbox = small_blackbox()
    for row in range(blackbox.n_configs):
        config = blackbox.config_of_row(row)
        assert blackbox.row(config) == row
        assert [(key, type(value)) for key, value in config.items()] == [("row", int), ("lr", float), ("opt", str)]
        for wrong in (1 - row, -1, 2, True, str(row), None, float(row)):
            assert blackbox.row({**config, "row": wrong}) == row
    with pytest.raises(ValueError, match="is not a configuration of the table"):
        blackbox.row({"row": 0, "lr": 0.1, "opt": "adam"})
    old = pickle.loads(pickle.dumps(blackbox))
    del old.__dict__["_key_of_row"]  # (as a blackbox pickled before it had one)
    assert [old.row(blackbox.config_of_row(row)) for row in range(2)] == [0, 1]
    assert [old.config_of_row(row) for row in range(2)] == [blackbox.config_of_row(row) for row in range(2)]


def test_exact_lookup_of_an_unknown_config_names_it():
    with pytest.raises(ValueError, match=r"config \{'lr': 0.1, 'opt': 'adam'\} is not a configuration of the table"):
        small_blackbox().evaluate({"lr": 0.1, "opt": "adam"}, 1)
    with pytest.raises(ValueError, match="has no value for the configuration column 'opt'"):
        small_blackbox().curve({"lr": 0.1})
    with pytest.raises(ValueError, match="epoch=4 is not one of this blackbox's fidelities"):
        small_blackbox().evaluate({"lr": 0.1, "opt": "sgd"}, 4)


def nearest_table(**kwargs):
    """Four configurations; lr spans three decades, width does not."""
    return TabularBlackbox.from_arrays(
        {"lr": [1e-4, 1e-3, 1e-2, 1e-1], "width": [16, 32, 64, 112], "opt": ["sgd", "sgd", "adam", "sgd"]},
        [1, 2],
        {"loss": [[4.0, 3.0], [2.0, 1.0], [5.0, 0.5], [6.0, 5.5]]},
        step_seconds=[[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [4.0, 4.0]],
        match="nearest",
        **kwargs,
    )


def test_nearest_space_has_a_domain_per_column():
    blackbox = nearest_table()
    assert blackbox._nearest.log_columns == ["lr"]
    space = blackbox.search_space
    assert sorted(space) == ["lr", "opt", "width"]
    assert (space["lr"].lower, space["lr"].upper, type(space["lr"].get_sampler()).__name__) == (1e-4, 1e-1, "LogUniform")
    assert (space["width"].lower, space["width"].upper) == (16, 113)
    assert space["opt"].categories == ["sgd", "adam"]


def test_nearest_lookup_uses_the_stated_distance():
    blackbox = nearest_table()
    # Table coordinates: lr on a log scale -> (0, 1/3, 2/3, 1); width linear -> (0, 1/6, 1/2, 1).
    assert blackbox.row({"lr": 1e-3, "width": 32, "opt": "sgd"}) == 1  # a table configuration
    # log10(lr)=-2.4 -> 0.5333: sgd rows 1 (d^2 = 0.04 + 0) and 3; adam row 2 is nearer in lr but differs in opt (+1).
    assert blackbox.row({"lr": 10**-2.4, "width": 32, "opt": "sgd"}) == 1
    assert blackbox.row({"lr": 10**-2.4, "width": 32, "opt": "adam"}) == 2
    # Exactly between rows 0 and 1 in lr, same width distance: the earlier row wins the tie.
    assert blackbox.row({"lr": 10**-3.5, "width": 24, "opt": "sgd"}) == 0
    # Width decides: 100 is nearer 112 (distance 12/96) than 64 and lr is nearer row 3 anyway.
    assert blackbox.row({"lr": 0.05, "width": 100, "opt": "sgd"}) == 3
    assert blackbox.evaluate({"lr": 0.05, "width": 100, "opt": "sgd"}, 2) == ({"loss": 5.5}, 4.0)
    distances = blackbox._nearest.distances({"lr": 1e-2, "width": 64, "opt": "sgd"})
    np.testing.assert_allclose(distances, [math.sqrt((2 / 3) ** 2 + 0.25), math.sqrt((1 / 3) ** 2 + (1 / 3) ** 2), 1.0, math.sqrt(1 / 9 + 0.25)])


def test_nearest_log_scale_can_be_declared():
    linear = nearest_table(log_scale={"lr": False})
    assert linear._nearest.log_columns == []
    assert type(linear.search_space["lr"].get_sampler()).__name__ == "Uniform"
    # On a linear scale 1e-3 .. 1e-1 is mostly empty: 0.02 is nearest 0.01 (row 2) in lr.
    assert linear.row({"lr": 0.02, "width": 64, "opt": "adam"}) == 2
    assert nearest_table(log_scale={"width": True})._nearest.log_columns == ["lr", "width"]
    with pytest.raises(ValueError, match="log_scale names 'opt', a categorical column"):
        nearest_table(log_scale={"opt": True})
    with pytest.raises(ValueError, match=r"log_scale names \['depth'\], which are not configuration columns"):
        nearest_table(log_scale={"depth": True})


# Files


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_file_round_trip_gives_the_same_values(tmp_path, suffix):
    table = learning_curve_table(50, seed=1)
    frame = table.to_dataframe()
    assert list(frame.columns) == ["lr", "width", "dropout", "epoch", "loss", "elapsed_time"] and len(frame) == 50 * 27
    path = tmp_path / f"curves{suffix}"
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path)
    loaded = TabularBlackbox(
        str(path), config_columns=["lr", "width", "dropout"], fidelity_column="epoch", metric_columns=["loss"],
        elapsed_column="elapsed_time",
    )
    for name in ("lr", "width", "dropout"):
        np.testing.assert_array_equal(loaded.configs[name], table.configs[name])
    np.testing.assert_array_equal(loaded.metric_table["loss"], table.metric_table["loss"])
    np.testing.assert_array_equal(loaded.elapsed, table.elapsed)
    np.testing.assert_array_equal(loaded.step_seconds, np.diff(table.elapsed, axis=1, prepend=0.0))
    config = table.config_of_row(7)
    assert loaded.evaluate(config, 5)[0] == table.evaluate(config, 5)[0]


def test_file_errors(tmp_path):
    kwargs = dict(config_columns=["lr"], fidelity_column="epoch", metric_columns=["loss"], elapsed_column="time")
    with pytest.raises(FileNotFoundError, match="no table file at"):
        TabularBlackbox(str(tmp_path / "none.csv"), **kwargs)
    (tmp_path / "curves.txt").write_text("lr\n")
    with pytest.raises(ValueError, match=r"cannot tell the format of .*curves.txt: name it \*.csv, \*.parquet or \*.pq"):
        TabularBlackbox(str(tmp_path / "curves.txt"), **kwargs)
    with pytest.raises(TypeError, match="table must be a pandas DataFrame or the path"):
        TabularBlackbox([1, 2], **kwargs)


# Table checks


def test_missing_column_is_named():
    with pytest.raises(ValueError, match=r"the table has no column 'wd', 'acc'; it has \['lr', 'opt'"):
        TabularBlackbox(small_frame().drop(columns="acc"), config_columns=["lr", "opt", "wd"], fidelity_column="epoch",
                        metric_columns=["acc"], elapsed_column="time")


def test_duplicate_row_is_named():
    frame = pd.concat([small_frame(), small_frame().iloc[[3]]])
    with pytest.raises(ValueError, match=r"configuration \{'lr': 0.01, 'opt': 'adam'\} has 2 rows at epoch=1"):
        small_blackbox(frame)


def test_missing_fidelity_is_named():
    frame = small_frame().drop(index=2)  # (lr 0.1, sgd) at epoch 2
    with pytest.raises(ValueError, match=r"configuration \{'lr': 0.1, 'opt': 'sgd'\} has no row at epoch=2"):
        small_blackbox(frame)


def test_elapsed_time_going_down_is_named():
    frame = small_frame()
    frame.loc[5, "time"] = 1.0  # (0.01, adam) at epoch 2, below its epoch 1
    with pytest.raises(ValueError, match=r"'time' goes down from the step before for configuration \{'lr': 0.01, 'opt': 'adam'\} at epoch=2"):
        small_blackbox(frame)
    frame = small_frame()
    frame.loc[0, "time"] = -1.0
    with pytest.raises(ValueError, match=r"'time' is negative for configuration \{'lr': 0.1, 'opt': 'sgd'\} at epoch=1"):
        small_blackbox(frame)
    frame = small_frame()
    frame.loc[0, "time"] = float("nan")
    with pytest.raises(ValueError, match=r"'time' is missing \(NaN\) for configuration \{'lr': 0.1, 'opt': 'sgd'\}"):
        small_blackbox(frame)


def test_other_table_errors():
    frame = small_frame()
    frame.loc[1, "opt"] = None
    with pytest.raises(ValueError, match=r"column 'opt' has a missing value \(row 1\)"):
        small_blackbox(frame)
    frame = small_frame()
    frame["loss"] = frame["loss"].astype(str) + "x"
    with pytest.raises(ValueError, match="column 'loss' must hold numbers"):
        small_blackbox(frame)
    with pytest.raises(ValueError, match="the table has no rows"):
        small_blackbox(small_frame().iloc[:0])
    with pytest.raises(ValueError, match="column 'loss' is given in two roles"):
        TabularBlackbox(small_frame(), config_columns=["lr"], fidelity_column="epoch", metric_columns=["loss"], elapsed_column="loss")
    with pytest.raises(ValueError, match="match must be one of"):
        small_blackbox(match="closest")
    with pytest.raises(ValueError, match="row_key 'lr' is also a configuration column"):
        small_blackbox(row_key="lr")
    with pytest.raises(ValueError, match="log_scale applies to match='nearest' only"):
        small_blackbox(log_scale={"lr": True})


def test_array_table_errors():
    with pytest.raises(ValueError, match=r"configuration \{'lr': 0.1\} is listed twice \(rows 0 and 2\)"):
        TabularBlackbox.from_arrays({"lr": [0.1, 0.2, 0.1]}, [1], {"loss": [[1.0], [2.0], [3.0]]}, elapsed=[[1.0], [1.0], [1.0]])
    with pytest.raises(ValueError, match=r"'loss' has shape \(2, 1\); expected \(2, 2\)"):
        TabularBlackbox.from_arrays({"lr": [0.1, 0.2]}, [1, 2], {"loss": [[1.0], [2.0]]}, elapsed=[[1.0, 2.0], [1.0, 2.0]])
    with pytest.raises(ValueError, match="give exactly one of elapsed"):
        TabularBlackbox.from_arrays({"lr": [0.1]}, [1], {"loss": [[1.0]]})
    with pytest.raises(ValueError, match=r"'step seconds' is negative for configuration \{'lr': 0.2\} at epoch=2"):
        TabularBlackbox.from_arrays({"lr": [0.1, 0.2]}, [1, 2], {"loss": [[1.0, 1.0], [2.0, 2.0]]},
                                    step_seconds=[[1.0, 1.0], [1.0, -1.0]], fidelity_name="epoch")
    with pytest.raises(ValueError, match="strictly increasing"):
        TabularBlackbox.from_arrays({"lr": [0.1]}, [2, 1], {"loss": [[1.0, 1.0]]}, elapsed=[[1.0, 2.0]])


# FunctionBlackbox and the base


def test_function_blackbox_evaluates_and_builds_curves():
    calls = []

    def fn(config, epoch):
        calls.append(epoch)
        return {"loss": config["x"] / epoch, "extra": 1.0}, 0.25 * epoch

    blackbox = FunctionBlackbox(fn, {"x": 1.0}, [1, 2, 4], ["loss"], fidelity_name="step")
    assert (blackbox.fidelity_name, blackbox.max_fidelity, blackbox.metric_names) == ("step", 4, ["loss"])
    assert blackbox.evaluate({"x": 2.0}, 4) == ({"loss": 0.5}, 1.0)
    metrics, step_seconds = blackbox.curve({"x": 2.0})
    assert metrics == {"loss": pytest.approx([2.0, 1.0, 0.5])} and step_seconds.tolist() == [0.25, 0.5, 1.0]
    assert calls == [4, 1, 2, 4]
    with pytest.raises(ValueError, match="step=3 is not one of this blackbox's fidelities"):
        blackbox.evaluate({"x": 2.0}, 3)


def test_function_blackbox_errors_name_the_config():
    space = {"x": 1.0}
    with pytest.raises(ValueError, match=r"returned no \['acc'\] for config \{'x': 1.0\} at epoch=1"):
        FunctionBlackbox(lambda c, e: ({"loss": 1.0}, 1.0), space, [1], ["loss", "acc"]).evaluate({"x": 1.0}, 1)
    with pytest.raises(ValueError, match=r"returned -1.0 seconds for config \{'x': 1.0\} at epoch=1"):
        FunctionBlackbox(lambda c, e: ({"loss": 1.0}, -1), space, [1], ["loss"]).evaluate({"x": 1.0}, 1)
    with pytest.raises(TypeError, match=r"must return \(metrics, seconds\); it returned 3.0"):
        FunctionBlackbox(lambda c, e: 3.0, space, [1], ["loss"]).evaluate({"x": 1.0}, 1)
    with pytest.raises(TypeError, match="fn must be callable"):
        FunctionBlackbox(None, space, [1], ["loss"])
    with pytest.raises(ValueError, match="fidelities must be strictly increasing"):
        FunctionBlackbox(lambda c, e: ({}, 0), space, [1, 1], ["loss"])
    with pytest.raises(ValueError, match="the fidelity 'epoch' cannot also be a metric"):
        FunctionBlackbox(lambda c, e: ({}, 0), space, [1], ["epoch"])


def test_a_blackbox_defines_evaluate_or_curve():
    with pytest.raises(TypeError, match="Empty must define evaluate"):
        type("Empty", (Blackbox,), {})


def test_branin_is_branin_at_the_last_epoch():
    blackbox = branin_blackbox(max_epochs=9)
    for x1, x2 in ((-math.pi, 12.275), (math.pi, 2.275), (9.42478, 2.475)):
        metrics, seconds = blackbox.evaluate({"x1": x1, "x2": x2}, 9)
        assert metrics["loss"] == pytest.approx(0.397887, abs=1e-6) and seconds == 1 + x2 / 15
    low_fidelity = blackbox.evaluate({"x1": math.pi, "x2": 2.275}, 1)[0]["loss"]
    assert low_fidelity != pytest.approx(0.397887, abs=1e-3)
    assert sorted(blackbox.search_space) == ["x1", "x2"]
    assert pickle.loads(pickle.dumps(blackbox)).evaluate({"x1": 0.0, "x2": 0.0}, 3) == blackbox.evaluate({"x1": 0.0, "x2": 0.0}, 3)
