"""Per-trial resource requests (``ray.tune.execution.placement_groups``).

Defined in :mod:`fasttune._resources`, below the experiment and execution layers.
"""
from fasttune._resources import PlacementGroupFactory, resource_dict_to_pg_factory

__all__ = ["PlacementGroupFactory", "resource_dict_to_pg_factory"]
