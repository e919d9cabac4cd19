"""A finished trial keeps only its id, table row and packed snapshot record (issue 20):
every public attribute still reads as before, without Ray."""
import copy
import datetime
import os
import pickle
import sys

import fasttune as tune
from fasttune.checkpoint import Checkpoint
from fasttune.execution import _experiment_state as state
from fasttune.search import BasicVariantGenerator

from runner_testing import random_search_runner


def _train(config):
    tune.report({"loss": config["x"]})


def _runner(path, num_samples=3, add=True, **constants):
    space = dict({"x": tune.uniform(0, 1), "tag": (1, 2)}, **constants)
    return random_search_runner(path, _train, space, num_samples, random_state=3, add=add)


def _finish(runner, trial, loss, status="TERMINATED", checkpoint=False):
    trial.set_status("RUNNING")
    trial.start_time = 1.5
    trial.last_result = {"loss": loss, "training_iteration": 2, "trial_id": trial.trial_id, "done": True,
                         "hostname": "h", "config": trial.config}
    trial.results_seen = 2
    runner.table.record_result(trial._row, 2, 0.5, loss)
    if checkpoint:
        saved = Checkpoint._at(os.path.join(trial.path, "checkpoint_000000"))
        trial.checkpoints = [saved]
        trial.checkpoint_results = [(saved, trial.last_result)]
    trial.end_time = 9.25
    trial.set_status(status)


PUBLIC = ("trial_id", "config", "evaluated_params", "experiment_tag", "last_result", "status", "iteration",
          "num_failures", "start_time", "end_time", "results_seen", "error_msg", "error_file", "trainable_name",
          "experiment_path", "experiment_dir_name", "max_failures", "stopping_criterion", "path", "local_path",
          "storage_dirname", "custom_trial_name", "checkpoint", "checkpoints", "checkpoint_results",
          "has_reported_at_least_once", "node_ip", "resources", "checkpoint_config")


def _public(trial):
    values = {name: getattr(trial, name) for name in PUBLIC}
    values["checkpoints"] = [c.path for c in values["checkpoints"]]
    values["checkpoint"] = values["checkpoint"] and values["checkpoint"].path
    values["checkpoint_results"] = [(c.path, r) for c, r in values["checkpoint_results"]]
    values["bundles"] = trial.placement_group_factory.bundles
    values["str"] = str(trial)
    return values


def test_a_finished_trial_is_compact_after_a_snapshot_and_answers_every_public_attribute_as_before(tmp_path):
    runner = _runner(str(tmp_path / "exp"))
    finished, failed, running = runner.get_trials()
    _finish(runner, finished, 0.25, checkpoint=True)
    _finish(runner, failed, 0.5, status="ERROR")
    failed.error_msg, failed.error = "boom", RuntimeError("boom")
    running.set_status("RUNNING")
    before = [_public(t) for t in runner.get_trials()]
    error = failed.error

    runner.checkpoint(force=True)

    assert finished._is_compact() and failed._is_compact() and not running._is_compact()
    assert sys.getsizeof(finished.__dict__) < 400  # its id, row, directory name, record and source
    # The experiment's settings come without decoding the record.
    # (The name the registry gave _train: "_train_2" and on when another test used the name.)
    assert finished.trainable_name == before[0]["trainable_name"] and finished.max_failures == 2
    assert finished.trainable_name.startswith("_train")
    assert finished.experiment_path == str(tmp_path / "exp") and finished._is_compact()
    assert [_public(t) for t in runner.get_trials()] == before
    assert not finished._is_compact()
    assert failed.error is error  # the exception itself, not one made from its text
    assert finished.stopping_criterion is not failed.stopping_criterion  # each its own, as before


def test_a_compact_trial_reads_its_row_from_the_shared_table_and_holds_five_entries(tmp_path):
    runner = _runner(str(tmp_path / "exp"), num_samples=2)
    finished, other = runner.get_trials()
    _finish(runner, finished, 0.25)
    runner.checkpoint(force=True)
    assert sorted(finished.__dict__) == ["_dirname", "_record", "_row", "_source", "trial_id"]
    assert sys.getsizeof(finished.__dict__) == sys.getsizeof(dict.fromkeys("abcde"))  # not the next size up
    assert (finished.status, finished.iteration, finished.num_failures) == ("TERMINATED", 2, 0)
    assert finished._table is runner.table is other._table and finished._is_compact()  # not decoded
    finished.set_status("PENDING")  # a change after the end goes to the table as before
    assert runner.table.get_status(finished._row) == runner.table.get_status(other._row)
    assert finished.status == "PENDING" and finished._is_compact()


def test_what_is_set_on_a_compact_trial_stays_set_when_it_is_decoded(tmp_path):
    runner = _runner(str(tmp_path / "exp"), num_samples=1)
    trial = runner.get_trials()[0]
    _finish(runner, trial, 0.25)
    runner.checkpoint(force=True)
    assert trial._is_compact()
    trial.last_result = {"loss": 0.125}
    trial.set_experiment_tag("renamed")
    assert trial.config["tag"] == (1, 2)  # decoded now
    assert trial.last_result == {"loss": 0.125} and trial.experiment_tag == "renamed"


def test_a_compact_trial_copies_and_pickles_whole(tmp_path):
    runner = _runner(str(tmp_path / "exp"), num_samples=1)
    trial = runner.get_trials()[0]
    _finish(runner, trial, 0.25)
    runner.checkpoint(force=True)
    assert copy.copy(trial).config["tag"] == (1, 2)
    trial_dict = pickle.loads(pickle.dumps(trial)).__dict__
    assert "_source" not in trial_dict and trial_dict["last_result"]["loss"] == 0.25
    # What the pickle names is Trial (the class that decodes compact ones is a private detail).
    for made in (pickle.loads(pickle.dumps(trial)), copy.copy(trial), copy.deepcopy(trial)):
        assert type(made) is tune.experiment.Trial and made.last_result["loss"] == 0.25
    assert b"_CompactTrial" not in pickle.dumps(trial)


def test_a_trial_whose_record_holds_pickled_objects_stays_whole(tmp_path):
    when = datetime.date(2026, 12, 1)
    runner = _runner(str(tmp_path / "exp"), num_samples=1, when=when)
    trial = runner.get_trials()[0]
    _finish(runner, trial, 0.25)
    held = trial.config["when"]
    runner.checkpoint(force=True)
    assert not trial._is_compact() and trial.config["when"] is held == when


def test_snapshots_after_compaction_hold_the_same_records_and_restore(tmp_path):
    path = str(tmp_path / "exp")
    runner = _runner(path)
    for i, trial in enumerate(runner.get_trials()):
        _finish(runner, trial, 0.5 - i / 10)
    first = open(runner.checkpoint(force=True), "rb").read()
    assert all(t._is_compact() for t in runner.get_trials())
    runner._snapshots.forget_record(1)  # packed again from the compact trial: the same bytes
    second = open(runner.checkpoint(force=True), "rb").read()
    strip = len(first) - len(first.split(b"trials", 1)[1])
    assert first[strip:] == second[strip:]  # the trial records, byte for byte
    before = [_public(t) for t in runner.get_trials()]

    resumed = _runner(path, add=False)
    resumed.resume()
    trials = resumed.get_trials()
    assert all(t._is_compact() for t in trials)  # restored finished trials are compact too
    assert [_public(t) for t in trials] == before


def test_a_whole_copy_of_a_compact_trial_leaves_it_compact(tmp_path):
    runner = _runner(str(tmp_path / "exp"), num_samples=1)
    trial = runner.get_trials()[0]
    _finish(runner, trial, 0.25, checkpoint=True)
    before = _public(trial)
    runner.checkpoint(force=True)
    whole = trial._whole()
    assert trial._is_compact() and not whole._is_compact()
    assert _public(whole) == before and whole._whole() is whole


def test_a_trial_packed_as_it_finishes_is_compact_and_the_next_snapshot_splices_its_record(tmp_path, monkeypatch):
    runner = _runner(str(tmp_path / "exp"), num_samples=2)
    done, held = runner.get_trials()
    for trial in (done, held):
        _finish(runner, trial, 0.25)
    runner.table.set_worker_slot(held._row, 0)  # a worker still holds it: left to the snapshot
    for trial in (done, held):
        runner._snapshots.trial_finished(trial, runner._states, runner._checkpoints.rows, runner.table)
    assert done._is_compact() and not held._is_compact()
    assert done.trial_id not in runner._states  # nothing in it a fresh record would not have
    packed = []
    original = state.trial_record
    monkeypatch.setattr(state, "trial_record", lambda trial, *a: packed.append(trial.trial_id) or original(trial, *a))
    runner.checkpoint(force=True)
    assert packed == [held.trial_id]
    assert [state.Loader().unpack(r)[0] for r in state.load_latest(str(tmp_path / "exp"))[0]["trials"]] == [
        done.trial_id, held.trial_id]


def _simulated_sweep(blackbox, num_samples, tmp_path, name, callback):
    """A random search of ``blackbox`` in simulated time (no Ray, no checkpoints)."""
    from fasttune.simulation import Simulation

    return tune.Tuner(
        Simulation(blackbox, num_workers=2, checkpoint_at=None), param_space=blackbox.search_space,
        tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=num_samples,
                                    search_alg=BasicVariantGenerator(random_state=0)),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name=name, verbose=0, callbacks=[callback])).fit()


def test_the_runner_makes_each_trial_compact_as_it_closes_it(tmp_path, monkeypatch):
    """A simulated sweep (no Ray) with no snapshot between its first and its last: every
    trial that ended in an earlier step is compact already, which only the runner's call
    as it closes the trial does."""
    from fasttune.simulation import learning_curve_table

    monkeypatch.setenv("FASTTUNE_GLOBAL_CHECKPOINT_S", "1000000")
    table = learning_curve_table(40, seed=0, n_epochs=3)

    class FinishedAreCompact(tune.Callback):
        def __init__(self):
            self.ended_before, self.seen, self.whole = set(), 0, []

        def on_step_end(self, iteration, trials, **info):
            for trial in trials:
                if trial.trial_id in self.ended_before:
                    self.seen += 1
                    if not trial._is_compact():
                        self.whole.append(trial.trial_id)
            self.ended_before = {trial.trial_id for trial in trials if trial.status == "TERMINATED"}

    watch = FinishedAreCompact()
    grid = _simulated_sweep(table, 20, tmp_path, "compact", watch)
    assert len(grid) == 20 and not grid.errors
    assert watch.seen > 20 and watch.whole == []
    assert sorted(r.metrics["training_iteration"] for r in grid) == [3] * 20  # read whole at the end


def test_a_failed_trial_is_compact_once_everything_that_hears_of_the_failure_has(tmp_path, monkeypatch):
    """ERROR trials too, after the scheduler, searcher and callbacks heard of the failure
    (which may still change the trial): none of them sees it compact, and it is after."""
    from fasttune.search import uniform
    from fasttune.simulation import FunctionBlackbox

    monkeypatch.setenv("FASTTUNE_GLOBAL_CHECKPOINT_S", "1000000")

    def answer(config, epoch):
        if config["x"] > 0.5:
            raise ValueError("no curve there")
        return {"loss": config["x"] / epoch}, 1.0

    blackbox = FunctionBlackbox(answer, {"x": uniform(0, 1)}, fidelities=[1, 2], metric_names=["loss"])

    class Watch(tune.Callback):
        def __init__(self):
            self.compact_when_told, self.failed, self.whole_after = [], set(), []

        def on_trial_error(self, iteration, trials, trial, **info):
            self.compact_when_told.append(trial._is_compact())
            self.failed.add(trial.trial_id)

        def on_step_end(self, iteration, trials, **info):
            self.whole_after += [t.trial_id for t in trials if t.trial_id in self.failed and not t._is_compact()]

    watch = Watch()
    grid = _simulated_sweep(blackbox, 16, tmp_path, "failed", watch)
    assert len(grid.errors) == len(watch.failed) >= 4
    assert watch.compact_when_told == [False] * len(watch.failed) and watch.whole_after == []
    assert all("no curve there" in str(r.error) for r in grid if r.error is not None)
