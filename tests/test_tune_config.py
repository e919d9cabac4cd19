import datetime
import math

import pytest
from hypothesis import given, strategies as st

from fasttune.tune_config import TuneConfig


def test_defaults():
    cfg = TuneConfig()
    assert cfg.metric is None and cfg.mode is None
    assert cfg.search_alg is None and cfg.scheduler is None
    assert cfg.num_samples == 1
    assert cfg.max_concurrent_trials is None
    assert cfg.time_budget_s is None
    assert cfg.reuse_actors is None
    assert cfg.trial_name_creator is None and cfg.trial_dirname_creator is None


@pytest.mark.parametrize("mode", ["min", "max"])
def test_valid_modes(mode):
    assert TuneConfig(metric="loss", mode=mode).mode == mode


@pytest.mark.parametrize("mode", ["minimize", "MAX", "", 1])
def test_bad_mode_names_value_and_choices(mode):
    with pytest.raises(ValueError) as info:
        TuneConfig(metric="loss", mode=mode)
    msg = str(info.value)
    assert repr(mode) in msg
    assert "'min'" in msg and "'max'" in msg


def test_mode_without_metric_rejected():
    with pytest.raises(ValueError, match="without a metric"):
        TuneConfig(mode="min")


def test_metric_without_mode_allowed():
    cfg = TuneConfig(metric="loss")
    assert cfg.metric == "loss" and cfg.mode is None


def test_metric_must_be_str():
    with pytest.raises(TypeError, match="metric must be a str"):
        TuneConfig(metric=3)


def test_num_samples_minus_one_means_unbounded():
    assert TuneConfig(num_samples=-1).num_samples == -1


@pytest.mark.parametrize("n", [0, -2, -100])
def test_num_samples_zero_or_other_negatives_rejected(n):
    with pytest.raises(ValueError, match=rf"num_samples={n} is not valid.*-1"):
        TuneConfig(num_samples=n)


@pytest.mark.parametrize("n", [1.5, "4", True, None])
def test_num_samples_must_be_int(n):
    with pytest.raises(TypeError, match="num_samples must be an int"):
        TuneConfig(num_samples=n)


@given(st.integers(min_value=1, max_value=10**9))
def test_num_samples_any_positive_int_accepted(n):
    assert TuneConfig(num_samples=n).num_samples == n


@given(st.integers(max_value=-2))
def test_num_samples_below_minus_one_always_rejected(n):
    with pytest.raises(ValueError):
        TuneConfig(num_samples=n)


def test_max_concurrent_trials():
    assert TuneConfig(max_concurrent_trials=4).max_concurrent_trials == 4
    with pytest.raises(ValueError, match="max_concurrent_trials=0"):
        TuneConfig(max_concurrent_trials=0)
    with pytest.raises(TypeError, match="max_concurrent_trials must be None or an int"):
        TuneConfig(max_concurrent_trials="2")


def test_time_budget_timedelta_stored_as_seconds():
    cfg = TuneConfig(time_budget_s=datetime.timedelta(minutes=1, seconds=30))
    assert cfg.time_budget_s == 90.0
    assert isinstance(cfg.time_budget_s, float)


def test_time_budget_number_stored_as_float():
    assert TuneConfig(time_budget_s=5).time_budget_s == 5.0
    assert TuneConfig(time_budget_s=0.25).time_budget_s == 0.25


@pytest.mark.parametrize(
    "budget", [0, -1, float("nan"), datetime.timedelta(0), datetime.timedelta(seconds=-3)]
)
def test_time_budget_must_be_positive(budget):
    with pytest.raises(ValueError, match="time_budget_s=.* is not valid"):
        TuneConfig(time_budget_s=budget)


@pytest.mark.parametrize("budget", ["10", True, [1]])
def test_time_budget_wrong_type(budget):
    with pytest.raises(TypeError, match="time_budget_s must be None, a number"):
        TuneConfig(time_budget_s=budget)


def test_time_budget_infinite_allowed():
    assert math.isinf(TuneConfig(time_budget_s=float("inf")).time_budget_s)


def test_reuse_actors_must_be_bool_or_none():
    assert TuneConfig(reuse_actors=True).reuse_actors is True
    with pytest.raises(TypeError, match="reuse_actors"):
        TuneConfig(reuse_actors="yes")


@pytest.mark.parametrize("field", ["trial_name_creator", "trial_dirname_creator"])
def test_name_creators(field):
    fn = lambda trial: f"t-{trial}"  # noqa: E731
    cfg = TuneConfig(**{field: fn})
    assert getattr(cfg, field)("x") == "t-x"
    with pytest.raises(TypeError, match=f"{field} must be None or a callable"):
        TuneConfig(**{field: "trial_{}"})


def test_search_alg_and_scheduler_are_stored():
    searcher, scheduler = object(), object()
    cfg = TuneConfig(search_alg=searcher, scheduler=scheduler)
    assert cfg.search_alg is searcher and cfg.scheduler is scheduler


def test_mode_comes_before_metric_as_in_ray_tune():
    cfg = TuneConfig("max", "score")
    assert (cfg.mode, cfg.metric) == ("max", "score")


def test_chdir_to_trial_dir_is_refused_as_in_ray_tune():
    assert TuneConfig().chdir_to_trial_dir == "DEPRECATED"
    with pytest.raises(DeprecationWarning, match=r"TuneConfig\(chdir_to_trial_dir=True\).*get_trial_dir"):
        TuneConfig(chdir_to_trial_dir=True)
