"""``ZOOptSearch`` (``ray.tune.search.zoopt``), defined in :mod:`fasttune.search.zoopt.zoopt_search`.

Importing this package does not import zoopt: that happens when a ``ZOOptSearch`` is built.
"""
from fasttune.search.zoopt.zoopt_search import ZOOptSearch

__all__ = ["ZOOptSearch"]
