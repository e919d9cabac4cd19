"""The one ``json.dumps(default=...)`` fallback that config and log writers share."""
from __future__ import annotations

from typing import Any


def json_default(value: Any) -> Any:
    """numpy scalars and arrays as their Python values; anything else as its ``str``.

    Example:
        >>> import json, numpy as np
        >>> json.dumps({"lr": np.float32(0.5), "dims": np.arange(2)}, default=json_default)
        '{"lr": 0.5, "dims": [0, 1]}'
    """
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        try:
            return item()
        except (TypeError, ValueError):
            pass
    tolist = getattr(value, "tolist", None)  # numpy arrays
    if callable(tolist):
        return tolist()
    return str(value)
