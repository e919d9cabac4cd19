"""Running trials: the event loop and the Ray executor (``ray.tune.execution``).

Its names load on first use: a Ray worker imports ``fasttune.execution._worker`` and
none of the driver's event loop."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, List

_PUBLIC = {
    "PlacementGroupFactory": "fasttune.execution.placement_groups",
    "RayTrialExecutor": "fasttune.execution.ray_trial_executor",
    "TrialExecutor": "fasttune.execution.trial_executor",
    "TrialRunner": "fasttune.execution.trial_runner",
}

__all__ = list(_PUBLIC)


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # what the names are, for type checkers and editors
    from fasttune.execution.placement_groups import PlacementGroupFactory  # noqa: F401
    from fasttune.execution.ray_trial_executor import RayTrialExecutor  # noqa: F401
    from fasttune.execution.trial_executor import TrialExecutor  # noqa: F401
    from fasttune.execution.trial_runner import TrialRunner  # noqa: F401
