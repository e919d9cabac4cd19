"""Nested result dicts as flat ``"a/b"`` keys, as Ray Tune hands them to policies, and
looking a ``"a/b"`` key up in a nested dict."""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional


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


def lookup_nested(value: Optional[Mapping[str, Any]], key: str, default: Any = None) -> Any:
    """``value[key]``, else the value at the path ``key`` names with "/" (``"a/b"`` is
    ``value["a"]["b"]``, through dicts only); ``default`` when neither is there.

    A literal key wins, so ``"a/b"`` reported as one key is found as it is.  What the
    path reaches is returned even when it is a dict.  ``value`` may be None or empty
    (a trial with no result yet).  The runner, the schedulers, checkpoint retention and
    the progress view look result keys up this way.

    Example:
        >>> result = {"val": {"loss": 0.5}, "a/b": 1}
        >>> lookup_nested(result, "val/loss"), lookup_nested(result, "a/b"), lookup_nested(result, "val")
        (0.5, 1, {'loss': 0.5})
        >>> lookup_nested(result, "val/acc"), lookup_nested(None, "x", default=0)
        (None, 0)
    """
    if not value:
        return default
    if key in value:
        return value[key]
    found: Any = value
    for part in key.split("/"):
        if not isinstance(found, dict) or part not in found:
            return default
        found = found[part]
    return found


def lookup_flattened(row: Optional[Dict[str, Any]], key: str, default: Any = None) -> Any:
    """``row[key]``, else what :func:`flatten_dict` of ``row`` holds under ``key``;
    ``default`` when neither is there.

    Unlike :func:`lookup_nested`, below the top level it finds leaves only (the
    columns of a results table), and it finds a nested key that itself holds "/"
    (``{"val": {"top/1": 0.9}}`` under ``"val/top/1"``).  Result readers
    (``ResultGrid``, the CLI) look metrics up this way, as they name them after the
    flattened columns.

    Example:
        >>> row = {"val": {"top/1": 0.9, "loss": {"mean": 0.5}}}
        >>> lookup_flattened(row, "val/top/1"), lookup_nested(row, "val/top/1")
        (0.9, None)
        >>> lookup_flattened(row, "val/loss"), lookup_nested(row, "val/loss")
        (None, {'mean': 0.5})
    """
    if not row:
        return default
    if key in row:
        return row[key]
    return flatten_dict(row).get(key, default)
