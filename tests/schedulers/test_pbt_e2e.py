"""PopulationBasedTraining through Tuner.fit() on the shared local Ray: exploits happen
in place on the workers, are logged, and solve a toy problem fixed configs cannot."""
import json
import math
import os
import tempfile

import pytest

import fasttune as tune
from fasttune.schedulers import FIFOScheduler
from fasttune.schedulers.pbt import PopulationBasedTraining
from fasttune_testing import fit, lines, wait_for_workers

pytestmark = pytest.mark.usefixtures("ray_session")

STEPS = 200


def _triangle(x):
    x %= 2.0
    return x if x <= 1.0 else 2.0 - x


def toy(config):
    """Progress ``q`` grows by up to 1 per step when ``lr`` is close to an optimum that
    moves with ``q`` (a triangle wave between 0.01 and 0.04, in log scale), and shrinks
    when it is far: a fixed lr stalls, one that follows the optimum keeps going."""
    wait_for_workers(config["workers"], WORKERS)
    q, start = 0.0, 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            with open(os.path.join(d, "state.json")) as f:
                q, start = json.load(f)
    for step in range(start + 1, STEPS + 1):
        optimal = 0.01 * 2 ** (2 * _triangle(q / 40))
        q = max(0.0, q + max(-0.5, 1 - abs(math.log2(config["lr"] / optimal))))
        metrics = {"q": q, "lr": config["lr"], "pid": os.getpid()}
        if step % 4 == 0:
            with tempfile.TemporaryDirectory() as d:
                with open(os.path.join(d, "state.json"), "w") as f:
                    json.dump([q, step], f)
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))
        else:
            tune.report(metrics)


class ToyClass(tune.Trainable):
    """``toy`` as a class trainable; PBT's exploit reaches it through reset_config."""

    def setup(self, config):
        wait_for_workers(config["workers"], WORKERS)
        self.q = 0.0
        self.instance = id(self)

    def step(self):
        optimal = 0.01 * 2 ** (2 * _triangle(self.q / 40))
        self.q = max(0.0, self.q + max(-0.5, 1 - abs(math.log2(self.config["lr"] / optimal))))
        return {"q": self.q, "lr": self.config["lr"], "pid": os.getpid(),
                "done": self.iteration + 1 >= STEPS}

    def save_checkpoint(self, checkpoint_dir):
        return {"q": self.q}

    def load_checkpoint(self, checkpoint):
        self.q = checkpoint["q"]

    def reset_config(self, new_config):
        return True


SPACE = {"lr": tune.grid_search([0.005, 0.01, 0.02, 0.04])}
# All four trials at once on the session's two CPUs, each on its own worker, so PBT
# compares trials at similar points.  (With fewer workers than trials the population
# takes turns, and the trial judged at a perturbation point is the one furthest ahead:
# asynchronous PBT then seldom finds it in the lower quantile.)
CPU = 0.5
WORKERS = 4


def _toy_sweep(storage, scheduler, name, trainable=toy):
    space = dict(SPACE, workers=os.path.join(storage, f"{name}-workers"))
    return fit(tune.with_resources(trainable, {"cpu": CPU}), storage, space=space, name=name,
               tune_config=tune.TuneConfig(scheduler=scheduler, metric="q", mode="max"),
               checkpoint_config=tune.CheckpointConfig(
                   checkpoint_frequency=4 if trainable is ToyClass else 0, num_to_keep=2))


@pytest.mark.parametrize("trainable, synch", [(toy, False), (ToyClass, False), (toy, True)],
                         ids=["function", "class", "function-synch"])
def test_pbt_solves_the_moving_optimum_that_fixed_configs_cannot(storage, trainable, synch):
    fixed = _toy_sweep(storage, FIFOScheduler(), "fixed", trainable)
    best_fixed = max(r.metrics["q"] for r in fixed)
    assert best_fixed < 21  # the best fixed lr stalls where the optimum leaves it

    pbt = PopulationBasedTraining(
        time_attr="training_iteration", perturbation_interval=4, synch=synch,
        hyperparam_mutations={"lr": tune.loguniform(0.005, 0.1)})
    grid = _toy_sweep(storage, pbt, "pbt", trainable)
    assert grid.num_errors == 0
    scores = [r.metrics["q"] for r in grid]
    assert max(scores) > 1.75 * best_fixed and min(scores) > best_fixed
    # Each trial ran to its end (a clone of a finished trial's last checkpoint ends at
    # once, so the last line of result.json need not be iteration STEPS).
    assert grid.num_terminated == len(grid)
    pids = set()
    for result in grid:
        pids.update(r["pid"] for r in lines(os.path.join(result.path, "result.json")))
    # Exploits start no process: the pooled workers (one per concurrent trial) ran every
    # segment of every trial.
    assert len(pids) <= len(grid)
    # The exploits are in the policy logs, one JSON line each.
    experiment = os.path.dirname(grid[0].path)
    with open(os.path.join(experiment, "pbt_global.txt")) as f:
        exploits = [json.loads(line) for line in f if line.strip()]
    assert exploits
    policies = [n for n in os.listdir(experiment) if n.startswith("pbt_policy_")]
    assert policies
