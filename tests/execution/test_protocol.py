"""The worker protocol's records and their wire form (execution/_protocol.py)."""
import threading
from array import array

import msgpack
import numpy as np

from fasttune.execution import _protocol as protocol


class _SlowScalar(np.float32):
    """A numpy scalar whose conversion waits, so another thread packs in the middle of it."""

    started = threading.Event()
    resume = threading.Event()

    def item(self):
        _SlowScalar.started.set()
        assert _SlowScalar.resume.wait(60)
        return float(self)


def test_two_threads_packing_at_once_each_get_their_own_bytes():
    # A worker's trial thread packs a result (numpy values call back into Python) while
    # a poll thread packs a reply: neither may see the other's bytes.
    out = {}

    def trial_thread():
        out["result"] = protocol.pack({"loss": _SlowScalar(0.25), "step": 3})

    thread = threading.Thread(target=trial_thread)
    thread.start()
    assert _SlowScalar.started.wait(60)  # the trial thread is inside its pack now
    one_time = array("d", [1.5]).tobytes()  # one report time per result, as a worker sends
    reply = protocol.reply_bytes([protocol.encode_results("t1", [protocol.pack({"x": 1})], one_time, {})])
    _SlowScalar.resume.set()
    thread.join(60)
    assert msgpack.unpackb(out["result"]) == {"loss": 0.25, "step": 3}
    assert protocol.decode_events(reply) == [protocol.Results("t1", [{"x": 1}], one_time, {})]


def test_every_record_travels_as_its_list_and_back():
    events = [protocol.Started("t", 1.5, 7, "host", "127.0.0.1"), protocol.Decide("t", 4, True),
              protocol.Yielded("t", 4), protocol.Ended("paused", "t"), protocol.Failed("t", "tb", None),
              protocol.CheckpointSaved("t", "checkpoint_000001"), protocol.Cloned("t", "checkpoint_000002")]
    reply = protocol.reply_bytes([protocol.encode_event(e) for e in events])
    assert protocol.decode_events(reply) == events
    commands = [protocol.LoadTrainable("fn", b"blob", b"", ["/x"]), protocol.StartTrial({"trial_id": "t"}),
                protocol.Answer("pause", "t", False), protocol.Answer("stop", "t"), protocol.ResetTrial("t", {"a": 1})]
    assert protocol.decode_commands(protocol.encode_commands(commands)) == commands
    # An answer sent without the checkpoint flag (as tests and older drivers do) keeps the default.
    assert protocol.decode_commands(msgpack.packb([["pause", "t"]])) == [protocol.Answer("pause", "t", True)]


def _spec(trial):
    return protocol.trial_spec(trial, "/tmp/exp", decide="never", yields=False, iteration=0, time_total=0.0,
                               ckpt_index=0, restore=None)


def test_a_spec_carries_its_trials_resources_and_bundles_each_factory_worked_out_once(monkeypatch):
    from fasttune._resources import PlacementGroupFactory
    from fasttune.experiment import Trial

    class CountingFactory(PlacementGroupFactory):  # a subclass: asked at every spec
        asked = 0

        @property
        def required_resources(self):
            CountingFactory.asked += 1
            return super().required_resources

    asked = []
    plain_resources = PlacementGroupFactory.required_resources
    monkeypatch.setattr(PlacementGroupFactory, "required_resources",
                        property(lambda self: asked.append(self) or plain_resources.fget(self)))
    one = PlacementGroupFactory([{"CPU": 1}])
    several = PlacementGroupFactory([{"CPU": 1}, {"CPU": 2, "GPU": 1}], strategy="SPREAD")
    counting = CountingFactory([{"CPU": 3}])
    for factory, resources, bundles in [(one, {"CPU": 1}, None),
                                        (several, {"CPU": 3, "GPU": 1}, [{"CPU": 1}, {"CPU": 2, "GPU": 1}]),
                                        (counting, {"CPU": 3}, None)]:
        trials = [Trial("t", config={"x": 1}, placement_group_factory=factory) for _ in range(3)]
        asked.clear()
        CountingFactory.asked = 0
        for trial in trials:
            spec = _spec(trial)
            assert (spec["resources"], spec["bundles"]) == (resources, bundles)
        if factory is counting:
            assert CountingFactory.asked == 3
        else:
            assert len(asked) == 1
