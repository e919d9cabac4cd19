"""AsyncHyperBandScheduler (ASHA) driven by the simulated runner: hand-computed rungs and
cutoffs, max_t, decision points, brackets, persistence and argument errors."""
import math
import os

import numpy as np
import pytest

from fasttune.schedulers import ASHAScheduler, AsyncHyperBandScheduler, DecisionPoints, TrialScheduler
from fasttune.schedulers.async_hyperband import percentile_of_sorted, rung_milestones

from fasttune_testing import seeded_generators
from simulated_runner import SimulatedRunner

CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP


def make(**kwargs):
    kwargs.setdefault("metric", "score")
    kwargs.setdefault("mode", "max")
    return AsyncHyperBandScheduler(**kwargs)


def runner_with(scheduler, n):
    sim = SimulatedRunner(scheduler, metric=scheduler.metric, mode=scheduler.mode)
    return sim, [sim.add_trial({"i": i}) for i in range(n)]


def test_alias_and_rung_milestones():
    assert ASHAScheduler is AsyncHyperBandScheduler
    assert rung_milestones(1, 100, 4, 0) == [1, 4, 16, 64]
    assert rung_milestones(1, 100, 4, 1) == [4, 16, 64]
    assert rung_milestones(2, 54, 3, 0) == [2, 6, 18, 54]  # a rung at max_t itself
    assert rung_milestones(1, 1000, 10, 0) == [1, 10, 100, 1000]  # exact, no float shortfall
    assert rung_milestones(1, 10, 2.5, 0) == [1, 2.5, 6.25]
    assert rung_milestones(1, 8, 2, 4) == []
    assert make(max_t=27, reduction_factor=3, brackets=2).rung_milestones() == [[1, 3, 9, 27], [3, 9, 27]]


def test_rf2_cutoffs_by_hand():
    sim, (a, b, c, d, e) = runner_with(make(max_t=10, grace_period=1, reduction_factor=2), 5)
    # Rung 1 (cutoff: the median of the values recorded there before).
    assert sim.feed(a, 1, 2.0) == CONTINUE  # []              nothing to beat
    assert sim.feed(b, 1, 4.0) == CONTINUE  # [2]             cutoff 2
    assert sim.feed(c, 1, 1.0) == STOP      # [2, 4]          cutoff 3
    assert sim.feed(d, 1, 2.0) == CONTINUE  # [1, 2, 4]       cutoff 2: equal is not below
    assert sim.feed(e, 1, 1.9) == STOP      # [1, 2, 2, 4]    cutoff 2
    # Rung 2 keeps its own record; between rungs nothing is judged.
    assert sim.feed(a, 2, 0.0) == CONTINUE  # []
    assert sim.feed(b, 2, 3.0) == CONTINUE  # [0]             cutoff 0
    assert sim.feed(d, 2, 1.0) == STOP      # [0, 3]          cutoff 1.5
    assert sim.feed(a, 3, -100.0) == CONTINUE  # no rung at 3
    # Rung 4, then rung 8, then max_t.
    assert sim.feed(a, 4, 5.0) == CONTINUE
    assert sim.feed(b, 3, 9.0) == CONTINUE
    assert sim.feed(b, 4, 4.0) == STOP      # [5]             cutoff 5
    assert sim.feed(a, 8, 0.0) == CONTINUE
    assert sim.feed(a, 9, 0.0) == CONTINUE
    assert sim.feed(a, 10, 0.0) == STOP     # max_t


@pytest.mark.parametrize("mode,sign", [("max", 1.0), ("min", -1.0)])
def test_rf3_keeps_the_top_third_by_hand(mode, sign):
    sim, (a, b, c, d, e) = runner_with(make(mode=mode, max_t=9, grace_period=1, reduction_factor=3), 5)
    # The cutoff is the 66.7th percentile of the values recorded (linear interpolation).
    assert sim.feed(a, 1, sign * 5) == CONTINUE  # []
    assert sim.feed(b, 1, sign * 1) == STOP      # [5]          cutoff 5
    assert sim.feed(c, 1, sign * 3) == STOP      # [1, 5]       cutoff 1 + 4 * 2/3 = 3.67
    assert sim.feed(d, 1, sign * 4) == CONTINUE  # [1, 3, 5]    cutoff 3 + 2 * 1/3 = 3.67
    assert sim.feed(e, 1, sign * 3.9) == STOP    # [1, 3, 4, 5] cutoff 4
    assert sim.feed(a, 3, sign * 1) == CONTINUE
    assert sim.feed(d, 3, sign * 0.5) == STOP    # [1]          cutoff 1
    assert sim.feed(a, 9, sign * 0) == STOP      # max_t


@pytest.mark.filterwarnings("ignore:invalid value encountered")  # (numpy's, beside an infinity)
def test_percentile_matches_numpy_exactly():
    rng = np.random.default_rng(3)
    for n in range(1, 30):
        for rf in (2, 3, 4, 2.5, 1.5, 10, 1e20):
            values = rng.normal(size=n).tolist()
            if n % 3 == 0:
                values[0] = float("inf") if n % 2 else float("-inf")  # numpy interpolates to NaN beside one
            values.sort()
            fraction = ((1 - 1 / rf) * 100) / 100
            ours, numpy_s = percentile_of_sorted(values, fraction), np.nanpercentile(values, (1 - 1 / rf) * 100)
            assert ours == numpy_s or (math.isnan(ours) and math.isnan(numpy_s))


def test_results_without_the_metric_or_with_nan_are_not_held_against_others():
    sim, (a, b, c) = runner_with(make(max_t=9, reduction_factor=3), 3)
    assert sim.feed(a, 1, None) == CONTINUE  # no metric: not judged, not recorded
    assert sim.feed(b, 1, float("nan")) == CONTINUE  # recorded, but nan sets no cutoff
    assert sim.feed(c, 1, -100.0) == CONTINUE
    assert sim.feed(a, 2, -200.0) == STOP  # judged at rung 1 when it reports the metric


def test_a_trial_ending_on_its_own_records_its_last_value():
    sim, (a, b, c) = runner_with(make(max_t=9, reduction_factor=3), 3)
    for it in (1, 2, 3):
        sim.feed(a, it, None)
    a.last_result = sim.result(a, 3, 0.0)
    sim.complete(a)  # its last result, iteration 3 score 0, lands in rung 3
    assert sim.feed(b, 1, 1.0) == CONTINUE
    assert sim.feed(b, 3, -1.0) == STOP  # cutoff 0 from a's final result
    assert sim.feed(c, 1, 5.0) == CONTINUE  # rung 1 holds b's 1 only


def test_stop_last_trials_false_lets_trials_run_past_max_t():
    scheduler = make(max_t=9, reduction_factor=3, stop_last_trials=False)
    sim, (a, b) = runner_with(scheduler, 2)
    assert scheduler.decision_points(a) == DecisionPoints.at([1, 3, 9])
    for it in (1, 3, 9):
        assert sim.feed(a, it, 5.0) == CONTINUE
    assert sim.feed(a, 10, 5.0) == CONTINUE
    assert sim.feed(a, 50, 5.0) == CONTINUE
    assert sim.feed(b, 1, 6.0) == CONTINUE
    assert sim.feed(b, 3, 6.0) == CONTINUE
    assert sim.feed(b, 9, 1.0) == STOP  # the rung at max_t still judges


@pytest.mark.parametrize("time_attr", ["training_iteration", "time_total_s"])
def test_every_trial_ends_by_max_t_at_a_rung_or_max_t(time_attr):
    # One second an iteration: the same rungs either way, decided at the same results
    # (time_total_s through points on the attribute; violations would show a miss).
    scheduler = make(max_t=27, grace_period=1, reduction_factor=3, time_attr=time_attr)
    qualities = [0.3, 0.9, 0.1, 0.5, 0.7, 0.2, 0.8, 0.4, 0.6, 1.0, 0.05, 0.95] * 2
    sim = SimulatedRunner(
        scheduler, curve=lambda config, it: config["q"] * math.log1p(it) + 0.01 * math.sin(it * config["q"] * 7),
        configs=[{"q": q, "i": i} for i, q in enumerate(qualities)], metric="score", mode="max",
        max_concurrent=3,
    ).run()
    assert sim.violations == []
    assert set(sim.statuses().values()) == {"TERMINATED"}
    finals = sim.final_iterations("i")
    assert set(finals.values()) <= {1, 3, 9, 27}
    assert max(finals.values()) == 27
    assert finals[qualities.index(1.0)] == 27  # the best is never below a cutoff
    assert sum(1 for v in finals.values() if v < 27) >= len(qualities) // 2
    stops = [(it, d) for _, it, d in sim.decisions if d == STOP]
    assert {it for it, _ in stops} <= {1, 3, 9, 27}
    assert scheduler.num_stopped == len(stops) == len(qualities)


def test_decision_points_are_the_bracket_rungs_and_max_t():
    scheduler = make(max_t=20, grace_period=2, reduction_factor=3, brackets=2)
    sim = SimulatedRunner(scheduler, metric="score", mode="max")
    with seeded_generators(0):  # the brackets are drawn: with this seed, both come up
        trials = [sim.add_trial({"i": i}) for i in range(50)]
    seen = set()
    for trial in trials:
        wire = scheduler.decision_points(trial).to_wire()
        seen.add(tuple(wire[1]))
        assert wire == ["at", [2, 6, 18, 20]] if scheduler.bracket_of(trial) == 0 else wire == ["at", [6, 18, 20]]
    assert len(seen) == 2
    # Fractional milestones are decided at the first whole iteration past them.
    assert make(max_t=10, reduction_factor=2.5).decision_points(trials[0]).to_wire() == ["at", [1, 3, 7, 10]]
    # Another time_attr: the results where it reaches the rungs (the metric must be there).
    assert make(time_attr="time_total_s", max_t=20, grace_period=2, reduction_factor=3).decision_points(
        trials[0]) == DecisionPoints.reaching("time_total_s", [2, 6, 18, 20], needs=["score"])


def test_brackets_are_drawn_with_softmax_weights_from_numpy_random():
    np.random.seed(0)
    scheduler = make(max_t=81, grace_period=1, reduction_factor=3, brackets=3)
    assert [len(r) for r in scheduler.rung_milestones()] == [5, 4, 3]
    sim = SimulatedRunner(scheduler, metric="score", mode="max")
    counts = np.bincount([scheduler.bracket_of(sim.add_trial({})) for _ in range(3000)], minlength=3)
    expected = np.exp([0.0, -1.0, -2.0]) / np.exp([0.0, -1.0, -2.0]).sum()  # 0.665 0.245 0.090
    assert np.allclose(counts / 3000, expected, atol=0.03)
    np.random.seed(0)
    again = make(max_t=81, grace_period=1, reduction_factor=3, brackets=3)
    sim2 = SimulatedRunner(again, metric="score", mode="max")
    assert [again.bracket_of(sim2.add_trial({})) for _ in range(50)] == [
        scheduler.bracket_of(t) for t in sim.trials[:50]]


def _sweep(scheduler, stop_after=None, swap=None):
    qualities = [(i * 37 % 23) / 23 for i in range(40)]
    sim = SimulatedRunner(
        scheduler, curve=lambda config, it: config["q"] * it + math.cos(it + config["q"]),
        configs=[{"q": q} for q in qualities], metric="score", mode="max", max_concurrent=4)
    while not sim.finished():
        sim.tick()
        if stop_after is not None and sim.ticks == stop_after:
            sim.scheduler = swap(sim.scheduler)
    return sim


def test_save_and_restore_continue_with_identical_decisions(tmp_path):
    reference = _sweep(make(max_t=30, grace_period=2, reduction_factor=2, brackets=1))
    path = str(tmp_path / "asha.pkl")

    def swap(old):
        old.save(path)
        fresh = make(max_t=30, grace_period=2, reduction_factor=2)
        fresh.restore(path)
        assert fresh.debug_string() == old.debug_string()
        return fresh

    resumed = _sweep(make(max_t=30, grace_period=2, reduction_factor=2), stop_after=25, swap=swap)
    assert resumed.decisions == reference.decisions
    assert any(d == STOP for _, it, d in reference.decisions if it < 30)
    with pytest.raises(ValueError, match="MedianStoppingRule"):
        from fasttune.schedulers import MedianStoppingRule

        MedianStoppingRule(metric="a", mode="max").restore(path)


def test_debug_string_is_one_line_with_cutoffs():
    sim, (a, b) = runner_with(make(max_t=9, reduction_factor=3), 2)
    sim.feed(a, 1, 2.0)
    sim.feed(b, 1, 1.0)
    text = make(max_t=9, reduction_factor=3).debug_string()
    assert "\n" not in text and "num_stopped=0" in text
    text = sim.scheduler.debug_string()
    assert "num_stopped=1" in text and "Iter 1: 1.667 (2 recorded)" in text and "Iter 9: None" in text


def test_metric_and_mode_are_required_and_must_be_numbers():
    sim = SimulatedRunner(AsyncHyperBandScheduler(), metric=None, mode=None)
    with pytest.raises(ValueError, match=r"set metric and mode in TuneConfig\(metric=\.\.\., mode=\.\.\.\)"):
        sim.add_trial({})
    scheduler = AsyncHyperBandScheduler()
    assert scheduler.set_search_properties("acc", "max")
    sim, (a,) = runner_with(scheduler, 1)
    with pytest.raises(TypeError, match="'acc'.*report it as a number"):
        sim.feed(a, 1, "high")


@pytest.mark.parametrize("kwargs,error,words", [
    (dict(mode="maximize"), ValueError, "mode"),
    (dict(max_t=0), ValueError, "max_t"),
    (dict(max_t="100"), TypeError, "max_t"),
    (dict(grace_period=0), ValueError, "grace_period"),
    (dict(grace_period=200), ValueError, "grace_period <= max_t"),
    (dict(reduction_factor=1), ValueError, "reduction_factor"),
    (dict(brackets=0), ValueError, "brackets"),
    (dict(brackets=1.5), TypeError, "brackets"),
    (dict(time_attr=""), TypeError, "time_attr"),
    (dict(metric=3), TypeError, "metric"),
    (dict(stop_last_trials="yes"), TypeError, "stop_last_trials"),
])
def test_bad_arguments_are_clear_errors(kwargs, error, words):
    with pytest.raises(error) as info:
        AsyncHyperBandScheduler(**kwargs)
    assert words in str(info.value) and "AsyncHyperBandScheduler" in str(info.value)


@pytest.mark.filterwarnings("ignore:invalid value encountered")  # (numpy's, beside an infinity)
@pytest.mark.parametrize("rf", [2, 3, 4, 2.5, 1.5, 10, 1e20])
def test_a_rungs_cutoff_is_numpys_percentile_of_its_values_through_records_and_forgets(rf):
    """A rung keeps its values in two heaps split at the cutoff's rank; after each record or
    forget (NaN values included) its cutoff is numpy's percentile of the values it holds."""
    from fasttune.schedulers.async_hyperband import _Rung

    fraction = ((1 - 1 / rf) * 100) / 100
    rung, values = _Rung(1, fraction), {}
    rng = np.random.default_rng(int(rf * 10))
    for step in range(600):
        if values and rng.random() < 0.25:
            trial_id = sorted(values)[rng.integers(len(values))]
            rung.forget(trial_id)
            del values[trial_id]
        else:
            # few distinct values too, so that ties sit at the split, and infinities (numpy's
            # interpolation gives NaN beside one, which stops no trial)
            draw = rng.random()
            if draw < 0.05:
                value = float("nan")
            elif draw < 0.08:
                value = float("inf") if draw < 0.07 else float("-inf")
            else:
                value = float(rng.integers(0, 20) if step % 2 else rng.normal())
            rung.record(f"t{step}", value)
            values[f"t{step}"] = value
        present = sorted(v for v in values.values() if not math.isnan(v))
        expected = np.nanpercentile(present, (1 - 1 / rf) * 100) if present else None
        cutoff = rung.cutoff()
        assert cutoff == expected or (math.isnan(cutoff) and math.isnan(expected))


def test_an_asha_pickled_by_the_version_before_the_heaps_loads_and_decides_as_it_did(tmp_path):
    """tests/schedulers/asha_pickled_before_heaps.pkl: an ASHA scheduler (2 brackets, 40
    trials fed) pickled by git ba42ce5, whose rungs kept one sorted list (and no decision
    points made once). It loads, gives the cutoffs it had, and goes on as a fresh scheduler
    that recorded the same values does."""
    import pickle

    with open(os.path.join(os.path.dirname(__file__), "asha_pickled_before_heaps.pkl"), "rb") as f:
        old = pickle.load(f)
    cutoffs = [[(rung.milestone, len(rung.recorded), rung.cutoff()) for rung in b.rungs] for b in old._brackets]
    assert cutoffs == [[(9, 0, None), (3, 10, -0.5112747213686085), (1, 27, -0.4847875793034321)],
                       [(9, 0, None), (3, 13, -0.32520436274739006)]]
    again = make(time_attr="epoch", metric="loss", mode="min", max_t=9, grace_period=1, reduction_factor=3, brackets=2)
    old.save(str(tmp_path / "state"))
    again.restore(str(tmp_path / "state"))
    sim, trials = runner_with(old, 6)
    sim_again, trials_again = runner_with(again, 6)
    for trial, trial_again in zip(trials, trials_again):
        old._bracket_of[trial.trial_id] = again._bracket_of[trial_again.trial_id] = 0
        assert old.decision_points(trial) == again.decision_points(trial_again)
    losses = (0.1, 0.9, 0.4, 0.5, 0.2, 0.6)
    decisions = [sim.feed(trial, 1, loss, epoch=1) for trial, loss in zip(trials, losses)]
    assert decisions == [sim_again.feed(trial, 1, loss, epoch=1) for trial, loss in zip(trials_again, losses)]
    assert STOP in decisions and CONTINUE in decisions


def test_restore_forgets_the_decision_points_made_for_the_settings_it_replaces(tmp_path):
    saved = make(time_attr="epoch", metric="loss", mode="min", max_t=9, grace_period=1, reduction_factor=3)
    saved.save(str(tmp_path / "state"))
    restored = make(metric="loss", mode="min", max_t=16, grace_period=2, reduction_factor=2)
    sim, (trial,) = runner_with(restored, 1)
    assert restored.decision_points(trial) == DecisionPoints.at({2, 4, 8, 16})
    restored.restore(str(tmp_path / "state"))
    assert restored.decision_points(trial) == DecisionPoints.reaching("epoch", {1, 3, 9}, needs=["loss"])
