"""TrialRunner.add_trial with a trial the runner already has (the same object again, or
another object with the same trial id) refuses it with a ValueError naming the trial, and
leaves the runner as it was: otherwise the trial would get a second TrialTable row, and its
first row would stay PENDING with no trial to end it (is_finished() never True, the loop
never ending)."""
import copy
import os

import pytest

from fasttune.experiment.trial import Trial
from runner_testing import random_search_runner


def _trainable(config):
    pass


def _same_object(trial):
    return trial


def _same_trial_id(trial):
    return copy.copy(trial)


def test_a_runner_finishes_once_each_trial_added_once_ended(tmp_path):
    """The baseline the test below holds add_trial to."""
    runner = random_search_runner(str(tmp_path / "exp"), _trainable, {"x": 1}, 2, 0)
    assert runner._table.counts() == (2, 0, 0, 0, 0)
    for trial in runner.get_trials():
        runner.stop_trial(trial)
    assert [t.status for t in runner.get_trials()] == [Trial.TERMINATED] * 2
    assert runner.is_finished()


@pytest.mark.parametrize("again", [_same_object, _same_trial_id], ids=["same object", "same trial id"])
def test_adding_a_trial_again_leaves_the_runner_as_it_was(tmp_path, again):
    runner = random_search_runner(str(tmp_path / "exp"), _trainable, {"x": 1}, 2, 0)
    ids = [t.trial_id for t in runner.get_trials()]
    first = runner.get_trials()[0]
    with pytest.raises(ValueError, match=first.trial_id):
        runner.add_trial(again(first))
    assert [t.trial_id for t in runner.get_trials()] == ids
    assert runner.get_trials()[0] is first and first.status == Trial.PENDING
    assert runner._table.counts() == (2, 0, 0, 0, 0)
    for trial in runner.get_trials():
        runner.stop_trial(trial)
    assert runner.is_finished()
