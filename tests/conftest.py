"""Shared fixtures: one Ray session for the whole test run (Ray takes seconds to start),
and the rule that the suite runs whole: a skipped test is a failure.

The test extra installs every optional package the tests use, so a skip can only hide a
broken install or a test that stopped testing anything.  A test that may legitimately
be skipped says so with ``@pytest.mark.skip_allowed(reason="...")``; every other skip,
whether from ``pytest.skip``, ``importorskip`` (in a test or at a module's import) or a
``skipif`` marker, is reported as a failure that names the skip's reason.
"""
import pytest

SKIP_ALLOWED = "skip_allowed"


def pytest_configure(config):
    config.addinivalue_line("markers", f"{SKIP_ALLOWED}(reason): this test may be skipped (why, in the reason)")


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (file, line, "Skipped: reason")
        return str(longrepr[2])
    return str(longrepr)


def _failed_instead(report, what: str) -> None:
    report.outcome = "failed"
    report.longrepr = (f"{what} was skipped ({_skip_reason(report)}), and the suite allows no skips: install the "
                       f'test extra (pip install -e ".[test]"), or mark the test '
                       f'@pytest.mark.{SKIP_ALLOWED}(reason=...) if it may be skipped')


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail") and item.get_closest_marker(SKIP_ALLOWED) is None:
        _failed_instead(report, item.nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    # A module-level importorskip skips the whole module at collection.
    outcome = yield
    report = outcome.get_result()
    if report.skipped:
        _failed_instead(report, collector.nodeid)


@pytest.fixture(scope="session")
def ray_session():
    import ray

    if not ray.is_initialized():
        # address="local": a Ray of the tests' own, never the cluster a `ray start` elsewhere
        # on this machine left in ray_current_cluster.  Two logical GPUs (none physical):
        # Ray still assigns them and sets CUDA_VISIBLE_DEVICES, which the resource tests check.
        ray.init(address="local", num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def storage(tmp_path):
    path = tmp_path / "results"
    path.mkdir()
    return str(path)


@pytest.fixture(autouse=True)
def _no_synchronous_env(monkeypatch):
    monkeypatch.delenv("FASTTUNE_SYNCHRONOUS", raising=False)
