"""TrialRunner.checkpoint and TrialRunner.resume without Ray: what a snapshot holds and
what a resume makes of it."""
import datetime
import os
import time

import pytest

import fasttune as tune
from fasttune import _corelib as core
from fasttune.execution import _experiment_state as state
from fasttune.execution import _snapshots
from fasttune.execution import trial_runner as trial_runner_module
from fasttune.execution.trial_runner import TrialRunner
from fasttune.experiment.experiment import Experiment
from fasttune.schedulers import ASHAScheduler
from fasttune.search import BasicVariantGenerator

from fasttune_testing import StandIn
from runner_testing import StubExecutor


def _train(config):
    tune.report({"loss": config["x"]})


def _runner(path, scheduler=None, search_alg=None, num_samples=4, callbacks=None, **constants):
    space = dict({"x": tune.uniform(0, 1), "tag": (1, 2)}, **constants)
    experiment = Experiment(os.path.basename(path), _train, config=space,
                            num_samples=num_samples, storage_path=os.path.dirname(path))
    search_alg = search_alg or BasicVariantGenerator(random_state=3)
    search_alg.set_search_properties("loss", "min", experiment.spec["config"])
    search_alg.add_configurations([experiment])
    runner = TrialRunner(search_alg=search_alg, scheduler=scheduler, trial_executor=StubExecutor(),
                         experiment_path=path, metric="loss", mode="min", callbacks=callbacks)
    runner.setup_experiments([experiment], num_samples)
    return runner, experiment


def _finish(runner, trial, loss, iteration=1):
    trial.set_status("RUNNING")
    trial.last_result = {"loss": loss, "training_iteration": iteration, "trial_id": trial.trial_id}
    trial.results_seen = iteration
    trial.start_time = 1.0
    runner.table.record_result(trial._row, iteration, 0.5, loss)
    trial.set_status("TERMINATED")


def test_snapshot_then_resume_gives_back_trials_table_and_searcher_position(tmp_path):
    path = str(tmp_path / "exp")
    runner, _ = _runner(path)
    for _ in range(3):
        runner.add_trial(runner.search_alg.next_trial())
    first, second, third = runner.get_trials()
    _finish(runner, first, 0.25, iteration=2)
    second.set_status("RUNNING")
    second.start_time = 2.0
    runner.checkpoint(force=True)

    resumed, experiment = _runner(path)
    resumed.resume()
    trials = resumed.get_trials()
    assert [t.trial_id for t in trials] == [first.trial_id, second.trial_id, third.trial_id]
    assert [t.status for t in trials] == ["TERMINATED", "PENDING", "PENDING"]
    assert trials[0].config == first.config and trials[0].config["tag"] == (1, 2)  # tuples stay tuples
    assert trials[0].last_result == first.last_result and trials[0].iteration == 2
    assert resumed.table.get_best_metric(0) == 0.25
    # The searcher goes on with the 4th config, and the 4th trial gets the 4th id.
    fresh, _ = _runner(str(tmp_path / "uninterrupted"))
    expected = [fresh.search_alg.next_trial() for _ in range(4)][3]
    fourth = resumed.search_alg.next_trial()
    assert fourth.config["x"] == expected.config["x"]
    assert fourth.trial_id.split("_")[1] == "00003" and fourth.trial_id.split("_")[0] == first.trial_id.split("_")[0]


def test_config_objects_that_are_no_data_are_pickled_and_named_on_resume(tmp_path):
    path = str(tmp_path / "exp")
    runner, _ = _runner(path, when=datetime.date(2026, 12, 1))
    for _ in range(2):
        runner.add_trial(runner.search_alg.next_trial())
    runner.checkpoint(force=True)
    resumed, _ = _runner(path, when=datetime.date(2026, 12, 1))
    unpickled = resumed.resume()
    assert [t.config["when"] for t in resumed.get_trials()] == [datetime.date(2026, 12, 1)] * 2
    assert "2 date object(s) in trial records" in unpickled


def test_finished_trials_are_packed_once_and_spliced_into_later_snapshots(tmp_path, monkeypatch):
    path = str(tmp_path / "exp")
    runner, _ = _runner(path)
    for _ in range(3):
        runner.add_trial(runner.search_alg.next_trial())
    _finish(runner, runner.get_trials()[0], 0.5)
    packed = []
    original = state.trial_record
    monkeypatch.setattr(state, "trial_record", lambda trial, *a: packed.append(trial.trial_id) or original(trial, *a))
    runner.checkpoint(force=True)
    runner.checkpoint(force=True)
    finished = runner.get_trials()[0].trial_id
    assert packed.count(finished) == 1  # cached after the first snapshot
    assert packed.count(runner.get_trials()[1].trial_id) == 2  # live: packed each time
    loaded, _ = state.load_latest(path)
    assert [state.Loader().unpack(record)[0] for record in loaded["trials"]] == [t.trial_id for t in runner.get_trials()]


def test_auto_period_spaces_snapshots_by_twenty_times_their_cost(tmp_path, monkeypatch):
    path = str(tmp_path / "exp")
    runner, _ = _runner(path)
    monkeypatch.delenv("FASTTUNE_GLOBAL_CHECKPOINT_S", raising=False)
    clock = [1000.0]
    frozen = StandIn(time, monotonic=lambda: clock[0])  # the runner's and its snapshot writer's clock
    monkeypatch.setattr(trial_runner_module, "time", frozen)
    monkeypatch.setattr(_snapshots, "time", frozen)
    assert runner.checkpoint() is not None
    runner._snapshots.cost = 1.5  # as if that snapshot took 1.5 s: the next waits 30 s (5%)
    clock[0] += 29.0
    assert runner.checkpoint() is None
    clock[0] += 1.5
    assert runner.checkpoint() is not None
    runner._snapshots.cost = 0.001  # cheap snapshots still come at most every 2 s
    clock[0] += 1.0
    assert runner.checkpoint() is None
    clock[0] += 1.5
    assert runner.checkpoint() is not None
    monkeypatch.setenv("FASTTUNE_GLOBAL_CHECKPOINT_S", "100")  # read when a runner starts
    fixed, _ = _runner(path)
    assert fixed.checkpoint() is not None
    clock[0] += 50
    assert fixed.checkpoint() is None
    clock[0] += 50
    assert fixed.checkpoint() is not None


def test_scheduler_state_travels_in_the_snapshot(tmp_path):
    path = str(tmp_path / "exp")
    asha = ASHAScheduler(metric="loss", mode="min", max_t=9, grace_period=1, reduction_factor=3)
    runner, _ = _runner(path, scheduler=asha)
    for _ in range(2):
        runner.add_trial(runner.search_alg.next_trial())
    a, b = runner.get_trials()
    for trial in (a, b):
        trial.set_status("RUNNING")
    for trial, loss in ((a, 0.2), (b, 0.9)):
        # As the runner does: the trial's last result is set before the scheduler judges it
        # (a restored trial without one starts over, and ASHA forgets its values then).
        trial.last_result = {"training_iteration": 1, "loss": loss}
        asha.on_trial_result(runner, trial, trial.last_result)
    runner.checkpoint(force=True)

    fresh = ASHAScheduler(metric="loss", mode="min", max_t=9, grace_period=1, reduction_factor=3)
    resumed, _ = _runner(path, scheduler=fresh)
    unpickled = resumed.resume()
    # ASHA's state is data: it came back through msgpack, nothing unpickled.
    assert not any("scheduler" in item for item in unpickled)
    # The restored rung holds both results: a third trial at 0.5 is judged against them.
    assert fresh._brackets[0].rungs[-1].recorded == asha._brackets[0].rungs[-1].recorded


def test_update_pending_trial_resources_changes_only_pending_trials(tmp_path):
    path = str(tmp_path / "exp")
    runner, _ = _runner(path)
    for _ in range(2):
        runner.add_trial(runner.search_alg.next_trial())
    done, waiting = runner.get_trials()
    _finish(runner, done, 0.1)
    runner.update_pending_trial_resources({"cpu": 2})
    assert waiting.resources == {"CPU": 2.0}
    assert done.resources == {"CPU": 1.0}
    assert runner.trial_executor.feasibility_checks[-1] == {"CPU": 2.0}


def test_resume_into_a_runner_that_already_has_trials_is_refused(tmp_path):
    path = str(tmp_path / "exp")
    runner, _ = _runner(path)
    runner.checkpoint(force=True)
    runner.add_trial(runner.search_alg.next_trial())
    with pytest.raises(tune.TuneError, match="before any trial is added"):
        runner.resume()


def test_resume_from_a_snapshot_with_an_inconsistent_table_is_refused(tmp_path):
    path = str(tmp_path / "exp")
    runner, _ = _runner(path)
    runner.add_trial(runner.search_alg.next_trial())
    runner.checkpoint(force=True)
    loaded, _ = state.load_latest(path)
    table = core.TrialTable()
    records = [state.pack(r) for r in loaded["trials"]]
    loaded.pop("trials")
    loaded["table"] = table.snapshot()  # zero rows for one trial
    state.write_snapshot(path, loaded, records, 99)
    resumed, _ = _runner(path)
    with pytest.raises(tune.TuneError, match="inconsistent: its table has 0 rows for 1 trials"):
        resumed.resume()


def test_a_new_run_under_an_old_name_writes_the_newest_snapshot(tmp_path):
    path = str(tmp_path / "exp")
    old, _ = _runner(path)
    for _ in range(3):
        old.checkpoint(force=True)
    new, _ = _runner(path)
    new.add_trial(new.search_alg.next_trial())
    new.checkpoint(force=True)
    loaded, found = state.load_latest(path)
    assert [state.Loader().unpack(record)[0] for record in loaded["trials"]] == [new.get_trials()[0].trial_id]
    assert found.endswith("experiment_state-0000000004.msgpack")


def test_snapshots_rotate_to_the_newest_two_listing_the_directory_once_per_run(tmp_path, monkeypatch):
    path = str(tmp_path / "exp")
    old, _ = _runner(path)
    for _ in range(3):
        old.checkpoint(force=True)
    listings = []
    original = state.snapshot_paths
    monkeypatch.setattr(state, "snapshot_paths", lambda where: listings.append(where) or original(where))
    new, _ = _runner(path)
    new.add_trial(new.search_alg.next_trial())
    for _ in range(4):  # the old run's newest two go as this run's first ones take their place
        new.checkpoint(force=True)
    names = sorted(os.listdir(path))
    assert [name for name in names if name.startswith("experiment_state-")] == [
        "experiment_state-0000000006.msgpack", "experiment_state-0000000007.msgpack"]
    # (one to find the old run's newest, one to rotate at the first snapshot, one to see what that left)
    assert len(listings) == 3


def test_a_snapshot_whose_removal_failed_is_removed_at_the_next_rotation(tmp_path, monkeypatch):
    path = str(tmp_path / "exp")
    runner, _ = _runner(path)
    for _ in range(2):
        runner.checkpoint(force=True)
    original, failures = state.remove_snapshot, []

    def failing_once(where):
        if not failures:
            failures.append(where)
            raise PermissionError(where)
        original(where)

    monkeypatch.setattr(state, "remove_snapshot", failing_once)
    with pytest.raises(PermissionError):
        runner.checkpoint(force=True)
    runner.checkpoint(force=True)
    names = [name for name in sorted(os.listdir(path)) if name.startswith("experiment_state-")]
    assert failures and names == ["experiment_state-0000000003.msgpack", "experiment_state-0000000004.msgpack"]


def test_trial_directories_the_snapshot_does_not_hold_are_set_aside_not_mixed_in(tmp_path):
    path = str(tmp_path / "exp")
    runner, _ = _runner(path)
    runner.add_trial(runner.search_alg.next_trial())
    known = runner.get_trials()[0]
    os.makedirs(known.path)
    runner.checkpoint(force=True)
    # A trial the killed run made after its last snapshot, with a result it reported.
    later = tmp_path / "exp" / "_train_made_later"
    later.mkdir()
    (later / "params.json").write_text('{"x": 0.5}')
    (later / "result.json").write_text('{"loss": 0.5}\n')
    (tmp_path / "exp" / "notes").mkdir()  # not a trial directory: left alone

    resumed, _ = _runner(path)
    resumed.resume()
    aside = tmp_path / "exp" / "not-in-snapshot-0000000001" / "_train_made_later"
    assert (aside / "result.json").read_text() == '{"loss": 0.5}\n'
    assert not later.exists() and os.path.isdir(known.path) and (tmp_path / "exp" / "notes").is_dir()
    # The set-aside trial is not one of the experiment's; the snapshot's (never started) is.
    assert [(r.path, r.metrics) for r in tune.ResultGrid.from_path(path)] == [(known.path, {})]


def test_a_trial_the_killed_run_went_on_with_after_the_snapshot_starts_clean(tmp_path):
    path = str(tmp_path / "exp")
    runner, _ = _runner(path)
    runner.add_trial(runner.search_alg.next_trial())
    trial = runner.get_trials()[0]
    runner.checkpoint(force=True)  # the trial is PENDING, never started, in this snapshot
    # ... then the killed run started it: results and a checkpoint the snapshot never saw.
    os.makedirs(os.path.join(trial.path, "checkpoint_000000"))
    with open(os.path.join(trial.path, "result.json"), "w") as f:
        f.write('{"loss": 0.1, "training_iteration": 1}\n')

    resumed, _ = _runner(path)
    resumed.resume()
    assert not os.path.exists(os.path.join(trial.path, "checkpoint_000000"))  # pruned before any worker
    again = resumed.get_trials()[0]
    resumed._start_trial(again)
    resumed._files.flush()
    with open(os.path.join(trial.path, "result.json")) as f:
        assert f.read() == ""  # the restored run's results will be the only ones
    assert resumed.trial_executor.started["iteration"] == 0 and resumed.trial_executor.started["restore"] is None


def test_a_restored_experiment_snapshots_and_restores_again_with_finished_trials_untouched(tmp_path):
    path = str(tmp_path / "exp")
    runner, _ = _runner(path)
    for _ in range(3):
        runner.add_trial(runner.search_alg.next_trial())
    for i, trial in enumerate(runner.get_trials()[:2]):
        _finish(runner, trial, 0.1 * (i + 1), iteration=i + 1)
    runner.checkpoint(force=True)

    second, _ = _runner(path)
    second.resume()
    finished = second.get_trials()[0]
    assert "config" not in finished.__dict__  # not decoded: nothing has used it yet
    second.checkpoint(force=True)  # splices the undecoded records back in
    assert "config" not in finished.__dict__
    third, _ = _runner(path)
    third.resume()
    trials = third.get_trials()
    assert [t.last_result.get("loss") for t in trials] == [0.1, 0.2, None]
    assert [t.config["x"] for t in trials] == [t.config["x"] for t in runner.get_trials()]
    assert [t.status for t in trials] == ["TERMINATED", "TERMINATED", "PENDING"]
    with pytest.raises(AttributeError, match="no attribute 'no_such_thing'"):
        trials[0].no_such_thing


class _UnpicklableScheduler(tune.schedulers.FIFOScheduler):
    def save(self, checkpoint_path):
        raise ValueError("this one does not pickle")


def test_a_policy_that_cannot_save_leaves_the_snapshot_going_with_one_warning(tmp_path, caplog):
    path = str(tmp_path / "exp")
    runner, _ = _runner(path, scheduler=_UnpicklableScheduler())
    runner.add_trial(runner.search_alg.next_trial())
    with caplog.at_level("WARNING"):
        assert runner.checkpoint(force=True) is not None
        assert runner.checkpoint(force=True) is not None
    assert caplog.text.count("cannot save its state (ValueError: this one does not pickle)") == 1
    loaded, _ = state.load_latest(path)
    assert loaded["scheduler"] is None and len(loaded["trials"]) == 1


def test_a_trial_with_a_pending_reset_the_killed_run_went_on_with_after_the_snapshot_is_cut_back(tmp_path):
    """A PAUSED trial with PBT's exploit pending is in the snapshot with 2 results; the
    killed run then resumed it and wrote a third.  The restored run carries the reset out
    and keeps only the 2 the snapshot counts."""
    path = str(tmp_path / "exp")
    runner, _ = _runner(path)
    runner.add_trial(runner.search_alg.next_trial())
    trial = runner.get_trials()[0]
    runner._start_trial(trial)  # its params.json
    trial.set_status("RUNNING")
    rows = ['{"loss": 0.5, "training_iteration": %d}\n' % i for i in (1, 2, 3)]
    runner._files.flush()
    with open(os.path.join(trial.path, "result.json"), "w") as f:
        f.write(rows[0] + rows[1])
    trial.results_seen = 2
    runner.table.record_result(trial._row, 2, 1.0, 0.5)
    runner._release(trial)
    trial.set_status("PAUSED")
    runner.reset_trial(trial, dict(trial.config, x=0.25), "exploited")
    runner.checkpoint(force=True)
    with open(os.path.join(trial.path, "result.json"), "a") as f:
        f.write(rows[2])  # after the snapshot

    resumed, _ = _runner(path)
    resumed.resume()
    again = resumed.get_trials()[0]
    resumed._start_trial(again)
    resumed._files.flush()
    assert again.config["x"] == 0.25  # the reset was carried out
    with open(os.path.join(trial.path, "result.json")) as f:
        assert f.read() == rows[0] + rows[1]


def _two_trials_with_an_exploit_pending(path):
    """Trial B (PAUSED, two results) waits to copy donor A's checkpoint_000000, which A no
    longer lists (retention dropped it; only B's pending copy keeps it); then a snapshot."""
    runner, _ = _runner(path)
    for _ in range(2):
        runner.add_trial(runner.search_alg.next_trial())
    donor, target = runner.get_trials()
    source = os.path.join(donor.path, "checkpoint_000000")
    os.makedirs(source)
    for trial in (donor, target):
        runner._start_trial(trial)
        trial.set_status("RUNNING")
        runner._release(trial)
    target.set_status("PAUSED")
    runner.reset_trial(target, dict(target.config, x=0.75), "exploited", checkpoint=tune.Checkpoint(source),
                       checkpoint_result={"training_iteration": 1, "time_total_s": 1.0})
    runner.checkpoint(force=True)
    return source


def test_a_restore_keeps_the_checkpoint_a_pending_exploit_copies_until_the_copy_is_done(tmp_path):
    path = str(tmp_path / "exp")
    source = _two_trials_with_an_exploit_pending(path)
    resumed, _ = _runner(path)
    resumed.resume()
    resumed._files.flush()
    assert os.path.isdir(source)  # the donor's restore pruned what it does not list, but not this
    target = resumed.get_trials()[1]
    resumed._start_trial(target)
    assert resumed.trial_executor.started["clone_from"] == source and target.config["x"] == 0.75
    resumed._checkpoints.unpin(source)  # the copy is confirmed
    resumed._files.flush()
    assert not os.path.exists(source)  # nothing lists it: it goes now


def test_a_trial_restored_to_start_over_drops_its_pending_exploit(tmp_path):
    from fasttune.tune_config import ResumeConfig

    path = str(tmp_path / "exp")
    source = _two_trials_with_an_exploit_pending(path)
    resumed, _ = _runner(path)
    resumed.resume(resume_config=ResumeConfig(unfinished=ResumeConfig.ResumeType.RESTART))
    resumed._files.flush()
    target = resumed.get_trials()[1]
    resumed._start_trial(target)
    started = resumed.trial_executor.started
    assert started.get("clone_from") is None and started["restore"] is None and started["iteration"] == 0
    assert target.config["x"] != 0.75
    assert not os.path.exists(source)  # no copy will be made, and its donor does not list it


def test_an_object_in_a_pending_exploits_config_is_named_among_what_the_restore_unpickled(tmp_path):
    path = str(tmp_path / "exp")
    runner, _ = _runner(path)
    runner.add_trial(runner.search_alg.next_trial())
    trial = runner.get_trials()[0]
    runner._start_trial(trial)
    trial.set_status("RUNNING")
    runner._release(trial)
    trial.set_status("PAUSED")
    runner.reset_trial(trial, dict(trial.config, when=datetime.date(2026, 12, 6)), "exploited")
    runner.checkpoint(force=True)
    resumed, _ = _runner(path)
    unpickled = resumed.resume()
    assert "1 date object(s) in the snapshot's state" in unpickled
    again = resumed.get_trials()[0]
    resumed._start_trial(again)
    assert again.config["when"] == datetime.date(2026, 12, 6)


class _Completions(tune.Callback):
    def __init__(self):
        self.completed = []

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.completed.append(trial.trial_id)


def _two_trials_with_decisions_in_flight(path):
    """Trials A and B RUNNING at the snapshot with two results each: A's STOP and B's
    PAUSE, decided at iteration 2, had not reached their workers."""
    runner, _ = _runner(path)
    for _ in range(2):
        runner.add_trial(runner.search_alg.next_trial())
    for trial in runner.get_trials():
        runner._start_trial(trial)
        trial.set_status("RUNNING")
        runner._files.flush()
        with open(os.path.join(trial.path, "result.json"), "w") as f:
            f.write('{"loss": 0.5, "training_iteration": 1}\n{"loss": 0.5, "training_iteration": 2}\n')
        trial.last_result = {"loss": 0.5, "training_iteration": 2, "trial_id": trial.trial_id}
        trial.results_seen = 2
        runner.table.record_result(trial._row, 2, 1.0, 0.5)
    stopped, paused = runner.get_trials()
    runner._states[stopped.trial_id].decision_in_flight = ("STOP", 2)
    runner._states[paused.trial_id].decision_in_flight = ("PAUSE", 2)
    runner.checkpoint(force=True)
    assert state.load_latest(path)[0]["pending_decisions"] == {stopped.trial_id: ["STOP", 2],
                                                                paused.trial_id: ["PAUSE", 2]}
    return stopped.trial_id, paused.trial_id


@pytest.mark.parametrize("resume_config,statuses", [
    ({}, ("TERMINATED", "PAUSED")),
    ({"finished": "restart"}, ("PENDING", "PAUSED")),  # a stop on its way counts as finished
    ({"finished": "resume"}, ("PENDING", "PAUSED")),
    ({"unfinished": "restart"}, ("TERMINATED", "PENDING")),
    ({"unfinished": "skip"}, ("TERMINATED", "TERMINATED")),
])
def test_a_restore_carries_out_the_stop_or_pause_that_had_not_reached_the_worker(tmp_path, resume_config, statuses):
    from fasttune.tune_config import ResumeConfig

    path = str(tmp_path / "exp")
    stopped_id, paused_id = _two_trials_with_decisions_in_flight(path)
    completions = _Completions()
    resumed, _ = _runner(path, callbacks=[completions])
    resumed.resume(resume_config=ResumeConfig(**resume_config))
    stopped, paused = resumed.get_trials()
    assert (stopped.status, paused.status) == statuses
    if stopped.status == "TERMINATED":
        assert stopped.last_result["done"] and stopped.last_result["training_iteration"] == 2
    # The stop is heard as the interrupted run would have heard it (its callbacks' state is
    # from before); other restored ends were heard before the snapshot.
    assert completions.completed == ([stopped_id] if not resume_config or "unfinished" in resume_config else [])
    assert resumed._restart_first == [t for t in (stopped, paused) if t.status == "PENDING"]
    resumed.checkpoint(force=True)
    assert {t.trial_id: t.status for t in state.read_trials(path)} == dict(zip((stopped_id, paused_id), statuses))


def test_a_trial_stopped_on_restore_drops_its_pending_exploit(tmp_path):
    path = str(tmp_path / "exp")
    source = _two_trials_with_an_exploit_pending(path)
    runner_state, found = state.load_latest(path, state.Loader())
    target_id = next(iter(runner_state["pending_resets"]))
    runner_state["pending_decisions"] = {target_id: ["STOP", 1]}
    records = runner_state.pop("trials")
    table = core.TrialTable.from_snapshot(runner_state["table"])
    table.set_status(1, core.RUNNING)  # its pause for the exploit was still on its way, and then a STOP
    runner_state["table"] = table.snapshot()
    state.write_snapshot(path, runner_state, [state.as_bin(r) for r in records], state.snapshot_seq(os.path.basename(found)) + 1)

    resumed, _ = _runner(path)
    resumed.resume()
    resumed._files.flush()
    target = resumed.get_trials()[1]
    assert target.status == "TERMINATED" and target.config["x"] != 0.75
    assert not os.path.exists(source)  # no copy will be made, and its donor does not list it
