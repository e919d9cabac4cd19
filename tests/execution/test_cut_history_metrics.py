"""A trial restarted from a checkpoint keeps only the results up to it in its files
(each iteration once); the runner's TrialTable, whose metric columns the progress
reports rank trials by, must forget the dropped ones too."""
import math
import os

import pytest

import fasttune as tune
from fasttune._flatten import lookup_flattened
from fasttune.progress_reporter import CLIReporter
from fasttune.result import trial_rows
from fasttune.schedulers import DecisionPoints, FIFOScheduler

from fasttune_testing import report_with_step_checkpoint, restored_step

pytestmark = pytest.mark.ray

# Iteration 3's loss, reported after the checkpoint of iteration 2, is the best of all;
# of the two kept, the first is the better.
LOSSES = [3.0, 4.0, 1.0, 2.0]
CHECKPOINT_STEP = 2
# (mode, metric, the values reported): the kept ones' last is not their best either way.
CASES = {
    "min": ("min", "loss", LOSSES),
    "max_nested": ("max", "val/acc", [0.5, 0.4, 0.9, 0.7]),
}


def _reported(metric, value):
    """A result holding ``value`` under the (maybe nested, "a/b") ``metric``."""
    *outer, leaf = metric.split("/")
    result = {leaf: value}
    for key in reversed(outer):
        result = {key: result}
    return result


def _crash_after_the_checkpoint(config):
    """Reports ``config["values"]`` (LOSSES) under ``config["metric"]`` ("loss") with a
    checkpoint at CHECKPOINT_STEP, then fails; restored from that checkpoint, or once
    ``config["stop_file"]`` exists, it fails before reporting anything."""
    if restored_step() or os.path.exists(config.get("stop_file", "")):
        raise RuntimeError("fails before reporting")
    _report_each(config.get("values", LOSSES), config.get("metric", "loss"))
    raise RuntimeError("fails after the checkpoint")


def _report_each(values, metric="loss"):
    """Report each of ``values`` under ``metric``, with a checkpoint at CHECKPOINT_STEP."""
    for step, value in enumerate(values, start=1):
        if step == CHECKPOINT_STEP:
            report_with_step_checkpoint(_reported(metric, value), step)
        else:
            tune.report(_reported(metric, value))


class _TableReader(CLIReporter):
    """Keeps the table's metric columns as the run loop's last report saw them (in the
    class: a restored Tuner reports through a copy of the reporter it was made with)."""

    last_metric = best_metric = None

    def report(self, trials, done, *sys_info):
        table = self._source._runner.table
        _TableReader.last_metric = table.column("last_metric").tolist()
        _TableReader.best_metric = table.column("best_metric").tolist()
        super().report(trials, done, *sys_info)


@pytest.mark.usefixtures("ray_session")
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("results_store", ["per_trial", "experiment"])
def test_the_table_forgets_the_metrics_of_results_a_restart_cut(storage, capsys, results_store, case):
    mode, metric, values = CASES[case]
    reporter = _TableReader(max_report_frequency=0)
    tuner = tune.Tuner(_crash_after_the_checkpoint, param_space={"metric": metric, "values": values},
                       tune_config=tune.TuneConfig(metric=metric, mode=mode),
                       run_config=tune.RunConfig(name="cut", storage_path=storage, progress_reporter=reporter,
                                                 failure_config=tune.FailureConfig(max_failures=1),
                                                 results_store=results_store))
    grid = tuner.fit()

    kept = [lookup_flattened(row, metric) for row in trial_rows(grid[0].path)]
    best = (min if mode == "min" else max)(kept)
    assert kept == values[:CHECKPOINT_STEP] and best != kept[-1]  # the restart cut iterations 3 and 4
    assert reporter.last_metric == [kept[-1]]
    assert reporter.best_metric == [best]
    assert lookup_flattened(grid[0].metrics, metric) == kept[-1]
    assert grid[0].metrics["training_iteration"] == CHECKPOINT_STEP
    # What the user reads: the best trial's value (its last, as Ray Tune ranks) is one its result.json holds.
    best_lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Current best trial")]
    assert best_lines and f" with {metric}={kept[-1]:g} and parameters=" in best_lines[-1], best_lines[-1:]


@pytest.mark.usefixtures("ray_session")
def test_a_restored_trial_restarted_from_scratch_shows_no_metric_before_it_reports(storage, tmp_path, capsys):
    stop_file = str(tmp_path / "stop")
    first = tune.Tuner(_crash_after_the_checkpoint, param_space={"stop_file": stop_file},
                       tune_config=tune.TuneConfig(metric="loss", mode="min"),
                       run_config=tune.RunConfig(name="restarted", storage_path=storage,
                                                 progress_reporter=_TableReader(max_report_frequency=0))).fit()
    assert [row["loss"] for row in trial_rows(first[0].path)] == LOSSES
    open(stop_file, "w").close()
    capsys.readouterr()

    grid = tune.Tuner.restore(os.path.join(storage, "restarted"), trainable=_crash_after_the_checkpoint,
                              restart_errored=True).fit()

    assert trial_rows(grid[0].path) == []  # restarted: the first run's rows went
    assert all(math.isnan(v) for v in _TableReader.last_metric + _TableReader.best_metric)
    assert "Current best trial" not in capsys.readouterr().out


class _ResetOnceAtFour(FIFOScheduler):
    """At iteration 4 of the first trial ``resets`` says, ``reset`` sends it on (once)."""

    def __init__(self):
        super().__init__()
        self.done = False

    def decision_points(self, trial):
        return DecisionPoints.at([4])

    def on_trial_result(self, tune_controller, trial, result):
        if not self.done and result["training_iteration"] == 4 and self.resets(trial):
            self.done = True
            self.reset(tune_controller, trial)
        return self.CONTINUE

    def resets(self, trial):
        return True


class _ResetToItsFirstCheckpoint(_ResetOnceAtFour):
    """The trial goes on from its own checkpoint (iteration 2)."""

    def reset(self, tune_controller, trial):
        tune_controller.reset_trial(trial, dict(trial.config), trial.experiment_tag, checkpoint=trial.checkpoints[0])


def _ends_when_restored(config):
    """Reports ``config["values"]`` with a checkpoint at CHECKPOINT_STEP; restored, it ends."""
    if not restored_step():
        _report_each(config["values"])


@pytest.mark.usefixtures("ray_session")
@pytest.mark.parametrize("results_store", ["per_trial", "experiment"])
def test_a_reset_to_the_trials_own_older_checkpoint_forgets_the_results_after_it(storage, results_store):
    reporter = _TableReader(max_report_frequency=0)
    grid = tune.Tuner(_ends_when_restored, param_space={"values": [2.0, 3.0, 1.0, 0.5, 0.25]},
                      tune_config=tune.TuneConfig(metric="loss", mode="min", scheduler=_ResetToItsFirstCheckpoint()),
                      run_config=tune.RunConfig(name="reset", storage_path=storage, progress_reporter=reporter,
                                                results_store=results_store)).fit()

    assert grid[0].error is None
    assert [row["loss"] for row in trial_rows(grid[0].path)] == [2.0, 3.0]
    assert (grid[0].metrics["training_iteration"], grid[0].metrics["loss"]) == (CHECKPOINT_STEP, 3.0)
    assert (reporter.last_metric, reporter.best_metric) == ([3.0], [2.0])


class _CloneTheTopTrial(_ResetOnceAtFour):
    """The bottom trial goes on from the top trial's checkpoint."""

    def resets(self, trial):
        return trial.config["role"] == "bottom"

    def reset(self, tune_controller, trial):
        donor = next(t for t in tune_controller.get_trials() if t.config["role"] == "top")
        checkpoint, donor_result = donor.checkpoint_results[-1]
        tune_controller.reset_trial(trial, dict(trial.config), "exploited", checkpoint=checkpoint,
                                    checkpoint_result=donor_result)


OWN_LOSSES = {"top": [1.0, 2.0, 3.0, 4.0], "bottom": [22.0, 21.0, 23.0, 24.0]}


def _fails_once_after_the_clone(config):
    """Reports its role's OWN_LOSSES (a checkpoint at CHECKPOINT_STEP); restored from the
    clone of the top trial's checkpoint it reports 50 and fails; restored again, it ends."""
    if restored_step():
        if os.path.exists(config["marker"]):
            return
        open(config["marker"], "w").close()
        tune.report({"loss": 50.0})
        raise RuntimeError("fails after the clone")
    _report_each(OWN_LOSSES[config["role"]])


@pytest.mark.usefixtures("ray_session")
@pytest.mark.parametrize("results_store", ["per_trial", "experiment"])
def test_a_restart_from_a_cloned_checkpoint_keeps_the_trials_own_last_result(storage, tmp_path, results_store):
    reporter = _TableReader(max_report_frequency=0)
    # One at a time: the top trial has ended (its checkpoint kept) before the bottom one starts.
    grid = tune.Tuner(_fails_once_after_the_clone,
                      param_space={"role": tune.grid_search(["top", "bottom"]), "marker": str(tmp_path / "marker")},
                      tune_config=tune.TuneConfig(metric="loss", mode="min", scheduler=_CloneTheTopTrial(),
                                                  max_concurrent_trials=1),
                      run_config=tune.RunConfig(name="clone", storage_path=storage, progress_reporter=reporter,
                                                failure_config=tune.FailureConfig(max_failures=1),
                                                results_store=results_store)).fit()

    top, bottom = sorted(grid, key=lambda result: result.config["role"] != "top")
    assert bottom.error is None and os.path.exists(str(tmp_path / "marker"))  # it failed once
    own = OWN_LOSSES["bottom"]
    rows = trial_rows(bottom.path)
    assert [row["loss"] for row in rows] == own  # the 50 went with the restart
    assert rows[-1]["trial_id"] != top.metrics["trial_id"]
    assert (bottom.metrics["trial_id"], bottom.metrics["loss"]) == (rows[-1]["trial_id"], own[-1])
    assert (reporter.last_metric, reporter.best_metric) == ([4.0, own[-1]], [1.0, min(own)])
