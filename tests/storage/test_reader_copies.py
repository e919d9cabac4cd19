"""Readers of one experiment in storage each read a copy of their own: a reader that
refreshes (reads again), in this process or another, never changes or removes the copy an
earlier reader still reads lazily; a copy goes once no reader holds it (its reader let go
of it, exited, or was killed: the next reader on the node sweeps it); and where the file
system has no locks, no reader removes a copy another may hold."""
import gc
import json
import os
import pickle
import signal
import subprocess
import sys

import pytest

import fasttune as tune
from fasttune import _storage as storage

pytest.importorskip("pyarrow.fs", reason="the storage tests need pyarrow (the test extra)")
pytest.importorskip("pandas", reason="Result.metrics_dataframe reads progress.csv with pandas")

# A reader in a process of its own: it reads the experiment (argv[1]) with ResultGrid, prints
# how many trials it saw and the first trial's path, then waits for stdin (or a kill); given
# "nolocks", it reads as on a file system without locks.
_READER = """
import sys
import fasttune as tune
from fasttune import _storage as storage

if sys.argv[2:] == ["nolocks"]:
    storage._fcntl = lambda: None
grid = tune.ResultGrid.from_path(sys.argv[1])
print(len(grid), grid[0].path, flush=True)
sys.stdin.read()
"""


def _row(step, trial_id):
    return {"loss": 1.0 / step, "training_iteration": step, "trial_id": trial_id}


@pytest.fixture
def experiment(tmp_path):
    """The directory of a small experiment in storage (``file://``: pyarrow's local file system)."""
    root = tmp_path / "stored" / "exp"
    for name in ("trial_0", "trial_1"):
        trial = root / name
        (trial / "checkpoint_000001").mkdir(parents=True)
        (trial / "checkpoint_000001" / "weights").write_text("w")
        (trial / "params.json").write_text(json.dumps({"x": name}))
        rows = [_row(1, name[-1]), _row(2, name[-1])]
        (trial / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (trial / "progress.csv").write_text("loss,training_iteration,trial_id\n" + "".join(
            f"{r['loss']},{r['training_iteration']},{r['trial_id']}\n" for r in rows))
    return root


@pytest.fixture
def uri(experiment):
    return f"file://{experiment}"


@pytest.fixture
def copies(tmp_path, monkeypatch):
    """Where this node keeps the readers' copies (its cache empty at the start)."""
    monkeypatch.setenv("FASTTUNE_STORAGE_CACHE", str(tmp_path / "cache"))
    return os.path.join(str(tmp_path / "cache"), "experiment-copies")


def _entry(copies, path):
    """The entry of the copies' folder that ``path`` is in (a reader's copy)."""
    return os.path.relpath(path, copies).split(os.sep)[0]


def _env():
    return dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))


def _start_reader(uri, *options):
    """A reader process that holds its copy: ``(process, trials it saw, its first trial's path)``."""
    reader = subprocess.Popen([sys.executable, "-c", _READER, uri, *options], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, env=_env(), text=True)
    count, path = reader.stdout.readline().split()
    return reader, int(count), path


def _stop(reader, kill):
    if kill:
        os.kill(reader.pid, signal.SIGKILL)
    reader.stdin.close()
    code = reader.wait()
    reader.stdout.close()
    assert code == (-signal.SIGKILL if kill else 0)


def _change_storage(experiment):
    """The run went on: trial_0 reported a third result, trial_1 is gone (deleted)."""
    trial = experiment / "trial_0"
    with open(trial / "result.json", "a") as f:
        f.write(json.dumps(_row(3, "0")) + "\n")
    with open(trial / "progress.csv", "a") as f:
        f.write(f"{_row(3, '0')['loss']},3,0\n")
    for name in ("checkpoint_000001/weights", "params.json", "result.json", "progress.csv"):
        (experiment / "trial_1" / name).unlink()
    (experiment / "trial_1" / "checkpoint_000001").rmdir()
    (experiment / "trial_1").rmdir()


def _assert_as_first_read(grid):
    """``grid`` still reads what storage held when it was read: both trials, two rows each."""
    assert [os.path.basename(r.path) for r in grid] == ["trial_0", "trial_1"]
    for result in grid:
        assert list(result.metrics_dataframe["training_iteration"]) == [1, 2]  # read lazily, now
        with open(os.path.join(result.path, "params.json")) as f:
            assert json.load(f) == {"x": os.path.basename(result.path)}
    assert grid.get_best_result("loss", "min", scope="all").metrics["training_iteration"] == 2


@pytest.mark.parametrize("second_reader", ["another process", "this process"])
def test_a_reader_keeps_its_copy_whole_while_another_reader_refreshes_the_experiment(
        experiment, uri, copies, second_reader):
    first = tune.ResultGrid.from_path(uri)
    _change_storage(experiment)
    if second_reader == "another process":
        reader, count, _ = _start_reader(uri)
        _stop(reader, kill=False)
    else:
        second = tune.ResultGrid.from_path(uri)
        count = len(second)
        assert list(second[0].metrics_dataframe["training_iteration"]) == [1, 2, 3]
    assert count == 1  # the second reader read the experiment as storage has it now
    _assert_as_first_read(first)


def test_an_analysis_keeps_its_copy_while_another_process_refreshes_it(experiment, uri, copies):
    analysis = tune.ExperimentAnalysis(uri, default_metric="loss", default_mode="min")
    _change_storage(experiment)
    reader, count, _ = _start_reader(uri)
    _stop(reader, kill=True)
    assert count == 1
    frames = analysis.trial_dataframes  # read lazily, from the analysis's own copy
    assert sorted(len(frame) for frame in frames.values()) == [2, 2]


def test_a_trial_read_alone_and_the_cli_reader_keep_their_copies(experiment, uri, copies, capsys):
    from fasttune._cli._experiment import read_experiment
    from fasttune.cli import main

    result = tune.Result.from_path(uri + "/trial_0")
    assert os.path.basename(result.path) == "trial_0"
    data = read_experiment(uri)
    assert sorted(os.path.basename(t.path) for t in data.trials) == ["trial_0", "trial_1"]
    _change_storage(experiment)
    assert main(["ls", uri, "--format", "json"]) == 0  # a refresh: it reads what storage has now
    assert len(json.loads(capsys.readouterr().out)) == 1
    assert list(result.metrics_dataframe["training_iteration"]) == [1, 2]
    assert all(os.path.isfile(os.path.join(t.path, "params.json")) for t in data.trials)
    del result, data
    gc.collect()
    assert os.listdir(copies) == []


def test_a_copy_goes_once_no_reader_holds_it(uri, copies):
    other, _, other_path = _start_reader(uri)  # a reader in another process, holding its copy
    grid = tune.ResultGrid.from_path(uri)
    mine = grid[0].path
    assert len(os.listdir(copies)) == 2 and os.path.isdir(other_path)
    result = grid[0]
    del grid
    gc.collect()
    assert os.path.isfile(os.path.join(mine, "params.json"))  # a Result of the grid still holds it
    del result
    gc.collect()
    assert not os.path.exists(mine) and os.path.isdir(other_path)
    # Reads over and over leave no copy behind once their readers let go of them.
    for _ in range(3):
        assert len(tune.ResultGrid.from_path(uri)) == 2
    gc.collect()
    assert len(os.listdir(copies)) == 1
    _stop(other, kill=False)  # it exits: it removes its own
    assert os.listdir(copies) == []
    with storage.hold_local_copy(storage.resolve(uri)) as held:  # released at the block's end
        assert sorted(os.listdir(held.path)) == ["trial_0", "trial_1"]
        assert os.listdir(os.path.join(held.path, "trial_0", "checkpoint_000001")) == []
    assert os.listdir(copies) == []


def test_the_copy_of_a_killed_reader_goes_with_the_next_read_and_a_live_ones_stays(uri, copies):
    dead, _, dead_path = _start_reader(uri)
    live, _, live_path = _start_reader(uri)
    _stop(dead, kill=True)
    assert os.path.isdir(dead_path)  # the kill left it
    with storage.hold_local_copy(storage.resolve(uri)) as held:
        assert not os.path.exists(dead_path)
        assert os.path.isfile(os.path.join(live_path, "params.json"))
        assert sorted(os.listdir(copies)) == sorted([_entry(copies, held.path), _entry(copies, live_path)])
    _stop(live, kill=False)
    assert os.listdir(copies) == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork")
def test_a_forked_child_letting_go_of_its_parents_copy_leaves_it(uri, copies):
    held = storage.hold_local_copy(storage.resolve(uri))
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        held.release()
        os._exit(0)
    assert os.waitpid(child, 0)[1] == 0
    reader, _, _ = _start_reader(uri)  # another process's sweep cannot take it either
    _stop(reader, kill=False)
    assert sorted(os.listdir(held.path)) == ["trial_0", "trial_1"]
    held.release()
    assert not os.path.exists(held.path)


def test_a_pickled_result_does_not_hold_the_copy(uri, copies):
    grid = tune.ResultGrid.from_path(uri)
    copy = pickle.loads(pickle.dumps(grid[0]))
    assert copy.path == grid[0].path and copy._local_copy is None
    assert grid[0]._local_copy is grid._local_copy


def test_without_locks_no_reader_removes_a_copy_another_may_hold(experiment, uri, copies, monkeypatch):
    # A file system without locks: a copy in use and one a killed reader left look alike,
    # so other readers leave both; each reader still removes its own when done.
    killed, _, killed_path = _start_reader(uri, "nolocks")
    _stop(killed, kill=True)
    live, _, live_path = _start_reader(uri, "nolocks")
    real_fcntl = storage._fcntl
    monkeypatch.setattr(storage, "_fcntl", lambda: None)
    first = tune.ResultGrid.from_path(uri)
    assert _entry(copies, first[0].path).startswith(".unlocked-")
    _change_storage(experiment)
    second = tune.ResultGrid.from_path(uri)
    assert len(second) == 1
    _assert_as_first_read(first)
    assert os.path.isfile(os.path.join(live_path, "params.json"))
    assert os.path.isfile(os.path.join(killed_path, "params.json"))  # never swept: it stays
    second_path = second[0].path
    del second
    gc.collect()
    assert not os.path.exists(second_path)
    _stop(live, kill=False)
    assert not os.path.exists(live_path)
    monkeypatch.setattr(storage, "_fcntl", real_fcntl)  # a reader whose locks work cannot tell it either
    with storage.hold_local_copy(storage.resolve(uri)):
        assert os.path.isfile(os.path.join(killed_path, "params.json"))


def test_a_read_that_fails_leaves_no_copy(uri, copies, monkeypatch):
    def unreachable(*args):
        raise OSError("storage unreachable")

    monkeypatch.setattr(storage, "_download_files", unreachable)
    with pytest.raises(OSError, match="unreachable"):
        tune.ResultGrid.from_path(uri)
    assert os.listdir(copies) == []
