"""Where a value sits inside a nested spec: a tuple of dict keys and list indices.

Example:
    >>> from fasttune.search._paths import path_str
    >>> path_str(("config", "layers", 0))
    'config/layers/0'
"""
from __future__ import annotations

from typing import Hashable, Tuple

Path = Tuple[Hashable, ...]

__all__ = ["Path", "path_str"]


def path_str(path: Path) -> str:
    """The path as messages show it, ``a/b/0``."""
    return "/".join(str(piece) for piece in path)
