"""A one-test module (not collected by the suite: its name does not start with test_)
that test_ray_connection.py runs in a pytest session of its own, beside a foreign
`ray start` cluster: the suite's ``ray_session`` must be a Ray of its own."""
import os


def test_the_session_ray_is_a_local_one_with_the_suites_resources(ray_session):
    assert ray_session.get_runtime_context().gcs_address != os.environ["FOREIGN_RAY_ADDRESS"]
    assert ray_session.cluster_resources()["CPU"] == 2 and ray_session.cluster_resources()["GPU"] == 2
    assert ray_session.get(ray_session.remote(lambda: 42).remote()) == 42
