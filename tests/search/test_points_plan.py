"""Points to evaluate drawn from the sampling plan give, trial by trial, exactly what
``preset_spec`` + the general variant path give: configs with their types, tags,
evaluated params, the draws of what a point leaves out, warnings, errors and restores."""
import copy
import logging
import pickle

import numpy as np
import pytest

from fasttune.search import basic_variant
from fasttune.search._rng import as_rng
from fasttune.search._sampling_plan import SamplingPlan
from fasttune.search.basic_variant import BasicVariantGenerator
from fasttune.search.sample import choice, grid_search, loguniform, randint, sample_from, uniform

from plan_testing import SEEDS, FakeExperiment, drawn_trials, typed

# A space the plan draws alone, and one where only points set what it cannot draw.
PLAIN = {
    "lr": loguniform(1e-4, 1e-1),
    "opt": {"name": choice(["adam", "sgd"]), "momentum": 0.9, "betas": [uniform(0.8, 0.99), 0.999]},
    "layers": randint(1, 5),
    "label": "run",
    "empty": {},
}
OPEN = {
    "row": randint(0, 100),
    "width": sample_from(lambda spec: spec.config.row * 2),
    "act": grid_search(["relu", "tanh"]),
    "drop": uniform(0, 0.5),
}

FLAT = {
    "row": randint(0, 10),
    "lr": uniform(0, 1),
    "label": "run",
    "act": grid_search(["relu", "tanh"]),
    "width": sample_from(lambda spec: spec.config.row * 2),
}

PLAN_POINTS = {
    "full": (OPEN, [{"row": 3, "width": 7, "act": "relu", "drop": 0.1}, {"row": 4, "width": 9, "act": "x", "drop": 0.2}]),
    "full_in_another_order": ({"a": {"x": uniform(0, 1), "y": 1}, "b": randint(0, 9), "c": {}},
                              [{"c": {}, "b": 2, "a": {"y": 5, "x": 0.5}}, {"b": 3, "c": {}, "a": {"x": 0.1, "y": 1}}]),
    "partial": (PLAIN, [{"lr": 0.01}, {"opt": {"name": "sgd"}}, {}, {"layers": 2, "opt": {"betas": 0.5}}]),
    "open_set_rest_drawn": (OPEN, [{"width": 5, "act": "tanh"}, {"act": "relu", "width": 1, "row": 2}]),
    "constants": (PLAIN, [{"label": "other", "opt": {"momentum": 0.5}}, {"opt": 3, "empty": None}]),
    "nested": (PLAIN, [{"opt": {"name": "adam", "momentum": 0.1}}, {"opt": {}, "lr": 0.2}]),
    "numpy": (PLAIN, [{"lr": np.float32(0.5), "layers": np.int64(3), "opt": {"name": np.str_("sgd"), "momentum": np.bool_(True)}}]),
    "outside": (PLAIN, [{"lr": 5.0, "layers": 100, "label": "x", "opt": {"name": "rmsprop", "betas": 1}}]),
    "function_value": (PLAIN, [{"label": abs}]),
    # Every value, plain, in the space's order (the fast path of point_overlay), some outside their domain.
    "flat_full": (FLAT, [{"row": 3, "lr": 0.5, "label": "run", "act": "relu", "width": 2},
                         {"row": 100, "lr": -1.0, "label": "other", "act": "sigmoid", "width": None}]),
}
GENERAL_POINTS = {
    "list_element": (PLAIN, [{"opt": {"betas": [0.9, 0.99]}}]),
    "dict_for_a_domain": (PLAIN, [{"lr": {"a": 1}}]),
    "domain_value": (PLAIN, [{"lr": uniform(0, 1)}]),
    "tuple_value": (PLAIN, [{"label": (1, 2)}]),
    "list_value": (PLAIN, [{"label": [1, 2]}]),
    "leaves_a_sample_from": (OPEN, [{"act": "relu"}]),
    "leaves_a_grid": (OPEN, [{"width": 1}]),
}


def _generator(monkeypatch, use_plan, space, points, num_samples, seed="int"):
    monkeypatch.setattr(basic_variant, "_USE_SAMPLING_PLAN", use_plan)
    generator = BasicVariantGenerator(points_to_evaluate=points, random_state=SEEDS[seed]())
    generator.add_configurations(FakeExperiment(space, num_samples))
    return generator


def _sweep(monkeypatch, use_plan, space, points, num_samples, seed, general_points=True):
    if not general_points:
        monkeypatch.setattr(basic_variant, "preset_spec", _never)
    if seed == "global":
        np.random.seed(3)
    generator = _generator(monkeypatch, use_plan, space, points, num_samples, seed)
    total = generator.total_samples
    trials = drawn_trials(generator)
    # The same draws were made: the global generator is left at the same place.
    return total, trials, np.random.random() if seed == "global" else None


def _never(*args, **kwargs):
    raise AssertionError("a point the plan can draw took the general path")


def _plan_draws(space, point):
    return SamplingPlan.compile({"config": space}).point_overlay(point) is not None


@pytest.mark.parametrize("seed", sorted(SEEDS))
@pytest.mark.parametrize("case", sorted(PLAN_POINTS))
def test_points_drawn_from_the_plan_give_the_trials_of_the_general_path(monkeypatch, case, seed):
    space, points = PLAN_POINTS[case]
    assert all(_plan_draws(space, point) for point in points)
    # More samples than points: the rest are drawn after them, by the plan where it can.
    planned = _sweep(monkeypatch, True, space, points, len(points) + 2, seed, general_points=False)
    monkeypatch.undo()
    general = _sweep(monkeypatch, False, space, points, len(points) + 2, seed)
    assert len(planned[1]) == planned[0] >= len(points) + 2
    assert planned == general


@pytest.mark.parametrize("case", sorted(GENERAL_POINTS))
def test_points_the_plan_cannot_reproduce_take_the_general_path(monkeypatch, case):
    space, points = GENERAL_POINTS[case]
    assert not any(_plan_draws(space, point) for point in points)
    assert _sweep(monkeypatch, True, space, points, 3, "int") == _sweep(monkeypatch, False, space, points, 3, "int")


def test_a_full_point_draws_nothing_and_tags_no_values(monkeypatch):
    space, points = PLAN_POINTS["full"]
    generator = _generator(monkeypatch, True, space, points, 2, "random_state")
    before = generator._rng.get_state()[1].copy()
    trial = generator.next_trial()
    assert trial.trial_id == "0" and trial.evaluated_params == {}
    assert trial.config == points[0] and type(trial.config["row"]) is int
    # Only the look-ahead to the second point ran, and it draws nothing either.
    assert np.array_equal(generator._rng.get_state()[1], before)


def test_a_full_point_is_copied_in_the_spaces_order_without_a_look_at_each_entry():
    space, points = PLAN_POINTS["full_in_another_order"]
    plan = SamplingPlan.compile({"config": space})
    overlay = plan.point_overlay(points[0])
    # A node holding nested dicts is made entry by entry (each its own copy); those dicts are whole.
    assert overlay["config"]["a"].whole and overlay["config"]["c"].whole and not overlay["config"].whole
    flat_space, flat_points = PLAN_POINTS["full"]
    flat_plan = SamplingPlan.compile({"config": flat_space})
    flat_overlay = flat_plan.point_overlay(flat_points[0])
    # A whole point of a spec that is the config alone: the point itself, each draw a copy of it.
    assert flat_overlay.draws_nothing and flat_overlay["config"] is flat_points[0]
    flat_spec = flat_plan.draw(as_rng(0), flat_overlay)[1]
    assert flat_spec == {"config": flat_points[0]} and flat_spec["config"] is not flat_points[0]
    # In a spec with more than the config, the point's config is a copy, whole.
    assert SamplingPlan.compile({"config": flat_space, "n": 1}).point_overlay(flat_points[0])["config"].whole
    resolved_vars, spec = plan.draw(as_rng(0), overlay)
    assert resolved_vars == {} and spec == {"config": {"a": {"x": 0.5, "y": 5}, "b": 2, "c": {}}}
    assert list(spec["config"]) == ["a", "b", "c"] and list(spec["config"]["a"]) == ["x", "y"]
    assert spec["config"]["a"] is not overlay["config"]["a"] and spec["config"]["c"] is not points[0]["c"]
    partial = plan.point_overlay({"b": 2, "a": {"x": 0.5}})
    assert not partial["config"].whole and not partial["config"]["a"].whole


@pytest.mark.parametrize("use_plan", [True, False])
def test_points_outside_their_domain_warn_once_at_add_time(monkeypatch, caplog, use_plan):
    space, points = PLAN_POINTS["outside"]
    with caplog.at_level(logging.WARNING, logger="fasttune.search.variant_generator"):
        generator = _generator(monkeypatch, use_plan, space, points * 2, 3)
        added = [record.getMessage() for record in caplog.records]
        drawn_trials(generator)
    assert [record.getMessage() for record in caplog.records] == added
    assert len(added) == 2 * 5
    assert "'config/lr' is outside its search space" in added[0]
    assert "replaces the constant 'run'" in added[2]
    assert "replaces the constant [Float(0.8, 0.99) sampler=Uniform, 0.999]" in added[4]


@pytest.mark.parametrize(
    "space,points",
    [PLAN_POINTS["outside"], PLAN_POINTS["flat_full"],
     ({"shape": (1, 2), "x": uniform(0, 1)}, [{"shape": 3, "x": -1}, {"shape": [1, 2]}])],
)
def test_warnings_are_those_of_the_general_path(monkeypatch, caplog, space, points):
    messages = []
    for use_plan in (True, False):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="fasttune.search.variant_generator"):
            _generator(monkeypatch, use_plan, space, points, 1)
        messages.append([record.getMessage() for record in caplog.records])
    assert messages[0] == messages[1] and messages[0]


@pytest.mark.parametrize("use_plan", [True, False])
def test_a_point_naming_a_key_not_in_the_space_is_refused_at_add_time(monkeypatch, use_plan):
    with pytest.raises(ValueError, match="sets 'config/opt/nope', which is not in the param_space"):
        _generator(monkeypatch, use_plan, PLAIN, [{"lr": 0.1}, {"opt": {"nope": 1}}], 2)


def test_trials_share_no_containers_with_each_other_or_the_points(monkeypatch):
    points = [{"opt": {"name": "sgd"}}, {"opt": {"name": "sgd"}, "lr": 0.1}]
    kept = pickle.loads(pickle.dumps(points))
    generator = _generator(monkeypatch, True, PLAIN, points, 3)
    assert generator._points_to_evaluate[0] is not points[0]
    assert generator._points_to_evaluate[0]["opt"] is not points[0]["opt"]
    configs = [generator.next_trial().config for _ in range(3)]
    for first, second in [(configs[0], configs[1]), (configs[1], configs[2])]:
        assert first["opt"] is not second["opt"] and first["opt"]["betas"] is not second["opt"]["betas"]
        assert first["empty"] is not second["empty"]
    assert all(config["opt"] is not point["opt"] for config in configs[:2] for point in points)
    configs[0]["opt"]["name"] = "changed"
    configs[0]["opt"]["betas"].append(1)
    assert points == kept and configs[1]["opt"] == {"name": "sgd", "momentum": 0.9, "betas": configs[1]["opt"]["betas"]}
    assert len(configs[1]["opt"]["betas"]) == 2


@pytest.mark.parametrize("seed", ["int", "generator", "random_state"])
@pytest.mark.parametrize("save_with_plan,restore_with_plan", [(True, True), (True, False), (False, True)])
@pytest.mark.parametrize("taken", range(9))  # every position: points, then samples
def test_restore_mid_points_continues_with_the_same_trials(monkeypatch, seed, save_with_plan, restore_with_plan, taken):
    space = PLAIN
    points = PLAN_POINTS["partial"][1] + GENERAL_POINTS["list_element"][1]
    expected = drawn_trials(_generator(monkeypatch, False, space, points, 8, seed))

    saved = _generator(monkeypatch, save_with_plan, space, points, 8, seed)
    before = drawn_trials(saved, taken)
    state = pickle.loads(pickle.dumps(saved.get_state()))
    general_state = _generator(monkeypatch, False, space, points, 8, seed)
    drawn_trials(general_state, taken)
    for field in ("origin", "taken", "points_left", "samples_left", "active"):
        assert state["experiments"][0][field] == general_state.get_state()["experiments"][0][field]
    assert "points" not in state["experiments"][0]  # (how many are left, not each again)
    restored = _generator(monkeypatch, restore_with_plan, space, [], 1, "int")
    restored.set_state(state)
    assert before + drawn_trials(restored) == expected

    # A state saved by the version that listed the points left restores the same way.
    left = state["experiments"][0].pop("points_left")
    state["experiments"][0]["points"] = copy.deepcopy(points[len(points) - left:] if left else [])
    state["version"] = 1
    restored = _generator(monkeypatch, restore_with_plan, space, [], 1, "int")
    restored.set_state(state)
    assert before + drawn_trials(restored) == expected


def test_a_state_from_a_newer_version_is_refused_with_what_to_do(monkeypatch):
    saved = _generator(monkeypatch, True, PLAIN, PLAN_POINTS["partial"][1], 3, "int")
    state = saved.get_state()
    state["version"] = basic_variant._STATE_VERSION + 1
    with pytest.raises(ValueError, match="Restore it with the fasttune version that saved it"):
        _generator(monkeypatch, True, PLAIN, [], 1, "int").set_state(state)


@pytest.mark.parametrize("case", ["partial", "full"])
def test_each_points_overlay_is_worked_out_once(monkeypatch, case):
    # add_configurations's check of a point keeps its overlay for the draw (a simulated sweep
    # of 10,000 points paid the work twice); the trials are those of the general path.
    space, points = PLAN_POINTS[case]
    overlays = []
    original = SamplingPlan.point_overlay
    monkeypatch.setattr(SamplingPlan, "point_overlay",
                        lambda plan, point, warn=False: overlays.append(point) or original(plan, point, warn))
    planned = _sweep(monkeypatch, True, space, points, len(points) + 1, "int")
    assert overlays == points
    monkeypatch.undo()
    assert planned == _sweep(monkeypatch, False, space, points, len(points) + 1, "int")


def _two_experiments(monkeypatch, use_plan, points, seed):
    monkeypatch.setattr(basic_variant, "_USE_SAMPLING_PLAN", use_plan)
    generator = BasicVariantGenerator(points_to_evaluate=points, random_state=SEEDS[seed]())
    generator.add_configurations([FakeExperiment(OPEN, len(points)), FakeExperiment(OPEN, len(points) + 2)])
    return generator


@pytest.mark.parametrize("seed", ["int", "generator", "random_state"])
@pytest.mark.parametrize("taken", range(11))  # every position: the first experiment's points, the second's, its samples
def test_a_point_that_draws_nothing_saves_the_state_the_general_path_saves(monkeypatch, seed, taken):
    """A point that sets every value draws nothing, so the plan reads its start state from the
    generator when it is saved rather than copying it at each such point: the saved state is
    the general path's (which copies it), also for an experiment whose last point drew nothing
    once the next experiment has drawn, and a restore goes on with the same trials."""
    full, drawn = PLAN_POINTS["full"][1], PLAN_POINTS["open_set_rest_drawn"][1]
    points = [full[0], drawn[0], full[1]]  # (the first experiment ends on a point that draws nothing)
    expected = drawn_trials(_two_experiments(monkeypatch, False, points, seed))
    assert len(expected) == 3 + 3 + 2 * 2  # (two samples of a grid of two)

    saved, general = _two_experiments(monkeypatch, True, points, seed), _two_experiments(monkeypatch, False, points, seed)
    before = drawn_trials(saved, taken)
    assert drawn_trials(general, taken) == before
    state, general_state = saved.get_state(), general.get_state()
    for mine, theirs in zip(state["experiments"], general_state["experiments"]):
        assert pickle.dumps(mine["start_state"]) == pickle.dumps(theirs["start_state"])
        assert {key: mine[key] for key in ("origin", "taken", "samples_left", "active")} == {
            key: theirs[key] for key in ("origin", "taken", "samples_left", "active")}
    restored = _two_experiments(monkeypatch, True, [], "int")
    restored.set_state(state)
    assert before + drawn_trials(restored) == expected


@pytest.mark.parametrize("seed", ["generator", "random_state"])
def test_a_users_generator_drawn_from_elsewhere_restores_as_the_general_path_does(monkeypatch, seed):
    """A generator the user passed may be drawn from between trials: the start state of a
    point that draws nothing is then the one it had when the point was taken, not when
    saved (as on the general path, which copies it at once)."""
    space, points = PLAN_POINTS["full"]
    restored_trials = []
    for use_plan in (True, False):
        shared = SEEDS[seed]()
        monkeypatch.setattr(basic_variant, "_USE_SAMPLING_PLAN", use_plan)
        generator = BasicVariantGenerator(points_to_evaluate=points, random_state=shared)
        generator.add_configurations(FakeExperiment(space, 4))
        drawn_trials(generator, 1)
        shared.random()  # the user's own draw, between the trials and the snapshot
        state = copy.deepcopy(generator.get_state())
        restored = _generator(monkeypatch, use_plan, space, [], 1, "int")
        restored.set_state(state)
        restored_trials.append(drawn_trials(restored))
    assert restored_trials[0] == restored_trials[1] and len(restored_trials[0]) == 5


def test_a_version_1_state_whose_points_hold_arrays_restores(monkeypatch):
    """Version 1 listed the points left; they are the tail of points_to_evaluate, taken as
    such (never compared: an array's == says no plain yes or no)."""
    space = {"a": uniform(0, 1)}
    points = [{"a": np.array([0.1, 0.2])}, {"a": np.array([0.3, 0.4])}, {"a": np.array([0.5, 0.6])}]
    expected = drawn_trials(_generator(monkeypatch, True, space, points, 4))
    saved = _generator(monkeypatch, True, space, points, 4)
    before = drawn_trials(saved, 1)
    state = saved.get_state()
    left = state["experiments"][0].pop("points_left")
    state["experiments"][0]["points"] = copy.deepcopy(points[len(points) - left:])
    state["version"] = 1
    state = copy.deepcopy(state)  # (its points_to_evaluate, too, are objects of their own)
    restored = _generator(monkeypatch, True, space, [], 1)
    restored.set_state(state)
    after = drawn_trials(restored)
    assert len(before + after) == 4 and repr(before + after) == repr(expected)


def test_a_seeded_searcher_copies_no_random_state_for_a_point_that_draws_nothing(monkeypatch):
    """The generator made from a seed is the searcher's own: nothing else moves it, so a
    whole point's start state is read from it when saved, not copied at each trial."""
    space, points = PLAN_POINTS["full"]
    points = points * 20
    copies = []
    real = basic_variant.Rng.get_state
    monkeypatch.setattr(basic_variant.Rng, "get_state", lambda self: copies.append(1) or real(self))
    generator = _generator(monkeypatch, True, space, points, len(points))
    assert len(drawn_trials(generator)) == 40
    assert len(copies) == 1  # (once, as the experiment runs out: the generator may go on for another)


class _Key(str):
    """A str subclass: equal to a space's key, yet not that key."""


@pytest.mark.parametrize("warn", [False, True])
def test_a_point_of_every_value_overlays_as_entry_by_entry(caplog, warn):
    from fasttune.search import _sampling_plan

    plan = SamplingPlan.compile({"config": FLAT})
    node = plan._entries["config"][1]
    for point in PLAN_POINTS["flat_full"][1] + [{_Key(key): value for key, value in PLAN_POINTS["flat_full"][1][0].items()}]:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="fasttune.search.variant_generator"):
            overlay = plan.point_overlay(point, warn=warn)["config"]
        messages = [record.getMessage() for record in caplog.records]
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="fasttune.search.variant_generator"):
            expected, _ = _sampling_plan._overlay(node, FLAT, point, ("config",), [])
            if warn:
                _generator_warnings_of(point)
        # A point under the space's very keys is its own overlay (shared: the spec is the config alone).
        assert type(overlay) is type(expected) or (overlay is point and expected.whole)
        assert list(overlay.items()) == list(expected.items())
        assert all(key is space_key for key, space_key in zip(overlay, FLAT))  # (the space's keys, not the point's)
        assert messages == [record.getMessage() for record in caplog.records]
        assert bool(messages) == (warn and point["row"] == 100)


def _generator_warnings_of(point):
    """The warnings the general path gives ``point`` (preset_spec's)."""
    from fasttune.search.variant_generator import preset_spec

    preset_spec({"config": FLAT}, point, warn=True)
