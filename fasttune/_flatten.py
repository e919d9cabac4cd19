"""Nested result dicts as flat ``"a/b"`` keys, as Ray Tune hands them to policies."""
from __future__ import annotations

from typing import Any, Dict


def flatten_dict(value: Dict[str, Any], delimiter: str = "/", prefix: str = "") -> Dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a/b": 1}``; a dict without nested dicts is returned as is.

    Example:
        >>> flatten_dict({"a": {"b": 1}, "c": 2})
        {'a/b': 1, 'c': 2}
    """
    if not prefix and not any(isinstance(v, dict) for v in value.values()):
        return value
    flat: Dict[str, Any] = {}
    for key, item in value.items():
        name = f"{prefix}{delimiter}{key}" if prefix else str(key)
        if isinstance(item, dict) and item:
            flat.update(flatten_dict(item, delimiter, name))
        else:
            flat[name] = item
    return flat
