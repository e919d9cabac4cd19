"""Shared fixtures: one Ray session for the whole test run (Ray takes seconds to start)."""
import pytest


@pytest.fixture(scope="session")
def ray_session():
    import ray

    if not ray.is_initialized():
        # Two logical GPUs (none physical): Ray still assigns them and sets
        # CUDA_VISIBLE_DEVICES, which the resource tests check.
        ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
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
