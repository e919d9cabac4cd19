"""A cut of a trial's history (a restart from a checkpoint, a reset to its own older
checkpoint, an error inside a policy) leaves the trial as it was at the point it goes back
to: its own last result (not a donor's, after a clone of another trial's checkpoint) and
its table row's last and best metric, in either results store and either mode, also
after a restore.  Without Ray: the runner's event handlers are fed by hand."""
import math
import os
from array import array

import pytest

from fasttune.execution import _protocol as protocol
from fasttune.experiment import Trial
from fasttune.schedulers import FIFOScheduler

from runner_testing import random_search_runner

STORES = ["per_trial", "experiment"]
# (mode, metric, the values a trial reports: a checkpoint comes with the second, and the
# third, which a cut drops, is the best of all)
CASES = {
    "min": ("min", "loss", [3.0, 4.0, 1.0, 2.0]),
    "max_nested": ("max", "val/acc", [0.5, 0.4, 0.9, 0.7]),
}


def _train(config):
    pass


def _runner(path, store, mode, metric, num_samples=1, **kwargs):
    return random_search_runner(str(path), _train, {}, num_samples, random_state=1, results_store=store,
                                metric=metric, mode=mode, **kwargs)


def _reported(metric, value):
    """A result holding ``value`` under the (maybe nested, "a/b") ``metric``."""
    *outer, leaf = metric.split("/")
    result = {leaf: value}
    for key in reversed(outer):
        result = {key: result}
    return result


def _start(runner, trial):
    runner._start_trial(trial)
    runner._on_started(0, trial, protocol.Started(trial.trial_id, 1.0, 11, "host", "192.0.2.2"))


def _report(runner, trial, metric, values, checkpoints=None):
    """One batch of ``values`` from ``trial``'s worker; ``checkpoints``: result index ->
    the checkpoint directory saved with it."""
    metrics = [_reported(metric, value) for value in values]
    runner._on_results(0, trial, protocol.Results(trial.trial_id, metrics, array("d", [2.0] * len(metrics)).tobytes(),
                                                  checkpoints or {}))


def _fail(runner, trial):
    runner._release(trial)
    runner._on_trial_failure(trial, "Traceback: the worker failed", None)
    assert trial.status == Trial.PENDING  # to be restarted from its latest checkpoint


def _row_metrics(runner, trial):
    return runner.table.get_last_metric(trial._row), runner.table.get_best_metric(trial._row)


def _best(mode, values):
    return (min if mode == "min" else max)(values)


def _resumed(path, store, mode, metric, num_samples=1):
    runner = _runner(path, store, mode, metric, num_samples, add=False)
    runner.resume()
    return runner


@pytest.mark.parametrize("restored", [False, True], ids=["same_run", "restored"])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("store", STORES)
def test_a_restart_from_a_checkpoint_restores_the_last_and_best_metric_it_was_saved_with(tmp_path, store, case,
                                                                                        restored):
    mode, metric, values = CASES[case]
    path = tmp_path / "exp"
    runner = _runner(path, store, mode, metric)
    trial = runner.get_trials()[0]
    _start(runner, trial)
    _report(runner, trial, metric, values[:1])
    _report(runner, trial, metric, values[1:], {0: "checkpoint_000000"})  # saved with the second
    _fail(runner, trial)
    if restored:
        runner.checkpoint(force=True)
        runner._files.close_all()
        runner = _resumed(path, store, mode, metric)
        trial = runner.get_trials()[0]

    runner._start_trial(trial)

    kept = values[:2]
    assert trial.results_seen == 2 and trial.last_result["training_iteration"] == 2
    assert _row_metrics(runner, trial) == (kept[-1], _best(mode, kept))
    runner._files.close_all()


@pytest.mark.parametrize("store", STORES)
def test_an_older_snapshots_checkpoint_without_its_history_is_still_cut_back_by_counting_again(tmp_path, store):
    mode, metric, values = CASES["min"]
    path = tmp_path / "exp"
    runner = _runner(path, store, mode, metric)
    trial = runner.get_trials()[0]
    _start(runner, trial)
    _report(runner, trial, metric, values, {1: "checkpoint_000000"})
    _fail(runner, trial)
    runner._snapshots.checkpoint_histories = {}  # as a writer before histories were kept
    runner.checkpoint(force=True)
    runner._files.close_all()
    runner = _resumed(path, store, mode, metric)
    trial = runner.get_trials()[0]
    assert runner._checkpoints.entries[trial.checkpoint.path].metrics is None

    runner._start_trial(trial)

    assert trial.results_seen == 2 and trial.last_result["loss"] == values[1]
    # Counted again from result.json; the experiment's store knows only the last kept value.
    best = min(values[:2]) if store == "per_trial" else values[1]
    assert _row_metrics(runner, trial) == (values[1], best)
    runner._files.close_all()


@pytest.mark.parametrize("restored", [False, True], ids=["same_run", "restored"])
@pytest.mark.parametrize("store", STORES)
def test_a_restart_from_a_cloned_checkpoint_keeps_the_trials_own_last_result_not_the_donors(tmp_path, store,
                                                                                           restored):
    path = tmp_path / "exp"
    runner = _runner(path, store, "min", "loss", num_samples=2)
    donor, clone = runner.get_trials()
    _start(runner, donor)
    _report(runner, donor, "loss", [1.0, 2.0], {1: "checkpoint_000000"})
    _start(runner, clone)
    own = [22.0, 21.0, 23.0, 24.0]
    _report(runner, clone, "loss", own, {1: "checkpoint_000000"})
    runner._release(clone)
    clone.set_status(Trial.PAUSED)
    runner.reset_trial(clone, {"x": 1}, "exploited", checkpoint=donor.checkpoint,
                       checkpoint_result=donor.checkpoint_results[-1][1])
    _start(runner, clone)  # copies the donor's checkpoint
    assert runner.trial_executor.started["clone_from"] == donor.checkpoint.path
    runner._on_cloned(0, clone, protocol.Cloned(clone.trial_id, "checkpoint_000001"))
    _report(runner, clone, "loss", [50.0])  # then fails: the restart drops this one
    _fail(runner, clone)
    if restored:
        runner.checkpoint(force=True)
        runner._files.close_all()
        runner = _resumed(path, store, "min", "loss", num_samples=2)
        donor, clone = runner.get_trials()

    runner._start_trial(clone)

    assert runner.trial_executor.started["restore"] == os.path.join(clone.path, "checkpoint_000001")
    assert clone.results_seen == len(own)
    assert (clone.last_result["trial_id"], clone.last_result["loss"]) == (clone.trial_id, own[-1])
    assert _row_metrics(runner, clone) == (own[-1], min(own))
    runner._files.close_all()


@pytest.mark.parametrize("store", STORES)
def test_a_reset_to_the_trials_own_older_checkpoint_restores_what_it_had_then(tmp_path, store):
    path = tmp_path / "exp"
    runner = _runner(path, store, "min", "loss")
    trial = runner.get_trials()[0]
    _start(runner, trial)
    values = [2.0, 3.0, 1.0, 0.5]
    _report(runner, trial, "loss", values, {1: "checkpoint_000000"})
    runner._release(trial)
    trial.set_status(Trial.PAUSED)
    runner.reset_trial(trial, {"x": 1}, "reset", checkpoint=trial.checkpoints[0])

    runner._start_trial(trial)

    assert runner.trial_executor.started["restore"] == trial.checkpoints[0].path
    assert trial.results_seen == 2
    assert (trial.last_result["training_iteration"], trial.last_result["loss"]) == (2, 3.0)
    assert _row_metrics(runner, trial) == (3.0, 2.0)
    runner._files.close_all()


class _RaisesOn(FIFOScheduler):
    """Raises while judging the result whose ``metric`` is ``value``."""

    def __init__(self, metric, value):
        super().__init__()
        self.watched, self.failing_value = metric, value

    def on_trial_result(self, tune_controller, trial, result):
        if result.get(self.watched) == self.failing_value:
            raise ValueError("the scheduler failed")
        return self.CONTINUE


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("store", STORES)
def test_an_error_inside_a_policy_cuts_the_batch_to_the_exact_last_and_best_metric_judged(tmp_path, store, case):
    mode, metric, values = CASES[case]
    runner = _runner(tmp_path / "exp", store, mode, metric, scheduler=_RaisesOn(metric, values[2]))
    trial = runner.get_trials()[0]
    _start(runner, trial)
    first = 0.1 if mode == "min" else 0.95  # a batch before: the best of all, kept
    _report(runner, trial, metric, [first])

    with pytest.raises(ValueError, match="the scheduler failed"):
        _report(runner, trial, metric, values)  # judging stops at values[2]: it and values[3] go

    kept = [first] + values[:2]
    assert trial.results_seen == len(kept) and trial.last_result["training_iteration"] == len(kept)
    assert _row_metrics(runner, trial) == (kept[-1], _best(mode, kept))
    runner._files.close_all()


def test_a_cut_to_no_result_leaves_no_metric(tmp_path):
    runner = _runner(tmp_path / "exp", "experiment", "min", "loss")
    trial = runner.get_trials()[0]
    _start(runner, trial)
    _report(runner, trial, "loss", [3.0, 1.0])  # no checkpoint: a restart starts over
    _fail(runner, trial)

    runner._start_trial(trial)

    assert trial.results_seen == 0 and trial.last_result == {}
    assert all(math.isnan(value) for value in _row_metrics(runner, trial))
    runner._files.close_all()


def test_a_record_gives_back_each_checkpoints_upload_and_history_and_an_older_one_its_uploads(tmp_path):
    from fasttune._serialization import DataOnlyLoader
    from fasttune.checkpoint import Checkpoint
    from fasttune.execution import _experiment_state as state

    runner = _runner(tmp_path / "exp", "per_trial", "min", "loss")
    trial = runner.get_trials()[0]
    trial.last_result = {"loss": 4.0, "training_iteration": 4, "trial_id": trial.trial_id}
    donors = {"loss": 1.0, "training_iteration": 2, "trial_id": "donor"}
    saved_with = [{"loss": 3.0, "training_iteration": 1}, {"loss": 2.0, "training_iteration": 2}, donors,
                  dict(trial.last_result)]
    paths = [os.path.join(trial.path, f"checkpoint_{index:06d}") for index in range(4)]
    trial.checkpoint_results = [(Checkpoint._at(path), result) for path, result in zip(paths, saved_with)]
    rows = {path: index + 1 for index, path in enumerate(paths)}
    uploads = {paths[1]: ("a1", "node-1"), paths[3]: ("a3", "node-3")}
    histories = {paths[2]: ((2.5, 2.0), {"loss": 2.5, "training_iteration": 3}), paths[3]: ((4.0, 2.0), None)}

    def decoded(histories_saved):
        record, _ = state.trial_record(trial, runner._snapshots.keysets, rows, 4, uploads=uploads,
                                       histories=histories_saved)
        uploads_read, histories_read = {}, {}
        back, rows_read, _ = state.decode_trial(
            state.unbin(record), trial._row, trial.storage_dirname, runner.table, runner._snapshots.keysets,
            str(tmp_path / "exp"), {}, DataOnlyLoader(), uploads=uploads_read, histories=histories_read)
        assert rows_read == rows and [r for _, r in back.checkpoint_results] == saved_with
        return uploads_read, histories_read

    # Each layout: nothing after the result, an upload, a history, both.
    assert decoded(histories) == (uploads, histories)
    assert decoded({}) == (uploads, {})  # as an older writer saved it
    runner._files.close_all()


@pytest.mark.parametrize("store", STORES)
def test_several_checkpoints_in_one_batch_each_keep_the_history_at_their_own_result(tmp_path, store):
    runner = _runner(tmp_path / "exp", store, "min", "loss")
    (trial,) = runner.get_trials()
    _start(runner, trial)
    _report(runner, trial, "loss", [3.0, 4.0, 1.0, 2.0], {0: "checkpoint_000000", 2: "checkpoint_000001"})
    runner._release(trial)
    trial.set_status(Trial.PAUSED)
    runner.reset_trial(trial, {"x": 1}, "reset", checkpoint=trial.checkpoints[0])  # back to the first one
    runner._start_trial(trial)
    assert trial.results_seen == 1 and trial.last_result["loss"] == 3.0
    assert _row_metrics(runner, trial) == (3.0, 3.0)


@pytest.mark.parametrize("restored", [False, True], ids=["same_run", "restored"])
@pytest.mark.parametrize("store", STORES)
def test_a_checkpoint_saved_apart_from_a_result_keeps_the_history_of_then(tmp_path, store, restored):
    """A checkpoint at the trial's end or at a pause (CheckpointSaved) keeps the row's
    metrics as they stand then, as one saved with a result does."""
    path = tmp_path / "exp"
    runner = _runner(path, store, "min", "loss")
    (trial,) = runner.get_trials()
    _start(runner, trial)
    _report(runner, trial, "loss", [3.0, 1.0, 2.0])
    runner._on_checkpoint_saved(0, trial, protocol.CheckpointSaved(trial.trial_id, "checkpoint_000000"))
    _report(runner, trial, "loss", [0.5])
    _fail(runner, trial)
    if restored:
        runner.checkpoint(force=True)
        runner._files.close_all()
        runner = _resumed(path, store, "min", "loss")
        (trial,) = runner.get_trials()
    runner._start_trial(trial)
    assert trial.results_seen == 3 and trial.last_result["loss"] == 2.0
    assert _row_metrics(runner, trial) == (2.0, 1.0)


@pytest.mark.parametrize("store", STORES)
def test_a_checkpoints_history_is_what_the_table_recorded_when_a_key_could_be_read_two_ways(tmp_path, store):
    """A result holding the metric "a/b" both as a key of its own and nested: the history
    a checkpoint keeps is what the table recorded (the core's flattened value), not
    another reading of the result."""
    runner = _runner(tmp_path / "exp", store, "min", "a/b")
    (trial,) = runner.get_trials()
    _start(runner, trial)
    runner._on_results(0, trial, protocol.Results(trial.trial_id, [{"a/b": 9.0, "a": {"b": 1.0}}],
                                                  array("d", [2.0]).tobytes(), {0: "checkpoint_000000"}))
    recorded = _row_metrics(runner, trial)
    runner._on_results(0, trial, protocol.Results(trial.trial_id, [{"a/b": 9.0, "a": {"b": 2.0}}],
                                                  array("d", [3.0]).tobytes(), {}))
    _fail(runner, trial)
    runner._start_trial(trial)
    assert trial.results_seen == 1 and _row_metrics(runner, trial) == recorded
