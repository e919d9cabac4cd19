"""NevergradSearch: space conversion, points_to_evaluate, results, checkpoints, and a sweep on Ray."""
import math
import sys

import numpy as np
import pytest
import nevergrad as ng  # the test extra installs it: a missing one fails, never skips

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
from fasttune.search.nevergrad import NevergradSearch  # noqa: E402
from fasttune_testing import fit  # noqa: E402
from searcher_testing import quadratic, run_suggestions  # noqa: E402


def _random(space, n=150, seed=0):
    np.random.seed(seed)  # nevergrad seeds its parametrization from numpy's global generator
    return run_suggestions(NevergradSearch(ng.optimizers.RandomSearch, space=space, metric="loss", mode="min"), n)


def _multiple(value, q):
    return math.isclose(value / q, round(value / q), abs_tol=1e-9)


# ---- conversion: every domain ---------------------------------------------------------------
def test_the_space_becomes_a_nested_ng_dict_of_scalar_log_and_choice():
    space = {"u": uniform(0, 1), "lu": loguniform(1e-3, 1), "ri": randint(0, 3), "c": choice(["a", "b"]),
             "nested": {"lri": lograndint(1, 10)}, "const": 5}
    search = NevergradSearch(ng.optimizers.OnePlusOne, space=space, metric="loss", mode="min")
    param = search.get_state()["opt"].parametrization
    assert isinstance(param, ng.p.Dict)
    assert type(param["u"]) is ng.p.Scalar and type(param["lu"]) is ng.p.Log
    assert isinstance(param["c"], ng.p.Choice) and isinstance(param["nested"], ng.p.Dict)
    assert type(param["nested"]["lri"]) is ng.p.Log
    assert param["ri"].bounds == (np.array([0.0]), np.array([2.0]))  # randint's upper is exclusive


def test_float_domains_keep_their_bounds_steps_and_log_scale():
    space = {"u": uniform(-2, 3), "qu": quniform(0, 1, 0.25), "lu": loguniform(1e-4, 1e-1),
             "qlu": qloguniform(1, 100, 1), "n": randn(5, 2), "qn": qrandn(0, 1, 0.5)}
    configs = _random(space)
    for c in configs:
        assert -2 <= c["u"] <= 3 and isinstance(c["u"], float)
        assert 0 <= c["qu"] <= 1 and _multiple(c["qu"], 0.25)
        assert 1e-4 <= c["lu"] <= 1e-1
        assert 1 <= c["qlu"] <= 100 and _multiple(c["qlu"], 1)
        assert _multiple(c["qn"], 0.5)
    assert {c["qu"] for c in configs} == {0.0, 0.25, 0.5, 0.75, 1.0}
    assert sum(c["lu"] < 1e-3 for c in configs) > len(configs) / 5  # log scale, not uniform
    assert any(c["n"] < 4 for c in configs) and any(c["n"] > 6 for c in configs)


def test_integer_domains_respect_exclusive_and_inclusive_upper_bounds():
    space = {"ri": randint(0, 3), "qri": qrandint(0, 10, 5), "lri": lograndint(1, 10), "qlri": qlograndint(2, 20, 2)}
    configs = _random(space)
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
        "model": choice([{"kind": "a", "w": qrandint(0, 8, 4)}, {"kind": "b", "d": uniform(0, 1)}, "none"]),
    }
    kinds = set()
    for c in _random(space, n=60):
        assert c["opt"]["name"] == "sgd" and 1e-3 <= c["opt"]["lr"] <= 1
        assert c["layers"][0] in (1, 2) and c["layers"][1] == 64
        model = c["model"]
        if model == "none":
            kinds.add("none")
        elif model["kind"] == "a":
            kinds.add("a")
            assert set(model) == {"kind", "w"} and model["w"] in (0, 4, 8)
        else:
            kinds.add("b")
            assert set(model) == {"kind", "d"} and 0 <= model["d"] <= 1
    assert kinds == {"a", "b", "none"}


@pytest.mark.parametrize("space, key", [
    ({"a": {"f": sample_from(lambda spec: 1)}}, "a/f"),
    ({"g": grid_search([1, 2]), "x": uniform(0, 1)}, "g"),
])
def test_unsupported_domains_are_a_value_error_naming_the_key(space, key):
    with pytest.raises(ValueError, match=f"'{key}'"):
        NevergradSearch(ng.optimizers.OnePlusOne, space=space, metric="loss", mode="min")
    with pytest.raises(ValueError, match=f"'{key}'"):
        NevergradSearch(ng.optimizers.OnePlusOne).set_search_properties("loss", "min", space)


def test_optimizer_argument_errors_are_clear():
    with pytest.raises(ValueError, match="ng.optimizers.OnePlusOne"):
        NevergradSearch(None, space={"x": uniform(0, 1)})
    instance = ng.optimizers.OnePlusOne(ng.p.Dict(x=ng.p.Scalar(lower=0, upper=1)))
    with pytest.raises(ValueError, match="optimizer_kwargs"):
        NevergradSearch(instance, optimizer_kwargs={"budget": 3})
    with pytest.raises(ValueError, match="already has its parametrization"):
        NevergradSearch(instance, space={"x": uniform(0, 1)})


def test_optimizer_kwargs_and_native_parametrizations():
    search = NevergradSearch(ng.optimizers.OnePlusOne, optimizer_kwargs={"budget": 7},
                             space=ng.p.Dict(x=ng.p.Scalar(lower=0, upper=1)), metric="loss", mode="min")
    assert search.get_state()["opt"].budget == 7
    assert 0 <= search.suggest("a")["x"] <= 1
    instance = ng.optimizers.OnePlusOne(ng.p.Instrumentation(x=ng.p.Scalar(lower=0, upper=1)))
    assert set(NevergradSearch(instance, metric="loss", mode="min").suggest("a")) == {"x"}
    array = ng.optimizers.OnePlusOne(ng.p.Array(shape=(2,)))
    search = NevergradSearch(array, space=["a", "b"], metric="loss", mode="min",
                             points_to_evaluate=[{"a": 1.0, "b": 2.0}])
    assert search.suggest("a") == {"a": 1.0, "b": 2.0}


def test_missing_nevergrad_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "nevergrad", None)
    with pytest.raises(ImportError, match=r'pip install "fasttune\[nevergrad\]"'):
        NevergradSearch(None, space={"x": uniform(0, 1)})


# ---- points_to_evaluate -----------------------------------------------------------------------
def test_points_to_evaluate_come_first_in_order():
    space = {"x": uniform(0, 1), "n": randint(1, 5), "act": choice(["relu", "tanh"]),
             "model": choice([{"kind": "a", "w": quniform(0, 1, 0.5)}, "none"]), "layers": [randint(1, 3), 64]}
    points = [{"x": 0.25, "n": 4, "act": "tanh", "model": {"kind": "a", "w": 0.5}, "layers": [2, 64]},
              {"x": 0.75, "n": 1, "act": "relu", "model": "none", "layers": [1, 64]}]
    search = NevergradSearch(ng.optimizers.OnePlusOne, space=space, metric="loss", mode="min",
                             points_to_evaluate=points)
    configs = run_suggestions(search, 4)
    assert configs[:2] == points
    assert search.get_state()["opt"].num_tell == 4


def test_a_point_missing_a_key_is_a_clear_error():
    with pytest.raises(ValueError, match=r"points_to_evaluate\[0\] has no value for 'act'"):
        NevergradSearch(ng.optimizers.OnePlusOne, space={"x": uniform(0, 1), "act": choice(["a", "b"])},
                        metric="loss", mode="min", points_to_evaluate=[{"x": 0.5}])


# ---- results ------------------------------------------------------------------------------
@pytest.mark.parametrize("mode, sign", [("min", 1.0), ("max", -1.0)])
def test_the_metric_is_told_negated_for_max(mode, sign):
    search = NevergradSearch(ng.optimizers.OnePlusOne, space={"x": uniform(0, 1)}, metric="acc", mode=mode)
    config = search.suggest("a")
    search.on_trial_complete("a", {"acc": 3.0})
    opt = search.get_state()["opt"]
    assert opt.num_tell == 1
    assert opt.current_bests["pessimistic"].mean == pytest.approx(sign * 3.0)
    assert opt.current_bests["pessimistic"].parameter.value["x"] == pytest.approx(config["x"])


def test_max_mode_moves_towards_larger_values():
    np.random.seed(0)
    search = NevergradSearch(ng.optimizers.OnePlusOne, space={"x": uniform(-5, 5)}, metric="acc", mode="max")
    for i in range(60):
        config = search.suggest(str(i))
        search.on_trial_complete(str(i), {"acc": -((config["x"] - 3.0) ** 2)})
    assert abs(search.get_state()["opt"].recommend().value["x"] - 3.0) < 0.5


def test_errors_are_not_told_and_a_missing_metric_is_an_error():
    search = NevergradSearch(ng.optimizers.OnePlusOne, space={"x": uniform(0, 1)}, metric="loss", mode="min")
    search.suggest("bad")
    search.on_trial_complete("bad", error=True)
    search.on_trial_complete("unknown", {"loss": 0.0})
    search.suggest("nan")
    search.on_trial_complete("nan", {"loss": float("nan")})
    assert search.get_state()["opt"].num_tell == 0
    search.suggest("a")
    with pytest.raises(RuntimeError, match="metric 'loss'"):
        search.on_trial_complete("a", {"acc": 1.0})


def test_search_properties_come_from_the_tuner_unless_a_space_was_given():
    search = NevergradSearch(ng.optimizers.OnePlusOne)
    with pytest.raises(RuntimeError, match="no search space"):
        search.suggest("a")
    assert search.set_search_properties("loss", "max", {"x": uniform(0, 1), "c": 3})
    assert (search.metric, search.mode) == ("loss", "max")
    assert search.suggest("a")["c"] == 3
    assert not search.set_search_properties("other", "min", {"x": uniform(0, 1)})
    with pytest.raises(RuntimeError, match="needs a metric and a mode"):
        NevergradSearch(ng.optimizers.OnePlusOne, space={"x": uniform(0, 1)}).suggest("a")


# ---- checkpoints ------------------------------------------------------------------------------
def test_save_restore_continues_the_same_sequence(tmp_path):
    np.random.seed(11)
    space = {"x": uniform(-5, 5), "n": qrandint(0, 10, 2), "act": choice(["relu", "tanh"])}

    def objective(c):
        return (c["x"] - 1) ** 2 + c["n"] + (c["act"] == "tanh")

    search = NevergradSearch(ng.optimizers.OnePlusOne, space=space, metric="loss", mode="min",
                             points_to_evaluate=[{"x": 0.0, "n": 2, "act": "relu"}])
    run_suggestions(search, 4, objective)
    search.suggest("live")
    path = str(tmp_path / "searcher.pkl")
    search.save(path)

    def finish(s):
        s.on_trial_complete("live", {"loss": 0.5})
        return run_suggestions(s, 8, objective)

    expected = finish(search)
    restored = NevergradSearch(ng.optimizers.OnePlusOne)
    restored.restore(path)
    assert (restored.metric, restored.mode) == ("loss", "min")
    assert finish(restored) == expected


# ---- end to end on Ray ---------------------------------------------------------------------------
def test_nevergrad_finds_the_optimum_region_of_a_quadratic(ray_session, storage):
    np.random.seed(0)
    # One trial at a time: each ask follows every earlier tell, so the seeded run is the
    # same every time (with several at once, which results an ask followed is timing).
    searcher = NevergradSearch(ng.optimizers.OnePlusOne)
    grid = fit(quadratic, storage, {"x": uniform(-5, 5), "y": uniform(-5, 5), "tag": "q"},
               tune_config=tune.TuneConfig(search_alg=searcher, metric="loss", mode="min", num_samples=40,
                                           max_concurrent_trials=1))
    assert len(grid) == 40 and not grid.errors
    best = grid.get_best_result()
    assert best.metrics["loss"] < 1.0
    assert abs(best.config["x"] - 1.0) < 1.0 and abs(best.config["y"] + 2.0) < 1.0
    assert all(r.config["tag"] == "q" for r in grid)
    assert searcher.get_state()["opt"].num_tell == 40


# ---- optimizers that take one ask at a time; NGOpt ------------------------------------------------
SPACE_2D = {"x": uniform(-5, 5), "y": uniform(-5, 5)}


@pytest.mark.parametrize("optimizer,kwargs", [(ng.optimizers.Cobyla, {"budget": 20}),
                                               (ng.optimizers.NGOpt, {"budget": 20})])
def test_a_sequential_optimizer_is_asked_again_only_after_a_tell(optimizer, kwargs):
    # A second ask before a tell would block forever inside Nevergrad: "not now" instead.
    search = NevergradSearch(optimizer, optimizer_kwargs=kwargs, space=SPACE_2D, metric="loss", mode="min")
    assert search.suggest("t1") is not None
    assert search.suggest("t2") is None
    search.on_trial_complete("t1", {"loss": 1.0})
    assert search.suggest("t2") is not None


def test_parallel_optimizers_still_hand_out_several_asks():
    search = NevergradSearch(ng.optimizers.OnePlusOne, space=SPACE_2D, metric="loss", mode="min")
    assert all(search.suggest(f"t{i}") is not None for i in range(3))


def test_ngopt_without_a_budget_says_to_give_one():
    search = NevergradSearch(ng.optimizers.NGOpt, space=SPACE_2D, metric="loss", mode="min")
    with pytest.raises(RuntimeError, match=r"NGOpt.ask\(\) failed.*optimizer_kwargs=\{'budget'"):
        search.suggest("t1")


def test_ngopt_with_one_worker_finishes_a_concurrent_sweep(ray_session, storage):
    # 2 CPUs would run 2 trials at once; NGOpt(budget=20, one worker) picks a sequential
    # optimizer, whose second ask used to hang the sweep.  time_budget_s only guards
    # against that hang: the sweep ends long before it.
    np.random.seed(0)
    searcher = NevergradSearch(ng.optimizers.NGOpt, optimizer_kwargs={"budget": 20})
    grid = fit(quadratic, storage, SPACE_2D, tune_config=tune.TuneConfig(
        search_alg=searcher, metric="loss", mode="min", num_samples=20, time_budget_s=120))
    assert len(grid) == 20 and not grid.errors and grid.num_terminated == 20
    assert searcher.get_state()["opt"].num_tell == 20
    assert grid.get_best_result().metrics["loss"] < 5.0


def _numpy_refuses_a_one_element_array_as_a_float():
    try:
        float(np.ones(1))
    except TypeError:
        return True
    return False


def test_ngopt_with_several_workers_fails_fit_clearly_on_a_numpy_it_does_not_support(ray_session, storage):
    # With num_workers=2 NGOpt picks a metamodel, which fits its model at the 13th ask (once
    # it has 6 results for 2 dimensions; a sweep of 2 concurrent trials has told 11 by then).
    # Nevergrad (up to 1.0.12 at least) converts a 1-element array with float() there, which
    # numpy >= 2.4 refuses: the sweep then ends with an error that says why and what to do.
    np.random.seed(0)
    searcher = NevergradSearch(ng.optimizers.NGOpt, optimizer_kwargs={"budget": 30, "num_workers": 2})

    def sweep():
        return fit(quadratic, storage, SPACE_2D, tune_config=tune.TuneConfig(
            search_alg=searcher, metric="loss", mode="min", num_samples=30, time_budget_s=120))

    if _numpy_refuses_a_one_element_array_as_a_float():
        with pytest.raises(RuntimeError, match=r"(?s)Nevergrad's NGOpt.ask\(\) failed: TypeError: only 0-dimensional "
                                               r"arrays.*numpy.*choose another optimizer"):
            sweep()
        assert searcher.get_state()["opt"].num_ask == 13
    else:  # a numpy that still converts it: the metamodel works
        grid = sweep()
        assert len(grid) == 30 and not grid.errors and grid.num_terminated == 30
