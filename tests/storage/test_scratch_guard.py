"""Scratch of the node checkpoint cache that a process killed while making it left: from
before its directory exists until it is locked and renamed ``.scratch-*``, the process
holds the lock of a guard file beside it, so a sweep removes what a killed process left at
any point of the making, and never what a live one is making."""
import os
import signal
import subprocess
import sys
import tempfile

import pytest

from fasttune import _storage as storage

# A process making a scratch directory in the node's cache that stops at ``point`` (just
# after os.mkdir made it, just after os.open made its lock file, or just before os.rename
# gives it its locked name), tells the directory on stdout, and waits for stdin (or a kill).
_PAUSED_MAKER = """
import os, sys
from fasttune import _storage as storage

point = sys.argv[1]
real = getattr(os, point)

def paused(path, *args, **kwargs):
    directory = path if point != "open" else os.path.dirname(path)
    making = os.path.basename(directory).startswith(".unlocked-")
    if point == "rename" and making:
        print(directory, flush=True)
        sys.stdin.read()
    made = real(path, *args, **kwargs)
    if point != "rename" and making:
        print(directory, flush=True)
        sys.stdin.read()
    return made

setattr(os, point, paused)
with storage.node_cache_scratch() as made:
    pass
"""

# A sweep in a process of its own: what another worker of the node does.
_SWEEPER = "from fasttune import _storage as storage; print(storage.remove_dead_scratch())"


def _env(cache):
    return dict(os.environ, FASTTUNE_STORAGE_CACHE=str(cache), PYTHONPATH=os.pathsep.join(sys.path))


def _kept_root_entries(cache):
    return sorted(os.listdir(os.path.join(str(cache), "checkpoints")))


@pytest.mark.parametrize("point", ["mkdir", "open", "rename"])
def test_a_scratch_directory_whose_maker_was_killed_before_locking_it_is_swept(monkeypatch, tmp_path, point):
    monkeypatch.setenv("FASTTUNE_STORAGE_CACHE", str(tmp_path))
    maker = subprocess.Popen([sys.executable, "-c", _PAUSED_MAKER, point], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, env=_env(tmp_path), text=True)
    try:
        unlocked = maker.stdout.readline().strip()
        assert os.path.basename(unlocked).startswith(".unlocked-") and os.path.isdir(unlocked)
        # Alive, it is making that directory: no sweep takes it.
        assert storage.remove_dead_scratch() == 0 and os.path.isdir(unlocked)
        os.kill(maker.pid, signal.SIGKILL)
        assert maker.wait() == -signal.SIGKILL
    finally:
        maker.stdin.close()
        maker.stdout.close()
    assert os.path.isdir(unlocked)  # the kill left it
    assert storage.remove_dead_scratch() == 1
    assert _kept_root_entries(tmp_path) == []  # the directory and its guard


def test_a_guard_swept_before_its_maker_locked_it_is_made_again(monkeypatch, tmp_path):
    monkeypatch.setenv("FASTTUNE_STORAGE_CACHE", str(tmp_path))
    real_mkstemp, sweeps = tempfile.mkstemp, []

    def then_swept_by_another_process(*args, **kwargs):
        made = real_mkstemp(*args, **kwargs)
        if not sweeps:  # another worker's sweep comes between the guard's making and its lock
            out = subprocess.run([sys.executable, "-c", _SWEEPER], env=_env(tmp_path), capture_output=True,
                                 text=True, check=True)
            sweeps.append((int(out.stdout), os.path.exists(made[1])))
        return made

    monkeypatch.setattr(tempfile, "mkstemp", then_swept_by_another_process)
    with storage.node_cache_scratch() as made:
        assert sweeps == [(1, False)]  # it took the unlocked guard ...
        assert os.path.basename(made).startswith(".scratch-") and os.listdir(made) == [".lock"]  # ... and a new one served
        out = subprocess.run([sys.executable, "-c", _SWEEPER], env=_env(tmp_path), capture_output=True, text=True,
                             check=True)
        assert int(out.stdout) == 0 and _kept_root_entries(tmp_path) == [os.path.basename(made)]
    assert _kept_root_entries(tmp_path) == []


@pytest.mark.parametrize("interrupted_call", ["flock", "rename"])
def test_a_maker_interrupted_after_making_its_directory_leaves_nothing(monkeypatch, tmp_path, interrupted_call):
    # A Ctrl-C reaching a worker (same process group) between the directory's making and its
    # locked name: its guard goes in the finally, so nothing may be left that no sweep removes.
    import fcntl

    monkeypatch.setenv("FASTTUNE_STORAGE_CACHE", str(tmp_path))
    module = fcntl if interrupted_call == "flock" else os
    real = getattr(module, interrupted_call)

    def interrupted(*args, **kwargs):
        target = args[0]
        if interrupted_call == "flock" and isinstance(target, int) and os.path.basename(
                os.path.dirname(os.readlink(f"/proc/self/fd/{target}"))).startswith(".unlocked-"):
            raise KeyboardInterrupt
        if interrupted_call == "rename" and os.path.basename(str(target)).startswith(".unlocked-"):
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(module, interrupted_call, interrupted)
    with pytest.raises(KeyboardInterrupt):
        with storage.node_cache_scratch():
            pass
    monkeypatch.setattr(module, interrupted_call, real)
    assert _kept_root_entries(tmp_path) == []
