"""What the snapshot writer keeps from one finished trial to the next (issue 20's driver
CPU per trial): a record source's settings, the packed resources of the last factory,
and one msgpack packer.  Each must answer for the trial at hand, never for the one
before it; without Ray."""
import copy
import datetime
import os

import fasttune as tune
from fasttune._serialization import DataOnlyLoader, PickleNotingPacker, pack_noting_pickles
from fasttune.execution import _experiment_state as state
from fasttune.execution.placement_groups import PlacementGroupFactory

from runner_testing import random_search_runner


def _train(config):
    tune.report({"loss": config["x"]})


def _runner(path, num_samples):
    return random_search_runner(path, _train, {"x": tune.uniform(0, 1)}, num_samples, random_state=5)


def _close(runner, trial, loss=0.25):
    """End ``trial`` with one result and let the writer pack it, as the runner does."""
    trial.set_status("RUNNING")
    trial.start_time = 1.5
    trial.last_result = {"loss": loss, "training_iteration": 1, "trial_id": trial.trial_id, "done": True,
                         "config": trial.config}
    trial.results_seen = 1
    runner.table.record_result(trial._row, 1, 0.5, loss)
    trial.end_time = 9.25
    trial.set_status("TERMINATED")
    runner._snapshots.trial_finished(trial, runner._states, runner._checkpoints.rows, runner.table)


def _decoded(runner, trial):
    """The trial as its packed record alone gives it back (what a restore reads)."""
    writer = runner._snapshots
    record = writer.records[trial._row]
    return state.decode_trial(state.unbin(record), trial._row, writer.dirnames[trial._row], runner.table,
                              writer.keysets, writer.experiment_path, {}, DataOnlyLoader())[0]


def test_a_trial_whose_settings_differ_from_a_source_is_not_compacted_with_it(tmp_path):
    runner = _runner(str(tmp_path / "exp"), num_samples=4)
    first, retried_more, stopped_sooner, alike = runner.get_trials()
    _close(runner, first)
    retried_more.max_failures = 7  # an experiment setting that differs from the first trial's
    stopped_sooner.stopping_criterion = {"training_iteration": 1}
    # Equal, not the same object: the same settings.
    alike.checkpoint_config = copy.deepcopy(alike.checkpoint_config)
    alike.stopping_criterion = dict(alike.stopping_criterion)
    for trial in (retried_more, stopped_sooner, alike):
        _close(runner, trial)
    sources = runner._snapshots.sources
    assert all(t._is_compact() for t in runner.get_trials())
    assert len(sources) == 3
    assert alike.__dict__["_source"] is first.__dict__["_source"] is sources[0]
    assert retried_more.__dict__["_source"] is sources[1] and stopped_sooner.__dict__["_source"] is sources[2]
    # Read back from their sources, each trial answers with its own settings.
    assert [t.max_failures for t in runner.get_trials()] == [2, 7, 2, 2]
    assert [t.stopping_criterion for t in runner.get_trials()] == [
        {"training_iteration": 5}, {"training_iteration": 5}, {"training_iteration": 1}, {"training_iteration": 5}]


def test_a_source_answers_by_the_settings_a_trial_holds_now_not_those_it_held_when_last_asked(tmp_path):
    runner = _runner(str(tmp_path / "exp"), num_samples=2)
    first, second = runner.get_trials()
    _close(runner, first)
    source = runner._snapshots.sources[0]
    assert source.holds_settings_of(second)
    second.trainable_name = "another"
    assert not source.holds_settings_of(second)
    second.trainable_name = first.trainable_name
    del second.__dict__["max_failures"]  # a setting the trial lacks is no match either
    assert not source.holds_settings_of(second)


def test_each_record_packs_its_own_trials_resources(tmp_path):
    runner = _runner(str(tmp_path / "exp"), num_samples=4)
    shared, own, also_shared, alike = runner.get_trials()
    factory = shared.placement_group_factory
    assert also_shared.placement_group_factory is factory  # the sweep's one factory
    own.placement_group_factory = PlacementGroupFactory([{"CPU": 2, "GPU": 1}], strategy="SPREAD")
    alike.placement_group_factory = PlacementGroupFactory([{"CPU": 1}])  # equal, another object
    for trial in runner.get_trials():
        _close(runner, trial)
    packed = [(_decoded(runner, t).placement_group_factory.bundles, _decoded(runner, t).placement_group_factory.strategy)
              for t in runner.get_trials()]
    assert packed == [(factory.bundles, "PACK"), ([{"CPU": 2.0, "GPU": 1.0}], "SPREAD"), (factory.bundles, "PACK"),
                      ([{"CPU": 1.0}], "PACK")]


def test_a_factory_subclass_is_asked_for_its_bundles_at_each_record(tmp_path):
    class Growing(PlacementGroupFactory):
        calls = 0

        @property
        def bundles(self):
            Growing.calls += 1
            return [{"CPU": float(Growing.calls)}]

    runner = _runner(str(tmp_path / "exp"), num_samples=2)
    growing = Growing([{"CPU": 1}])
    for trial in runner.get_trials():
        trial.placement_group_factory = growing
        _close(runner, trial)
    assert [_decoded(runner, t).placement_group_factory.bundles for t in runner.get_trials()] == [
        [{"CPU": 1.0}], [{"CPU": 2.0}]]


class _Unpicklable:
    def __reduce__(self):
        raise RuntimeError("cannot be pickled")


def test_one_record_packer_packs_each_value_as_pack_noting_pickles_does():
    packer = PickleNotingPacker()
    with_objects = ["a", {"when": datetime.date(2026, 1, 2), "pair": (1, 2), "set": {3}}]
    first = packer.pack(with_objects)
    assert first == pack_noting_pickles(with_objects) and first[1] == ["date"]
    try:
        packer.pack(["half", "packed", _Unpicklable()])
    except RuntimeError:
        pass
    else:
        raise AssertionError("the unpicklable object was packed")
    plain = ["b", {"x": 0.5}, None]
    assert packer.pack(plain) == pack_noting_pickles(plain) == (pack_noting_pickles(plain)[0], [])
    assert first[1] == ["date"]  # each record's list of pickled names is its own


def test_closing_a_trial_drops_each_kind_of_reset_it_had_not_taken(tmp_path):
    """_close_trial only asks the resets to drop what a trial holds: each kind of pending
    reset still unpins the donor checkpoint it would have copied."""
    from fasttune.execution._trial_state import PendingReset

    runner = _runner(str(tmp_path / "exp"), num_samples=4)
    kinds = ("reset_at_decision", "reset_on_start", "cloning")
    pins = runner._checkpoints._pins
    for kind, trial in zip(kinds, runner.get_trials()):
        source = os.path.join(str(tmp_path / "exp"), f"donor_{kind}", "checkpoint_000000")
        runner._checkpoints.pin(source)
        setattr(runner._states[trial.trial_id], kind, PendingReset({"x": 0.5}, "tag", source, {}, True))
    states = [runner._states[t.trial_id] for t in runner.get_trials()]
    assert len(pins) == 3
    for trial in runner.get_trials():  # the last holds no reset
        trial.set_status("TERMINATED")
        runner._close_trial(trial)
    assert pins == {}
    assert all(getattr(state, kind) is None for state in states for kind in kinds)


def test_the_record_packer_lets_go_of_the_memory_of_a_big_record():
    import tracemalloc

    packer = PickleNotingPacker()
    tracemalloc.start()  # msgpack's buffer comes from PyMem, which it traces
    try:
        before = tracemalloc.get_traced_memory()[0]
        packed, _ = packer.pack(["trial", b"x" * (8 << 20)])
        assert len(packed) > 8 << 20
        del packed
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 1 << 20, f"the packer still holds {held} bytes after an 8 MiB record"
    assert packer.pack(["b", {"x": 0.5}]) == pack_noting_pickles(["b", {"x": 0.5}])
