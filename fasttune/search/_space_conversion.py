"""Helpers the library searchers (Optuna, HyperOpt, Nevergrad) share when they convert a
fasttune search space into their library's own."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Tuple

import numpy as np

from fasttune.search.sample import Domain
from fasttune.search.variant_generator import is_grid_dict


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
