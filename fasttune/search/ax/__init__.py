"""``AxSearch`` (``ray.tune.search.ax``), defined in :mod:`fasttune.search.ax.ax_search`.

Importing this package does not import Ax: that happens when an ``AxSearch`` is built.
"""
from fasttune.search.ax.ax_search import AxSearch

__all__ = ["AxSearch"]
