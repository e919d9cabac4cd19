"""``OptunaSearch`` (``ray.tune.search.optuna``), defined in :mod:`fasttune.search.optuna.optuna_search`.

Importing this package does not import Optuna: that happens when an ``OptunaSearch`` is built.
"""
from fasttune.search.optuna.optuna_search import OptunaSearch

__all__ = ["OptunaSearch"]
