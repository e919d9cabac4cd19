"""``create_searcher``: a search algorithm by its Ray Tune name (``ray.tune.create_searcher``).

Example:
    >>> from fasttune.search import create_searcher
    >>> type(create_searcher("random", random_state=0)).__name__
    'BasicVariantGenerator'
    >>> create_searcher("nope")
    Traceback (most recent call last):
    ...
    ValueError: Unknown searcher 'nope'; valid names: variant_generator, random, optuna, hyperopt, nevergrad, bayesopt, ax, bohb, zoopt, hebo.
"""
from __future__ import annotations

import importlib
from typing import Any, Dict, Optional, Tuple, Union

from fasttune._optional import pip_install_hint
from fasttune.search.search_algorithm import SearchAlgorithm
from fasttune.search.searcher import Searcher

# name -> (module, class, the optional extra it needs or None); imported only when asked for.
_SEARCHERS: Dict[str, Tuple[str, str, Optional[str]]] = {
    "variant_generator": ("fasttune.search.basic_variant", "BasicVariantGenerator", None),
    "random": ("fasttune.search.basic_variant", "BasicVariantGenerator", None),
    "optuna": ("fasttune.search.optuna", "OptunaSearch", "optuna"),
    "hyperopt": ("fasttune.search.hyperopt", "HyperOptSearch", "hyperopt"),
    "nevergrad": ("fasttune.search.nevergrad", "NevergradSearch", "nevergrad"),
    "bayesopt": ("fasttune.search.bayesopt", "BayesOptSearch", "bayesopt"),
    "ax": ("fasttune.search.ax", "AxSearch", "ax"),
    "bohb": ("fasttune.search.bohb", "TuneBOHB", "bohb"),
    "zoopt": ("fasttune.search.zoopt", "ZOOptSearch", "zoopt"),
    "hebo": ("fasttune.search.hebo", "HEBOSearch", "hebo"),
}

SEARCHER_NAMES = tuple(_SEARCHERS)


def searcher_class(name: str) -> Any:
    """The class registered as ``name``, imported on first use."""
    if not isinstance(name, str):
        raise TypeError(
            f"create_searcher takes a searcher name (str), got {type(name).__name__}; valid "
            f"names: {', '.join(SEARCHER_NAMES)}."
        )
    key = name.lower()
    if key not in _SEARCHERS:
        raise ValueError(f"Unknown searcher {name!r}; valid names: {', '.join(SEARCHER_NAMES)}.")
    module_name, class_name, extra = _SEARCHERS[key]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if extra is not None and exc.name is not None and exc.name.split(".")[0] == extra:
            raise ImportError(
                f"Searcher {name!r} ({class_name}) needs the {extra!r} package: {pip_install_hint(extra)}."
            ) from exc
        raise  # some other dependency is missing: its own message says which
    return getattr(module, class_name)


def create_searcher(search_alg: str, **kwargs: Any) -> Union[Searcher, SearchAlgorithm]:
    """Creates a searcher from its name, as in Ray Tune; ``kwargs`` go to its constructor.

    Names: ``"variant_generator"`` and ``"random"`` (``BasicVariantGenerator``),
    ``"optuna"`` (``OptunaSearch``), ``"hyperopt"`` (``HyperOptSearch``),
    ``"nevergrad"`` (``NevergradSearch``), ``"bayesopt"`` (``BayesOptSearch``), ``"ax"``
    (``AxSearch``), ``"bohb"`` (``TuneBOHB``), ``"zoopt"`` (``ZOOptSearch``) and ``"hebo"``
    (``HEBOSearch``); the last eight need their optional extra, and
    an ``ImportError`` names it when it is missing.  Unknown names raise ``ValueError``
    listing the valid ones.
    """
    return searcher_class(search_alg)(**kwargs)


__all__ = ["create_searcher", "SEARCHER_NAMES"]
