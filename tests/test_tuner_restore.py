"""Tuner.restore after the driver was killed or interrupted: nothing reported is lost,
nothing finished reruns, and the searcher continues where it was."""
import json
import logging
import os
import shutil
import subprocess
import sys

import pytest

import fasttune as tune
from fasttune.execution import _experiment_state as state
from fasttune.experiment.experiment import Experiment
from fasttune.result import trial_rows
from fasttune.search import BasicVariantGenerator

import restore_testing
from fasttune_testing import report_with_step_checkpoint, restored_step
from restore_testing import ITERATIONS, NUM_SAMPLES, counting_trainable, wait_until_other_jobs_have_no_live_actors

pytestmark = pytest.mark.ray
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


def _interrupted_run(ray_session, tmp_path, seed, interrupt_after, sig, period="0.05", results_store="per_trial"):
    """Run the sweep in a driver process of its own until the trainable interrupts it."""
    tmp, storage = str(tmp_path / "work"), str(tmp_path / "results")
    os.makedirs(tmp)
    restore_testing.set_phase(tmp, "first")
    env = dict(os.environ, FASTTUNE_GLOBAL_CHECKPOINT_S=period,
               PYTHONPATH=os.pathsep.join([TESTS_DIR, os.environ.get("PYTHONPATH", "")]))
    address = ray_session.get_runtime_context().gcs_address
    args = json.dumps([address, tmp, storage, seed, interrupt_after, sig, results_store])
    proc = subprocess.run([sys.executable, os.path.join(TESTS_DIR, "restore_testing.py"), args], env=env,
                          capture_output=True, text=True, timeout=240, start_new_session=True)
    wait_until_other_jobs_have_no_live_actors(ray_session)
    restore_testing.set_phase(tmp, "restore")
    return tmp, os.path.join(storage, "interrupted"), proc


def _expected_configs(tmp, seed):
    """The configs an uninterrupted sweep with this seed runs."""
    experiment = Experiment("expected", counting_trainable, config=restore_testing.param_space(tmp, 0),
                            num_samples=NUM_SAMPLES, storage_path=tmp)
    generator = BasicVariantGenerator(random_state=seed)
    generator.add_configurations([experiment])
    return sorted(generator.next_trial().config["x"] for _ in range(NUM_SAMPLES))


def _restarts(ray_session, tmp):
    """The restore's starts: (trial id, iteration it resumed from), by this session's job."""
    return restore_testing.logged_starts(tmp, "restore", ray_session.get_runtime_context().get_job_id())


def _iterations(trial_dir):
    """The iterations of the trial's results: its result.json, or its rows in the
    experiment's results store."""
    return [row["training_iteration"] for row in trial_rows(trial_dir)]


def _snapshot_trials(path):
    return {t.trial_id: t for t in state.read_trials(path)}


@pytest.mark.parametrize("seed,interrupt_after,period,results_store", [
    (11, 7, "0.05", "per_trial"),    # early: few trials started, maybe no snapshot with results yet
    (12, 61, "0", "per_trial"),      # a snapshot after every step of the loop
    (13, 133, "0.05", "per_trial"),  # late: most trials finished
    (14, 97, "0.05", "experiment"),  # all trials' results in one store, cut back to the snapshot's end
])
def test_restore_after_sigkill_of_the_driver(ray_session, tmp_path, seed, interrupt_after, period, results_store):
    tmp, path, proc = _interrupted_run(ray_session, tmp_path, seed, interrupt_after, "SIGKILL", period,
                                       results_store)
    assert proc.returncode == -9, proc.stderr[-3000:]
    assert tune.Tuner.can_restore(path)
    before = _snapshot_trials(path)

    grid = tune.Tuner.restore(path, trainable=counting_trainable).fit()

    assert sorted(r.config["x"] for r in grid) == _expected_configs(tmp, seed)
    assert len(grid) == NUM_SAMPLES and grid.num_errors == 0
    for result in grid:
        assert _iterations(result.path) == list(range(1, ITERATIONS + 1)), result.path
        assert result.metrics["training_iteration"] == ITERATIONS
    restarted = dict(_restarts(ray_session, tmp))
    for trial_id, trial in before.items():
        if trial.status == "TERMINATED":
            assert trial_id not in restarted, f"{trial_id} had finished and ran again"
        else:  # continued from its latest checkpoint in the snapshot, or from scratch
            saved_at = trial.checkpoint_results[-1][1]["training_iteration"] if trial.checkpoints else 0
            assert restarted[trial_id] == saved_at
    assert len(restarted) == NUM_SAMPLES - sum(t.status == "TERMINATED" for t in before.values())
    if results_store == "experiment":  # no trial kept its results in a file of its own
        assert not [r.path for r in grid if os.path.exists(os.path.join(r.path, "result.json"))
                    or os.path.exists(os.path.join(r.path, "params.json"))]


def test_first_ctrl_c_saves_and_returns_and_restore_finishes(ray_session, tmp_path):
    tmp, path, proc = _interrupted_run(ray_session, tmp_path, 21, 30, "SIGINT")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "interrupted (Ctrl-C); its state is saved" in proc.stderr
    unfinished = [t for t in _snapshot_trials(path).values() if t.status != "TERMINATED"]
    assert unfinished, "Ctrl-C must leave the running trials unfinished, to be resumed"

    grid = tune.Tuner.restore(path, trainable=counting_trainable).fit()
    assert sorted(r.config["x"] for r in grid) == _expected_configs(tmp, 21)
    for result in grid:
        assert _iterations(result.path) == list(range(1, ITERATIONS + 1))


def test_second_ctrl_c_exits_at_once_and_the_experiment_still_restores(ray_session, tmp_path):
    tmp, path, proc = _interrupted_run(ray_session, tmp_path, 22, 20, "SIGINT2")
    # The second press raised KeyboardInterrupt where it landed (inside the loop), out of
    # fit(), and the driver exits with Python's status for an uncaught exception.
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "FIRST PRESS HANDLED" in proc.stderr and "SECOND PRESS DID NOT INTERRUPT" not in proc.stderr
    assert proc.stderr.rstrip().endswith("KeyboardInterrupt"), proc.stderr[-3000:]
    assert "STATUSES" not in proc.stdout and "its state is saved" not in proc.stderr
    grid = tune.Tuner.restore(path, trainable=counting_trainable).fit()
    assert sorted(r.config["x"] for r in grid) == _expected_configs(tmp, 22)
    for result in grid:
        assert _iterations(result.path) == list(range(1, ITERATIONS + 1))


@pytest.fixture(scope="module")
def killed_experiment(ray_session, tmp_path_factory):
    """An experiment killed midway, with finished and unfinished trials, once its snapshot
    counts results (the tests read them)."""
    tmp_path = tmp_path_factory.mktemp("killed")
    tmp, path, proc = _interrupted_run(ray_session, tmp_path, 31, 90, "SIGKILL_AFTER_RESULTS")
    assert proc.returncode == -9, proc.stderr[-3000:]
    return tmp, path


def _copy(killed_experiment, tmp_path):
    tmp, path = killed_experiment
    moved = str(tmp_path / "moved" / "interrupted")
    shutil.copytree(path, moved)  # restoring from another place works too
    return tmp, moved


def test_resume_unfinished_false_marks_them_terminated_and_runs_nothing(ray_session, killed_experiment, tmp_path):
    tmp, path = _copy(killed_experiment, tmp_path)
    before = _snapshot_trials(path)
    unfinished = {trial_id for trial_id, t in before.items() if t.status != "TERMINATED"}
    assert unfinished
    starts_before = len(_restarts(ray_session, tmp))
    tune.Tuner.restore(path, trainable=counting_trainable, resume_unfinished=False).fit()
    # The searcher still makes the trials it had not made yet; none of the snapshot's runs.
    ran = {trial_id for trial_id, _ in _restarts(ray_session, tmp)[starts_before:]}
    assert not ran & set(before)
    after = _snapshot_trials(path)
    assert {t.status for t in after.values()} == {"TERMINATED"} and len(after) == NUM_SAMPLES
    for trial_id in unfinished:  # their logged results stay as they were
        assert after[trial_id].results_seen == before[trial_id].results_seen


def test_restore_on_a_moved_copy_writes_there(killed_experiment, tmp_path):
    tmp, path = _copy(killed_experiment, tmp_path)
    grid = tune.Tuner.restore(path, trainable=counting_trainable).fit()
    assert grid.num_errors == 0, grid.errors
    assert all(r.path.startswith(path) for r in grid)
    for result in grid:
        assert _iterations(result.path) == list(range(1, ITERATIONS + 1))


def test_a_truncated_latest_snapshot_falls_back_to_the_previous(killed_experiment, tmp_path, caplog):
    tmp, path = _copy(killed_experiment, tmp_path)
    newest = state.snapshot_paths(path)[0]
    with open(newest, "r+b") as f:
        f.truncate(os.path.getsize(newest) // 2)
    with caplog.at_level(logging.WARNING):
        grid = tune.Tuner.restore(path, trainable=counting_trainable).fit()
    assert "cannot be read" in caplog.text
    for result in grid:
        assert _iterations(result.path) == list(range(1, ITERATIONS + 1))


def _erroring_trainable(config):
    for i in range(restored_step() + 1, 6):
        if i == 3 and not os.path.exists(config["healed"]):
            raise RuntimeError("broken until healed")
        if i == 2:
            report_with_step_checkpoint({"loss": float(i)}, i)
        else:
            tune.report({"loss": float(i)})


def _errored_experiment(tmp_path):
    space = {"healed": str(tmp_path / "healed")}
    grid = tune.Tuner(_erroring_trainable, param_space=space,
                      tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=2),
                      run_config=tune.RunConfig(name="errored", storage_path=str(tmp_path), verbose=0)).fit()
    assert grid.num_errors == 2
    (tmp_path / "healed").write_text("yes")
    return str(tmp_path / "errored")


def test_errored_trials_stay_failed_by_default(ray_session, tmp_path):
    path = _errored_experiment(tmp_path)
    grid = tune.Tuner.restore(path, trainable=_erroring_trainable).fit()
    assert grid.num_errors == 2
    assert all("broken until healed" in str(r.error) for r in grid)


@pytest.mark.parametrize("flag,since_restore", [
    ("resume_errored", 3),  # 1, 2 (checkpoint) from the first run, then 3..5 from the checkpoint
    ("restart_errored", 5),  # all of 1..5 again, from scratch
])
def test_errored_trials_resume_or_restart(ray_session, tmp_path, flag, since_restore):
    path = _errored_experiment(tmp_path)
    grid = tune.Tuner.restore(path, trainable=_erroring_trainable, **{flag: True}).fit()
    assert grid.num_errors == 0
    for result in grid:
        assert _iterations(result.path) == [1, 2, 3, 4, 5]
        assert result.metrics["iterations_since_restore"] == since_restore


def test_resume_and_restart_errored_together_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="choose one"):
        tune.Tuner.restore(str(tmp_path), trainable=_erroring_trainable, resume_errored=True, restart_errored=True)


def test_restoring_a_directory_that_is_no_experiment_names_the_problem(tmp_path):
    assert not tune.Tuner.can_restore(str(tmp_path))
    with pytest.raises(tune.TuneError, match="is not a restorable fasttune experiment.*Tuner.can_restore"):
        tune.Tuner.restore(str(tmp_path), trainable=_erroring_trainable)
    with pytest.raises(tune.TuneError, match="no such directory"):
        tune.Tuner.restore(str(tmp_path / "missing"), trainable=_erroring_trainable)


class CountingSearcher(tune.search.Searcher):
    """Suggests n = 0, 1, 2, ... in order; its state is the next n."""

    def __init__(self):
        super().__init__(metric="loss", mode="min")
        self.next_n = 0

    def suggest(self, trial_id):
        n, self.next_n = self.next_n, self.next_n + 1
        return {"n": n}

    def on_trial_complete(self, trial_id, result=None, error=False):
        pass

    def get_state(self):
        return {"next_n": self.next_n}

    def set_state(self, state):
        self.next_n = state["next_n"]


class StopAfterRuns(tune.Callback):
    """Ctrl-C, in effect, after a number of completed trials (a stop the tests control)."""

    def __init__(self, completed_before_stop):
        self.completed = 0
        self.limit = completed_before_stop

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.completed += 1
        if self.completed == self.limit:
            import signal

            os.kill(os.getpid(), signal.SIGINT)

    def get_state(self):
        return {"completed": self.completed}

    def set_state(self, state):
        self.completed = state["completed"]


def _n_trainable(config):
    for i in range(3):
        tune.report({"loss": config["n"] + i})


def test_searcher_and_callback_state_continue_and_restore_names_what_it_unpickled(ray_session, tmp_path, caplog):
    callback = StopAfterRuns(4)
    tuner = tune.Tuner(_n_trainable, param_space={},
                       tune_config=tune.TuneConfig(num_samples=9, search_alg=CountingSearcher(), max_concurrent_trials=1),
                       run_config=tune.RunConfig(name="counting", storage_path=str(tmp_path), verbose=0,
                                                 callbacks=[callback]))
    first = tuner.fit()  # the callback's Ctrl-C ends it after 4 completed trials
    assert first.num_terminated == 4  # the Ctrl-C came at the 4th completion
    path = str(tmp_path / "counting")
    with caplog.at_level(logging.INFO):
        grid = tune.Tuner.restore(path, trainable=_n_trainable).fit()
    # The searcher went on from its saved position: every n once, none twice.
    assert sorted(r.config["n"] for r in grid) == list(range(9))
    assert "tune_config.search_alg (CountingSearcher" in caplog.text and "Restore only directories you trust" in caplog.text
    assert "in the searcher's state" not in caplog.text  # its state is data: no pickle needed
    # The callback came back with its count (4): had it started from 0 it would have
    # interrupted the restored run at its 4th completion, before all 9 finished.
    assert sum(t.status == "TERMINATED" for t in _snapshot_trials(path).values()) == 9


def test_result_grid_and_experiment_analysis_read_an_experiment_without_ray(killed_experiment):
    tmp, path = killed_experiment
    script = f"""
import sys, json
sys.modules["ray"] = None  # any import of Ray fails
import fasttune as tune
grid = tune.ResultGrid.from_path({path!r})
analysis = tune.ExperimentAnalysis({path!r}, default_metric="loss", default_mode="min")
snapshot = [t for t in analysis.trials if hasattr(t, "results_seen")]
print(json.dumps({{"grid": len(grid), "trials": len(analysis.trials), "paths": sorted(t.path for t in analysis.trials),
                  "statuses": sorted(t.status for t in snapshot), "seen": sorted(t.results_seen for t in snapshot),
                  "best": analysis.best_config["x"], "best_loss": analysis.best_result["loss"]}}))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    read = json.loads(out.stdout.strip().splitlines()[-1])
    snapshot = _snapshot_trials(path)
    on_disk = sorted(os.path.join(path, d) for d in os.listdir(path)
                     if os.path.isfile(os.path.join(path, d, "params.json")))
    # Every trial: those of the snapshot, and those a killed run made after it.
    assert read["paths"] == sorted(set(on_disk) | {t.path for t in snapshot.values()})
    assert read["grid"] == len(read["paths"])  # the snapshot's trials without files (not started) too
    assert read["statuses"] == sorted(t.status for t in snapshot.values())
    assert read["seen"] == sorted(t.results_seen for t in snapshot.values())
    last_losses = []
    for d in on_disk:
        result_file = os.path.join(d, "result.json")
        if os.path.isfile(result_file) and os.path.getsize(result_file):
            with open(result_file) as f:
                last_losses.append(json.loads(f.read().splitlines()[-1])["loss"])
    assert last_losses and read["best_loss"] == min(last_losses)


def test_tune_run_resume_continues_an_interrupted_experiment(killed_experiment, tmp_path):
    tmp, path = _copy(killed_experiment, tmp_path)
    before = _snapshot_trials(path)
    analysis = tune.run(counting_trainable, name=os.path.basename(path), storage_path=os.path.dirname(path),
                        config=restore_testing.param_space(tmp, 0), num_samples=NUM_SAMPLES, metric="loss",
                        mode="min", verbose=0, resume="AUTO")
    assert {t.trial_id for t in analysis.trials} >= set(before)
    assert len(analysis.trials) == NUM_SAMPLES
    for trial in analysis.trials:
        assert _iterations(trial.path) == list(range(1, ITERATIONS + 1))


def test_tune_run_resume_of_a_store_experiment_goes_on_in_its_store(ray_session, tmp_path):
    """tune.run has no results_store: resuming reads the layout from the experiment."""
    tmp, path, proc = _interrupted_run(ray_session, tmp_path, 32, 90, "SIGKILL", results_store="experiment")
    assert proc.returncode == -9, proc.stderr[-3000:]
    analysis = tune.run(counting_trainable, name=os.path.basename(path), storage_path=os.path.dirname(path),
                        config=restore_testing.param_space(tmp, 0), num_samples=NUM_SAMPLES, metric="loss",
                        mode="min", verbose=0, resume="AUTO")
    assert len(analysis.trials) == NUM_SAMPLES
    for trial in analysis.trials:
        assert not os.path.exists(os.path.join(trial.path, "result.json"))
        assert _iterations(trial.path) == list(range(1, ITERATIONS + 1))


def test_tune_run_resume_true_without_an_experiment_names_the_fix(ray_session, tmp_path):
    with pytest.raises(tune.TuneError, match="found no experiment to resume.*resume='AUTO'"):
        tune.run(_n_trainable, name="none", storage_path=str(tmp_path), config={"n": 1}, resume=True, verbose=0)
    with pytest.raises(ValueError, match=r"resume='sometimes'\) is not valid"):
        tune.run(_n_trainable, name="none", storage_path=str(tmp_path), config={"n": 1}, resume="sometimes")
