"""create_scheduler: Ray Tune's scheduler names, lazily imported modules, clear errors."""
import sys

import pytest

import fasttune
from fasttune.schedulers import (
    AsyncHyperBandScheduler,
    FIFOScheduler,
    HyperBandScheduler,
    MedianStoppingRule,
    create_scheduler,
)
from fasttune.schedulers import _registry


@pytest.mark.parametrize("name,cls", [
    ("fifo", FIFOScheduler),
    ("async_hyperband", AsyncHyperBandScheduler),
    ("asha", AsyncHyperBandScheduler),
    ("ASHA", AsyncHyperBandScheduler),
    ("median_stopping_rule", MedianStoppingRule),
    ("hyperband", HyperBandScheduler),
])
def test_names_create_their_scheduler(name, cls):
    assert type(create_scheduler(name)) is cls


def test_keyword_arguments_reach_the_constructor():
    scheduler = create_scheduler("asha", metric="loss", mode="min", max_t=27, grace_period=3, reduction_factor=3)
    assert (scheduler.metric, scheduler.mode) == ("loss", "min")
    assert scheduler.rung_milestones() == [[3, 9, 27]]
    with pytest.raises(TypeError, match="unexpected keyword argument 'grace_period'"):
        create_scheduler("hyperband", grace_period=3)  # HyperBand has no grace period
    assert fasttune.create_scheduler is create_scheduler and "create_scheduler" in fasttune.__all__


def test_unknown_names_list_the_valid_ones():
    # (it named "hb_bohb", unknown until HyperBandForBOHB came with issue 18)
    with pytest.raises(ValueError) as info:
        create_scheduler("no_such_scheduler")
    message = str(info.value)
    assert "'no_such_scheduler'" in message
    for name in ("fifo", "async_hyperband", "asha", "median_stopping_rule", "hyperband", "hb_bohb", "pbt",
                 "pbt_replay", "pb2"):
        assert name in message
    with pytest.raises(TypeError, match="scheduler name"):
        create_scheduler(AsyncHyperBandScheduler)


def test_pbt_and_pb2_are_imported_only_when_asked_for(monkeypatch):
    calls = []

    class Fake:
        def __init__(self, **kwargs):
            calls.append(kwargs)

    module = type(sys)("fasttune.schedulers.pbt")
    module.PopulationBasedTraining = Fake
    module.PopulationBasedTrainingReplay = Fake
    monkeypatch.setitem(sys.modules, "fasttune.schedulers.pbt", module)
    assert isinstance(create_scheduler("pbt", perturbation_interval=4), Fake)
    assert isinstance(create_scheduler("pbt_replay", policy_file="p.txt"), Fake)
    assert calls == [{"perturbation_interval": 4}, {"policy_file": "p.txt"}]


def test_a_missing_module_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(_registry._SCHEDULERS, "pb2", ("fasttune.schedulers.no_such_module", "PB2"))
    with pytest.raises(ValueError, match="'pb2'.*not available.*no_such_module"):
        create_scheduler("pb2")
