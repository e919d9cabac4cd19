"""A local copy of an experiment in storage is made in locked scratch beside it: what a
reader killed while copying left (SIGKILL) goes with the next copy made there, and what a
live reader is copying stays."""
import os
import signal
import subprocess
import sys

import pytest

from fasttune import _storage as storage

pytest.importorskip("pyarrow.fs", reason="the storage tests need pyarrow (the test extra)")

# A reader whose copy stalls in its first file: it tells that file on stdout, then waits
# for stdin (or a kill).
_STALLED_READER = """
import shutil, sys
from fasttune import _storage as storage

def stalled(source, destination, *args):
    print(destination.name, flush=True)
    sys.stdin.read()

shutil.copyfileobj = stalled
storage.local_copy(storage.resolve(sys.argv[1]))
"""


@pytest.fixture
def stored(tmp_path):
    """The URI of a small experiment directory (``file://``: pyarrow's local file system)."""
    experiment = tmp_path / "stored" / "exp"
    (experiment / "trial_0" / "checkpoint_000001").mkdir(parents=True)
    (experiment / "trial_0" / "checkpoint_000001" / "weights").write_text("w")
    (experiment / "trial_0" / "params.json").write_text("{}")
    return f"file://{experiment}"


def _copy_entries(final):
    """The entries of a reader's copy in its folder: the link, the lock of its refreshes, its newest version."""
    key = os.path.basename(final)
    return [key, key + ".publish", os.readlink(final)]


def test_a_copy_a_killed_reader_left_goes_with_the_next_and_a_live_ones_stays(stored, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("FASTTUNE_STORAGE_CACHE", str(cache))
    folder = os.path.join(str(cache), "experiment-copies")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    reader = subprocess.Popen([sys.executable, "-c", _STALLED_READER, stored], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, env=env, text=True)
    try:
        copying = reader.stdout.readline().strip()
        assert os.path.isfile(copying), copying
        (being_made,) = os.listdir(folder)
        assert copying.startswith(os.path.join(folder, being_made) + os.sep)
        # Alive, it is copying: a copy made meanwhile leaves its scratch alone.
        final = storage.local_copy(storage.resolve(stored))
        assert sorted(os.listdir(folder)) == sorted([being_made, *_copy_entries(final)])
        os.kill(reader.pid, signal.SIGKILL)
        assert reader.wait() == -signal.SIGKILL
    finally:
        reader.stdin.close()
        reader.stdout.close()
    assert os.path.isfile(copying)  # the kill left it
    final = storage.local_copy(storage.resolve(stored))
    previous = _copy_entries(final)[2]
    final = storage.local_copy(storage.resolve(stored))
    assert sorted(os.listdir(folder)) == sorted([*_copy_entries(final), previous])  # (and the one before)
    assert sorted(os.listdir(os.path.join(final, "trial_0"))) == ["checkpoint_000001", "params.json"]
    assert os.listdir(os.path.join(final, "trial_0", "checkpoint_000001")) == []


def test_the_sweep_before_a_copy_leaves_the_copy_itself_whatever_its_name(stored, tmp_path, monkeypatch):
    # A staging copy is named after its experiment, which may look like scratch: a copy
    # that then fails to download keeps the one it was to replace.
    final = tmp_path / "staging" / ".scratch-exp"
    (final / "trial_0").mkdir(parents=True)
    (final / "trial_0" / "params.json").write_text("{}")

    def unreachable(*args):
        raise OSError("storage unreachable")

    monkeypatch.setattr(storage, "_download_files", unreachable)
    with pytest.raises(OSError, match="unreachable"):
        storage.refresh_local_copy(storage.resolve(stored), str(final))
    assert (final / "trial_0" / "params.json").read_text() == "{}"
    assert os.listdir(tmp_path / "staging") == [".scratch-exp"]
