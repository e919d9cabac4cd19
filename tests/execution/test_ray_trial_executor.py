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


def _idle_executor(nodes):
    """An executor with an idle worker on each of ``nodes`` (slot i on nodes[i])."""
    executor = RayTrialExecutor(reuse_actors=True, storage=object())
    shape = PlacementGroupFactory([{"CPU": 1}]).shape_key()
    for slot, node in enumerate(nodes):
        worker = _Worker(slot, actor=None, shape=shape, resources={"CPU": 1.0})
        worker.node, worker.replied = node, True
        executor._workers[slot] = worker
        executor._idle.setdefault(shape, []).append(slot)
    return executor


def test_a_resume_goes_to_an_idle_worker_on_the_node_that_keeps_its_checkpoint():
    executor = _idle_executor(["node-1", "node-2", "node-3"])
    assert executor._worker_for(_trial("c"), node="node-1") is executor._workers[0]
    # None idle on that node: another idle worker takes it at once (it downloads).
    assert executor._worker_for(_trial("d"), node="node-1") is executor._workers[2]
    # No node named (a fresh start, a local experiment): the pool's usual pick.
    assert executor._worker_for(_trial("e")) is executor._workers[1]


def test_a_queued_resume_prefers_the_node_that_keeps_its_checkpoint_among_equal_queues(full_executor):
    for slot, worker in full_executor._workers.items():
        worker.replied, worker.node = True, f"node-{slot + 1}"
    assert full_executor._worker_for(_trial("c"), node="node-2") is full_executor._workers[1]
    # A shorter queue still comes first.
    full_executor._workers[1].assigned.append(_trial("c"))
    assert full_executor._worker_for(_trial("d"), node="node-2") is full_executor._workers[0]


def _refuse(*args, **kwargs):
    raise AssertionError("looked at the pool again")


def test_a_start_takes_the_place_the_resource_check_found_without_looking_again(full_executor, monkeypatch):
    for worker in full_executor._workers.values():
        worker.replied = True
    trial = _trial("c")
    assert full_executor.has_resources_for_trial(trial)
    monkeypatch.setattr(full_executor, "_queue_behind", _refuse)
    monkeypatch.setattr(full_executor, "_fits_letting_idle_go", _refuse)
    assert full_executor._worker_for(trial) is full_executor._workers[0]


def test_a_start_looks_again_when_the_pool_changed_since_the_resource_check(full_executor):
    for worker in full_executor._workers.values():
        worker.replied = True
    trial = _trial("c")
    assert full_executor.has_resources_for_trial(trial)  # behind worker 0
    full_executor._workers[0].assigned.append(_trial("queued"))  # its queue is full now
    assert full_executor._worker_for(trial) is full_executor._workers[1]
    trial = _trial("d")
    assert full_executor.has_resources_for_trial(trial)  # behind worker 1
    full_executor.trial_ended(0, full_executor._workers[0].assigned[0])
    full_executor.trial_ended(0, full_executor._workers[0].assigned[0])  # worker 0 is idle now
    assert full_executor._worker_for(trial) is full_executor._workers[0]


def test_a_start_looks_again_when_the_trials_resources_changed_since_the_resource_check(full_executor):
    two_cpus = PlacementGroupFactory([{"CPU": 2}])
    bigger = _Worker(2, actor=None, shape=two_cpus.shape_key(), resources={"CPU": 2.0})
    bigger.assigned.append(SimpleNamespace(trial_id="big", placement_group_factory=two_cpus))
    full_executor._workers[2] = bigger
    for worker in full_executor._workers.values():
        worker.replied = True
    trial = _trial("c")
    assert full_executor.has_resources_for_trial(trial)  # behind worker 0, of one CPU
    trial.placement_group_factory = two_cpus  # as update_resources does
    assert full_executor._worker_for(trial) is bigger


def test_a_start_looks_again_when_it_asks_for_a_node_the_checked_place_is_not_on(full_executor):
    for slot, worker in full_executor._workers.items():
        worker.replied, worker.node = True, f"node-{slot + 1}"
    trial = _trial("c")
    assert full_executor.has_resources_for_trial(trial)  # behind worker 0 on node-1 (equal queues)
    assert full_executor._worker_for(trial, node="node-2") is full_executor._workers[1]


def test_a_start_that_may_not_queue_does_not_take_a_queued_place_found_for_one_that_may(
        full_executor, monkeypatch):
    for worker in full_executor._workers.values():
        worker.replied = True
    new_worker = object()
    monkeypatch.setattr(full_executor, "_let_idle_go_for", lambda pgf: None)
    monkeypatch.setattr(full_executor, "_create_worker", lambda pgf: new_worker)
    trial = _trial("c")
    assert full_executor.has_resources_for_trial(trial, queue=True)  # behind worker 0
    assert full_executor._worker_for(trial, queue=False) is new_worker


def _queue_one_behind_each(executor):
    """Both workers replied, each running one trial with one queued, room for two more."""
    for worker in executor._workers.values():
        worker.replied, worker.depth = True, 4
        worker.assigned.append(_trial("queued"))


def test_a_start_of_another_trial_than_the_checked_one_looks_again(full_executor):
    _queue_one_behind_each(full_executor)
    assert full_executor.has_resources_for_trial(_trial("c"))  # behind worker 0 (equal queues)
    # Worker 1's queue shortens (not idle, so the pool's epoch stays): the better place now.
    full_executor.trial_ended(1, full_executor._workers[1].assigned[0])
    assert full_executor._worker_for(_trial("d")) is full_executor._workers[1]


def test_a_resource_check_that_answers_without_a_place_forgets_the_earlier_place(full_executor):
    _queue_one_behind_each(full_executor)
    trial = _trial("c")
    assert full_executor.has_resources_for_trial(trial)  # behind worker 0 (equal queues)
    full_executor.trial_ended(1, full_executor._workers[1].assigned[0])  # the pool's epoch stays
    assert not full_executor.has_resources_for_trial(trial, queue=False)
    assert full_executor._worker_for(trial) is full_executor._workers[1]


@pytest.mark.parametrize("reuse_actors", [True, False])
def test_a_start_tells_the_worker_whether_actors_are_reused(reuse_actors):
    # The worker keeps a class trainable's instance unless the spec says False; True, its
    # default, is not sent (a pooled sweep's spec goes uncopied).
    executor = _idle_executor(["node-1"])
    executor._reuse_actors = reuse_actors
    executor._workers[0].trainables.add("fn")
    spec = {"trial_id": "c", "trainable": "fn"}
    executor.start_trial(_trial("c"), spec)
    [start] = executor._workers[0].commands
    assert start.spec.get("reuse_actors", True) is reuse_actors
    assert (start.spec is spec) is reuse_actors and spec == {"trial_id": "c", "trainable": "fn"}


def _recording_actor(calls):
    return SimpleNamespace(poll=SimpleNamespace(remote=lambda payload: calls.append("poll") or object()),
                           open_channel=SimpleNamespace(remote=lambda *args: calls.append("open_channel")))


def test_a_worker_is_asked_onto_the_socket_at_its_second_poll_not_at_its_start(monkeypatch):
    # A worker whose one short trial ends within its first poll (reuse_actors=False) never
    # costs the driver the extra actor call.
    from fasttune.execution import ray_trial_executor

    calls = []
    actor = _recording_actor(calls)
    options = SimpleNamespace(remote=lambda storage: actor)
    monkeypatch.setattr(ray_trial_executor, "_remote_worker_class",
                        lambda: SimpleNamespace(options=lambda **kwargs: options))
    executor = RayTrialExecutor(reuse_actors=False)
    executor._listener = SimpleNamespace(path="/nowhere", secret_for=lambda slot: b"secret")
    executor._driver_node = "node-a"
    worker = executor._create_worker(PlacementGroupFactory([{"CPU": 1}]))
    worker.assigned.append(_trial("a"))
    executor._dispatch()
    assert calls == ["poll"]
    executor._by_future.clear()  # its reply came: the trial still runs
    worker.future, worker.replied = None, True
    executor._dispatch()
    assert calls == ["poll", "open_channel", "poll"]
    executor._by_future.clear()
    worker.future = None
    executor._dispatch()
    assert calls == ["poll", "open_channel", "poll", "poll"]  # asked once
