"""HEBOSearch with the real HEBO: the same suggestions as HEBO itself, space conversion,
points_to_evaluate, seeding, checkpoints, and a sweep on Ray.

HEBO 0.3.6 declares numpy<1.25, so pip cannot install it beside the suite (numpy 2); its code
runs on numpy 2.4 and pandas 3.  It needs pymoo 0.6.0 as it pins (pymoo 0.6.2 seeds its genetic
search afresh from the OS, so HEBO's model-based suggestions could not be reproduced).  Run
these tests in a venv that adds HEBO, without its numpy pin, to the suite's environment:

    python -m venv --system-site-packages /work/venv-hebo
    /work/venv-hebo/bin/pip install --no-deps "HEBO==0.3.6" "pymoo==0.6.0" disjoint-set catboost GPy paramz
    PYTHONPATH=$PWD /work/venv-hebo/bin/python -m pytest -p no:cacheprovider tests_hebo
"""
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from hebo.design_space.design_space import DesignSpace  # the HEBO environment: a missing one fails
from hebo.optimizers.hebo import HEBO

import fasttune as tune  # noqa: E402
from fasttune.search import (choice, grid_search, lograndint, loguniform, qlograndint, qrandint,  # noqa: E402
                             quniform, randint, randn, uniform)
from fasttune.search.hebo import HEBOSearch  # noqa: E402
from fasttune_testing import fit  # noqa: E402
from searcher_testing import quadratic, run_suggestions  # noqa: E402

SPACE = {"x": uniform(-5, 5), "y": uniform(-5, 5)}
PARAMS = [{"name": "x", "type": "num", "lb": -5, "ub": 5}, {"name": "y", "type": "num", "lb": -5, "ub": 5}]


def loss(config):
    return (config["x"] - 1.0) ** 2 + (config["y"] + 2.0) ** 2


def reference_sequence(n, seed, rand_sample, points=()):
    """HEBO's own suggestions, one at a time with each result observed before the next,
    seeded through numpy's and torch's global generators (put back afterwards)."""
    callers = (np.random.get_state(), torch.get_rng_state())
    np.random.seed(seed)
    torch.manual_seed(seed)
    try:
        optimizer = HEBO(DesignSpace().parse(PARAMS), rand_sample=rand_sample)
        configs = [dict(p) for p in points]
        for config in configs:
            optimizer.observe(pd.DataFrame([config]), np.array([[loss(config)]]))
        while len(configs) < n:
            suggestion = optimizer.suggest(n_suggestions=1)
            config = {k: float(v) for k, v in suggestion.to_dict("records")[0].items()}
            optimizer.observe(suggestion, np.array([[loss(config)]]))
            configs.append(config)
        return configs
    finally:
        np.random.set_state(callers[0])
        torch.set_rng_state(callers[1])


def test_suggestions_are_hebos_own_and_the_callers_generators_stay_put():
    np.random.seed(123)
    torch.manual_seed(123)
    expected_draws = (np.random.RandomState(123).random_sample(), torch.rand(1, generator=torch.Generator().manual_seed(123)))
    search = HEBOSearch(SPACE, metric="loss", mode="min", random_state_seed=3, max_concurrent=1, rand_sample=3)
    got = run_suggestions(search, 4, loss)  # three Sobol points, then one from HEBO's model
    assert got == reference_sequence(4, seed=3, rand_sample=3)
    assert (np.random.random_sample(), torch.rand(1)) == expected_draws
    assert list(search._opt.y.reshape(-1)) == [loss(c) for c in got]


def test_mode_max_observes_the_negated_metric_and_batches_wait_for_their_trials():
    search = HEBOSearch(SPACE, metric="loss", mode="max", random_state_seed=0, max_concurrent=2, rand_sample=4)
    first, second = search.suggest("a"), search.suggest("b")
    assert search.suggest("c") is None  # the batch of two is out
    search.on_trial_complete("a", {"loss": 2.0})
    assert search.suggest("c") is None  # a batch ends when all its trials have
    search.on_trial_complete("b", {"loss": 3.0})
    assert isinstance(search.suggest("c"), dict)
    assert list(search._opt.y.reshape(-1)) == [-2.0, -3.0]
    assert first != second


def test_fasttune_spaces_convert_to_hebos_design_space():
    space = {"opt": {"lr": loguniform(1e-4, 1e-1), "m": uniform(0, 1)}, "n": randint(1, 5), "w": lograndint(1, 100),
             "k": qrandint(2, 10, 4), "q": quniform(0, 1, 0.25), "act": choice(["relu", "tanh"]), "epochs": 3}
    design = HEBOSearch.convert_search_space(space)
    assert sorted(design.para_names) == ["act", "k", "n", "opt/lr", "opt/m", "q", "w"]
    kinds = {name: type(design.paras[name]).__name__ for name in design.para_names}
    assert kinds == {"opt/lr": "PowPara", "opt/m": "NumericPara", "n": "IntegerPara", "w": "PowIntegerPara",
                     "k": "StepIntPara", "q": "NumericPara", "act": "CategoricalPara"}
    assert (design.paras["n"].lb, design.paras["n"].ub, design.paras["k"].lb, design.paras["k"].ub) == (1, 4, 4, 8)
    search = HEBOSearch(random_state_seed=0, rand_sample=8)
    assert search.set_search_properties("loss", "min", space)
    configs = run_suggestions(search, 6, lambda c: c["opt"]["m"])
    assert all(c["q"] in (0.0, 0.25, 0.5, 0.75, 1.0) and c["k"] in (4, 8) and 1 <= c["n"] <= 4 for c in configs)
    assert all(c["act"] in ("relu", "tanh") and 1e-4 <= c["opt"]["lr"] <= 1e-1 and "epochs" not in c for c in configs)
    native = HEBOSearch(DesignSpace().parse(PARAMS), metric="loss", mode="min", random_state_seed=3, max_concurrent=1,
                        rand_sample=3)
    assert run_suggestions(native, 3, loss) == reference_sequence(3, seed=3, rand_sample=3)


def test_points_to_evaluate_and_evaluated_rewards():
    points = [{"x": 1.0, "y": -2.0}, {"x": 0.0, "y": 0.0}]
    search = HEBOSearch(SPACE, metric="loss", mode="min", random_state_seed=5, max_concurrent=1, rand_sample=3,
                        points_to_evaluate=points)
    assert run_suggestions(search, 2, loss) == points
    warm = HEBOSearch(SPACE, metric="loss", mode="min", random_state_seed=5, max_concurrent=1, rand_sample=3,
                      points_to_evaluate=points, evaluated_rewards=[loss(p) for p in points])
    assert list(warm._opt.y.reshape(-1)) == [0.0, 5.0]  # observed, not run
    assert run_suggestions(warm, 1, loss) == reference_sequence(3, seed=5, rand_sample=3, points=points)[2:]
    warm.add_evaluated_point({"x": 2.0, "y": -2.0}, 1.0)
    assert list(warm._opt.y.reshape(-1))[-1] == 1.0


def test_save_restore_mid_sweep_continues_the_same_sequence(tmp_path):
    search = HEBOSearch(SPACE, metric="loss", mode="min", random_state_seed=7, max_concurrent=1, rand_sample=5)
    run_suggestions(search, 2, loss)
    path = str(tmp_path / "searcher.pkl")
    search.save(path)
    restored = HEBOSearch()
    restored.restore(path)
    assert (restored.metric, restored.mode) == ("loss", "min")
    expected = run_suggestions(search, 2, loss)
    assert run_suggestions(restored, 2, loss) == expected


@pytest.mark.parametrize("space, key", [
    ({"x": uniform(0, 1), "w": randn(0, 1)}, "w"),
    ({"net": {"n": qlograndint(1, 64, 2)}}, "net/n"),
    ({"g": grid_search([0.1, 0.2])}, "g"),
    ({"x": uniform(0, 1), "epochs": 3}, "epochs"),
])
def test_unsupported_entries_are_a_value_error_naming_the_key(space, key):
    with pytest.raises(ValueError, match=f"'{key}'"):
        HEBOSearch(space, metric="loss", mode="min")


def test_bad_arguments_and_a_missing_hebo_are_clear_errors(monkeypatch):
    with pytest.raises(ValueError, match="mode"):
        HEBOSearch(SPACE, mode="lowest")
    with pytest.raises(ValueError, match="max_concurrent"):
        HEBOSearch(SPACE, max_concurrent=0)
    with pytest.raises(ValueError, match="evaluated_rewards"):
        HEBOSearch(SPACE, points_to_evaluate=[{"x": 0.0, "y": 0.0}], evaluated_rewards=[1.0, 2.0])
    with pytest.raises(ValueError, match=r"points_to_evaluate\[0\].*\['x', 'y'\]"):
        HEBOSearch(SPACE, metric="loss", mode="min", points_to_evaluate=[{"x": 1.0}])
    with pytest.raises(RuntimeError, match="no search space"):
        HEBOSearch(metric="loss", mode="min").suggest("t")
    with pytest.raises(RuntimeError, match="metric and a mode"):
        HEBOSearch(SPACE).suggest("t")
    monkeypatch.setitem(sys.modules, "hebo.optimizers.hebo", None)
    with pytest.raises(ImportError, match=r'pip install "fasttune\[hebo\]" \(or pip install HEBO\)'):
        HEBOSearch(SPACE)


def test_hebo_sweeps_on_ray_as_hebo_suggests(ray_session, storage):
    searcher = HEBOSearch(random_state_seed=0, rand_sample=3)
    grid = fit(quadratic, storage, {"x": uniform(-5, 5), "y": uniform(-5, 5), "tag": "q"},
               tune_config=tune.TuneConfig(search_alg=searcher, metric="loss", mode="min", num_samples=4,
                                           max_concurrent_trials=1))
    assert len(grid) == 4 and not grid.errors
    assert all(r.config["tag"] == "q" for r in grid)
    configs = [{"x": r.config["x"], "y": r.config["y"]} for r in grid]
    assert sorted(configs, key=repr) == sorted(reference_sequence(4, seed=0, rand_sample=3), key=repr)
