"""``NevergradSearch`` (``ray.tune.search.nevergrad``), defined in :mod:`fasttune.search.nevergrad.nevergrad_search`.

Importing this package does not import Nevergrad: that happens when a ``NevergradSearch`` is built.
"""
from fasttune.search.nevergrad.nevergrad_search import NevergradSearch

__all__ = ["NevergradSearch"]
