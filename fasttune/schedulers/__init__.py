"""Trial schedulers (``ray.tune.schedulers``).

Example:
    >>> from fasttune.schedulers import ASHAScheduler, create_scheduler
    >>> type(create_scheduler("asha")) is ASHAScheduler
    True
"""
from typing import Any

from fasttune.schedulers._registry import create_scheduler
from fasttune.schedulers.async_hyperband import ASHAScheduler, AsyncHyperBandScheduler
from fasttune.schedulers.hyperband import HyperBandScheduler
from fasttune.schedulers.median_stopping_rule import MedianStoppingRule
from fasttune.schedulers.trial_scheduler import DecisionPoints, FIFOScheduler, TrialScheduler

# Imported on first access, so this package works before (and without) those modules.
_LAZY = {
    "PopulationBasedTraining": "fasttune.schedulers.pbt",
    "PopulationBasedTrainingReplay": "fasttune.schedulers.pbt",
    "PB2": "fasttune.schedulers.pb2",
    "HyperBandForBOHB": "fasttune.schedulers.hb_bohb",
    "ResourceChangingScheduler": "fasttune.schedulers.resource_changing_scheduler",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "TrialScheduler",
    "FIFOScheduler",
    "DecisionPoints",
    "AsyncHyperBandScheduler",
    "ASHAScheduler",
    "HyperBandScheduler",
    "HyperBandForBOHB",
    "MedianStoppingRule",
    "create_scheduler",
]
