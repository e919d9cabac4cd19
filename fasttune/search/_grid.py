"""The grid-search form ``{"grid_search": [...]}`` that ``grid_search()`` returns.

Example:
    >>> from fasttune.search._grid import check_grid_values, is_grid_dict
    >>> is_grid_dict({"grid_search": [1, 2]}), is_grid_dict({"grid_search": [1], "x": 2})
    (True, False)
    >>> check_grid_values([], at="param_space['lr']")
    Traceback (most recent call last):
    ...
    ValueError: param_space['lr']: grid_search needs at least one value; an empty grid would produce no trials.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

GRID_KEY = "grid_search"

__all__ = ["GRID_KEY", "check_grid_values", "is_grid_dict"]


def check_grid_values(values: Any, at: str = "") -> None:
    """Raises if ``values`` cannot be the values of a grid search.

    Args:
        values: What was given as the grid-search values.
        at: Where the grid search sits, prefixed to the message.
    """
    prefix = f"{at}: " if at else ""
    if isinstance(values, (str, bytes, Mapping, set, frozenset)) or not (
        isinstance(values, (Sequence, np.ndarray))
    ):
        raise TypeError(
            f"{prefix}grid_search needs a list of values to try, e.g. grid_search([1, 2, 3]); "
            f"got {type(values).__name__} {values!r}."
        )
    if len(values) == 0:
        raise ValueError(
            f"{prefix}grid_search needs at least one value; an empty grid would produce no trials."
        )


def is_grid_dict(value: Any) -> bool:
    """Whether ``value`` is the ``{"grid_search": [...]}`` form ``grid_search()`` returns."""
    return isinstance(value, dict) and len(value) == 1 and GRID_KEY in value
