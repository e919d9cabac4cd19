"""Search spaces and search algorithms (``ray.tune.search``).

Example:
    >>> from fasttune.search import BasicVariantGenerator, grid_search, uniform
    >>> space = {"lr": uniform(1e-3, 1e-1), "layers": grid_search([1, 2])}
    >>> BasicVariantGenerator(random_state=0).total_samples
    0
"""
from fasttune.search._registry import create_searcher
from fasttune.search.basic_variant import BasicVariantGenerator
from fasttune.search.concurrency_limiter import ConcurrencyLimiter
from fasttune.search.repeater import Repeater
from fasttune.search.sample import (
    Categorical,
    Domain,
    Float,
    Function,
    Integer,
    choice,
    grid_search,
    lograndint,
    loguniform,
    qlograndint,
    qloguniform,
    qrandint,
    qrandn,
    quniform,
    randint,
    randn,
    sample_from,
    uniform,
)
from fasttune.search.search_algorithm import SearchAlgorithm
from fasttune.search.search_generator import SearchGenerator
from fasttune.search.searcher import Searcher

__all__ = [
    "BasicVariantGenerator",
    "SearchAlgorithm",
    "Searcher",
    "SearchGenerator",
    "ConcurrencyLimiter",
    "Repeater",
    "create_searcher",
    "Domain",
    "Float",
    "Integer",
    "Categorical",
    "Function",
    "choice",
    "grid_search",
    "lograndint",
    "loguniform",
    "qlograndint",
    "qloguniform",
    "qrandint",
    "qrandn",
    "quniform",
    "randint",
    "randn",
    "sample_from",
    "uniform",
]
