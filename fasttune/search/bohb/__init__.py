"""``TuneBOHB`` (``ray.tune.search.bohb``), defined in :mod:`fasttune.search.bohb.bohb_search`.

Importing this package imports neither hpbandster nor ConfigSpace: that happens when a
``TuneBOHB`` is built.
"""
from fasttune.search.bohb.bohb_search import TuneBOHB

__all__ = ["TuneBOHB"]
