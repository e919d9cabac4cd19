"""Experiments and trials (``ray.tune.experiment``)."""
from fasttune.experiment.experiment import Experiment
from fasttune.experiment.trial import Trial

__all__ = ["Experiment", "Trial"]
