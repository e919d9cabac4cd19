"""Fixtures of the cluster tests: one moto S3 server for the session."""
import pytest

from s3_server import CREDENTIALS, moto_server


@pytest.fixture(scope="session")
def cluster_s3(tmp_path_factory):
    """``127.0.0.1:PORT`` of a moto S3 server; the AWS credentials are in this process's
    environment while it runs, so the drivers (and through them every node) inherit them."""
    with pytest.MonkeyPatch.context() as env:
        for name, value in CREDENTIALS.items():
            env.setenv(name, value)
        with moto_server(str(tmp_path_factory.mktemp("moto") / "server.log")) as endpoint:
            yield endpoint
