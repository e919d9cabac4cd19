"""The event loop's shortcuts for sweeps of many short trials (issue 20), each checked
against the long way it replaces: several starts in one step, the executor's remembered
resource answer, the fast decode of a worker's reply, and a result flattened with its
config's part made once."""
import time
from array import array
from types import SimpleNamespace

import pytest

import fasttune as tune
from fasttune import PlacementGroupFactory
from fasttune._flatten import flatten_dict
from fasttune.execution import _protocol as protocol
from fasttune.execution import ray_trial_executor
from fasttune.execution._trial_state import TrialState
from fasttune.execution.ray_trial_executor import RayTrialExecutor, _Worker
from fasttune.execution.trial_runner import TrialRunner
from fasttune_testing import fit


# ---- several starts in one step ---------------------------------------------------------
class CountsSteps(tune.Callback):
    def on_step_end(self, iteration, trials, **info):
        pass


def _one_result(config):
    tune.report({"score": config["i"]})


def _start_steps(storage, monkeypatch, callbacks, name):
    """The runner's step count at each trial's dispatch to a worker, by trial."""
    started = {}
    original = TrialRunner._start_trial

    def recording(self, trial):
        started[trial.config["i"]] = self._iteration
        original(self, trial)

    monkeypatch.setattr(TrialRunner, "_start_trial", recording)
    fit(tune.with_resources(_one_result, {"cpu": 1}), storage, space={"i": tune.grid_search([0, 1, 2, 3])},
        name=name, callbacks=callbacks)
    return started


@pytest.mark.usefixtures("ray_session")
def test_trials_that_can_start_together_start_in_one_step_unless_a_callback_counts_steps(storage, monkeypatch):
    # Two CPUs: the first two trials each get a new worker at once, in the first step.
    together = _start_steps(storage, monkeypatch, [], "together")
    assert sorted(together) == [0, 1, 2, 3]
    assert together[0] == together[1] == 0
    # A callback with step hooks sees one start per step, as before.
    one_by_one = _start_steps(storage, monkeypatch, [CountsSteps()], "one_by_one")
    assert sorted(one_by_one) == [0, 1, 2, 3]
    assert len(set(one_by_one.values())) == 4


# ---- the executor's resource answer -----------------------------------------------------
def _trial(name):
    return SimpleNamespace(trial_id=name, placement_group_factory=PlacementGroupFactory([{"CPU": 1}]))


@pytest.fixture
def executor(monkeypatch):
    """Two CPUs as last seen now, both held by workers running a trial; no queueing."""
    executor = RayTrialExecutor(reuse_actors=True, prefetch=False)
    executor._total, executor._total_at = {"CPU": 2.0}, time.monotonic()
    shape = PlacementGroupFactory([{"CPU": 1}]).shape_key()
    for slot, running in enumerate(("a", "b")):
        worker = _Worker(slot, actor=None, shape=shape, resources={"CPU": 1.0})
        worker.assigned.append(_trial(running))
        executor._workers[slot] = worker
    executor._committed = {"CPU": 2.0}
    import ray

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})  # the cluster, when looked at again
    return executor


def test_the_answer_follows_the_pool_a_worker_freed_or_returned_idle(executor):
    assert not executor.has_resources_for_trial(_trial("c"))
    assert not executor.has_resources_for_trial(_trial("c"))  # asked again, nothing changed
    executor.trial_ended(1, executor._workers[1].assigned[0])  # worker 1 idle in the pool
    assert executor.has_resources_for_trial(_trial("c"))
    assert executor._worker_for(_trial("c")) is executor._workers[1]
    executor._workers[1].assigned.append(_trial("c"))
    assert not executor.has_resources_for_trial(_trial("d"))
    executor.worker_died(0)  # its CPU is free: a new worker fits
    assert executor.has_resources_for_trial(_trial("d"))


def test_a_no_is_looked_at_again_once_the_cluster_may_have_grown(executor, monkeypatch):
    import ray

    # A long recheck interval, and the last look made older instead of waiting for one.
    monkeypatch.setattr(ray_trial_executor, "_RESOURCE_RECHECK_S", 3600.0)
    assert not executor.has_resources_for_trial(_trial("c"))
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 3.0})  # a node joined
    # Within the recheck interval the cluster is not asked again...
    assert not executor.has_resources_for_trial(_trial("c"))
    # ...after it, it is.
    executor._total_at -= 3600.0
    assert executor.has_resources_for_trial(_trial("c"))


# ---- decoding a reply -------------------------------------------------------------------
def _events():
    times = array("d", [1.5, 2.5]).tobytes()
    return [
        protocol.Started("t1", 1.0, 7, "host", "127.0.0.1"),
        protocol.Results("t1", [{"score": 1}, {"score": 2}], times, {1: "checkpoint_000000"}),
        protocol.Decide("t1", 2, False),
        protocol.Decide("t2", 3, True),
        protocol.Yielded("t1", 4),
        protocol.Ended("done", "t1"),
        protocol.Ended("paused", "t2"),
        protocol.Failed("t3", "Traceback", None),
    ]


def test_a_reply_decodes_to_the_records_it_was_made_from():
    reply = protocol.reply_bytes([protocol.encode_event(event) for event in _events()])
    decoded = protocol.decode_events(reply)
    assert decoded == _events()
    assert [type(e) for e in decoded] == [type(e) for e in _events()]


@pytest.mark.parametrize("message, says", [
    (["results", "t1", [{"score": 1}], b"\0" * 8], "TypeError"),  # a field short
    (["results", "t1", [{"score": 1}], b"\0" * 4, {}], "does not have the form"),  # times of another length
    (["results", "t1", [1], b"\0" * 8, {}], "does not have the form"),  # a result not a dict
    (["results", "t1", [{"score": 1}], b"\0" * 8, {"0": "ckpt"}], "does not have the form"),  # index not an int
    (["started", 5, 1.0, 7, "host", "127.0.0.1"], "not a string id"),
    (["done", "t1", "extra"], "TypeError"),
    (["done", 3], "not a string id"),
    ("started", "unknown worker event"),
    ([], "IndexError"),
    (["decide", "t1", "2", False], "decide event of trial 't1' does not have the form"),  # iteration a str
    (["decide", "t1", 2.0, False], "does not have the form"),  # iteration a float
    (["decide", "t1", True, False], "does not have the form"),  # iteration a bool
    (["decide", "t1", None, False], "does not have the form"),
    (["decide", "t1", 2, "no"], "does not have the form"),  # starved not a bool
    (["yielded", "t1", [2]], "yielded event of trial 't1' does not have the form"),
])
def test_a_malformed_common_event_is_a_malformed_reply(message, says):
    with pytest.raises(protocol.MalformedReply, match=says):
        protocol.decode_events(protocol.pack([message]))


# ---- a result, flattened ----------------------------------------------------------------
CONFIG = {"x": 0.5, "nested": {"a": 1, "empty": {}}, "empty": {}}


def _result(**extra):
    result = {"score": 1.0, "training_iteration": 3, "done": False, "trial_id": "t1"}
    result.update(extra)
    result["config"] = CONFIG  # the runner puts it last
    return result


@pytest.mark.parametrize("result", [
    _result(),
    _result(metrics={"a": 1}),  # another nested dict
    _result(empty={}),
    {1: 2, "config": CONFIG},  # a key that becomes a str
    {"config": CONFIG, "score": 1},  # the config not last
    {"score": 1, "config": {}},
    {"score": 1},
])
def test_a_flattened_result_is_flatten_dicts_keys_and_order(result):
    state = TrialState()
    for _ in range(2):  # the config's part made, then reused
        flat = state.flatten_result(result)
        assert list(flat.items()) == list(flatten_dict(result).items())


def test_a_new_config_object_is_flattened_anew():
    state = TrialState()
    assert state.flatten_result(_result())["config/x"] == 0.5
    changed = dict(_result(), config={"x": 0.25})
    assert state.flatten_result(changed)["config/x"] == 0.25
    assert "config/nested/a" not in state.flatten_result(changed)
