"""When ending the trials fails (the executor's cleanup raises), the sweep still stops
restorably: the final snapshot is written, so it holds every finished trial, and
``Tuner.restore(...).fit()`` completes without running a finished trial again."""
import json
import os

import pytest

import fasttune as tune
from fasttune.execution import _experiment_state as state
from fasttune.execution.ray_trial_executor import RayTrialExecutor

from fasttune_testing import lines

pytestmark = pytest.mark.ray
ITERATIONS = 3
NUM_SAMPLES = 5


def _logging_trainable(config):
    """Logs each start (one JSON line per start, in ``config["starts"]``), then reports
    ITERATIONS results."""
    with open(config["starts"], "a") as f:
        f.write(json.dumps(config["x"]) + "\n")
    for i in range(1, ITERATIONS + 1):
        tune.report({"loss": config["x"] * 10 + i})


class FailOnceAtCompletion(tune.Callback):
    """Raises at the ``completions``-th trial completion, once (a marker file remembers it
    across the restore, which gets this callback back from the experiment)."""

    def __init__(self, completions, marker):
        self.completions = completions
        self.marker = marker
        self.completed = 0

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.completed += 1
        if self.completed == self.completions and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            raise RuntimeError("the loop's own error")


def _failing_cleanup(monkeypatch):
    """The executor's cleanup does its work, then raises (the injected fault)."""
    original = RayTrialExecutor.cleanup

    def cleanup(self):
        original(self)
        raise OSError("the executor's cleanup failed")

    monkeypatch.setattr(RayTrialExecutor, "cleanup", cleanup)


def _params(trial_dir):
    with open(os.path.join(trial_dir, "params.json")) as f:
        return json.load(f)


def _sweep(tmp_path, callbacks):
    space = {"x": tune.grid_search(list(range(NUM_SAMPLES))), "starts": str(tmp_path / "starts.jsonl")}
    return tune.Tuner(_logging_trainable, param_space=space,
                      tune_config=tune.TuneConfig(max_concurrent_trials=1),
                      run_config=tune.RunConfig(name="exp", storage_path=str(tmp_path), verbose=0,
                                                callbacks=callbacks))


def _assert_restore_completes_each_trial_once(tmp_path, path, finished_before):
    starts_before = len(lines(str(tmp_path / "starts.jsonl")))
    grid = tune.Tuner.restore(path, trainable=_logging_trainable).fit()
    assert grid.num_errors == 0 and len(grid) == NUM_SAMPLES
    assert sorted(r.config["x"] for r in grid) == list(range(NUM_SAMPLES))
    for result in grid:
        rows = lines(os.path.join(result.path, "result.json"))
        assert [r["training_iteration"] for r in rows] == list(range(1, ITERATIONS + 1)), result.path
        assert [r["loss"] for r in rows] == [result.config["x"] * 10 + i for i in range(1, ITERATIONS + 1)]
    restarted = lines(str(tmp_path / "starts.jsonl"))[starts_before:]
    assert not set(restarted) & finished_before, "a trial the snapshot had as finished ran again"
    assert len(restarted) == NUM_SAMPLES - len(finished_before)


@pytest.fixture
def no_periodic_snapshot(monkeypatch):
    # Only the loop's first step is snapshotted on the way: what the sweep's end saves is
    # then what the last snapshot on disk holds.
    monkeypatch.setenv("FASTTUNE_GLOBAL_CHECKPOINT_S", "3600")


def test_loop_error_then_cleanup_error_still_writes_the_final_snapshot(ray_session, tmp_path, monkeypatch,
                                                                       no_periodic_snapshot, caplog):
    _failing_cleanup(monkeypatch)
    tuner = _sweep(tmp_path, [FailOnceAtCompletion(3, str(tmp_path / "failed"))])
    with pytest.raises(tune.TuneError, match="the loop's own error"):  # the loop's error, not cleanup's
        tuner.fit()
    assert "the executor's cleanup failed" in caplog.text  # cleanup's is logged
    monkeypatch.undo()

    path = str(tmp_path / "exp")
    finished = {t.config["x"] for t in state.read_trials(path) if t.status == "TERMINATED"}
    on_disk = {_params(os.path.join(path, d))["x"] for d in os.listdir(path)
               if os.path.isfile(os.path.join(path, d, "result.json"))
               and len(lines(os.path.join(path, d, "result.json"))) == ITERATIONS}
    assert finished == on_disk == {0, 1, 2}
    assert all(t.results_seen == ITERATIONS for t in state.read_trials(path) if t.status == "TERMINATED")
    _assert_restore_completes_each_trial_once(tmp_path, path, finished)


def test_clean_loop_then_cleanup_error_still_writes_the_final_snapshot(ray_session, tmp_path, monkeypatch,
                                                                       no_periodic_snapshot):
    _failing_cleanup(monkeypatch)
    with pytest.raises(OSError, match="the executor's cleanup failed"):
        _sweep(tmp_path, []).fit()
    monkeypatch.undo()

    path = str(tmp_path / "exp")
    trials = state.read_trials(path)
    assert sorted(t.config["x"] for t in trials) == list(range(NUM_SAMPLES))
    assert {t.status for t in trials} == {"TERMINATED"}
    assert all(t.results_seen == ITERATIONS for t in trials)
    _assert_restore_completes_each_trial_once(tmp_path, path, set(range(NUM_SAMPLES)))
