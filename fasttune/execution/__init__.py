"""Running trials: the event loop and the Ray executor (``ray.tune.execution``).

Its names load on first use: a Ray worker imports ``fasttune.execution._worker`` and
none of the driver's event loop."""
from __future__ import annotations

from typing import TYPE_CHECKING

from fasttune._lazy import module_hooks

_PUBLIC = {
    "PlacementGroupFactory": "fasttune.execution.placement_groups",
    "RayTrialExecutor": "fasttune.execution.ray_trial_executor",
    "TrialExecutor": "fasttune.execution.trial_executor",
    "TrialRunner": "fasttune.execution.trial_runner",
}

__all__ = list(_PUBLIC)


__getattr__, __dir__ = module_hooks(globals(), _PUBLIC)

if TYPE_CHECKING:  # what the names are, for type checkers and editors
    from fasttune.execution.placement_groups import PlacementGroupFactory  # noqa: F401
    from fasttune.execution.ray_trial_executor import RayTrialExecutor  # noqa: F401
    from fasttune.execution.trial_executor import TrialExecutor  # noqa: F401
    from fasttune.execution.trial_runner import TrialRunner  # noqa: F401
