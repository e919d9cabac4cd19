"""The issue's list of schedulers and searchers, each run in simulated time with the same
objects as a real sweep: every one replays the table's curves exactly (a trial paused and
resumed goes on from the epoch its checkpoint holds), and two runs with the same seeds are
identical to the bit, searchers that think on a thread of their own included (the
simulator asks them on the loop's thread).

What each trial reported is recorded by a callback, in memory: it does not depend on what
a simulated run writes to disk."""
import random

import numpy as np
import pytest

import fasttune as tune
from fasttune.schedulers import (
    ASHAScheduler,
    HyperBandForBOHB,
    HyperBandScheduler,
    MedianStoppingRule,
)
from fasttune.schedulers.pb2 import PB2
from fasttune.search import BasicVariantGenerator
from fasttune.simulation import Simulation, learning_curve_table
from fasttune_testing import fit

N_TRIALS = 16
MAX_T = 9
# PB2's model fit at each exploit and BOHB's at each suggestion are slow: fewer trials.
TRIALS_OF = {"pb2": 6, "bohb": 9}


@pytest.fixture(scope="module")
def table():
    return learning_curve_table(300, seed=4, n_epochs=MAX_T, match="nearest")


class Recorder(tune.Callback):
    """Every result as ``(trial number, epoch, training_iteration, loss, time_total_s, config)``,
    trials numbered in the order they were made."""

    def __init__(self):
        self.rows, self._numbers = [], {}

    def on_trial_result(self, iteration, trials, trial, result, **info):
        number = self._numbers.setdefault(trial.trial_id, len(self._numbers))
        config = {key: result["config"][key] for key in ("lr", "width", "dropout")}
        self.rows.append((number, result["epoch"], result["training_iteration"], result["loss"],
                          result["time_total_s"], config))

    def per_trial(self):
        trials = {}
        for number, *rest in self.rows:
            trials.setdefault(number, []).append(tuple(rest))
        return trials


def scheduler_and_searcher(name, seed):
    """The algorithm ``name``, made afresh (schedulers and searchers hold state)."""
    random.seed(seed)  # PBT-family choices draw from the random module, as Ray Tune's do
    np.random.seed(seed)
    if name == "hyperband":
        return HyperBandScheduler(time_attr="training_iteration", max_t=MAX_T, reduction_factor=3), None
    if name == "median_stopping":
        return MedianStoppingRule(time_attr="training_iteration", grace_period=2, min_samples_required=3), None
    if name == "asha_on_simulated_seconds":
        return ASHAScheduler(time_attr="time_total_s", max_t=60.0, grace_period=5.0, reduction_factor=3), None
    if name == "pb2":
        return PB2(time_attr="training_iteration", perturbation_interval=3,
                   hyperparam_bounds={"lr": [1e-4, 1e-1], "dropout": [0.0, 0.5]}), None
    if name == "bohb":
        from fasttune.search.bohb import TuneBOHB

        return (HyperBandForBOHB(time_attr="training_iteration", max_t=MAX_T, reduction_factor=3),
                TuneBOHB(seed=seed))
    if name == "optuna_tpe_asha":
        import optuna

        from fasttune.search.optuna import OptunaSearch

        return (ASHAScheduler(time_attr="training_iteration", max_t=MAX_T, grace_period=1, reduction_factor=3),
                OptunaSearch(sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=4)))
    if name == "hyperopt":
        from fasttune.search.hyperopt import HyperOptSearch

        return None, HyperOptSearch(random_state_seed=seed, n_initial_points=4)
    raise ValueError(name)


def sweep(table, storage, name, seed=0):
    scheduler, searcher = scheduler_and_searcher(name, seed)
    recorder = Recorder()
    config = tune.TuneConfig(metric="loss", mode="min", num_samples=TRIALS_OF.get(name, N_TRIALS), scheduler=scheduler,
                             search_alg=searcher or BasicVariantGenerator(random_state=seed))
    grid = fit(Simulation(table, num_workers=3), str(storage), space=table.search_space, name=name,
               tune_config=config, callbacks=[recorder])
    return grid, recorder


ALGORITHMS = ["hyperband", "median_stopping", "asha_on_simulated_seconds", "pb2", "bohb", "optuna_tpe_asha",
              "hyperopt"]


@pytest.mark.parametrize("name", ALGORITHMS)
def test_each_algorithm_replays_the_table_and_is_reproducible_to_the_bit(table, tmp_path, name):
    grid, recorder = sweep(table, tmp_path / "first", name)
    assert len(grid) == TRIALS_OF.get(name, N_TRIALS) and not grid.errors
    trials = recorder.per_trial()
    assert len(trials) == len(grid)
    for number, rows in trials.items():
        epochs = [epoch for epoch, *_ in rows]
        assert epochs[0] == 1, f"trial {number} did not start at the first epoch"
        for (epoch, iteration, loss, total, config), previous in zip(rows, [None] + rows[:-1]):
            metrics, step_seconds = table.curve(config)
            # Each result is the table's value of the config it ran with, at its epoch, and its
            # counters follow the curve, also after a pause or an exploit.
            assert iteration == epoch and loss == metrics["loss"][epoch - 1]
            if previous is not None and previous[4] == config:
                assert epoch == previous[0] + 1, f"trial {number} skipped or repeated an epoch"
                assert total == pytest.approx(previous[3] + step_seconds[epoch - 1], abs=1e-9)
    again, recorder_again = sweep(table, tmp_path / "second", name)
    assert recorder_again.rows == recorder.rows
    assert [r.metrics["time_total_s"] for r in again] == [r.metrics["time_total_s"] for r in grid]


def test_hyperband_pauses_trials_and_resumes_them_from_the_epoch_they_reached(table, tmp_path):
    """Synchronous HyperBand pauses each trial at its rung until the rung is full: the trials
    it promotes go on from their checkpoint, so their epochs run 1..9 once each."""
    grid, recorder = sweep(table, tmp_path, "hyperband")
    lengths = sorted(len(rows) for rows in recorder.per_trial().values())
    assert lengths[-1] == MAX_T  # some trial was promoted through every rung
    promoted = [rows for rows in recorder.per_trial().values() if len(rows) > 1]
    assert promoted and all([row[0] for row in rows] == list(range(1, len(rows) + 1)) for rows in promoted)


def test_asha_on_time_total_s_decides_on_simulated_seconds(table, tmp_path):
    """Rungs at 5, 15 and 45 simulated seconds, max_t 60: a trial ends on the first result
    that reaches a rung (where ASHA stopped it) or max_t, or at the end of its curve."""
    grid, recorder = sweep(table, tmp_path, "asha_on_simulated_seconds")
    stopped_at_rung = 0
    for rows in recorder.per_trial().values():
        totals = [row[3] for row in rows]
        assert all(total < 60.0 for total in totals[:-1])  # nothing runs past max_t
        if totals[-1] >= 60.0 or len(rows) == MAX_T:
            continue
        crossed = [rung for rung in (5.0, 15.0, 45.0) if totals[-1] >= rung and (len(totals) == 1 or totals[-2] < rung)]
        assert crossed, f"a trial ended at {totals[-1]} s, between rungs"
        stopped_at_rung += 1
    assert stopped_at_rung >= N_TRIALS // 3


def test_other_seeds_give_other_runs(table, tmp_path):
    _, first = sweep(table, tmp_path / "a", "optuna_tpe_asha", seed=0)
    _, other = sweep(table, tmp_path / "b", "optuna_tpe_asha", seed=1)
    assert first.rows != other.rows


def test_asha_on_a_reported_epoch_waits_only_where_the_epoch_reaches_a_rung(tmp_path):
    """ASHA with ``time_attr="epoch"`` (a value the trial reports): each decision costs 2.5
    simulated seconds, and a trial that runs all 9 epochs paid for two waits (rungs 1 and
    3), not one per epoch; its last result, at max_t, is where it was stopped."""
    table = learning_curve_table(60, seed=0, n_epochs=MAX_T)

    def run(overhead):
        recorder = Recorder()
        scheduler = ASHAScheduler(time_attr="epoch", max_t=MAX_T, grace_period=1, reduction_factor=3)
        config = tune.TuneConfig(metric="loss", mode="min", num_samples=12, scheduler=scheduler,
                                 search_alg=BasicVariantGenerator(random_state=0))
        fit(Simulation(table, num_workers=1, decision_overhead_s=overhead), str(tmp_path), name=f"o{overhead}",
            space=table.search_space, tune_config=config, callbacks=[recorder])
        return recorder.per_trial()

    plain, slow = run(0.0), run(2.5)
    assert [len(rows) for rows in plain.values()] == [len(rows) for rows in slow.values()]
    assert max(len(rows) for rows in plain.values()) == MAX_T
    for number, rows in slow.items():
        waits_before = [sum(1 for rung in (1, 3) if rung < epoch) for epoch, *_ in rows]
        assert [row[3] for row in rows] == pytest.approx(
            [row[3] + 2.5 * waits for row, waits in zip(plain[number], waits_before)], abs=1e-9)
