"""The readers' local copy of an experiment in storage (``_storage.local_copy``) keeps one
path, a link that each refresh switches to a new whole copy in one step: a reader that
opens files through it, while another reader refreshes it, always finds a whole copy; the
copy before the newest stays, older ones go (without locks, only once old)."""
import json
import os
import shutil

import pytest

import fasttune as tune
from fasttune import _atomic
from fasttune import _storage as storage

from fasttune_testing import StandIn

pytest.importorskip("pyarrow.fs", reason="the storage tests need pyarrow (the test extra)")


def _write_trial(trial, steps):
    """A trial directory with ``steps`` results (its result.json and progress.csv agree)."""
    trial.mkdir(parents=True, exist_ok=True)
    (trial / "params.json").write_text(json.dumps({"x": trial.name}))
    rows = [{"loss": 1.0 / step, "training_iteration": step} for step in range(1, steps + 1)]
    (trial / "result.json").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (trial / "progress.csv").write_text("loss,training_iteration\n" + "".join(
        f"{row['loss']},{row['training_iteration']}\n" for row in rows))


@pytest.fixture
def experiment(tmp_path):
    root = tmp_path / "stored" / "exp"
    for name in ("trial_0", "trial_1"):
        _write_trial(root / name, 2)
    return root


@pytest.fixture
def uri(experiment):
    return f"file://{experiment}"


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """Where this node keeps the readers' copies (empty at the start)."""
    monkeypatch.setenv("FASTTUNE_STORAGE_CACHE", str(tmp_path / "cache"))
    return str(tmp_path / "cache" / "experiment-copies")


def _steps_in(copy):
    """What a reader finds through ``copy`` now: each trial's number of results, the same in
    its result.json and its progress.csv (else the assertion fails: a torn copy)."""
    found = {}
    for name in sorted(os.listdir(copy)):
        with open(os.path.join(copy, name, "result.json")) as f:
            steps = len(f.read().splitlines())
        with open(os.path.join(copy, name, "progress.csv")) as f:
            assert len(f.read().splitlines()) - 1 == steps, name
        with open(os.path.join(copy, name, "params.json")) as f:
            assert json.load(f) == {"x": name}
        found[name] = steps
    return found


def test_a_reader_always_finds_a_whole_copy_while_another_refreshes_it(experiment, uri, folder, monkeypatch):
    final = storage.local_copy(storage.resolve(uri))
    assert _steps_in(final) == {"trial_0": 2, "trial_1": 2}
    _write_trial(experiment / "trial_0", 3)
    _write_trial(experiment / "trial_1", 3)
    # After every step of the refresh that moves or removes files, a reader opens the copy.
    seen = []

    def then_read(step):
        def run(*args, **kwargs):
            step(*args, **kwargs)
            seen.append(_steps_in(final))
        return run

    for module in (storage, _atomic):  # (_atomic: where the copy was replaced in place before)
        monkeypatch.setattr(module, "os", StandIn(os, rename=then_read(os.rename), replace=then_read(os.replace),
                                                  remove=then_read(os.remove), symlink=then_read(os.symlink)))
        monkeypatch.setattr(module, "shutil", StandIn(shutil, rmtree=then_read(shutil.rmtree)))
    assert storage.local_copy(storage.resolve(uri)) == final  # the same path
    old, new = {"trial_0": 2, "trial_1": 2}, {"trial_0": 3, "trial_1": 3}
    assert old in seen and new in seen  # (the reader looked before and after the switch)
    assert all(found in (old, new) for found in seen)
    assert seen.index(new) > seen.index(old) and seen[seen.index(new):] == [new] * (len(seen) - seen.index(new))


def test_the_path_stays_and_only_the_newest_copy_and_the_one_before_are_kept(experiment, uri, folder):
    grid = tune.ResultGrid.from_path(uri)
    path = grid[0].path
    versions = [os.readlink(os.path.dirname(path))]
    for steps in (3, 4, 5):
        _write_trial(experiment / "trial_0", steps)
        again = tune.ResultGrid.from_path(uri)
        assert [result.path for result in again] == [result.path for result in grid]  # one path, refreshed
        versions.append(os.readlink(os.path.dirname(path)))
        kept = sorted(name for name in os.listdir(folder) if ".v-" in name)
        assert kept == sorted(versions[-2:])
        assert _steps_in(os.path.dirname(path)) == {"trial_0": steps, "trial_1": 2}  # the first grid's path: the newest
    key = os.path.basename(os.path.dirname(path))
    assert sorted(os.listdir(folder)) == sorted([key, key + ".publish", *versions[-2:]])


def test_where_links_fail_the_copy_is_a_directory_replaced_whole_and_later_a_link(uri, folder, monkeypatch):
    def no_links(*args):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(storage, "os", StandIn(os, symlink=no_links))
    final = storage.local_copy(storage.resolve(uri))
    final_again = storage.local_copy(storage.resolve(uri))
    assert final_again == final and not os.path.islink(final) and _steps_in(final) == {"trial_0": 2, "trial_1": 2}
    key = os.path.basename(final)
    assert sorted(os.listdir(folder)) == [key, key + ".publish"]  # (no version left behind)
    os.makedirs(os.path.join(final, "trial_9"))  # stale: the next copy replaces it whole
    monkeypatch.setattr(storage, "os", os)
    assert storage.local_copy(storage.resolve(uri)) == final
    assert os.path.islink(final) and _steps_in(final) == {"trial_0": 2, "trial_1": 2}
    key = os.path.basename(final)
    assert sorted(os.listdir(folder)) == sorted([key, key + ".publish", os.readlink(final)])


def test_what_a_killed_refresh_left_goes_with_the_next(uri, folder):
    final = storage.local_copy(storage.resolve(uri))
    key = os.path.basename(final)
    # Killed after moving its copy beside the link, and after making its new link.
    os.makedirs(os.path.join(folder, key + ".v-dead", "trial_0"))
    os.symlink(key + ".v-dead", os.path.join(folder, key + ".link-dead"))
    previous = os.readlink(final)
    assert storage.local_copy(storage.resolve(uri)) == final
    assert sorted(os.listdir(folder)) == sorted([key, key + ".publish", os.readlink(final), previous])


def test_a_refresh_switches_the_link_under_the_lock_of_its_key(uri, folder, monkeypatch):
    import fcntl

    final = storage.local_copy(storage.resolve(uri))
    probes = []

    def replace(source, target):
        # Half-way through the refresh: neither this process's other threads nor another
        # process can take the key's lock now.
        with open(final + ".publish") as f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                probes.append("free")
            except BlockingIOError:
                probes.append("held")
        probes.append(storage._publish_lock.locked())
        os.replace(source, target)

    monkeypatch.setattr(storage, "os", StandIn(os, replace=replace))
    assert storage.local_copy(storage.resolve(uri)) == final
    assert probes == ["held", True]


def test_without_locks_a_refresh_leaves_recent_versions_another_may_switch_to(uri, folder, monkeypatch):
    final = storage.local_copy(storage.resolve(uri))
    key = os.path.basename(final)
    recent, old = key + ".v-recent", key + ".v-old"  # another process's, made just now / long ago
    for name in (recent, old):
        shutil.copytree(final, os.path.join(folder, name))
    an_hour_ago = os.lstat(os.path.join(folder, old)).st_mtime - 3600
    os.utime(os.path.join(folder, old), (an_hour_ago, an_hour_ago))
    monkeypatch.setattr(storage, "_fcntl", lambda: None)
    previous = os.readlink(final)
    assert storage.local_copy(storage.resolve(uri)) == final
    assert sorted(os.listdir(folder)) == sorted([key, key + ".publish", os.readlink(final), previous, recent])


def test_a_removal_cut_short_is_finished_by_the_next_sweep(uri, folder):
    final = storage.local_copy(storage.resolve(uri))
    os.symlink(os.readlink(final), os.path.join(folder, ".gone-link"))  # renamed, not removed yet
    shutil.copytree(final, os.path.join(folder, ".gone-copy"))
    storage.local_copy(storage.resolve(uri))
    assert not any(name.startswith(".gone-") for name in os.listdir(folder))
