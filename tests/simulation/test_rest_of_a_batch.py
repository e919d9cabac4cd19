"""A worker reply holds several results; when something raises while the runner handles
one of them, the rest of that reply:

* after a callback's error: the stopper, scheduler and searcher judge it and the callbacks
  hear it, in order (it is counted and logged, so it is never reported again);
* after a second Ctrl-C in a callback: judged, but no callback runs (exit at once);
* after an error inside a policy (a Ctrl-C there): not counted, so a restore reports it
  again and the policies judge it then; the sweep ends as if never interrupted.

The 10th result of the sweep is the first of a reply of three (epochs 1 to 3, up to
HyperBand's milestone 3; see test_simulation_restore)."""
import json
import os

import pytest

import fasttune as tune
from fasttune.schedulers import HyperBandScheduler
from fasttune_testing import fit
from test_simulation_restore import HeardHyperBand, histories, hyperband, simulation, table, tune_config  # noqa: F401

AT = 10


class Heard(tune.Callback):
    """Keeps what it hears, by trial directory: each result's epoch, and "checkpoint"."""

    def __init__(self):
        self.heard = {}

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.heard.setdefault(trial.path, []).append(result["epoch"])

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        self.heard.setdefault(trial.path, []).append("checkpoint")


class RaiseAt(tune.Callback):
    """Raises ``error`` at the sweep's ``AT``-th result; keeps that result's trial directory."""

    def __init__(self, error):
        self.error, self.seen, self.raised_on = error, 0, None

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.seen += 1
        if self.seen == AT:
            self.raised_on = trial.path
            raise self.error


def logged(path):
    with open(os.path.join(path, "result.json")) as f:
        return [json.loads(line)["epoch"] for line in f]


def test_after_a_callbacks_error_the_callbacks_hear_the_rest_of_the_batch_in_order(table, tmp_path):
    heard, raising, scheduler = Heard(), RaiseAt(RuntimeError("a callback failed")), HeardHyperBand()
    with pytest.raises(tune.TuneError, match="a callback failed"):
        fit(simulation(table), str(tmp_path), name="cut", space=table.search_space,
            tune_config=tune_config(table, scheduler), callbacks=[heard, raising])
    path = raising.raised_on
    assert logged(path) == [1, 2, 3]  # it raised on the first result of the reply
    assert scheduler.heard[path] == [1, 2, 3]
    # The result it raised on, then the two after it and the checkpoint saved with the last.
    assert heard.heard[path] == [1, 2, 3, "checkpoint"]


@pytest.fixture
def no_default_loggers(monkeypatch):
    # A second Ctrl-C leaves the loggers' writer threads running (it waits for no callback):
    # none here, so none outlives the test (test_callback counts them).
    monkeypatch.setenv("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")


@pytest.mark.usefixtures("no_default_loggers")
def test_after_a_second_ctrl_c_in_a_callback_no_callback_hears_the_rest(table, tmp_path):
    heard, raising, scheduler = Heard(), RaiseAt(KeyboardInterrupt()), HeardHyperBand()
    with pytest.raises(KeyboardInterrupt):
        fit(simulation(table), str(tmp_path), name="cut", space=table.search_space,
            tune_config=tune_config(table, scheduler), callbacks=[heard, raising])
    path = raising.raised_on
    assert scheduler.heard[path] == [1, 2, 3]  # judged, for the snapshot
    assert heard.heard[path] == [1]


class CtrlCInHyperBand(HyperBandScheduler):
    """HyperBand that raises KeyboardInterrupt as it judges the sweep's ``AT``-th result,
    once (a marker file: the restore unpickles the scheduler as it was at the start)."""

    def __init__(self, marker):
        super().__init__(time_attr="epoch", max_t=9, reduction_factor=3)
        self.marker, self.seen, self.raised_on = marker, 0, None

    def on_trial_result(self, tune_controller, trial, result):
        self.seen += 1
        if self.seen == AT and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            self.raised_on = trial.path
            raise KeyboardInterrupt
        return super().on_trial_result(tune_controller, trial, result)


@pytest.mark.usefixtures("no_default_loggers")
def test_a_ctrl_c_inside_a_policy_leaves_the_rest_of_the_batch_to_be_judged_after_the_restore(table, tmp_path):
    scheduler = CtrlCInHyperBand(str(tmp_path / "pressed"))
    with pytest.raises(KeyboardInterrupt):
        fit(simulation(table), str(tmp_path), name="cut", space=table.search_space,
            tune_config=tune_config(table, scheduler))
    # Counted up to the result it was judging: epochs 2 and 3 (and the checkpoint at 3) go.
    assert logged(scheduler.raised_on) == [1]
    restored = tune.Tuner.restore(os.path.join(tmp_path, "cut"), trainable=simulation(table)).fit()
    whole = fit(simulation(table), str(tmp_path), name="whole", space=table.search_space,
                tune_config=tune_config(table, hyperband()))
    # The same results and decisions; only the simulated clock differs after the restore
    # (that trial ran epochs 1 to 3 again: it had no checkpoint before epoch 3).
    assert decided(restored) == decided(whole)
    assert histories(restored) != histories(whole)


def decided(grid):
    """By config: each result's (epoch, training_iteration, loss, done), and the trial's end."""
    return {row: ([(epoch, it, loss, done) for epoch, it, loss, _, _, _, done in rows], end)
            for row, (rows, end) in histories(grid).items()}
