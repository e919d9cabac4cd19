"""LoggerCallback: log_* methods called only when overridden, results in batches."""
import pytest

import fasttune as tune
from fasttune.callback import CallbackList
from fasttune.logger import CSVLoggerCallback, JsonLoggerCallback, LoggerCallback
from fasttune_testing import fit

HOOKS_OF_LOGGERS = ("on_trial_start", "on_trial_restore", "on_trial_save", "on_trial_result_batch",
                    "on_trial_complete", "on_trial_error", "on_trial_result")


class PerResult(LoggerCallback):
    def __init__(self):
        self.results, self.ends = [], []

    def log_trial_result(self, iteration, trial, result):
        self.results.append((trial.trial_id, result["training_iteration"], result["loss"]))

    def log_trial_end(self, trial, failed=False):
        self.ends.append((trial.config["fail"], failed))


class Batches(LoggerCallback):
    def __init__(self):
        self.batches = []

    def log_trial_result_batch(self, iteration, trial, results, times):
        self.batches.append((trial.trial_id, [r["training_iteration"] for r in results], list(times)))


class OnlyEnds(LoggerCallback):
    def log_trial_end(self, trial, failed=False):
        pass


def _wanted(callback):
    callbacks = CallbackList([callback])
    return {hook for hook in HOOKS_OF_LOGGERS if callbacks.wants(hook)}


def test_a_logger_is_called_only_for_the_log_methods_it_overrides():
    assert _wanted(LoggerCallback()) == set()
    assert _wanted(JsonLoggerCallback()) == _wanted(CSVLoggerCallback()) == set()  # the engine writes their files
    assert _wanted(PerResult()) == {"on_trial_result_batch", "on_trial_complete", "on_trial_error"}
    assert _wanted(Batches()) == {"on_trial_result_batch"}
    assert _wanted(OnlyEnds()) == {"on_trial_complete", "on_trial_error"}

    class OverridesAHook(LoggerCallback):
        def on_trial_start(self, iteration, trials, trial, **info):
            pass

    assert _wanted(OverridesAHook()) == {"on_trial_start"}


def test_the_default_batch_method_passes_each_result_to_log_trial_result():
    logger = PerResult()

    class FakeTrial:
        trial_id = "t1"

    logger.on_trial_result_batch(iteration=4, trials=[], trial=FakeTrial(),
                                 results=[{"training_iteration": 1, "loss": 0.5}, {"training_iteration": 2, "loss": 0.25}],
                                 times=[1.0, 2.0])
    assert logger.results == [("t1", 1, 0.5), ("t1", 2, 0.25)]


N = 2000


def _many_results(config):
    if config["fail"]:
        tune.report({"loss": -1.0})
        raise RuntimeError("failing on purpose")
    for i in range(1, N + 1):
        tune.report({"loss": float(i)})


def test_loggers_receive_every_result_once_in_order_in_batches(ray_session, storage):
    per_result, batches = PerResult(), Batches()
    grid = fit(_many_results, storage, {"fail": tune.grid_search([False, True])}, callbacks=[per_result, batches])
    ok = next(r for r in grid if r.error is None)
    ok_id = ok.metrics["trial_id"]
    assert [(i, loss) for t, i, loss in per_result.results if t == ok_id] == [(i, float(i)) for i in range(1, N + 1)]
    mine = [b for b in batches.batches if b[0] == ok_id]
    assert [i for _, steps, _ in mine for i in steps] == list(range(1, N + 1))
    assert len(mine) < N  # many results a call (a worker sends them in batches)
    times = [t for _, steps, ts in mine for t in ts]
    assert len(times) == N and times == sorted(times) and all(isinstance(t, float) for t in times)
    assert sorted(per_result.ends) == [(False, False), (True, True)]  # log_trial_end(failed=...)


def test_log_trial_end_receives_failed_true_only_for_an_error():
    logger = PerResult()

    class FakeTrial:
        config = {"fail": "x"}

    logger.on_trial_error(iteration=1, trials=[], trial=FakeTrial())
    logger.on_trial_complete(iteration=2, trials=[], trial=FakeTrial())
    assert logger.ends == [("x", True), ("x", False)]
