"""Helpers the library searchers (Optuna, HyperOpt, Nevergrad, BayesOpt, Ax, BOHB, ZOOpt,
HEBO) share when they convert a fasttune search space into their library's own."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Dict, Tuple

import numpy as np

from fasttune.search.sample import Domain
from fasttune.search.variant_generator import is_grid_dict


def flat_space(value: Mapping, prefix: Tuple = ()) -> Dict[str, Any]:
    """A nested space or config as ``{"a/b": value}`` (a grid search stays one value).

    Example:
        >>> flat_space({"a": {"b": 1}, "c": 2})
        {'a/b': 1, 'c': 2}
    """
    flat: Dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, Mapping) and not is_grid_dict(item):
            flat.update(flat_space(item, prefix + (key,)))
        else:
            flat[path_label(prefix + (key,))] = item
    return flat


def nested_config(flat: Mapping[str, Any]) -> Dict[str, Any]:
    """``{"a/b": value}`` as a nested config: the inverse of :func:`flat_space`.

    Example:
        >>> nested_config({"a/b": 1, "c": 2})
        {'a': {'b': 1}, 'c': 2}
    """
    config: Dict[str, Any] = {}
    for name, value in flat.items():
        *parents, leaf = name.split("/")
        node = config
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return config


def path_label(path: Tuple) -> str:
    """A nested key as the ``"a/b"`` name the searchers use for it."""
    return "/".join(str(p) for p in path)


def holds_domain(value: Any) -> bool:
    """Whether ``value`` holds a fasttune domain or grid search anywhere inside."""
    if isinstance(value, Domain) or (isinstance(value, Mapping) and is_grid_dict(value)):
        return True
    if isinstance(value, Mapping):
        return any(holds_domain(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(holds_domain(v) for v in value)
    return False


def plain_python(value: Any) -> Any:
    """A library's output as plain Python: numpy scalars as numbers, tuples as lists."""
    if isinstance(value, dict):
        return {k: plain_python(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_python(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def unsupported_domain(searcher: str, native: str, path: Tuple, domain: Domain, why: str = "") -> ValueError:
    """The error for a domain ``searcher`` cannot express, naming the key and the way out."""
    return ValueError(
        f"{searcher} cannot convert the search-space entry {path_label(path)!r} "
        f"({type(domain).__name__} with sampler {domain.get_sampler()}){': ' + why if why else ''}. "
        "Use uniform, quniform, loguniform, qloguniform, randn, qrandn, randint, qrandint, "
        f"lograndint, qlograndint or choice, or pass {native}."
    )
