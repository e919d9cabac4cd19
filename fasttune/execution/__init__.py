"""Running trials: the event loop and the Ray executor (``ray.tune.execution``).

Its names load on first use: a Ray worker imports ``fasttune.execution._worker`` and
none of the driver's event loop."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, List

from fasttune._lazy import load_attribute

_PUBLIC = {
    "PlacementGroupFactory": "fasttune.execution.placement_groups",
    "RayTrialExecutor": "fasttune.execution.ray_trial_executor",
    "TrialExecutor": "fasttune.execution.trial_executor",
    "TrialRunner": "fasttune.execution.trial_runner",
}

__all__ = list(_PUBLIC)


def __getattr__(name: str) -> Any:
    value = load_attribute(__name__, _PUBLIC, name)
    if name in _PUBLIC:
        globals()[name] = value  # later uses find it without this call
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # what the names are, for type checkers and editors
    from fasttune.execution.placement_groups import PlacementGroupFactory  # noqa: F401
    from fasttune.execution.ray_trial_executor import RayTrialExecutor  # noqa: F401
    from fasttune.execution.trial_executor import TrialExecutor  # noqa: F401
    from fasttune.execution.trial_runner import TrialRunner  # noqa: F401
