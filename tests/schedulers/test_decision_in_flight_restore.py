"""Sweeps interrupted right after the runner decided to stop or pause a trial (ASHA's STOP
at a rung, a Stopper's STOP, a scheduler's PAUSE), while that decision was still on its
way to the worker: the snapshot holds the pending decision, and a restore carries it
out (the trial comes back TERMINATED or PAUSED) instead of running the trial past it.
Every trial then ends as in the same sweep never interrupted."""
import math
import os

import pytest

import fasttune as tune
from fasttune.execution import _experiment_state as state
from fasttune.schedulers import ASHAScheduler, DecisionPoints, FIFOScheduler, TrialScheduler
from fasttune.tune_config import ResumeConfig
from fasttune_testing import lines, report_with_step_checkpoint, restored_step
from interrupt_testing import LogAndInterrupt, read_log

pytestmark = pytest.mark.usefixtures("ray_session")

QUALITIES = [0.3, 0.9, 0.1, 0.5, 0.7, 0.2, 0.8, 0.4]
MAX_T = 27


def score(q, it):
    return q * math.log1p(it) + 0.05 * math.sin(7 * q * it)


def checkpointed_trainable(config):
    """Reports ``score`` with a checkpoint at each iteration; resumes from its checkpoint."""
    for it in range(restored_step() + 1, config.get("length", 1000)):
        report_with_step_checkpoint({"score": score(config["q"], it)}, it)


def iterations(trial_dir):
    return [row["training_iteration"] for row in lines(os.path.join(trial_dir, "result.json"))]


def histories(path):
    """Each trial's result.json rows as (iteration, score), by its ``q``."""
    out = {}
    for trial in state.read_trials(path):
        rows = lines(os.path.join(path, trial.storage_dirname, "result.json"))
        out[trial.config["q"]] = [(row["training_iteration"], row["score"]) for row in rows]
    return out


def run(storage, name, log, scheduler, interrupts=None, stop=None, space=None):
    """One sweep, a trial at a time (so the order of results, and so every decision, is
    fixed); raises the interrupt when ``interrupts`` picks a result."""
    tuner = tune.Tuner(
        checkpointed_trainable, param_space=space or {"q": tune.grid_search(QUALITIES)},
        tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=scheduler, max_concurrent_trials=1),
        run_config=tune.RunConfig(name=name, storage_path=storage, verbose=0, stop=stop,
                                  callbacks=[LogAndInterrupt(log, interrupts)]))
    return tuner.fit()


def interrupted(storage, tmp_path, scheduler, interrupts, stop=None, space=None):
    """Run the sweep up to its interrupt; returns the experiment path and the interrupted
    trial's id, ``q`` and iteration (the decision on that result had not reached its worker)."""
    log = str(tmp_path / "interrupted.log")
    with pytest.raises(tune.TuneError, match="interrupted right after a decision"):
        run(storage, "interrupted", log, scheduler, interrupts, stop=stop, space=space)
    path = os.path.join(storage, "interrupted")
    q, it = read_log(log)[-1]
    trial = next(t for t in state.read_trials(path) if t.config["q"] == q)
    assert trial.status == "RUNNING"
    return path, trial.trial_id, q, it


def asha():
    return ASHAScheduler(max_t=MAX_T, grace_period=1, reduction_factor=3)


def stopped_at_a_rung(result):
    return result.get("done") and result["training_iteration"] < MAX_T  # ASHA's STOP, not max_t


def test_a_trial_asha_stopped_at_a_rung_stays_stopped_after_a_restore(storage, tmp_path):
    reference = run(storage, "reference", str(tmp_path / "reference.log"), asha())
    expected_finals = {r.config["q"]: r.metrics["training_iteration"] for r in reference}
    path, trial_id, q, rung = interrupted(storage, tmp_path, asha(), stopped_at_a_rung)
    # The snapshot has the STOP the worker had not heard yet, with the iteration it was decided at.
    assert state.load_latest(path)[0].get("pending_decisions") == {trial_id: [TrialScheduler.STOP, rung]}
    before = histories(path)
    assert before[q] == histories(os.path.join(storage, "reference"))[q]  # up to and including its rung

    grid = tune.Tuner.restore(path, trainable=checkpointed_trainable).fit()

    assert grid.num_errors == 0 and grid.num_terminated == len(QUALITIES)
    restored = next(r for r in grid if r.config["q"] == q)
    assert restored.metrics["training_iteration"] == rung and restored.metrics["done"]
    assert iterations(restored.path) == list(range(1, rung + 1))  # each once, none past its rung
    assert lines(os.path.join(restored.path, "result.json"))[-1]["done"] is True  # on disk too
    after = histories(path)
    for each, history in before.items():
        assert after[each] == history  # no trial of the interrupted run changed its history
    assert {r.config["q"]: r.metrics["training_iteration"] for r in grid} == expected_finals
    assert after == histories(os.path.join(storage, "reference"))
    # The restored run never heard a result of the stopped trial again.
    assert [it for each, it in read_log(str(tmp_path / "interrupted.log")) if each == q] == list(range(1, rung + 1))


def test_a_stop_restored_drops_what_the_killed_run_logged_after_the_snapshot(storage, tmp_path):
    path, trial_id, q, rung = interrupted(storage, tmp_path, asha(), stopped_at_a_rung)
    trial_dir = os.path.join(path, next(t for t in state.read_trials(path) if t.trial_id == trial_id).storage_dirname)
    with open(os.path.join(trial_dir, "result.json")) as f:
        last_row = f.readlines()[-1]
    with open(os.path.join(trial_dir, "result.json"), "a") as f:
        f.write(last_row.replace(f'"training_iteration": {rung}', f'"training_iteration": {rung + 1}'))

    grid = tune.Tuner.restore(path, trainable=checkpointed_trainable).fit()

    assert iterations(next(r for r in grid if r.config["q"] == q).path) == list(range(1, rung + 1))


class PauseAt(FIFOScheduler):
    """Pauses each trial at iteration ``at`` (deciding at every result), and resumes the
    paused ones (from their checkpoints) once all ``trials`` trials have reported ``at``."""

    def __init__(self, at, trials):
        super().__init__()
        self.at, self.trials = at, trials

    def decision_points(self, trial):
        return DecisionPoints.every_result()

    def on_trial_result(self, tune_controller, trial, result):
        return TrialScheduler.PAUSE if result["training_iteration"] == self.at else TrialScheduler.CONTINUE

    def choose_trial_to_run(self, tune_controller):
        pending = tune_controller.first_trial_with_status("PENDING")
        trials = tune_controller.get_trials()
        if pending is not None or len(trials) < self.trials:
            return pending  # None: the runner makes the next trial first
        if all(t.last_result.get("training_iteration", 0) >= self.at for t in trials):
            return tune_controller.first_trial_with_status("PAUSED")
        return None


def test_a_trial_paused_by_its_scheduler_comes_back_paused_and_waits_for_the_others(storage, tmp_path):
    qualities = QUALITIES[:3]
    space = {"q": tune.grid_search(qualities), "length": 7}
    log = str(tmp_path / "results.log")
    tuner = tune.Tuner(
        checkpointed_trainable, param_space=space,
        tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=PauseAt(3, len(qualities))),
        run_config=tune.RunConfig(name="paused", storage_path=storage, verbose=0, callbacks=[
            LogAndInterrupt(log, lambda result: result["training_iteration"] == 3)]))
    with pytest.raises(tune.TuneError, match="interrupted right after a decision"):
        tuner.fit()
    path = os.path.join(storage, "paused")
    q, at = read_log(log)[-1]
    trial = next(t for t in state.read_trials(path) if t.config["q"] == q)
    assert at == 3 and trial.status == "RUNNING"
    assert state.load_latest(path)[0]["pending_decisions"][trial.trial_id] == [TrialScheduler.PAUSE, 3]

    grid = tune.Tuner.restore(path, trainable=checkpointed_trainable).fit()

    assert grid.num_errors == 0 and {r.metrics["training_iteration"] for r in grid} == {6}
    # As without the interrupt, no trial went on past its pause before every trial had
    # reported its iteration 3; each result was reported once.
    logged = read_log(log)
    first_past = min(index for index, (_, it) in enumerate(logged) if it > 3)
    assert sorted(logged[:first_past]) == sorted((each, it) for each in qualities for it in (1, 2, 3))
    assert sorted(logged) == sorted((each, it) for each in qualities for it in range(1, 7))
    for result in grid:
        assert iterations(result.path) == list(range(1, 7))


class StopAt(tune.Stopper):
    """Stops the trial of quality ``q`` at iteration ``at``, the others at ``last``."""

    def __init__(self, q, at, last):
        self.q, self.at, self.last = q, at, last

    def __call__(self, trial_id, result):
        return result["training_iteration"] == (self.at if result["config"]["q"] == self.q else self.last)

    def stop_all(self):
        return False


def test_a_trial_the_stopper_stopped_stays_stopped_after_a_restore(storage, tmp_path):
    stopper = StopAt(QUALITIES[0], 4, 6)
    path, trial_id, q, at = interrupted(storage, tmp_path, None, lambda result: result.get("done"), stop=stopper,
                                        space={"q": tune.grid_search(QUALITIES[:3])})
    assert (q, at) == (QUALITIES[0], 4)
    assert state.load_latest(path)[0]["pending_decisions"] == {trial_id: [TrialScheduler.STOP, 4]}

    grid = tune.Tuner.restore(path, trainable=checkpointed_trainable).fit()

    finals = {r.config["q"]: r.metrics["training_iteration"] for r in grid}
    assert finals == {QUALITIES[0]: 4, QUALITIES[1]: 6, QUALITIES[2]: 6}
    assert iterations(next(r for r in grid if r.config["q"] == q).path) == [1, 2, 3, 4]


class StopAtIteration(FIFOScheduler):
    """Stops each trial at iteration ``at``; deciding at every result, or (``between``)
    at none: the STOP then reaches the worker as an interrupt while it reports on."""

    def __init__(self, at, between):
        super().__init__()
        self.at, self.between = at, between

    def decision_points(self, trial):
        return DecisionPoints.never() if self.between else DecisionPoints.every_result()

    def on_trial_result(self, tune_controller, trial, result):
        return TrialScheduler.STOP if result["training_iteration"] == self.at else TrialScheduler.CONTINUE


@pytest.mark.parametrize("between", [False, True], ids=["at-a-decision-point", "between-decision-points"])
def test_a_scheduler_stop_restored_keeps_the_results_the_snapshot_counted(storage, tmp_path, between):
    path, trial_id, q, _ = interrupted(storage, tmp_path, StopAtIteration(4, between), lambda result: result.get("done"),
                                       space={"q": 0.5, "length": 60})
    # Between decision points, results reported before the interrupt arrived are counted too,
    # and the callbacks hear them after the one that raised (at 4, where the STOP was taken).
    counted = next(t for t in state.read_trials(path) if t.trial_id == trial_id).last_result["training_iteration"]
    assert counted == 4 or between
    heard = [(q, it) for it in range(1, counted + 1)]
    assert read_log(str(tmp_path / "interrupted.log")) == heard

    grid = tune.Tuner.restore(path, trainable=checkpointed_trainable).fit()

    assert grid.num_terminated == 1 and grid[0].metrics["training_iteration"] == counted
    assert iterations(grid[0].path) == list(range(1, counted + 1))
    assert read_log(str(tmp_path / "interrupted.log")) == heard  # none after restore


@pytest.mark.parametrize("how", ["restart", "skip"])
def test_restore_options_for_unfinished_trials_leave_a_stopped_trial_finished(storage, tmp_path, how):
    # As Ray Tune has it (its trial ended as the scheduler decided): finished, not unfinished.
    path, trial_id, q, rung = interrupted(storage, tmp_path, asha(), stopped_at_a_rung)

    grid = tune.Tuner.restore(path, trainable=checkpointed_trainable,
                              _resume_config=ResumeConfig(unfinished=how)).fit()

    result = next(r for r in grid if r.config["q"] == q)
    assert result.metrics["training_iteration"] == rung
    assert iterations(result.path) == list(range(1, rung + 1))


def test_a_snapshot_without_pending_decisions_restores_as_before(storage, tmp_path):
    # Written by a fasttune that did not save them: the trial comes back to run on, as then.
    path, trial_id, q, rung = interrupted(storage, tmp_path, asha(), stopped_at_a_rung)
    saved, found = state.load_latest(path, state.Loader())
    del saved["pending_decisions"]
    records = saved.pop("trials")
    state.write_snapshot(path, saved, [state.as_bin(record) for record in records],
                         state.snapshot_seq(os.path.basename(found)) + 1)

    grid = tune.Tuner.restore(path, trainable=checkpointed_trainable).fit()

    assert grid.num_errors == 0 and grid.num_terminated == len(QUALITIES)
    assert iterations(next(r for r in grid if r.config["q"] == q).path)[rung] == rung + 1  # ran past its rung
