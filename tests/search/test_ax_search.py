"""AxSearch: the same suggestions as Ax's own AxClient, space conversion, points_to_evaluate,
results, checkpoints, bad input, and a sweep on Ray.

Ax fits a Gaussian process for every BoTorch suggestion (seconds of CPU each), so these tests
use small generation strategies: Sobol for most steps, BoTorch for one or two."""
import json
import os
import subprocess
import sys
import warnings

import pytest
from ax.adapter.registry import Generators  # the test extra installs ax-platform: a missing one fails
from ax.core.base_trial import TrialStatus
from ax.core.parameter import ParameterType
from ax.generation_strategy.generation_node import GenerationStep
from ax.generation_strategy.generation_strategy import GenerationStrategy
from ax.service.ax_client import AxClient, ObjectiveProperties

import fasttune as tune
from fasttune.search import (Searcher, choice, create_searcher, grid_search, lograndint, loguniform, qrandint,
                             quniform, randint, randn, sample_from, uniform)
from fasttune.search.ax import AxSearch
from fasttune.search.ax.ax_search import AxSearch as AxSearchAtRayPath
from fasttune_testing import fit
from searcher_testing import quadratic, run_suggestions

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning",
                                        "ignore::RuntimeWarning", "ignore:.*inplace.*")

SPACE = {"x": uniform(-5, 5), "y": uniform(-5, 5)}
AX_SPACE = [{"name": "x", "type": "range", "bounds": [-5, 5], "value_type": "float", "log_scale": False},
            {"name": "y", "type": "range", "bounds": [-5, 5], "value_type": "float", "log_scale": False}]


def loss(config):
    return (config["x"] - 1.0) ** 2 + (config["y"] + 2.0) ** 2


def sobol_then_botorch(sobol_trials):
    """A generation strategy: ``sobol_trials`` Sobol points, then BoTorch with a cheap
    acquisition optimisation (about 1.3 s of CPU a suggestion here instead of 2.5-4)."""
    cheap = {"model_gen_options": {"optimizer_kwargs": {"num_restarts": 2, "raw_samples": 64}}}
    return GenerationStrategy(nodes=[
        GenerationStep(generator=Generators.SOBOL, num_trials=sobol_trials),
        GenerationStep(generator=Generators.BOTORCH_MODULAR, num_trials=-1, model_gen_kwargs=cheap)])


def sobol_only():
    return GenerationStrategy(nodes=[GenerationStep(generator=Generators.SOBOL, num_trials=-1)])


def reference_sequence(n, random_seed, strategy=None, points=(), minimize=True):
    """What Ax's AxClient suggests when driven by hand the way AxSearch drives it: each point
    to evaluate attached, then Ax's next trials, each completed with its loss before the next."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        client = AxClient(generation_strategy=strategy, random_seed=random_seed, verbose_logging=False)
    client.create_experiment(parameters=[dict(p) for p in AX_SPACE],
                             objectives={"loss": ObjectiveProperties(minimize=minimize)})
    points, configs = list(points), []
    for _ in range(n):
        parameters, index = client.attach_trial(points.pop(0)) if points else client.get_next_trial()
        configs.append(dict(parameters))
        client.complete_trial(index, raw_data={"loss": (loss(parameters) if minimize else -loss(parameters), None)})
    return configs


# ---- Ax's own sequence --------------------------------------------------------------------------
def test_suggestions_are_ax_clients_own_for_the_same_seed_and_observations():
    # two Sobol points, then one BoTorch fit on their results
    search = AxSearch(SPACE, metric="loss", mode="min", random_seed=3, generation_strategy=sobol_then_botorch(2),
                      verbose_logging=False)
    got = run_suggestions(search, 3, loss)
    assert got == reference_sequence(3, random_seed=3, strategy=sobol_then_botorch(2))
    assert [t.status for t in search._ax.experiment.trials.values()] == [TrialStatus.COMPLETED] * 3
    # Ax's default strategy (chosen from the space: Sobol first), and mode max
    default = AxSearch(SPACE, metric="score", mode="max", random_seed=5, verbose_logging=False)
    for i, config in enumerate(reference_sequence(3, random_seed=5, minimize=False)):
        assert default.suggest(f"t{i}") == config
        default.on_trial_complete(f"t{i}", {"score": -loss(config)})
    assert not default._ax.experiment.optimization_config.objective.minimize


def test_points_to_evaluate_come_first_nested_or_by_path():
    points = [{"x": 1.0, "y": -2.0}, {"x": 0.0, "y": 0.0}]
    search = AxSearch(SPACE, metric="loss", mode="min", random_seed=4, generation_strategy=sobol_only(),
                      verbose_logging=False, points_to_evaluate=points)
    got = run_suggestions(search, 4, loss)
    assert got[:2] == points
    assert got == reference_sequence(4, random_seed=4, strategy=sobol_only(), points=points)
    nested = AxSearch({"opt": {"lr": uniform(0, 1)}, "m": uniform(0, 1)}, metric="loss", mode="min",
                      verbose_logging=False, points_to_evaluate=[{"opt": {"lr": 0.5}, "m": 0.25},
                                                                 {"opt/lr": 0.125, "m": 0.75}])
    assert nested.suggest("a") == {"opt": {"lr": 0.5}, "m": 0.25}
    assert nested.suggest("b") == {"opt": {"lr": 0.125}, "m": 0.75}


# ---- space conversion ------------------------------------------------------------------------------
def test_fasttune_spaces_convert_as_ray_tunes_conversion_does(caplog):
    from ray import tune as ray_tune
    from ray.tune.search.ax import AxSearch as RayAxSearch

    space = {"opt": {"lr": loguniform(1e-4, 1e-1), "momentum": uniform(0, 1)}, "layers": randint(1, 4),
             "width": lograndint(8, 129), "act": choice(["relu", "tanh"]), "drop": quniform(0, 0.5, 0.1),
             "batch": qrandint(16, 64, 16), "epochs": 3}
    expected = [
        {"name": "opt/lr", "type": "range", "bounds": [1e-4, 1e-1], "value_type": "float", "log_scale": True},
        {"name": "opt/momentum", "type": "range", "bounds": [0, 1], "value_type": "float", "log_scale": False},
        {"name": "layers", "type": "range", "bounds": [1, 3], "value_type": "int", "log_scale": False},
        {"name": "width", "type": "range", "bounds": [8, 128], "value_type": "int", "log_scale": True},
        {"name": "act", "type": "choice", "values": ["relu", "tanh"]},
        {"name": "drop", "type": "range", "bounds": [0, 0.5], "value_type": "float", "log_scale": False},
        {"name": "batch", "type": "range", "bounds": [16, 64], "value_type": "int", "log_scale": False},
    ]
    with caplog.at_level("WARNING", logger="fasttune.search.ax.ax_search"):
        assert AxSearch.convert_search_space(space) == expected
    assert "'drop' is searched without" in caplog.text and "'batch' is searched without" in caplog.text
    ray_space = {"opt": {"lr": ray_tune.loguniform(1e-4, 1e-1), "momentum": ray_tune.uniform(0, 1)},
                 "layers": ray_tune.randint(1, 4), "width": ray_tune.lograndint(8, 129),
                 "act": ray_tune.choice(["relu", "tanh"]), "drop": ray_tune.quniform(0, 0.5, 0.1),
                 "batch": ray_tune.qrandint(16, 64, 16), "epochs": 3}
    ray_converted = RayAxSearch.convert_search_space(ray_space)
    # Ray Tune also sends constants as fixed parameters; fasttune's engine keeps them instead.
    # And Ray Tune's bounds for qrandint(16, 64, 16) leave out 64, which qrandint draws.
    by_name = lambda parameters: sorted(parameters, key=lambda p: p["name"])  # noqa: E731 (Ray Tune's order differs)
    assert by_name(p for p in ray_converted if p["type"] != "fixed") == by_name(
        expected[:-1] + [dict(expected[-1], bounds=[16, 63])])
    assert [p for p in ray_converted if p["type"] == "fixed"] == [{"name": "epochs", "type": "fixed", "value": 3}]

    search = AxSearch(space, metric="loss", mode="min", random_seed=0, verbose_logging=False)
    parameters = search._ax.experiment.parameters
    assert sorted(parameters) == sorted(p["name"] for p in expected)
    assert parameters["width"].parameter_type == ParameterType.INT and parameters["width"].log_scale
    assert parameters["opt/lr"].parameter_type == ParameterType.FLOAT and parameters["opt/lr"].log_scale
    config = search.suggest("t")
    assert sorted(config) == ["act", "batch", "drop", "layers", "opt", "width"]  # constants: not sent to Ax
    assert type(config["layers"]) is int and 1 <= config["layers"] <= 3
    assert 1e-4 <= config["opt"]["lr"] <= 1e-1 and config["act"] in ("relu", "tanh")


def test_axs_native_parameter_list_with_fixed_parameters_and_nested_names():
    native = [{"name": "opt/lr", "type": "range", "bounds": [1e-4, 1e-1], "log_scale": True},
              {"name": "act", "type": "choice", "values": ["relu", "tanh"]},
              {"name": "seed", "type": "fixed", "value": 7}]
    search = AxSearch(native, metric="loss", mode="min", random_seed=0, verbose_logging=False,
                      points_to_evaluate=[{"opt": {"lr": 0.01}, "act": "tanh"}])
    assert search.suggest("a") == {"opt": {"lr": 0.01}, "act": "tanh", "seed": 7}  # the fixed value filled in
    config = search.suggest("b")
    assert config["seed"] == 7 and sorted(config) == ["act", "opt", "seed"]


def test_tuner_space_metric_and_mode():
    from_tuner = AxSearch(random_seed=1, verbose_logging=False)
    assert from_tuner.set_search_properties("loss", "min", {"x": uniform(-5, 5), "y": uniform(-5, 5), "tag": "q"})
    own = AxSearch(SPACE, metric="loss", mode="min", random_seed=1, verbose_logging=False)
    assert from_tuner.suggest("t") == own.suggest("t")
    assert not from_tuner.set_search_properties("other", "max", {"z": uniform(0, 1)})
    assert (from_tuner.metric, from_tuner.mode) == ("loss", "min")
    waiting = AxSearch(SPACE, verbose_logging=False)  # a space of its own: metric and mode from the Tuner
    assert waiting._ax is None
    assert not waiting.set_search_properties("acc", "max", {})
    assert (waiting.metric, waiting.mode) == ("acc", "max")
    assert waiting._ax.experiment.optimization_config.objective.metric_names == ["acc"]
    only_mode = AxSearch(SPACE, mode="max", verbose_logging=False)
    assert only_mode.metric == "_metric"


def test_an_ax_client_of_ones_own():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        client = AxClient(generation_strategy=sobol_only(), random_seed=2, verbose_logging=False)
    client.create_experiment(parameters=[dict(p) for p in AX_SPACE],
                             objectives={"acc": ObjectiveProperties(minimize=False)})
    search = AxSearch(ax_client=client)
    assert (search.metric, search.mode) == ("acc", "max")
    assert not search.set_search_properties("loss", "min", {"z": uniform(0, 1)})
    assert (search.metric, search.mode) == ("acc", "max")
    assert search.suggest("t") == reference_sequence(1, random_seed=2, strategy=sobol_only(), minimize=False)[0]
    with pytest.raises(ValueError, match="do not pass space, metric"):
        AxSearch(SPACE, metric="loss", ax_client=client)


# ---- results ------------------------------------------------------------------------------------
def test_failures_nan_and_outcome_and_parameter_constraints():
    search = AxSearch(SPACE, metric="loss", mode="min", generation_strategy=sobol_only(), verbose_logging=False,
                      outcome_constraints=["acc >= 0.5"], parameter_constraints=["x + y <= 1"])
    outcomes = [(None, False), ({"loss": 1.0, "acc": 0.9}, True), ({"loss": float("nan"), "acc": 0.9}, False),
                ({"loss": 1.0, "acc": float("inf")}, False), ({"loss": 2.0, "acc": 0.75}, False)]
    for i, (result, error) in enumerate(outcomes):
        config = search.suggest(f"t{i}")
        assert config["x"] + config["y"] <= 1 + 1e-9
        search.on_trial_complete(f"t{i}", result, error=error)
    trials = search._ax.experiment.trials
    assert [trials[i].status for i in range(5)] == [TrialStatus.FAILED, TrialStatus.FAILED, TrialStatus.ABANDONED,
                                                    TrialStatus.ABANDONED, TrialStatus.COMPLETED]
    data = search._ax.experiment.lookup_data().df
    assert sorted(zip(data["metric_name"], data["mean"])) == [("acc", 0.75), ("loss", 2.0)]
    search.suggest("u")
    with pytest.raises(RuntimeError, match=r"\['acc'\] in the trial's last result, which has \['loss'\]"):
        search.on_trial_complete("u", {"loss": 1.0})
    assert trials[5].status == TrialStatus.FAILED


# ---- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize("space, key", [
    ({"x": uniform(0, 1), "noise": randn(0, 1)}, "noise"),
    ({"net": {"f": sample_from(lambda spec: 1)}}, "net/f"),
    ({"g": grid_search([0.1, 0.2])}, "g"),
    ({"layers": [uniform(0, 1), 3]}, "layers"),
    ({"c": choice([1, "a"])}, "c"),
    ({"c": choice([None, [1]])}, "c"),
])
def test_unsupported_domains_are_a_value_error_naming_the_key(space, key):
    with pytest.raises(ValueError, match=f"'{key}'"):
        AxSearch(space, metric="loss", mode="min")
    with pytest.raises(ValueError, match=f"'{key}'"):
        AxSearch().set_search_properties("loss", "min", space)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="mode"):
        AxSearch(SPACE, mode="lowest")
    with pytest.raises(TypeError, match="one metric"):
        AxSearch(SPACE, metric=["a", "b"], mode="min")
    with pytest.raises(TypeError, match="parameter list"):
        AxSearch([{"bounds": [0, 1]}], metric="loss", mode="min")
    with pytest.raises(TypeError, match="points_to_evaluate"):
        AxSearch(SPACE, points_to_evaluate={"x": 1.0})
    with pytest.raises(ValueError, match=r"points_to_evaluate\[0\].*\['x', 'y'\].*got \['x'\]"):
        AxSearch(SPACE, metric="loss", mode="min", verbose_logging=False, points_to_evaluate=[{"x": 1.0}])
    with pytest.raises(RuntimeError, match="no search space"):
        AxSearch(metric="loss", mode="min").suggest("t")
    with pytest.raises(RuntimeError, match="metric and a mode"):
        AxSearch(SPACE).suggest("t")
    with pytest.raises(ValueError, match="no search space"):
        AxSearch().set_search_properties("loss", "min", {"epochs": 3})
    with pytest.raises(ValueError, match="needs a mode"):
        AxSearch(SPACE).set_search_properties("loss", None, {})


def test_missing_ax_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ax.service.ax_client", None)
    with pytest.raises(ImportError, match=r'pip install "fasttune\[ax\]" \(or pip install ax-platform\)'):
        AxSearch(SPACE)


def test_create_searcher_and_import_cost():
    assert type(create_searcher("ax", metric="loss", mode="min")) is AxSearch
    assert AxSearchAtRayPath is AxSearch
    code = "import sys, json, fasttune; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env=dict(os.environ))
    loaded = set(json.loads(done.stdout))
    assert "ax" not in loaded and "fasttune.search.ax" not in loaded and "torch" not in loaded


# ---- checkpoints ------------------------------------------------------------------------------
def test_save_restore_mid_sweep_continues_the_same_sequence(tmp_path):
    search = AxSearch(SPACE, metric="loss", mode="min", random_seed=7, generation_strategy=sobol_then_botorch(2),
                      verbose_logging=False, points_to_evaluate=[{"x": 0.0, "y": 0.0}, {"x": 2.0, "y": 2.0},
                                                                 {"x": -1.0, "y": 1.0}])
    run_suggestions(search, 1, loss)  # two points to evaluate are still pending at the checkpoint
    search.suggest("live")  # and a live trial

    def finish(s):
        s.on_trial_complete("live", {"loss": 0.5})
        return run_suggestions(s, 4, loss)  # the last point, two Sobol points, one BoTorch fit

    search.save_to_dir(str(tmp_path))
    (checkpoint,) = os.listdir(tmp_path)
    with open(tmp_path / checkpoint) as f:
        assert json.load(f)["version"] == 1  # JSON: reading it runs no code
    restored = AxSearch(verbose_logging=False)
    restored.restore_from_dir(str(tmp_path))
    assert (restored.metric, restored.mode) == ("loss", "min")
    expected = finish(search)
    assert expected[0] == {"x": -1.0, "y": 1.0}
    assert finish(restored) == expected
    with pytest.raises(ValueError, match="Not an AxSearch state"):
        AxSearch().set_state({"version": 0})


def test_a_searcher_saved_before_its_experiment_exists(tmp_path):
    waiting = AxSearch(random_seed=6, generation_strategy=sobol_only(), verbose_logging=False)
    path = str(tmp_path / "ax.json")
    waiting.save(path)
    restored = AxSearch(generation_strategy=sobol_only(), verbose_logging=False)
    restored.restore(path)
    assert restored.set_search_properties("loss", "min", SPACE)
    assert run_suggestions(restored, 2, loss) == reference_sequence(2, random_seed=6, strategy=sobol_only())


# ---- end to end on Ray ---------------------------------------------------------------------------
def test_ax_sweeps_a_quadratic_on_ray(ray_session, storage):
    # One trial at a time: each suggestion sees every earlier result, so the seeded run is the
    # same every time (three Sobol points, then one BoTorch suggestion).
    searcher = AxSearch(random_seed=0, generation_strategy=sobol_then_botorch(3), verbose_logging=False)
    grid = fit(quadratic, storage, {"x": uniform(-5, 5), "y": uniform(-5, 5), "tag": "q"},
               tune_config=tune.TuneConfig(search_alg=searcher, metric="loss", mode="min", num_samples=4,
                                           max_concurrent_trials=1))
    assert len(grid) == 4 and not grid.errors
    assert all(r.config["tag"] == "q" for r in grid)
    configs = sorted(({"x": r.config["x"], "y": r.config["y"]} for r in grid), key=json.dumps)
    expected = reference_sequence(4, random_seed=0, strategy=sobol_then_botorch(3))
    assert configs == sorted(expected, key=json.dumps)
    best = grid.get_best_result()
    assert best.metrics["loss"] == min(loss(c) for c in expected)


def test_none_while_ax_waits_for_results_and_finished_when_its_strategy_is_done():
    waits = GenerationStrategy(nodes=[
        GenerationStep(generator=Generators.SOBOL, num_trials=2, min_trials_observed=2),
        GenerationStep(generator=Generators.BOTORCH_MODULAR, num_trials=-1)])
    search = AxSearch(SPACE, metric="loss", mode="min", generation_strategy=waits, verbose_logging=False)
    search.suggest("a"), search.suggest("b")
    assert search.suggest("c") is None and search.suggest("c") is None  # Ax needs two results first
    assert len(search._ax.experiment.trials) == 2
    done = GenerationStrategy(nodes=[GenerationStep(generator=Generators.SOBOL, num_trials=2)])
    search = AxSearch(SPACE, metric="loss", mode="min", generation_strategy=done, verbose_logging=False)
    run_suggestions(search, 2, loss)
    assert search.suggest("c") is Searcher.FINISHED
