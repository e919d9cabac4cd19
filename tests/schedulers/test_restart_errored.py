"""``Tuner.restore(..., restart_errored=True)``: an errored trial starts over from
iteration 0, and every built-in scheduler judges it again as a trial added anew (at its
rungs, milestones or perturbation points), instead of letting it run unjudged because
it had left the scheduler's books (HyperBand's bracket) or because its earlier run's
records still stood (ASHA's rungs, the median rule's best, PBT's last perturbation).

HyperBand's sweeps run in the simulator (a trial fails as it starts); the others on Ray,
one trial at a time (the order of results, and so every decision, is fixed), where the
trial with ``q == failing_q`` raises once at ``fails_at`` (a marker file says it did).
Either way its restart runs to its end unless a scheduler ends it."""
import os
import random

import numpy as np
import pytest

import fasttune as tune
from fasttune._serialization import load_file
from fasttune.execution import _experiment_state as state
from fasttune.schedulers import (
    ASHAScheduler,
    HyperBandForBOHB,
    HyperBandScheduler,
    MedianStoppingRule,
    PopulationBasedTraining,
)
from fasttune.schedulers.pb2 import PB2
from fasttune.simulation import Blackbox, Simulation
from fasttune_testing import fit, lines, report_with_step_checkpoint, restored_step
from interrupt_testing import LogAndInterrupt


LAST = 12  # the most iterations a trial reports (no scheduler ends it before)


def failing_once(config):
    """Reports ``score`` (``q``, plus 0.001 per iteration, or ``climbing``'s slope for the
    trial with ``q == climbing_q``) with a checkpoint at each iteration; the trial with
    ``q == failing_q`` raises at ``fails_at`` the first time."""
    slope = config.get("climbing", 0.001) if config["q"] == config.get("climbing_q") else 0.001
    for it in range(restored_step() + 1, LAST + 1):
        if config["q"] == config["failing_q"] and it == config["fails_at"] and not os.path.exists(config["marker"]):
            open(config["marker"], "w").close()
            raise RuntimeError("fails once")
        report_with_step_checkpoint({"score": config["q"] + slope * it}, it)


def space(tmp_path, qualities, failing_q, fails_at, **extra):
    return dict({"q": tune.grid_search(qualities), "failing_q": failing_q, "fails_at": fails_at,
                 "marker": str(tmp_path / "failed-once")}, **extra)


def sweep(storage, param_space, scheduler, interrupts=None, log=None):
    """The sweep up to its end, or up to the interrupt that ``interrupts`` picks."""
    callbacks = [LogAndInterrupt(log, interrupts)] if interrupts is not None else []
    tuner = tune.Tuner(
        failing_once, param_space=param_space,
        tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=scheduler, max_concurrent_trials=1),
        run_config=tune.RunConfig(name="exp", storage_path=storage, verbose=0, callbacks=callbacks))
    if interrupts is None:
        return tuner.fit()
    with pytest.raises(tune.TuneError, match="interrupted right after a decision"):
        tuner.fit()


def restarted(storage):
    """The sweep restored with its errored trial restarted: each trial's iterations, by ``q``
    (its config's ``q`` when it started, for a trial PBT cloned another's config into)."""
    path = os.path.join(storage, "exp")
    before = {t.trial_id: t.config["q"] for t in state.read_trials(path)}
    grid = tune.Tuner.restore(path, trainable=failing_once, restart_errored=True).fit()
    assert grid.num_errors == 0
    out = {}
    for trial in state.read_trials(path):
        rows = lines(os.path.join(path, trial.storage_dirname, "result.json"))
        out[before.get(trial.trial_id, trial.config["q"])] = rows
    return out


def iterations(rows):
    return [row["training_iteration"] for row in rows]


class Linear(Blackbox):
    """``score = q + 0.001 * epoch`` for epochs 1 to ``LAST``, a simulated second each; the
    config with ``q == failing_q`` fails as its trial starts (or resumes) the
    ``fails_at_start``-th time (the restored sweep is given one with ``failing_q=None``)."""

    def __init__(self, qualities, failing_q=None, fails_at_start=1):
        super().__init__({"q": tune.grid_search(qualities)}, "epoch", list(range(1, LAST + 1)), ["score"])
        self.failing_q, self.fails_at_start, self.starts = failing_q, fails_at_start, 0

    def curve(self, config):
        if config["q"] == self.failing_q:
            self.starts += 1
            if self.starts == self.fails_at_start:
                raise RuntimeError("fails once")
        epochs = self.fidelities.astype(float)
        return {"score": config["q"] + 0.001 * epochs}, np.ones(len(epochs))


class InterruptAfterAnError(tune.Callback):
    """Raises at the first result after a trial errored (once: its state is in the snapshot)."""

    def __init__(self):
        self.armed = self.raised = False

    def on_trial_error(self, iteration, trials, trial, **info):
        self.armed = True

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if self.armed and not self.raised:
            self.raised = True
            raise RuntimeError("interrupted after an error")

    def get_state(self):
        return {"armed": self.armed, "raised": self.raised}

    def set_state(self, saved):
        self.armed, self.raised = saved["armed"], saved["raised"]


QUALITY = [(i * 7) % 17 for i in range(17)]


def simulated(tmp_path, name, scheduler, failing_q=None, callbacks=(), fails_at_start=1):
    simulation = Simulation(Linear(QUALITY, failing_q, fails_at_start), num_workers=3, write_results=True)
    return fit(simulation, str(tmp_path), name=name, space={"q": tune.grid_search(QUALITY)}, callbacks=list(callbacks),
               tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=scheduler))


def simulated_finals(grid):
    return {result.config["q"]: result.metrics["epoch"] for result in grid}


@pytest.mark.parametrize("scheduler_factory,failing_q", [
    (HyperBandScheduler, 1),  # the worst of bracket s=1 (trials 3-7, milestones 3, 9)
    (HyperBandForBOHB, 0),  # the worst of bracket s=2, its first (trials 0-8, milestones 1, 3, 9)
], ids=["hyperband", "bohb"])
def test_hyperband_puts_a_restarted_trial_back_in_its_bracket_that_has_not_halved_since(tmp_path, scheduler_factory,
                                                                                         failing_q):
    """The worst trial of a bracket fails as it starts; the sweep is interrupted at the next
    result, before that bracket halves.  Restarted, the trial is back in its bracket, which
    waits for it at its first milestone: every trial ends where the sweep that never failed
    ends it (that trial stopped there)."""
    def scheduler():
        return scheduler_factory(time_attr="epoch", max_t=9, reduction_factor=3)

    whole = simulated_finals(simulated(tmp_path, "whole", scheduler()))
    with pytest.raises(tune.TuneError, match="interrupted after an error"):
        simulated(tmp_path, "cut", scheduler(), failing_q=failing_q, callbacks=[InterruptAfterAnError()])
    simulation = Simulation(Linear(QUALITY), num_workers=3, write_results=True)
    grid = tune.Tuner.restore(str(tmp_path / "cut"), trainable=simulation, restart_errored=True).fit()
    assert grid.num_errors == 0
    assert whole[failing_q] < 9 and simulated_finals(grid) == whole


@pytest.mark.parametrize("scheduler_factory", [HyperBandScheduler, HyperBandForBOHB], ids=["hyperband", "bohb"])
def test_hyperband_adds_a_restarted_trial_whose_bracket_went_on_to_a_bracket_anew(tmp_path, scheduler_factory):
    """The sweep ended (every bracket halved without the failed trial): restarted, the trial
    joins a new bracket as a trial added anew; alone there, it is stopped at that bracket's
    last milestone (max_t), not left to run to its end unjudged."""
    simulated(tmp_path, "cut", scheduler_factory(time_attr="epoch", max_t=9, reduction_factor=3), failing_q=0)
    simulation = Simulation(Linear(QUALITY), num_workers=3, write_results=True)
    grid = tune.Tuner.restore(str(tmp_path / "cut"), trainable=simulation, restart_errored=True).fit()
    assert grid.num_errors == 0
    assert simulated_finals(grid)[0] == 9


@pytest.mark.parametrize("failing_q,final", [
    (11, 9),  # kept at milestone 3 of bracket s=1: back in it (its last round), stopped at 9
    (12, 9),  # paused at milestone 1 of bracket s=2, which halved on without it: a new bracket
], ids=["its-bracket", "a-new-bracket"])
def test_hyperband_judges_an_errored_trial_resumed_from_its_checkpoint_in_a_bracket(tmp_path, failing_q, final):
    """A trial fails as it resumes after its first milestone (the sweep ends without it).
    Resumed from its checkpoint (resume_errored), it is judged again from where it was:
    back in its bracket when that bracket has not halved since, else in a new one; not run
    unjudged to its end (epoch 12) past max_t."""
    def scheduler():
        return HyperBandScheduler(time_attr="epoch", max_t=9, reduction_factor=3)

    whole = simulated_finals(simulated(tmp_path, "whole", scheduler()))
    cut = simulated(tmp_path, "cut", scheduler(), failing_q=failing_q, fails_at_start=2)
    assert cut.num_errors == 1
    simulation = Simulation(Linear(QUALITY), num_workers=3, write_results=True)
    grid = tune.Tuner.restore(str(tmp_path / "cut"), trainable=simulation, resume_errored=True).fit()
    assert grid.num_errors == 0
    finals = simulated_finals(grid)
    assert finals[failing_q] == final
    if failing_q == 11:
        assert finals == whole


def test_hyperband_keeps_where_only_errored_trials_left_their_brackets(tmp_path):
    """The sweep's other trials end (stopped, or completed at epoch 12 in their brackets
    before max_t) and never run again: the scheduler's state keeps no entry for them."""
    scheduler = HyperBandScheduler(time_attr="epoch", max_t=27, reduction_factor=3)
    simulated(tmp_path, "cut", scheduler, failing_q=16, fails_at_start=2)  # as it resumes after a milestone
    errored = [trial.trial_id for trial in state.read_trials(str(tmp_path / "cut")) if trial.status == "ERROR"]
    path = str(tmp_path / "hyperband.state")
    scheduler.save(path)
    assert len(errored) == 1 and list(load_file(path)["left_at"]) == errored


@pytest.mark.usefixtures("ray_session")
def test_asha_judges_a_restarted_trial_at_its_first_rung_again(storage, tmp_path):
    """q=0.2 runs first: nothing to beat at rung 1, it goes on and errors at 2.  Restarted
    after the others ran, it is judged at rung 1 against their values (its earlier run's
    value forgotten) and stopped there; before, its record there let it pass rung 1."""
    qualities = [0.2, 0.9, 0.8, 0.7, 0.6, 0.5]
    sweep(storage, space(tmp_path, qualities, failing_q=0.2, fails_at=2),
          ASHAScheduler(max_t=9, grace_period=1, reduction_factor=3))
    histories = restarted(storage)
    assert iterations(histories[0.2]) == [1]


@pytest.mark.usefixtures("ray_session")
def test_the_median_rule_judges_a_restarted_trial_by_its_new_results_only(storage, tmp_path):
    """q=0 climbs 0.1 per iteration and runs first (no samples to judge it by); it errors at
    6, its best so far 0.5.  Restarted after the others (flat at 0.3) ran, its best at
    iteration 2 is 0.2, below their median: stopped there.  Its earlier run's best of 0.5
    used to keep it going."""
    sweep(storage, space(tmp_path, [0.0, 0.3, 0.3001, 0.3002], failing_q=0.0, fails_at=6, climbing_q=0.0,
                         climbing=0.1),
          MedianStoppingRule(time_attr="training_iteration", grace_period=2, min_samples_required=2))
    histories = restarted(storage)
    assert iterations(histories[0.0]) == [1, 2]


@pytest.mark.parametrize("scheduler_factory", [
    lambda: PopulationBasedTraining(time_attr="training_iteration", perturbation_interval=2, quantile_fraction=0.5,
                                    hyperparam_mutations={"lr": [1, 2, 3]}),
    lambda: PB2(time_attr="training_iteration", perturbation_interval=2, quantile_fraction=0.5,
                hyperparam_bounds={"lr": [1, 3]}),
], ids=["pbt", "pb2"])
def test_pbt_judges_a_restarted_trial_from_its_first_perturbation_point(tmp_path, scheduler_factory):
    """Four trials take turns on one simulated worker.  q=0.1 runs first, is scored at its
    perturbation point 2 and paused there (nobody to clone yet), and fails as it resumes;
    the sweep is interrupted at the next result.  Restarted, q=0.1 is judged at its new
    run's point 2, where it is the worst: it clones q=0.9 (paused at 4) and goes on as that
    trial.  Before, its earlier run's last perturbation (2) put its next point at 4."""
    qualities = [0.1, 0.9, 0.5, 0.3]

    def run(blackbox, callbacks=()):
        random.seed(0)
        np.random.seed(0)
        return fit(Simulation(blackbox, num_workers=1, write_results=True), str(tmp_path), name="cut",
                   space={"q": tune.grid_search(qualities)}, callbacks=list(callbacks),
                   tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=scheduler_factory()))

    with pytest.raises(tune.TuneError, match="interrupted after an error"):
        run(Linear(qualities, failing_q=0.1, fails_at_start=2), callbacks=[InterruptAfterAnError()])
    failed = next(t for t in state.read_trials(str(tmp_path / "cut")) if t.config["q"] == 0.1)
    assert failed.status == "ERROR"
    random.seed(0)
    np.random.seed(0)
    simulation = Simulation(Linear(qualities), num_workers=1, write_results=True)
    grid = tune.Tuner.restore(str(tmp_path / "cut"), trainable=simulation, restart_errored=True).fit()
    assert grid.num_errors == 0
    path = next(r.path for r in grid if r.metrics["trial_id"] == failed.trial_id)
    rows = lines(os.path.join(path, "result.json"))
    # By (epoch, q): cloned at 2 from q=0.9's checkpoint at epoch 4, it goes on from there.
    assert [(row["epoch"], round(row["score"] - 0.001 * row["epoch"], 6)) for row in rows[:3]] == [
        (1, 0.1), (2, 0.1), (5, 0.9)]
