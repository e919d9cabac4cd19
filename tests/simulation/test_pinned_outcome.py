"""Seeded simulated sweeps whose exact outcome is pinned: every trial's last epoch and final
loss, and the simulated time the sweep ended, as the simulator computed them before its
per-trial work was made cheaper (issue 19).  A change to the executor that moves any
result, decision or simulated second by one bit fails here."""
import hashlib

import pytest

import fasttune as tune
from fasttune.schedulers import ASHAScheduler, HyperBandScheduler
from fasttune.search import BasicVariantGenerator
from fasttune.simulation import Simulation, learning_curve_table, reference_trial_order
from fasttune_testing import fit


class RecordingSimulation(Simulation):
    """A Simulation that keeps the executor of its fit(), to read the clock afterwards."""

    def executor(self, time_budget_s=None, scheduler=None):
        self.last_executor = super().executor(time_budget_s, scheduler)
        return self.last_executor


def asha_on_epoch():
    return ASHAScheduler(time_attr="epoch", max_t=27, grace_period=1, reduction_factor=3), {}, {}


def hyperband_on_epoch():
    # Pauses and resumes trials from their checkpoints (checkpoint_at "auto": decision points).
    return HyperBandScheduler(time_attr="epoch", max_t=27, reduction_factor=3), {}, {}


def hyperband_on_epoch_with_overhead():
    # Each wait costs simulated time, so a resumed trial that waited at other results than
    # before (its decision points start afresh at the checkpoint's epoch) would end later.
    return HyperBandScheduler(time_attr="epoch", max_t=27, reduction_factor=3), {"decision_overhead_s": 0.5}, {}


def asha_on_iteration_with_overhead_and_stop():
    scheduler = ASHAScheduler(time_attr="training_iteration", max_t=27, grace_period=1, reduction_factor=3)
    return scheduler, {"decision_overhead_s": 0.25, "checkpoint_at": 5}, {"stop": {"time_total_s": 40.0}}


# scenario -> (trials, sha256 of every trial's (row, last epoch, training_iteration, repr(final loss)),
#              the simulated end time's float.hex()), computed on main at 91fbe66.
PINNED = {
    asha_on_epoch: (300, "a80ed2009316f90d84f85ab28afc66af8ba7504e99f76b3717e4b00d75f794ec", "0x1.d4bddf882a5eap+10"),
    hyperband_on_epoch: (81, "a2b802028b4db4ab7a28a0d2b0272087a3c1c9fdbd2d8d0a7117e768f3e402c4", "0x1.7295f94b1f83fp+10"),
    hyperband_on_epoch_with_overhead: (81, "a2b802028b4db4ab7a28a0d2b0272087a3c1c9fdbd2d8d0a7117e768f3e402c4", "0x1.74d5f94b1f83fp+10"),
    asha_on_iteration_with_overhead_and_stop: (120, "f6ab3165857e7f3107b6bfd2866e3039bd58408b88ac80ceabead62d078ce427",
                                               "0x1.d577c892a35a7p+8"),
}


def outcome(scenario, storage):
    n_trials = PINNED[scenario][0]
    scheduler, simulation_kwargs, run_kwargs = scenario()
    blackbox = learning_curve_table(n_trials, seed=0)
    simulation = RecordingSimulation(blackbox, num_workers=4, **simulation_kwargs)
    config = tune.TuneConfig(
        metric="loss", mode="min", num_samples=n_trials, scheduler=scheduler,
        search_alg=BasicVariantGenerator(points_to_evaluate=reference_trial_order(blackbox, n_trials=n_trials, seed=0),
                                         random_state=0))
    grid = fit(simulation, str(storage), space=blackbox.search_space, name="pinned", tune_config=config, **run_kwargs)
    trials = sorted((result.config["row"], result.metrics["epoch"], result.metrics["training_iteration"],
                     repr(result.metrics["loss"])) for result in grid)
    assert len(trials) == n_trials and not grid.errors
    return hashlib.sha256(repr(trials).encode()).hexdigest(), simulation.last_executor.clock.now.hex()


@pytest.mark.parametrize("scenario", list(PINNED), ids=lambda scenario: scenario.__name__)
def test_a_seeded_sweep_ends_exactly_as_pinned(scenario, tmp_path):
    _, trials_digest, end_time = PINNED[scenario]
    assert outcome(scenario, tmp_path) == (trials_digest, end_time)
