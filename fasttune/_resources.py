"""What one trial asks of the cluster: its placement-group bundles.

The public home is ``fasttune.execution.placement_groups`` (Ray Tune's
``ray.tune.execution.placement_groups``); the code lives here, below both the
experiment layer (trials carry a request) and the execution layer (the executor
places it), so that neither has to import the other for it.  Imports no Ray.
"""
from __future__ import annotations

import math

from typing import Any, Dict, List, Optional, Tuple

_STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


class PlacementGroupFactory:
    """The resources of one trial as bundles: the first bundle is the trial's own
    worker, the others are for tasks or actors the trainable starts itself.

    Example:
        >>> from fasttune import PlacementGroupFactory
        >>> pgf = PlacementGroupFactory([{"CPU": 1}, {"CPU": 2}])
        >>> pgf.required_resources
        {'CPU': 3.0}
    """

    def __init__(self, bundles: List[Dict[str, float]], strategy: str = "PACK", *args: Any, **kwargs: Any) -> None:
        if not isinstance(bundles, (list, tuple)) or not bundles:
            raise ValueError(
                f"PlacementGroupFactory needs a non-empty list of bundles such as [{{'CPU': 1}}], got {bundles!r}."
            )
        clean: List[Dict[str, float]] = []
        for bundle in bundles:
            if not isinstance(bundle, dict):
                raise ValueError(f"Each bundle must be a dict of resource name to amount, got {bundle!r}.")
            for name, amount in bundle.items():
                if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not amount >= 0 or math.isinf(amount):
                    raise ValueError(f"Resource {name!r} in bundle {bundle!r} must be a finite number >= 0.")
            clean.append({str(k): float(v) for k, v in bundle.items() if v})
        if strategy not in _STRATEGIES:
            raise ValueError(f"Unknown placement strategy {strategy!r}; use one of {_STRATEGIES}.")
        self._bundles = clean
        self._strategy = strategy

    @property
    def bundles(self) -> List[Dict[str, float]]:
        """A copy of the bundles, zero amounts left out; an empty head bundle (the trial's
        worker asks for nothing) stays first, where Ray Tune leaves it out."""
        return [dict(bundle) for bundle in self._bundles]

    @property
    def strategy(self) -> str:
        """How the bundles are placed: ``"PACK"``, ``"SPREAD"``, ``"STRICT_PACK"`` or ``"STRICT_SPREAD"``."""
        return self._strategy

    @property
    def head_bundle_is_empty(self) -> bool:
        """Whether the trial's own worker asks for nothing (only the other bundles need resources)."""
        return not self._bundles[0]

    @property
    def head_cpus(self) -> float:
        """The CPUs of the trial's own worker (the head bundle).

        Example:
            >>> PlacementGroupFactory([{"CPU": 2, "GPU": 1}, {"CPU": 4}]).head_cpus
            2.0
        """
        return self._bundles[0].get("CPU", 0.0)

    def to_placement_group(self) -> Any:
        """A Ray placement group reserving these bundles (needs a running Ray)."""
        from ray.util.placement_group import placement_group

        return placement_group([bundle for bundle in self._bundles if bundle], strategy=self._strategy)

    @property
    def head_bundle(self) -> Dict[str, float]:
        return dict(self._bundles[0])

    @property
    def required_resources(self) -> Dict[str, float]:
        total: Dict[str, float] = {}
        for bundle in self._bundles:
            for name, amount in bundle.items():
                total[name] = total.get(name, 0.0) + amount
        return total

    def shape_key(self) -> Tuple[Any, ...]:
        """Workers are pooled by this key: trials with equal requests share workers."""
        key = self.__dict__.get("_shape_key")  # asked for every trial; an unpickled one computes it anew
        if key is None:
            key = self._shape_key = (self._strategy, tuple(tuple(sorted(b.items())) for b in self._bundles))
        return key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PlacementGroupFactory) and self.shape_key() == other.shape_key()

    def __hash__(self) -> int:
        return hash(self.shape_key())

    def __repr__(self) -> str:
        return f"PlacementGroupFactory({self._bundles!r}, strategy={self._strategy!r})"


_ALIASES = {"cpu": "CPU", "gpu": "GPU", "memory": "memory", "object_store_memory": "object_store_memory"}


def resource_dict_to_pg_factory(spec: Optional[Dict[str, Any]] = None) -> PlacementGroupFactory:
    """``{"cpu": 2, "gpu": 1, "custom": 1}`` (Ray's ``resources_per_trial``) as a factory."""
    if spec is None:
        return PlacementGroupFactory([{"CPU": 1}])
    if isinstance(spec, PlacementGroupFactory):
        return spec
    if not isinstance(spec, dict):
        raise TypeError(
            f"Trial resources must be a dict such as {{'cpu': 1, 'gpu': 0}} or a "
            f"PlacementGroupFactory, got {type(spec).__name__}."
        )
    bundle: Dict[str, float] = {}
    for key, value in spec.items():
        if key in ("custom_resources",) and isinstance(value, dict):
            for name, amount in value.items():
                bundle[name] = float(amount)
            continue
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0 or math.isinf(value):
            raise ValueError(f"Resource {key!r} must be a finite number >= 0, got {value!r}.")
        bundle[_ALIASES.get(key.lower(), key)] = float(value)
    bundle.setdefault("CPU", 1.0)
    return PlacementGroupFactory([bundle])
