"""The command line's experiment reader: statuses from the snapshot or, for what it does
not hold, from the files; a damaged snapshot or a missing tuner file loses no trial."""
import logging
import os
import shutil

import pytest

from cli_testing import FAILING_X, read_rows, trial_dirs
from fasttune._cli._experiment import read_experiment
from fasttune.error import TuneError

pytestmark = pytest.mark.ray


@pytest.fixture
def copy_of(tmp_path):
    def copy(path):
        target = str(tmp_path / os.path.basename(path))
        shutil.copytree(path, target)
        return target
    return copy


def test_reads_every_trial_with_the_tuners_metric(plain_experiment):
    experiment = read_experiment(plain_experiment)
    assert (experiment.metric, experiment.mode) == ("loss", "min")
    assert [t.path for t in experiment.trials] == trial_dirs(plain_experiment)
    for trial in experiment.trials:
        assert trial.rows == read_rows(trial.path)
        assert trial.config == trial.rows[-1]["config"]
        assert trial.status == ("ERROR" if trial.config["x"] == FAILING_X else "TERMINATED")


def test_without_a_snapshot_statuses_come_from_the_files(plain_experiment, copy_of):
    path = copy_of(plain_experiment)
    for name in os.listdir(path):
        if name.startswith("experiment_state-"):
            os.remove(os.path.join(path, name))
    statuses = {t.config["x"]: t.status for t in read_experiment(path).trials}
    assert statuses[FAILING_X] == "ERROR"  # its error.txt
    assert {s for x, s in statuses.items() if x != FAILING_X} == {"RUNNING"}  # results, never seen to end


def test_a_damaged_snapshot_is_a_warning_not_a_lost_listing(plain_experiment, copy_of, caplog):
    path = copy_of(plain_experiment)
    for name in os.listdir(path):
        if name.startswith("experiment_state-"):
            with open(os.path.join(path, name), "wb") as f:
                f.write(b"not a snapshot")
    with caplog.at_level(logging.WARNING):
        experiment = read_experiment(path)
    assert len(experiment.trials) == 8
    assert "trial statuses are guessed from their files" in caplog.text


def test_a_done_last_result_ends_a_trial_the_snapshot_does_not_hold(plain_experiment, copy_of):
    path = copy_of(plain_experiment)
    for name in os.listdir(path):
        if name.startswith("experiment_state-"):
            os.remove(os.path.join(path, name))
    ok_dir = next(d for d in trial_dirs(path) if read_rows(d)[-1]["config"]["x"] != FAILING_X)
    with open(os.path.join(ok_dir, "result.json"), "a") as f:
        f.write('{"loss": 0.5, "done": true, "training_iteration": 6, "config": {"x": 1, "name": "a"}}\n')
    by_path = {t.path: t for t in read_experiment(path).trials}
    assert by_path[ok_dir].status == "TERMINATED"
    assert by_path[ok_dir].rows[-1]["loss"] == 0.5


def test_a_trial_directory_alone(plain_experiment):
    trial_dir = trial_dirs(plain_experiment)[0]
    experiment = read_experiment(trial_dir)
    assert experiment.path == plain_experiment
    assert [t.path for t in experiment.trials] == [trial_dir]
    assert experiment.trials[0].status in ("TERMINATED", "ERROR")


def test_no_tuner_file_means_no_default_metric(plain_experiment, copy_of):
    path = copy_of(plain_experiment)
    os.remove(os.path.join(path, "tuner.msgpack"))
    experiment = read_experiment(path)
    assert (experiment.metric, experiment.mode) == (None, None)
    with pytest.raises(TuneError, match=r"set no TuneConfig\(metric=...\); pass --metric NAME"):
        experiment.resolve_metric(None, None)
    assert experiment.resolve_metric("loss", "max") == ("loss", "max")


def test_a_file_is_not_an_experiment(plain_experiment):
    with pytest.raises(TuneError, match="is a file; pass an experiment directory"):
        read_experiment(os.path.join(plain_experiment, "tuner.msgpack"))
