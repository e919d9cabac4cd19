"""Experiments and trials (``ray.tune.experiment``)."""
from fasttune.experiment.experiment import Experiment
from fasttune.experiment.experiment import convert_to_experiment_list as _convert_to_experiment_list
from fasttune.experiment.trial import Trial

__all__ = ["Experiment", "_convert_to_experiment_list", "Trial"]
