"""Running trials: the event loop and the Ray executor (``ray.tune.execution``)."""
from fasttune.execution.placement_groups import PlacementGroupFactory
from fasttune.execution.ray_trial_executor import RayTrialExecutor
from fasttune.execution.trial_executor import TrialExecutor
from fasttune.execution.trial_runner import TrialRunner

__all__ = ["PlacementGroupFactory", "RayTrialExecutor", "TrialExecutor", "TrialRunner"]
