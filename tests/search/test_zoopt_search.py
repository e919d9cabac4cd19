"""ZOOptSearch: the same suggestions as zoopt itself, space conversion, points_to_evaluate,
seeding, the budget, failed trials, checkpoints, and a sweep on Ray."""
import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import zoopt  # the test extra installs it: a missing one fails, never skips
from zoopt import Solution, ValueType
from zoopt.algos.opt_algorithms.racos.sracos import SRacosTune

import fasttune as tune  # noqa: E402
from fasttune.search import (Searcher, choice, create_searcher, grid_search, lograndint, loguniform,  # noqa: E402
                             qrandint, quniform, randint, randn, sample_from, uniform)
from fasttune.search.zoopt import ZOOptSearch  # noqa: E402
from fasttune.search.zoopt.zoopt_search import ZOOptSearch as ZOOptSearchAtRayPath  # noqa: E402
from fasttune_testing import fit  # noqa: E402
from searcher_testing import quadratic, run_suggestions  # noqa: E402

SPACE = {"x": uniform(-5, 5), "y": uniform(-5, 5)}
DIMS = [(ValueType.CONTINUOUS, [-5, 5], 1e-12), (ValueType.CONTINUOUS, [-5, 5], 1e-12)]


def loss(config):
    return (config["x"] - 1.0) ** 2 + (config["y"] + 2.0) ** 2


def reference_sequence(n, seed, budget, dims=DIMS, points=(), objective=lambda x: loss({"x": x[0], "y": x[1]})):
    """What zoopt's SRacosTune itself suggests when driven by hand the way Ray Tune drives it:
    its whole initial sample out at once, then one result before each suggestion.  Seeded
    through numpy's global generator (zoopt's only source), which is put back afterwards."""
    callers_state = np.random.get_state()
    np.random.seed(seed)
    try:
        init = [Solution(x=list(p)) for p in points] or None
        optimizer = SRacosTune(dimension=zoopt.Dimension2(dims), parameter=zoopt.Parameter(budget=budget, init_samples=init),
                               parallel_num=1)
        initial = [optimizer.suggest() for _ in range(optimizer.get_parameters().get_train_size())]
        assert optimizer.suggest() is None  # zoopt waits for its initial sample's results
        for solution in initial:
            optimizer.complete(solution, objective(solution.get_x()))
        xs = [solution.get_x() for solution in initial]
        while len(xs) < n:
            solution = optimizer.suggest()
            xs.append(solution.get_x())
            optimizer.complete(solution, objective(solution.get_x()))
        return [[v.item() if isinstance(v, np.generic) else v for v in x] for x in xs[:n]]
    finally:
        np.random.set_state(callers_state)


def as_xy(configs):
    return [[c["x"], c["y"]] for c in configs]


# ---- the library's own sequence -----------------------------------------------------------------
def test_suggestions_are_zoopts_own_for_the_same_seed_and_observations():
    search = ZOOptSearch(budget=20, dim_dict=SPACE, metric="loss", mode="min", seed=3)
    got = run_suggestions(search, 15, loss)  # one trial at a time, past the initial sample of 4
    assert as_xy(got) == reference_sequence(15, seed=3, budget=20)
    assert len(set(map(json.dumps, got))) == 15


def test_mode_max_gives_zoopt_the_negated_metric():
    search = ZOOptSearch(budget=20, dim_dict=SPACE, metric="loss", mode="max", seed=3)
    got = run_suggestions(search, 8, lambda c: -loss(c))  # a score to maximise
    assert as_xy(got) == reference_sequence(8, seed=3, budget=20)
    assert search.optimizer.get_best_solution().get_value() == min(loss(c) for c in got)


def test_seed_leaves_numpys_global_generator_alone_and_none_uses_it():
    np.random.seed(123)
    expected_draw = np.random.RandomState(123).random_sample()
    seeded = ZOOptSearch(budget=20, dim_dict=SPACE, metric="loss", mode="min", seed=3)
    run_suggestions(seeded, 6, loss)
    assert np.random.random_sample() == expected_draw  # the caller's generator did not move
    np.random.seed(3)  # seed=None draws from numpy's global generator, as in Ray Tune
    unseeded = ZOOptSearch(budget=20, dim_dict=SPACE, metric="loss", mode="min")
    assert as_xy(run_suggestions(unseeded, 6, loss)) == reference_sequence(6, seed=3, budget=20)


def test_two_searchers_at_once_keep_their_own_roundings_and_draws():
    coarse = {"x": (ValueType.CONTINUOUS, [-5, 5], 1e-1), "y": (ValueType.CONTINUOUS, [-5, 5], 1e-1)}
    alone_fine = run_suggestions(ZOOptSearch(budget=20, dim_dict=SPACE, metric="loss", mode="min", seed=1), 8, loss)
    alone_coarse = run_suggestions(ZOOptSearch(budget=20, dim_dict=coarse, metric="loss", mode="min", seed=2), 8, loss)
    fine = ZOOptSearch(budget=20, dim_dict=SPACE, metric="loss", mode="min", seed=1)
    rough = ZOOptSearch(budget=20, dim_dict=coarse, metric="loss", mode="min", seed=2)  # zoopt's roundings are global
    interleaved_fine, interleaved_coarse = [], []
    for i in range(8):
        for search, out in ((fine, interleaved_fine), (rough, interleaved_coarse)):
            out.append(search.suggest(f"t{i}"))
            search.on_trial_complete(f"t{i}", {"loss": loss(out[-1])})
    assert interleaved_fine == alone_fine and interleaved_coarse == alone_coarse
    assert all(round(c["x"], 1) == c["x"] for c in alone_coarse)


# ---- spaces -------------------------------------------------------------------------------------
def test_fasttune_spaces_convert_to_zoopts_dimensions():
    space = {"opt": {"lr": uniform(0, 1)}, "n": randint(1, 5), "act": choice(["relu", "tanh"]),
             "q": quniform(0, 1, 0.25), "k": qrandint(2, 10, 4), "epochs": 3}
    assert ZOOptSearch.convert_search_space(space) == {
        "opt/lr": (ValueType.CONTINUOUS, [0, 1], 1e-12), "n": (ValueType.DISCRETE, [1, 4], True),
        "act": (ValueType.GRID, ["relu", "tanh"]), "q": (ValueType.DISCRETE, [0, 4], True),
        "k": (ValueType.DISCRETE, [1, 2], True)}
    assert ZOOptSearch.convert_search_space(space, join=True)["epochs"] == 3
    search = ZOOptSearch(budget=30, dim_dict={k: v for k, v in space.items() if k != "epochs"}, metric="loss",
                         mode="min", seed=0)
    assert [d.entry for d in search._dimensions.values()][-2:] == [(ValueType.DISCRETE, [0, 4], True),
                                                                   (ValueType.DISCRETE, [1, 2], True)]
    configs = run_suggestions(search, 10, lambda c: (c["opt"]["lr"] - 0.3) ** 2 + c["n"])
    assert all(sorted(c) == ["act", "k", "n", "opt", "q"] and 0 <= c["opt"]["lr"] <= 1 for c in configs)
    assert {c["q"] for c in configs} <= {0.0, 0.25, 0.5, 0.75, 1.0} and {c["k"] for c in configs} <= {4, 8}
    assert {c["n"] for c in configs} <= {1, 2, 3, 4} and {c["act"] for c in configs} <= {"relu", "tanh"}
    assert all(type(c["n"]) is int and type(c["k"]) is int and type(c["opt"]["lr"]) is float for c in configs)


def test_choice_of_any_values_and_native_entries_give_zoopts_own_sequence():
    objects = [None, {"depth": 2}, "wide"]
    search = ZOOptSearch(budget=20, dim_dict={"x": uniform(-5, 5), "net": {"kind": choice(objects)}},
                         metric="loss", mode="min", seed=4)
    got = run_suggestions(search, 9, lambda c: c["x"] ** 2)
    dims = [DIMS[0], (ValueType.GRID, [0, 1, 2])]  # a choice is a grid of its positions
    expected = reference_sequence(9, seed=4, budget=20, dims=dims, objective=lambda x: x[0] ** 2)
    assert [[c["x"], objects.index(c["net"]["kind"])] for c in got] == expected
    native = ZOOptSearch(budget=20, dim_dict={"x": DIMS[0], "net/kind": (ValueType.GRID, [0, 1, 2])},
                         metric="loss", mode="min", seed=4)
    assert [[c["x"], c["net"]["kind"]] for c in run_suggestions(native, 9, lambda c: c["x"] ** 2)] == expected


def test_the_tuners_space_metric_and_mode():
    from_tuner = ZOOptSearch(budget=20, seed=3)
    assert from_tuner.set_search_properties("loss", "min", {"x": uniform(-5, 5), "y": uniform(-5, 5), "tag": "a"})
    assert as_xy(run_suggestions(from_tuner, 6, loss)) == reference_sequence(6, seed=3, budget=20)
    assert not from_tuner.set_search_properties("other", "max", {"z": uniform(0, 1)})
    assert (from_tuner.metric, from_tuner.mode) == ("loss", "min")
    assert ZOOptSearch(budget=20, dim_dict=SPACE, mode="max").metric == "_metric"
    own_space = ZOOptSearch(budget=20, dim_dict=SPACE)  # a space of its own: metric and mode from the Tuner
    assert not own_space.set_search_properties("loss", "min", {})
    assert (own_space.metric, own_space.mode) == ("loss", "min")


# ---- points_to_evaluate -------------------------------------------------------------------------
def test_points_to_evaluate_come_first_in_zoopts_initial_sample(caplog):
    points = [{"x": 1.0, "y": -2.0}, {"x": 0.0, "y": 0.0}]
    search = ZOOptSearch(budget=20, dim_dict=SPACE, metric="loss", mode="min", seed=5, points_to_evaluate=points)
    got = run_suggestions(search, 8, loss)
    assert got[:2] == points
    assert as_xy(got) == reference_sequence(8, seed=5, budget=20, points=[[1.0, -2.0], [0.0, 0.0]])
    nested = ZOOptSearch(budget=20, dim_dict={"net": {"act": choice(["relu", "tanh"])}, "n": qrandint(0, 8, 2)},
                         metric="loss", mode="min", points_to_evaluate=[{"net": {"act": "tanh"}, "n": 6}])
    assert nested.suggest("a") == {"net": {"act": "tanh"}, "n": 6}
    with caplog.at_level(logging.WARNING, logger="fasttune.search.zoopt.zoopt_search"):
        ZOOptSearch(budget=20, dim_dict=SPACE, metric="loss", mode="min",
                    points_to_evaluate=[{"x": float(i), "y": 0.0} for i in range(5)])
    assert "at most 4 points_to_evaluate" in caplog.text and "the last 1 are left out" in caplog.text


# ---- the end of the search, failed trials -------------------------------------------------------
def test_the_budget_and_a_fully_explored_space_finish_the_search():
    search = ZOOptSearch(budget=6, dim_dict=SPACE, metric="loss", mode="min", seed=0)
    got = run_suggestions(search, 6, loss)
    assert all(isinstance(c, dict) for c in got)
    assert search.suggest("t6") is Searcher.FINISHED and search.suggest("t7") is Searcher.FINISHED
    tiny = ZOOptSearch(budget=20, dim_dict={"n": randint(1, 3), "c": choice([1, 2])}, metric="loss", mode="min",
                       seed=0)
    configs = run_suggestions(tiny, 4, lambda c: c["n"])
    assert sorted((c["n"], c["c"]) for c in configs) == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert tiny.suggest("t4") is Searcher.FINISHED and tiny.suggest("t5") is Searcher.FINISHED


def test_initial_phase_waits_and_failed_trials_count_as_the_worst_value():
    search = ZOOptSearch(budget=20, dim_dict=SPACE, metric="loss", mode="min", seed=2)
    initial = [search.suggest(f"t{i}") for i in range(4)]
    assert search.suggest("w") is None and search.suggest("w") is None  # its initial sample is out
    search.on_trial_complete("t0", None, error=True)
    search.on_trial_complete("t1", {"loss": float("nan")})
    search.on_trial_complete("t2", {"loss": loss(initial[2])})
    assert search.suggest("w") is None
    search.on_trial_complete("t3", {"loss": loss(initial[3])})
    assert isinstance(search.suggest("t4"), dict)  # every initial config is in: sampling goes on
    assert search.optimizer.complete_num == 4
    assert search.optimizer.get_best_solution().get_value() == min(loss(initial[2]), loss(initial[3]))
    assert float("inf") in [s.get_value() for s in search.optimizer._negative_data]


# ---- bad input ----------------------------------------------------------------------------------
@pytest.mark.parametrize("space, key", [
    ({"x": uniform(0, 1), "lr": loguniform(1e-4, 1e-1)}, "lr"),
    ({"x": uniform(0, 1), "n": lograndint(1, 100)}, "n"),
    ({"net": {"w": randn(0, 1)}}, "net/w"),
    ({"g": grid_search([0.1, 0.2])}, "g"),
    ({"f": sample_from(lambda spec: 1)}, "f"),
])
def test_unsupported_domains_are_a_value_error_naming_the_key(space, key):
    with pytest.raises(ValueError, match=f"'{key}'"):
        ZOOptSearch(budget=10, dim_dict=space, metric="loss", mode="min")
    with pytest.raises(ValueError, match=f"'{key}'"):
        ZOOptSearch(budget=10).set_search_properties("loss", "min", space)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="needs a budget"):
        ZOOptSearch(dim_dict=SPACE)
    with pytest.raises(ValueError, match="budget must be >= 3"):  # zoopt itself would exit the interpreter
        ZOOptSearch(budget=2, dim_dict=SPACE)
    with pytest.raises(ValueError, match="algo"):
        ZOOptSearch(algo="cmaes", budget=10)
    with pytest.raises(ValueError, match="mode"):
        ZOOptSearch(budget=10, mode="lowest")
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['learning_rate'\]"):
        ZOOptSearch(budget=10, learning_rate=0.1)
    with pytest.raises(TypeError, match="seed"):
        ZOOptSearch(budget=10, seed="zero")
    with pytest.raises(ValueError, match="'w'.*ValueType.CONTINUOUS"):
        ZOOptSearch(budget=10, dim_dict={"w": (ValueType.CONTINUOUS, [3, 1], 1e-2)})
    with pytest.raises(ValueError, match="'epochs'"):  # constants belong in the param_space
        ZOOptSearch(budget=10, dim_dict={"x": uniform(0, 1), "epochs": 3})
    with pytest.raises(ValueError, match=r"points_to_evaluate\[0\].*\['x', 'y'\]"):
        ZOOptSearch(budget=10, dim_dict=SPACE, metric="loss", mode="min", points_to_evaluate=[{"x": 1.0}])
    with pytest.raises(ValueError, match="'c'.*choices"):
        ZOOptSearch(budget=10, dim_dict={"c": choice([1, 2])}, points_to_evaluate=[{"c": 3}])
    with pytest.raises(RuntimeError, match="no search space"):
        ZOOptSearch(budget=10, metric="loss", mode="min").suggest("t")
    with pytest.raises(RuntimeError, match="metric and a mode"):
        ZOOptSearch(budget=10, dim_dict=SPACE).suggest("t")
    search = ZOOptSearch(budget=10, dim_dict=SPACE, metric="loss", mode="min")
    search.suggest("t")
    with pytest.raises(RuntimeError, match="'loss'.*\\['acc'\\]"):
        search.on_trial_complete("t", {"acc": 1.0})


def test_missing_zoopt_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "zoopt", None)
    with pytest.raises(ImportError, match=r'pip install "fasttune\[zoopt\]" \(or pip install zoopt\)'):
        ZOOptSearch(budget=10, dim_dict=SPACE)


def test_import_fasttune_loads_neither_zoopt_nor_this_searcher():
    code = "import sys, json, fasttune; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env=dict(os.environ))
    loaded = set(json.loads(done.stdout))
    assert "zoopt" not in loaded and "fasttune.search.zoopt" not in loaded
    assert ZOOptSearchAtRayPath is ZOOptSearch
    assert type(create_searcher("zoopt", budget=10)) is ZOOptSearch


# ---- checkpoints ------------------------------------------------------------------------------
def test_save_restore_mid_sweep_continues_the_same_sequence(tmp_path):
    search = ZOOptSearch(budget=30, dim_dict=SPACE, metric="loss", mode="min", seed=7,
                         points_to_evaluate=[{"x": 0.0, "y": 0.0}, {"x": 2.0, "y": 2.0}])
    run_suggestions(search, 3, loss)  # inside the initial sample
    search.suggest("live")  # and a live trial

    def finish(s):
        s.on_trial_complete("live", {"loss": 0.5})
        return run_suggestions(s, 10, loss)

    path = str(tmp_path / "searcher.pkl")
    search.save(path)
    restored = ZOOptSearch(budget=3)
    restored.restore(path)
    assert (restored.metric, restored.mode) == ("loss", "min")
    from_dir = ZOOptSearch(budget=3)
    search.save_to_dir(str(tmp_path))
    from_dir.restore_from_dir(str(tmp_path))
    expected = finish(search)
    assert finish(restored) == expected
    assert finish(from_dir) == expected


# ---- end to end on Ray ---------------------------------------------------------------------------
def test_zoopt_sweeps_on_ray_as_zoopt_suggests(ray_session, storage):
    # One trial at a time: each suggestion sees every earlier result, so the seeded run is
    # the same every time.
    searcher = create_searcher("zoopt", budget=12, seed=0)
    grid = fit(quadratic, storage, {"x": uniform(-5, 5), "y": uniform(-5, 5), "tag": "q"},
               tune_config=tune.TuneConfig(search_alg=searcher, metric="loss", mode="min", num_samples=20,
                                           max_concurrent_trials=1))
    assert len(grid) == 12 and not grid.errors  # the budget ends the sweep before num_samples
    assert all(r.config["tag"] == "q" for r in grid)
    configs = [[r.config["x"], r.config["y"]] for r in grid]
    assert sorted(configs) == sorted(reference_sequence(12, seed=0, budget=12))
    best = grid.get_best_result()
    assert best.metrics["loss"] == min(loss({"x": x, "y": y}) for x, y in configs)


def test_the_quality_suite_runs_zoopt_reproducibly(ray_session):
    from bench.quality import SEARCHERS, run_one

    assert "zoopt" in SEARCHERS
    first = run_one("zoopt", "branin", seed=3, budget=14)
    assert first == run_one("zoopt", "branin", seed=3, budget=14)  # exact floats
    assert len(first) == 14
    assert run_one("zoopt", "branin", seed=4, budget=14) != first
