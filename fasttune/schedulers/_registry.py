"""``create_scheduler``: a scheduler by its Ray Tune name (``ray.tune.create_scheduler``).

Example:
    >>> from fasttune.schedulers import create_scheduler
    >>> asha = create_scheduler("asha", metric="loss", mode="min", max_t=27, reduction_factor=3)
    >>> type(asha).__name__
    'AsyncHyperBandScheduler'
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, Dict, Tuple

from fasttune.schedulers.trial_scheduler import TrialScheduler

# name -> (module, class); modules are imported only when their scheduler is asked for.
_SCHEDULERS: Dict[str, Tuple[str, str]] = {
    "fifo": ("fasttune.schedulers.trial_scheduler", "FIFOScheduler"),
    "async_hyperband": ("fasttune.schedulers.async_hyperband", "AsyncHyperBandScheduler"),
    "asha": ("fasttune.schedulers.async_hyperband", "AsyncHyperBandScheduler"),
    "median_stopping_rule": ("fasttune.schedulers.median_stopping_rule", "MedianStoppingRule"),
    "hyperband": ("fasttune.schedulers.hyperband", "HyperBandScheduler"),
    "hb_bohb": ("fasttune.schedulers.hb_bohb", "HyperBandForBOHB"),
    "pbt": ("fasttune.schedulers.pbt", "PopulationBasedTraining"),
    "pbt_replay": ("fasttune.schedulers.pbt", "PopulationBasedTrainingReplay"),
    "pb2": ("fasttune.schedulers.pb2", "PB2"),
    "resource_changing": ("fasttune.schedulers.resource_changing_scheduler", "ResourceChangingScheduler"),
}

SCHEDULER_NAMES = tuple(_SCHEDULERS)


def scheduler_class(name: str) -> Callable[..., TrialScheduler]:
    """The class registered as ``name`` (imported on first use)."""
    if not isinstance(name, str):
        raise TypeError(
            f"create_scheduler takes a scheduler name (str), got {type(name).__name__}; valid "
            f"names: {', '.join(SCHEDULER_NAMES)}."
        )
    key = name.lower()
    if key not in _SCHEDULERS:
        raise ValueError(
            f"Unknown scheduler {name!r}; valid names: {', '.join(SCHEDULER_NAMES)}."
        )
    module_name, class_name = _SCHEDULERS[key]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise  # a dependency of that module is missing: its own message says which
        raise ValueError(
            f"Scheduler {name!r} ({class_name}) is not available in this fasttune build "
            f"({module_name} is missing); use one of "
            f"{', '.join(n for n, (m, _) in _SCHEDULERS.items() if m != module_name)}."
        ) from exc
    return getattr(module, class_name)


def create_scheduler(scheduler: str, **kwargs: Any) -> TrialScheduler:
    """Create a scheduler from its name, as in Ray Tune: ``"fifo"``, ``"async_hyperband"``
    (or ``"asha"``), ``"median_stopping_rule"``, ``"hyperband"``, ``"hb_bohb"``, ``"pbt"``,
    ``"pbt_replay"``, ``"pb2"``, ``"resource_changing"``; ``kwargs`` go to its constructor.
    """
    return scheduler_class(scheduler)(**kwargs)


__all__ = ["create_scheduler", "SCHEDULER_NAMES"]
