"""A trial restarted from a checkpoint keeps only the results up to it in its files
(each iteration once); the runner's TrialTable, whose metric columns the progress
reports rank trials by, must forget the dropped ones too."""
import math
import os

import pytest

import fasttune as tune
from fasttune.progress_reporter import CLIReporter
from fasttune.result import trial_rows

from fasttune_testing import report_with_step_checkpoint, restored_step

pytestmark = pytest.mark.ray

# Iteration 3's loss, reported after the checkpoint of iteration 2, is the best of all.
LOSSES = [4.0, 3.0, 1.0, 2.0]
CHECKPOINT_STEP = 2


def _crash_after_the_checkpoint(config):
    """Reports LOSSES with a checkpoint at CHECKPOINT_STEP, then fails; restored from that
    checkpoint, or once ``config["stop_file"]`` exists, it fails before reporting anything."""
    if restored_step() or os.path.exists(config.get("stop_file", "")):
        raise RuntimeError("fails before reporting")
    for step, loss in enumerate(LOSSES, start=1):
        if step == CHECKPOINT_STEP:
            report_with_step_checkpoint({"loss": loss}, step)
        else:
            tune.report({"loss": loss})
    raise RuntimeError("fails after the checkpoint")


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
@pytest.mark.parametrize("results_store", ["per_trial", "experiment"])
def test_the_table_forgets_the_metrics_of_results_a_restart_cut(storage, capsys, results_store):
    reporter = _TableReader(max_report_frequency=0)
    tuner = tune.Tuner(_crash_after_the_checkpoint,
                       tune_config=tune.TuneConfig(metric="loss", mode="min"),
                       run_config=tune.RunConfig(name="cut", storage_path=storage, progress_reporter=reporter,
                                                 failure_config=tune.FailureConfig(max_failures=1),
                                                 results_store=results_store))
    grid = tuner.fit()

    kept = [row["loss"] for row in trial_rows(grid[0].path)]
    assert kept == LOSSES[:CHECKPOINT_STEP]  # the restart cut iterations 3 and 4
    assert reporter.last_metric == [kept[-1]]
    assert reporter.best_metric == [min(kept)]
    assert grid[0].metrics["loss"] == kept[-1] and grid[0].metrics["training_iteration"] == CHECKPOINT_STEP
    # What the user reads: the best trial's value is one its result.json holds.
    best_lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Current best trial")]
    assert best_lines and best_lines[-1].endswith(f"loss={min(kept):g} and parameters={{}}"), best_lines[-1:]


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
