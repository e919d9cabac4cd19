"""Schedulers in whole sweeps on the shared Ray session: ASHA stops bad trials early and
ends all by max_t, HyperBand pauses and resumes function and class trainables, and a
batched sweep makes the same decisions as a synchronous one (and as the simulation)."""
import math
import os

import pytest

import fasttune as tune
from fasttune.schedulers import ASHAScheduler, HyperBandScheduler, MedianStoppingRule
from fasttune_testing import fit as _fit, lines as _lines, report_with_step_checkpoint, restored_step

from simulated_runner import SimulatedRunner
from test_hyperband import QUALITY, expected_finals

pytestmark = pytest.mark.usefixtures("ray_session")

ASHA_QUALITIES = [0.3, 0.9, 0.1, 0.5, 0.7, 0.2, 0.8, 0.4, 1.0, 0.6]


def asha_score(config, it):
    return config["q"] * math.log1p(it) + 0.05 * math.sin(7 * config["q"] * it)


def asha_trainable(config):
    for it in range(1, 1000):
        tune.report({"score": asha_score(config, it)})


def histories(grid, *keys):
    out = {}
    for result in grid:
        rows = _lines(os.path.join(result.path, "result.json"))
        out[result.config["q"]] = [tuple(row[k] for k in keys) for row in rows]
    return out


def asha_sweep(storage, name):
    scheduler = ASHAScheduler(max_t=27, grace_period=1, reduction_factor=3)
    grid = _fit(asha_trainable, storage, {"q": tune.grid_search(ASHA_QUALITIES)}, name=name,
                tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=scheduler, max_concurrent_trials=1))
    return grid, scheduler


def test_asha_stops_bad_trials_early_ends_all_by_max_t_and_matches_the_simulation(storage, monkeypatch):
    grid, scheduler = asha_sweep(storage, "batched")
    assert grid.num_errors == 0 and grid.num_terminated == len(ASHA_QUALITIES)
    finals = {r.config["q"]: r.metrics["training_iteration"] for r in grid}
    assert set(finals.values()) <= {1, 3, 9, 27}  # stopped at a rung, or at max_t
    assert finals[1.0] == 27 and sum(v < 27 for v in finals.values()) >= 3
    assert scheduler.num_stopped == len(ASHA_QUALITIES)
    # One trial at a time makes the order of results, hence every decision, fixed: the
    # simulation of the same sweep agrees.
    sim = SimulatedRunner(ASHAScheduler(metric="score", mode="max", max_t=27, grace_period=1, reduction_factor=3),
                          curve=asha_score, configs=[{"q": q} for q in ASHA_QUALITIES], metric="score", mode="max",
                          max_concurrent=1, max_concurrent_trials=True).run()
    assert finals == sim.final_iterations("q")
    # Decided at every result, the sweep makes the same decisions.
    monkeypatch.setenv("FASTTUNE_SYNCHRONOUS", "1")
    synchronous, _ = asha_sweep(storage, "synchronous")
    assert histories(synchronous, "training_iteration", "score") == histories(grid, "training_iteration", "score")


def hb_function(config):
    start = restored_step()
    for step in range(start, 100):
        report_with_step_checkpoint({"score": config["q"] + 0.001 * (step + 1), "restored_from": start}, step + 1)


class HBClass(tune.Trainable):
    def setup(self, config):
        self.steps = 0
        self.restored_from = 0

    def step(self):
        self.steps += 1
        return {"score": self.config["q"] + 0.001 * self.steps, "restored_from": self.restored_from}

    def save_checkpoint(self, checkpoint_dir):
        return {"steps": self.steps}

    def load_checkpoint(self, checkpoint):
        self.steps = self.restored_from = checkpoint["steps"]


def hyperband_sweep(trainable, storage, name):
    scheduler = HyperBandScheduler(max_t=9, reduction_factor=3)
    grid = _fit(trainable, storage, {"q": tune.grid_search(QUALITY)}, name=name,
                tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=scheduler))
    return grid, scheduler


@pytest.mark.parametrize("trainable", [hb_function, HBClass], ids=["function", "class"])
def test_hyperband_pauses_and_resumes_trials_to_the_hand_computed_final_iterations(trainable, storage):
    grid, scheduler = hyperband_sweep(trainable, storage, "hb")
    assert grid.num_errors == 0 and grid.num_terminated == len(QUALITY)
    expected = {QUALITY[i]: final for i, final in expected_finals().items()}
    assert {r.config["q"]: r.metrics["training_iteration"] for r in grid} == expected
    assert scheduler.num_stopped == 3 + 6 + 2
    resumed = 0
    for q, rows in histories(grid, "training_iteration", "score", "restored_from").items():
        assert [row[0] for row in rows] == list(range(1, expected[q] + 1))  # resumed where it paused
        assert [row[1] for row in rows] == [q + 0.001 * it for it in range(1, expected[q] + 1)]
        resumed += any(row[2] > 0 for row in rows)
    # Kept trials that paused at a milestone resumed from their checkpoints (the trial
    # that completes a bracket's round may go straight on instead).
    assert resumed >= 3


def test_hyperband_batched_and_synchronous_sweeps_decide_the_same(storage, monkeypatch):
    batched, _ = hyperband_sweep(hb_function, storage, "batched")
    monkeypatch.setenv("FASTTUNE_SYNCHRONOUS", "1")
    synchronous, _ = hyperband_sweep(hb_function, storage, "synchronous")
    assert histories(batched, "training_iteration", "score") == histories(synchronous, "training_iteration", "score")
    assert {r.config["q"]: r.error for r in batched} == {r.config["q"]: None for r in synchronous}


def median_score(config, it):
    return config["q"] * it + math.cos(it * (1 + config["q"]))


def median_trainable(config):
    for it in range(1, 13):
        tune.report({"score": median_score(config, it)})


def test_median_stopping_rule_in_a_sweep_matches_the_simulation(storage):
    qualities = [0.5, 0.2, 0.9, 0.1, 0.6, 0.05, 0.7, 0.3]

    def rule():
        return MedianStoppingRule(time_attr="training_iteration", grace_period=3, min_samples_required=2)

    grid = _fit(median_trainable, storage, {"q": tune.grid_search(qualities)},
                tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=rule(), max_concurrent_trials=1))
    finals = {r.config["q"]: r.metrics["training_iteration"] for r in grid}
    scheduler = rule()
    scheduler.set_search_properties("score", "max")
    sim = SimulatedRunner(scheduler, curve=median_score, configs=[{"q": q} for q in qualities], metric="score",
                          mode="max", max_concurrent=1, max_concurrent_trials=True, max_iterations=12).run()
    assert finals == sim.final_iterations("q")
    assert min(finals.values()) < 12 and finals[0.9] == 12
