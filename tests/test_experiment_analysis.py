"""ExperimentAnalysis's helpers, as Ray Tune scripts use them, on a real sweep: from what
``tune.run`` returns and from the experiment's directory, with the same answers."""
import math
import os

import pytest

import fasttune as tune
from fasttune import ExperimentAnalysis
from fasttune_testing import report_with_step_checkpoint

pd = pytest.importorskip("pandas", reason="the analysis tables need pandas (the test extra)")

pytestmark = pytest.mark.ray

# Each trial reports these losses at steps 1..4, with a checkpoint at steps 2 and 4.
# Ranked by its last loss, the third trial is best (2); by its lowest, the first (1).
LOSSES = [[5.0, 1.0, 6.0, 7.0], [4.0, 3.0, 3.0, 4.0], [6.0, 6.0, 6.0, 2.0]]


def train(config):
    for step, loss in enumerate(config["losses"], start=1):
        metrics = {"loss": loss, "nested": {"half": loss / 2}}
        if step % 2 == 0:
            report_with_step_checkpoint(metrics, step)
        else:
            tune.report(metrics)


@pytest.fixture(scope="module")
def returned(ray_session, tmp_path_factory):
    storage_path = str(tmp_path_factory.mktemp("results"))
    return tune.run(train, name="exp", config={"losses": tune.grid_search(LOSSES)}, metric="loss", mode="min",
                    storage_path=storage_path, max_concurrent_trials=1, verbose=0)


@pytest.fixture(scope="module", params=["returned", "read"])
def analysis(request, returned):
    """The analysis tune.run returned, and one read from the experiment's directory."""
    if request.param == "returned":
        return returned
    return ExperimentAnalysis(returned.experiment_path, default_metric="loss", default_mode="min")


def by_losses(analysis):
    return {tuple(t.config["losses"]): t for t in analysis.trials}


def step_of(checkpoint):
    with checkpoint.as_directory() as d:
        return int(open(os.path.join(d, "step")).read())


def test_best_trial_and_its_tables(analysis):
    best = by_losses(analysis)[tuple(LOSSES[2])]
    assert analysis.best_trial is best
    assert analysis.best_logdir == best.path
    frame = analysis.best_dataframe
    assert list(frame["loss"]) == LOSSES[2] and list(frame["training_iteration"]) == [1, 2, 3, 4]
    assert list(frame["nested/half"]) == [3.0, 3.0, 3.0, 1.0]
    row = analysis.best_result_df
    assert list(row.index) == [best.trial_id]
    assert row.loc[best.trial_id, "loss"] == 2.0 and row.loc[best.trial_id, "nested/half"] == 1.0
    assert row.loc[best.trial_id, "config/losses"] == LOSSES[2]


def test_scope_all_ranks_each_trials_best_value(analysis):
    assert analysis.get_best_trial("loss", "min", scope="all") is by_losses(analysis)[tuple(LOSSES[0])]
    assert analysis.get_best_config("loss", "max", scope="all") == {"losses": LOSSES[0]}
    assert analysis.get_best_config("loss", "max") == {"losses": LOSSES[0]}  # last: 7


def test_results_df_is_every_last_result_indexed_by_trial_id(analysis):
    frame = analysis.results_df
    assert sorted(frame.index) == sorted(t.trial_id for t in analysis.trials)
    for trial in analysis.trials:
        assert frame.loc[trial.trial_id, "loss"] == trial.config["losses"][-1]


def test_trial_dataframes_hold_every_result_by_trial_id(analysis):
    frames = analysis.trial_dataframes
    assert sorted(frames) == sorted(t.trial_id for t in analysis.trials)
    for trial in analysis.trials:
        assert list(frames[trial.trial_id]["loss"]) == trial.config["losses"]


def test_get_all_configs(analysis):
    ids = {tuple(t.config["losses"]): t.trial_id for t in analysis.trials}
    assert analysis.get_all_configs() == {ids[tuple(losses)]: {"losses": losses} for losses in LOSSES}
    assert analysis.get_all_configs(prefix=True) == {ids[tuple(losses)]: {"config/losses": losses}
                                                     for losses in LOSSES}


def test_best_and_last_checkpoints(analysis):
    first = by_losses(analysis)[tuple(LOSSES[0])]
    # Its checkpoints were reported with losses 1 (step 2) and 7 (step 4).
    assert step_of(analysis.get_best_checkpoint(first)) == 2  # the run's metric and mode
    assert step_of(analysis.get_best_checkpoint(first, "loss", "max")) == 4
    assert step_of(analysis.get_best_checkpoint(first.path, "nested/half", "min")) == 2
    assert step_of(analysis.get_last_checkpoint(first)) == 4
    # No trial given: the best by training_iteration (all ran 4: the first of them).
    assert step_of(analysis.get_last_checkpoint()) == 4
    assert analysis.get_best_checkpoint(first, "not_reported", "min") is None
    # The best trial's best checkpoint by the run's metric and mode, as in Ray Tune: the best
    # trial ([6, 6, 6, 2]) checkpointed losses 6 (step 2) and 2 (step 4).
    assert step_of(analysis.best_checkpoint) == 4


def test_the_best_properties_need_the_runs_metric_and_mode(returned):
    plain = ExperimentAnalysis(returned.experiment_path)
    for name in ("best_trial", "best_config", "best_result", "best_logdir", "best_dataframe", "best_checkpoint",
                 "best_result_df"):
        with pytest.raises(ValueError, match="metric= and mode= to tune.run"):
            getattr(plain, name)
    assert plain.get_best_config("loss", "min") == {"losses": LOSSES[2]}
    with pytest.raises(ValueError, match="No mode"):
        plain.get_best_checkpoint(plain.trials[0], "loss")
    assert ExperimentAnalysis(returned.experiment_path, default_mode="max").default_metric == "_metric"
    with pytest.raises(ValueError, match="default_mode='up'"):
        ExperimentAnalysis(returned.experiment_path, default_mode="up")


def test_a_snapshot_file_names_its_experiment(returned):
    snapshot = next(name for name in os.listdir(returned.experiment_path) if name.startswith("experiment_state"))
    analysis = ExperimentAnalysis(os.path.join(returned.experiment_path, snapshot), default_metric="loss",
                                  default_mode="min")
    assert analysis.experiment_path == returned.experiment_path
    assert analysis.best_config == {"losses": LOSSES[2]}


def test_given_trials_are_the_analysis_trials(returned):
    analysis = ExperimentAnalysis(returned.experiment_path, trials=returned.trials[:1])
    assert analysis.trials == returned.trials[:1]
    assert list(analysis.trial_dataframes) == [returned.trials[0].trial_id]


def test_nan_checkpoint_values_are_left_out(returned):
    trial = returned.trials[0]
    analysis = ExperimentAnalysis(returned.experiment_path, trials=[trial], default_metric="loss", default_mode="min")
    (first, metrics_first), (second, metrics_second) = trial.checkpoint_results
    trial.checkpoint_results = [(first, dict(metrics_first, loss=math.nan)), (second, metrics_second)]
    try:
        assert analysis.get_best_checkpoint(trial) == second
    finally:
        trial.checkpoint_results = [(first, metrics_first), (second, metrics_second)]


def test_result_grid_of_an_analysis(returned):
    grid = tune.ResultGrid(returned)
    assert len(grid) == 3 and grid.experiment_path == returned.experiment_path
    assert grid.get_best_result().config == {"losses": LOSSES[2]}  # the analysis's metric and mode


def test_dataframe_rows_by_metric_and_mode(analysis):
    assert sorted(analysis.dataframe("loss", "min")["loss"]) == [1.0, 2.0, 3.0]  # each trial's lowest
    assert sorted(analysis.dataframe("loss")["loss"]) == [2.0, 4.0, 7.0]  # no mode: each trial's last
    with pytest.raises(ValueError, match="needs the metric"):
        analysis.dataframe(mode="min")
