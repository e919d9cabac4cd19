"""``HyperOptSearch`` (``ray.tune.search.hyperopt``), defined in :mod:`fasttune.search.hyperopt.hyperopt_search`.

Importing this package does not import HyperOpt: that happens when a ``HyperOptSearch`` is built.
"""
from fasttune.search.hyperopt.hyperopt_search import HyperOptSearch

__all__ = ["HyperOptSearch"]
