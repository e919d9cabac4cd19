"""A real multi-node Ray cluster on one machine, for tests of what only a cluster shows.

Each node is a ``ray start --block`` process tree:

* the head has no CPUs, so trials run on worker nodes only;
* every node gets its own temporary directory (socket paths differ, and the head's
  ``ray_current_cluster`` file stays out of ``/tmp/ray``, where a later ``ray.init()``
  would try to join the dead cluster);
* a worker node runs in its own mount and PID namespaces
  (``unshare -m --pid --fork``) with a private tmpfs over each directory named in
  ``private``: a file the driver keeps there does not exist for that node, as on a
  machine of its own;
* ``kill_node`` SIGKILLs the namespace's first process, and the kernel then kills every
  process of the node, raylet and workers together, as when a machine dies (killing
  the process group alone leaves Ray's worker processes running).

Nodes listen on 127.0.0.1 only.  ``RAY_AUTH_MODE=disabled``: Ray 2.60's token
authentication rejects nodes started with another HOME.  The test machines run as
root; a machine that cannot make the namespaces fails with a message that says so.
"""
from __future__ import annotations

import glob
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Dict, List, Optional, Tuple

_NODE_ID = re.compile(r"Setting node ID node_id=([0-9a-f]+)")
_START_TIMEOUT_S = 60.0


def short_tempdir() -> str:
    return tempfile.mkdtemp(prefix="ftc-", dir="/tmp")


def _stat_fields(path: str) -> List[bytes]:
    """The fields of a /proc stat file after the command name (field 3, the state, first)."""
    with open(path, "rb") as f:
        return f.read().rsplit(b")", 1)[-1].split()


def _process_identity(pid: int) -> Optional[Tuple[int, bytes]]:
    """``(pid, start time)``: a pid the kernel hands out again names another process."""
    try:
        return pid, _stat_fields(f"/proc/{pid}/stat")[19]
    except OSError:
        return None


def _namespace_init(unshare_pid: int) -> Tuple[int, bytes]:
    """The first process of the PID namespace ``unshare --fork`` (``unshare_pid``) made:
    its only child."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if int(_stat_fields(f"/proc/{pid}/stat")[1]) == unshare_pid:
                identity = _process_identity(int(pid))
                if identity:
                    return identity
        except OSError:
            continue  # gone meanwhile
    raise RuntimeError(f"unshare (pid {unshare_pid}) has no child: its node is not running")


def _still_running(identity: Tuple[int, bytes]) -> bool:
    """Whether some thread of the process has yet to end.  Its first thread alone says
    too little: it turns zombie, and its command line reads empty, while the others are
    still being killed, and a namespace's first process kills and waits for the rest of
    the namespace in its last thread's exit."""
    pid, started = identity
    if _process_identity(pid) != identity:
        return False  # reaped (and maybe its pid reused)
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for tid in threads:
        try:
            if _stat_fields(f"/proc/{pid}/task/{tid}/stat")[0] not in (b"Z", b"X"):
                return True
        except OSError:
            continue  # this thread is gone
    return False


def kill_leftovers(root: str) -> int:
    """SIGKILL the process group of every process whose command line names ``root``
    (the nodes of a cluster whose driver died before it could stop them); returns how
    many groups."""
    groups = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if root.encode() in f.read():
                    groups.add(os.getpgid(int(pid)))
        except (OSError, ProcessLookupError):
            continue  # gone meanwhile
    for group in groups - {os.getpgrp()}:
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(groups)


def listing_on_node(node_id: str, directory: str) -> Dict[str, object]:
    """What lies below ``directory`` as the node ``node_id`` sees it (through its private
    tmpfs, where it has one), read by a Ray task pinned to that node:
    ``{"exists": bool, "files": [...], "dirs": [...]}``, paths relative to ``directory``."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote(num_cpus=0)
    def walk(path: str) -> Dict[str, object]:
        files, dirs = [], []
        for parent, subdirs, names in os.walk(path):
            relative = os.path.relpath(parent, path)
            dirs.extend(os.path.normpath(os.path.join(relative, d)) for d in subdirs)
            files.extend(os.path.normpath(os.path.join(relative, n)) for n in names)
        return {"exists": os.path.isdir(path), "files": sorted(files), "dirs": sorted(dirs),
                "node": ray.get_runtime_context().get_node_id()}

    strategy = NodeAffinitySchedulingStrategy(node_id, soft=False)
    return ray.get(walk.options(scheduling_strategy=strategy).remote(directory), timeout=_START_TIMEOUT_S)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalCluster:
    """A head node plus worker nodes started with :meth:`add_node`; a context manager
    that kills every node it started on exit."""

    def __init__(self, root: Optional[str] = None) -> None:
        # Short: a node's socket paths live under it, and AF_UNIX paths stop at 107 bytes.
        self.root = root or short_tempdir()
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        # This process (a test's driver) joins the cluster too: after another Ray session
        # on this machine, token authentication would otherwise be on for it alone.
        os.environ["RAY_AUTH_MODE"] = "disabled"
        self.env = dict(os.environ)
        self._nodes: Dict[str, subprocess.Popen] = {}

    def __enter__(self) -> "LocalCluster":
        self._start("head", ["--head", f"--port={self.port}", "--num-cpus=0", "--include-dashboard=false"])
        self._connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def _start(self, name: str, args: List[str], private: List[str] = ()) -> None:
        tmp = os.path.join(self.root, name)
        os.makedirs(tmp)
        command = ["ray", "start", "--block", "--node-ip-address=127.0.0.1", "--object-store-memory=100000000",
                   "--disable-usage-stats", f"--temp-dir={tmp}/ray", *args]
        if private or name != "head":
            mounts = " && ".join(f"mount -t tmpfs none {shlex.quote(path)}" for path in private)
            shell = (mounts + " && " if mounts else "") + "exec " + shlex.join(command)
            command = ["unshare", "--mount", "--pid", "--fork", "sh", "-c", shell]
        with open(os.path.join(tmp, "log"), "wb") as log:
            self._nodes[name] = subprocess.Popen(command, env=dict(self.env, TMPDIR=tmp), stdout=log,
                                                 stderr=subprocess.STDOUT, start_new_session=True)

    def _connect(self) -> None:
        import ray

        # Until the head's GCS port takes connections (ray.init itself would wait 30 s and
        # more on each try); a head that exited says why.
        deadline = time.monotonic() + _START_TIMEOUT_S
        while True:
            self._check_running("head")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the head node did not start within {_START_TIMEOUT_S:.0f} s; "
                                       f"see {self.root}/head/log") from None
                time.sleep(0.1)  # polling for a server to come up, not synchronising with it
        ray.init(address=self.address, log_to_driver=False)

    def add_node(self, name: str, num_cpus: int, private: List[str] = ()) -> str:
        """Start a worker node and wait until it is alive; returns its node id.  Nodes
        join one at a time: nodes on one IP that register together race."""
        import ray

        alive = sum(1 for n in ray.nodes() if n["Alive"])
        self._start(name, [f"--address={self.address}", f"--num-cpus={num_cpus}"], private)
        deadline = time.monotonic() + _START_TIMEOUT_S
        while sum(1 for n in ray.nodes() if n["Alive"]) <= alive:
            self._check_running(name)
            if time.monotonic() > deadline:
                raise RuntimeError(f"node {name} did not join within {_START_TIMEOUT_S:.0f} s; "
                                   f"see {self.root}/{name}/log")
            time.sleep(0.1)
        return self.node_id(name)

    def _check_running(self, name: str) -> None:
        process = self._nodes[name]
        if process.poll() is not None:
            with open(os.path.join(self.root, name, "log"), errors="replace") as f:
                log = f.read()[-2000:]
            hint = (" (unshare needs root, or user namespaces, to give a node its own mount and PID "
                    "namespaces)" if "unshare" in log or "mount" in log else "")
            raise RuntimeError(f"node {name} exited with status {process.returncode}{hint}:\n{log}")

    def node_id(self, name: str) -> str:
        """The Ray node id of node ``name`` (from its raylet's log)."""
        for path in glob.glob(os.path.join(self.root, name, "ray", "session_*", "logs", "raylet.out")):
            with open(path, errors="replace") as f:
                match = _NODE_ID.search(f.read())
            if match:
                return match.group(1)
        raise RuntimeError(f"node {name} has not logged its node id yet")

    def name_of(self, node_id: str) -> str:
        return next(name for name in self._nodes if name != "head" and self.node_id(name) == node_id)

    def kill_node(self, name: str) -> None:
        """SIGKILL the node's namespace: its raylet and all its workers die at once.  Returns
        once every process of the node has ended (the kernel kills the namespace's other
        processes as its first one exits, and that exit waits for them), so nothing the
        node runs can act after this returns."""
        process = self._nodes[name]
        init = _namespace_init(process.pid)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        deadline = time.monotonic() + _START_TIMEOUT_S
        while _still_running(init):
            if time.monotonic() > deadline:
                raise RuntimeError(f"node {name} (pid {init[0]}) outlived its SIGKILL")
            time.sleep(0.01)  # polled: the kernel is ending the namespace's processes

    def shutdown(self) -> None:
        try:
            import ray

            ray.shutdown()
        finally:
            for process in self._nodes.values():
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait()
            shutil.rmtree(self.root, ignore_errors=True)
