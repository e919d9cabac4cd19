"""Anytime curves: best-so-far against simulated time and compute, from an AnytimeRecorder
that ran in the sweep, and quantiles over seeds on a common grid."""
import json
import signal
import os

import numpy as np
import pytest

import fasttune as tune
from fasttune.schedulers import ASHAScheduler
from fasttune.search import BasicVariantGenerator
from fasttune.simulation import (
    AnytimeCurve, AnytimeRecorder, FunctionBlackbox, Simulation, aggregate_curves, anytime_curve, branin_blackbox,
    learning_curve_table,
)
from fasttune_testing import fit

# Three Branin trials on two workers: epochs of 2 s (x2=15), 1 s (x2=0) and 1.2 s (x2=3).
POINTS = [{"x1": 0.0, "x2": 15.0}, {"x1": 3.0, "x2": 0.0}, {"x1": 9.0, "x2": 3.0}]


def branin_sweep(tmp_path, recorder, *, workers=2, start_time=0.0, name="branin"):
    blackbox = branin_blackbox(max_epochs=3)
    config = tune.TuneConfig(metric="loss", mode="min", num_samples=3,
                             search_alg=BasicVariantGenerator(points_to_evaluate=POINTS))
    fit(Simulation(blackbox, num_workers=workers, start_time=start_time), str(tmp_path), name=name,
        space=blackbox.search_space, tune_config=config, callbacks=[recorder])
    return blackbox


def loss(blackbox, point, epoch):
    return blackbox.evaluate(point, epoch)[0]["loss"]


def test_time_and_compute_curves_of_a_small_sweep_are_the_hand_computed_ones(tmp_path):
    """Worker 0 runs the first trial (2, 4, 6 s), worker 1 the second (1, 2, 3 s) and then
    the third (4.2, 5.4, 6.6 s).  The first trial's loss rises with its epochs."""
    recorder = AnytimeRecorder("loss")
    blackbox = branin_sweep(tmp_path, recorder)
    first, second, third = ([loss(blackbox, point, epoch) for epoch in (1, 2, 3)] for point in POINTS)
    assert first[0] < first[1] < first[2] and min(first) > max(second) > min(second) > max(third)

    times, step_seconds, values = recorder.columns()
    assert times.tolist() == pytest.approx([1.0, 2.0, 2.0, 3.0, 4.0, 4.2, 5.4, 6.0, 6.6], abs=1e-12)
    assert step_seconds.tolist() == pytest.approx([1.0, 1.0, 2.0, 1.0, 2.0, 1.2, 1.2, 2.0, 1.2], abs=1e-12)
    # equal times keep the order they were logged in: the second trial's batch came first
    assert values["loss"].tolist() == [second[0], second[1], first[0], second[2], first[1], third[0], third[1],
                                       first[2], third[2]]

    curve = anytime_curve(recorder, "loss", "min")
    assert (curve.metric, curve.mode, curve.against) == ("loss", "min", "time")
    assert curve.x.tolist() == times[[0, 1, 3, 5, 6, 8]].tolist()  # each the exact time its result was logged at
    assert curve.best.tolist() == second + third
    assert curve.final == third[2]
    assert curve.at([1.0, 2.5, 4.1, 5.0, 7.0, 1e9]).tolist() == [
        second[0], second[1], second[2], third[0], third[2], third[2]]  # the best holds until the next one
    assert np.isnan(curve.at(0.999))

    compute = anytime_curve(recorder, "loss", "min", against="compute")
    # compute spent: 1 | 2 (second trial) | 4 (first trial's 2 s at t=2) | 5 | 7 | 8.2 | 9.4 | 11.4 | 12.6
    assert compute.x.tolist() == pytest.approx([1.0, 2.0, 5.0, 8.2, 9.4, 12.6], abs=1e-12)
    assert compute.best.tolist() == curve.best.tolist()


def test_max_mode_follows_the_largest_value(tmp_path):
    recorder = AnytimeRecorder("loss")
    blackbox = branin_sweep(tmp_path, recorder)
    first, second = ([loss(blackbox, point, epoch) for epoch in (1, 2, 3)] for point in POINTS[:2])
    curve = anytime_curve(recorder, "loss", "max")
    assert curve.x.tolist() == [1.0, 2.0, 4.0, 6.0]  # the second trial's first epoch, then the first trial's
    assert curve.best.tolist() == [second[0]] + first
    assert curve.final == max(first)


def test_one_worker_makes_time_and_compute_the_same_axis(tmp_path):
    recorder = AnytimeRecorder("loss")
    branin_sweep(tmp_path, recorder, workers=1)
    assert recorder.columns()[0].tolist() == pytest.approx([2.0, 4.0, 6.0, 7.0, 8.0, 9.0, 10.2, 11.4, 12.6], abs=1e-12)
    assert anytime_curve(recorder, "loss", against="compute").x.tolist() == pytest.approx(
        anytime_curve(recorder, "loss", against="time").x.tolist(), abs=1e-12)


def test_time_counts_from_the_simulations_start(tmp_path):
    at_zero, later = AnytimeRecorder("loss"), AnytimeRecorder("loss", start_time=1000.0)
    branin_sweep(tmp_path, at_zero, name="zero")
    branin_sweep(tmp_path, later, start_time=1000.0, name="later")
    assert anytime_curve(later, "loss").x.tolist() == pytest.approx(anytime_curve(at_zero, "loss").x.tolist(),
                                                                    abs=1e-9)


def asha_recorder(tmp_path, table, seed, budget=None):
    recorder = AnytimeRecorder(["loss", "epoch"])
    config = tune.TuneConfig(metric="loss", mode="min", num_samples=30, time_budget_s=budget,
                             scheduler=ASHAScheduler(time_attr="training_iteration", max_t=9, grace_period=1,
                                                     reduction_factor=3),
                             search_alg=BasicVariantGenerator(random_state=seed))
    grid = fit(Simulation(table, num_workers=4, write_results=True), str(tmp_path), name=f"seed{seed}",
               space=table.search_space,
               tune_config=config, callbacks=[recorder])
    return recorder, grid


@pytest.fixture(scope="module")
def table():
    return learning_curve_table(200, seed=0, n_epochs=9)


def test_the_recorder_sees_exactly_the_results_the_trials_logged(tmp_path, table):
    recorder, grid = asha_recorder(tmp_path, table, seed=0, budget=200.0)
    logged = []
    for result in grid:
        path = os.path.join(result.path, "result.json")
        if os.path.exists(path):
            with open(path) as f:
                logged += [json.loads(line) for line in f]
    times, step_seconds, values = recorder.columns()
    assert recorder.num_results == len(logged) > 30
    assert sorted(values["loss"].tolist()) == sorted(row["loss"] for row in logged)
    assert sorted(step_seconds.tolist()) == sorted(row["time_this_iter_s"] for row in logged)
    assert times.max() <= 200.0 and np.all(np.diff(times) >= 0)
    curve = anytime_curve(recorder, "loss")
    assert curve.final == min(row["loss"] for row in logged)
    assert np.all(np.diff(curve.best) < 0) and np.all(np.diff(curve.x) > 0)
    assert anytime_curve(recorder, "loss", against="compute").x[-1] <= step_seconds.sum()
    # a second recorded metric: the largest epoch reached so far
    assert anytime_curve(recorder, "epoch", "max").final == max(row["epoch"] for row in logged)


def test_curves_of_three_seeds_aggregate_to_their_quantiles_on_a_grid(tmp_path, table):
    curves = [anytime_curve(asha_recorder(tmp_path, table, seed)[0], "loss") for seed in (0, 1, 2)]
    assert len({curve.final for curve in curves}) == 3  # the seeds differ
    aggregate = aggregate_curves(curves, 50, quantiles=(0.0, 0.5, 1.0))
    assert aggregate.num_runs == 3 and len(aggregate.grid) == 50
    assert aggregate.grid[0] == 0.0 and aggregate.grid[-1] == max(curve.x[-1] for curve in curves)
    per_seed = np.array([curve.at(aggregate.grid) for curve in curves])
    started = ~np.isnan(per_seed).any(axis=0)
    assert not started[0] and started[-1]
    ordered = np.sort(per_seed[:, started], axis=0)  # three runs: min, median, max are order statistics
    assert aggregate.quantile(0.0)[started].tolist() == ordered[0].tolist()
    assert aggregate.median[started].tolist() == ordered[1].tolist()
    assert aggregate.quantile(1.0)[started].tolist() == ordered[2].tolist()
    assert np.isnan(aggregate.values[:, ~started]).all()
    assert aggregate.median[-1] == sorted(curve.final for curve in curves)[1]
    assert np.all(np.diff(aggregate.median[started]) <= 0)
    # an explicit grid reads the same step functions
    explicit = aggregate_curves(curves, aggregate.grid.tolist(), quantiles=(0.0, 0.5, 1.0))
    assert np.array_equal(explicit.values, aggregate.values, equal_nan=True)


def test_a_metric_missing_from_the_recorder_or_the_results_is_named(tmp_path):
    recorder = AnytimeRecorder(["loss", "accuracy"])
    branin_sweep(tmp_path, recorder)
    with pytest.raises(ValueError, match=r"keeps no metric 'error'; it keeps \['loss', 'accuracy'\]"):
        anytime_curve(recorder, "error")
    with pytest.raises(ValueError, match=r"no result reported the metric 'accuracy' as a number \(9 results"):
        anytime_curve(recorder, "accuracy")
    with pytest.raises(ValueError, match="no result reported"):
        anytime_curve(AnytimeRecorder("loss"), "loss")  # a recorder that never ran


def test_bad_arguments_are_named(tmp_path):
    recorder = AnytimeRecorder("loss")
    branin_sweep(tmp_path, recorder)
    with pytest.raises(ValueError, match="mode must be 'min' or 'max', got 'best'"):
        anytime_curve(recorder, "loss", "best")
    with pytest.raises(ValueError, match="against must be 'time' or 'compute', got 'trials'"):
        anytime_curve(recorder, "loss", against="trials")
    with pytest.raises(TypeError, match="needs an AnytimeRecorder"):
        anytime_curve([{"loss": 1.0}], "loss")
    with pytest.raises(ValueError, match="metrics must be a metric name"):
        AnytimeRecorder([])
    with pytest.raises(ValueError, match="duplicates"):
        AnytimeRecorder(["loss", "loss"])
    by_time, by_compute = anytime_curve(recorder, "loss"), anytime_curve(recorder, "loss", against="compute")
    with pytest.raises(ValueError, match=r"differ in \(metric, mode, against\)"):
        aggregate_curves([by_time, by_compute])
    with pytest.raises(ValueError, match="at least one curve"):
        aggregate_curves([])
    with pytest.raises(TypeError, match="takes AnytimeCurves"):
        aggregate_curves([by_time.best])
    with pytest.raises(ValueError, match=r"quantiles must be numbers in \[0, 1\]"):
        aggregate_curves([by_time], quantiles=(50,))
    with pytest.raises(ValueError, match="grid must be"):
        aggregate_curves([by_time], [3.0, 1.0])
    with pytest.raises(ValueError, match="quantile 0.9 was not computed"):
        aggregate_curves([by_time]).quantile(0.9)


def test_a_result_without_the_metric_or_with_nan_never_improves_the_best():
    """The recorder driven as the runner calls it: one batch, logged results and times."""
    recorder = AnytimeRecorder("score")
    results = [{"time_this_iter_s": 1.0}, {"score": float("nan"), "time_this_iter_s": 1.0},
               {"score": 3.0, "time_this_iter_s": 1.0}, {"score": "n/a", "time_this_iter_s": 1.0},
               {"score": 2.0, "time_this_iter_s": 1.0}]
    recorder.on_trial_result_batch(0, [], None, results, [1.0, 2.0, 3.0, 4.0, 5.0])
    curve = anytime_curve(recorder, "score", "max")
    assert isinstance(curve, AnytimeCurve)
    assert (curve.x.tolist(), curve.best.tolist()) == ([3.0], [3.0])
    assert np.isnan(curve.at(2.5))


def test_a_function_blackbox_with_a_constant_loss_has_one_improvement(tmp_path):
    blackbox = FunctionBlackbox(lambda config, epoch: ({"loss": 1.0}, 0.5), {"x": tune.uniform(0, 1)},
                                range(1, 4), ["loss"])
    recorder = AnytimeRecorder("loss")
    fit(Simulation(blackbox, num_workers=3), str(tmp_path), space=blackbox.search_space, name="flat",
        tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=3), callbacks=[recorder])
    curve = anytime_curve(recorder, "loss")
    assert recorder.num_results == 9
    assert (curve.x.tolist(), curve.best.tolist()) == ([0.5], [1.0])


RESTORED = []


class KeptRecorder(AnytimeRecorder):
    """An AnytimeRecorder that presses Ctrl-C at its ``at``-th result (once: its count is in
    its state) and lets the test find the copy a restored sweep unpickled."""

    def __init__(self, metrics, at):
        super().__init__(metrics)
        self.at = at

    def on_trial_result_batch(self, iteration, trials, trial, results, times, **info):
        before = self.num_results
        super().on_trial_result_batch(iteration, trials, trial, results, times, **info)
        if before < self.at <= self.num_results:
            os.kill(os.getpid(), signal.SIGINT)

    def set_state(self, state):
        super().set_state(state)
        RESTORED.append(self)


def test_a_restored_sweeps_recorder_goes_on_from_the_results_before_the_interrupt(tmp_path, table):
    def sweep(name, recorder):
        config = tune.TuneConfig(metric="loss", mode="min", num_samples=20,
                                 scheduler=ASHAScheduler(time_attr="training_iteration", max_t=9, grace_period=1,
                                                         reduction_factor=3),
                                 search_alg=BasicVariantGenerator(random_state=0))
        # Checkpoints where trials report to ASHA, so the restore goes on exactly (ASHA's
        # default has none: the running trials would start over).
        return fit(Simulation(table, num_workers=3, checkpoint_at="decision_points"), str(tmp_path), name=name,
                   space=table.search_space, tune_config=config, callbacks=[recorder])

    whole = AnytimeRecorder(["loss"])
    sweep("whole", whole)
    sweep("cut", KeptRecorder(["loss"], at=12))
    RESTORED.clear()
    tune.Tuner.restore(os.path.join(tmp_path, "cut"),
                       trainable=Simulation(table, num_workers=3, checkpoint_at="decision_points")).fit()
    [restored] = RESTORED
    assert restored.num_results == whole.num_results > 12
    for mine, theirs in zip(restored.columns(), whole.columns()):
        if isinstance(mine, dict):
            assert mine.keys() == theirs.keys() and all(np.array_equal(mine[k], theirs[k]) for k in mine)
        else:
            assert np.array_equal(mine, theirs)
    with pytest.raises(ValueError, match="keeps \\['epoch'\\]"):
        AnytimeRecorder("epoch").set_state(whole.get_state())
