"""A scheduler that reads only a few top-level keys (ASHA: its time attribute and metric)
judges each result itself, not a flattened copy, wherever the copy would read the same at
those keys; everywhere else it gets the copy, as before."""
import pytest

import fasttune as tune
from fasttune._flatten import flatten_dict
from fasttune.execution._trial_state import TrialState, reads_as_flattened
from fasttune.schedulers import ASHAScheduler, AsyncHyperBandScheduler, TrialScheduler
from fasttune.search import BasicVariantGenerator

from runner_testing import random_search_runner

CONFIG = {"x": 0.5, "nested": {"a": 1}}


def _result(**extra):
    result = {"score": 1.0, "training_iteration": 1, "done": False, "trial_id": "t1"}
    result.update(extra)
    result["config"] = CONFIG
    return result


def never_called(config):
    raise AssertionError("no trainable runs")


def _runner(tmp_path, scheduler, **kwargs):
    scheduler.set_search_properties("score", "max")  # (as the Tuner does; a metric set already stays)
    runner = random_search_runner(str(tmp_path / "exp"), never_called, {"x": tune.uniform(0, 1)}, num_samples=1,
                                  random_state=0, scheduler=scheduler, metric="score", mode="max", **kwargs)
    [trial] = runner.get_trials()
    trial.set_status(trial.RUNNING)
    return runner, trial


def _copies_made(runner, trial, result, monkeypatch):
    """How many flattened copies of ``result`` judging it made, and the decision."""
    copies, flatten = [], TrialState.flatten_result

    def counted(state, result):
        copies.append(result)
        return flatten(state, result)

    monkeypatch.setattr(TrialState, "flatten_result", counted)
    decision = runner._decide(trial, result)
    monkeypatch.setattr(TrialState, "flatten_result", flatten)
    return len(copies), decision


def _judged(runner, trial, result):
    """What the scheduler's on_trial_result got for ``result``, and its decision, with a
    recorder set on the scheduler itself (which replaces ASHA's judging: the copy)."""
    scheduler, seen = runner._scheduler, []
    judge = type(scheduler).on_trial_result

    def recording(controller, trial, judged):
        seen.append(judged)
        return judge(scheduler, controller, trial, judged)

    scheduler.on_trial_result = recording
    decision = runner._decide(trial, result)
    del scheduler.on_trial_result
    [judged] = seen
    return judged, decision


def test_asha_judges_the_result_itself(tmp_path, monkeypatch):
    runner, trial = _runner(tmp_path, ASHAScheduler(max_t=10, grace_period=1, reduction_factor=2))
    assert _copies_made(runner, trial, _result(), monkeypatch) == (0, TrialScheduler.CONTINUE)


def test_asha_stopping_a_result_it_judged_itself_marks_it_done(tmp_path, monkeypatch):
    runner, trial = _runner(tmp_path, ASHAScheduler(max_t=1, grace_period=1, reduction_factor=2,
                                                    stop_last_trials=True))
    result = _result()
    assert _copies_made(runner, trial, result, monkeypatch) == (0, TrialScheduler.STOP)
    assert result["done"] is True


def test_asha_judges_a_result_without_its_metric_itself(tmp_path, monkeypatch):
    # (its flattened copy lacks the metric too: neither is judged)
    runner, trial = _runner(tmp_path, ASHAScheduler(metric="accuracy", mode="max", max_t=10, grace_period=1,
                                                    reduction_factor=2))
    result = _result()
    assert _copies_made(runner, trial, result, monkeypatch) == (0, TrialScheduler.CONTINUE)
    assert flatten_dict(result).get("accuracy") is None


@pytest.mark.parametrize("result, metric", [
    (_result(), "config/x"),  # a flattened key
    (_result(score={"mean": 1.0}), "score"),  # a dict where the metric is
    (_result(**{"score/mean": 1.0}), "score/mean"),  # a key with "/", which a nested one could replace
    ({7: 1.0, **_result()}, "score"),  # a key not a str (flattening makes one)
    ({"": {"score": 9.0}, **_result()}, "score"),  # an empty key's dict, flattened without a prefix
])
def test_asha_judges_a_flattened_copy_where_it_could_read_otherwise(tmp_path, monkeypatch, result, metric):
    runner, trial = _runner(tmp_path, ASHAScheduler(metric=metric, mode="max", max_t=10, grace_period=1,
                                                    reduction_factor=2))
    assert _copies_made(runner, trial, result, monkeypatch)[0] == 1


def test_asha_judges_the_copy_the_searcher_is_given_anyway(tmp_path, monkeypatch):
    heard = []
    monkeypatch.setattr(BasicVariantGenerator, "on_trial_result",
                        lambda searcher, trial_id, result: heard.append(result), raising=False)
    runner, trial = _runner(tmp_path, ASHAScheduler(max_t=10, grace_period=1, reduction_factor=2))
    result = _result()
    assert _copies_made(runner, trial, result, monkeypatch) == (1, TrialScheduler.CONTINUE)
    assert heard == [flatten_dict(result)]


def test_a_judge_set_on_the_scheduler_itself_gets_the_flattened_copy(tmp_path):
    runner, trial = _runner(tmp_path, ASHAScheduler(max_t=10, grace_period=1, reduction_factor=2))
    result = _result()
    judged, _ = _judged(runner, trial, result)
    assert judged is not result and judged == flatten_dict(result)


def test_a_judge_patched_onto_asha_gets_the_flattened_copy(tmp_path, monkeypatch):
    judged, judge = [], AsyncHyperBandScheduler.on_trial_result

    def recording(scheduler, controller, trial, result):
        judged.append(result)
        return judge(scheduler, controller, trial, result)

    monkeypatch.setattr(AsyncHyperBandScheduler, "on_trial_result", recording)
    runner, trial = _runner(tmp_path, ASHAScheduler(max_t=10, grace_period=1, reduction_factor=2))
    result = _result()
    runner._decide(trial, result)
    assert judged == [flatten_dict(result)] and judged[0] is not result


class OwnASHA(ASHAScheduler):
    def on_trial_result(self, tune_controller, trial, result):
        return super().on_trial_result(tune_controller, trial, result)


def test_a_scheduler_that_replaces_ashas_judging_gets_the_flattened_copy(tmp_path):
    runner, trial = _runner(tmp_path, OwnASHA(max_t=10, grace_period=1, reduction_factor=2))
    assert runner._scheduler.result_keys() is None
    result = _result()
    judged, _ = _judged(runner, trial, result)
    assert judged is not result and judged == flatten_dict(result)


class StopsNever(tune.Stopper):
    def __call__(self, trial_id, result):
        return False

    def stop_all(self):
        return False


def test_with_a_stopper_asha_judges_the_flattened_copy(tmp_path):
    # (a stopper sees the result first: the copy is made before, as it always was)
    runner, trial = _runner(tmp_path, ASHAScheduler(max_t=10, grace_period=1, reduction_factor=2),
                            stopper=StopsNever())
    result = _result()
    judged, _ = _judged(runner, trial, result)
    assert judged is not result and judged == flatten_dict(result)


def test_asha_decides_alike_on_a_result_and_on_its_flattened_copy():
    as_is, flattened = (ASHAScheduler(metric="score", mode="max", max_t=16, grace_period=1, reduction_factor=2)
                        for _ in range(2))
    trials = [type("T", (), {"trial_id": f"t{i}"})() for i in range(20)]
    for i, trial in enumerate(trials):
        for iteration in range(1, 17):
            result = _result(score=((i * 7919) % 13) / 13 + iteration / 100, training_iteration=iteration,
                             trial_id=trial.trial_id)
            assert reads_as_flattened(result, as_is.result_keys())
            assert as_is.on_trial_result(None, trial, result) == flattened.on_trial_result(
                None, trial, flatten_dict(result))


def test_the_default_scheduler_reads_any_key():
    assert TrialScheduler().result_keys() is None
    assert not reads_as_flattened(_result(), None)
