"""TuneBOHB: the same suggestions as hpbandster's BOHB config generator driven by hand, space
conversion, points_to_evaluate, concurrency, checkpoints, and a sweep on Ray with
HyperBandForBOHB."""
import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import ray
import ConfigSpace as CS  # the test extra installs it: a missing one fails, never skips
from hpbandster.optimizers.config_generators.bohb import BOHB

import fasttune as tune
from fasttune.schedulers import HyperBandForBOHB
from fasttune.search import (ConcurrencyLimiter, choice, create_searcher, grid_search, lograndint, loguniform,
                             quniform, randint, randn, sample_from, uniform)
from fasttune.search.bohb import TuneBOHB
from fasttune.search.bohb.bohb_search import TuneBOHB as TuneBOHBAtRayPath
from fasttune_testing import fit

# hpbandster 0.7.4 calls ConfigSpace 1.x's deprecated names (they work); the reference runs
# below call it directly, outside TuneBOHB's filter.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:hpbandster.*",
                                        "ignore:After 0.17 or January 2028:FutureWarning")

SPACE = {"x": uniform(-5, 5), "opt": {"lr": loguniform(1e-4, 1e-1)}, "n": randint(1, 8),
         "act": choice(["relu", "tanh", "elu"])}
BUDGETS = (1, 3)


def native_space():
    """SPACE as ConfigSpace hyperparameters, written by hand."""
    cs = CS.ConfigurationSpace()
    cs.add(CS.UniformFloatHyperparameter("x", -5, 5))
    cs.add(CS.UniformFloatHyperparameter("opt/lr", 1e-4, 1e-1, log=True))
    cs.add(CS.UniformIntegerHyperparameter("n", 1, 7))  # randint's upper bound is exclusive
    cs.add(CS.CategoricalHyperparameter("act", ["relu", "tanh", "elu"]))
    return cs


def loss(flat, budget):
    penalty = {"relu": 0.0, "tanh": 1.0, "elu": 2.0}[flat["act"]]
    return (flat["x"] - 1.0) ** 2 + abs(np.log10(flat["opt/lr"]) + 2) + 0.1 * flat["n"] + penalty + 1.0 / budget


def flatten(config):
    return {"x": config["x"], "opt/lr": config["opt"]["lr"], "n": config["n"], "act": config["act"]}


def reference_sequence(n, seed, points=(), bohb_config=None):
    """What hpbandster's BOHB suggests when driven by hand, as TuneBOHB drives it: a seeded
    ConfigSpace and numpy generator, and before each suggestion the results of every earlier
    config at each budget.  Returns (flat configs, whether each was a model-based pick)."""
    cs = native_space()
    cs.seed(seed)
    np.random.seed(seed)
    generator = BOHB(cs, **(bohb_config or {}))
    points = list(points)
    configs, model_based = [], []
    for _ in range(n):
        if points:
            config, info = points.pop(0), {"model_based_pick": False}
        else:
            config, info = generator.get_config(None)
            config = {k: v.item() if isinstance(v, np.generic) else v for k, v in config.items()}
        configs.append(config)
        model_based.append(info["model_based_pick"])
        for budget in BUDGETS:
            job = type("Job", (), {})()
            job.result, job.kwargs, job.exception = {"loss": loss(config, budget)}, {"budget": budget,
                                                                                      "config": config}, None
            generator.new_result(job)
    return configs, model_based


def drive(search, n, start=0, sign=1.0, metric="loss"):
    """``n`` suggestions, each followed by its results at every budget; returns flat configs."""
    configs = []
    for i in range(start, start + n):
        config = search.suggest(f"t{i}")
        configs.append(flatten(config))
        for budget in BUDGETS:
            search.on_trial_result(f"t{i}", {metric: sign * loss(flatten(config), budget),
                                             "hyperband_info": {"budget": budget}})
        search.on_trial_complete(f"t{i}", {metric: 0.0})
    return configs


# ---- the library's own sequence -----------------------------------------------------------------
def test_suggestions_are_hpbandsters_own_for_the_same_seed_and_observations():
    outside = np.random.get_state()
    search = TuneBOHB(SPACE, metric="loss", mode="min", seed=4)
    got = drive(search, 16)
    # The searcher draws from its own generator: numpy's global one is as it was.
    assert all(np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b
               for a, b in zip(np.random.get_state(), outside))
    expected, model_based = reference_sequence(16, seed=4)
    assert got == expected
    # Random configs until a budget has enough results for its good and bad densities; then
    # mostly the model's (a third at random).
    assert model_based == [False] * 10 + [True, False, False, False, True, True]
    assert sorted(search.bohber.kde_models) == [1, 3]
    assert [type(c["n"]) for c in got] == [int] * 16 and {type(c["act"]) for c in got} == {str}
    # A native ConfigSpace gives the same sequence.
    assert drive(TuneBOHB(native_space(), metric="loss", mode="min", seed=4), 16) == expected


def test_mode_max_registers_the_negated_metric_and_bohb_config_reaches_the_generator():
    search = TuneBOHB(SPACE, metric="score", mode="max", seed=2,
                      bohb_config={"min_points_in_model": 6, "random_fraction": 0.5})
    got = drive(search, 10, sign=-1.0, metric="score")
    assert got == reference_sequence(10, seed=2, bohb_config={"min_points_in_model": 6, "random_fraction": 0.5})[0]
    assert search.bohber.losses[1] == [loss(c, 1) for c in got]
    assert (search.bohber.min_points_in_model, search.bohber.random_fraction) == (6, 0.5)


def test_points_to_evaluate_come_first_then_the_generators_sequence():
    points = [{"x": 1.0, "opt": {"lr": 0.01}, "n": 1, "act": "relu"},
              {"x": -2.0, "opt/lr": 0.001, "n": 7, "act": "elu"}]  # nested or "a/b" names
    search = TuneBOHB(SPACE, metric="loss", mode="min", seed=5, points_to_evaluate=points)
    got = drive(search, 9)
    flat_points = [flatten(points[0]), points[1]]
    assert got[:2] == flat_points
    assert got == reference_sequence(9, seed=5, points=flat_points)[0]
    with pytest.raises(ValueError, match=r"points_to_evaluate\[0\].*no config of the search space"):
        TuneBOHB(SPACE, metric="loss", mode="min", points_to_evaluate=[{"x": 50.0}])


# ---- spaces -----------------------------------------------------------------------------------------
def test_conversion_nested_keys_integers_quantization_and_constants(caplog):
    with caplog.at_level(logging.WARNING, logger="fasttune.search.bohb.bohb_search"):
        cs = TuneBOHB.convert_search_space({"a": {"q": quniform(0, 1, 0.25)}, "m": lograndint(1, 100),
                                            "c": choice([True, 3, "s"]), "k": 7})
    assert "does not support quantization; 'a/q'" in caplog.text
    hps = {hp.name: hp for hp in cs.values()}
    assert sorted(hps) == ["a/q", "c", "m"]  # the constant is left out
    assert (hps["a/q"].lower, hps["a/q"].upper, hps["a/q"].log) == (0.0, 1.0, False)
    assert (hps["m"].lower, hps["m"].upper, hps["m"].log) == (1, 99, True)
    # choice() values come back as themselves; the Tuner's constants stay in the config.
    search = TuneBOHB(seed=0)
    assert search.set_search_properties("loss", "min", {"c": choice([True, 3, "s"]), "k": 7}) is True
    seen = {repr(search.suggest(f"t{i}")["c"]) for i in range(30)}
    assert seen == {"True", "3", "'s'"}


@pytest.mark.parametrize("space, key", [
    ({"a": randn(0, 1)}, "a"),
    ({"a": {"b": grid_search([1, 2])}}, "a/b"),
    ({"f": sample_from(lambda spec: 1)}, "f"),
])
def test_unsupported_domains_are_a_value_error_naming_the_key(space, key):
    with pytest.raises(ValueError, match=f"'{key}'"):
        TuneBOHB(space, metric="loss", mode="min")


def test_metric_and_mode_from_tune_config_and_clear_errors():
    own = TuneBOHB(SPACE, seed=0)
    assert own.set_search_properties("acc", "max", {"other": uniform(0, 1)}) is False  # keeps its space
    assert (own.metric, own.mode) == ("acc", "max")
    only_mode = TuneBOHB(SPACE, mode="min")
    assert only_mode.metric == "_metric"
    with pytest.raises(RuntimeError, match="no search space"):
        TuneBOHB(metric="loss", mode="min").suggest("t")
    with pytest.raises(RuntimeError, match="needs a metric and a mode"):
        TuneBOHB(SPACE).suggest("t")
    with pytest.raises(ValueError, match="mode 'min' or 'max'"):
        TuneBOHB(SPACE, mode="best")
    with pytest.raises(TypeError, match="seed"):
        TuneBOHB(SPACE, seed=1.5)
    with pytest.raises(TypeError, match="ConfigurationSpace"):
        TuneBOHB([1, 2])
    search = TuneBOHB(SPACE, metric="loss", mode="min", seed=0)
    search.suggest("t")
    with pytest.raises(RuntimeError, match="expected the metric 'loss'.*acc"):
        search.on_trial_result("t", {"acc": 1.0, "hyperband_info": {"budget": 1}})


def test_results_without_hyperband_info_warn_once_and_teach_nothing(caplog):
    search = TuneBOHB(SPACE, metric="loss", mode="min", seed=0)
    search.suggest("t")
    with caplog.at_level(logging.WARNING, logger="fasttune.search.bohb.bohb_search"):
        search.on_trial_result("t", {"loss": 1.0})
        search.on_trial_result("t", {"loss": 1.0})
    assert caplog.text.count("HyperBandForBOHB") == 1
    assert search.bohber.losses == {}


def test_max_concurrent_counts_running_trials_not_paused_ones():
    search = TuneBOHB(SPACE, metric="loss", mode="min", seed=0, max_concurrent=2)
    assert search.suggest("a") is not None and search.suggest("b") is not None
    assert search.suggest("c") is None
    search.on_trial_result("a", {"loss": 1.0, "hyperband_info": {"budget": 1, "paused": True}})
    assert search.suggest("c") is not None  # a paused at its milestone
    search.on_trial_result("a", {"loss": 1.0, "hyperband_info": {}})  # resumed
    assert search.suggest("d") is None
    search.on_trial_complete("b")
    assert search.suggest("d") is None  # a and c run
    search.on_trial_complete("c")
    assert search.suggest("d") is not None
    limited = ConcurrencyLimiter(TuneBOHB(SPACE, metric="loss", mode="min"), max_concurrent=3)
    assert limited.searcher._max_concurrent == 3


def test_missing_hpbandster_or_configspace_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "hpbandster.optimizers.config_generators.bohb", None)
    with pytest.raises(ImportError, match=r'TuneBOHB needs hpbandster: pip install "fasttune\[bohb\]"'):
        TuneBOHB(SPACE)
    monkeypatch.setitem(sys.modules, "ConfigSpace", None)
    with pytest.raises(ImportError, match=r'TuneBOHB needs ConfigSpace: pip install "fasttune\[bohb\]"'):
        create_searcher("bohb")


def test_import_fasttune_loads_neither_library_nor_this_searcher():
    code = "import sys, json, fasttune; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env=dict(os.environ))
    loaded = set(json.loads(done.stdout))
    assert not loaded & {"hpbandster", "ConfigSpace", "fasttune.search.bohb", "fasttune.schedulers.hb_bohb"}
    assert TuneBOHBAtRayPath is TuneBOHB
    assert type(create_searcher("bohb", metric="loss", mode="min")) is TuneBOHB


# ---- checkpoints ------------------------------------------------------------------------------
def test_an_errored_trial_that_runs_again_is_registered_again_at_each_budget_once():
    """After on_trial_complete(error=True) a restore may restart the trial or resume it from
    its checkpoint: its later budgets reach the model; a budget it reported before its
    error (a restart reports it again), or one reported again after a restore, is not
    registered twice.  A trial that ended is not known again."""
    search = TuneBOHB(SPACE, metric="loss", mode="min", seed=0)
    search.suggest("a")
    search.suggest("b")
    search.on_trial_result("a", {"loss": 2.0, "hyperband_info": {"budget": 1, "paused": True}})
    search.on_trial_complete("a", error=True)
    search.on_trial_result("a", {"loss": 2.0, "hyperband_info": {"budget": 1, "paused": True}})  # restarted
    search.on_trial_result("a", {"loss": 1.0, "hyperband_info": {"budget": 3, "paused": True}})
    assert search.bohber.losses == {1: [2.0], 3: [1.0]}
    assert "a" in search.paused and "a" in search.trial_to_params
    search.on_trial_result("b", {"loss": 5.0, "hyperband_info": {"budget": 1}})
    search.on_trial_result("b", {"loss": 5.0, "hyperband_info": {"budget": 1}})  # reported again after a restore
    search.on_trial_complete("b")
    search.on_trial_result("b", {"loss": 4.0, "hyperband_info": {"budget": 3}})
    assert search.bohber.losses == {1: [2.0, 5.0], 3: [1.0]}
    search.suggest("c")
    search.on_trial_complete("c", error=True)
    search.on_trial_complete("c")  # ran again and ended with no result: nothing of it is kept
    search.on_trial_result("c", {"loss": 0.5, "hyperband_info": {"budget": 9}})
    assert search.bohber.losses == {1: [2.0, 5.0], 3: [1.0]} and "c" not in search.trial_to_params


def test_save_restore_mid_sweep_gives_the_same_next_suggestions(tmp_path):
    search = TuneBOHB(SPACE, metric="loss", mode="min", seed=7,
                      points_to_evaluate=[{"x": 0.0, "opt": {"lr": 0.01}, "n": 2, "act": "tanh"}] * 2)
    drive(search, 8)  # past the points to evaluate, with models for both budgets
    path = str(tmp_path / "searcher.pkl")
    search.save(path)
    restored = TuneBOHB()
    restored.restore(path)
    assert (restored.metric, restored.mode) == ("loss", "min")
    from_dir = TuneBOHB()
    search.save_to_dir(str(tmp_path))
    from_dir.restore_from_dir(str(tmp_path))
    expected = drive(search, 6, start=8)
    assert drive(restored, 6, start=8) == expected
    assert drive(from_dir, 6, start=8) == expected
    assert expected == reference_sequence(14, seed=7, points=[flatten(
        {"x": 0.0, "opt": {"lr": 0.01}, "n": 2, "act": "tanh"})] * 2)[0][8:]


# ---- end to end on Ray ---------------------------------------------------------------------------
class Recording(TuneBOHB):
    """Logs what the sweep asked and told, in order, to replay on hpbandster by hand."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.events = []

    def suggest(self, trial_id):
        config = super().suggest(trial_id)
        if config is not None:
            self.events.append(("suggest", trial_id, {"x": config["x"], "y": config["y"]}))
        return config

    def on_trial_result(self, trial_id, result):
        info = result.get("hyperband_info", {})
        if "budget" in info:
            self.events.append(("result", trial_id, (info["budget"], result["loss"])))
        super().on_trial_result(trial_id, result)


class Quadratic(tune.Trainable):
    """The 2-D quadratic, less noisy with more iterations; pauses and resumes by checkpoint."""

    def setup(self, config):
        self.steps = 0

    def step(self):
        self.steps += 1
        x, y = self.config["x"], self.config["y"]
        return {"loss": (x - 1.0) ** 2 + (y + 2.0) ** 2 + 1.0 / self.steps}

    def save_checkpoint(self, checkpoint_dir):
        return {"steps": self.steps}

    def load_checkpoint(self, checkpoint):
        self.steps = checkpoint["steps"]


def test_bohb_sweep_on_ray_follows_brackets_and_the_generators_suggestions(ray_session, storage):
    searcher = Recording(seed=3)
    scheduler = HyperBandForBOHB(max_t=9, reduction_factor=3)
    # Each trial takes every CPU: one runs while the next waits PENDING, so brackets fill
    # (with max_concurrent_trials=1 a trial would be made only once none runs).
    trainable = tune.with_resources(Quadratic, {"cpu": ray.cluster_resources()["CPU"]})
    grid = fit(trainable, storage, {"x": uniform(-5, 5), "y": uniform(-5, 5), "tag": "q"},
               tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, metric="loss", mode="min",
                                           num_samples=17))
    assert len(grid) == 17 and not grid.errors and grid.num_terminated == 17
    assert all(r.config["tag"] == "q" for r in grid)
    # One band, largest bracket first: 9 trials from budget 1, 5 from 3, 3 from 9; each
    # trial ends at one of its bracket's milestones, as many at each as the halvings keep.
    finals = [r.metrics["training_iteration"] for r in sorted(grid, key=lambda r: r.metrics["trial_id"])]
    assert sorted(finals[:9]) == [1] * 6 + [3] * 2 + [9]
    assert sorted(finals[9:14]) == [3] * 3 + [9] * 2
    assert finals[14:] == [9] * 3
    assert scheduler.state() == {"num_brackets": 3, "num_stopped": 6 + 2 + 3}
    # The searcher saw results at every budget, and its suggestions are hpbandster's own
    # for the same seed and the same observations in the same order.
    budgets = [event[2][0] for event in searcher.events if event[0] == "result"]
    assert sorted(set(budgets)) == [1, 3, 9]
    cs = CS.ConfigurationSpace()
    cs.add(CS.UniformFloatHyperparameter("x", -5, 5))
    cs.add(CS.UniformFloatHyperparameter("y", -5, 5))
    cs.seed(3)
    np.random.seed(3)
    generator = BOHB(cs)
    configs, model_based = {}, []
    for kind, trial_id, payload in searcher.events:
        if kind == "suggest":
            config, info = generator.get_config(None)
            assert payload == {k: float(v) for k, v in config.items()}
            configs[trial_id] = config
            model_based.append(info["model_based_pick"])
        else:
            job = type("Job", (), {})()
            job.result, job.kwargs, job.exception = {"loss": payload[1]}, {"budget": payload[0],
                                                                            "config": configs[trial_id]}, None
            generator.new_result(job)
    assert len(model_based) == 17 and any(model_based)  # the model picks once budget 1 has 3+ results
    assert model_based[:3] == [False] * 3


def test_the_quality_suite_runs_bohb(ray_session):
    """BOHB is a scheduler with its searcher (budgets are iterations).  Unlike the other
    entries its curve is not reproducible to the bit on Ray: TuneBOHB is asked for the next
    trial while trials run, so what it has heard by then depends on timing (a CI run showed
    two seed-3 curves part at iteration 28).  What holds: a whole best-so-far curve of
    Branin values over the budget."""
    from bench.problems import BRANIN
    from bench.quality import SCHEDULERS, run_one

    assert "bohb" in SCHEDULERS
    curve = run_one("bohb", "branin", seed=3, budget=81)
    assert len(curve) == 81
    assert all(later <= earlier for earlier, later in zip(curve, curve[1:]))
    assert curve[-1] >= BRANIN.optimum - 1e-9 and curve[-1] < curve[0]
