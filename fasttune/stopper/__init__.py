"""Stoppers: rules that end trials, or the whole experiment, from their results
(``ray.tune.stopper``, with its submodules).

A plain ``stop={"training_iteration": 10}`` dict travels to the worker, so a trial stops
exactly at its threshold without a round trip.  A :class:`Stopper` runs in the driver
and may see every trial; trials then wait for it after every result.
"""
from fasttune.stopper.experiment_plateau import ExperimentPlateauStopper
from fasttune.stopper.function_stopper import FunctionStopper
from fasttune.stopper.maximum_iteration import MaximumIterationStopper
from fasttune.stopper.noop import NoopStopper
from fasttune.stopper.stopper import CombinedStopper, Stopper
from fasttune.stopper.timeout import TimeoutStopper
from fasttune.stopper.trial_plateau import TrialPlateauStopper

__all__ = [
    "Stopper",
    "CombinedStopper",
    "ExperimentPlateauStopper",
    "FunctionStopper",
    "MaximumIterationStopper",
    "NoopStopper",
    "TimeoutStopper",
    "TrialPlateauStopper",
]
