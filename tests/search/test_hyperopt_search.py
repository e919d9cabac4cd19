"""HyperOptSearch: space conversion, points_to_evaluate, results, checkpoints, and a sweep on Ray."""
import math
import sys

import pytest
import hyperopt  # the test extra installs it: a missing one fails, never skips

import fasttune as tune  # noqa: E402
from fasttune.search import (  # noqa: E402
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
from fasttune.search.hyperopt import HyperOptSearch  # noqa: E402
from fasttune_testing import fit  # noqa: E402
from searcher_testing import quadratic, run_suggestions  # noqa: E402


def _random_phase(space, n=120, seed=0):
    """``n`` suggestions, all from TPE's random start-up phase."""
    return run_suggestions(HyperOptSearch(space, metric="loss", mode="min", n_initial_points=n, random_state_seed=seed), n)


def _multiple(value, q):
    return math.isclose(value / q, round(value / q), abs_tol=1e-9)


# ---- conversion: every domain ---------------------------------------------------------------
def test_float_domains_keep_their_bounds_steps_and_log_scale():
    space = {"u": uniform(-2, 3), "qu": quniform(0, 1, 0.25), "lu": loguniform(1e-4, 1e-1),
             "qlu": qloguniform(1, 100, 1), "n": randn(5, 2), "qn": qrandn(0, 1, 0.5)}
    configs = _random_phase(space)
    for c in configs:
        assert -2 <= c["u"] <= 3 and isinstance(c["u"], float)
        assert 0 <= c["qu"] <= 1 and _multiple(c["qu"], 0.25)
        assert 1e-4 <= c["lu"] <= 1e-1
        assert 1 <= c["qlu"] <= 100 and _multiple(c["qlu"], 1)
        assert _multiple(c["qn"], 0.5)
    assert {c["qu"] for c in configs} == {0.0, 0.25, 0.5, 0.75, 1.0}
    # log-uniform: about a third of the draws lie below 1e-3 (uniform would give ~1%)
    assert sum(c["lu"] < 1e-3 for c in configs) > len(configs) / 5
    mean = sum(c["n"] for c in configs) / len(configs)
    assert 4 < mean < 6 and any(c["n"] < 3 for c in configs) and any(c["n"] > 7 for c in configs)


def test_integer_domains_respect_exclusive_and_inclusive_upper_bounds():
    space = {"ri": randint(0, 3), "qri": qrandint(0, 10, 5), "lri": lograndint(1, 10), "qlri": qlograndint(2, 20, 2)}
    configs = _random_phase(space)
    for c in configs:
        assert all(isinstance(v, int) for v in c.values())
    assert {c["ri"] for c in configs} == {0, 1, 2}  # randint's upper is exclusive
    assert {c["qri"] for c in configs} == {0, 5, 10}  # quantized upper is included
    assert {c["lri"] for c in configs} <= set(range(1, 10)) and 9 in {c["lri"] for c in configs}
    assert {c["qlri"] for c in configs} <= set(range(2, 21, 2)) and 20 in {c["qlri"] for c in configs}


def test_nested_dicts_lists_constants_and_nested_choices():
    space = {
        "opt": {"lr": loguniform(1e-3, 1), "name": "sgd"},
        "layers": [randint(1, 3), 64],
        "act": choice(["relu", "tanh"]),
        "model": choice([{"kind": "a", "width": randint(8, 10)}, {"kind": "b", "depth": uniform(0, 1)}, "none"]),
    }
    configs = _random_phase(space, n=60)
    kinds = set()
    for c in configs:
        assert c["opt"]["name"] == "sgd" and 1e-3 <= c["opt"]["lr"] <= 1
        assert c["layers"][0] in (1, 2) and c["layers"][1] == 64
        assert c["act"] in ("relu", "tanh")
        model = c["model"]
        if model == "none":
            kinds.add("none")
        elif model["kind"] == "a":
            kinds.add("a")
            assert set(model) == {"kind", "width"} and model["width"] in (8, 9)
        else:
            kinds.add("b")
            assert set(model) == {"kind", "depth"} and 0 <= model["depth"] <= 1
    assert kinds == {"a", "b", "none"}
    assert {c["act"] for c in configs} == {"relu", "tanh"}


def test_single_value_domains_become_constants():
    configs = _random_phase({"x": uniform(0, 1), "one": randint(3, 4), "q": qrandint(5, 9, 5)}, n=5)
    assert all(c["one"] == 3 and c["q"] == 5 for c in configs)


def test_a_native_hyperopt_space_is_used_as_is():
    from hyperopt import hp

    space = {"x": hp.uniform("x", 0, 1), "act": hp.choice("act", ["relu", "tanh"])}
    search = HyperOptSearch(space, metric="loss", mode="min", random_state_seed=0,
                            points_to_evaluate=[{"x": 0.5, "act": "tanh"}])
    configs = run_suggestions(search, 10)
    assert configs[0] == {"x": 0.5, "act": "tanh"}
    assert all(0 <= c["x"] <= 1 and c["act"] in ("relu", "tanh") for c in configs)


@pytest.mark.parametrize("space, key", [
    ({"a": {"f": sample_from(lambda spec: 1)}}, "a/f"),
    ({"g": grid_search([1, 2]), "x": uniform(0, 1)}, "g"),
])
def test_unsupported_domains_are_a_value_error_naming_the_key(space, key):
    with pytest.raises(ValueError, match=f"'{key}'"):
        HyperOptSearch(space, metric="loss", mode="min")
    with pytest.raises(ValueError, match=f"'{key}'"):
        HyperOptSearch().set_search_properties("loss", "min", space)


def test_missing_hyperopt_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "hyperopt", None)
    with pytest.raises(ImportError, match=r'pip install "fasttune\[hyperopt\]"'):
        HyperOptSearch({"x": uniform(0, 1)})


# ---- points_to_evaluate -----------------------------------------------------------------------
def test_points_to_evaluate_come_first_in_order_then_tpe():
    space = {"x": uniform(0, 1), "n": randint(1, 5), "act": choice(["relu", "tanh"]),
             "model": choice([{"kind": "a", "w": quniform(0, 1, 0.5)}, "none"])}
    points = [{"x": 0.25, "n": 4, "act": "tanh", "model": {"kind": "a", "w": 0.5}},
              {"x": 0.75, "n": 1, "act": "relu", "model": "none"}]
    search = HyperOptSearch(space, metric="loss", mode="min", points_to_evaluate=points, random_state_seed=0)
    configs = run_suggestions(search, 5)
    assert configs[:2] == points
    assert len(search.get_state()["trials"].trials) == 5


def test_bad_points_to_evaluate_are_clear_errors():
    space = {"x": uniform(0, 1), "act": choice(["relu", "tanh"])}
    with pytest.raises(ValueError, match=r"points_to_evaluate\[0\] has no value for 'act'"):
        HyperOptSearch(space, metric="loss", mode="min", points_to_evaluate=[{"x": 0.5}])
    with pytest.raises(ValueError, match="'sigmoid' is not one of the choices of 'act'"):
        HyperOptSearch(space, metric="loss", mode="min", points_to_evaluate=[{"x": 0.5, "act": "sigmoid"}])


# ---- results ------------------------------------------------------------------------------
@pytest.mark.parametrize("mode, sign", [("min", 1.0), ("max", -1.0)])
def test_the_metric_is_hyperopts_loss_negated_for_max(mode, sign):
    search = HyperOptSearch({"x": uniform(0, 1)}, metric="acc", mode=mode, random_state_seed=0)
    for i, value in enumerate([0.5, 2.0]):
        search.suggest(str(i))
        search.on_trial_complete(str(i), {"acc": value})
    assert search.get_state()["trials"].losses() == [sign * 0.5, sign * 2.0]


def test_errored_trials_are_marked_failed_and_left_out():
    search = HyperOptSearch({"x": uniform(0, 1)}, metric="loss", mode="min", random_state_seed=0)
    search.suggest("ok")
    search.suggest("bad")
    search.on_trial_complete("bad", error=True)
    search.on_trial_complete("ok", {"loss": 1.0})
    trials = search.get_state()["trials"]
    assert trials.losses() == [1.0]
    assert [d["state"] for d in trials._dynamic_trials] == [hyperopt.JOB_STATE_DONE, hyperopt.JOB_STATE_ERROR]
    search.on_trial_complete("unknown", {"loss": 0.0})  # unknown trials are ignored
    search.suggest("nan")
    search.on_trial_complete("nan", {"loss": float("nan")})  # NaN counts as failed too
    assert search.get_state()["trials"].losses() == [1.0]


def test_a_result_without_the_metric_is_an_error():
    search = HyperOptSearch({"x": uniform(0, 1)}, metric="loss", mode="min")
    search.suggest("a")
    with pytest.raises(RuntimeError, match="metric 'loss'"):
        search.on_trial_complete("a", {"acc": 1.0})


def test_search_properties_come_from_the_tuner_unless_a_space_was_given():
    search = HyperOptSearch(random_state_seed=0)
    with pytest.raises(RuntimeError, match="no search space"):
        search.suggest("a")
    assert search.set_search_properties("loss", "max", {"x": uniform(0, 1), "c": 3})
    assert (search.metric, search.mode) == ("loss", "max")
    assert search.suggest("a")["c"] == 3
    assert not search.set_search_properties("other", "min", {"x": uniform(0, 1)})
    assert search.metric == "loss"
    no_metric = HyperOptSearch({"x": uniform(0, 1)})
    with pytest.raises(RuntimeError, match="needs a metric and a mode"):
        no_metric.suggest("a")


def test_same_seed_same_suggestions():
    space = {"x": uniform(-5, 5), "n": randint(0, 10)}

    def sweep():
        search = HyperOptSearch(space, metric="loss", mode="min", n_initial_points=4, random_state_seed=3)
        return run_suggestions(search, 12, lambda c: (c["x"] - 1) ** 2 + c["n"])

    assert sweep() == sweep()


# ---- checkpoints ------------------------------------------------------------------------------
def test_save_restore_continues_the_same_sequence(tmp_path):
    space = {"x": uniform(-5, 5), "act": choice(["relu", "tanh"])}

    def objective(c):
        return (c["x"] - 1) ** 2 + (c["act"] == "tanh")

    search = HyperOptSearch(space, metric="loss", mode="min", n_initial_points=3, random_state_seed=7,
                            points_to_evaluate=[{"x": 0.0, "act": "relu"}, {"x": 1.0, "act": "tanh"}])
    run_suggestions(search, 1, objective)  # one point to evaluate is still pending at the checkpoint
    search.suggest("live")  # a live trial too
    path = str(tmp_path / "searcher.pkl")
    search.save(path)

    def finish(s):
        s.on_trial_complete("live", {"loss": 0.5})
        return run_suggestions(s, 8, objective)

    expected = finish(search)
    restored = HyperOptSearch()
    restored.restore(path)
    assert (restored.metric, restored.mode) == ("loss", "min")
    assert finish(restored) == expected

    restored_dir = HyperOptSearch()
    search.save_to_dir(str(tmp_path))
    restored_dir.restore_from_dir(str(tmp_path))
    assert len(restored_dir.get_state()["trials"].trials) == len(search.get_state()["trials"].trials)


# ---- end to end on Ray ---------------------------------------------------------------------------
def test_hyperopt_finds_the_optimum_region_of_a_quadratic(ray_session, storage):
    # One trial at a time: each suggestion sees every earlier result, so the seeded run is
    # the same every time (with two at once, which results a suggestion saw is timing).
    searcher = HyperOptSearch(n_initial_points=10, random_state_seed=0)
    grid = fit(quadratic, storage, {"x": uniform(-5, 5), "y": uniform(-5, 5), "tag": "q"},
               tune_config=tune.TuneConfig(search_alg=searcher, metric="loss", mode="min", num_samples=60,
                                           max_concurrent_trials=1))
    assert len(grid) == 60 and not grid.errors
    best = grid.get_best_result()
    assert best.metrics["loss"] < 1.0
    assert abs(best.config["x"] - 1.0) < 1.0 and abs(best.config["y"] + 2.0) < 1.0
    assert all(r.config["tag"] == "q" for r in grid)
    assert len(searcher.get_state()["trials"].losses()) == 60
