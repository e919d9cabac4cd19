"""Analysing finished experiments (``ray.tune.analysis``)."""
from fasttune.analysis.experiment_analysis import ExperimentAnalysis

__all__ = ["ExperimentAnalysis"]
