"""Up-front checks of a ``param_space``, so a bad value fails before any trial runs.

Example:
    >>> from fasttune.search._validate import validate_param_space
    >>> validate_param_space({"lr": {"grid_search": [0.1, 0.01]}})
    >>> validate_param_space([1, 2])
    Traceback (most recent call last):
    ...
    TypeError: param_space must be a dict of parameter names to values or search-space domains, got list
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Hashable, Tuple

from fasttune._core_shared import MAX_DEPTH
from fasttune.search._grid import GRID_KEY, check_grid_values
from fasttune.search.sample import Categorical, Domain, Function


def where(path: Tuple[Hashable, ...], root: str = "param_space") -> str:
    """``("opt", "lr")`` -> ``param_space["opt"]["lr"]``, the way a user would index it."""
    return root + "".join(f"[{key!r}]" for key in path)


def validate_param_space(space: Any, name: str = "param_space") -> None:
    """Raises ``TypeError``/``ValueError`` naming the first malformed entry of ``space``.

    Args:
        space: A dict of parameter names to constants, nested dicts/lists,
            search-space domains or ``grid_search`` dicts.
        name: What to call ``space`` in messages.
    """
    if not isinstance(space, Mapping):
        raise TypeError(
            f"{name} must be a dict of parameter names to values or search-space domains, "
            f"got {type(space).__name__}"
        )
    _check(space, (), name, 0)


def _too_deep(path: Tuple[Hashable, ...], name: str) -> None:
    # A config is written to params.json and with each result to result.json: as deep as a
    # reported result may be at most, and refused before any recursion goes further.
    shown = where(path[:2], name) + ("..." if len(path) > 2 else "")
    raise ValueError(
        f"{shown} is nested more than {MAX_DEPTH} levels deep; a config may nest as deep as "
        "a reported result, so that the experiment's files can be read back.")


def _check_depth(value: Any, path: Tuple[Hashable, ...], name: str, depth: int) -> None:
    """Only the depth rule of :func:`_check`, for a value a domain holds (a category)."""
    if isinstance(value, Mapping):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return
    if depth > MAX_DEPTH:
        _too_deep(path, name)
    for key, item in items:
        _check_depth(item, path + (key,), name, depth + 1)


def _check(value: Any, path: Tuple[Hashable, ...], name: str, depth: int) -> None:
    """``depth``: how many dicts and lists hold ``value`` in the config it becomes (a grid
    search's values take its place: they are at its depth)."""
    if depth > MAX_DEPTH and isinstance(value, (Mapping, list, tuple)):
        _too_deep(path, name)
    if isinstance(value, Domain):
        if isinstance(value, Function) and not callable(value.func):
            raise TypeError(f"{where(path, name)}: sample_from needs a callable, got {value.func!r}.")
        if isinstance(value, Categorical):
            # A category takes the domain's place in the config: it may nest as deep.
            for index, category in enumerate(value.categories):
                _check_depth(category, path + (index,), name, depth)
        return
    if isinstance(value, dict) and GRID_KEY in value:
        if len(value) != 1:
            others = sorted(str(k) for k in value if k != GRID_KEY)
            raise ValueError(
                f"{where(path, name)} mixes 'grid_search' with other keys {others}; a grid search "
                "is a dict with the single key 'grid_search', as grid_search([...]) returns."
            )
        check_grid_values(value[GRID_KEY], where(path, name))
        for index, item in enumerate(value[GRID_KEY]):
            _check(item, path + (GRID_KEY, index), name, depth)
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            _check(item, path + (key,), name, depth + 1)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check(item, path + (index,), name, depth + 1)
