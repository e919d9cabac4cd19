"""fasttune.integration.lightgbm on real LightGBM boosting runs in real sweeps: it reports what
Ray Tune's callback reports (names, values, checkpoint rounds), its checkpoints hold the booster,
ASHA stops boosting runs at its rungs, and a restored trial continues boosting."""
import os

import lightgbm
import numpy as np
import pytest

import fasttune as tune
from fasttune.integration.lightgbm import TuneReportCallback, TuneReportCheckpointCallback
from fasttune.schedulers import ASHAScheduler
from fasttune_testing import fit, lines

from boosting_testing import asha_finals, dataset, postprocessing, recording, reported_like_the_oracle, save_oracle

pytestmark = pytest.mark.usefixtures("ray_session")

ROUNDS = 10


def params(eta=0.3):
    return {"objective": "binary", "metric": ["binary_logloss", "binary_error"], "learning_rate": eta,
            "num_leaves": 7, "min_data_in_leaf": 5, "num_threads": 1, "seed": 0, "deterministic": True,
            "verbose": -1}


def train(config, rounds, callbacks, init_model=None, history=None):
    x_train, y_train, x_valid, y_valid = dataset()
    dtrain = lightgbm.Dataset(x_train, label=y_train)
    dvalid = lightgbm.Dataset(x_valid, label=y_valid, reference=dtrain)
    if history is not None:
        callbacks = callbacks + [lightgbm.record_evaluation(history)]
    return lightgbm.train(params(config.get("eta", 0.3)), dtrain, num_boost_round=rounds,
                          valid_sets=[dtrain, dvalid], valid_names=["train", "eval"], init_model=init_model,
                          callbacks=callbacks)


def eval_logloss_curve(eta, rounds):
    """eval-binary_logloss after each round of a plain ``rounds``-round training."""
    history = {}
    train({"eta": eta}, rounds, [], history=history)
    return history["eval"]["binary_logloss"]


def beside_ray_tune(config):
    from ray.tune.integration.lightgbm import TuneReportCheckpointCallback as RayTuneCallback

    options = dict(metrics=config["metrics"], frequency=config["frequency"],
                   checkpoint_at_end=config["checkpoint_at_end"],
                   results_postprocessing_fn=postprocessing(config["post"]))
    oracle = recording(RayTuneCallback)(**options)
    train(config, ROUNDS, [TuneReportCheckpointCallback(**options), oracle])
    save_oracle(config["oracle"], oracle.reports)


VARIANTS = [
    # every metric; checkpoints every 3rd round and after the last
    {"metrics": None, "frequency": 3, "checkpoint_at_end": True, "post": None},
    # renamed; the 10th round's checkpoint is both the 2nd by frequency and the one at the end
    {"metrics": {"loss": "eval-binary_logloss"}, "frequency": 5, "checkpoint_at_end": True, "post": None},
    # a name and a postprocessing function; no checkpoints at all
    {"metrics": ["eval-binary_error", "train-binary_logloss"], "frequency": 0, "checkpoint_at_end": False,
     "post": "mean"},
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
    assert set(every[0][0]) == {"train-binary_logloss", "train-binary_error", "eval-binary_logloss",
                                "eval-binary_error"}
    assert [checkpointed for _, checkpointed in every] == [i in (2, 5, 8, 9) for i in range(10)]
    assert set(renamed[0][0]) == {"loss"} and [c for _, c in renamed] == [i in (4, 9) for i in range(10)]
    assert set(chosen[0][0]) == {"eval-binary_error", "train-binary_logloss", "mean"}
    assert not any(c for _, c in chosen)
    # The last checkpoint holds the trained booster: it predicts what the same training predicts.
    booster = TuneReportCheckpointCallback.get_model(by_variant[0].checkpoint)
    x_valid = dataset()[2]
    assert booster.current_iteration() == ROUNDS
    np.testing.assert_array_equal(booster.predict(x_valid), train({}, ROUNDS, []).predict(x_valid))
    assert os.listdir(by_variant[0].checkpoint.path) == ["model.txt"]


ETAS = [0.05, 0.5, 0.01, 0.2, 0.03, 1.0]  # in this order the sweep stops two trials at each rung


def boost_for_asha(config):
    train(config, 9, [TuneReportCheckpointCallback(metrics=["eval-binary_logloss"])])


def test_asha_stops_real_boosting_runs_at_its_rungs(storage):
    curves = {eta: eval_logloss_curve(eta, 9) for eta in ETAS}
    expected = asha_finals(ASHAScheduler(metric="eval-binary_logloss", mode="min", max_t=9, grace_period=1,
                                         reduction_factor=3), curves, "eval-binary_logloss")
    assert sorted(expected.values()) == [1, 1, 3, 3, 9, 9]  # stops at the grace period and at the next rung
    scheduler = ASHAScheduler(max_t=9, grace_period=1, reduction_factor=3)
    grid = fit(boost_for_asha, storage, {"eta": tune.grid_search(ETAS)},
               tune_config=tune.TuneConfig(metric="eval-binary_logloss", mode="min", scheduler=scheduler,
                                           max_concurrent_trials=1))
    assert grid.num_errors == 0
    assert {r.config["eta"]: r.metrics["training_iteration"] for r in grid} == expected
    for result in grid:
        rows = lines(os.path.join(result.path, "result.json"))
        assert [row["eval-binary_logloss"] for row in rows] == curves[result.config["eta"]][:len(rows)]


def fails_once_then_resumes(config):
    checkpoint = tune.get_checkpoint()
    booster = TuneReportCheckpointCallback.get_model(checkpoint) if checkpoint else None
    done = booster.current_iteration() if booster else 0
    tune.report({"restored_rounds": done})
    rounds = 5 if checkpoint is None else ROUNDS - done
    train(config, rounds, [TuneReportCheckpointCallback(metrics={"loss": "eval-binary_logloss"}, frequency=2)],
          init_model=booster)
    if checkpoint is None:
        raise RuntimeError("fails after 5 rounds on purpose")


def test_a_restored_trial_continues_boosting_from_its_checkpoint(storage):
    grid = fit(fails_once_then_resumes, storage, {"eta": 0.3}, failure_config=tune.FailureConfig(max_failures=1))
    (result,) = list(grid)
    assert result.error is None
    rows = lines(os.path.join(result.path, "result.json"))
    curve = eval_logloss_curve(0.3, ROUNDS)
    # Attempt 1 boosts rounds 1-5: checkpoints after rounds 2 and 4 and after its last round.
    # Attempt 2 starts from that 5-round booster (LightGBM goes on counting rounds, so the
    # frequency keeps its pace) and boosts rounds 6-10 with the losses of one uninterrupted training.
    first = [(None, 0, False)] + [(curve[i], None, i in (1, 3, 4)) for i in range(5)]
    second = [(None, 5, False)] + [(curve[i], None, i in (5, 7, 9)) for i in range(5, 10)]
    assert [(row.get("loss"), row.get("restored_rounds"), row["checkpoint_dir_name"] is not None)
            for row in rows] == first + second
    booster = TuneReportCheckpointCallback.get_model(result.checkpoint)
    x_valid = dataset()[2]
    assert booster.current_iteration() == ROUNDS
    np.testing.assert_array_equal(booster.predict(x_valid), train({}, ROUNDS, []).predict(x_valid))


def test_bad_arguments_and_the_removed_callback_say_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match="frequency must be an int >= 0"):
        TuneReportCheckpointCallback(frequency=1.5)
    with pytest.raises(DeprecationWarning, match="fasttune.integration.lightgbm.TuneReportCheckpointCallback"):
        TuneReportCallback()
    with pytest.raises(FileNotFoundError, match="has no 'model.txt'"):
        TuneReportCheckpointCallback.get_model(tune.Checkpoint.from_directory(str(tmp_path)))
    # Outside a trial, a metric LightGBM did not evaluate is named before anything is reported.
    with pytest.raises(KeyError, match="'eval-auc' was not evaluated"):
        train({}, 1, [TuneReportCheckpointCallback(metrics="eval-auc")])


class KeepEnvironments:
    """A LightGBM callback that keeps the environment of every round."""

    def __init__(self):
        self.environments = []

    def __call__(self, env):
        self.environments.append(env)


def test_cross_validation_metrics_are_named_as_ray_tune_names_them():
    from ray.tune.integration.lightgbm import TuneReportCheckpointCallback as RayTuneCallback

    x_train, y_train, _, _ = dataset()
    kept = KeepEnvironments()
    lightgbm.cv(params(), lightgbm.Dataset(x_train, label=y_train), num_boost_round=3, nfold=3, seed=0,
                callbacks=[kept])
    ours = TuneReportCheckpointCallback(results_postprocessing_fn=postprocessing("mean"))
    theirs = RayTuneCallback(results_postprocessing_fn=postprocessing("mean"))
    for env in kept.environments:
        reported = ours._metrics_to_report(ours._latest_metrics(env))
        assert reported == theirs._get_report_dict(theirs._get_eval_result(env))
    assert set(reported) == {"valid-binary_logloss-mean", "valid-binary_logloss-stdv", "valid-binary_error-mean",
                             "valid-binary_error-stdv", "mean"}
