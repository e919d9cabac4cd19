"""TrialPlateauStopper and ExperimentPlateauStopper: exact decisions on given result
sequences, the same decisions as Ray Tune's own classes on seeded sequences, their state
through an experiment snapshot, and a short run on the real Ray."""
import numpy as np
import pytest

import fasttune as tune
from fasttune._serialization import DataOnlyLoader, pack
from fasttune.stopper import ExperimentPlateauStopper, TrialPlateauStopper
from fasttune_testing import fit


def decisions(stopper, results):
    """``stopper``'s answer to each ``(trial_id, result)``, in order."""
    return [bool(stopper(trial_id, result)) for trial_id, result in results]


def of(trial_id, values, metric="m"):
    return [(trial_id, {metric: value}) for value in values]


# ---- TrialPlateauStopper ------------------------------------------------------------------
def test_trial_plateau_waits_for_the_grace_period():
    stopper = TrialPlateauStopper("m", std=0.1, num_results=2, grace_period=4)
    assert decisions(stopper, of("t", [1, 1, 1, 1])) == [False, False, False, True]


def test_trial_plateau_waits_for_a_full_window():
    stopper = TrialPlateauStopper("m", std=0.1, num_results=3, grace_period=1)
    assert decisions(stopper, of("t", [1, 1, 1])) == [False, False, True]


def test_trial_plateau_needs_a_spread_strictly_below_std():
    # population std of [0, 2] is exactly 1.0
    assert decisions(TrialPlateauStopper("m", std=1.0, num_results=2, grace_period=2), of("t", [0, 2])) == [False, False]
    assert decisions(TrialPlateauStopper("m", std=1.01, num_results=2, grace_period=2), of("t", [0, 2])) == [False, True]


def test_trial_plateau_window_slides_over_the_last_results():
    stopper = TrialPlateauStopper("m", std=0.01, num_results=3, grace_period=3)
    assert decisions(stopper, of("t", [0.9, 0.5, 0.3, 0.301, 0.302])) == [False, False, False, False, True]


def test_trial_plateau_threshold_min_and_max():
    low = TrialPlateauStopper("m", std=0.1, num_results=2, grace_period=2, metric_threshold=0.5, mode="min")
    # [0.9, 0.9] is flat but above the threshold; 0.5 is at it but the window [0.9, 0.5] is not flat.
    assert decisions(low, of("t", [0.9, 0.9, 0.5, 0.5])) == [False, False, False, True]
    high = TrialPlateauStopper("m", std=0.1, num_results=2, grace_period=2, metric_threshold=0.8, mode="max")
    assert decisions(high, of("t", [0.7, 0.7, 0.9, 0.9])) == [False, False, False, True]


def test_trial_plateau_keeps_going_while_a_missing_value_is_in_the_window():
    stopper = TrialPlateauStopper("m", std=0.1, num_results=2, grace_period=2)
    results = [("t", {"m": 1}), ("t", {"other": 1}), ("t", {"m": 1}), ("t", {"m": 1})]
    assert decisions(stopper, results) == [False, False, False, True]
    thresholded = TrialPlateauStopper("m", std=0.1, num_results=1, grace_period=1, metric_threshold=0, mode="min")
    assert decisions(thresholded, [("t", {"other": 1}), ("t", {"m": 0})]) == [False, True]


def test_trial_plateau_counts_each_trial_apart_and_finds_nested_metrics():
    stopper = TrialPlateauStopper("val/m", std=0.1, num_results=2, grace_period=2)
    results = [("a", {"val": {"m": 1}}), ("b", {"val": {"m": 1}}), ("b", {"val": {"m": 5}}),
               ("a", {"val": {"m": 1}}), ("b", {"val": {"m": 5}})]
    assert decisions(stopper, results) == [False, False, False, True, True]
    assert stopper.stop_all() is False


@pytest.mark.parametrize("kwargs, error, match", [
    ({"metric_threshold": 0.5}, ValueError, "needs mode='min'"),
    ({"mode": "maximize"}, ValueError, r"mode\) must be 'min', 'max' or None, got 'maximize'"),
    ({"num_results": 0}, ValueError, r"num_results\) must be an int >= 1, got 0"),
])
def test_trial_plateau_refuses_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        TrialPlateauStopper("m", **kwargs)
    with pytest.raises(TypeError, match="result key"):
        TrialPlateauStopper(3)


# ---- ExperimentPlateauStopper -------------------------------------------------------------
def test_experiment_plateau_pools_the_best_values_of_all_trials():
    stopper = ExperimentPlateauStopper("m", std=0.1, top=2, mode="min", patience=2)
    # pools: [0.5, 1.0] spread; [0.5, 0.55] flat (1 in a row); unchanged by 0.9 (2 in a row)
    assert decisions(stopper, of("a", [1.0]) + of("b", [0.5]) + of("a", [0.55]) + of("b", [0.9])) == \
        [False, False, False, True]
    assert stopper.stop_all() is True and stopper.has_plateaued() is True


def test_experiment_plateau_patience_zero_and_one_stop_at_the_first_plateau():
    for patience in (0, 1):
        stopper = ExperimentPlateauStopper("m", std=0.1, top=2, patience=patience)
        assert decisions(stopper, of("a", [1.0, 0.5, 0.55])) == [False, False, True]


def test_experiment_plateau_count_resets_when_the_pool_moves():
    stopper = ExperimentPlateauStopper("m", std=0.1, top=2, patience=3)
    assert decisions(stopper, of("a", [1.0, 0.95, 0.5, 0.52, 0.6, 0.7])) == [False] * 5 + [True]


def test_experiment_plateau_max_keeps_the_largest_and_std_is_inclusive():
    stopper = ExperimentPlateauStopper("m", std=0.1, top=2, mode="max")
    assert decisions(stopper, of("a", [1, 5, 5.05])) == [False, False, True]
    inclusive = ExperimentPlateauStopper("m", std=1.0, top=2)
    assert decisions(inclusive, of("a", [0, 2])) == [False, True]  # population std exactly 1.0


def test_experiment_plateau_needs_the_metric():
    stopper = ExperimentPlateauStopper("m", std=0.1, top=2)
    with pytest.raises(ValueError, match="trial t reported a result without the metric 'm'"):
        stopper("t", {"loss": 1})


@pytest.mark.parametrize("kwargs, match", [
    ({"mode": "best"}, r"mode\) must be 'min' or 'max', got 'best'"),
    ({"top": 1}, r"top\) must be an int greater than 1, got 1"),
    ({"top": 2.5}, r"top\) must be an int greater than 1"),
    ({"patience": -1}, r"patience\) must be an int >= 0, got -1"),
    ({"std": 0.0}, r"std\) must be a positive number, got 0.0"),
])
def test_experiment_plateau_refuses_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ExperimentPlateauStopper("m", **kwargs)


# ---- the same decisions as Ray Tune's classes ---------------------------------------------
def seeded_results(seed, trials=3, steps=30):
    """Interleaved results whose noise shrinks over time, so that plateaus come and go."""
    rng = np.random.default_rng(seed)
    results = []
    for step in range(1, steps + 1):
        for index in range(trials):
            noise = rng.normal(0, 0.5 / step)
            results.append((f"t{index}", {"m": float(1.0 / (index + 1) + noise)}))
    return results


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("kwargs", [
    {},
    {"std": 0.02, "num_results": 3, "grace_period": 5},
    {"std": 0.05, "num_results": 2, "grace_period": 1, "metric_threshold": 0.6, "mode": "min"},
    {"std": 0.05, "num_results": 5, "grace_period": 2, "metric_threshold": 0.6, "mode": "max"},
])
def test_trial_plateau_decides_as_ray_tune(seed, kwargs):
    from ray.tune.stopper import TrialPlateauStopper as RayTrialPlateauStopper

    results = seeded_results(seed)
    ours = decisions(TrialPlateauStopper("m", **kwargs), results)
    assert ours == decisions(RayTrialPlateauStopper("m", **kwargs), results)
    assert True in ours and False in ours  # the sequence exercises both answers


def converging_results(seed, sign, trials=4, steps=40):
    """Interleaved results that approach 0.2 (sign 1, from above) or -0.2 (sign -1, from below)."""
    rng = np.random.default_rng(seed)
    results = []
    for step in range(1, steps + 1):
        for index in range(trials):
            value = 0.2 + (index + 1) / step ** 2 + rng.normal(0, 0.004)
            results.append((f"t{index}", {"m": float(sign * value)}))
    return results


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("kwargs", [
    {"std": 0.01, "top": 3, "mode": "min", "patience": 0},
    {"std": 0.02, "top": 4, "mode": "max", "patience": 5},
    {"std": 0.05, "top": 2, "mode": "max", "patience": 1},
])
def test_experiment_plateau_decides_as_ray_tune(seed, kwargs):
    from ray.tune.stopper import ExperimentPlateauStopper as RayExperimentPlateauStopper

    results = converging_results(seed, 1 if kwargs["mode"] == "min" else -1)
    ours_stopper, ray_stopper = ExperimentPlateauStopper("m", **kwargs), RayExperimentPlateauStopper("m", **kwargs)
    ours, theirs = [], []
    for trial_id, result in results:
        ours.append((bool(ours_stopper(trial_id, result)), bool(ours_stopper.stop_all())))
        theirs.append((bool(ray_stopper(trial_id, result)), bool(ray_stopper.stop_all())))
    assert ours == theirs
    assert ours[0] == (False, False) and ours[-1] == (True, True)


# ---- state in experiment snapshots --------------------------------------------------------
@pytest.mark.parametrize("make, results", [
    (lambda: TrialPlateauStopper("m", std=0.05, num_results=3, grace_period=4), seeded_results(3)),
    (lambda: ExperimentPlateauStopper("m", std=0.01, top=3, patience=4), converging_results(3, 1)),
], ids=["trial", "experiment"])
def test_state_through_a_snapshot_continues_the_same_decisions(make, results):
    results = [(trial_id, {"m": np.float32(result["m"])}) for trial_id, result in results]
    expected = decisions(make(), results)
    first = make()
    assert decisions(first, results[:20]) == expected[:20]
    restored = make()
    restored.set_state(DataOnlyLoader().unpack(pack(first.get_state())))
    assert decisions(restored, results[20:]) == expected[20:]
    assert decisions(make(), results[20:]) != expected[20:]  # the state is what carries the decisions


# ---- on the real Ray ----------------------------------------------------------------------
def settles(config):
    """Reports 1/step until ``settle_at``, then a constant loss."""
    for step in range(1, 13):
        tune.report({"loss": 1.0 / min(step, config["settle_at"])})


@pytest.mark.usefixtures("ray_session")
def test_plateau_stoppers_end_trials_and_the_experiment_at_the_exact_result(storage):
    stopper = TrialPlateauStopper("loss", std=0.001, num_results=3, grace_period=3)
    grid = fit(settles, storage, {"settle_at": tune.grid_search([2, 5])}, stop=stopper)
    # flat from settle_at on: the third flat result is the one that stops
    assert {r.config["settle_at"]: r.metrics["training_iteration"] for r in grid} == {2: 4, 5: 7}
    assert all(r.metrics["done"] is True for r in grid)

    experiment = ExperimentPlateauStopper("loss", std=0.001, top=2, patience=1)
    grid = fit(settles, storage, {"settle_at": 4}, name="experiment_plateau", stop=experiment)
    # pool of the two smallest: [1/3, 1/4] spread, then [1/4, 1/4] flat at result 5
    assert [r.metrics["training_iteration"] for r in grid] == [5]
