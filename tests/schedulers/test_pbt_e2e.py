"""PopulationBasedTraining through Tuner.fit() on the shared local Ray: exploits happen
in place on the workers, are logged, and solve a toy problem fixed configs cannot.

These tests cannot pass by luck.  PBT's only randomness (the donor drawn from the upper
quantile, the explore step) comes from Python's and numpy's global generators, which each
sweep seeds; and the results PBT judges do not depend on timing: each trial waits at its
perturbation points for the decision, an asynchronous sweep runs one trial at a time, and a
synchronous one decides only once every trial reached the same point.  So a sweep's
schedule and scores are a function of its seed, which
``test_synch_pbt_schedules_the_same_exploits_whatever_runs_at_once`` shows.
"""
import json
import math
import os
import tempfile

import pytest

import fasttune as tune
from fasttune.schedulers.pbt import PopulationBasedTraining
from fasttune_testing import fit, lines, seeded_generators

pytestmark = pytest.mark.usefixtures("ray_session")

STEPS = 200
LRS = [0.005, 0.01, 0.02, 0.04]
LR_BOUNDS = (0.005, 0.1)
SEED = 0
# The session's two CPUs for one trial (one at a time), or half a CPU each (four at once).
ONE_AT_A_TIME, FOUR_AT_ONCE = 2, 0.5


def _triangle(x):
    x %= 2.0
    return x if x <= 1.0 else 2.0 - x


def toy_step(q, lr):
    """Progress ``q`` grows by up to 1 per step when ``lr`` is close to an optimum that
    moves with ``q`` (a triangle wave between 0.01 and 0.04, in log scale), and shrinks
    when it is far: a fixed lr stalls, one that follows the optimum keeps going."""
    optimal = 0.01 * 2 ** (2 * _triangle(q / 40))
    return max(0.0, q + max(-0.5, 1 - abs(math.log2(lr / optimal))))


def fixed_lr_progress(lr):
    """``q`` after STEPS steps at a fixed ``lr``: what a FIFO sweep of ``toy`` reports."""
    q = 0.0
    for _ in range(STEPS):
        q = toy_step(q, lr)
    return q


def toy(config):
    q, start = 0.0, 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            with open(os.path.join(d, "state.json")) as f:
                q, start = json.load(f)
    for step in range(start + 1, STEPS + 1):
        q = toy_step(q, config["lr"])
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
        self.q = 0.0

    def step(self):
        self.q = toy_step(self.q, self.config["lr"])
        return {"q": self.q, "lr": self.config["lr"], "pid": os.getpid(),
                "done": self.iteration + 1 >= STEPS}

    def save_checkpoint(self, checkpoint_dir):
        return {"q": self.q}

    def load_checkpoint(self, checkpoint):
        self.q = checkpoint["q"]

    def reset_config(self, new_config):
        # A reused worker starts the next trial here instead of in setup(); an exploit's
        # load_checkpoint follows and restores the donor's progress.
        self.q = 0.0
        return True


def _pbt_sweep(storage, name, trainable, synch, cpu):
    pbt = PopulationBasedTraining(
        time_attr="training_iteration", perturbation_interval=4, synch=synch, resample_probability=0.0,
        hyperparam_mutations={"lr": tune.loguniform(*LR_BOUNDS)})
    with seeded_generators(SEED):
        return fit(tune.with_resources(trainable, {"cpu": cpu}), storage, space={"lr": tune.grid_search(LRS)},
                   name=name, tune_config=tune.TuneConfig(scheduler=pbt, metric="q", mode="max"),
                   checkpoint_config=tune.CheckpointConfig(
                       checkpoint_frequency=4 if trainable is ToyClass else 0, num_to_keep=2))


def _exploits(grid):
    """The policy log's exploits as (target, donor, target's iteration, donor checkpoint's
    iteration, donor's config, new config), trials named by their index in the grid."""
    index = {result.metrics["trial_id"]: i for i, result in enumerate(grid)}
    with open(os.path.join(os.path.dirname(grid[0].path), "pbt_global.txt")) as f:
        policies = [json.loads(line) for line in f if line.strip()]
    return [(index[target], index[donor], at, from_, old, new) for target, donor, at, from_, old, new in policies]


def _check_sweep(grid, workers):
    """What holds for every PBT sweep of the toy, whatever the seed."""
    assert grid.num_errors == 0
    # Each trial ran to its end (a clone of a finished trial's last checkpoint ends at
    # once, so the last line of result.json need not be iteration STEPS).
    assert grid.num_terminated == len(grid)
    rows = [lines(os.path.join(result.path, "result.json")) for result in grid]
    # Exploits start no process: the pooled workers (one per concurrent trial) ran every
    # segment of every trial.
    assert len({row["pid"] for trial_rows in rows for row in trial_rows}) <= workers
    exploits = _exploits(grid)
    assert exploits
    for target, donor, at, from_, old, new in exploits:
        assert target != donor and from_ % 4 == 0 and from_ <= STEPS
        # Explore (never a resample here): the donor's lr times one of the factors.
        assert new["lr"] in (old["lr"] * 1.2, old["lr"] * 0.8)
        assert {k: v for k, v in new.items() if k != "lr"} == {k: v for k, v in old.items() if k != "lr"}
        # No exploit is decided on a trial's done result (PBT is not asked to decide on it),
        # so the clone went on from the donor's checkpoint with the new lr.
        assert not any(row["training_iteration"] == at and row.get("done") for row in rows[target])
        if from_ < STEPS:
            assert any(row["training_iteration"] == from_ + 1 and row["lr"] == new["lr"] for row in rows[target])
    policy_logs = [n for n in os.listdir(os.path.dirname(grid[0].path)) if n.startswith("pbt_policy_")]
    assert len(policy_logs) == len({target for target, *_ in exploits})


def _check_solves_the_toy(grid):
    """PBT follows the moving optimum that stalls every fixed lr.  A function of the seed."""
    best_fixed = max(fixed_lr_progress(lr) for lr in LRS)
    assert best_fixed < 21  # the best fixed lr stalls where the optimum leaves it
    scores = [r.metrics["q"] for r in grid]
    assert max(scores) > 1.75 * best_fixed and min(scores) > best_fixed


@pytest.mark.parametrize("trainable", [toy, ToyClass], ids=["function", "class"])
def test_async_pbt_solves_the_moving_optimum_that_fixed_configs_cannot(storage, trainable):
    grid = _pbt_sweep(storage, "pbt", trainable, False, ONE_AT_A_TIME)
    _check_sweep(grid, workers=1)
    _check_solves_the_toy(grid)


def test_synch_pbt_schedules_the_same_exploits_whatever_runs_at_once(storage):
    together = _pbt_sweep(storage, "together", toy, True, FOUR_AT_ONCE)
    _check_sweep(together, workers=4)
    _check_solves_the_toy(together)
    # Four trials at once reach the synchronisation points in whatever order the workers
    # run; one at a time, in a fixed order.  With one seed, both decide alike.
    alone = _pbt_sweep(storage, "alone", toy, True, ONE_AT_A_TIME)
    assert _exploits(alone) == _exploits(together)
    assert [r.metrics["q"] for r in alone] == [r.metrics["q"] for r in together]
