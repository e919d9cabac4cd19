"""When ending the trials fails, fit() still saves the final snapshot, once: after a result
write that failed as the files closed, cleanup saved it (or logged why it could not, on a
full disk) and fit() does not try the same state again, so the user reads one traceback."""
import errno
import logging

import pytest

import fasttune as tune
from fasttune.execution.trial_runner import TrialRunner
from fasttune.logger._trial_files import TrialFiles
from fasttune.simulation import Simulation, learning_curve_table
from fasttune.simulation._executor import SimulatedExecutor
from fasttune_testing import fit


class FailAtFirstResult(tune.Callback):
    def on_trial_result(self, iteration, trials, trial, result, **info):
        raise RuntimeError("the loop's own error")


def _sweep(tmp_path, callbacks=()):
    table = learning_curve_table(6, seed=0, n_epochs=3)
    config = tune.TuneConfig(metric="loss", mode="min", num_samples=3)
    return fit(Simulation(table, write_results=True), str(tmp_path), space=table.search_space,
               name="ends", tune_config=config, callbacks=list(callbacks))


def _count_final_snapshots(monkeypatch, ended, fail):
    """The snapshots forced once ``ended`` holds something (the trials are being ended);
    each raises a full disk's error when ``fail``."""
    forced = []
    original = TrialRunner.checkpoint

    def checkpoint(runner, force=False):
        if not ended:
            return original(runner, force)
        forced.append(force)
        if fail:
            raise OSError(errno.ENOSPC, "No space left on device: the final snapshot")
        return original(runner, force)

    monkeypatch.setattr(TrialRunner, "checkpoint", checkpoint)
    return forced


def _fail_closing_the_files(monkeypatch, closed):
    def close_all(files):
        closed.append(files)
        raise OSError(errno.ENOSPC, "Writing trial result files failed (no room)")

    monkeypatch.setattr(TrialFiles, "close_all", close_all)


def _tracebacks_of(caplog, text):
    return [r for r in caplog.records if r.exc_info and text in str(r.exc_info[1])]


@pytest.mark.parametrize("snapshot_fails", [True, False])
def test_a_result_write_failing_at_the_end_saves_the_final_snapshot_once(tmp_path, monkeypatch, caplog,
                                                                         snapshot_fails):
    closed = []
    _fail_closing_the_files(monkeypatch, closed)
    forced = _count_final_snapshots(monkeypatch, closed, fail=snapshot_fails)
    with caplog.at_level(logging.ERROR):
        with pytest.raises(OSError, match="Writing trial result files failed"):
            _sweep(tmp_path)
    assert len(closed) == 1
    assert forced == [True]  # cleanup's, and not fit()'s again
    assert len(_tracebacks_of(caplog, "the final snapshot")) == (1 if snapshot_fails else 0)


def test_a_result_write_failing_as_the_loops_error_winds_down_saves_the_final_snapshot_once(
        tmp_path, monkeypatch, caplog):
    closed = []
    _fail_closing_the_files(monkeypatch, closed)
    forced = _count_final_snapshots(monkeypatch, closed, fail=True)
    with caplog.at_level(logging.ERROR):
        with pytest.raises(tune.TuneError, match="the loop's own error"):
            _sweep(tmp_path, [FailAtFirstResult()])
    assert len(closed) == 1 and forced == [True]
    assert len(_tracebacks_of(caplog, "the final snapshot")) == 1


def test_when_the_executor_cleanup_raises_fit_still_saves_the_final_snapshot(tmp_path, monkeypatch):
    ended = []
    original = SimulatedExecutor.cleanup

    def cleanup(executor):
        original(executor)
        ended.append(executor)
        raise RuntimeError("the workers could not be released")

    monkeypatch.setattr(SimulatedExecutor, "cleanup", cleanup)
    forced = _count_final_snapshots(monkeypatch, ended, fail=False)
    with pytest.raises(RuntimeError, match="the workers could not be released"):
        _sweep(tmp_path)
    assert len(ended) == 1 and forced == [True]


def test_a_ctrl_c_cutting_cleanups_snapshot_short_leaves_it_to_fit(tmp_path, monkeypatch):
    closed, forced = [], []
    _fail_closing_the_files(monkeypatch, closed)
    original = TrialRunner.checkpoint

    def checkpoint(runner, force=False):
        if closed:
            forced.append(force)
            if len(forced) == 1:
                raise KeyboardInterrupt  # during cleanup's snapshot
        return original(runner, force)

    monkeypatch.setattr(TrialRunner, "checkpoint", checkpoint)
    with pytest.raises(KeyboardInterrupt):
        _sweep(tmp_path)
    assert len(closed) == 1 and forced == [True, True]  # fit() saved it after all
