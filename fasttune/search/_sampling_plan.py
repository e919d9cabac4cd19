"""A precomputed way to draw one sample of a plain random-search space.

The general variant generator re-parses the whole spec for every sample,
copies it, resolves it and parses it again to find nothing left.  For a space
of plain dicts, lists, constants and distributions whose draws are plain
values, that work is the same every time: :meth:`SamplingPlan.compile` does
it once, and :meth:`SamplingPlan.draw` only draws, in the same order and with
the same domain code, so it gives exactly what the general path gives.

A point to evaluate is drawn from the same plan (:meth:`SamplingPlan.point_overlay`,
:meth:`SamplingPlan.draw`): its values replace entries of the plan, which may then be
ones the plan cannot draw itself (a ``sample_from``, a grid search), and the rest is
drawn as the general path draws it after ``preset_spec``.  Points the plan cannot
reproduce exactly (lists, containers or domains as values) take the general path.

Example:
    >>> from fasttune.search._rng import as_rng
    >>> from fasttune.search._sampling_plan import SamplingPlan
    >>> from fasttune.search.sample import choice, sample_from, uniform
    >>> plan = SamplingPlan.compile({"config": {"lr": uniform(0, 1), "opt": choice(["adam", "sgd"]), "n": 3}})
    >>> resolved_vars, spec = plan.draw(as_rng(0))
    >>> list(resolved_vars), spec["config"]["n"]
    ([('config', 'lr'), ('config', 'opt')], 3)
    >>> plan = SamplingPlan.compile({"config": {"y": sample_from(lambda spec: 1), "z": uniform(0, 1)}})
    >>> plan.complete  # draw() needs the general path for "y" ...
    False
    >>> overlay = plan.point_overlay({"y": 2})  # ... unless a point sets it
    >>> resolved_vars, spec = plan.draw(as_rng(0), overlay)
    >>> list(resolved_vars), spec["config"]["y"]
    ([('config', 'z')], 2)
"""
from __future__ import annotations

import functools
import itertools
import math
import operator
import types
from collections.abc import Mapping
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import numpy as np

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
from fasttune.search.variant_generator import (
    ATOM_TYPES,
    clean_value,
    path_sort_key,
    warn_if_outside,
    copy_spec,
    flatten_resolved_vars,
)

__all__ = ["SamplingPlan"]

# Leaves that copy_spec shares between variants instead of copying them.
_SHARED_LEAVES = ATOM_TYPES + (types.FunctionType, types.BuiltinFunctionType, type)
# The exact types of most of them in points: a set lookup answers for these.
_PLAIN_LEAF_TYPES = frozenset((int, float, str, bool, type(None)))
_DRAWN_SAMPLERS = (Uniform, LogUniform, Normal)

# What an entry of a template node holds: a shared constant, a draw, a nested dict or
# list, or a part only the general path can draw (which a point must replace).
_CONSTANT, _DRAW, _DICT, _LIST, _OPEN = range(5)

# A template node: key -> (kind, payload, how many _OPEN entries it holds at or below it).
Entries = Dict[Any, Tuple[int, Any, int]]


class _NotPlannable(Exception):
    """The space or point needs the general path (grid search, sample_from, tuples, ...)."""


class PointOverlay(dict):
    """A point's values for one template node: a value, or an PointOverlay for a nested dict."""

    #: Whether it gives a value for every entry of its node, in the node's order (nothing
    #: to draw there: the node is a copy of it).
    whole = False
    #: Whether :meth:`SamplingPlan.draw` with it takes nothing from the random generator (a
    #: point's overlay whose config is whole, in a spec that is the config alone).
    draws_nothing = False


_NO_OVERLAY = PointOverlay()


class _WholeNodeOverlay(PointOverlay):
    """An overlay that gives every entry of its node (a class of its own rather than an
    attribute set on each: each of 100,000s of points would carry an attribute dict)."""

    whole = True


# What a node's overlay can be (a nested one among a point's values).
_NODE_OVERLAYS = (PointOverlay, _WholeNodeOverlay)


class _WholePointOverlay(PointOverlay):
    """The overlay of a point that gives every value: draws nothing (a class of its own, so
    that each of a sweep's 100,000s of points carries no attribute dict of its own)."""

    draws_nothing = True


class SamplingPlan:
    """The draws of one sample of a space, in the order the general path makes them."""

    __slots__ = ("_entries", "_paths", "_tag_order", "_flat_keys", "_space", "complete")

    def __init__(self, entries: Entries, paths: List[Path], space: Dict, formats: List[Callable[[Any], str]]) -> None:
        self._entries = entries
        self._paths = paths
        self._space = space
        # Whether draw() can make a sample without a point: nothing is left to the general path.
        self.complete = all(opens == 0 for _, _, opens in entries.values())
        # What format_vars and flatten_resolved_vars work out from the paths, worked out once
        # (formats: each path's clean_value, or what it does for the type that path's draw gives).
        order = sorted(range(len(paths)), key=lambda index: path_sort_key(paths[index]))
        self._tag_order = [(index, clean_value(paths[index][-1]) + "=", formats[index]) for index in order]
        self._flat_keys = [next(iter(flatten_resolved_vars({path: None}))) for path in paths]

    @classmethod
    def compile(cls, spec: Dict) -> Optional["SamplingPlan"]:
        """The plan of ``spec``, or ``None`` when ``spec`` is not a plain dict; parts only
        the general path can draw are left open (see :attr:`complete`)."""
        if type(spec) is not dict or is_grid_dict(spec):
            return None
        paths: List[Path] = []
        formats: List[Callable[[Any], str]] = []
        return cls(_compile_items(spec.items(), (), paths, formats), paths, spec, formats)

    def point_overlay(self, point: Mapping, warn: bool = False) -> Optional[PointOverlay]:
        """What :meth:`draw` needs to draw ``point`` as ``preset_spec`` + the general path
        would, or ``None`` when only they can; ``warn`` logs, as ``preset_spec(warn=True)``
        does, the values outside their domain (only when it returns an overlay).  The overlay
        may hold ``point`` itself (it is read, not changed): ``point`` must stay as it is while
        the overlay is used (the generator's points do: they are its own copies)."""
        config = self._entries.get("config")
        if config is None or config[0] != _DICT:
            return None
        node, space = config[1], self._space["config"]
        replaced: Iterable[Tuple[Dict, Any, Any, Path]] = []  # (node, key, value, the node's path)
        if (type(point) is dict and len(point) == len(node) and all(map(operator.is_, point, node))
                and _PLAIN_LEAF_TYPES.issuperset(map(type, point.values()))):
            # The usual point (a sweep's 100,000s): a plain value for each entry of the config, under
            # the very keys of the node, in its order.  _overlay makes the same of it, one entry at
            # a time: the point's values under the node's keys, every entry of the node replaced.
            overlay, opened = point, config[2]  # (made a _WholeNodeOverlay below, where it is not shared)
            if warn:
                replaced = zip(itertools.repeat(space), point, point.values(), itertools.repeat(("config",)))
        else:
            try:
                overlay, opened = _overlay(node, space, point, ("config",), replaced)
            except _NotPlannable:
                return None
        if opened != config[2]:
            return None  # the point leaves a sample_from, grid search, ... to draw
        for space, key, value, path in replaced if warn else ():
            # Compared with a working copy, as preset_spec does (a tuple shows as a list
            # there); a domain, the usual entry, is its own copy (and says nothing when it
            # holds the value: asked here first, without the path made for the message).
            current = space[key]
            if not isinstance(current, Domain):
                warn_if_outside(copy_spec(current), value, path + (key,))
            elif not current.is_valid(value):
                warn_if_outside(current, value, path + (key,))
        if overlay is point:
            if len(self._entries) == 1:
                # The spec is the config alone: the point is the sample's config, which draw()
                # copies, so it is shared here, not copied (100,000s of points: one dict each less).
                return _WholePointOverlay(config=point)
            overlay = _WholeNodeOverlay(point)
        whole_point = overlay.whole and len(self._entries) == 1  # (the spec is the config alone)
        return (_WholePointOverlay if whole_point else PointOverlay)(config=overlay)

    def draw(self, rng: Rng, overlay: PointOverlay = _NO_OVERLAY) -> Tuple[Dict[Path, Any], Dict]:
        """``(resolved_vars, spec)`` of one new sample, as ``generate_in_place`` yields it:
        of a point when given its :meth:`point_overlay`, otherwise only if :attr:`complete`."""
        resolved_vars: Dict[Path, Any] = {}
        if overlay.draws_nothing:
            return resolved_vars, {"config": dict(overlay["config"])}  # (what _instantiate makes of it)
        return resolved_vars, _instantiate(self._entries, resolved_vars, rng, overlay)

    def describe(self, resolved_vars: Dict[Path, Any]) -> Tuple[str, Dict[str, Any]]:
        """``(format_vars(resolved_vars), flatten_resolved_vars(resolved_vars))`` of a
        ``resolved_vars`` that :meth:`draw` returned without an overlay."""
        values = list(resolved_vars.values())
        tag_vars = ",".join([name + format_value(values[index]) for index, name, format_value in self._tag_order])
        return tag_vars, dict(zip(self._flat_keys, values))


# clean_value of what each domain type's draw gives (its cast makes a Python float or int).
_FORMATS = {Float: "{:.4f}".format, Integer: str}


def _compile_items(items: Any, path: Path, paths: List[Path], formats: List[Callable[[Any], str]]) -> Entries:
    entries: Entries = {}
    for key, value in items:
        here = path + (key,)
        if isinstance(value, Domain):
            try:
                entries[key] = (_DRAW, (_draw_function(value), here), 0)
                paths.append(here)
                formats.append(_FORMATS.get(type(value), clean_value))
            except _NotPlannable:
                entries[key] = (_OPEN, value, 1)
        elif type(value) is dict and not is_grid_dict(value):
            node = _compile_items(value.items(), here, paths, formats)
            entries[key] = (_DICT, node, sum(opens for _, _, opens in node.values()))
        elif type(value) is list:
            node = _compile_items(enumerate(value), here, paths, formats)
            entries[key] = (_LIST, node, sum(opens for _, _, opens in node.values()))
        elif isinstance(value, _SHARED_LEAVES):
            entries[key] = (_CONSTANT, value, 0)
        else:
            entries[key] = (_OPEN, value, 1)
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
        if not all(isinstance(category, ATOM_TYPES) for category in domain.categories):
            raise _NotPlannable(domain)
    else:
        raise _NotPlannable(domain)
    general = functools.partial(domain._sample_with, sampler, None, 1)
    return _direct_draw(domain, sampler, general) or general


def _direct_draw(domain: Domain, sampler: Any, general: Callable[[Rng], Any]) -> Optional[Callable[[Rng], Any]]:
    """For the most common domains, a draw of one Python value straight from the generator,
    with the very numbers and operations of ``general`` (the domain's own draw, which it
    falls back on for bounds that one rejects); ``None`` for the others.  The domain's
    attributes are read at each draw, as ``general`` reads them."""
    kind = type(sampler)
    if type(domain) is Float and kind is Uniform:
        def draw_uniform(rng: Rng) -> Any:
            low, high = domain.lower, domain.upper
            if math.isfinite(low) and math.isfinite(high):
                return rng.uniform_value(low, high)
            return general(rng)
        return draw_uniform
    if type(domain) is Float and kind is LogUniform:
        def draw_log_uniform(rng: Rng) -> Any:
            low, high = domain.lower, domain.upper
            log_base = math.log(sampler.base)
            exponent = rng.uniform_value(math.log(low) / log_base, math.log(high) / log_base)
            # np.power on a one-value array, as the domain's draw computes it; np.clip's bounds after.
            return float(min(max(np.power(sampler.base, np.array([exponent]))[0], low), high))
        return draw_log_uniform
    if type(domain) is Float and kind is Normal:
        return lambda rng: rng.normal_value(sampler.mean, sampler.sd)
    if type(domain) is Integer and kind is Uniform:
        def draw_integer(rng: Rng) -> Any:
            low, high = domain.lower, domain.upper
            return rng.integer_value(low, high) if high > low else general(rng)
        return draw_integer
    if type(domain) is Categorical and kind is Uniform:
        def draw_category(rng: Rng) -> Any:
            categories = domain.categories
            return categories[rng.integer_value(0, len(categories))]
        return draw_category
    return None


def _overlay(entries: Entries, space: Dict, point: Mapping, path: Path, replaced: list) -> Tuple[PointOverlay, int]:
    """``point`` merged as ``_merge_point`` merges it, and how many open entries it replaces;
    raises _NotPlannable where the merge would copy a container or leave a domain to parse."""
    overlay = PointOverlay()
    opened = 0
    nested = False  # whether a value is an overlay of its own
    for key, value in point.items():
        entry = entries.get(key)
        if entry is None:
            raise _NotPlannable(path + (key,))  # the general path names the missing key
        kind, payload, opens = entry
        # First: the Mapping check is slower (and the type of most values, before isinstance's walk).
        if type(value) in _PLAIN_LEAF_TYPES or isinstance(value, _SHARED_LEAVES):
            overlay[key] = value
            opened += opens
            replaced.append((space, key, value, path))
        elif isinstance(value, Mapping) and kind == _DICT:
            overlay[key], nested_opened = _overlay(payload, space[key], value, path + (key,), replaced)
            opened += nested_opened
            nested = True
        else:
            raise _NotPlannable(path + (key,))
    if len(overlay) == len(entries) and not nested:  # (the same keys, each found there: in the node's order)
        overlay = _WholeNodeOverlay([(key, overlay[key]) for key in entries])
    return overlay, opened


def _instantiate(entries: Entries, resolved_vars: Dict[Path, Any], rng: Rng, overlay: PointOverlay) -> Dict:
    if overlay.whole:
        return dict(overlay)  # what the loop below gives when every entry is given
    built: Dict[Any, Any] = {}
    for key, (kind, payload, _) in entries.items():
        nested = _NO_OVERLAY
        if overlay and key in overlay:
            given = overlay[key]
            if type(given) not in _NODE_OVERLAYS:  # (a user's value, of whatever type)
                built[key] = given
                continue
            nested = given
        if kind == _CONSTANT:
            built[key] = payload
        elif kind == _DRAW:
            draw, path = payload
            value = resolved_vars[path] = draw(rng)
            built[key] = value
        elif kind == _DICT:
            built[key] = _instantiate(payload, resolved_vars, rng, nested)
        else:
            built[key] = list(_instantiate(payload, resolved_vars, rng, nested).values())
    return built
