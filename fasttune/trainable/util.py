"""``ray.tune.trainable.util``'s path, and where the trainable wrappers live:
``with_parameters`` and ``with_resources`` (``fasttune.tune`` re-exports them)."""
from __future__ import annotations

import functools
from typing import Any, Callable, Dict

from fasttune._resources import PlacementGroupFactory, resource_dict_to_pg_factory

__all__ = ["with_parameters", "with_resources"]


class _BoundParameters:
    """Values bound to a trainable: put in Ray's object store once when Ray is running (not
    pickled with the trainable for every worker), else kept as they are."""

    def __init__(self, kwargs: Dict[str, Any]) -> None:
        self._refs: Dict[str, Any] = {}
        try:
            import ray

            if ray.is_initialized():
                self._refs = {key: ray.put(value) for key, value in kwargs.items()}
        except ImportError:  # pragma: no cover - ray is a core dependency
            pass
        self._values = {key: value for key, value in kwargs.items() if key not in self._refs}

    def resolve(self) -> Dict[str, Any]:
        """The keyword arguments to call the trainable with (fetched from the store)."""
        bound = dict(self._values)
        if self._refs:
            import ray

            bound.update(zip(self._refs, ray.get(list(self._refs.values()))))
        return bound


def with_parameters(trainable: Callable[..., Any], **kwargs: Any) -> Callable[[Dict[str, Any]], Any]:
    """Bind extra arguments (e.g. a dataset) to a trainable: ``trainable(config, **kwargs)``.

    When Ray is running, large values go to Ray's object store once instead of being
    pickled with the trainable for every worker.

    Example:
        >>> import fasttune as tune
        >>> def train(config, data=None):
        ...     tune.report({"n": len(data)})
        >>> wrapped = tune.with_parameters(train, data=[1, 2, 3])
    """
    if not callable(trainable):
        raise TypeError(f"with_parameters needs a function, got {type(trainable).__name__}.")
    if isinstance(trainable, type):
        return _class_with_parameters(trainable, kwargs)
    parameters = _BoundParameters(kwargs)

    @functools.wraps(trainable)
    def inner(config: Dict[str, Any]) -> Any:
        return trainable(config, **parameters.resolve())

    del inner.__wrapped__  # keep the one-argument signature visible to wrap_function
    if hasattr(trainable, "_resources"):
        inner._resources = trainable._resources  # type: ignore[attr-defined]
    return inner


def with_resources(trainable: Any, resources: Any) -> Any:
    """Give each trial of ``trainable`` these resources: a dict (``{"cpu": 2, "gpu": 1}``),
    a :class:`PlacementGroupFactory`, or a function of the config returning either.

    Example:
        >>> import fasttune as tune
        >>> def train(config):
        ...     pass
        >>> heavy = tune.with_resources(train, {"cpu": 2})
    """
    if not callable(resources) or isinstance(resources, PlacementGroupFactory):
        resource_dict_to_pg_factory(resources)  # validate now, with a clear error
    if not callable(trainable):
        raise TypeError(f"with_resources needs a trainable function, got {type(trainable).__name__}.")
    if isinstance(trainable, type):
        # A class trainable keeps being a class: a subclass that carries the request.
        return type(trainable.__name__, (trainable,), {"_resources": resources, "__module__": trainable.__module__})

    @functools.wraps(trainable)
    def inner(config: Dict[str, Any], **bound: Any) -> Any:
        # ``bound`` lets with_parameters(with_resources(fn, ...), ...) reach ``fn``.
        return trainable(config, **bound)

    del inner.__wrapped__
    inner._resources = resources  # type: ignore[attr-defined]
    return inner


def _class_with_parameters(cls: type, kwargs: Dict[str, Any]) -> type:
    """A subclass of the class trainable ``cls`` whose ``setup`` gets ``kwargs`` too."""
    parameters = _BoundParameters(kwargs)

    def setup(self: Any, config: Dict[str, Any], **extra: Any) -> Any:
        bound = parameters.resolve()
        bound.update(extra)
        return cls.setup(self, config, **bound)

    return type(cls.__name__, (cls,), {"setup": setup, "__module__": cls.__module__})
