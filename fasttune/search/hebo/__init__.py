"""``HEBOSearch`` (``ray.tune.search.hebo``), defined in :mod:`fasttune.search.hebo.hebo_search`.

Importing this package does not import HEBO: that happens when a ``HEBOSearch`` is built.
"""
from fasttune.search.hebo.hebo_search import HEBOSearch

__all__ = ["HEBOSearch"]
