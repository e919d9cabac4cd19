"""``Tuner.restore`` of a simulated sweep goes on exactly: interrupted (Ctrl-C) after any
result and restored, it ends with the results of the sweep never interrupted: the same
histories, at the same simulated times, the same decisions, the same budget's end."""
import json
import os
import shutil

import pytest

import fasttune as tune
from fasttune.schedulers import ASHAScheduler, HyperBandScheduler
from fasttune.search import BasicVariantGenerator
from fasttune.simulation import Simulation, learning_curve_table, reference_trial_order
from ctrl_c_testing import CtrlCAtResult, RaiseAtResult
from fasttune_testing import fit

N_TRIALS = 16


@pytest.fixture(scope="module")
def table():
    return learning_curve_table(60, seed=0, n_epochs=9)


def simulation(table, decision_overhead_s=0.0):
    # Trials checkpoint where they report to the scheduler (ASHA's default has none: a
    # restore would start the running trials over, see test_checkpoint_default.py).
    return Simulation(table, num_workers=3, write_results=True, decision_overhead_s=decision_overhead_s,
                      checkpoint_at="decision_points")


def tune_config(table, scheduler, **kwargs):
    points = reference_trial_order(table, N_TRIALS, seed=0)
    return tune.TuneConfig(metric="loss", mode="min", num_samples=N_TRIALS, scheduler=scheduler,
                           search_alg=BasicVariantGenerator(points_to_evaluate=points), **kwargs)


def histories(grid):
    """By config: each result's fields that do not depend on restores (not the
    ``*_since_restore`` counters), with its simulated time; and each trial's status."""
    out = {}
    for result in grid:
        path = os.path.join(result.path, "result.json")
        rows = []
        if os.path.exists(path):  # a trial the budget ended before it started has none
            with open(path) as f:
                rows = [json.loads(line) for line in f]
        out[result.config["row"]] = (
            [(row["epoch"], row["training_iteration"], row["loss"], row["timestamp"],
              round(row["time_total_s"], 9), round(row["time_this_iter_s"], 9), row["done"]) for row in rows],
            result.metrics.get("done"))
    return out


def interrupted_then_restored(table, tmp_path, name, scheduler_factory, at, overhead=0.0, **kwargs):
    first = fit(simulation(table, overhead), str(tmp_path), name=name, space=table.search_space,
                tune_config=tune_config(table, scheduler_factory(), **kwargs), callbacks=[CtrlCAtResult(at)])
    assert sum(r.metrics.get("done", False) is True for r in first) < N_TRIALS  # it was interrupted
    return tune.Tuner.restore(os.path.join(tmp_path, name), trainable=simulation(table, overhead)).fit()


def asha():
    return ASHAScheduler(time_attr="epoch", max_t=9, grace_period=1, reduction_factor=3)


def hyperband():
    return HyperBandScheduler(time_attr="epoch", max_t=9, reduction_factor=3)


@pytest.mark.parametrize("at", [1, 7, 23, 40])
def test_an_asha_sweep_interrupted_and_restored_ends_as_if_never_interrupted(table, tmp_path, at):
    whole = fit(simulation(table), str(tmp_path), name="whole", space=table.search_space,
                tune_config=tune_config(table, asha()))
    restored = interrupted_then_restored(table, tmp_path, "cut", asha, at)
    assert histories(restored) == histories(whole)
    assert {len(rows) for rows, _ in histories(whole).values()} == {1, 3, 9}


@pytest.mark.parametrize("at", [5, 23])
def test_decision_points_on_the_epoch_keep_what_they_passed_across_a_restore(table, tmp_path, at):
    """ASHA on the reported epoch waits only where the epoch reaches a rung, and each wait
    costs a simulated second: a restored trial that forgot the rungs it had passed would
    wait again at its next result, and its times would differ."""
    whole = fit(simulation(table, 1.0), str(tmp_path), name="whole", space=table.search_space,
                tune_config=tune_config(table, asha()))
    restored = interrupted_then_restored(table, tmp_path, "cut", asha, at, overhead=1.0)
    assert histories(restored) == histories(whole)


def test_the_time_budget_counts_the_simulated_time_before_the_interrupt_too(table, tmp_path):
    budget = 50.5  # seconds of simulated time: the whole sweep takes more
    whole = fit(simulation(table), str(tmp_path), name="whole", space=table.search_space,
                tune_config=tune_config(table, asha(), time_budget_s=budget))
    restored = interrupted_then_restored(table, tmp_path, "cut", asha, 20, time_budget_s=budget)
    assert histories(restored) == histories(whole)
    last = max(row[3] for rows, _ in histories(whole).values() for row in rows)
    assert 40 < last <= budget  # the budget cut the sweep (timestamps count from 0)


@pytest.mark.parametrize("at", [10, 30])
def test_paused_trials_resume_from_their_fidelity_after_a_restore(table, tmp_path, at):
    """HyperBand pauses trials at its milestones and resumes the best from their
    checkpoints, which are fidelities the executor keeps: they come back with a restore."""
    whole = fit(simulation(table), str(tmp_path), name="whole", space=table.search_space,
                tune_config=tune_config(table, hyperband()))
    restored = interrupted_then_restored(table, tmp_path, "cut", hyperband, at)
    assert histories(restored) == histories(whole)
    assert max(len(rows) for rows, _ in histories(whole).values()) == 9


def raised_then_restored(table, tmp_path, name, scheduler, at, overhead=0.0):
    """The histories of the sweep with a callback raising at its ``at``-th result, then
    restored (None: it was not interrupted)."""
    try:
        fit(simulation(table, overhead), str(tmp_path), name=name, space=table.search_space,
            tune_config=tune_config(table, scheduler), callbacks=[RaiseAtResult(at)])
    except tune.TuneError:
        return histories(tune.Tuner.restore(os.path.join(tmp_path, name), trainable=simulation(table, overhead)).fit())
    return None


@pytest.mark.parametrize("scheduler_factory, overhead", [(hyperband, 0.0), (asha, 0.0), (asha, 1.0)],
                         ids=["hyperband", "asha", "asha-overhead"])
def test_a_sweep_a_callback_interrupts_at_any_result_ends_restored_as_if_never_interrupted(table, tmp_path,
                                                                                          scheduler_factory, overhead):
    """Every result in turn: a callback raising between two results of one worker reply
    (the batch is still logged and counted) included, and one raising before the runner
    answered a decision point (with an overhead, the answer's simulated second counts)."""
    whole = histories(fit(simulation(table, overhead), str(tmp_path), name="whole", space=table.search_space,
                          tune_config=tune_config(table, scheduler_factory())))
    total = sum(len(rows) for rows, _ in whole.values())
    for at in range(1, total):
        restored = raised_then_restored(table, tmp_path, f"cut{at}", scheduler_factory(), at, overhead)
        assert restored == whole, f"interrupted at result {at}"
        shutil.rmtree(os.path.join(tmp_path, f"cut{at}"))


class HeardHyperBand(HyperBandScheduler):
    """HyperBand that keeps the epochs it judged, by trial directory."""

    def __init__(self):
        super().__init__(time_attr="epoch", max_t=9, reduction_factor=3)
        self.heard = {}

    def on_trial_result(self, tune_controller, trial, result):
        self.heard.setdefault(trial.path, []).append(result["epoch"])
        return super().on_trial_result(tune_controller, trial, result)


def test_the_results_after_the_one_a_callback_raised_on_are_judged_before_the_snapshot(table, tmp_path):
    """The 10th result is the first of a reply of three (epochs 1 to 3, HyperBand's
    milestone 3): the callback raising there leaves the other two logged and counted, so
    HyperBand judges them too (and pauses the trial at its milestone, as it would have)."""
    scheduler = HeardHyperBand()
    raising = RaiseAtResult(10)
    with pytest.raises(tune.TuneError):
        fit(simulation(table), str(tmp_path), name="cut", space=table.search_space,
            tune_config=tune_config(table, scheduler), callbacks=[raising])
    path, epoch = raising.raised_on
    with open(os.path.join(path, "result.json")) as f:
        logged = [json.loads(line)["epoch"] for line in f]
    assert epoch == 1 and logged == [1, 2, 3]  # it raised before the end of a batch
    assert scheduler.heard[path] == logged
    restored = tune.Tuner.restore(os.path.join(tmp_path, "cut"), trainable=simulation(table)).fit()
    whole = fit(simulation(table), str(tmp_path), name="whole", space=table.search_space,
                tune_config=tune_config(table, hyperband()))
    assert histories(restored) == histories(whole)


def test_the_executor_state_is_plain_data_and_a_restored_executor_sends_the_same_next_replies():
    """Driven directly: two trials on two virtual workers, saved after the first reply;
    a fresh executor given that state (through the snapshot's msgpack, which pickles
    nothing of it) sends the replies the first would have, at the same times."""
    from types import SimpleNamespace

    from fasttune._serialization import DataOnlyLoader, pack_noting_pickles
    from fasttune.search import uniform
    from fasttune.simulation import FunctionBlackbox, SimulatedExecutor

    blackbox = FunctionBlackbox(lambda config, epoch: ({"loss": config["x"] / epoch}, 1.0 + config["x"]),
                                {"x": uniform(0, 1)}, range(1, 7), ["loss"])
    trials = [SimpleNamespace(trial_id=name, config={"x": x}) for name, x in (("a", 0.25), ("b", 0.5))]

    def spec(trial):
        return {"trial_id": trial.trial_id, "decide": ["every", 2], "trial_dir": f"/exp/{trial.trial_id}"}

    def replies(executor, n):
        out = []
        for _ in range(n):
            kind, slot, records = executor.get_next_executor_event(False)
            out.append((executor.clock.now, [tuple(r) for r in records if type(r).__name__ != "Started"]))
            for record in records:
                if type(record).__name__ == "Decide":
                    executor.send_decision(slot, record.trial_id, "continue")
        return out

    first = SimulatedExecutor(blackbox, num_workers=2)
    for trial in trials:
        first.start_trial(trial, spec(trial))
    replies(first, 1)  # "a" reached epoch 2 at t=2.5 and goes on
    data, pickled = pack_noting_pickles(first.get_state())
    assert pickled == []
    state = DataOnlyLoader().unpack(data)
    expected = replies(first, 4)

    restored = SimulatedExecutor(blackbox, num_workers=2)
    restored.set_state(state)
    assert restored.clock.now == 2.5
    for trial in trials:  # the runner restarts them from where their last reply reached
        restored.start_trial(trial, dict(spec(trial), iteration=2 if trial.trial_id == "a" else 0))
    assert replies(restored, 4) == expected
