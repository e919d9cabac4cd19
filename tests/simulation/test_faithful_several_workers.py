"""The real executor and the simulator make the same decisions with two workers.

A table of 8 trials whose per-epoch times are designed so that every event of one worker
(a trial reaching an ASHA rung, ending, starting) is at least ``MARGIN`` table seconds away
from every event of the other worker's overlapping trial: trial 0 runs alone on one worker
(its rungs at t=6 and t=27, its end at t=51) while the other worker runs trials 1-7 one
after another, with a 12-second epoch around each of trial 0's rungs.  Played for real at
``SECONDS_PER_UNIT`` real seconds per table second, on one clock all trials share: each
result is reported at ``t0 + (its trial's start in the simulated run + its elapsed table
time) x SECONDS_PER_UNIT``, ``t0`` being when the last of the first trials was ready (a
file barrier: both read the same file times).  So neither the actors' start-up skew nor
the per-step and per-decision overhead accumulates between the two workers: what is left
is each report's own latency (milliseconds) against a margin of 6 x 0.2 s = 1.2 s.  Within
one worker the order is causal.  The test asserts the margin on the simulated run, so the
design cannot rot.

Trial 0's rung values matter: trial 4 reaches epoch 3 after trial 0 did and is stopped
there because of it (without trial 0's value it would go on), so a run that got the
cross-worker order wrong would differ.

HyperBand's decisions depend on no race at all: a bracket halves only when all its trials
reached the milestone, so its outcome is checked at a faster time scale.
"""
import itertools

import pandas
import pytest

import fasttune as tune
from fasttune.schedulers import ASHAScheduler, HyperBandScheduler
from fasttune.search import BasicVariantGenerator
from fasttune.simulation import Simulation, TabularBlackbox, blackbox_trainable
from fasttune_testing import fit

N_TRIALS = 8
WORKERS = 2
MARGIN = 6  # table seconds between any two events of different workers
SECONDS_PER_UNIT = 0.2  # real seconds a table second takes in the ASHA run
RUNGS = (1, 3)  # ASHA's rungs below max_t=9 (grace 1, reduction factor 3)
# Trial 0 is the best; the rest in an order that stops some trials at each rung.
LEVELS = [0.0, 0.6, 0.2, 0.5, 0.1, 0.7, 0.4, 0.3]


def epoch_seconds(trial):
    if trial == 0:
        return [6, 10, 11] + [4] * 6  # rungs at 6 and 27, end at 51
    if trial in (1, 3):
        return [12] + [1] * 8  # the other worker is mid-epoch around t=6 and t=27
    return [1] * 9


@pytest.fixture(scope="module")
def blackbox():
    rows = []
    for trial, level in enumerate(LEVELS):
        elapsed = 0.0
        for epoch, seconds in enumerate(epoch_seconds(trial), start=1):
            elapsed += seconds
            rows.append({"trial": trial, "epoch": epoch, "loss": level + 1.0 / epoch, "elapsed": elapsed})
    return TabularBlackbox(pandas.DataFrame(rows), config_columns=["trial"], fidelity_column="epoch",
                           metric_columns=["loss"], elapsed_column="elapsed")


def tune_config(blackbox, scheduler):
    points = [blackbox.config_of_row(trial) for trial in range(N_TRIALS)]  # the table's rows, trial i in row i
    return tune.TuneConfig(metric="loss", mode="min", num_samples=N_TRIALS, max_concurrent_trials=WORKERS,
                           scheduler=scheduler, search_alg=BasicVariantGenerator(points_to_evaluate=points))


def decisions(grid):
    """Each trial's last result: where the scheduler let it stop (by the trial's index)."""
    return {r.config["trial"]: (r.metrics["epoch"], r.metrics["training_iteration"], r.metrics["loss"]) for r in grid}


class SimulatedEvents(tune.Callback):
    """Each trial's start and results, in simulated seconds (start_time 0, whole seconds:
    a result's integer ``timestamp`` is its exact simulated time)."""

    def __init__(self):
        self.by_trial = {}

    def on_trial_result(self, iteration, trials, trial, result, **info):
        times = self.by_trial.setdefault(trial.config["trial"], [result["timestamp"] - result["time_this_iter_s"]])
        times.append(result["timestamp"])


def cross_worker_margin(by_trial):
    """The least distance between events (rung results, ends, starts after t=0) of two
    trials that run at the same time, hence on different workers."""
    closest = float("inf")
    for a, b in itertools.combinations(by_trial.values(), 2):
        if not (a[0] < b[-1] and b[0] < a[-1]):
            continue

        def events(times):
            results = times[1:]
            return [results[r - 1] for r in RUNGS if r <= len(results)] + [results[-1]] + times[:1] * (times[0] > 0)

        closest = min(closest, min(abs(x - y) for x in events(a) for y in events(b)))
    return closest


def on_the_table_clock(blackbox, starts, shared):
    """A trainable that reports each epoch of its table row at the real time the table puts
    it, on the clock all trials share (see the module docstring); ``starts``: each trial's
    start in the simulated run, in table seconds."""
    first = sorted(trial for trial, start in starts.items() if start == 0)

    def train(config):
        import os
        import time

        trial = config["trial"]
        metrics, step_seconds = blackbox.curve(config)
        if trial in first:
            open(os.path.join(shared, f"ready_{trial}"), "w").close()
        marks = [os.path.join(shared, f"ready_{t}") for t in first]
        while not all(os.path.exists(mark) for mark in marks):
            time.sleep(0.005)  # polling the barrier's files
        t0 = max(os.stat(mark).st_mtime for mark in marks)
        elapsed = 0.0
        for i, epoch in enumerate(blackbox.fidelities.tolist()):
            elapsed += float(step_seconds[i])
            due = t0 + (starts[trial] + elapsed) * SECONDS_PER_UNIT
            if due > time.time():
                time.sleep(due - time.time())  # the workload: this epoch's table time
            tune.report({"loss": float(metrics["loss"][i]), "epoch": epoch})

    return train


def test_asha_on_two_workers_decides_as_the_simulator_does(blackbox, tmp_path, ray_session):
    def asha():
        return ASHAScheduler(time_attr="epoch", max_t=9, grace_period=1, reduction_factor=3)

    events = SimulatedEvents()
    simulated = fit(Simulation(blackbox, num_workers=WORKERS), str(tmp_path / "sim"), space=blackbox.search_space,
                    name="sim", tune_config=tune_config(blackbox, asha()), callbacks=[events])
    assert cross_worker_margin(events.by_trial) >= MARGIN  # the design holds
    starts = {trial: times[0] for trial, times in events.by_trial.items()}
    real = fit(on_the_table_clock(blackbox, starts, str(tmp_path)), str(tmp_path / "real"),
               space=blackbox.search_space, name="real", tune_config=tune_config(blackbox, asha()))
    assert decisions(real) == decisions(simulated)
    # What the simulator decided, so the comparison is not between two empty runs.
    assert {trial: epoch for trial, (epoch, _, _) in decisions(simulated).items()} == {
        0: 9, 1: 1, 2: 9, 3: 1, 4: 3, 5: 1, 6: 1, 7: 1}
    assert real.get_best_result().config == simulated.get_best_result().config == blackbox.config_of_row(0)


def test_trial_4_is_stopped_at_epoch_3_by_the_other_workers_value(blackbox, tmp_path):
    """What makes the cross-worker order matter: with trial 0 on a worker of its own
    reaching epoch 3 after trial 4 does (its epochs made slow), trial 4 goes on."""
    def slow_first(config, epoch):
        metrics, seconds = blackbox.evaluate(config, epoch)
        return metrics, seconds * (10 if config["trial"] == 0 else 1)

    from fasttune.simulation import FunctionBlackbox

    slow = FunctionBlackbox(slow_first, blackbox.search_space, fidelities=blackbox.fidelities.tolist(),
                            metric_names=["loss"])
    grid = fit(Simulation(slow, num_workers=WORKERS), str(tmp_path), space=blackbox.search_space, name="slow",
               tune_config=tune_config(blackbox, ASHAScheduler(time_attr="epoch", max_t=9, grace_period=1,
                                                     reduction_factor=3)))
    assert decisions(grid)[4][0] == 9


def test_hyperband_on_two_workers_decides_as_the_simulator_does(blackbox, tmp_path, ray_session):
    def hyperband():
        return HyperBandScheduler(time_attr="epoch", max_t=9, reduction_factor=3)

    simulated = fit(Simulation(blackbox, num_workers=WORKERS), str(tmp_path / "sim"), space=blackbox.search_space,
                    name="sim", tune_config=tune_config(blackbox, hyperband()))
    real = fit(blackbox_trainable(blackbox, time_scale=0.02, checkpoint=True), str(tmp_path / "real"),
               space=blackbox.search_space, name="real", tune_config=tune_config(blackbox, hyperband()))
    assert decisions(real) == decisions(simulated)
    assert {epoch for epoch, _, _ in decisions(simulated).values()} == {3, 9}
    assert real.get_best_result().config == simulated.get_best_result().config == blackbox.config_of_row(0)
