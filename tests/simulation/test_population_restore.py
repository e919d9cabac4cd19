"""``Tuner.restore`` of a simulated PBT or PB2 sweep goes on exactly: interrupted (Ctrl-C)
after any result and restored, it ends as the sweep never interrupted: the same trials,
the same exploits (donors, new configs), the same results at the same simulated times.

PBT and PB2 draw from Python's ``random`` and numpy's global generator, as Ray Tune's
do (seeded here before each sweep, and seeded otherwise before the restore): their saved
state holds both generators (and PB2's GP seed).  The snapshot keeps the exploits a trial
has not taken yet, and the trials a worker held restart before any other."""
import json
import os
import random

import numpy as np
import pytest

import fasttune as tune
from fasttune.schedulers import PopulationBasedTraining
from fasttune.schedulers.pb2 import PB2
from fasttune.search import BasicVariantGenerator
from fasttune.simulation import Simulation, learning_curve_table, reference_trial_order
from ctrl_c_testing import CtrlCAtResult
from fasttune_testing import fit

MAX_T = 9


@pytest.fixture(scope="module")
def table():
    return learning_curve_table(60, seed=0, n_epochs=MAX_T, match="nearest")


def pbt():
    # Values from lists draw from `random`; a domain resampled draws from numpy's generator.
    return PopulationBasedTraining(
        time_attr="training_iteration", perturbation_interval=2, resample_probability=0.5,
        hyperparam_mutations={"lr": tune.loguniform(1e-4, 1e-1), "dropout": [0.0, 0.1, 0.2, 0.3, 0.4]})


def pbt_synch():
    return PopulationBasedTraining(
        time_attr="training_iteration", perturbation_interval=2, resample_probability=0.5, synch=True,
        hyperparam_mutations={"lr": tune.loguniform(1e-4, 1e-1), "dropout": [0.0, 0.1, 0.2, 0.3, 0.4]})


def pb2():
    return PB2(time_attr="training_iteration", perturbation_interval=2,
               hyperparam_bounds={"lr": [1e-4, 1e-1], "dropout": [0.0, 0.5]})


SCHEDULERS = {"pbt": (pbt, 8), "pbt_synch": (pbt_synch, 8), "pb2": (pb2, 6)}


def run(table, tmp_path, name, kind, callbacks=()):
    make, n_trials = SCHEDULERS[kind]
    random.seed(3)
    np.random.seed(3)
    config = tune.TuneConfig(
        metric="loss", mode="min", num_samples=n_trials, scheduler=make(),
        search_alg=BasicVariantGenerator(points_to_evaluate=reference_trial_order(table, n_trials, seed=0)))
    return fit(Simulation(table, num_workers=3, write_results=True), str(tmp_path), name=name,
               space=table.search_space, tune_config=config, callbacks=list(callbacks), stop={"epoch": MAX_T})


def number(trial_id):
    return int(trial_id.rsplit("_", 1)[1])


def outcome(grid, experiment_path):
    """By trial number: each result's fields that do not depend on restores, with its
    config; and every exploit of the policy log (trial ids as numbers)."""
    trials = {}
    for result in grid:
        with open(os.path.join(result.path, "result.json")) as f:
            rows = [json.loads(line) for line in f]
        trials[number(rows[0]["trial_id"])] = [
            (row["epoch"], row["training_iteration"], row["loss"], row["timestamp"], round(row["time_total_s"], 9),
             row["done"], row["config"]) for row in rows]
    with open(os.path.join(experiment_path, "pbt_global.txt")) as f:  # (PB2 writes PBT's file)
        exploits = [json.loads(line) for line in f]
    policy = [(number(target), number(donor), *rest) for target, donor, *rest in exploits]
    return trials, policy


# Points where each part of the saved state matters: the random generators (all), a reset
# not taken yet (pbt 5), a trial held by a worker while PAUSED (pbt 31), PB2's GP seed (pb2 31).
@pytest.mark.parametrize("kind, at", [("pbt", 5), ("pbt", 17), ("pbt", 31), ("pbt_synch", 20), ("pb2", 14),
                                      ("pb2", 31)])
def test_a_population_sweep_interrupted_and_restored_ends_as_if_never_interrupted(table, tmp_path, kind, at):
    whole = run(table, tmp_path, f"whole_{kind}", kind)
    expected = outcome(whole, os.path.join(tmp_path, f"whole_{kind}"))
    assert len(expected[1]) >= 3  # the sweep exploits, before and after the interrupt
    first = run(table, tmp_path, f"cut_{kind}", kind, callbacks=[CtrlCAtResult(at)])
    assert sum(r.metrics.get("done", False) is True for r in first) < len(whole)  # it was interrupted
    random.seed(99)  # what the restored sweep draws comes from its snapshot, not from here
    np.random.seed(99)
    restored = tune.Tuner.restore(os.path.join(tmp_path, f"cut_{kind}"),
                                  trainable=Simulation(table, num_workers=3, write_results=True)).fit()
    assert outcome(restored, os.path.join(tmp_path, f"cut_{kind}")) == expected
