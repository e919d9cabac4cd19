"""The exact bytes of trial records and of a whole snapshot, pinned (issues 19 and 20):
making the snapshot writer cheaper must not change one byte of what it writes, for any
kind of trial.  The digests were taken from the writer before it was made cheaper; a
change of format must change them on purpose (and keep restores of older files).  (The
errored trial's record holds a pickled date: pickle protocol 5's bytes.)"""
import datetime
import hashlib
import os
import time

import numpy as np

from fasttune.checkpoint import Checkpoint
from fasttune._serialization import pack_state
from fasttune.execution import _experiment_state as state
from fasttune.execution import _snapshots
from fasttune.execution._snapshots import Policies
from fasttune.execution._trial_state import PendingReset
from fasttune.execution.placement_groups import PlacementGroupFactory
from fasttune.experiment.trial import Trial

from fasttune_testing import StandIn
from runner_testing import random_search_runner


def _train(config):
    pass


class _Searcher:
    def save_to_dir(self, dirpath, session_str="default"):
        files = (("searcher-state.msgpack", pack_state({"seen": 3, "space": ("lr", 0.1)})), ("empty", b""))
        for name, data in files:
            with open(os.path.join(dirpath, name), "wb") as f:
                f.write(data)


class _Scheduler:
    def save(self, checkpoint_path):
        with open(checkpoint_path, "wb") as f:
            f.write(pack_state({"rungs": [[0.5, 0.25]]}))


class _Callbacks:
    def get_state(self):
        return {"calls": 3}


def _last_result(trial_id, config, loss, iteration):
    return {"loss": loss, "training_iteration": iteration, "trial_id": trial_id, "done": True, "hostname": "h",
            "node_ip": "127.0.0.1", "date": "1970-01-01_00-00-50", "time_total_s": 1.25 * iteration, "config": config}


def _runner(path):
    return random_search_runner(path, _train, {}, 1, random_state=1, add=False)


def _add(runner, path, name, config, **kwargs):
    trial = Trial("train", config=config, trial_id=name, experiment_path=path,
                  stopping_criterion={"training_iteration": 5}, max_failures=2, **kwargs)
    runner.add_trial(trial)
    return trial


def _run(runner, trial, loss, iteration=2, status="TERMINATED"):
    trial.set_status("RUNNING")
    trial.start_time = 1.5 + trial._row
    trial.last_result = _last_result(trial.trial_id, trial.config, loss, iteration)
    trial.results_seen = iteration
    runner.table.record_result(trial._row, iteration, 1.25 * iteration, loss)
    trial.end_time = 9.25 + trial._row
    trial.set_status(status)


def _checkpoint(runner, trial, index, result, upload=None):
    saved = Checkpoint._at(os.path.join(trial.path, f"checkpoint_{index:06d}"))
    trial.checkpoints.append(saved)
    trial.checkpoint_results.append((saved, result))
    runner._checkpoints.add_restored({saved.path: index + 1}, {saved.path: upload} if upload else {})
    return saved


def _sweep(path):
    """A runner holding one trial of each kind, the finished ones packed as they ended."""
    runner = _runner(path)
    plain = _add(runner, path, "pin_00000", {"lr": 0.1, "width": 64}, experiment_tag="0_lr=0.1")
    nested = _add(runner, path, "pin_00001", {
        "model": {"layers": [64, 32], "act": "relu", "shape": (3, 4)}, "opt": {"name": "adam", "betas": (0.9, 0.99)},
        "flags": {"frozen": frozenset(["a"])}, "none": None, "text": "é"}, experiment_tag="1")
    numeric = _add(runner, path, "pin_00002", {
        "lr": np.float32(0.25), "seed": np.int64(7), "weights": np.arange(6, dtype=np.float64).reshape(2, 3),
        "flag": np.bool_(True)}, placement_group_factory=PlacementGroupFactory([{"CPU": 2, "GPU": 1}], "SPREAD"))
    failed = _add(runner, path, "pin_00003", {"lr": 0.3, "when": datetime.date(2026, 1, 2)})
    pbt = _add(runner, path, "pin_00004", {"lr": 0.4, "width": 32}, evaluated_params={"lr": 0.4})
    checkpointed = _add(runner, path, "pin_00005", {"lr": 0.5})
    paused = _add(runner, path, "pin_00006", {"lr": 0.6})
    running = _add(runner, path, "pin_00007", {"lr": 0.7})
    _add(runner, path, "pin_00008", {"lr": 0.8})  # pending

    _run(runner, plain, 0.5)
    _run(runner, nested, 0.25, iteration=3)
    _run(runner, numeric, np.float64(0.125))
    numeric.last_result["grad_norm"] = np.float32(1.5)  # a key set of its own
    _run(runner, failed, 0.75, iteration=1, status="ERROR")
    failed.error_msg = "Traceback (most recent call last):\nValueError: boom"
    failed.error_file = os.path.join(failed.path, "error.txt")
    failed.error = ValueError("boom")
    runner.table.increment_failures(failed._row)
    _run(runner, pbt, 0.375, iteration=4)
    pbt.set_config({"lr": 0.8, "width": 32})  # exploited: its config is no longer what was evaluated
    pbt.set_experiment_tag("4@perturbed[lr=0.8]")
    _run(runner, checkpointed, 0.0625, iteration=3)
    first = _last_result(checkpointed.trial_id, checkpointed.config, 0.5, 1)
    _checkpoint(runner, checkpointed, 0, first)
    _checkpoint(runner, checkpointed, 2, checkpointed.last_result)  # saved with the last result
    _run(runner, paused, 0.875, status="PAUSED")
    paused.end_time = None
    _checkpoint(runner, paused, 1, paused.last_result, upload=("token-1", "node-a"))
    runner._states[paused.trial_id].reset_on_start = PendingReset(
        {"lr": 0.5}, "6@perturbed", checkpointed.checkpoints[-1].path, dict(checkpointed.last_result), True)
    _run(runner, running, 0.9, iteration=1, status="RUNNING")
    running.end_time = None
    runner.table.set_worker_slot(running._row, 0)
    for trial in (plain, nested, numeric, failed, pbt, checkpointed):
        runner._snapshots.trial_finished(trial, runner._states, runner._checkpoints.rows, runner.table)
    return runner


def _snapshot(runner, monkeypatch):
    monkeypatch.setattr(_snapshots, "time", StandIn(time, time=lambda: 1.0e9))  # the snapshot's timestamp
    policies = Policies(_Searcher(), _Scheduler(), None, _Callbacks())
    path = runner._snapshots.write(runner.get_trials(), runner._states, runner._checkpoints.rows, runner.table,
                                   policies, experiment=None, elapsed_s=12.5, iteration=40, started=0.0)
    with open(path, "rb") as f:
        return f.read()


def _digest(data):
    return hashlib.sha256(data).hexdigest()[:16]


# Row by row: plain, nested config, numpy values, errored (a pickled date in its config),
# PBT-changed config, two checkpoints, paused with an upload and a pending exploit,
# running (a worker holds it), pending.
RECORDS = ["351662f942d66c3d", "da9d047b30c7cd6d", "2453a5d255e82e15", "a260a800c512d7b5", "c04187735e77e5e6",
           "cb8801a612def9b3", "c61125b290b5ec86", "7549b386f9691a15", "1b4a64e56b3fbb0b"]
SNAPSHOT = "b97fe74a8dca2f21"


def test_each_kind_of_trial_packs_to_the_pinned_bytes_and_the_snapshot_too(tmp_path, monkeypatch):
    runner = _sweep(str(tmp_path / "exp"))
    snapshot = _snapshot(runner, monkeypatch)
    writer = runner._snapshots
    records = state.load_latest(writer.experiment_path)[0]["trials"]
    assert [_digest(record) for record in records] == RECORDS
    assert _digest(snapshot) == SNAPSHOT
    assert [t._is_compact() for t in runner.get_trials()] == [True, True, True, False, True, True, False, False, False]
    # Packed again from the compact trials at the next snapshot: not one byte differs.
    for row in range(len(writer.records)):
        writer.forget_record(row)
    assert _snapshot(runner, monkeypatch) == snapshot
