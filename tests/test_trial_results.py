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
