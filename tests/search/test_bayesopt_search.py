"""BayesOptSearch: the same suggestions as bayes_opt itself, space conversion, points_to_evaluate,
the random phase, duplicates and patience, checkpoints, and a sweep on Ray."""
import json
import math
import os
import subprocess
import sys

import pytest
import bayes_opt  # the test extra installs it: a missing one fails, never skips

import fasttune as tune  # noqa: E402
from fasttune.search import Searcher, choice, grid_search, loguniform, qrandint, quniform, randint, randn, uniform  # noqa: E402
from fasttune.search.bayesopt import BayesOptSearch  # noqa: E402
from fasttune.search.bayesopt.bayesopt_search import BayesOptSearch as BayesOptSearchAtRayPath  # noqa: E402
from fasttune_testing import fit  # noqa: E402
from searcher_testing import quadratic, run_suggestions  # noqa: E402

SPACE = {"x": uniform(-5, 5), "y": uniform(-5, 5)}
UTILITY = {"kind": "ucb", "kappa": 2.576, "xi": 0.0}  # Ray Tune's default acquisition


def loss(config):
    return (config["x"] - 1.0) ** 2 + (config["y"] + 2.0) ** 2


def reference_sequence(n, random_state, random_steps, points=()):
    """What bayes_opt itself suggests when driven by hand the way Ray Tune's searcher drives it:
    the first ``random_steps`` suggestions before any observation, then one observation
    (the negated loss) before each suggestion."""
    optimizer = bayes_opt.BayesianOptimization(f=None, pbounds={"x": (-5, 5), "y": (-5, 5)},
                                               verbose=0, random_state=random_state)
    utility = bayes_opt.UtilityFunction(**UTILITY)
    points = list(points)
    configs, held = [], []
    for i in range(n):
        config = dict(points.pop(0)) if points else {k: float(v) for k, v in optimizer.suggest(utility).items()}
        configs.append(config)
        if i < random_steps:
            held.append(config)
            if len(held) == random_steps:
                for c in held:
                    optimizer.register(c, -loss(c))
        else:
            optimizer.register(config, -loss(config))
    return configs


# ---- the library's own sequence -----------------------------------------------------------------
def test_suggestions_are_bayes_opts_own_for_the_same_seed_and_observations():
    search = BayesOptSearch(SPACE, metric="loss", mode="min", random_state=3, random_search_steps=4)
    got = run_suggestions(search, 9, loss)
    assert got == reference_sequence(9, random_state=3, random_steps=4)
    assert len(search.optimizer.space) == 9
    assert search.optimizer.space.target.max() == max(-loss(c) for c in got)


def test_mode_max_registers_the_metric_itself():
    search = BayesOptSearch(SPACE, metric="score", mode="max", random_state=3, random_search_steps=2)
    for i in range(3):
        config = search.suggest(f"t{i}")
        search.on_trial_complete(f"t{i}", {"score": -loss(config)})
    assert sorted(search.optimizer.space.target) == sorted(-loss(c) for c in reference_sequence(3, 3, 2))


def test_points_to_evaluate_come_first_and_count_as_random_steps():
    points = [{"x": 1.0, "y": -2.0}, {"x": 0.0, "y": 0.0}]
    search = BayesOptSearch(SPACE, metric="loss", mode="min", random_state=5, random_search_steps=3,
                            points_to_evaluate=points)
    got = run_suggestions(search, 6, loss)
    assert got[:2] == points
    assert got == reference_sequence(6, random_state=5, random_steps=3, points=points)


def test_the_random_phase_waits_for_its_results():
    search = BayesOptSearch(SPACE, metric="loss", mode="min", random_state=0, random_search_steps=2)
    first, second = search.suggest("a"), search.suggest("b")
    assert search.suggest("c") is None and search.suggest("c") is None  # both random configs are out
    search.on_trial_complete("a", {"loss": loss(first)})
    assert len(search.optimizer.space) == 0  # held back until the whole random phase is in
    search.on_trial_complete("b", {"loss": loss(second)})
    assert len(search.optimizer.space) == 2
    assert [first, second] == reference_sequence(2, random_state=0, random_steps=2)


def test_nested_spaces_native_bounds_and_tuner_constants():
    nested = BayesOptSearch({"opt": {"lr": loguniform(1e-4, 1e-1)}, "m": quniform(0, 1, 0.5)},
                            metric="loss", mode="min", random_state=0)
    assert nested._space == {"opt/lr": (1e-4, 1e-1), "m": (0.0, 1.0)}
    config = nested.suggest("t")
    assert sorted(config) == ["m", "opt"] and 1e-4 <= config["opt"]["lr"] <= 1e-1
    native = BayesOptSearch({"opt/lr": (1e-4, 1e-1), "m": (0, 1)}, metric="loss", mode="min", random_state=0)
    assert native.suggest("t") == config  # the same bounds, the same seed: the same config
    from_tuner = BayesOptSearch(random_state=0)
    assert from_tuner.set_search_properties("loss", "min", {"opt": {"lr": loguniform(1e-4, 1e-1)},
                                                            "m": uniform(0, 1), "epochs": 3})
    assert from_tuner.suggest("t") == config  # constants stay out of the searched space
    assert not from_tuner.set_search_properties("other", "max", {"z": uniform(0, 1)})
    assert (from_tuner.metric, from_tuner.mode) == ("loss", "min")
    only_mode = BayesOptSearch(SPACE, mode="max")
    assert only_mode.metric == "_metric"
    own_space = BayesOptSearch(SPACE)  # a space of its own: metric and mode still come from the Tuner
    assert not own_space.set_search_properties("loss", "min", {})
    assert (own_space.metric, own_space.mode) == ("loss", "min")


# ---- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize("space, key", [
    ({"x": uniform(0, 1), "act": choice(["relu", "tanh"])}, "act"),
    ({"x": uniform(0, 1), "n": randint(1, 5)}, "n"),
    ({"net": {"n": qrandint(1, 9, 2)}}, "net/n"),
    ({"x": randn(0, 1)}, "x"),
    ({"g": grid_search([0.1, 0.2])}, "g"),
])
def test_unsupported_domains_are_a_value_error_naming_the_key(space, key):
    with pytest.raises(ValueError, match=f"'{key}'"):
        BayesOptSearch(space, metric="loss", mode="min")
    with pytest.raises(ValueError, match=f"'{key}'"):
        BayesOptSearch().set_search_properties("loss", "min", space)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="'w'.*low <= high"):
        BayesOptSearch({"w": (3, 1)}, metric="loss", mode="min")
    with pytest.raises(ValueError, match="'epochs'.*pair"):  # constants belong in the param_space
        BayesOptSearch({"x": uniform(0, 1), "epochs": 3}, metric="loss", mode="min")
    with pytest.raises(ValueError, match="patience"):
        BayesOptSearch(SPACE, patience=0)
    with pytest.raises(ValueError, match="mode"):
        BayesOptSearch(SPACE, mode="lowest")
    with pytest.raises(ValueError, match=r"points_to_evaluate\[0\].*\['x', 'y'\]"):
        BayesOptSearch(SPACE, metric="loss", mode="min", points_to_evaluate=[{"x": 1.0}])
    with pytest.raises(RuntimeError, match="no search space"):
        BayesOptSearch(metric="loss", mode="min").suggest("t")
    with pytest.raises(RuntimeError, match="metric and a mode"):
        BayesOptSearch(SPACE).suggest("t")
    search = BayesOptSearch(SPACE, metric="loss", mode="min", random_search_steps=0)
    search.suggest("t")
    with pytest.raises(RuntimeError, match="'loss'.*\\['acc'\\]"):
        search.on_trial_complete("t", {"acc": 1.0})


def test_missing_bayes_opt_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "bayes_opt", None)
    with pytest.raises(ImportError, match=r'pip install "fasttune\[bayesopt\]" \(or pip install bayesian-optimization\)'):
        BayesOptSearch(SPACE)


def test_import_fasttune_loads_neither_bayes_opt_nor_this_searcher():
    code = "import sys, json, fasttune; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env=dict(os.environ))
    loaded = set(json.loads(done.stdout))
    assert "bayes_opt" not in loaded and "fasttune.search.bayesopt" not in loaded
    assert BayesOptSearchAtRayPath is BayesOptSearch


# ---- results: failures, NaN, duplicates, patience ---------------------------------------------
def test_errors_nan_and_inf_are_left_out():
    search = BayesOptSearch(SPACE, metric="loss", mode="min", random_state=1, random_search_steps=0)
    for i, (result, error) in enumerate([(None, True), ({"loss": math.nan}, False),
                                         ({"loss": math.inf}, False), ({"loss": 2.0}, False)]):
        search.suggest(f"t{i}")
        search.on_trial_complete(f"t{i}", result, error=error)
    assert list(search.optimizer.space.target) == [-2.0]


def test_duplicates_are_skipped_and_patience_finishes_the_search():
    point = {"x": 1.0, "y": -2.0}
    search = BayesOptSearch(SPACE, metric="loss", mode="min", random_search_steps=0, patience=2,
                            points_to_evaluate=[dict(point), dict(point), dict(point)])
    assert search.suggest("a") == point
    search.on_trial_complete("a", {"loss": 0.0})
    assert search.suggest("b") is None  # seen before: skipped
    assert search.suggest("c") is Searcher.FINISHED  # a third time: more than patience=2
    rerun = BayesOptSearch(SPACE, metric="loss", mode="min", random_search_steps=0, skip_duplicate=False,
                           points_to_evaluate=[dict(point), dict(point)])
    assert run_suggestions(rerun, 2, loss) == [point, point]
    assert list(rerun.optimizer.space.target) == [0.0]  # bayes_opt holds a point once; the first value stays


# ---- checkpoints ------------------------------------------------------------------------------
def test_save_restore_continues_the_same_sequence(tmp_path):
    search = BayesOptSearch(SPACE, metric="loss", mode="min", random_state=7, random_search_steps=3,
                            points_to_evaluate=[{"x": 0.0, "y": 0.0}, {"x": 2.0, "y": 2.0}])
    run_suggestions(search, 1, loss)  # one point to evaluate is still pending at the checkpoint
    search.suggest("live")  # and a live trial

    def finish(s):
        s.on_trial_complete("live", {"loss": 0.5})
        return run_suggestions(s, 6, loss)

    path = str(tmp_path / "searcher.pkl")
    search.save(path)
    restored = BayesOptSearch()
    restored.restore(path)
    assert (restored.metric, restored.mode) == ("loss", "min")
    from_dir = BayesOptSearch()
    search.save_to_dir(str(tmp_path))
    from_dir.restore_from_dir(str(tmp_path))
    expected = finish(search)
    assert finish(restored) == expected
    assert finish(from_dir) == expected


# ---- end to end on Ray ---------------------------------------------------------------------------
def test_bayesopt_finds_the_optimum_of_a_quadratic(ray_session, storage):
    # One trial at a time: each suggestion sees every earlier result, so the seeded run is
    # the same every time.
    searcher = BayesOptSearch(random_state=0, random_search_steps=5)
    grid = fit(quadratic, storage, {"x": uniform(-5, 5), "y": uniform(-5, 5), "tag": "q"},
               tune_config=tune.TuneConfig(search_alg=searcher, metric="loss", mode="min", num_samples=20,
                                           max_concurrent_trials=1))
    assert len(grid) == 20 and not grid.errors
    assert all(r.config["tag"] == "q" for r in grid)
    configs = [{"x": r.config["x"], "y": r.config["y"]} for r in grid]
    assert sorted(configs, key=json.dumps) == sorted(reference_sequence(20, 0, 5), key=json.dumps)
    best = grid.get_best_result()
    # bayes_opt's own 20 suggestions for seed 0 (reference_sequence) hold this best point
    assert (best.config["x"], best.config["y"]) == (0.983110750089016, -1.9734491564991972)
    assert best.metrics["loss"] == pytest.approx(0.0009901940531597954)

    # The experiment's trials seed a new search (Ray Tune's `analysis`): all 20 are registered.
    warm = BayesOptSearch(SPACE, metric="loss", mode="min", analysis=tune.ExperimentAnalysis(grid.experiment_path))
    assert sorted(warm.optimizer.space.target) == sorted(-r.metrics["loss"] for r in grid)
    for params, target in zip(warm.optimizer.space.params, warm.optimizer.space.target):
        assert target == pytest.approx(-loss({"x": params[0], "y": params[1]}))  # each value with its config


def test_the_quality_suite_runs_bayesopt_reproducibly(ray_session):
    from bench.quality import SEARCHERS, run_one

    assert "bayesopt" in SEARCHERS
    first = run_one("bayesopt", "branin", seed=3, budget=14)
    assert first == run_one("bayesopt", "branin", seed=3, budget=14)  # exact floats
    assert len(first) == 14
    assert run_one("bayesopt", "branin", seed=4, budget=14) != first
