"""ConcurrencyLimiter: never more than max_concurrent live suggestions (unit, then on Ray)."""
import pytest

import fasttune as tune
from fasttune.search import ConcurrencyLimiter, Searcher
from fasttune_testing import fit
from searcher_testing import ListSearcher


class LoggingSearcher(ListSearcher):
    """Logs ("s", id) for suggestions and ("c", id) for completions it hears."""

    def __init__(self, configs, **kwargs):
        super().__init__(configs, **kwargs)
        self.log = []

    def suggest(self, trial_id):
        config = super().suggest(trial_id)
        if isinstance(config, dict):
            self.log.append(("s", trial_id))
        return config

    def on_trial_complete(self, trial_id, result=None, error=False):
        super().on_trial_complete(trial_id, result, error)
        self.log.append(("c", trial_id))


def test_suggest_returns_none_at_the_limit_without_asking_the_searcher():
    inner = ListSearcher([{"x": i} for i in range(5)])
    limiter = ConcurrencyLimiter(inner, max_concurrent=2)
    assert limiter.suggest("a") == {"x": 0}
    assert limiter.suggest("b") == {"x": 1}
    assert limiter.suggest("c") is None
    assert inner.suggest_ids == ["a", "b"]
    limiter.on_trial_complete("a", {"loss": 1.0})
    assert inner.completed == [("a", {"loss": 1.0}, False)]
    assert limiter.suggest("c") == {"x": 2}
    limiter.on_trial_complete("unknown", {"loss": 1.0})  # not ours: ignored
    assert len(inner.completed) == 1


def test_none_and_finished_do_not_count_as_live():
    inner = ListSearcher([{"x": 0}])
    limiter = ConcurrencyLimiter(inner, max_concurrent=1)
    assert limiter.suggest("a") == {"x": 0}
    limiter.on_trial_complete("a", {"loss": 0.0})
    assert limiter.suggest("b") == Searcher.FINISHED
    assert limiter.live_trials == set()


def test_batch_waits_for_the_whole_batch():
    inner = ListSearcher([{"x": i} for i in range(4)])
    limiter = ConcurrencyLimiter(inner, max_concurrent=2, batch=True)
    limiter.suggest("a"), limiter.suggest("b")
    limiter.on_trial_complete("a", {"loss": 1.0})
    assert inner.completed == [] and limiter.suggest("c") is None
    limiter.on_trial_complete("b", {"loss": 2.0}, error=True)
    assert inner.completed == [("a", {"loss": 1.0}, False), ("b", {"loss": 2.0}, True)]
    assert limiter.suggest("c") == {"x": 2}


def test_a_searcher_that_limits_itself_gets_the_calls_through():
    class SelfLimiting(ListSearcher):
        def set_max_concurrency(self, max_concurrent):
            self.limit = max_concurrent
            return True

    inner = SelfLimiting([{"x": i} for i in range(3)])
    limiter = ConcurrencyLimiter(inner, max_concurrent=1)
    assert inner.limit == 1
    assert [limiter.suggest(t) for t in "abc"] == [{"x": 0}, {"x": 1}, {"x": 2}]


def test_state_roundtrip_and_forwarding():
    inner = ListSearcher([{"x": i} for i in range(4)], metric="acc", mode="max")
    limiter = ConcurrencyLimiter(inner, max_concurrent=2)
    assert (limiter.metric, limiter.mode) == ("acc", "max")
    limiter.suggest("a")
    state = limiter.get_state()
    other = ConcurrencyLimiter(ListSearcher([]), max_concurrent=5)
    other.set_state(state)
    assert other.live_trials == {"a"} and other.max_concurrent == 2
    assert other.set_max_concurrency(3) and other.max_concurrent == 3
    limiter.on_trial_result("a", {"acc": 0.5})
    assert inner.results == [("a", {"acc": 0.5})]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, None])
def test_max_concurrent_must_be_a_positive_int(bad):
    with pytest.raises(ValueError, match="max_concurrent must be an int >= 1"):
        ConcurrencyLimiter(ListSearcher([]), max_concurrent=bad)


def test_only_searchers_can_be_limited():
    with pytest.raises(TypeError, match="wraps a fasttune Searcher"):
        ConcurrencyLimiter(tune.search.BasicVariantGenerator(), max_concurrent=2)


# ---- on Ray ---------------------------------------------------------------------------------
class Order(tune.Callback):
    def __init__(self):
        self.events = []

    def on_trial_start(self, iteration, trials, trial, **info):
        self.events.append(("start", trial.trial_id))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.events.append(("end", trial.trial_id))

    def on_trial_error(self, iteration, trials, trial, **info):
        self.events.append(("end", trial.trial_id))

    def max_live(self):
        live, most = set(), 0
        for kind, trial_id in self.events:
            (live.add if kind == "start" else live.discard)(trial_id)
            most = max(most, len(live))
        return most


def train(config):
    for step in range(3):
        tune.report({"loss": config["x"] + step})


# A quarter CPU per trial: the 2-CPU test cluster could run 8 at once; only the limiter holds it to 2.
light = tune.with_resources(train, {"cpu": 0.25})


def test_the_limit_holds_in_a_sweep(ray_session, storage):
    inner = ListSearcher([{"x": float(i)} for i in range(10)])
    order = Order()
    grid = fit(light, storage, {}, callbacks=[order], tune_config=tune.TuneConfig(
        search_alg=ConcurrencyLimiter(inner, max_concurrent=2), metric="loss", mode="min", num_samples=10))
    assert len(grid) == 10 and not grid.errors
    assert sum(kind == "start" for kind, _ in order.events) == 10
    assert 1 <= order.max_live() <= 2
    # The searcher had 2 of its suggestions out at most, and 2 at some point (without the
    # limiter it has 9 out: the runner asks ahead of the trials).
    assert inner.max_live == 2


def test_batch_mode_in_a_sweep(ray_session, storage):
    inner = LoggingSearcher([{"x": float(i)} for i in range(6)])
    order = Order()
    grid = fit(light, storage, {}, callbacks=[order], tune_config=tune.TuneConfig(
        search_alg=ConcurrencyLimiter(inner, max_concurrent=2, batch=True), metric="loss", mode="min",
        num_samples=6))
    assert len(grid) == 6 and order.max_live() <= 2
    # Each batch of 2 is suggested, then both complete, before the next is suggested.
    assert [kind for kind, _ in inner.log] == ["s", "s", "c", "c"] * 3


def test_max_concurrent_trials_limits_a_searcher(ray_session, storage):
    inner = ListSearcher([{"x": float(i)} for i in range(6)])
    order = Order()
    grid = fit(light, storage, {}, callbacks=[order], tune_config=tune.TuneConfig(
        search_alg=inner, metric="loss", mode="min", num_samples=6, max_concurrent_trials=1))
    assert len(grid) == 6 and order.max_live() == 1 and inner.max_live == 1


class PauseListener(ListSearcher):
    def __init__(self, configs):
        super().__init__(configs)
        self.heard = []

    def on_pause(self, trial_id):
        self.heard.append(("pause", trial_id))

    def on_unpause(self, trial_id):
        self.heard.append(("unpause", trial_id))


def test_pause_and_unpause_reach_a_searcher_that_listens_and_keep_the_limit():
    inner = PauseListener([{"x": i} for i in range(3)])
    limiter = ConcurrencyLimiter(inner, max_concurrent=1)
    assert limiter.suggest("a") == {"x": 0}
    limiter.on_pause("a")
    assert limiter.suggest("b") is None  # a paused trial still holds its place
    limiter.on_unpause("a")
    assert inner.heard == [("pause", "a"), ("unpause", "a")]
    quiet = ConcurrencyLimiter(ListSearcher([{"x": 0}]), max_concurrent=1)
    quiet.suggest("a")
    quiet.on_pause("a")  # a searcher without the hooks is left alone
    quiet.on_unpause("a")
    assert quiet.live_trials == {"a"}
