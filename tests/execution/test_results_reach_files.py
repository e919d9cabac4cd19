"""A batch of results the driver has counted reaches the trial's files even when judging
it raises: otherwise the final snapshot would count results that no result.json holds,
and a restore would resume past them."""
import json
import os

import pytest

import fasttune as tune
from fasttune_testing import report_with_step_checkpoint, restored_step

pytestmark = pytest.mark.usefixtures("ray_session")

ITERATIONS = 12


def checkpoints_every_step(config):
    for step in range(restored_step() + 1, ITERATIONS + 1):
        report_with_step_checkpoint({"step": step}, step)


class FailsOnceAtStep5(tune.Callback):
    """Raises at the result of step 5, once (a marker file: a restore unpickles a new one)."""

    def __init__(self, marker):
        self.marker = marker

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if result["step"] == 5 and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            raise RuntimeError("a callback failed")


def _steps(trial_dir):
    with open(os.path.join(trial_dir, "result.json")) as f:
        return [json.loads(line)["step"] for line in f]


def test_a_callback_raising_on_a_result_loses_no_result_of_its_batch(tmp_path):
    storage = str(tmp_path / "storage")
    tuner = tune.Tuner(checkpoints_every_step, run_config=tune.RunConfig(
        name="exp", storage_path=storage, verbose=0, callbacks=[FailsOnceAtStep5(str(tmp_path / "raised"))]))
    with pytest.raises(Exception, match="a callback failed"):
        tuner.fit()
    [trial_dir] = [e.path for e in os.scandir(os.path.join(storage, "exp")) if e.is_dir()]
    written = _steps(trial_dir)
    # The batch holding step 5 was counted before the callback raised: it is on disk.
    assert written == list(range(1, len(written) + 1)) and len(written) >= 5

    grid = tune.Tuner.restore(os.path.join(storage, "exp"), trainable=checkpoints_every_step).fit()
    assert grid.errors == []
    assert _steps(grid[0].path) == list(range(1, ITERATIONS + 1))
