"""A real S3 API for the storage tests: moto's standalone server, started once per session
on a free loopback port, with the credentials ``testing``."""
import os
import socket
import subprocess
import sys
import time

import pytest


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _accepts_connections(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory):
    """``127.0.0.1:PORT`` of a moto S3 server; the AWS credentials are set while it runs."""
    port = _free_port()
    # The server logs every request: to a file, as a pipe nobody reads would fill and stall it.
    log = open(tmp_path_factory.mktemp("moto") / "server.log", "w+b")
    with pytest.MonkeyPatch.context() as env:
        for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                            "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                            "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}.items():
            env.setenv(name, value)
        server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                  stdout=log, stderr=log, start_new_session=True)
        try:
            for _ in range(300):  # up to 30 s: the server imports all of moto first
                if server.poll() is not None:
                    log.seek(0)
                    pytest.fail(f"moto's S3 server exited with {server.returncode}: "
                                f"{log.read().decode(errors='replace')[-2000:]}")
                if _accepts_connections(port):
                    break
                time.sleep(0.1)
            else:
                pytest.fail(f"moto's S3 server did not listen on 127.0.0.1:{port} within 30 s")
            yield f"127.0.0.1:{port}"
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            log.close()


@pytest.fixture(scope="session")
def s3_filesystem(s3_endpoint):
    """A ``pyarrow.fs.S3FileSystem`` on the moto server."""
    from pyarrow import fs

    return fs.S3FileSystem(endpoint_override=s3_endpoint, scheme="http", access_key="testing",
                           secret_key="testing", region="us-east-1", allow_bucket_creation=True)


@pytest.fixture(scope="session")
def s3_bucket(s3_filesystem):
    """The name of a bucket on the moto server."""
    s3_filesystem.create_dir("fasttune-results")
    return "fasttune-results"
