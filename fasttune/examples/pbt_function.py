"""A toy problem for population based training (``ray.tune.examples.pbt_function``).

:func:`pbt_function` trains an "accuracy" that grows fastest when the learning rate
follows a triangle-shaped schedule of the accuracy itself: no fixed ``lr`` gets far, a
population whose ``lr`` is perturbed (PBT, PB2) does.  It behaves as Ray Tune's example:
the same results for the same random draws, the same checkpoints, the same stop.

Run :func:`run_tune_pbt` (``python -m fasttune.examples.pbt_function --smoke-test``).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
from typing import Any, Dict, Optional, Tuple

import numpy as np

import fasttune as tune
from fasttune.schedulers import PopulationBasedTraining

_PEAK_AT = 100  # the optimal lr rises until the accuracy reaches this, then falls
_LR_RANGE = (0.001, 0.01)  # the optimal lr's floor and peak
_TOLERANCE = 3  # an lr within this factor of the optimum makes progress
_NOISE = 2  # standard deviation of the accuracy's noise per step
_CHECKPOINT_FILE = "checkpoint.json"


def _optimal_lr(accuracy: float) -> float:
    low, peak = _LR_RANGE
    if accuracy < _PEAK_AT:
        best = peak * accuracy / _PEAK_AT
    else:
        best = peak - peak * (accuracy - _PEAK_AT) / _PEAK_AT
    return min(peak, max(low, best))


def _step(accuracy: float, lr: float) -> Tuple[float, float, float]:
    """The next accuracy, with the optimal lr and the lr's error factor it came from."""
    optimal = _optimal_lr(accuracy)
    error = max(lr, optimal) / min(lr, optimal)
    if error < _TOLERANCE:
        accuracy += (1.0 / error) * random.random()
    elif lr > optimal:  # far too high an lr undoes progress; far too low just stalls
        accuracy -= (error - _TOLERANCE) * random.random()
    accuracy += _NOISE * np.random.normal()
    return max(0, accuracy), optimal, error


def _resume() -> Tuple[float, int]:
    """The accuracy and step to go on from: the trial's checkpoint's, else a fresh start."""
    checkpoint = tune.get_checkpoint()
    if not checkpoint:
        return 0.0, 1
    with checkpoint.as_directory() as directory:
        with open(os.path.join(directory, _CHECKPOINT_FILE)) as f:
            saved = json.load(f)
    return saved["acc"], saved["step"] + 1


def pbt_function(config: Dict[str, Any]) -> None:
    """Reports ``mean_accuracy`` (with ``cur_lr``, ``optimal_lr``, ``q_err`` and ``done``)
    once a step until the accuracy passes 200 (``done`` turns true); saves a checkpoint
    every ``config["checkpoint_interval"]`` steps (default 1) and resumes from one.
    """
    lr = config["lr"]
    interval = config.get("checkpoint_interval", 1)
    accuracy, step = _resume()
    while True:
        accuracy, optimal, error = _step(accuracy, lr)
        metrics = {"mean_accuracy": accuracy, "cur_lr": lr, "optimal_lr": optimal, "q_err": error,
                   "done": accuracy > 2 * _PEAK_AT}
        # Steps count from 1 so that checkpoints fall on the iterations PBT perturbs at.
        if step % interval == 0:
            with tempfile.TemporaryDirectory() as directory:
                with open(os.path.join(directory, _CHECKPOINT_FILE), "w") as f:
                    json.dump({"acc": accuracy, "step": step}, f)
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
        else:
            tune.report(metrics)
        step += 1


def run_tune_pbt(smoke_test: bool = False) -> Optional[Any]:
    """Eight trials of :func:`pbt_function` under population based training, as Ray Tune's
    example runs them (10 iterations each with ``smoke_test``); prints the best config and
    returns the ``ResultGrid``."""
    interval = 5
    scheduler = PopulationBasedTraining(
        time_attr="training_iteration",
        perturbation_interval=interval,
        hyperparam_mutations={"lr": tune.uniform(0.0001, 0.02), "some_other_factor": [1, 2]},
    )
    tuner = tune.Tuner(
        pbt_function,
        run_config=tune.RunConfig(
            name="pbt_function_api_example",
            verbose=False,
            stop={"done": True, "training_iteration": 10 if smoke_test else 1000},
            failure_config=tune.FailureConfig(fail_fast=True),
            checkpoint_config=tune.CheckpointConfig(checkpoint_score_attribute="mean_accuracy", num_to_keep=2),
        ),
        tune_config=tune.TuneConfig(scheduler=scheduler, metric="mean_accuracy", mode="max", num_samples=8,
                                    reuse_actors=True),
        # some_other_factor is perturbed but unused; checkpoint_interval matches the
        # perturbation interval so that an exploited trial resumes from a fresh checkpoint.
        param_space={"lr": 0.0001, "some_other_factor": 1, "checkpoint_interval": interval},
    )
    results = tuner.fit()
    print("Best hyperparameters found were: ", results.get_best_result().config)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke-test", action="store_true", default=False, help="Finish quickly for testing")
    arguments, _ = parser.parse_known_args()
    run_tune_pbt(smoke_test=arguments.smoke_test)
