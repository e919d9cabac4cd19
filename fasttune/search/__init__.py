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

# Message templates for searchers (Ray Tune's names and ``str.format`` fields), for a
# searcher's own errors: ``UNDEFINED_METRIC_MODE.format(cls=..., metric=..., mode=...)``.
UNRESOLVED_SEARCH_SPACE = (
    "{cls} got a `{par}` holding search-space domains (tune.uniform, tune.choice, ...), which it "
    "cannot convert. Give {cls} a space in its own format, or pass the domains as the "
    "`param_space` of tune.Tuner() and {cls} converts them."
)
UNDEFINED_SEARCH_SPACE = (
    "{cls} was asked for a configuration but has no search space. Pass `{space}` to {cls}, "
    "or a `param_space` to tune.Tuner()."
)
UNDEFINED_METRIC_MODE = (
    "{cls} was asked for a configuration but its metric ({metric}) or mode ({mode}) is not "
    "set. Pass them to {cls}, or to tune.TuneConfig()."
)

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
    "UNRESOLVED_SEARCH_SPACE",
    "UNDEFINED_SEARCH_SPACE",
    "UNDEFINED_METRIC_MODE",
]
