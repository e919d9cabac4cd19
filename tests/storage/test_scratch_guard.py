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


def test_scratch_without_a_lock_goes_only_once_made_before_this_boot(monkeypatch, tmp_path):
    monkeypatch.setenv("FASTTUNE_STORAGE_CACHE", str(tmp_path))
    kept_root = os.path.join(str(tmp_path), "checkpoints")
    os.makedirs(kept_root)
    older = tempfile.mkdtemp(prefix=".incoming-", dir=kept_root)  # an older fasttune's copy being made
    with open(os.path.join(older, "weights"), "w") as f:
        f.write("half a copy")
    unlocked = tempfile.mkdtemp(prefix=".unlocked-", dir=kept_root)  # made where locks failed
    # Made in this boot: their processes may be alive, writing there.
    assert storage.remove_dead_scratch() == 0 and os.path.isdir(older) and os.path.isdir(unlocked)
    # As after a reboot of this node: no process that made them lives.
    made = max(os.stat(older).st_ctime, os.stat(unlocked).st_ctime)
    monkeypatch.setattr(storage, "_boot_time", lambda: made + 1)
    if storage._filesystem_type(kept_root) not in storage._NODE_LOCAL_FILESYSTEMS:
        pytest.fail(f"the test's cache is not on a node-local file system: {storage._filesystem_type(kept_root)}")
    assert storage.remove_dead_scratch() == 2 and _kept_root_entries(tmp_path) == []


def test_scratch_without_a_lock_stays_on_a_file_system_other_nodes_mount(monkeypatch, tmp_path):
    monkeypatch.setenv("FASTTUNE_STORAGE_CACHE", str(tmp_path))
    kept_root = os.path.join(str(tmp_path), "checkpoints")
    os.makedirs(kept_root)
    older = tempfile.mkdtemp(prefix=".incoming-", dir=kept_root)
    monkeypatch.setattr(storage, "_boot_time", lambda: os.stat(older).st_ctime + 1)
    # Another node, booted long ago, may still be writing there.
    monkeypatch.setattr(storage, "_filesystem_type", lambda path, mountinfo=None: "nfs4")
    assert storage.remove_dead_scratch() == 0 and os.path.isdir(older)


@pytest.mark.parametrize("path,expected", [
    ("/home/a/cache", "nfs4"), ("/home/ab", "ext4"), ("/tmp/x", "tmpfs"), ("/mnt/my disk/c", "xfs"),
])
def test_the_file_system_of_a_path_is_that_of_the_deepest_mount_above_it(path, expected):
    mountinfo = ("21 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n"
                 "30 21 0:40 / /home/a rw,relatime - nfs4 server:/a rw\n"
                 "31 21 0:41 / /tmp rw - ext4 /dev/sdb1 rw\n"
                 "32 21 0:42 / /tmp rw - tmpfs tmpfs rw\n"  # mounted over the one before
                 "33 21 8:17 / /mnt/my\\040disk rw - xfs /dev/sdc1 rw\n")
    assert storage._filesystem_type(path, mountinfo) == expected
