"""A precomputed way to draw one sample of a plain random-search space.

The general variant generator re-parses the whole spec for every sample,
copies it, resolves it and parses it again to find nothing left.  For a space
of plain dicts, lists, constants and distributions whose draws are plain
values, that work is the same every time: :meth:`SamplingPlan.compile` does
it once, and :meth:`SamplingPlan.draw` only draws, in the same order and with
the same domain code, so it gives exactly what the general path gives.

Example:
    >>> from fasttune.search._rng import as_rng
    >>> from fasttune.search._sampling_plan import SamplingPlan
    >>> from fasttune.search.sample import choice, sample_from, uniform
    >>> plan = SamplingPlan.compile({"config": {"lr": uniform(0, 1), "opt": choice(["adam", "sgd"]), "n": 3}})
    >>> resolved_vars, spec = plan.draw(as_rng(0))
    >>> list(resolved_vars), spec["config"]["n"]
    ([('config', 'lr'), ('config', 'opt')], 3)
    >>> SamplingPlan.compile({"config": {"y": sample_from(lambda spec: 1)}}) is None  # needs the general path
    True
"""
from __future__ import annotations

import functools
import types
from typing import Any, Callable, Dict, List, Optional, Tuple

from fasttune.search._grid import is_grid_dict
from fasttune.search._paths import Path
from fasttune.search._rng import Rng
from fasttune.search.sample import (
    Categorical,
    Domain,
    Float,
    Integer,
    LogUniform,
    Normal,
    Quantized,
    Uniform,
)
from fasttune.search.variant_generator import _ATOMS, _clean_value, _path_key, flatten_resolved_vars

__all__ = ["SamplingPlan"]

# Leaves that copy_spec shares between variants instead of copying them.
_SHARED_LEAVES = _ATOMS + (types.FunctionType, types.BuiltinFunctionType, type)
_DRAWN_SAMPLERS = (Uniform, LogUniform, Normal)

# What an entry of a template node holds: a shared constant, a draw, a nested dict or list.
_CONSTANT, _DRAW, _DICT, _LIST = range(4)

Entries = List[Tuple[Any, int, Any]]


class _NotPlannable(Exception):
    """The space needs the general path (grid search, sample_from, tuples, ...)."""


class SamplingPlan:
    """The draws of one sample of a space, in the order the general path makes them."""

    __slots__ = ("_entries", "_paths", "_tag_order", "_flat_keys")

    def __init__(self, entries: Entries, paths: List[Path]) -> None:
        self._entries = entries
        self._paths = paths
        # What format_vars and flatten_resolved_vars work out from the paths, worked out once.
        order = sorted(range(len(paths)), key=lambda index: _path_key(paths[index]))
        self._tag_order = [(index, _clean_value(paths[index][-1]) + "=") for index in order]
        self._flat_keys = [next(iter(flatten_resolved_vars({path: None}))) for path in paths]

    @classmethod
    def compile(cls, spec: Dict) -> Optional["SamplingPlan"]:
        """The plan of ``spec``, or ``None`` when only the general path can draw it."""
        if type(spec) is not dict or is_grid_dict(spec):
            return None
        paths: List[Path] = []
        try:
            entries = _compile_items(spec.items(), (), paths)
        except _NotPlannable:
            return None
        return cls(entries, paths)

    def draw(self, rng: Rng) -> Tuple[Dict[Path, Any], Dict]:
        """``(resolved_vars, spec)`` of one new sample, as ``generate_in_place`` yields it."""
        values: List[Any] = []
        spec = _instantiate(self._entries, values, rng)
        return dict(zip(self._paths, values)), spec

    def describe(self, resolved_vars: Dict[Path, Any]) -> Tuple[str, Dict[str, Any]]:
        """``(format_vars(resolved_vars), flatten_resolved_vars(resolved_vars))`` of a
        ``resolved_vars`` that :meth:`draw` returned."""
        values = list(resolved_vars.values())
        tag_vars = ",".join([name + _clean_value(values[index]) for index, name in self._tag_order])
        return tag_vars, dict(zip(self._flat_keys, values))


def _compile_items(items: Any, path: Path, paths: List[Path]) -> Entries:
    entries: Entries = []
    for key, value in items:
        here = path + (key,)
        if isinstance(value, Domain):
            entries.append((key, _DRAW, _draw_function(value)))
            paths.append(here)
        elif type(value) is dict and not is_grid_dict(value):
            entries.append((key, _DICT, _compile_items(value.items(), here, paths)))
        elif type(value) is list:
            entries.append((key, _LIST, _compile_items(enumerate(value), here, paths)))
        elif isinstance(value, _SHARED_LEAVES):
            entries.append((key, _CONSTANT, value))
        else:
            raise _NotPlannable(here)
    return entries


def _draw_function(domain: Domain) -> Callable[[Rng], Any]:
    """``domain.sample(random_state=rng)`` without its argument handling, for domains
    whose value is a plain value (never another domain, grid or container to copy)."""
    sampler = domain.get_sampler()
    inner = sampler.get_sampler() if type(sampler) is Quantized else sampler
    if type(inner) not in _DRAWN_SAMPLERS:
        raise _NotPlannable(domain)
    if type(domain) in (Float, Integer):
        pass
    elif type(domain) is Categorical and type(sampler) is Uniform:
        if not all(isinstance(category, _ATOMS) for category in domain.categories):
            raise _NotPlannable(domain)
    else:
        raise _NotPlannable(domain)
    return functools.partial(domain._sample_with, sampler, None, 1)


def _instantiate(entries: Entries, values: List[Any], rng: Rng) -> Any:
    built: Dict[Any, Any] = {}
    for key, kind, payload in entries:
        if kind == _CONSTANT:
            built[key] = payload
        elif kind == _DRAW:
            value = payload(rng)
            values.append(value)
            built[key] = value
        elif kind == _DICT:
            built[key] = _instantiate(payload, values, rng)
        else:
            built[key] = list(_instantiate(payload, values, rng).values())
    return built
