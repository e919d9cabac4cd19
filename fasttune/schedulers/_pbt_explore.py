"""PBT's explore step: how a cloned trial's hyperparameters are mutated.

``hyperparam_mutations`` maps each hyperparameter to a *mutation*: a list of values, a
search-space domain (``tune.uniform(0, 1)`` ...), a function of no arguments, or a dict
of nested mutations.  This module checks such a mapping, draws the values a config
lacks, mutates a donor's config (:func:`explore`) and names the result
(:func:`perturbed_tag`).  It decides nothing about *when* to explore; that is
:class:`fasttune.schedulers.pbt.PopulationBasedTraining`'s business.

Randomness: list moves and the choice of factor draw from Python's :mod:`random`;
resampling a domain draws from numpy's global generator (as in Ray Tune).

Example:
    >>> import random
    >>> random.seed(1)
    >>> new_config, operations = explore({"batch": 32}, {"batch": [16, 32, 64]}, 0.0, (1.2, 0.8))
    >>> new_config, operations
    ({'batch': 16}, {'batch': 'shift left'})
    >>> perturbed_tag("0_batch=32", new_config, {"batch": [16, 32, 64]})
    '0_batch=32@perturbed[batch=16]'
"""
from __future__ import annotations

import copy
import numbers
import random
from collections.abc import Mapping
from typing import Any, Callable, Dict, List, Sequence, Tuple, Union

from fasttune.schedulers._common import is_real_number
from fasttune.search.sample import Domain, Function
from fasttune.search.variant_generator import format_vars

Mutation = Union[Dict[str, Any], List[Any], Tuple[Any, ...], Callable[[], Any], Domain]


def check_mutations(mutations: Any, where: str = "hyperparam_mutations") -> None:
    """Raise a clear TypeError/ValueError unless ``mutations`` is a valid mapping of
    hyperparameter name -> mutation (nested dicts checked recursively)."""
    if not isinstance(mutations, Mapping):
        raise TypeError(
            f"{where} must be a dict of hyperparameter name -> mutation, e.g. "
            f"{{'lr': tune.loguniform(1e-4, 1e-1)}}; got {type(mutations).__name__}."
        )
    for key, value in mutations.items():
        if not isinstance(key, str):
            raise TypeError(f"{where} keys must be config key strings, got {key!r}.")
        name = f"{where}[{key!r}]"
        if isinstance(value, Mapping):
            if not value:
                raise ValueError(f"{name} is an empty dict; give the nested mutations or remove the key.")
            check_mutations(value, name)
        elif isinstance(value, (list, tuple)):
            if len(value) == 0:
                raise ValueError(f"{name} is an empty list; give the values to choose from, e.g. [16, 32, 64].")
        elif isinstance(value, Function):
            raise ValueError(
                f"{name} is a tune.sample_from(...) domain, which PBT cannot perturb. Use a "
                "search-space primitive (tune.uniform, tune.loguniform, tune.choice, ...), a "
                "list of values, or a plain function of no arguments such as "
                "lambda: random.uniform(0, 1)."
            )
        elif isinstance(value, Domain) or callable(value):
            continue
        else:
            raise TypeError(
                f"{name} must be a list/tuple of values, a dict of nested mutations, a "
                "search-space domain (tune.uniform(...), ...) or a function of no arguments; "
                f"got {type(value).__name__} {value!r}."
            )


def draw_value(distribution: Any) -> Any:
    """A fresh value from a mutation: a domain, a list, or a function."""
    if isinstance(distribution, Domain):
        return distribution.sample(None)
    if isinstance(distribution, (list, tuple)):
        return random.choice(distribution)
    return distribution()


def fill_missing(config: Dict[str, Any], mutations: Mapping, filled: Dict[str, Any], prefix: str = "") -> None:
    """Draws the mutated hyperparameters that ``config`` lacks (recursively), in place;
    each drawn value is also put in ``filled`` under its ``"a/b"`` path.

    >>> config, filled = {"lr": 0.1}, {}
    >>> fill_missing(config, {"lr": [0.1, 0.2], "opt": {"momentum": [0.9]}}, filled)
    >>> config, filled
    ({'lr': 0.1, 'opt': {'momentum': 0.9}}, {'opt/momentum': 0.9})
    """
    for key, distribution in mutations.items():
        path = f"{prefix}{key}"
        if isinstance(distribution, Mapping):
            sub = config.get(key)
            if sub is None:
                sub = config[key] = {}
            elif not isinstance(sub, dict):
                raise ValueError(
                    f"hyperparam_mutations has nested mutations under {path!r}, but the trial's "
                    f"config holds {sub!r} there; make config[{key!r}] a dict or flatten the mutations."
                )
            fill_missing(sub, distribution, filled, path + "/")
        elif key not in config:
            config[key] = draw_value(distribution)
            filled[path] = config[key]


def _index_of(values: Sequence[Any], value: Any) -> int:
    """The index of ``value`` in ``values`` (-1: absent); never raises on odd types."""
    for i, candidate in enumerate(values):
        try:
            if candidate is value or bool(candidate == value):
                return i
        except (TypeError, ValueError):
            continue
    return -1


def explore(
    config: Dict[str, Any],
    mutations: Mapping,
    resample_probability: float,
    perturbation_factors: Sequence[float],
) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """A mutated copy of ``config`` and what was done to each mutated key.

    Lists move to a neighbouring index (or are resampled with ``resample_probability``,
    or when the current value is not in the list); domains and functions are resampled
    with ``resample_probability``, otherwise the value is multiplied by one of the
    ``perturbation_factors`` (int values stay ints, truncated as in Ray Tune).  A value
    that is not a number (e.g. a string drawn by ``tune.choice``) cannot be scaled and is
    resampled instead.
    """
    new_config = copy.deepcopy(config)
    operations: Dict[str, Any] = {}
    for key, distribution in mutations.items():
        if isinstance(distribution, Mapping):
            sub = config.get(key)
            if not isinstance(sub, dict):
                sub = {}
            new_sub, sub_ops = explore(sub, distribution, resample_probability, perturbation_factors)
            new_config[key] = new_sub
            operations[key] = sub_ops
            continue
        if key not in config:
            new_config[key] = draw_value(distribution)
            operations[key] = "resample"
            continue
        value = config[key]
        if isinstance(distribution, (list, tuple)):
            position = _index_of(distribution, value)
            if random.random() < resample_probability or position < 0:
                new_config[key] = random.choice(distribution)
                operations[key] = "resample"
            else:
                shift = random.choice((-1, 1))
                new_position = min(max(position + shift, 0), len(distribution) - 1)
                new_config[key] = distribution[new_position]
                operations[key] = f"shift {'left' if shift < 0 else 'right'}" + (
                    " (noop)" if new_position == position else "")
        else:
            if random.random() < resample_probability or not is_real_number(value):
                new_value = draw_value(distribution)
                operations[key] = "resample"
            else:
                factor = random.choice(perturbation_factors)
                new_value = value * factor
                operations[key] = f"* {factor}"
            if isinstance(value, numbers.Integral) and not isinstance(value, bool) and is_real_number(new_value):
                new_value = int(new_value)
            new_config[key] = new_value
    return new_config, operations


def _mutated_leaves(config: Mapping, mutations: Mapping, path: Tuple[str, ...] = ()) -> Dict[Tuple[str, ...], Any]:
    leaves: Dict[Tuple[str, ...], Any] = {}
    for key, distribution in mutations.items():
        if key not in config:
            continue
        if isinstance(distribution, Mapping) and isinstance(config[key], Mapping):
            leaves.update(_mutated_leaves(config[key], distribution, path + (key,)))
        else:
            leaves[path + (key,)] = config[key]
    return leaves


def perturbed_tag(orig_tag: str, config: Mapping, mutations: Mapping) -> str:
    """``<orig tag>@perturbed[name=value,...]`` over the mutated hyperparameters."""
    resolved = {("config",) + path: value for path, value in _mutated_leaves(config, mutations).items()}
    return f"{orig_tag}@perturbed[{format_vars(resolved)}]"


def explore_summary(old: Mapping, new: Mapping, operations: Mapping, indent: str = "") -> str:
    """One line per mutated key, ``name : old --- (operation) --> new`` (for the log).

    >>> print(explore_summary({"lr": 0.1}, {"lr": 0.12}, {"lr": "* 1.2"}))
    lr : 0.1 --- (* 1.2) --> 0.12
    """
    lines = []
    for key, op in operations.items():
        if isinstance(op, Mapping):
            lines.append(f"{indent}{key} :")
            lines.append(explore_summary(old.get(key) or {}, new.get(key) or {}, op, indent + "    "))
        else:
            lines.append(f"{indent}{key} : {old.get(key)!r} --- ({op}) --> {new.get(key)!r}")
    return "\n".join(line for line in lines if line)


__all__ = [
    "Mutation",
    "check_mutations",
    "draw_value",
    "fill_missing",
    "explore",
    "perturbed_tag",
    "explore_summary",
]
