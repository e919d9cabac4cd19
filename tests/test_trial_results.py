"""fit()'s ResultGrid makes each Result from its trial when read (issue 20)."""
import copy
import gc
import pickle

import pytest

from fasttune.experiment import Trial
from fasttune.impl._trial_results import TrialResults
from fasttune.result import Result
from fasttune.result_grid import ResultGrid


def _results(n=4):
    made = []

    def make(trial):
        made.append(trial.trial_id)
        return Result({"x": trial.config["x"]}, None, None, f"/e/{trial.trial_id}", _config=trial.config)

    trials = [Trial("train", config={"x": x}, trial_id=f"t{x}") for x in range(n)]
    return TrialResults(trials, make), made


def test_a_result_is_made_when_read_and_is_the_same_object_while_it_is_held():
    results, made = _results()
    assert made == [] and len(results) == 4
    first = results[0]
    assert results[0] is first and results[-4] is first and made == ["t0"]
    assert [r.metrics["x"] for r in results] == [0, 1, 2, 3] and made == ["t0", "t1", "t2", "t3"]
    assert [r.path for r in results[1:3]] == ["/e/t1", "/e/t2"] and [r.config for r in results[::-2]] == [
        {"x": 3}, {"x": 1}]


def test_a_result_no_one_holds_is_let_go_and_made_again_when_read():
    results, made = _results()
    results[2]
    gc.collect()
    assert results[2].metrics == {"x": 2} and made == ["t2", "t2"]


def test_an_index_out_of_range_is_an_index_error():
    results, _ = _results()
    with pytest.raises(IndexError, match="result index 4 is out of range for 4 results"):
        results[4]
    with pytest.raises(IndexError):
        results[-5]


def test_a_grid_of_them_pickles_and_copies_as_its_results():
    results, _ = _results(2)
    grid = ResultGrid._of_sequence(results, "/e")
    for again in (pickle.loads(pickle.dumps(grid)), copy.deepcopy(grid)):
        assert [(r.metrics, r.path, r.config) for r in again] == [({"x": 0}, "/e/t0", {"x": 0}),
                                                                   ({"x": 1}, "/e/t1", {"x": 1})]
    assert grid.get_best_result("x", "max").path == "/e/t1" and len(grid) == 2 and grid[1].config == {"x": 1}


def _failing_at_x_3(config, epoch):
    if config["x"] == 3:
        raise ValueError("x=3 fails")
    return {"loss": (config["x"] - 4) ** 2 + 1.0 / epoch}, 1.0


def test_fit_grid_results_of_compact_trials_are_what_their_decoded_trials_give(tmp_path):
    """Most finished trials' Results are read straight from their packed records (no whole
    Trial decoded); each must equal the Result of the decoded trial, and reading must leave
    the trials compact.  A failed trial's goes through the decoded trial (its error)."""
    import fasttune as tune
    from fasttune.impl import tuner_internal
    from fasttune.simulation import FunctionBlackbox, Simulation

    blackbox = FunctionBlackbox(_failing_at_x_3, {"x": tune.grid_search(list(range(8)))}, [1, 2, 3], ["loss"])
    tuner = tune.Tuner(Simulation(blackbox, num_workers=2), param_space=blackbox.search_space,
                       tune_config=tune.TuneConfig(metric="loss", mode="min"),
                       run_config=tune.RunConfig(storage_path=str(tmp_path), name="exp", verbose=0))
    grid = tuner.fit()
    trials = grid._results._trials
    states = [dict(trial.__dict__) for trial in trials]
    assert all(trial._is_compact() for trial in trials)
    read_from_records = [trial.__dict__["_source"].result_parts(trial) is not None for trial in trials]
    assert read_from_records == [x != 3 for x in range(8)]

    for trial, result in zip(trials, grid):
        whole = trial._whole()
        assert result.metrics == (dict(whole.last_result, config=whole.config) if whole.last_result else {})
        assert (result.config, result.path, result.checkpoint, result.best_checkpoints) == (
            whole.config, whole.path, None, [])
        assert result._status == whole.status
        assert (result.error is not None) == (whole.config["x"] == 3)
    assert [result.metrics.get("training_iteration") for result in grid] == [3, 3, 3, None, 3, 3, 3, 3]
    assert grid.get_best_result().config == {"x": 4} and grid.num_errors == 1
    assert [dict(trial.__dict__) for trial in trials] == states  # read, not changed
    assert tuner_internal._result_of(trials[0], str(tmp_path), None).path == trials[0]._whole().path

    # What is set on a compact trial since wins over its record, as when it is decoded.
    trials[2].last_result = {"loss": -1.0, "training_iteration": 3}
    assert tuner_internal._result_of(trials[2], str(tmp_path), None).metrics == {
        "loss": -1.0, "training_iteration": 3, "config": {"x": 2}}


def test_a_restored_failed_trial_keeps_its_error_in_the_grid(tmp_path):
    """A restore's finished trials are read lazily from their records (their error only in
    the record): the grid of the restored fit still gives the failed one's error."""
    import fasttune as tune
    from fasttune.simulation import FunctionBlackbox, Simulation

    blackbox = FunctionBlackbox(_failing_at_x_3, {"x": tune.grid_search(list(range(6)))}, [1, 2, 3], ["loss"])
    tuner = tune.Tuner(Simulation(blackbox, num_workers=2), param_space=blackbox.search_space,
                       tune_config=tune.TuneConfig(metric="loss", mode="min"),
                       run_config=tune.RunConfig(storage_path=str(tmp_path), name="exp", verbose=0))
    tuner.fit()
    grid = tune.Tuner.restore(str(tmp_path / "exp"), trainable=Simulation(blackbox, num_workers=2)).fit()
    trials = grid._results._trials
    assert [trial.__dict__.get("_source") is not None for trial in trials] == [True] * 6
    assert [result.error is not None for result in grid] == [x == 3 for x in range(6)]
    assert "x=3 fails" in str(grid[3].error) and grid.num_errors == 1
    assert [result.metrics.get("training_iteration") for result in grid] == [3, 3, 3, None, 3, 3]
