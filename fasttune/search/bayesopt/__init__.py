"""``BayesOptSearch`` (``ray.tune.search.bayesopt``), defined in :mod:`fasttune.search.bayesopt.bayesopt_search`.

Importing this package does not import bayesian-optimization: that happens when a
``BayesOptSearch`` is built.
"""
from fasttune.search.bayesopt.bayesopt_search import BayesOptSearch

__all__ = ["BayesOptSearch"]
