"""OptunaSearch: space conversion, ask/tell bookkeeping, warm starts, checkpoints, and a sweep on Ray."""
import builtins
import math
import pickle
import sys

import pytest
import optuna  # the test extra installs it: a missing one fails, never skips

import fasttune as tune  # noqa: E402
from fasttune.search import (  # noqa: E402
    choice,
    create_searcher,
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
from fasttune.search.optuna import OptunaSearch  # noqa: E402
from fasttune_testing import fit  # noqa: E402
from searcher_testing import quadratic  # noqa: E402

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _searcher(space, **kwargs):
    kwargs.setdefault("metric", "loss")
    kwargs.setdefault("mode", "min")
    kwargs.setdefault("seed", 0)
    return OptunaSearch(space, **kwargs)


def _distribution(domain):
    searcher = _searcher({"p": domain})
    return searcher.study, searcher._distributions["p"]


def _draws(domain, n=80):
    searcher = _searcher({"p": domain}, sampler=optuna.samplers.RandomSampler(seed=0), seed=None)
    values = []
    for i in range(n):
        values.append(searcher.suggest(str(i))["p"])
        searcher.on_trial_complete(str(i), {"loss": 0.0})
    return values


# ---- conversion of every domain ---------------------------------------------------------
@pytest.mark.parametrize(
    "domain, expected",
    [
        (uniform(-1.5, 2.0), FloatDistribution(-1.5, 2.0)),
        (quniform(0.0, 1.0, 0.25), FloatDistribution(0.0, 1.0, step=0.25)),
        (loguniform(1e-4, 1e-1), FloatDistribution(1e-4, 1e-1, log=True)),
        (randint(0, 5), IntDistribution(0, 4)),  # fasttune's upper is exclusive, Optuna's inclusive
        (lograndint(1, 100), IntDistribution(1, 99, log=True)),
        (qrandint(0, 20, 5), IntDistribution(0, 20, step=5)),  # quantized: upper included
        (qrandint(1, 12, 5), IntDistribution(5, 10, step=5)),  # only multiples of q
        (choice(["adam", "sgd", 3]), CategoricalDistribution(["adam", "sgd", 3])),
    ],
    ids=["uniform", "quniform", "loguniform", "randint", "lograndint", "qrandint", "qrandint-offset", "choice"],
)
def test_each_domain_becomes_the_matching_optuna_distribution(domain, expected):
    _, distribution = _distribution(domain)
    assert distribution == expected


def test_randint_never_draws_its_exclusive_upper_bound():
    values = _draws(randint(0, 3))
    assert set(values) == {0, 1, 2}
    assert all(isinstance(v, int) for v in values)
    assert set(_draws(lograndint(1, 4))) <= {1, 2, 3}


def test_quantized_floats_are_multiples_of_q_with_both_ends_reachable():
    values = _draws(quniform(0.0, 0.3, 0.1))
    assert set(values) == {0.0, 0.1, 0.2, 0.3}  # rounded like fasttune: 0.3, not 0.30000000000000004


def test_quantized_integers_are_multiples_of_q_upper_included():
    assert set(_draws(qrandint(1, 12, 5))) == {5, 10}
    values = _draws(qlograndint(2, 16, 2))
    assert set(values) <= {2, 4, 6, 8, 10, 12, 14, 16} and 16 in values and 2 in values
    assert all(isinstance(v, int) for v in values)


def test_qloguniform_is_searched_on_its_grid_in_log_space():
    _, distribution = _distribution(qloguniform(0.01, 10.0, 0.01))
    # Optuna has no log distribution with a step: the multiple k of q is searched (value = k * q).
    assert distribution == IntDistribution(1, 1000, log=True)
    values = _draws(qloguniform(0.01, 10.0, 0.01), n=60)
    assert all(0.01 <= v <= 10.0 and isinstance(v, float) for v in values)
    assert all(abs(v * 100 - round(v * 100)) < 1e-9 for v in values)
    assert sum(v < 0.1 for v in values) >= 10  # log-uniform: a third of the mass is below 0.1


def test_nested_dicts_are_flattened_for_optuna_and_nested_again_in_configs():
    space = {"lr": loguniform(1e-3, 1e-1), "net": {"width": choice([8, 16]), "depth": randint(1, 3)}, "batch": 32}
    searcher = _searcher(space)
    assert set(searcher._distributions) == {"lr", "net/width", "net/depth"}
    config = searcher.suggest("t1")
    assert set(config) == {"lr", "net"} and set(config["net"]) == {"width", "depth"}  # constants are not suggested
    trial = searcher._ot_trials["t1"]
    assert trial.params == {"lr": config["lr"], "net/width": config["net"]["width"], "net/depth": config["net"]["depth"]}


def test_optuna_distributions_can_be_given_directly():
    searcher = _searcher({"x": FloatDistribution(0, 1), "opt": {"name": CategoricalDistribution(["a", "b"])}})
    config = searcher.suggest("t1")
    assert 0 <= config["x"] <= 1 and config["opt"]["name"] in ("a", "b")


@pytest.mark.parametrize(
    "space, words",
    [
        ({"x": randn(0, 1)}, ["'x'", "uniform"]),
        ({"x": qrandn(0, 1, 0.5)}, ["'x'", "Normal"]),
        ({"a": {"x": sample_from(lambda spec: 1)}}, ["'a/x'", "define-by-run"]),
        ({"x": grid_search([1, 2])}, ["'x'", "choice"]),
        ({"x": [uniform(0, 1), 3]}, ["'x'", "list"]),
        ({"a/b": uniform(0, 1), "a": {"b": uniform(0, 1)}}, ["'a/b'", "rename"]),
    ],
    ids=["randn", "qrandn", "sample_from", "grid_search", "list", "name-clash"],
)
def test_domains_optuna_cannot_express_are_clear_errors(space, words):
    with pytest.raises(ValueError) as info:
        _searcher(space)
    for word in words:
        assert word in str(info.value)


def test_unsupported_domains_in_the_param_space_fail_too():
    searcher = OptunaSearch(seed=0)
    with pytest.raises(ValueError, match="'x'"):
        searcher.set_search_properties("loss", "min", {"x": randn(0, 1)})


# ---- ask / tell ------------------------------------------------------------------------
def test_results_are_told_to_the_study_with_the_right_states():
    searcher = _searcher({"x": uniform(0, 1)})
    for trial_id in ("ok", "err", "nometric", "nan"):
        searcher.suggest(trial_id)
    searcher.on_trial_result("ok", {"loss": 3.0, "training_iteration": 1})
    searcher.on_trial_result("ok", {"loss": 2.0, "training_iteration": 2})
    searcher.on_trial_result("ok", {"other": 1.0, "training_iteration": 3})  # no metric: nothing to report
    searcher.on_trial_complete("ok", {"loss": 2.0})
    searcher.on_trial_complete("err", None, error=True)
    searcher.on_trial_complete("nometric", {"other": 1.0})
    searcher.on_trial_complete("nan", {"loss": float("nan")})
    searcher.on_trial_complete("ok", {"loss": 2.0})  # a second completion is ignored
    trials = searcher.study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED, TrialState.FAIL]
    assert trials[0].value == 2.0 and trials[0].intermediate_values == {1: 3.0, 2: 2.0}
    assert searcher._ot_trials == {}


def test_suggest_is_idempotent_per_trial_id():
    searcher = _searcher({"x": uniform(0, 1)})
    assert searcher.suggest("t1") == searcher.suggest("t1")
    assert len(searcher.study.trials) == 1


def test_the_sequence_matches_optunas_own_optimize_loop():
    def objective(trial):
        return (trial.suggest_float("x", -5, 5) - 1) ** 2 + trial.suggest_float("y", -5, 5) ** 2

    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=3))
    study.optimize(objective, n_trials=25)
    searcher = _searcher({"x": uniform(-5, 5), "y": uniform(-5, 5)}, seed=3)
    for i in range(25):
        config = searcher.suggest(str(i))
        searcher.on_trial_complete(str(i), {"loss": (config["x"] - 1) ** 2 + config["y"] ** 2})
    assert [t.params for t in searcher.study.trials] == [t.params for t in study.trials]


def test_maximisation_and_a_custom_sampler():
    sampler = optuna.samplers.RandomSampler(seed=1)
    searcher = OptunaSearch({"x": uniform(0, 1)}, metric="acc", mode="max", sampler=sampler)
    assert searcher.study.direction == optuna.study.StudyDirection.MAXIMIZE
    assert searcher.study.sampler is sampler
    with pytest.raises(TypeError, match="BaseSampler"):
        OptunaSearch({"x": uniform(0, 1)}, sampler="tpe")


def test_the_default_sampler_is_a_seeded_tpe():
    searcher = _searcher({"x": uniform(0, 1)}, seed=7)
    assert isinstance(searcher.study.sampler, optuna.samplers.TPESampler)
    again = _searcher({"x": uniform(0, 1)}, seed=7)
    assert searcher.suggest("a") == again.suggest("a")


def test_multi_objective_uses_one_direction_per_metric():
    searcher = OptunaSearch({"x": uniform(0, 1)}, metric=["loss", "acc"], mode=["min", "max"], seed=0)
    assert searcher.study.directions == [optuna.study.StudyDirection.MINIMIZE, optuna.study.StudyDirection.MAXIMIZE]
    assert isinstance(searcher.study.sampler, optuna.samplers.TPESampler)
    for i in range(3):
        searcher.suggest(str(i))
    searcher.on_trial_result("0", {"loss": 1.0, "acc": 0.1, "training_iteration": 1})  # not reportable: ignored
    searcher.on_trial_complete("0", {"loss": 1.0, "acc": 0.5})
    searcher.on_trial_complete("1", {"loss": 1.0})  # one metric missing
    searcher.on_trial_complete("2", error=True)
    trials = searcher.study.trials
    assert trials[0].values == [1.0, 0.5]
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL]


def test_observed_only_metrics_are_rejected():
    with pytest.raises(ValueError, match="obs"):
        OptunaSearch({"x": uniform(0, 1)}, metric=["loss", "acc"], mode=["min", "obs"])


# ---- define-by-run --------------------------------------------------------------------
def test_define_by_run_functions_suggest_conditional_spaces_and_constants():
    def space(trial):
        kind = trial.suggest_categorical("kind", ["linear", "tree"])
        if kind == "tree":
            trial.suggest_int("tree/depth", 1, 4)
        else:
            trial.suggest_float("linear/alpha", 1e-3, 1.0, log=True)
        return {"fixed": 5}

    searcher = OptunaSearch(space, metric="loss", mode="min", seed=0)
    kinds = set()
    for i in range(12):
        config = searcher.suggest(str(i))
        kinds.add(config["kind"])
        assert config["fixed"] == 5
        if config["kind"] == "tree":
            assert set(config) == {"kind", "tree", "fixed"} and 1 <= config["tree"]["depth"] <= 4
        else:
            assert set(config) == {"kind", "linear", "fixed"} and 1e-3 <= config["linear"]["alpha"] <= 1.0
        searcher.on_trial_complete(str(i), {"loss": float(i)})
    assert kinds == {"linear", "tree"}


def test_define_by_run_must_return_a_dict_or_none_and_cannot_take_rewards():
    searcher = OptunaSearch(lambda trial: 3, metric="loss", mode="min")
    with pytest.raises(TypeError, match="dict"):
        searcher.suggest("t1")
    with pytest.raises(TypeError, match="define-by-run"):
        OptunaSearch(lambda t: None, metric="loss", mode="min", points_to_evaluate=[{"x": 1}], evaluated_rewards=[1.0])


def test_define_by_run_points_are_enqueued():
    def space(trial):
        trial.suggest_float("x", 0, 10)

    searcher = OptunaSearch(space, metric="loss", mode="min", points_to_evaluate=[{"x": 2.5}], seed=0)
    assert searcher.suggest("t1") == {"x": 2.5}


# ---- warm starts -------------------------------------------------------------------------
def test_points_to_evaluate_are_suggested_first():
    points = [{"x": 0.25, "net": {"depth": 2}}, {"x": 0.75}]
    searcher = _searcher({"x": uniform(0, 1), "net": {"depth": randint(1, 4)}, "c": 1},
                         points_to_evaluate=points)
    first, second = searcher.suggest("a"), searcher.suggest("b")
    assert first == {"x": 0.25, "net": {"depth": 2}}
    assert second["x"] == 0.75 and 1 <= second["net"]["depth"] <= 3  # the missing value is sampled


def test_points_on_log_grids_are_encoded_for_optuna():
    searcher = _searcher({"lr": qloguniform(0.01, 1.0, 0.01), "units": qlograndint(4, 64, 4)},
                         points_to_evaluate=[{"lr": 0.05, "units": 32}])
    assert searcher.suggest("a") == {"lr": 0.05, "units": 32}


def test_evaluated_rewards_become_completed_trials_in_the_study():
    points = [{"x": 0.1, "k": 1}, {"x": 0.9, "k": 2}]
    searcher = _searcher({"x": uniform(0, 1), "k": randint(0, 3)}, points_to_evaluate=points,
                         evaluated_rewards=[0.5, 2.0])
    trials = searcher.study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE]
    assert [(t.params, t.value) for t in trials] == [({"x": 0.1, "k": 1}, 0.5), ({"x": 0.9, "k": 2}, 2.0)]
    assert searcher.study.best_params == {"x": 0.1, "k": 1}
    searcher.suggest("new")
    assert len(searcher.study.trials) == 3  # the evaluated points are not run again


def test_multi_objective_evaluated_rewards():
    searcher = OptunaSearch({"x": uniform(0, 1)}, metric=["a", "b"], mode=["min", "min"],
                            points_to_evaluate=[{"x": 0.5}], evaluated_rewards=[[1.0, 2.0]])
    assert searcher.study.trials[0].values == [1.0, 2.0]
    with pytest.raises(ValueError, match="list of 2"):
        searcher.add_evaluated_point({"x": 0.2}, 1.0)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"points_to_evaluate": [{"x": 2.0}]}, ValueError, "outside"),
        ({"points_to_evaluate": [{"nope": 0.5}]}, ValueError, "'nope'"),
        ({"points_to_evaluate": [{"x": 0.5}], "evaluated_rewards": [1.0, 2.0]}, ValueError, "one value per point"),
        ({"points_to_evaluate": {"x": 0.5}}, TypeError, "list"),
    ],
    ids=["outside-domain", "unknown-key", "length-mismatch", "not-a-list"],
)
def test_bad_warm_starts_are_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        _searcher({"x": uniform(0, 1)}, **kwargs)


def test_add_evaluated_point_records_failed_and_pruned_trials():
    searcher = _searcher({"x": uniform(0, 1)})
    searcher.add_evaluated_point({"x": 0.3, "const": 1}, 1.5, intermediate_values=[3.0, 1.5])
    searcher.add_evaluated_point({"x": 0.4}, 9.0, error=True)
    searcher.add_evaluated_point({"x": 0.5}, 2.0, pruned=True)
    trials = searcher.study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED]
    assert trials[0].value == 1.5 and trials[0].intermediate_values == {0: 3.0, 1: 1.5}


# ---- metric, mode and the param space ------------------------------------------------------
def test_the_space_metric_and_mode_can_come_from_the_tuner():
    searcher = OptunaSearch(seed=0)
    assert searcher.study is None
    assert searcher.set_search_properties("loss", "max", {"x": uniform(0, 1), "batch": 8}) is True
    assert searcher.metric == "loss" and searcher.mode == "max"
    assert searcher.study.direction == optuna.study.StudyDirection.MAXIMIZE
    assert set(searcher.suggest("t1")) == {"x"}
    assert searcher.set_search_properties("loss", "max", {"y": uniform(0, 1)}) is False  # the space is taken


def test_a_searcher_with_its_own_space_declines_the_param_space_but_takes_metric_and_mode():
    searcher = OptunaSearch({"x": uniform(0, 1)}, seed=0)
    assert searcher.study is None
    assert searcher.set_search_properties("loss", "min", {}) is False
    assert (searcher.metric, searcher.mode) == ("loss", "min")
    assert "x" in searcher.suggest("t1")


def test_suggesting_without_space_or_mode_says_what_is_missing():
    with pytest.raises(RuntimeError, match="no search space"):
        OptunaSearch(metric="loss", mode="min").suggest("t1")
    with pytest.raises(RuntimeError, match="metric/mode"):
        OptunaSearch({"x": uniform(0, 1)}).suggest("t1")
    only_mode = OptunaSearch({"x": uniform(0, 1)}, mode="min")
    assert only_mode.metric == "_metric"  # as in Ray Tune


def test_missing_optuna_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # makes `import optuna` raise ImportError
    with pytest.raises(ImportError, match=r'pip install "fasttune\[optuna\]"'):
        OptunaSearch({"x": uniform(0, 1)})


def test_the_module_imports_without_optuna(monkeypatch):
    real_import = builtins.__import__

    def no_optuna(name, *args, **kwargs):
        if name == "optuna" or name.startswith("optuna."):
            raise ImportError("No module named 'optuna'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "fasttune.search.optuna")
    monkeypatch.setattr(builtins, "__import__", no_optuna)
    import fasttune.search.optuna as module  # noqa: F401

    with pytest.raises(ImportError, match="fasttune"):
        module.OptunaSearch()


def test_create_searcher_builds_an_optuna_search():
    searcher = create_searcher("optuna", metric="loss", mode="min", seed=0)
    assert type(searcher).__name__ == "OptunaSearch"


# ---- checkpoints ----------------------------------------------------------------------------
def _run(searcher, ids):
    configs = []
    for trial_id in ids:
        config = searcher.suggest(trial_id)
        configs.append(config)
        searcher.on_trial_complete(trial_id, {"loss": (config["x"] - 0.3) ** 2 + config["k"]})
    return configs


def test_save_and_restore_continue_the_same_seeded_sequence(tmp_path):
    space = {"x": uniform(0, 1), "k": randint(0, 3)}
    reference = _searcher(space, seed=11)
    _run(reference, [f"t{i}" for i in range(6)])
    pending = reference.suggest("pending")  # a trial still running at the checkpoint
    path = str(tmp_path / "searcher.pkl")
    reference.save(path)
    expected = _run(reference, [f"u{i}" for i in range(6)])
    reference.on_trial_complete("pending", {"loss": 0.0})

    restored = OptunaSearch()
    restored.restore(path)
    assert (restored.metric, restored.mode) == ("loss", "min")
    assert restored.suggest("pending") == pending
    assert _run(restored, [f"u{i}" for i in range(6)]) == expected
    restored.on_trial_complete("pending", {"loss": 0.0})
    assert [t.params for t in restored.study.trials] == [t.params for t in reference.study.trials]


def test_save_to_dir_round_trip(tmp_path):
    searcher = _searcher({"x": uniform(0, 1), "k": randint(0, 3)})
    _run(searcher, ["a", "b"])
    searcher.save_to_dir(str(tmp_path))
    restored = OptunaSearch()
    restored.restore_from_dir(str(tmp_path))
    assert len(restored.study.trials) == 2
    assert restored.suggest("c") == searcher.suggest("c")


def test_an_unpicklable_define_by_run_function_is_restored_from_the_new_searcher(tmp_path):
    space = lambda trial: {"y": trial.suggest_float("x", 0, 1) * 2}  # noqa: E731
    searcher = OptunaSearch(space, metric="loss", mode="min", seed=0)
    searcher.suggest("a")
    searcher.on_trial_complete("a", {"loss": 1.0})
    path = str(tmp_path / "s.pkl")
    searcher.save(path)
    restored = OptunaSearch(space, metric="loss", mode="min")
    restored.restore(path)
    assert restored.suggest("b") == searcher.suggest("b")
    with pytest.raises(ValueError, match="define-by-run"):
        OptunaSearch().restore(path)


# ---- a sweep on Ray ----------------------------------------------------------------------------
SPACE = {"x": uniform(-5, 5), "y": uniform(-5, 5), "scale": 1.0}


def test_optuna_finds_the_optimum_region_of_a_quadratic(ray_session, storage):
    # One trial at a time: each suggestion sees every earlier result, so the seeded run is
    # the same every time (with several at once, which results TPE saw is timing).
    searcher = OptunaSearch(seed=0)
    grid = fit(quadratic, storage, SPACE, tune_config=tune.TuneConfig(
        search_alg=searcher, metric="loss", mode="min", num_samples=40, max_concurrent_trials=1))
    assert len(grid) == 40 and not grid.errors
    best = grid.get_best_result()
    assert best.metrics["loss"] < 1.0
    assert abs(best.config["x"] - 1.0) < 1.0 and abs(best.config["y"] + 2.0) < 1.0
    assert all(r.config["scale"] == 1.0 for r in grid)  # the constant reached every trial


def test_every_trial_of_a_concurrent_sweep_is_told_to_the_study(ray_session, storage):
    searcher = OptunaSearch(seed=0)
    grid = fit(quadratic, storage, SPACE, tune_config=tune.TuneConfig(
        search_alg=searcher, metric="loss", mode="min", num_samples=40))
    assert len(grid) == 40 and not grid.errors
    completed = [t for t in searcher.study.trials if t.state == TrialState.COMPLETE]
    assert len(completed) == 40 and searcher._ot_trials == {}
    assert math.isclose(searcher.study.best_value, grid.get_best_result().metrics["loss"])
    told = sorted((t.params["x"], t.params["y"]) for t in completed)
    assert told == sorted((r.config["x"], r.config["y"]) for r in grid)


# ---- a study kept in a database ---------------------------------------------------------
def _tell_three(searcher, start):
    for i in range(start, start + 3):
        config = searcher.suggest(f"t{i}")
        searcher.on_trial_complete(f"t{i}", {"loss": (config["x"] - 1.0) ** 2})


def test_a_study_in_a_database_is_persisted_and_continued_by_name(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    first = _searcher({"x": uniform(-5.0, 5.0)}, study_name="sweep", storage=url)
    _tell_three(first, 0)
    kept = optuna.load_study(study_name="sweep", storage=url)
    assert [t.state for t in kept.trials] == [TrialState.COMPLETE] * 3
    assert [t.value for t in kept.trials] == [t.value for t in first.study.trials]
    # A second searcher with the same name and storage continues that study.
    second = _searcher({"x": uniform(-5.0, 5.0)}, study_name="sweep", storage=optuna.storages.RDBStorage(url))
    assert len(second.study.trials) == 3
    _tell_three(second, 3)
    assert len(optuna.load_study(study_name="sweep", storage=url).trials) == 6
    # Its state pickles with the storage, as checkpoints need.
    restored = _searcher({"x": uniform(-5.0, 5.0)})
    restored.set_state(pickle.loads(pickle.dumps(second.get_state())))
    assert len(restored.study.trials) == 6 and restored.study.study_name == "sweep"


def test_the_default_study_name_is_ray_tunes_and_bad_storage_is_a_clear_error():
    assert _searcher({"x": uniform(0.0, 1.0)}).study.study_name == "optuna"
    with pytest.raises(TypeError, match=r"storage must be an optuna.storages.BaseStorage or a database URL.*dict"):
        OptunaSearch({"x": uniform(0.0, 1.0)}, storage={"url": "sqlite://"})
    with pytest.raises(TypeError, match="study_name must be a str, got int"):
        OptunaSearch({"x": uniform(0.0, 1.0)}, study_name=3)
