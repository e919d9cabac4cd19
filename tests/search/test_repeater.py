"""Repeater: each config runs `repeat` times; the searcher hears the group average."""
import math

import pytest

import fasttune as tune
from fasttune.search import Repeater, Searcher
from fasttune.search.repeater import TRIAL_INDEX
from fasttune_testing import fit
from searcher_testing import ListSearcher


def test_each_config_is_repeated_with_its_index():
    inner = ListSearcher([{"x": 1}, {"x": 2}])
    rep = Repeater(inner, repeat=3)
    configs = [rep.suggest(f"t{i}") for i in range(6)]
    assert configs == [{"x": 1, TRIAL_INDEX: i} for i in range(3)] + [{"x": 2, TRIAL_INDEX: i} for i in range(3)]
    assert inner.suggest_ids == ["t0", "t3"]  # the searcher knows one trial per group
    assert rep.suggest("t6") == Searcher.FINISHED


def test_set_index_false_keeps_the_config():
    rep = Repeater(ListSearcher([{"x": 1}]), repeat=2, set_index=False)
    assert rep.suggest("a") == rep.suggest("b") == {"x": 1}


def test_the_average_reaches_the_searcher_once_the_group_is_done():
    inner = ListSearcher([{"x": 1}, {"x": 2}])
    rep = Repeater(inner, repeat=3)
    for i in range(6):
        rep.suggest(f"t{i}")
    rep.on_trial_complete("t0", {"loss": 1.0})
    rep.on_trial_complete("t2", {"loss": 4.0})
    assert inner.completed == []
    rep.on_trial_complete("t1", {"loss": 7.0})
    assert inner.completed == [("t0", {"loss": 4.0}, False)]
    # errored trials and trials without the metric are left out of the mean
    rep.on_trial_complete("t3", {"loss": 10.0})
    rep.on_trial_complete("t4", {"other": 1.0})
    rep.on_trial_complete("t5", {"loss": 99.0}, error=True)
    assert inner.completed[1] == ("t3", {"loss": 10.0}, False)


def test_a_group_without_any_metric_reports_nan_as_an_error_when_all_failed():
    inner = ListSearcher([{"x": 1}])
    rep = Repeater(inner, repeat=2)
    rep.suggest("a"), rep.suggest("b")
    rep.on_trial_complete("a", None, error=True)
    rep.on_trial_complete("b", None, error=True)
    (trial_id, result, error), = inner.completed
    assert trial_id == "a" and math.isnan(result["loss"]) and error


def test_none_passes_through_and_state_roundtrips():
    class Later(ListSearcher):
        def suggest(self, trial_id):
            if not self.suggest_ids:
                self.suggest_ids.append(trial_id)
                return None
            return super().suggest(trial_id)

    rep = Repeater(Later([{"x": 1}]), repeat=2)
    assert rep.suggest("a") is None
    assert rep.suggest("b") == {"x": 1, TRIAL_INDEX: 0}
    other = Repeater(ListSearcher([{"x": 5}]), repeat=2)
    other.set_state(rep.get_state())
    assert other.suggest("c") == {"x": 1, TRIAL_INDEX: 1}  # continues the open group
    other.on_trial_complete("b", {"loss": 2.0})
    other.on_trial_complete("c", {"loss": 4.0})
    assert other.searcher.completed == [("b", {"loss": 3.0}, False)]


@pytest.mark.parametrize("bad", [0, -2, 1.5, True])
def test_repeat_must_be_a_positive_int(bad):
    with pytest.raises(ValueError, match="repeat must be an int >= 1"):
        Repeater(ListSearcher([]), repeat=bad)


# ---- on Ray ---------------------------------------------------------------------------------
def noisy(config):
    # A deterministic "noise" from the repeat index: loss = x + index.
    tune.report({"loss": config["x"] + config[TRIAL_INDEX]})


def test_repeated_trials_are_averaged_in_a_sweep(ray_session, storage):
    inner = ListSearcher([{"x": 10.0}, {"x": 20.0}])
    grid = fit(noisy, storage, {}, tune_config=tune.TuneConfig(
        search_alg=Repeater(inner, repeat=3), metric="loss", mode="min", num_samples=6))
    assert len(grid) == 6 and not grid.errors
    assert sorted(r.metrics["loss"] for r in grid) == [10.0, 11.0, 12.0, 20.0, 21.0, 22.0]
    # (10 + 11 + 12) / 3 and (20 + 21 + 22) / 3, each once, for the group's first trial
    heard = sorted(result["loss"] for _, result, _ in inner.completed)
    assert heard == [11.0, 21.0]
    assert {trial_id for trial_id, _, _ in inner.completed} == set(inner.suggest_ids)
