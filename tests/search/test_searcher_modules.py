"""The searcher modules at Ray Tune's paths (``fasttune.search.optuna.optuna_search`` ...), their
``convert_search_space`` static methods against Ray Tune's, and OptunaSearch's study name and storage."""
import os
import subprocess
import sys

import numpy as np
import optuna  # the test extra installs them: a missing one fails, never skips
import pytest
from hyperopt.pyll import stochastic

import fasttune.search as ft_search
from fasttune.search.hyperopt import HyperOptSearch
from fasttune.search.hyperopt.hyperopt_search import HyperOptSearch as HyperOptSearchAtRayPath
from fasttune.search.nevergrad import NevergradSearch
from fasttune.search.nevergrad.nevergrad_search import NevergradSearch as NevergradSearchAtRayPath
from fasttune.search.optuna import OptunaSearch
from fasttune.search.optuna.optuna_search import OptunaSearch as OptunaSearchAtRayPath


def test_searchers_are_at_ray_tunes_module_paths():
    assert OptunaSearchAtRayPath is OptunaSearch
    assert HyperOptSearchAtRayPath is HyperOptSearch
    assert NevergradSearchAtRayPath is NevergradSearch


def test_importing_the_searcher_packages_imports_no_library():
    code = ("import sys, fasttune.search.optuna, fasttune.search.hyperopt, fasttune.search.nevergrad; "
            "print(sorted(m for m in ('optuna', 'hyperopt', 'nevergrad') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ),
                         check=True)
    assert out.stdout.strip() == "[]"


def space(tune):
    """One search space written with either library's domains."""
    return {
        "opt": {"lr": tune.loguniform(1e-4, 1e-1), "momentum": tune.uniform(-1, 1)},
        "dropout": tune.quniform(0, 10, 0.5), "layers": tune.randint(1, 9), "act": tune.choice(["relu", "tanh"]),
        "batch": tune.qrandint(0, 20, 5), "width": tune.lograndint(1, 100), "epochs": 3,
    }


def test_optuna_convert_search_space_gives_ray_tunes_distributions():
    from ray import tune as ray_tune
    from ray.tune.search.optuna import OptunaSearch as RayOptunaSearch

    converted = OptunaSearch.convert_search_space(space(ft_search))
    assert converted == RayOptunaSearch.convert_search_space(space(ray_tune))
    assert sorted(converted) == ["act", "batch", "dropout", "layers", "opt/lr", "opt/momentum", "width"]
    assert OptunaSearch.convert_search_space({"epochs": 3}) == {}
    with pytest.raises(ValueError, match="grid_search"):
        OptunaSearch.convert_search_space({"x": ft_search.grid_search([1, 2])})


def test_optuna_convert_search_space_is_a_space_for_optuna_search():
    searcher = OptunaSearch(OptunaSearch.convert_search_space(space(ft_search)), metric="loss", mode="min", seed=0)
    config = searcher.suggest("t1")
    assert sorted(config) == ["act", "batch", "dropout", "layers", "opt", "width"]
    assert 1e-4 <= config["opt"]["lr"] <= 1e-1 and config["batch"] % 5 == 0


def test_optuna_convert_search_space_drops_quantization_on_a_log_scale():
    converted = OptunaSearch.convert_search_space({"lr": ft_search.qloguniform(1e-4, 1e-1, 1e-4)})
    assert converted == {"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hyperopt_convert_search_space_samples_as_ray_tunes(seed):
    from ray import tune as ray_tune
    from ray.tune.search.hyperopt import HyperOptSearch as RayHyperOptSearch

    ours = HyperOptSearch.convert_search_space({**space(ft_search), "noise": ft_search.randn(0, 2)}, prefix="p")
    theirs = RayHyperOptSearch.convert_search_space({**space(ray_tune), "noise": ray_tune.randn(0, 2)}, prefix="p")
    sample = stochastic.sample(ours, rng=np.random.default_rng(seed))
    assert sample == stochastic.sample(theirs, rng=np.random.default_rng(seed))
    assert sample["epochs"] == 3 and HyperOptSearch.convert_search_space({"epochs": 3}) == {}


def test_nevergrad_convert_search_space_is_a_space_for_nevergrad_search():
    parametrization = NevergradSearch.convert_search_space(
        {"opt": {"lr": ft_search.loguniform(1e-4, 1e-1)}, "layers": ft_search.randint(1, 9), "epochs": 3})
    import nevergrad

    searcher = NevergradSearch(nevergrad.optimizers.OnePlusOne, space=parametrization, metric="loss", mode="min")
    config = searcher.suggest("t1")
    assert sorted(config) == ["epochs", "layers", "opt"] and config["epochs"] == 3
    assert 1e-4 <= config["opt"]["lr"] <= 1e-1 and 1 <= config["layers"] <= 8
