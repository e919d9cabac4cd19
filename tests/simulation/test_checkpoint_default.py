"""Where a simulated trial checkpoints by default depends on the sweep's scheduler: at its
decision points under a scheduler that may resume a trial from a checkpoint (it pauses
trials, or clones them as PBT does), nowhere under one that only stops trials (FIFO,
ASHA), where checkpoints would only cost time.  A value the user gives always wins, and
the results are the same either way."""
import json
import os

import pytest

import fasttune as tune
from fasttune.schedulers import (
    ASHAScheduler,
    FIFOScheduler,
    HyperBandForBOHB,
    HyperBandScheduler,
    MedianStoppingRule,
    PopulationBasedTraining,
    ResourceChangingScheduler,
    TrialScheduler,
)
from fasttune.schedulers.pb2 import PB2
from fasttune.search import BasicVariantGenerator
from fasttune.simulation import Simulation, learning_curve_table, reference_trial_order
from ctrl_c_testing import CtrlCAtResult
from fasttune_testing import fit

N_TRIALS = 12


@pytest.fixture(scope="module")
def table():
    return learning_curve_table(40, seed=1, n_epochs=9)


class OwnScheduler(TrialScheduler):
    """A user's scheduler that does not say whether it resumes trials."""


class OwnFIFO(FIFOScheduler):
    """A user's FIFO subclass: it may pause trials (it does not say)."""


class OwnASHA(ASHAScheduler):
    """A user's ASHA subclass: it may pause trials (it does not say)."""


SCHEDULERS = {
    "fifo": (FIFOScheduler, None),
    "asha": (lambda: ASHAScheduler(time_attr="epoch", max_t=9, grace_period=1), None),
    "hyperband": (lambda: HyperBandScheduler(time_attr="epoch", max_t=9), "decision_points"),
    "bohb": (lambda: HyperBandForBOHB(time_attr="epoch", max_t=9), "decision_points"),
    "median_stopping": (MedianStoppingRule, "decision_points"),  # it pauses trials while others wait
    "pbt": (lambda: PopulationBasedTraining(hyperparam_mutations={"lr": [0.1, 0.01]}), "decision_points"),
    "pb2": (lambda: PB2(hyperparam_bounds={"lr": [0.001, 0.1]}), "decision_points"),
    "resource_changing": (ResourceChangingScheduler, "decision_points"),
    "own": (OwnScheduler, "decision_points"),
    "own_fifo": (OwnFIFO, "decision_points"),
    "own_asha": (lambda: OwnASHA(time_attr="epoch", max_t=9, grace_period=1), "decision_points"),
    "pbt_replay": (lambda: _replay(), "decision_points"),  # it resets trials to their own checkpoints
}


def _replay():
    import tempfile

    from fasttune.schedulers import PopulationBasedTrainingReplay

    policy = os.path.join(tempfile.mkdtemp(), "pbt_policy_t_0.txt")
    with open(policy, "w") as f:
        f.write(json.dumps(["t_0", "t_1", 2, 1, {"lr": 0.1}, {"lr": 0.01}]) + "\n")
    return PopulationBasedTrainingReplay(policy)


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_the_default_follows_what_the_scheduler_declares(table, name):
    make, expected = SCHEDULERS[name]
    scheduler = make()
    assert scheduler.resumes_from_checkpoints is (expected is not None)
    assert Simulation(table).checkpoint_at_under(scheduler) == expected
    assert Simulation(table).executor(scheduler=scheduler).checkpoint_at == expected


@pytest.mark.parametrize("given", [None, "decision_points", 2])
def test_a_value_the_user_gives_wins_under_every_scheduler(table, given):
    for make, _ in SCHEDULERS.values():
        assert Simulation(table, checkpoint_at=given).executor(scheduler=make()).checkpoint_at == given


def test_before_the_scheduler_is_known_a_simulation_checkpoints_at_decision_points(table):
    assert Simulation(table).executor().checkpoint_at == "decision_points"


def sweep(table, storage, name, scheduler, callbacks=(), **settings):
    points = reference_trial_order(table, N_TRIALS, seed=0)
    config = tune.TuneConfig(metric="loss", mode="min", num_samples=N_TRIALS, scheduler=scheduler,
                             search_alg=BasicVariantGenerator(points_to_evaluate=points))
    return fit(Simulation(table, num_workers=3, write_results=True, **settings), str(storage), name=name,
               space=table.search_space, tune_config=config, callbacks=list(callbacks))


def histories(grid):
    """By row of the table: each result's fields, simulated times included."""
    out = {}
    for result in grid:
        with open(os.path.join(result.path, "result.json")) as f:
            rows = [json.loads(line) for line in f]
        out[result.config["row"]] = [(row["epoch"], row["training_iteration"], row["loss"], row["timestamp"],
                                      row["time_total_s"], row["done"]) for row in rows]
    return out


@pytest.mark.parametrize("make", [FIFOScheduler, SCHEDULERS["asha"][0]], ids=["fifo", "asha"])
def test_without_checkpoints_the_results_are_those_with_checkpoints(table, tmp_path, make):
    default = sweep(table, tmp_path, "default", make())
    with_checkpoints = sweep(table, tmp_path, "with", make(), checkpoint_at=1)  # (FIFO has no decision points)
    assert histories(default) == histories(with_checkpoints)
    assert all(result.checkpoint is None for result in default)
    assert sum(result.checkpoint is not None for result in with_checkpoints) == N_TRIALS


def test_a_restored_sweep_without_checkpoints_starts_the_running_trials_over(table, tmp_path):
    """As real trials without checkpoints do: each trial's history is still its curve's
    first epochs, once each."""
    first = sweep(table, tmp_path, "cut", SCHEDULERS["asha"][0](), callbacks=[CtrlCAtResult(14)])
    assert sum(result.metrics.get("done", False) is True for result in first) < N_TRIALS
    restored = tune.Tuner.restore(os.path.join(tmp_path, "cut"),
                                  trainable=Simulation(table, num_workers=3, write_results=True)).fit()
    assert len(restored) == N_TRIALS and not restored.errors
    for rows in histories(restored).values():
        assert [row[0] for row in rows] == list(range(1, len(rows) + 1))
        assert rows[-1][-1] is True
