"""Pickling that leaves an object's attribute reads fast.

In CPython 3.11 an object's attributes live in its "inline values" until something reads its
``__dict__`` (pickling does); the dict made then is one whose attribute reads the interpreter
no longer specialises, about three times slower for good.  Objects read on every trial of a
sweep (the scheduler, the experiment, a blackbox) and pickled with each snapshot swap that
dict for a plain copy of their own, which reads as fast as the inline values.
"""
from __future__ import annotations

from typing import Any, Dict

__all__ = ["OwnDictPickling"]


class OwnDictPickling:
    """Mixin: pickled (or copied) as a plain object is, state and all, with a dict of its
    own afterwards on both sides.

    Example:
        >>> import copy
        >>> class Point(OwnDictPickling):
        ...     def __init__(self, x):
        ...         self.x = x
        >>> point = Point(3)
        >>> copied = copy.deepcopy(point)
        >>> (copied.x, point.x, copied.__dict__ is point.__dict__)
        (3, 3, False)
    """

    def __getstate__(self) -> Dict[str, Any]:
        state = self.__dict__
        self.__dict__ = dict(state)
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__ = dict(state)
