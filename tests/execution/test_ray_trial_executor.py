"""Where the executor puts a trial when the cluster is full, without Ray: workers are
stand-ins, the cluster's capacity a patched answer."""
from types import SimpleNamespace

import pytest

from fasttune import PlacementGroupFactory
from fasttune.execution.ray_trial_executor import RayTrialExecutor, _Worker


def _trial(name):
    return SimpleNamespace(trial_id=name, placement_group_factory=PlacementGroupFactory([{"CPU": 1}]))


@pytest.fixture
def full_executor(monkeypatch):
    executor = RayTrialExecutor(reuse_actors=True)
    monkeypatch.setattr(executor, "_fits", lambda request: False)  # no room for a new worker
    shape = PlacementGroupFactory([{"CPU": 1}]).shape_key()
    for slot, running in enumerate(("a", "b")):
        worker = _Worker(slot, actor=None, shape=shape, resources={"CPU": 1.0})
        worker.assigned.append(_trial(running))
        executor._workers[slot] = worker
    return executor


def test_no_trial_is_queued_behind_a_worker_that_has_not_replied_yet(full_executor):
    # Both actors may still be starting: a trial queued there would wait while others run.
    assert not full_executor.has_resources_for_trial(_trial("c"))
    full_executor._workers[1].replied = True
    assert full_executor.has_resources_for_trial(_trial("c"))
    assert full_executor._worker_for(_trial("c")) is full_executor._workers[1]


def test_a_queued_trial_goes_behind_the_shortest_queue_with_room(full_executor):
    for worker in full_executor._workers.values():
        worker.replied = True
    full_executor._workers[0].assigned.append(_trial("queued"))
    assert full_executor._worker_for(_trial("c")) is full_executor._workers[1]
    full_executor._workers[1].assigned.append(_trial("c"))
    # Both at depth 2 (one running, one queued): none has room, and nothing may queue.
    assert not full_executor.has_resources_for_trial(_trial("d"))
