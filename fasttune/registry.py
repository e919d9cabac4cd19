"""Names for trainables and environments, as in ``ray.tune.registry``.

The registry lives in the driver.  Trainables travel to workers by value (cloudpickle,
once per worker); environment creators travel with them, so ``get_env_creator`` works
inside a trial too.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Dict, Optional

from fasttune.error import TuneError
from fasttune.trainable.function_trainable import FunctionTrainable

TRAINABLE_CLASS = "trainable_class"
ENV_CREATOR = "env_creator"
# Ray Tune's categories less RLlib's (models, preprocessors, inputs...: nothing in fasttune
# reads them) and its pickling check (fasttune's registry keeps values as they are).
KNOWN_CATEGORIES = [TRAINABLE_CLASS, ENV_CREATOR]


class _Registry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: Dict[str, Dict[str, Any]] = {c: {} for c in KNOWN_CATEGORIES}

    def register(self, category: str, key: str, value: Any) -> None:
        if category not in KNOWN_CATEGORIES:
            raise TuneError(f"Unknown registry category {category!r}; use one of {KNOWN_CATEGORIES}.")
        with self._lock:
            self._items[category][key] = value

    def contains(self, category: str, key: str) -> bool:
        return key in self._items[category]

    def get(self, category: str, key: str) -> Any:
        try:
            return self._items[category][key]
        except KeyError:
            known = sorted(self._items[category])
            what = "trainable" if category == TRAINABLE_CLASS else "environment"
            fix = (
                f"register it with tune.register_trainable({key!r}, fn) or pass the function itself"
                if category == TRAINABLE_CLASS
                else f"register it with tune.register_env({key!r}, creator)"
            )
            raise TuneError(
                f"Unknown {what} {key!r}: {fix}. Registered: {known or 'none'}."
            ) from None

    def items(self, category: str) -> Dict[str, Any]:
        with self._lock:
            return dict(self._items[category])


_global_registry = _Registry()


def register_trainable(name: str, trainable: Any, warn: bool = True) -> None:
    """Register a trainable under ``name`` so ``Tuner(name, ...)`` can refer to it.

    Example:
        >>> import fasttune as tune
        >>> def train(config):
        ...     tune.report({"x": 1})
        >>> tune.register_trainable("my_train", train)
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"register_trainable needs a non-empty string name, got {name!r}.")
    if not callable(trainable):
        raise TypeError(
            f"register_trainable({name!r}, ...) needs a function or Trainable class, "
            f"got {type(trainable).__name__}."
        )
    _global_registry.register(TRAINABLE_CLASS, name, trainable)


def register_under_free_name(name: str, trainable: Any) -> str:
    """Register ``trainable`` under ``name``, or ``name_2``, ``name_3``, ... when another
    trainable holds it (two functions may share a name); returns the name it has.

    Example:
        >>> def train(config): pass
        >>> register_under_free_name("free_name_example", train)
        'free_name_example'
        >>> register_under_free_name("free_name_example", lambda config: None)
        'free_name_example_2'
    """
    base, suffix = name, 1
    while _global_registry.contains(TRAINABLE_CLASS, name) and get_trainable_cls(name) is not trainable:
        suffix += 1
        name = f"{base}_{suffix}"
    _global_registry.register(TRAINABLE_CLASS, name, trainable)
    return name


def register_env(name: str, env_creator: Callable[[Dict[str, Any]], Any]) -> None:
    """Register an environment creator ``env_creator(env_config) -> env`` under ``name``."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"register_env needs a non-empty string name, got {name!r}.")
    if not callable(env_creator):
        raise TypeError(f"register_env({name!r}, ...) needs a callable, got {type(env_creator).__name__}.")
    _global_registry.register(ENV_CREATOR, name, env_creator)


def get_trainable_cls(trainable_name: str) -> Any:
    """The trainable registered under ``trainable_name``; a clear TuneError when there is none."""
    return _global_registry.get(TRAINABLE_CLASS, trainable_name)


def validate_trainable(trainable_name: str) -> None:
    """Raise a TuneError naming ``trainable_name`` when no trainable is registered under it
    (RLlib's algorithm names count only once registered: fasttune does not register them).

    Example:
        >>> validate_trainable("no_such_trainable")
        Traceback (most recent call last):
        ...
        fasttune.error.TuneError: Unknown trainable 'no_such_trainable': ...
    """
    get_trainable_cls(trainable_name)


def is_function_trainable(trainable: Any) -> bool:
    """Whether ``trainable`` (a registered name, a function, a callable or a class) runs as a
    function trainable: any callable that is not a class, or a class made by ``wrap_function``.
    A name that is not registered raises a TuneError.

    Example:
        >>> import fasttune as tune
        >>> def train(config):
        ...     pass
        >>> is_function_trainable(train), is_function_trainable(tune.Trainable)
        (True, False)
    """
    if isinstance(trainable, str):
        trainable = get_trainable_cls(trainable)
    if isinstance(trainable, type):
        return issubclass(trainable, FunctionTrainable)
    return callable(trainable)


def get_env_creator(name: str) -> Callable[[Dict[str, Any]], Any]:
    return _global_registry.get(ENV_CREATOR, name)


def env_creators() -> Dict[str, Any]:
    return _global_registry.items(ENV_CREATOR)


def install_env_creators(creators: Optional[Dict[str, Any]]) -> None:
    # Runs in a worker: makes the driver's environments resolvable there.
    for key, value in (creators or {}).items():
        _global_registry.register(ENV_CREATOR, key, value)
