"""A real S3 API for the storage tests: moto's standalone server, started once per session
on a free loopback port, with the credentials ``testing``."""
import os
import socket
import subprocess
import sys
import time

import pytest

# The credentials of the S3 server, set when pytest imports this file: before any test
# starts Ray, whose worker processes inherit the environment of the process that called
# ray.init() and read these when a sweep's storage is an s3:// URI (pyarrow's URIs carry
# no keys, and the session's Ray may start before the s3_endpoint fixture does).
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                  "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                  "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
os.environ.update(S3_CREDENTIALS)


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
        for name, value in S3_CREDENTIALS.items():
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


@pytest.fixture
def require_s3_keys(s3_endpoint):
    """A context manager: while it is open, the S3 server checks access keys, and knows
    none (so ``testing`` is refused, as wrong credentials are)."""
    import contextlib
    import urllib.request

    def reset_auth(count):
        # text/plain: a form content type would make the server parse the body away.
        request = urllib.request.Request(f"http://{s3_endpoint}/moto-api/reset-auth", data=count, method="POST",
                                         headers={"Content-Type": "text/plain"})
        urllib.request.urlopen(request, timeout=10).read()

    @contextlib.contextmanager
    def checking_keys():
        reset_auth(b"0")
        try:
            yield
        finally:
            reset_auth(b"inf")

    return checking_keys


@pytest.fixture
def faulty_s3(s3_endpoint):
    """A :class:`faulty_s3.FaultyS3Proxy` in front of the S3 server."""
    from faulty_s3 import FaultyS3Proxy

    proxy = FaultyS3Proxy(s3_endpoint)
    yield proxy
    proxy.close()
