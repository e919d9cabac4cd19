"""A real S3 API for the storage and cluster tests: moto's standalone server on a free
loopback port.

Every node of a :class:`cluster_testing.LocalCluster` shares the machine's network (the
worker nodes get mount and PID namespaces of their own, not a network one), so they all
reach the server at ``127.0.0.1:PORT``.  The credentials are the ones moto accepts by
default; they must be in the environment of the driver and of every node's ``ray start``
(:data:`CREDENTIALS`).
"""
from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from typing import Iterator

#: The environment every process that talks to the server needs.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
}

_START_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def moto_server(log_path: str) -> Iterator[str]:
    """Run moto's S3 server while the block runs; yields its ``127.0.0.1:PORT``.  It logs
    every request, to ``log_path`` (a pipe nobody reads would fill and stall it)."""
    port = free_port()
    with open(log_path, "w+b") as log:
        server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                  stdout=log, stderr=log, start_new_session=True)
        try:
            deadline = time.monotonic() + _START_TIMEOUT_S  # it imports all of moto first
            while not _accepts_connections(port):
                if server.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"moto's S3 server exited with {server.returncode}: "
                                       f"{log.read().decode(errors='replace')[-2000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"moto's S3 server did not listen on 127.0.0.1:{port} "
                                       f"within {_START_TIMEOUT_S:.0f} s")
                time.sleep(0.1)  # polling for a server to come up
            yield f"127.0.0.1:{port}"
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def filesystem(endpoint: str):
    """A ``pyarrow.fs.S3FileSystem`` on the server at ``endpoint`` that may create buckets."""
    from pyarrow import fs

    return fs.S3FileSystem(endpoint_override=endpoint, scheme="http", access_key="testing", secret_key="testing",
                           region="us-east-1", allow_bucket_creation=True)


def uri(endpoint: str, path: str) -> str:
    """The ``s3://`` URI of ``path`` (``bucket/prefix``) on the server at ``endpoint``."""
    return f"s3://{path}?endpoint_override={endpoint}&scheme=http&region=us-east-1"
