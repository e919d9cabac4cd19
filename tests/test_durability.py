"""Durability order: a snapshot never names a params.json or a checkpoint whose bytes are
not yet durable, and the searcher's and scheduler's state files are fsynced.

Whether bytes reached the disk cannot be observed without cutting the power, so these
tests observe the calls that make them durable instead: ``os.fsync`` counted through
monkeypatching, and the runner's file-system sync recorded with what was on disk at the
time, against what each snapshot then names.
"""
import os
import re

import pytest

import fasttune as tune
from fasttune import _atomic
from fasttune.checkpoint import Checkpoint
from fasttune.execution import _experiment_state as experiment_state
from fasttune.execution import trial_runner
from fasttune.execution._worker_checkpoints import LocalCheckpoints
from fasttune.schedulers import PopulationBasedTraining
from fasttune.search import BasicVariantGenerator, ConcurrencyLimiter
from fasttune.search.searcher import Searcher

from fasttune_testing import StandIn, report_with_step_checkpoint, restored_step


class Fixed(Searcher):
    """A searcher with a state of its own to save."""

    def suggest(self, trial_id):
        return {"x": 1}

    def get_state(self):
        return {"n": 1}


@pytest.fixture
def fsynced(monkeypatch):
    """The paths _atomic's os.fsync was called on (files and directories), in order; a temporary
    file an atomic write renames into place counts as the file it became."""
    paths = []
    real_fsync = os.fsync

    def fsync(fd):
        path = os.readlink(f"/proc/self/fd/{fd}")
        directory, name = os.path.split(path)
        renamed = re.fullmatch(r"\.(.+)\.[0-9a-f]{8}\.tmp", name)
        paths.append(os.path.join(directory, renamed.group(1)) if renamed else path)
        real_fsync(fd)

    monkeypatch.setattr(_atomic, "os", StandIn(os, fsync=fsync))  # (every state file is written by _atomic)
    return paths


def test_searcher_state_files_are_fsynced_with_their_directory(tmp_path, fsynced):
    generator = BasicVariantGenerator(random_state=1)
    assert generator.save_to_dir(str(tmp_path), "s") is not False
    (saved,) = os.listdir(tmp_path)
    assert fsynced == [str(tmp_path / saved), str(tmp_path)]


def test_a_wrapped_searchers_state_file_is_fsynced(tmp_path, fsynced):
    from fasttune.search.search_generator import SearchGenerator
    generator = SearchGenerator(ConcurrencyLimiter(Fixed(metric="m", mode="max"), max_concurrent=1))
    generator.save_to_dir(str(tmp_path), "s")
    saved = str(tmp_path / generator.CKPT_FILE_TMPL.format("s"))
    assert os.path.exists(saved)
    assert fsynced[-2:] == [saved, str(tmp_path)]


def test_a_searchers_own_save_to_dir_fsyncs_the_directory_after_its_rename(tmp_path, fsynced):
    Fixed(metric="m", mode="max").save_to_dir(str(tmp_path), "s")
    saved = str(tmp_path / Fixed.CKPT_FILE_TMPL.format("s"))
    assert os.path.exists(saved)
    # The state file is fsynced under its temporary name; the rename is durable once the
    # directory is fsynced after it.
    assert fsynced[-1] == str(tmp_path) and fsynced.count(str(tmp_path)) == 2


def test_scheduler_state_file_is_fsynced_with_its_directory(tmp_path, fsynced):
    path = str(tmp_path / "scheduler.pkl")
    PopulationBasedTraining(metric="m", mode="max", hyperparam_mutations={"x": [1, 2]}).save(path)
    assert fsynced == [path, str(tmp_path)]


def test_the_state_a_snapshot_copies_is_written_without_fsyncs_and_a_direct_save_still_fsyncs(tmp_path, fsynced):
    """The searcher's and scheduler's state a snapshot reads back from a scratch directory
    is made durable by the snapshot itself: its scratch files need no fsync."""
    from fasttune.execution._snapshots import policy_state
    from fasttune.search.search_generator import SearchGenerator
    generator = BasicVariantGenerator(random_state=1)
    generator.set_search_properties("m", "max", {"x": tune.uniform(0, 1)})
    wrapped = SearchGenerator(ConcurrencyLimiter(Fixed(metric="m", mode="max"), max_concurrent=1))
    scheduler = PopulationBasedTraining(metric="m", mode="max", hyperparam_mutations={"x": [1, 2]})

    saved = [policy_state(generator, "searcher"), policy_state(wrapped, "searcher"),
             policy_state(scheduler, "scheduler")]

    assert all(saved) and fsynced == []
    scheduler.save(str(tmp_path / "scheduler.pkl"))  # the user's own call, outside a snapshot
    generator.save_to_dir(str(tmp_path), "s")
    assert fsynced.count(str(tmp_path)) == 2 and str(tmp_path / "scheduler.pkl") in fsynced


def test_a_failed_checkpoint_copy_leaves_no_temporary_directory(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    (source / "weights").write_bytes(b"w")
    os.symlink(str(tmp_path / "gone"), str(source / "dangling"))  # the copy fails on it
    trial_dir = tmp_path / "trial"
    trial_dir.mkdir()
    with pytest.raises(FileNotFoundError):
        LocalCheckpoints().persist(Checkpoint.from_directory(str(source)), str(trial_dir), "checkpoint_000001")
    assert os.listdir(trial_dir) == []


def _checkpointing(config):
    start = restored_step()
    for step in range(start + 1, 7):
        if step % 2 == 0:
            report_with_step_checkpoint({"score": step * config["x"]}, step)
        else:
            tune.report({"score": step * config["x"]})


@pytest.mark.ray
def test_every_snapshot_names_only_files_made_durable_before_it(ray_session, tmp_path, monkeypatch):
    """At each file-system sync the runner makes, the params.json files and checkpoint
    directories on disk are recorded; each snapshot written after it may name only those."""
    monkeypatch.setenv("FASTTUNE_GLOBAL_CHECKPOINT_S", "0")  # a snapshot after every step
    durable_at_last_sync = []  # one set per sync
    real_sync, real_write = trial_runner.sync_filesystem, experiment_state.write_snapshot

    def sync(path):
        on_disk = set()
        for directory, subdirs, files in os.walk(path):
            on_disk.update(os.path.join(directory, d) for d in subdirs if d.startswith("checkpoint_")
                           and not d.endswith(".tmp"))
            on_disk.update(os.path.join(directory, f) for f in files if f == "params.json")
        real_sync(path)
        durable_at_last_sync.append(on_disk)

    named = []

    def write_snapshot(experiment_path, *args, **kwargs):
        written = real_write(experiment_path, *args, **kwargs)
        durable = durable_at_last_sync[-1] if durable_at_last_sync else set()
        for trial in experiment_state.read_trials(experiment_path):
            names = [c.path for c in trial.checkpoints]
            if trial.start_time is not None:
                names.append(os.path.join(trial.path, "params.json"))
            for name in names:
                assert name in durable, f"{written} names {name}, which was not synced before it"
            named.extend(names)
        return written

    monkeypatch.setattr(trial_runner, "sync_filesystem", sync)
    monkeypatch.setattr(experiment_state, "write_snapshot", write_snapshot)
    grid = tune.Tuner(
        _checkpointing,
        param_space={"x": tune.grid_search([1, 2, 3])},
        tune_config=tune.TuneConfig(metric="score", mode="max"),
        run_config=tune.RunConfig(name="durable", storage_path=str(tmp_path), verbose=0),
    ).fit()
    assert grid.num_errors == 0 and len(grid) == 3
    assert any(os.path.basename(n).startswith("checkpoint_") for n in named)  # checkpoints were named
    assert any(n.endswith("params.json") for n in named)
