"""SearchGenerator: a Searcher's suggestions as trials (unit tests, then sweeps on Ray)."""
import pytest

import fasttune as tune
from fasttune.error import TuneError
from fasttune.impl.tuner_internal import _searcher_for
from fasttune.search import (
    BasicVariantGenerator,
    ConcurrencyLimiter,
    Repeater,
    SearchGenerator,
    uniform,
)
from fasttune_testing import RunnerClock, fit
from searcher_testing import FakeExperiment, ListSearcher, LocalSearch, quadratic


def _generator(searcher, config=None, num_samples=1):
    gen = SearchGenerator(searcher)
    gen.set_search_properties("loss", "min", config or {})
    gen.add_configurations(FakeExperiment(config, num_samples))
    return gen


# ---- unit: trials from suggestions ------------------------------------------------------
def test_trial_id_is_made_first_and_passed_to_suggest():
    searcher = ListSearcher([{"x": 1}, {"x": 2}])
    gen = _generator(searcher, num_samples=2)
    trials = [gen.next_trial(), gen.next_trial()]
    assert [t.trial_id for t in trials] == searcher.suggest_ids
    assert len(set(searcher.suggest_ids)) == 2
    assert [t.config for t in trials] == [{"x": 1}, {"x": 2}]
    assert gen.is_finished() and gen.next_trial() is None


def test_constants_of_the_param_space_are_merged_into_each_config():
    space = {"x": uniform(0, 1), "batch": 32, "opt": {"name": "sgd", "lr": uniform(0, 1)}}
    searcher = ListSearcher([{"x": 0.5, "opt": {"lr": 0.1}}])
    gen = SearchGenerator(searcher)
    gen.add_configurations(FakeExperiment(space, 1))
    trial = gen.next_trial()
    assert trial.config == {"x": 0.5, "batch": 32, "opt": {"name": "sgd", "lr": 0.1}}
    assert trial.evaluated_params == {"x": 0.5, "opt/lr": 0.1}
    assert trial.experiment_tag.startswith("1_")
    assert "x=0.5" in trial.experiment_tag
    assert isinstance(space["x"], tune.search.Domain)  # the param space is not modified


def test_none_means_not_now_and_finished_ends_the_search():
    class Flaky(ListSearcher):
        def suggest(self, trial_id):
            if len(self.suggest_ids) % 2 == 0:
                self.suggest_ids.append(trial_id)
                return None
            return super().suggest(trial_id)

    gen = _generator(Flaky([{"x": 1}]), num_samples=-1)
    assert gen.next_trial() is None and not gen.is_finished()
    assert gen.next_trial().config == {"x": 1}
    assert gen.next_trial() is None and not gen.is_finished()
    assert gen.next_trial() is None  # FINISHED
    assert gen.is_finished()


def test_num_samples_caps_the_trials_and_minus_one_is_unlimited():
    gen = _generator(ListSearcher([{"x": i} for i in range(10)]), num_samples=3)
    assert gen.total_samples == 3
    assert len([gen.next_trial() for _ in range(3)]) == 3
    assert gen.is_finished() and gen.next_trial() is None
    unlimited = _generator(ListSearcher([{"x": i} for i in range(10)]), num_samples=-1)
    assert unlimited.total_samples == 0
    assert sum(unlimited.next_trial() is not None for _ in range(11)) == 10
    assert unlimited.is_finished()


def test_results_and_completions_reach_the_searcher():
    searcher = ListSearcher([{"x": 1}])
    gen = _generator(searcher)
    trial = gen.next_trial()
    gen.on_trial_result(trial.trial_id, {"loss": 2.0})
    gen.on_trial_complete(trial.trial_id, {"loss": 1.0}, error=True)
    assert searcher.results == [(trial.trial_id, {"loss": 2.0})]
    assert searcher.completed == [(trial.trial_id, {"loss": 1.0}, True)]


def test_search_properties_go_to_the_searcher():
    searcher = LocalSearch()
    gen = SearchGenerator(searcher)
    assert gen.set_search_properties("loss", "min", {"x": uniform(-1, 1), "c": 3})
    assert (gen.metric, gen.mode, searcher.space) == ("loss", "min", {"x": (-1, 1)})


def test_a_searcher_that_declines_the_space_cannot_leave_domains_unsampled():
    gen = SearchGenerator(ListSearcher([{"x": 1}]))  # base set_search_properties declines
    assert gen.set_search_properties("loss", "min", {"c": 1, "nested": {"d": [1, 2]}})
    with pytest.raises(ValueError, match=r"search-space domains \(x\).*ListSearcher"):
        gen.set_search_properties("loss", "min", {"x": uniform(0, 1)})


def test_a_suggestion_missing_a_domain_is_a_clear_error():
    space = {"x": uniform(0, 1), "y": uniform(0, 1)}
    gen = SearchGenerator(ListSearcher([{"x": 0.5}]))
    gen.add_configurations(FakeExperiment(space, 1))
    with pytest.raises(TuneError, match="leaves the param_space entries y unsampled"):
        gen.next_trial()


def test_bad_arguments():
    with pytest.raises(TypeError, match="wraps a fasttune Searcher"):
        SearchGenerator(BasicVariantGenerator())
    gen = SearchGenerator(ListSearcher([]))
    with pytest.raises(TuneError, match="before add_configurations"):
        gen.next_trial()
    with pytest.raises(TuneError, match="exactly one experiment"):
        gen.add_configurations([FakeExperiment(), FakeExperiment()])
    with pytest.raises(TypeError, match="must return a config dict"):
        bad = SearchGenerator(type("Bad", (ListSearcher,), {"suggest": lambda self, tid: 3})([]))
        bad.add_configurations(FakeExperiment())
        bad.next_trial()


# ---- unit: save / restore ----------------------------------------------------------------
def _suggestions(gen, n):
    return [gen.next_trial().config for _ in range(n)]


def test_save_and_restore_continue_the_same_sequence(tmp_path):
    space = {"x": uniform(-5, 5), "y": uniform(-5, 5), "c": 1}
    first = SearchGenerator(ConcurrencyLimiter(LocalSearch(seed=3), max_concurrent=8))
    first.set_search_properties("loss", "min", space)
    first.add_configurations(FakeExperiment(space, 20))
    for trial in [first.next_trial() for _ in range(7)]:
        first.on_trial_complete(trial.trial_id, {"loss": trial.config["x"] ** 2})
    pending = first.next_trial()  # still live when saved
    first.save_to_dir(str(tmp_path), "s")
    assert first.has_checkpoint(str(tmp_path))
    expected = _suggestions(first, 4)

    second = SearchGenerator(ConcurrencyLimiter(LocalSearch(seed=99), max_concurrent=8))
    second.add_configurations(FakeExperiment(space, 20))
    second.restore_from_dir(str(tmp_path))
    assert second.searcher.live_trials == {pending.trial_id}
    assert _suggestions(second, 4) == expected
    assert second._counter == first._counter == 12


def test_searcher_save_and_restore_continue_the_same_sequence(tmp_path):
    space = {"x": uniform(-5, 5)}
    searcher = LocalSearch(seed=1, metric="loss", mode="min")
    searcher.set_search_properties("loss", "min", space)
    for i in range(8):
        searcher.suggest(f"t{i}")
        searcher.on_trial_complete(f"t{i}", {"loss": float(i % 3)})
    path = str(tmp_path / "state.pkl")
    searcher.save(path)
    expected = [searcher.suggest(f"u{i}") for i in range(5)]
    restored = LocalSearch(seed=42, metric="loss", mode="min")
    restored.restore(path)
    assert [restored.suggest(f"u{i}") for i in range(5)] == expected


def test_restore_into_other_wrappers_is_refused(tmp_path):
    gen = SearchGenerator(Repeater(ListSearcher([{"x": 1}])))
    gen.add_configurations(FakeExperiment())
    gen.save_to_dir(str(tmp_path))
    other = SearchGenerator(ListSearcher([{"x": 1}]))
    with pytest.raises(TuneError, match="restore into the same wrappers"):
        other.restore_from_dir(str(tmp_path))
    with pytest.raises(RuntimeError, match="No SearchGenerator checkpoint"):
        other.restore_from_dir(str(tmp_path / "nothing"))


# ---- unit: how the tuner wraps a Searcher -------------------------------------------------
def test_tuner_wraps_a_searcher_and_applies_max_concurrent_trials():
    exp = FakeExperiment()
    plain = _searcher_for(exp, ListSearcher([]), None)
    assert isinstance(plain, SearchGenerator) and isinstance(plain.searcher, ListSearcher)
    limited = _searcher_for(exp, ListSearcher([]), 3)
    assert isinstance(limited.searcher, ConcurrencyLimiter) and limited.searcher.max_concurrent == 3
    own = ConcurrencyLimiter(ListSearcher([]), max_concurrent=2)
    assert _searcher_for(exp, own, 2).searcher is own
    with pytest.raises(ValueError, match="disagree"):
        _searcher_for(exp, own, 4)
    bvg = BasicVariantGenerator()
    assert _searcher_for(exp, bvg, 2) is bvg


# ---- end to end on Ray -------------------------------------------------------------------------
SPACE = {"x": uniform(-5, 5), "y": uniform(-5, 5), "scale": 1.0}


def test_a_searcher_finds_the_optimum_region_of_a_quadratic(ray_session, storage):
    # One trial at a time: the seeded search sees results in one order, the same every run.
    searcher = LocalSearch(seed=0)
    grid = fit(quadratic, storage, SPACE, tune_config=tune.TuneConfig(
        search_alg=searcher, metric="loss", mode="min", num_samples=40, max_concurrent_trials=1))
    assert len(grid) == 40 and not grid.errors
    best = grid.get_best_result()
    assert best.metrics["loss"] < 0.5
    assert abs(best.config["x"] - 1.0) < 0.75 and abs(best.config["y"] + 2.0) < 0.75
    assert all(r.config["scale"] == 1.0 for r in grid)  # the constant reached every trial
    assert len(searcher.completed) == 40 and not any(error for _, _, error in searcher.completed)


def test_sequential_search_is_reproducible(ray_session, storage):
    # max_concurrent_trials=1 wraps the searcher in a ConcurrencyLimiter: one trial at a
    # time, so the seeded searcher sees results in one order and makes the same sweep.
    runs = []
    for name in ("a", "b"):
        grid = fit(quadratic, storage, SPACE, name=name, tune_config=tune.TuneConfig(
            search_alg=LocalSearch(seed=0), metric="loss", mode="min", num_samples=25, max_concurrent_trials=1))
        runs.append(sorted((r.config["x"], r.config["y"]) for r in grid))
        assert grid.get_best_result().metrics["loss"] < 0.5
    assert runs[0] == runs[1]


def test_finished_ends_an_unlimited_sweep(ray_session, storage):
    searcher = ListSearcher([{"x": float(i), "y": 0.0} for i in range(5)])
    grid = fit(quadratic, storage, {"scale": 2.0}, tune_config=tune.TuneConfig(
        search_alg=searcher, metric="loss", mode="min", num_samples=-1))
    assert sorted(r.config["x"] for r in grid) == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert sorted(r.metrics["loss"] for r in grid) == sorted(2.0 * ((i - 1.0) ** 2 + 4.0) for i in range(5))
    assert searcher.position == 5 and len(searcher.completed) == 5
    assert searcher.results  # intermediate results reached the searcher too


def reports_once(config):
    tune.report({"loss": float(config["i"])})


def test_a_searcher_is_asked_only_when_a_trial_can_start(storage):
    # 2 CPUs, 1 CPU per trial: at most 2 trials run, and at most one more waits PENDING;
    # the searcher is never asked for trials to queue behind busy workers, so each
    # suggestion comes after all but those few trials completed.
    searcher = ListSearcher([{"i": i} for i in range(30)])
    grid = fit(tune.with_resources(reports_once, {"cpu": 1}), storage, {"i": 0},
               tune_config=tune.TuneConfig(search_alg=searcher, metric="loss", mode="min", num_samples=-1))
    assert len(grid) == 30 and grid.num_errors == 0
    assert searcher.max_live <= 3


class Endless(ListSearcher):
    """Never says FINISHED."""

    def __init__(self):
        super().__init__([])

    def suggest(self, trial_id):
        self.suggest_ids.append(trial_id)
        self.live.add(trial_id)
        return {"i": len(self.suggest_ids)}


class BudgetRunsOutAfter(tune.Callback):
    """Moves the runner's clock past the time budget once ``completed`` trials have ended."""

    def __init__(self, clock, budget_s, completed):
        self.clock, self.budget_s, self.completed, self.spent = clock, budget_s, completed, False

    def on_trial_complete(self, iteration, trials, trial, **info):
        if not self.spent and sum(t.status == "TERMINATED" for t in trials) >= self.completed:
            self.spent = True
            self.clock.now += self.budget_s


def test_num_samples_minus_one_with_a_time_budget_ends_and_completes_every_trial(storage, monkeypatch):
    searcher = Endless()
    budget = BudgetRunsOutAfter(RunnerClock(monkeypatch), 60.0, completed=3)
    grid = fit(tune.with_resources(reports_once, {"cpu": 1}), storage, {"i": 0},
               tune_config=tune.TuneConfig(search_alg=searcher, metric="loss", mode="min",
                                           num_samples=-1, time_budget_s=60.0), callbacks=[budget])
    assert budget.spent and len(grid) >= 3 and grid.num_errors == 0 and grid.num_terminated == len(grid)
    # Every suggestion became a trial, and the searcher heard every one of them end
    # (one still pending at the budget ends without a result).
    assert sorted(r.config["i"] for r in grid) == list(range(1, len(searcher.suggest_ids) + 1))
    assert sorted(trial_id for trial_id, _, _ in searcher.completed) == sorted(searcher.suggest_ids)
    assert not searcher.live


class RayStyleAlgorithm(tune.search.SearchAlgorithm):
    """A search algorithm written against Ray Tune's base: save_to_dir takes **kwargs."""

    def add_configurations(self, experiments):
        pass

    def next_trial(self):
        return None

    def save_to_dir(self, dirpath, **kwargs):
        with open(f"{dirpath}/state-{kwargs['session_str']}", "w") as f:
            f.write("saved")
        return True


def test_save_to_dir_takes_keywords_as_ray_tunes_base_does(tmp_path):
    from fasttune.execution._snapshots import policy_state
    from fasttune.search.search_algorithm import SearchAlgorithm

    assert SearchAlgorithm.save_to_dir(RayStyleAlgorithm(), str(tmp_path), session_str="s") is False
    # The runner's snapshot passes session_str by keyword, so such a subclass is saved.
    assert policy_state(RayStyleAlgorithm(), "searcher") == {"state-snapshot": b"saved"}


def test_recursive_dependency_error_takes_ray_tunes_msg():
    from fasttune.search.variant_generator import RecursiveDependencyError

    error = RecursiveDependencyError(msg="'config/a' is not resolved yet")
    assert str(error) == "'config/a' is not resolved yet" and error.path == ()
