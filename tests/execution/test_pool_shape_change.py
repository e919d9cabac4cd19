"""The worker pool when a trial needs a new shape (ResourceChangingScheduler): idle
workers of other shapes are let go only when their resources are needed, and the
committed resources stay the sum of the live workers' (on the shared Ray session: 2 CPUs,
2 GPUs)."""
from types import SimpleNamespace

import pytest

from fasttune import PlacementGroupFactory
from fasttune.execution.ray_trial_executor import RayTrialExecutor

pytestmark = pytest.mark.usefixtures("ray_session")


def _trial(name, bundle):
    return SimpleNamespace(trial_id=name, placement_group_factory=PlacementGroupFactory([bundle]))


def _idle_worker(executor, trial):
    """A worker of ``trial``'s shape that ran it and went back to the pool."""
    worker = executor._worker_for(trial)
    worker.assigned.append(trial)
    executor.trial_ended(worker.slot, trial)
    return worker


def _committed_is_the_workers_sum(executor):
    total = {}
    for worker in executor._workers.values():
        for key, value in worker.resources.items():
            total[key] = total.get(key, 0.0) + value
    return all(abs(executor._committed.get(k, 0.0) - total.get(k, 0.0)) < 1e-9 for k in set(total) | set(executor._committed))


def test_an_idle_worker_of_the_old_shape_is_let_go_for_the_new_one():
    executor = RayTrialExecutor(reuse_actors=True)
    try:
        small = _idle_worker(executor, _trial("t", {"CPU": 1}))
        # 1 CPU and 1 GPU fit beside it: it stays in the pool.
        beside = executor._worker_for(_trial("g", {"CPU": 1, "GPU": 1}))
        assert small.slot in executor._workers and executor._committed["CPU"] == 2.0
        executor._kill(beside)
        # 2 CPUs fit only once it is gone: it is let go, and the new worker holds them.
        grown = _trial("t", {"CPU": 2})
        assert executor.has_resources_for_trial(grown)
        worker = executor._worker_for(grown)
        assert worker.shape == grown.placement_group_factory.shape_key()
        assert list(executor._workers) == [worker.slot]
        assert executor._idle == {small.shape: []}
        assert executor._committed["CPU"] == 2.0 and _committed_is_the_workers_sum(executor)
        # Idle again, it is not let go for a request that would not fit even without it.
        worker.assigned.append(grown)
        executor.trial_ended(worker.slot, grown)
        assert not executor.has_resources_for_trial(_trial("x", {"CPU": 3}))
        assert list(executor._workers) == [worker.slot] and executor._idle[worker.shape] == [worker.slot]
    finally:
        executor.cleanup()


def test_only_idle_workers_holding_what_the_request_lacks_are_let_go():
    executor = RayTrialExecutor(reuse_actors=True)
    try:
        cpu_only = _idle_worker(executor, _trial("c", {"CPU": 1}))  # the oldest
        gpus = _idle_worker(executor, _trial("g", {"CPU": 0.5, "GPU": 2}))
        # CPUs fit beside both (1 + 0.5 + 0.5 <= 2), a GPU does not (2 + 1 > 2): only the
        # GPU worker is let go, though the CPU one is older.
        wants_gpu = _trial("w", {"CPU": 0.5, "GPU": 1})
        assert executor.has_resources_for_trial(wants_gpu)
        worker = executor._worker_for(wants_gpu)
        assert sorted(executor._workers) == sorted([cpu_only.slot, worker.slot])  # the CPU worker stays
        assert gpus.slot not in executor._workers
        assert _committed_is_the_workers_sum(executor)
    finally:
        executor.cleanup()
