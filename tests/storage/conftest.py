"""A real S3 API for the storage tests: moto's standalone server, started once per session
on a free loopback port, with the credentials ``testing``."""
import os

import pytest

from s3_server import CREDENTIALS, filesystem, moto_server

# The credentials of the S3 server, set when pytest imports this file: before any test
# starts Ray, whose worker processes inherit the environment of the process that called
# ray.init() and read these when a sweep's storage is an s3:// URI (pyarrow's URIs carry
# no keys, and the session's Ray may start before the s3_endpoint fixture does).
os.environ.update(CREDENTIALS)


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory):
    """``127.0.0.1:PORT`` of a moto S3 server."""
    try:
        with moto_server(str(tmp_path_factory.mktemp("moto") / "server.log")) as endpoint:
            yield endpoint
    except RuntimeError as exc:  # it did not come up: the test fails, with its log
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def s3_filesystem(s3_endpoint):
    """A ``pyarrow.fs.S3FileSystem`` on the moto server."""
    return filesystem(s3_endpoint)


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
