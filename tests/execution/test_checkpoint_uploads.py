"""The driver's record of where each checkpoint of an experiment in storage was uploaded
(its token, and the node that keeps a copy of it): from the worker's events into the
checkpoint book, into the StartTrial spec of a resume, and through a snapshot; without Ray."""
import glob
import os
from array import array

import pytest

import fasttune as tune
from fasttune.execution import _protocol as protocol

from runner_testing import random_search_runner


def _train(config):
    tune.report({"loss": config["x"]})


def _run_segment(runner, trial, node, checkpoints, tokens):
    """A run segment of ``trial`` on the Ray node ``node`` that reports one result per checkpoint."""
    runner._start_trial(trial)
    runner._on_started(0, trial, protocol.Started(trial.trial_id, 1.0, 11, "host", "192.0.2.2", node))
    metrics = [{"loss": 0.5} for _ in checkpoints]
    runner._on_results(0, trial, protocol.Results(trial.trial_id, metrics, array("d", [2.0] * len(metrics)).tobytes(),
                                                  dict(enumerate(checkpoints)), tokens))


def test_a_resume_names_the_upload_it_needs_and_a_snapshot_keeps_it(tmp_path):
    path = str(tmp_path / "exp")
    runner = random_search_runner(path, _train, {"x": tune.uniform(0, 1)}, 2, random_state=5)
    uploaded, older = runner.get_trials()
    _run_segment(runner, uploaded, "node-7", ["checkpoint_000000", "checkpoint_000001"], {0: "a0", 1: "a1"})
    _run_segment(runner, older, "node-8", ["checkpoint_000000"], {})  # as a local experiment's: no token
    newest = os.path.join(uploaded.path, "checkpoint_000001")
    assert runner._checkpoints.uploads == {os.path.join(uploaded.path, "checkpoint_000000"): ("a0", "node-7"),
                                           newest: ("a1", "node-7")}
    for trial in (uploaded, older):
        trial.set_status("PAUSED")
    runner._start_trial(uploaded)
    assert (runner.trial_executor.started["restore"], runner.trial_executor.started["restore_token"],
            runner.trial_executor.started["restore_node"]) == (newest, "a1", "node-7")
    runner._start_trial(older)
    assert "restore_token" not in runner.trial_executor.started
    runner.checkpoint(force=True)

    # A restored experiment's first resume names the same upload; a checkpoint without one
    # (as all of an older snapshot's are) names none, and the worker downloads it.
    resumed = random_search_runner(path, _train, {"x": tune.uniform(0, 1)}, 2, random_state=5, add=False)
    resumed.resume()
    by_id = {t.trial_id: t for t in resumed.get_trials()}
    assert resumed._checkpoints.uploads == runner._checkpoints.uploads
    resumed._start_trial(by_id[uploaded.trial_id])
    assert (resumed.trial_executor.started["restore"], resumed.trial_executor.started["restore_token"]) == (newest, "a1")
    resumed._start_trial(by_id[older.trial_id])
    assert resumed.trial_executor.started["restore"] == os.path.join(older.path, "checkpoint_000000")
    assert "restore_token" not in resumed.trial_executor.started
    # PBT's exploit of the newest checkpoint: the clone names the donor's upload and node.
    clone = by_id[older.trial_id]
    reset = resumed._resets.make(clone, {"x": 0.5}, "exploited", by_id[uploaded.trial_id].checkpoint, None)
    fields = resumed._resets.spec_fields(clone, resumed._states[clone.trial_id], reset, resumed._rewind,
                                         resumed.decision_points_wire)
    assert (fields["clone_from"], fields["clone_token"], fields["restore_node"]) == (newest, "a1", "node-7")


def test_the_book_keeps_one_entry_per_checkpoint_with_its_rows_and_upload():
    from fasttune.execution._checkpoint_book import CheckpointBook

    class Files:
        removed = []

        def remove_checkpoint(self, path):
            self.removed.append(path)

    class Trial:
        path, checkpoint_results, checkpoints, checkpoint_config = "/exp/t0", [], [], tune.CheckpointConfig(num_to_keep=2)

        @property
        def checkpoint(self):
            return self.checkpoints[-1] if self.checkpoints else None

    class State:
        next_checkpoint_index = 0

    book, trial = CheckpointBook(Files()), Trial()
    for index, token in enumerate(["a0", "", "a2"]):  # the second one's upload is unknown
        book.record(trial, State(), f"checkpoint_00000{index}", {"loss": index}, rows=index + 1, token=token,
                    node="node-1")
    kept = ["/exp/t0/checkpoint_000001", "/exp/t0/checkpoint_000002"]
    assert Files.removed == ["/exp/t0/checkpoint_000000"]  # retention: rows and upload went with it
    assert {path: (entry.rows, entry.upload) for path, entry in book.entries.items()} == {
        kept[0]: (2, None), kept[1]: (3, ("a2", "node-1"))}
    assert dict(book.rows) == {kept[0]: 2, kept[1]: 3} and dict(book.uploads) == {kept[1]: ("a2", "node-1")}
    assert len(book.uploads) == 1 and book.uploads.get(kept[0]) is None and book.rows.get("/exp/t0/other", 0) == 0
    book.forget_after(trial, 2)
    assert list(book.entries) == [kept[0]] and not book.uploads and dict(book.rows) == {kept[0]: 2}


def _one_trial_finished_with_an_upload(path, histories=True):
    """A runner of two trials in ``path``: the first ran on node-7 (upload "f0") and ended;
    returns it and both trials.  ``histories=False``: its records carry no checkpoint's
    history (format 3), so that a test sees the uploads' own rule."""
    runner = random_search_runner(path, _train, {"x": tune.uniform(0, 1)}, 2, random_state=5)
    if not histories:
        runner._snapshots.checkpoint_histories = {}
    runner.trial_executor.trial_ended = lambda slot, trial: None
    finished, other = runner.get_trials()
    _run_segment(runner, finished, "node-7", ["checkpoint_000000"], {0: "f0"})
    runner._on_trial_end(0, finished, protocol.Ended("done", finished.trial_id))
    return runner, finished, other


def test_a_finished_trials_record_carries_no_upload(tmp_path):
    # A node drops its copies when a trial ends there: a restore resuming finished trials
    # downloads, and the ~90 bytes per checkpoint of a finished trial stay out of snapshots.
    path = str(tmp_path / "exp")
    runner, finished, paused = _one_trial_finished_with_an_upload(path)
    _run_segment(runner, paused, "node-8", ["checkpoint_000000"], {0: "p0"})
    paused.set_status("PAUSED")
    assert finished.status == "TERMINATED" and len(runner._checkpoints.uploads) == 2
    runner.checkpoint(force=True)

    resumed = random_search_runner(path, _train, {"x": tune.uniform(0, 1)}, 2, random_state=5, add=False)
    resumed.resume()
    assert resumed._checkpoints.uploads == {os.path.join(paused.path, "checkpoint_000000"): ("p0", "node-8")}
    with open(sorted(glob.glob(os.path.join(path, "experiment_state-*")))[-1], "rb") as f:
        snapshot = f.read()
    assert b"p0" in snapshot and b"f0" not in snapshot and b"node-7" not in snapshot


def test_a_snapshot_stays_below_format_2_until_a_record_carries_an_upload(tmp_path, monkeypatch):
    # Only the records of trials that did not end carry uploads: one whose only uploads are
    # a finished trial's has none.  (Its checkpoint's history makes it format 3 all the
    # same, unless the records carry none, as here: the uploads' rule alone.)
    from fasttune.execution import _experiment_state as state

    path = str(tmp_path / "exp")
    runner, finished, paused = _one_trial_finished_with_an_upload(path, histories=False)
    assert finished.status == "TERMINATED" and runner._checkpoints.uploads
    runner.checkpoint(force=True)
    monkeypatch.setattr(state, "FORMAT_VERSION", 1)
    assert state.load_latest(path)[0]["format"] == 1

    _run_segment(runner, paused, "node-8", ["checkpoint_000000"], {0: "p0"})
    paused.set_status("PAUSED")
    runner.checkpoint(force=True)
    with pytest.raises(state.NewerExperimentState):  # now a record carries one
        state.load_latest(path)

    # Once format 2, it stays so: after that trial ends too, and in a restored experiment
    # (its finished trials' records are written again as they were).
    runner._on_trial_end(0, paused, protocol.Ended("done", paused.trial_id))
    assert paused.status == "TERMINATED"
    runner.checkpoint(force=True)
    monkeypatch.setattr(state, "FORMAT_VERSION", 2)
    assert state.load_latest(path)[0]["format"] == 2
    resumed = random_search_runner(path, _train, {"x": tune.uniform(0, 1)}, 2, random_state=5, add=False)
    resumed.resume()
    seq = state.latest_seq(path)
    resumed.checkpoint(force=True)
    assert state.latest_seq(path) > seq and state.load_latest(path)[0]["format"] == 2
