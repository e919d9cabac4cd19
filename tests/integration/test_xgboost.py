"""fasttune.integration.xgboost on real XGBoost boosting runs in real sweeps: it reports what
Ray Tune's callback reports (names, values, checkpoint rounds), its checkpoints hold the booster,
ASHA stops boosting runs at its rungs, and a restored trial continues boosting."""
import collections
import os

import numpy as np
import pytest
import xgboost

import fasttune as tune
from fasttune.integration.xgboost import TuneReportCallback, TuneReportCheckpointCallback
from fasttune.schedulers import ASHAScheduler
from fasttune_testing import fit, lines

from boosting_testing import asha_finals, dataset, postprocessing, recording, reported_like_the_oracle, save_oracle

pytestmark = pytest.mark.usefixtures("ray_session")

ROUNDS = 10


def params(eta=0.3):
    return {"objective": "binary:logistic", "eval_metric": ["logloss", "error"], "max_depth": 3, "eta": eta,
            "nthread": 1, "seed": 0, "tree_method": "hist"}


def matrices():
    x_train, y_train, x_valid, y_valid = dataset()
    return xgboost.DMatrix(x_train, label=y_train), xgboost.DMatrix(x_valid, label=y_valid)


def train(config, rounds, callbacks, xgb_model=None):
    dtrain, dvalid = matrices()
    return xgboost.train(params(config.get("eta", 0.3)), dtrain, num_boost_round=rounds,
                         evals=[(dtrain, "train"), (dvalid, "eval")], verbose_eval=False,
                         xgb_model=xgb_model, callbacks=callbacks)


def beside_ray_tune(config):
    from ray.tune.integration.xgboost import TuneReportCheckpointCallback as RayTuneCallback

    options = dict(metrics=config["metrics"], frequency=config["frequency"],
                   checkpoint_at_end=config["checkpoint_at_end"],
                   results_postprocessing_fn=postprocessing(config["post"]))
    oracle = recording(RayTuneCallback)(**options)
    train(config, ROUNDS, [TuneReportCheckpointCallback(**options), oracle])
    save_oracle(config["oracle"], oracle.reports)


VARIANTS = [
    # every metric; checkpoints every 3rd round and one more after the 10th
    {"metrics": None, "frequency": 3, "checkpoint_at_end": True, "post": None},
    # renamed; the 10th round's checkpoint is the one at the end (not written twice)
    {"metrics": {"loss": "eval-logloss"}, "frequency": 5, "checkpoint_at_end": True, "post": None},
    # a name and a postprocessing function; no checkpoints at all
    {"metrics": ["eval-error", "train-logloss"], "frequency": 0, "checkpoint_at_end": False, "post": "mean"},
]


def test_reports_and_checkpoints_as_ray_tunes_callback_and_get_model_returns_the_booster(storage, tmp_path):
    space = {"variant": tune.grid_search(list(range(len(VARIANTS))))}
    oracles = [str(tmp_path / f"oracle{i}.json") for i in range(len(VARIANTS))]
    grid = fit(lambda config: beside_ray_tune({**VARIANTS[config["variant"]], "oracle": oracles[config["variant"]]}),
               storage, space, tune_config=tune.TuneConfig(max_concurrent_trials=1))
    assert grid.num_errors == 0
    by_variant = {result.config["variant"]: result for result in grid}
    for index, result in by_variant.items():
        ours, oracle, rows = reported_like_the_oracle(result, oracles[index])
        assert ours == oracle and len(rows) == len(oracle)
    # The names Ray Tune's callback uses, round by round; checkpoint rounds as documented.
    every, renamed, chosen = (reported_like_the_oracle(by_variant[i], oracles[i])[0] for i in range(3))
    assert set(every[0][0]) == {"train-logloss", "train-error", "eval-logloss", "eval-error"}
    assert [checkpointed for _, checkpointed in every] == [i in (2, 5, 8, 10) for i in range(11)]
    assert set(renamed[0][0]) == {"loss"} and [c for _, c in renamed] == [i in (4, 9) for i in range(10)]
    assert set(chosen[0][0]) == {"eval-error", "train-logloss", "mean"} and not any(c for _, c in chosen)
    # The last checkpoint holds the trained booster: it predicts what the same training predicts.
    booster = TuneReportCheckpointCallback.get_model(by_variant[0].checkpoint)
    _, dvalid = matrices()
    assert booster.num_boosted_rounds() == ROUNDS
    np.testing.assert_array_equal(booster.predict(dvalid), train({}, ROUNDS, []).predict(dvalid))
    assert os.listdir(by_variant[0].checkpoint.path) == ["model.ubj"]


ETAS = [0.4, 0.01, 0.3, 1.0, 0.7, 0.03]  # in this order the sweep stops two trials at each rung


def boost_for_asha(config):
    train(config, 9, [TuneReportCheckpointCallback(metrics=["eval-logloss"])])


def test_asha_stops_real_boosting_runs_at_its_rungs(storage):
    curves = {eta: eval_logloss_curve(eta, 9) for eta in ETAS}
    expected = asha_finals(ASHAScheduler(metric="eval-logloss", mode="min", max_t=9, grace_period=1,
                                         reduction_factor=3), curves, "eval-logloss")
    assert sorted(expected.values()) == [1, 1, 3, 3, 9, 9]  # stops at the grace period and at the next rung
    scheduler = ASHAScheduler(max_t=9, grace_period=1, reduction_factor=3)
    grid = fit(boost_for_asha, storage, {"eta": tune.grid_search(ETAS)},
               tune_config=tune.TuneConfig(metric="eval-logloss", mode="min", scheduler=scheduler,
                                           max_concurrent_trials=1))
    assert grid.num_errors == 0
    assert {r.config["eta"]: r.metrics["training_iteration"] for r in grid} == expected
    for result in grid:
        rows = lines(os.path.join(result.path, "result.json"))
        assert [row["eval-logloss"] for row in rows] == curves[result.config["eta"]][:len(rows)]


def fails_once_then_resumes(config):
    checkpoint = tune.get_checkpoint()
    booster = TuneReportCheckpointCallback.get_model(checkpoint) if checkpoint else None
    done = booster.num_boosted_rounds() if booster else 0
    tune.report({"restored_rounds": done})
    rounds = 5 if checkpoint is None else ROUNDS - done
    train(config, rounds, [TuneReportCheckpointCallback(metrics={"loss": "eval-logloss"}, frequency=2)],
          xgb_model=booster)
    if checkpoint is None:
        raise RuntimeError("fails after 5 rounds on purpose")


def test_a_restored_trial_continues_boosting_from_its_checkpoint(storage):
    grid = fit(fails_once_then_resumes, storage, {"eta": 0.3}, failure_config=tune.FailureConfig(max_failures=1))
    (result,) = list(grid)
    assert result.error is None
    rows = lines(os.path.join(result.path, "result.json"))
    curve = eval_logloss_curve(0.3, ROUNDS)
    # Attempt 1 boosts rounds 1-5: checkpoints after its 2nd and 4th round (XGBoost counts each
    # train call's rounds from 0) and at its end, a row of its own repeating round 5's metrics.
    # Attempt 2 starts from that 5-round booster and boosts rounds 6-10, with the same losses
    # as one uninterrupted training.
    first = [(None, 0, False)] + [(curve[i], None, i in (1, 3)) for i in range(5)] + [(curve[4], None, True)]
    second = [(None, 5, False)] + [(curve[i], None, i in (6, 8)) for i in range(5, 10)] + [(curve[9], None, True)]
    assert [(row.get("loss"), row.get("restored_rounds"), row["checkpoint_dir_name"] is not None)
            for row in rows] == first + second
    booster = TuneReportCheckpointCallback.get_model(result.checkpoint)
    _, dvalid = matrices()
    assert booster.num_boosted_rounds() == ROUNDS
    np.testing.assert_array_equal(booster.predict(dvalid), train({}, ROUNDS, []).predict(dvalid))


def eval_logloss_curve(eta, rounds):
    """eval-logloss after each round of a plain ``rounds``-round training."""
    history = {}
    dtrain, dvalid = matrices()
    xgboost.train(params(eta), dtrain, num_boost_round=rounds, evals=[(dvalid, "eval")], verbose_eval=False,
                  evals_result=history)
    return history["eval"]["logloss"]


def test_bad_arguments_and_the_removed_callback_say_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match="frequency must be an int >= 0"):
        TuneReportCheckpointCallback(frequency=-1)
    with pytest.raises(TypeError, match="metrics must be None"):
        TuneReportCheckpointCallback(metrics=3)
    with pytest.raises(DeprecationWarning, match="fasttune.integration.xgboost.TuneReportCheckpointCallback"):
        TuneReportCallback()
    (tmp_path / "model.ubj").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="has no 'other.ubj'"):
        TuneReportCheckpointCallback.get_model(tune.Checkpoint.from_directory(str(tmp_path)), filename="other.ubj")
    # Outside a trial, a metric XGBoost did not evaluate is named before anything is reported.
    callback = TuneReportCheckpointCallback(metrics="eval-auc")
    with pytest.raises(KeyError, match="'eval-auc' was not evaluated"):
        train({}, 1, [callback])


class KeepEvaluations(xgboost.callback.TrainingCallback):
    """An XGBoost callback that keeps a copy of the evaluation log of every round."""

    def __init__(self):
        super().__init__()
        self.logs = []

    def after_iteration(self, model, epoch, evals_log):
        self.logs.append({data: {metric: list(values) for metric, values in metrics.items()}
                          for data, metrics in evals_log.items()})
        return False


def test_cross_validation_metrics_are_named_as_ray_tune_names_them():
    from ray.tune.integration.xgboost import TuneReportCheckpointCallback as RayTuneCallback

    kept = KeepEvaluations()
    xgboost.cv(params(), matrices()[0], num_boost_round=3, nfold=3, seed=0, callbacks=[kept])
    ours = TuneReportCheckpointCallback(metrics={"loss": "test-logloss", "error": "test-error"})
    theirs = RayTuneCallback(metrics={"loss": "test-logloss", "error": "test-error"})
    for log in kept.logs:
        reported = ours._metrics_to_report(ours._latest_metrics(log))
        assert reported == theirs._get_report_dict(collections.OrderedDict(log))
    # Each value is the (mean, std) over the folds, as XGBoost keeps it.
    assert set(reported) == {"loss", "error"} and len(reported["loss"]) == 2

