"""Suggestions made off the event loop: a slow ``suggest`` never stalls result processing.

The searchers here block on ``threading.Event``s the test controls.  Every wait has a
generous timeout only as a guard, so that a broken engine fails the test instead of
hanging it; no test relies on timing.
"""
import logging
import threading

import pytest

import fasttune as tune
from fasttune.execution import trial_runner
from fasttune.search import SearchGenerator, uniform
from fasttune.search.searcher import Searcher
from fasttune_testing import RunnerClock, fit
from searcher_testing import FakeExperiment, ListSearcher, LocalSearch, run_suggestions

GUARD_S = 60  # only reached when the feature is broken


def _generator(searcher, config=None, num_samples=-1):
    gen = SearchGenerator(searcher)
    gen.set_search_properties("loss", "min", config or {})
    gen.add_configurations(FakeExperiment(config, num_samples))
    return gen


def _suggest_threads():
    return [t for t in threading.enumerate() if t.name.startswith("fasttune-suggest")]


def _poll_until_trial(gen):
    """Polls the way the runner does: start, wait for the Event, collect."""
    assert gen.poll_trial() is None
    assert gen.pending_suggestion.wait(GUARD_S)
    return gen.poll_trial()


class GatedSearcher(ListSearcher):
    """A ListSearcher whose ``suggest`` number ``block_at`` (0-based) waits for ``release``.

    Records the thread of every call, and fails loudly if two calls ever overlap.
    """

    def __init__(self, configs, block_at):
        super().__init__(configs)
        self.block_at = block_at
        self.entered = threading.Event()
        self.release = threading.Event()
        self.released_in_time = None
        self.calls = []  # (method, trial_id, thread name)
        self._active = 0
        self.overlapped = False

    def _enter(self, method, trial_id):
        self._active += 1
        self.overlapped |= self._active > 1
        self.calls.append((method, trial_id, threading.current_thread().name))

    def suggest(self, trial_id):
        self._enter("suggest", trial_id)
        try:
            if len(self.suggest_ids) == self.block_at:
                self.entered.set()
                self.released_in_time = self.release.wait(GUARD_S)
            return super().suggest(trial_id)
        finally:
            self._active -= 1

    def on_trial_result(self, trial_id, result):
        self._enter("result", trial_id)
        super().on_trial_result(trial_id, result)
        self._active -= 1

    def on_trial_complete(self, trial_id, result=None, error=False):
        self._enter("complete", trial_id)
        super().on_trial_complete(trial_id, result, error)
        self._active -= 1


# ---- unit: the generator's background suggest -------------------------------------------------
def test_suggest_runs_off_the_calling_thread_and_its_answer_becomes_a_trial():
    searcher = GatedSearcher([{"x": 1}], block_at=-1)
    gen = _generator(searcher)
    assert gen.pending_suggestion is None
    trial = _poll_until_trial(gen)
    assert trial.config == {"x": 1} and trial.trial_id == searcher.suggest_ids[0]
    ((_, _, thread),) = searcher.calls
    assert thread != threading.current_thread().name and thread.startswith("fasttune-suggest")
    assert gen.pending_suggestion is None and not _suggest_threads()
    # FINISHED next: collected as no trial, and the search is over.
    assert _poll_until_trial(gen) is None and gen.is_finished()


def test_notifications_during_a_suggest_reach_the_searcher_after_it_in_order():
    searcher = GatedSearcher([{"x": 1}, {"x": 2}], block_at=1)
    gen = _generator(searcher)
    first = _poll_until_trial(gen)
    assert gen.poll_trial() is None  # suggest #2 starts and blocks
    assert searcher.entered.wait(GUARD_S)
    assert not gen.is_finished()  # a suggestion is on its way
    gen.on_trial_result(first.trial_id, {"loss": 3.0})
    gen.on_trial_complete(first.trial_id, {"loss": 2.0})
    assert gen.poll_trial() is None  # still blocked: nothing to collect, nothing new asked
    assert [c[0] for c in searcher.calls] == ["suggest", "suggest"]  # held back, not delivered
    searcher.release.set()
    assert gen.pending_suggestion.wait(GUARD_S)
    second = gen.poll_trial()
    assert second.config == {"x": 2}
    # The order a synchronous next_trial gives: the suggest, then what came after it.
    assert [(m, t) for m, t, _ in searcher.calls] == [
        ("suggest", first.trial_id), ("suggest", second.trial_id),
        ("result", first.trial_id), ("complete", first.trial_id)]
    assert searcher.completed == [(first.trial_id, {"loss": 2.0}, False)]
    assert not searcher.overlapped
    # With nothing in flight, notifications go straight to the searcher again.
    gen.on_trial_complete(second.trial_id, {"loss": 1.0})
    assert searcher.calls[-1][:2] == ("complete", second.trial_id)


def test_none_is_collected_without_asking_again_in_the_same_poll():
    class NotNow(ListSearcher):
        def suggest(self, trial_id):
            self.suggest_ids.append(trial_id)
            return None

    searcher = NotNow([])
    gen = _generator(searcher)
    assert _poll_until_trial(gen) is None
    assert gen.pending_suggestion is None and len(searcher.suggest_ids) == 1
    assert not gen.is_finished()


def test_a_suggest_that_raises_raises_its_own_exception_from_poll():
    error = ValueError("the searcher broke")

    class Broken(ListSearcher):
        def suggest(self, trial_id):
            raise error

    gen = _generator(Broken([]))
    assert gen.poll_trial() is None
    assert gen.pending_suggestion.wait(GUARD_S)
    with pytest.raises(ValueError) as info:
        gen.poll_trial()
    assert info.value is error


@pytest.mark.parametrize("make", ["local", "optuna"])
def test_background_suggests_make_the_same_sequence_as_synchronous_ones(make):
    # The same order of suggests and completions (2 trials live at a time, the older one
    # completing while the next suggest runs) gives the same configs either way.
    def searcher():
        if make == "optuna":
            from fasttune.search.optuna import OptunaSearch

            return OptunaSearch(metric="loss", mode="min", seed=7)
        return LocalSearch(seed=7)

    space = {"x": uniform(-5, 5), "y": uniform(-5, 5)}

    def loss(trial):
        return {"loss": (trial.config["x"] - 1) ** 2 + (trial.config["y"] + 2) ** 2}

    def run(threaded):
        gen = _generator(searcher(), space, num_samples=30)
        live, configs = [], []
        while not gen.is_finished():
            if threaded:
                assert gen.poll_trial() is None
                if len(live) == 2:  # arrives while the suggest runs
                    done = live.pop(0)
                    gen.on_trial_complete(done.trial_id, loss(done))
                assert gen.pending_suggestion.wait(GUARD_S)
                trial = gen.poll_trial()
            else:
                trial = gen.next_trial()
                if len(live) == 2:
                    done = live.pop(0)
                    gen.on_trial_complete(done.trial_id, loss(done))
            live.append(trial)
            configs.append((trial.config["x"], trial.config["y"]))
        return configs

    assert run(threaded=True) == run(threaded=False)


def test_saving_settles_a_suggest_in_flight_and_keeps_its_answer():
    searcher = GatedSearcher([{"x": 1}, {"x": 2}], block_at=1)
    gen = _generator(searcher)
    first = _poll_until_trial(gen)
    gen.poll_trial()
    assert searcher.entered.wait(GUARD_S)
    gen.on_trial_complete(first.trial_id, {"loss": 1.0})
    searcher.release.set()
    state = gen.get_state()  # joins the suggest (not yet polled), then delivers what it held back
    assert state["ready"] == (searcher.suggest_ids[1], {"x": 2})
    assert searcher.completed == [(first.trial_id, {"loss": 1.0}, False)]
    assert gen.pending_suggestion.is_set()  # collected at the runner's next poll
    assert gen.poll_trial().config == {"x": 2}


def test_close_abandons_a_suggest_that_does_not_return(caplog):
    searcher = GatedSearcher([{"x": 1}], block_at=0)
    gen = _generator(searcher)
    gen.poll_trial()
    assert searcher.entered.wait(GUARD_S)
    gen.on_trial_complete("other", {"loss": 1.0})
    with caplog.at_level(logging.WARNING):
        gen.close(timeout=0)
    assert "abandoned" in caplog.text and "GatedSearcher" in caplog.text
    assert gen.pending_suggestion is None and gen.poll_trial() is None  # asks no more
    searcher.release.set()
    for thread in _suggest_threads():
        thread.join(GUARD_S)
    assert not _suggest_threads()
    assert searcher.completed == []  # the searcher was called no more


def test_close_waits_for_a_suggest_that_returns():
    searcher = GatedSearcher([{"x": 1}], block_at=0)
    gen = _generator(searcher)
    gen.poll_trial()
    assert searcher.entered.wait(GUARD_S)
    gen.on_trial_complete("other", {"loss": 1.0})
    searcher.release.set()
    gen.close(timeout=GUARD_S)
    assert not _suggest_threads()
    assert searcher.completed == [("other", {"loss": 1.0}, False)]  # delivered, in order


# ---- end to end on Ray ---------------------------------------------------------------------------
def reports_three_times(config):
    for step in range(3):
        tune.report({"loss": float(config["i"] + step)})


class WatchWhileBlocked(tune.Callback):
    """Records the results and completions the loop handles while ``searcher`` is blocked
    in its suggest, and releases it on the first completion it sees then."""

    def __init__(self, searcher):
        self.searcher = searcher
        self.results_while_blocked = []
        self.completed_while_blocked = []

    def _blocked(self):
        return self.searcher.entered.is_set() and not self.searcher.release.is_set()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if self._blocked():
            self.results_while_blocked.append((trial.trial_id, result["loss"]))

    def on_trial_complete(self, iteration, trials, trial, **info):
        if self._blocked():
            self.completed_while_blocked.append(trial.trial_id)
            self.searcher.release.set()


def test_results_keep_being_processed_while_a_suggest_blocks(ray_session, storage):
    # 2 CPUs, 1 per trial: trials 1 and 2 run while the third suggest blocks.  Only the
    # event loop can release it (from a callback), so with suggest in the loop it would
    # wait out its guard and the test fails.
    searcher = GatedSearcher([{"i": 1}, {"i": 10}, {"i": 100}], block_at=2)
    watch = WatchWhileBlocked(searcher)
    grid = fit(tune.with_resources(reports_three_times, {"cpu": 1}), storage, {"i": 0},
               tune_config=tune.TuneConfig(search_alg=searcher, metric="loss", mode="min", num_samples=-1),
               callbacks=[watch])
    assert searcher.released_in_time is True
    assert watch.completed_while_blocked and watch.results_while_blocked
    first_two = set(searcher.suggest_ids[:2])
    assert set(watch.completed_while_blocked) <= first_two
    assert {trial_id for trial_id, _ in watch.results_while_blocked} <= first_two
    # Released, the suggestion became a trial, which ran and was told to the searcher.
    assert sorted(r.config["i"] for r in grid) == [1, 10, 100] and grid.num_errors == 0
    third = next(r for r in grid if r.config["i"] == 100)
    assert third.metrics["loss"] == 102.0
    assert sorted(t for t, _, _ in searcher.completed) == sorted(searcher.suggest_ids[:3])
    assert not searcher.overlapped
    assert all(thread.startswith("fasttune-suggest") for m, _, thread in searcher.calls if m == "suggest")
    assert not _suggest_threads()


def test_a_suggest_that_raises_fails_fit_with_its_own_exception(ray_session, storage):
    class FailsThird(ListSearcher):
        def suggest(self, trial_id):
            if len(self.suggest_ids) == 2:
                raise KeyError("searcher state is broken")
            return super().suggest(trial_id)

    searcher = FailsThird([{"i": i} for i in range(10)])
    with pytest.raises(KeyError, match="searcher state is broken"):
        fit(tune.with_resources(reports_three_times, {"cpu": 1}), storage, {"i": 0},
            tune_config=tune.TuneConfig(search_alg=searcher, metric="loss", mode="min", num_samples=-1))
    assert not _suggest_threads()


def runs_until_stopped(config):
    step = 0
    while True:
        tune.report({"loss": float(step)})
        step += 1


class BudgetRunsOutDuringTheSuggest(tune.Callback):
    """Moves the runner's clock past the time budget once the blocked suggest has begun;
    with ``then_grace_s``, past the stop's grace period once every trial has stopped.
    With ``release``, releases the suggest once every trial has stopped instead."""

    def __init__(self, searcher, clock, budget_s, then_grace_s=None, release=False):
        self.searcher, self.clock, self.budget_s = searcher, clock, budget_s
        self.then_grace_s, self.release = then_grace_s, release
        self.budget_spent = self.released_after_stop = self.grace_spent = False

    def on_step_end(self, iteration, trials, **info):
        if not self.budget_spent and self.searcher.entered.is_set():
            self.budget_spent = True
            self.clock.now += self.budget_s
            return
        all_stopped = len(trials) == 2 and all(t.status == "TERMINATED" for t in trials)
        if self.budget_spent and all_stopped and not self.searcher.release.is_set():
            if self.release:
                self.released_after_stop = True
                self.searcher.release.set()
            elif self.then_grace_s is not None and not self.grace_spent:
                self.grace_spent = True
                self.clock.now += self.then_grace_s


def test_a_time_budget_reached_during_a_suggest_ends_fit_and_the_late_suggestion_ends_too(ray_session, storage,
                                                                                           monkeypatch):
    searcher = GatedSearcher([{"i": i} for i in range(10)], block_at=2)
    clock = RunnerClock(monkeypatch)
    budget = BudgetRunsOutDuringTheSuggest(searcher, clock, 60.0, release=True)
    grid = fit(tune.with_resources(runs_until_stopped, {"cpu": 1}), storage, {"i": 0},
               tune_config=tune.TuneConfig(search_alg=searcher, metric="loss", mode="min",
                                           num_samples=-1, time_budget_s=60.0),
               callbacks=[budget])
    assert budget.released_after_stop and searcher.released_in_time
    # The suggestion answered after the stop is a trial that ended at once, and the
    # searcher heard every trial it suggested end.
    assert len(grid) == 3 and grid.num_terminated == 3 and grid.num_errors == 0
    assert sorted(t for t, _, _ in searcher.completed) == sorted(searcher.suggest_ids)
    assert len(searcher.suggest_ids) == 3
    assert not _suggest_threads()


def test_a_suggest_that_never_returns_is_abandoned_after_the_budget(ray_session, storage, monkeypatch, caplog):
    searcher = GatedSearcher([{"i": i} for i in range(10)], block_at=2)
    clock = RunnerClock(monkeypatch)
    budget = BudgetRunsOutDuringTheSuggest(searcher, clock, 60.0, then_grace_s=trial_runner._SUGGEST_GRACE_S)
    try:
        with caplog.at_level(logging.WARNING):
            grid = fit(tune.with_resources(runs_until_stopped, {"cpu": 1}), storage, {"i": 0},
                       tune_config=tune.TuneConfig(search_alg=searcher, metric="loss", mode="min",
                                                   num_samples=-1, time_budget_s=60.0), callbacks=[budget])
        assert searcher.entered.is_set() and not searcher.release.is_set()  # fit returned while blocked
        assert budget.grace_spent
        assert len(grid) == 2 and grid.num_terminated == 2
        assert "abandoned" in caplog.text
    finally:
        searcher.release.set()
        for thread in _suggest_threads():
            thread.join(GUARD_S)
    assert not _suggest_threads()


class CountingLimiterSearcher(Searcher):
    """Answers None ("not now") while two of its trials are live."""

    def __init__(self, n):
        super().__init__(metric="loss", mode="min")
        self.n, self.live, self.asked, self.done = n, set(), 0, []

    def suggest(self, trial_id):
        self.asked += 1
        if len(self.live) >= 2:
            return None
        if len(self.done) + len(self.live) >= self.n:
            return Searcher.FINISHED
        self.live.add(trial_id)
        return {"i": len(self.done) + len(self.live)}

    def on_trial_complete(self, trial_id, result=None, error=False):
        self.live.discard(trial_id)
        self.done.append(trial_id)


def test_a_searcher_saying_not_now_is_asked_again_after_worker_events(ray_session, storage):
    searcher = CountingLimiterSearcher(6)
    grid = fit(reports_three_times, storage, {"i": 0},
               tune_config=tune.TuneConfig(search_alg=searcher, metric="loss", mode="min", num_samples=-1))
    assert len(grid) == 6 and grid.num_errors == 0 and len(searcher.done) == 6
    # "Not now" is asked again once per worker event (a few dozen here), not in a loop
    # of its own while trials run (thousands).
    assert searcher.asked < 200


class NotUntilOneEnded(Searcher):
    """Says "not now" until it has heard one trial end; its first suggest waits for
    ``release``, so the end can arrive while that suggest is still running."""

    def __init__(self):
        super().__init__(metric="loss", mode="min")
        self.ended = 0
        self.release = threading.Event()
        self.calls = 0

    def suggest(self, trial_id):
        self.calls += 1
        if self.calls == 1:
            assert self.release.wait(GUARD_S)
        return {"x": 1.0} if self.ended else None

    def on_trial_complete(self, trial_id, result=None, error=False):
        self.ended += 1


def test_a_not_now_given_before_news_arrived_is_asked_again_at_once():
    searcher = NotUntilOneEnded()
    gen = _generator(searcher)
    assert gen.poll_trial() is None  # the first suggest starts, and waits
    gen.on_trial_complete("earlier_trial", result={"loss": 1.0})  # queued behind it
    searcher.release.set()
    assert gen.pending_suggestion.wait(GUARD_S)
    # Its "not now" predates the news: the searcher is asked again in the same poll, so
    # the loop waits for that answer instead of seeing a searcher with nothing to give.
    assert gen.poll_trial() is None
    assert gen.pending_suggestion is not None and gen.pending_suggestion.wait(GUARD_S)
    trial = gen.poll_trial()
    assert trial is not None and trial.config["x"] == 1.0 and searcher.calls == 2
