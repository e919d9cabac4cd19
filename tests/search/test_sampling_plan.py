"""The sampling plan gives, trial by trial, exactly what the general variant path gives."""
import pickle

import numpy as np
import pytest

from fasttune.search import basic_variant
from fasttune.search._rng import as_rng
from fasttune.search._sampling_plan import SamplingPlan
from fasttune.search.basic_variant import BasicVariantGenerator
from fasttune.search.sample import (
    Categorical,
    Float,
    Integer,
    choice,
    grid_search,
    lograndint,
    loguniform,
    qlograndint,
    qloguniform,
    qrandint,
    qrandn,
    quniform,
    randint,
    randn,
    sample_from,
    uniform,
)

from plan_testing import SEEDS, FakeExperiment, drawn_trials, typed


SPACES = {
    "flat": {"x": uniform(0, 1)},
    "nested_with_constants": {
        "lr": loguniform(1e-4, 1e-1),
        "opt": {"name": choice(["adam", "sgd"]), "momentum": 0.9, "betas": [uniform(0.8, 0.99), 0.999]},
        "layers": randint(1, 5),
        "label": "run",
        "nothing": None,
        "empty": {},
        "activation": abs,
    },
    "every_domain": {
        "uniform": uniform(-2, 3),
        "quniform": quniform(0, 1, 0.1),
        "loguniform": loguniform(1e-5, 1, base=2),
        "qloguniform": qloguniform(1, 1000, 1),
        "randn": randn(1.0, 2.0),
        "qrandn": qrandn(10.0, 5.0, 0.5),
        "randint": randint(-3, 7),
        "qrandint": qrandint(0, 10, 5),
        "lograndint": lograndint(1, 100),
        "qlograndint": qlograndint(2, 64, 2),
        "default_float": Float(0, 1),
        "integer": Integer(0, 4).uniform(),
        "numpy_choice": choice([np.float32(0.5), np.int64(3), np.float64(2.25), "a b/c", None, True, np.bool_(False)]),
        "int_keys": {0: choice([1, 2, 3]), "b": uniform(0, 1), 2: 7},
        "deep": {"a": {"b": [randint(0, 9), {"c": Categorical([1.5, 2.5]).uniform()}]}},
    },
    "constants_only": {"a": 1, "b": [1, {"c": "d"}]},
}


def _generator(monkeypatch, use_plan, space, num_samples, seed, points=None):
    monkeypatch.setattr(basic_variant, "_USE_SAMPLING_PLAN", use_plan)
    generator = BasicVariantGenerator(points_to_evaluate=points, random_state=SEEDS[seed]())
    generator.add_configurations(FakeExperiment(space, num_samples))
    assert (generator._experiments[0].plan is not None) == use_plan
    return generator


def _sweep(monkeypatch, use_plan, space, seed, num_samples=6, points=None):
    if seed == "global":
        np.random.seed(3)
    trials = drawn_trials(_generator(monkeypatch, use_plan, space, num_samples, seed, points))
    # The same draws were made: the global generator is left at the same place.
    after = np.random.random() if seed == "global" else None
    return trials, after


@pytest.mark.parametrize("seed", sorted(SEEDS))
@pytest.mark.parametrize("space_name", sorted(SPACES))
def test_plan_gives_the_trials_of_the_general_path(monkeypatch, space_name, seed):
    planned = _sweep(monkeypatch, True, SPACES[space_name], seed)
    general = _sweep(monkeypatch, False, SPACES[space_name], seed)
    assert len(planned[0]) == 6
    assert planned == general


@pytest.mark.parametrize("seed", sorted(SEEDS))
def test_points_to_evaluate_come_first_and_the_plan_draws_the_rest(monkeypatch, seed):
    space = SPACES["nested_with_constants"]
    points = [{"lr": 0.01}, {"opt": {"name": "sgd", "betas": [0.9, 0.99]}}]
    planned = _sweep(monkeypatch, True, space, seed, num_samples=5, points=points)
    general = _sweep(monkeypatch, False, space, seed, num_samples=5, points=points)
    assert len(planned[0]) == 5
    assert planned == general


@pytest.mark.parametrize("seed", sorted(SEEDS))
def test_experiments_with_and_without_a_plan_in_one_sweep(monkeypatch, seed):
    def sweep(use_plan):
        if seed == "global":
            np.random.seed(4)
        generator = _generator(monkeypatch, use_plan, SPACES["flat"], 3, seed)
        generator.add_configurations(FakeExperiment({"g": grid_search([1, 2]), "x": uniform(0, 1)}, 2))
        generator.add_configurations(FakeExperiment(SPACES["every_domain"], 3))
        return drawn_trials(generator)

    planned = sweep(True)
    assert len(planned) == 3 + 4 + 3
    assert planned == sweep(False)


def test_trials_own_their_config(monkeypatch):
    generator = _generator(monkeypatch, True, SPACES["nested_with_constants"], 2, "int")
    first, second = generator.next_trial().config, generator.next_trial().config
    assert first["opt"] is not second["opt"] and first["opt"]["betas"] is not second["opt"]["betas"]
    assert first["empty"] is not second["empty"]
    first["opt"]["betas"].append(1)
    assert second["opt"]["betas"][1:] == [0.999]


@pytest.mark.parametrize("seed", ["int", "generator", "random_state"])
@pytest.mark.parametrize("save_with_plan,restore_with_plan", [(True, True), (True, False), (False, True)])
def test_restore_mid_sweep_continues_with_the_same_trials(monkeypatch, seed, save_with_plan, restore_with_plan):
    space = SPACES["every_domain"]
    points = [{"uniform": 0.5}]
    expected = drawn_trials(_generator(monkeypatch, False, space, 7, seed, points))

    saved = _generator(monkeypatch, save_with_plan, space, 7, seed, points)
    before = drawn_trials(saved, 3)
    state = pickle.loads(pickle.dumps(saved.get_state()))
    restored = _generator(monkeypatch, restore_with_plan, space, 1, "int")
    restored.set_state(state)
    assert before + drawn_trials(restored) == expected


@pytest.mark.parametrize(
    "space",
    [
        {"x": grid_search([1, 2]), "y": uniform(0, 1)},
        {"x": sample_from(lambda: 1)},
        {"x": (uniform(0, 1), 2)},
        {"x": choice([[1, 2], [3]])},
        {"x": choice([uniform(0, 1), 2])},
        {"x": {"grid_search": [1, 2]}},
        {"x": Categorical([1, 2]).grid()},
        {"x": type("Config", (dict,), {})(a=uniform(0, 1))},
        {"x": {1, 2}},
    ],
)
def test_spaces_the_plan_cannot_draw_take_the_general_path(space):
    assert not SamplingPlan.compile({"config": space}).complete


# Domains the plan draws straight from the generator, with bounds where the domain's own
# draw clips (log-uniform), has one value (randint(4, 5)) or takes int bounds.
DIRECT_SPACE = {
    "uniform": uniform(0, 1),
    "negative_uniform": uniform(-2.5, -0.5),
    "loguniform": loguniform(1e-5, 1, base=2),
    "loguniform_int_bounds": loguniform(1, 1000),
    "narrow_loguniform": loguniform(0.1, 0.1000001),
    "randn": randn(1.0, 2.0),
    "randint": randint(-3, 7),
    "one_value": randint(4, 5),
    "choice": choice([np.float32(0.5), np.int64(3), "a", None, True]),
    "default_float": Float(0, 1),
    "default_integer": Integer(0, 4),
}


@pytest.mark.parametrize("seed", sorted(SEEDS))
def test_direct_draws_give_the_values_of_the_domains_own_draw(monkeypatch, seed):
    # Many samples, so that a value off by one ulp or of another type would show.
    planned = _sweep(monkeypatch, True, DIRECT_SPACE, seed, num_samples=300)
    assert len(planned[0]) == 300
    assert planned == _sweep(monkeypatch, False, DIRECT_SPACE, seed, num_samples=300)


def test_direct_draws_skip_the_domains_sampling_code(monkeypatch):
    calls = []
    for domain_class in (Float, Integer, Categorical):
        own = domain_class._sample_with
        monkeypatch.setattr(domain_class, "_sample_with",
                            lambda self, *args, own=own: calls.append(self) or own(self, *args))
    plan = SamplingPlan.compile({"config": DIRECT_SPACE})
    resolved_vars, spec = plan.draw(as_rng(0))
    assert len(resolved_vars) == len(DIRECT_SPACE) and calls == []
    assert type(spec["config"]["randint"]) is int and type(spec["config"]["uniform"]) is float


def test_direct_draws_fall_back_to_the_domains_error_for_bounds_it_rejects():
    domain = uniform(0, 1)
    plan = SamplingPlan.compile({"config": {"x": domain}})
    domain.upper = float("inf")  # changed after the plan was made: read at each draw
    with pytest.raises(ValueError, match="uniform sampling needs finite bounds"):
        plan.draw(as_rng(0))
