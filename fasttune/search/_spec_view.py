"""What a ``sample_from`` function sees: a read-only view of the spec being resolved.

Values can be read as items or attributes (``spec.config.lr``).  Reading a value
that is still unresolved raises :class:`RecursiveDependencyError`, which the
variant generator catches to retry the function once that value is drawn.  What
counts as unresolved (a search-space domain, a grid search) is decided by the
caller's ``is_unresolved``, so this module needs nothing from the domains.

Example:
    >>> from fasttune.search._spec_view import spec_view
    >>> view = spec_view({"config": {"width": 8, "depth": "?"}}, is_unresolved=lambda v: v == "?")
    >>> view.config.width, view["config"]["width"], view.width  # a missing key is looked up in config
    (8, 8, 8)
    >>> view.config.depth
    Traceback (most recent call last):
    ...
    fasttune.search._spec_view.RecursiveDependencyError: 'config/depth' is not resolved yet
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Hashable, Iterator, List, Sequence, Tuple

from fasttune.search._paths import Path, path_str

__all__ = ["ListView", "RecursiveDependencyError", "SpecView", "spec_view"]

IsUnresolved = Callable[[Any], bool]


class RecursiveDependencyError(Exception):
    """A ``sample_from`` function read a value that is not resolved yet.

    Attributes:
        path: Where the unresolved value sits, e.g. ``("config", "lr")``.
    """

    def __init__(self, msg: str, path: Path = ()) -> None:
        super().__init__(msg)
        self.path = path


class _MissingKeyError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def _guard(value: Any, path: Path, is_unresolved: IsUnresolved) -> Any:
    if is_unresolved(value):
        raise RecursiveDependencyError(f"'{path_str(path)}' is not resolved yet", path)
    if isinstance(value, dict):
        return SpecView(value, path, False, is_unresolved)
    if isinstance(value, (list, tuple)):
        return ListView(value, path, is_unresolved)
    return value


class SpecView(dict):
    """A read-only view of the spec handed to ``sample_from`` functions.

    At the top, ``spec.config`` is the spec itself when it has no ``"config"``
    key, and a missing key is looked up in ``spec["config"]``, so functions
    written as ``lambda config: config["x"]`` work too.
    """

    __slots__ = ("_path", "_root", "_is_unresolved")

    def __init__(self, source: Mapping, path: Path, root: bool, is_unresolved: IsUnresolved) -> None:
        super().__init__(source)
        self._path = path
        self._root = root
        self._is_unresolved = is_unresolved

    def __getattribute__(self, name: str) -> Any:
        # Keys win over dict methods, so a parameter called "values" or
        # "items" reads as the parameter, as in Ray Tune.
        if not name.startswith("_") and dict.__contains__(self, name):
            return self._lookup(name, attribute=True)
        return super().__getattribute__(name)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self._lookup(name, attribute=True)

    def __getitem__(self, key: Hashable) -> Any:
        return self._lookup(key, attribute=False)

    def get(self, key: Hashable, default: Any = None) -> Any:
        try:
            return self._lookup(key, attribute=False)
        except _MissingKeyError:
            return default

    def items(self) -> List[Tuple[Hashable, Any]]:  # type: ignore[override]
        return [(key, self._lookup(key, attribute=False)) for key in dict.keys(self)]

    def values(self) -> List[Any]:  # type: ignore[override]
        return [self._lookup(key, attribute=False) for key in dict.keys(self)]

    def _lookup(self, key: Hashable, attribute: bool) -> Any:
        if dict.__contains__(self, key):
            return _guard(dict.__getitem__(self, key), self._path + (key,), self._is_unresolved)
        if self._root:
            config = dict.get(self, "config")
            if key == "config" and config is None:
                return SpecView(dict(dict.items(self)), (), False, self._is_unresolved)
            if isinstance(config, dict) and key in config:
                return _guard(config[key], ("config", key), self._is_unresolved)
        where = path_str(self._path + (key,))
        available = ", ".join(repr(k) for k in dict.keys(self)) or "none"
        message = f"sample_from read '{where}', which is not in the spec (keys here: {available})."
        if attribute:
            raise AttributeError(message)
        raise _MissingKeyError(message)


class ListView(list):
    """The list counterpart of :class:`SpecView`."""

    __slots__ = ("_path", "_is_unresolved")

    def __init__(self, source: Sequence, path: Path, is_unresolved: IsUnresolved) -> None:
        super().__init__(source)
        self._path = path
        self._is_unresolved = is_unresolved

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            positions = range(*index.indices(len(self)))
            return [_guard(list.__getitem__(self, i), self._path + (i,), self._is_unresolved) for i in positions]
        position = index + len(self) if index < 0 else index
        return _guard(list.__getitem__(self, index), self._path + (position,), self._is_unresolved)

    def __iter__(self) -> Iterator[Any]:
        for i, item in enumerate(list.__iter__(self)):
            yield _guard(item, self._path + (i,), self._is_unresolved)


def spec_view(spec: Mapping, is_unresolved: IsUnresolved) -> SpecView:
    """The view of a whole spec, as a ``sample_from`` function receives it.

    Args:
        spec: The spec being resolved (not copied; the view reads it live).
        is_unresolved: Whether a value still has to be drawn; reading one raises
            :class:`RecursiveDependencyError`.
    """
    return SpecView(spec, (), True, is_unresolved)
