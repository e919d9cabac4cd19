"""Trial schedulers (``ray.tune.schedulers``)."""
from fasttune.schedulers.trial_scheduler import DecisionPoints, FIFOScheduler, TrialScheduler

__all__ = ["TrialScheduler", "FIFOScheduler", "DecisionPoints"]
