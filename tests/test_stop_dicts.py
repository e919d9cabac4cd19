"""``stop`` as Ray Tune takes it: dicts with bool and nested thresholds, lists of stoppers,
and which callables count as stop functions."""
import numpy as np
import pytest

import fasttune as tune
from fasttune.experiment.experiment import _split_stop
from fasttune.stopper import CombinedStopper, FunctionStopper, MaximumIterationStopper, TrialPlateauStopper
from fasttune_testing import fit


def flags(config):
    """Seven results; ``ok`` turns true at 3, ``info/ok`` at 4."""
    for i in range(1, 8):
        tune.report({"ok": i >= 3, "info": {"ok": i >= 4}, "x": i, "done": i >= config["done_at"]})


@pytest.mark.usefixtures("ray_session")
@pytest.mark.parametrize("stop, stopped_at", [
    ({"done": True}, 5),  # (the trainable's done=True at 5 would stop it anyway; the dict is accepted)
    ({"ok": True}, 3),
    ({"ok": np.True_}, 3),
    ({"ok": 1}, 3),  # True >= 1
    ({"x": True}, 1),  # 1 >= True
    ({"info/ok": True}, 4),
    ({"info": {"ok": True}}, 4),  # a nested dict names the flattened key "info/ok"
    ({"info": {"ok": True}, "x": 2}, 2),  # the first criterion reached stops
    ([MaximumIterationStopper(2), TrialPlateauStopper("x")], 2),
], ids=["done", "bool", "numpy-bool", "int-threshold", "bool-threshold", "flat-key", "nested", "either",
        "list-of-stoppers"])
def test_a_stop_rule_ends_the_trial_at_the_exact_result(storage, stop, stopped_at):
    grid = fit(flags, storage, {"done_at": 5}, stop=stop)
    assert grid.num_errors == 0
    assert [r.metrics["training_iteration"] for r in grid] == [stopped_at]
    assert grid[0].metrics["done"] is True


def test_a_list_of_stoppers_is_combined():
    criterion, stopper = _split_stop([MaximumIterationStopper(2), TrialPlateauStopper("x")])
    assert criterion == {} and isinstance(stopper, CombinedStopper)
    assert [stopper("t", {"x": i}) for i in range(2)] == [False, True]


@pytest.mark.parametrize("stop, error, match", [
    ({"x": "high"}, TypeError, r"Stop criterion 'x' must be a number or a bool threshold .* got 'high'"),
    ({"info": {"x": None}}, TypeError, r"Stop criterion 'info/x' must be a number or a bool threshold"),
    ([MaximumIterationStopper(2), {"x": 1}], TypeError, "must hold only tune.Stopper objects .* got dict"),
    (3, TypeError, "stop must be a dict of thresholds, a function .* got int"),
])
def test_bad_stop_values_are_refused_by_name(stop, error, match):
    with pytest.raises(error, match=match):
        _split_stop(stop)


class LooksLikeAStopper:
    """Has stop_all() but does not subclass Stopper: wrapping it as a function would drop stop_all()."""

    def __call__(self, trial_id, result):
        return False

    def stop_all(self):
        return True


def test_a_stopper_that_does_not_subclass_stopper_is_refused():
    assert FunctionStopper.is_valid_function(lambda trial_id, result: False) is True
    assert FunctionStopper.is_valid_function(MaximumIterationStopper(2)) is False
    with pytest.raises(ValueError, match="LooksLikeAStopper has a stop_all\\(\\) method but does not subclass"):
        _split_stop(LooksLikeAStopper())


def test_run_config_takes_a_list_of_stoppers():
    stoppers = [MaximumIterationStopper(2)]
    assert tune.RunConfig(stop=stoppers).stop == stoppers


def test_trial_should_stop_compares_bools_as_ray_tune_does():
    from fasttune.experiment.trial import Trial

    trial = Trial("t", stopping_criterion={"info/ok": True, "x": 3})
    assert [trial.should_stop({"info/ok": ok, "x": x}) for ok, x in [(False, 1), (True, 1), (False, 3)]] == \
        [False, True, True]
