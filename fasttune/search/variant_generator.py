"""Expanding a search space into concrete configurations ("variants").

A spec is a nested structure of dicts, lists and tuples whose leaves are
constants, search-space domains (``uniform(...)``, ``choice(...)``,
``sample_from(...)``) or grid searches (``{"grid_search": [...]}``).  Every
combination of grid values becomes one variant; within a variant every domain
is drawn once.  ``sample_from`` functions may read other values of the same
variant (``spec.config.x``); they are resolved in dependency order.

Example:
    >>> from fasttune.search.sample import grid_search, sample_from
    >>> from fasttune.search.variant_generator import format_vars, generate_variants
    >>> space = {"config": {"lr": grid_search([0.1, 0.01]),
    ...                     "wd": sample_from(lambda spec: spec.config.lr / 10)}}
    >>> for resolved_vars, spec in generate_variants(space):
    ...     print(format_vars(resolved_vars), spec["config"])
    lr=0.1000,wd=0.0100 {'lr': 0.1, 'wd': 0.01}
    lr=0.0100,wd=0.0010 {'lr': 0.01, 'wd': 0.001}
"""
from __future__ import annotations

import copy
import logging
import math
import re
import types
from collections.abc import Mapping
from typing import Any, Dict, Iterator, List, Tuple

import numpy as np

from fasttune.search._grid import GRID_KEY, check_grid_values, is_grid_dict
from fasttune.search._paths import Path, path_str
from fasttune.search._rng import RandomState, Rng, as_rng
from fasttune.search._spec_view import ListView, RecursiveDependencyError, SpecView, spec_view
from fasttune.search.sample import Categorical, Domain, Function, grid_search, is_unresolved

logger = logging.getLogger(__name__)

__all__ = [
    "RecursiveDependencyError",
    "assign_value",
    "copy_value",
    "count_variants",
    "flatten_resolved_vars",
    "format_vars",
    "generate_variants",
    "get_preset_variants",
    "grid_search",
    "parse_spec_vars",
    "resolve_nested_dict",
]

# A sample_from that keeps returning fresh search-space values would otherwise
# recurse forever; real specs settle in two or three rounds.
_MAX_ROUNDS = 50
ATOM_TYPES = (int, float, complex, str, bytes, bool, type(None), np.number, np.bool_)


def path_sort_key(path: Path) -> tuple:
    """Sort key for paths that may mix str keys and int list indices."""
    return tuple(
        (0, piece, "") if isinstance(piece, (int, float)) and not isinstance(piece, bool) else (1, 0, str(piece))
        for piece in path
    )


# ---------------------------------------------------------------------------
# Private working copies
# ---------------------------------------------------------------------------


class _TupleList(list):
    """A tuple while its elements are being resolved; turned back by ``_finalize``."""

    __slots__ = ("tuple_type",)


def copy_spec(value: Any) -> Any:
    """Copies containers recursively and other leaves deeply, sharing domains.

    Each variant must own its config (trials may mutate it), but copying the
    domains or immutable leaves would only cost time.
    """
    if isinstance(value, ATOM_TYPES) or isinstance(value, (Domain, types.FunctionType, types.BuiltinFunctionType, type)):
        return value
    if isinstance(value, SpecView):
        return {key: copy_spec(item) for key, item in dict.items(value)}
    if isinstance(value, ListView):
        return [copy_spec(item) for item in list.__iter__(value)]
    if isinstance(value, dict):
        if type(value) is dict:
            return {key: copy_spec(item) for key, item in value.items()}
        new = copy.copy(value)
        for key in list(new):
            new[key] = copy_spec(value[key])
        return new
    if isinstance(value, _TupleList):
        new_tuple = _TupleList(copy_spec(item) for item in value)
        new_tuple.tuple_type = value.tuple_type
        return new_tuple
    if isinstance(value, tuple):
        new_tuple = _TupleList(copy_spec(item) for item in value)
        new_tuple.tuple_type = type(value)
        return new_tuple
    if isinstance(value, list):
        if type(value) is list:
            return [copy_spec(item) for item in value]
        new_list = copy.copy(value)
        new_list[:] = [copy_spec(item) for item in value]
        return new_list
    return copy_value(value)


def copy_value(value: Any) -> Any:
    """A deep copy of the config value ``value``; what cannot be copied (a lock, a live
    handle) is kept as it is, and only it: the dicts and lists around it are still copied,
    so one trial changing its config does not change another's.  The runner then fails
    only the trial whose config holds such a value, naming the key, should no worker be
    able to receive it either.

    Example:
        >>> import threading
        >>> lock = threading.Lock()
        >>> copy_value(lock) is lock
        True
        >>> original = {"a": [1], "lock": lock}
        >>> copied = copy_value(original)
        >>> copied == original, copied["a"] is original["a"], copied["lock"] is lock
        (True, False, True)
    """
    try:
        return copy.deepcopy(value)
    except Exception:  # noqa: BLE001 - user objects' __deepcopy__/__reduce__ fail in many ways
        pass
    if type(value) is dict:
        return {key: copy_value(item) for key, item in value.items()}
    if type(value) in (list, tuple):
        return type(value)(copy_value(item) for item in value)
    return value


def _finalize(value: Any) -> Any:
    if isinstance(value, _TupleList):
        items = [_finalize(item) for item in value]
        kind = value.tuple_type
        return kind(*items) if hasattr(kind, "_fields") else kind(items)
    if isinstance(value, dict):
        for key, item in value.items():
            done = _finalize(item)
            if done is not item:
                value[key] = done
    elif isinstance(value, list):
        for index, item in enumerate(value):
            done = _finalize(item)
            if done is not item:
                value[index] = done
    return value


def _get(spec: Any, path: Path) -> Any:
    for key in path:
        spec = spec[key]
    return spec


def _assign(spec: Any, path: Path, value: Any) -> None:
    _get(spec, path[:-1])[path[-1]] = value


def assign_value(spec: Dict, path: Path, value: Any) -> None:
    """Sets ``value`` at ``path`` in a nested dict/list, rebuilding tuples on the way.

    Example:
        >>> spec = {"a": {"b": (1, 2)}}
        >>> assign_value(spec, ("a", "b", 1), 5)
        >>> spec
        {'a': {'b': (1, 5)}}
    """
    if not path:
        raise ValueError("path must name at least one key.")
    parents = [spec]
    for key in path[:-1]:
        parents.append(parents[-1][key])
    value_here = value
    for depth in range(len(path) - 1, -1, -1):
        container, key = parents[depth], path[depth]
        if isinstance(container, tuple):
            if depth == 0:
                raise ValueError("Cannot assign into a top-level tuple.")
            value_here = container[:key] + (value_here,) + container[key + 1 :]
            continue
        container[key] = value_here
        return


# ---------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------


def parse_spec_vars(spec: Mapping) -> Tuple[List[Tuple[Path, Any]], List[Tuple[Path, Domain]], List[Tuple[Path, Categorical]]]:
    """Splits a spec into its constants, its domains and its grid searches.

    Returns:
        ``(resolved_vars, domain_vars, grid_vars)``: lists of ``(path, value)``.
        Grid searches come back as grid ``Categorical`` domains, sorted by path.

    Example:
        >>> from fasttune.search.sample import uniform
        >>> resolved, domains, grids = parse_spec_vars(
        ...     {"a": 1, "b": {"grid_search": [1, 2]}, "c": [uniform(0, 1)]})
        >>> resolved, [p for p, _ in domains], [(p, g.categories) for p, g in grids]
        ([(('a',), 1)], [('c', 0)], [(('b',), [1, 2])])
    """
    resolved: List[Tuple[Path, Any]] = []
    domains: List[Tuple[Path, Domain]] = []
    grids: List[Tuple[Path, Categorical]] = []
    for key, value in spec.items():
        _walk(value, (key,), resolved, domains, grids)
    grids.sort(key=lambda item: path_sort_key(item[0]))
    return resolved, domains, grids


def _walk(value: Any, path: Path, resolved: list, domains: list, grids: list) -> None:
    if isinstance(value, Domain):
        (grids if value.is_grid() else domains).append((path, value))
    elif isinstance(value, dict):
        if is_grid_dict(value):
            check_grid_values(value[GRID_KEY], path_str(path))
            grids.append((path, Categorical(value[GRID_KEY]).grid()))
            return
        for key, item in value.items():
            _walk(item, path + (key,), resolved, domains, grids)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _walk(item, path + (index,), resolved, domains, grids)
    else:
        resolved.append((path, value))


def count_variants(spec: Mapping, num_samples: int = 1) -> int:
    """How many variants ``num_samples`` passes over ``spec`` produce: grid size x samples.

    Grid searches hidden inside ``choice`` categories or ``sample_from`` results
    are only known once drawn and are not counted.

    Example:
        >>> count_variants({"a": {"grid_search": [1, 2, 3]}, "b": {"grid_search": [1, 2]}}, 4)
        24
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 0:
        raise ValueError(f"num_samples must be an int >= 0, got {num_samples!r}.")
    _, _, grids = parse_spec_vars(spec)
    return int(num_samples) * math.prod(len(domain.categories) for _, domain in grids)


# ---------------------------------------------------------------------------
# Resolution
# ---------------------------------------------------------------------------


def _draw(domain: Domain, path: Path, root: Any, rng: Rng) -> Any:
    if not isinstance(domain, Function):
        return domain.sample(random_state=rng)
    try:
        return domain.func(spec_view(root, is_unresolved)) if domain.pass_config else domain.func()
    except RecursiveDependencyError:
        raise
    except Exception as exc:
        raise ValueError(f"sample_from at '{path_str(path)}' raised {type(exc).__name__}: {exc}") from exc


def _resolve(spec: Any, domains: List[Tuple[Path, Domain]], rng: Rng, settle: bool) -> List[Path]:
    """Draws ``domains`` into ``spec`` in dependency order; returns the paths drawn.

    A ``sample_from`` that reads an unresolved value is retried after the
    others.  When no progress is possible: with ``settle`` False, stop (the
    rest waits on grid values); otherwise, if some function waits on a value
    that only a deeper round can produce (a domain inside a drawn value), leave
    it to that round; if they only wait on each other, that is a cycle.
    """
    drawn: List[Path] = []
    pending = list(domains)
    while pending:
        waiting: List[Tuple[Path, Domain, Path]] = []
        for path, domain in pending:
            try:
                value = _draw(domain, path, spec, rng)
            except RecursiveDependencyError as exc:
                waiting.append((path, domain, exc.path))
                continue
            _assign(spec, path, copy_spec(value))
            drawn.append(path)
        if len(waiting) == len(pending):
            waiting_paths = {path for path, _, _ in waiting}
            if settle and all(needs in waiting_paths for _, _, needs in waiting):
                raise ValueError(_cycle_message(waiting))
            break
        pending = [(path, domain) for path, domain, _ in waiting]
    return drawn


def _cycle_message(waiting: List[Tuple[Path, Domain, Path]]) -> str:
    needs = {path: need for path, _, need in waiting}
    start = waiting[0][0]
    chain = [start]
    while needs[chain[-1]] not in chain:
        chain.append(needs[chain[-1]])
    chain.append(needs[chain[-1]])
    shown = " -> ".join(path_str(path) for path in chain)
    return (
        f"Cannot resolve the search space: sample_from values depend on each other in a cycle "
        f"({shown}). Make one of them a constant or a distribution that does not read the others."
    )


def _grid_points(spec: Any, grids: List[Tuple[Path, Categorical]]) -> Iterator[Any]:
    if not grids:
        yield spec
        return
    sizes = [len(domain.categories) for _, domain in grids]
    for index in range(math.prod(sizes)):
        point = copy_spec(spec)
        # The first grid variable (in path order) varies fastest, as in Ray Tune.
        rest = index
        for (path, domain), size in zip(grids, sizes):
            rest, position = divmod(rest, size)
            _assign(point, path, copy_spec(domain.categories[position]))
        yield point


def _expand(spec: Any, constant_grid_search: bool, rng: Rng, rounds: int,
            with_sample_from: bool = True) -> Iterator[Tuple[List[Path], Any]]:
    _, domains, grids = parse_spec_vars(spec)
    if not domains and not grids:
        yield [], spec
        return
    if rounds >= _MAX_ROUNDS:
        raise ValueError(
            f"The search space did not settle after {_MAX_ROUNDS} rounds; a sample_from or "
            f"choice keeps producing new search-space values (still open: "
            f"{', '.join(path_str(p) for p, _ in domains + grids)})."
        )
    constant: List[Path] = []
    pending = domains
    if constant_grid_search and grids:
        # Draw once and share across the grid; what reads grid values waits.
        constant = _resolve(spec, domains, rng, settle=False)
        fixed = set(constant)
        pending = [(path, domain) for path, domain in domains if path not in fixed]
    functions = () if with_sample_from else {path for path, domain in domains if isinstance(domain, Function)}
    for point in _grid_points(spec, grids):
        drawn = _resolve(point, pending, rng, settle=True)
        here = [path for path in constant + drawn if path not in functions] + [path for path, _ in grids]
        for deeper, final in _expand(point, constant_grid_search, rng, rounds + 1, with_sample_from):
            yield here + deeper, final


def generate_in_place(work: Any, constant_grid_search: bool, rng: Rng,
                      with_sample_from: bool = True) -> Iterator[Tuple[Dict[Path, Any], Any]]:
    """``generate_variants`` over ``work`` itself: a working copy the caller owns
    (from :func:`copy_spec` or :func:`preset_spec`), resolved without copying it again.
    ``with_sample_from=False`` leaves the values ``sample_from`` functions gave out of
    ``resolved_vars`` (the spec has them all the same)."""
    for paths, final in _expand(work, constant_grid_search, rng, 0, with_sample_from):
        final = _finalize(final)
        yield {path: _get(final, path) for path in dict.fromkeys(paths)}, final


def generate_variants(
    unresolved_spec: Mapping,
    constant_grid_search: bool = False,
    random_state: RandomState = None,
) -> Iterator[Tuple[Dict[Path, Any], Dict]]:
    """Lazily yields ``(resolved_vars, resolved_spec)`` for every variant of ``spec``.

    ``resolved_vars`` maps the path of every drawn or grid value (e.g.
    ``("config", "lr")``) to its value; ``resolved_spec`` is a fresh copy of
    ``unresolved_spec`` with every domain replaced by its value.  ``sample_from``
    functions receive the spec being resolved: for a Tune experiment spec
    (``{"config": {...}}``) they read ``spec.config.name``.

    Args:
        unresolved_spec: The spec; it is copied, never modified.
        constant_grid_search: Draw the random values once and reuse them for
            every grid point, instead of drawing them per grid point.
        random_state: An int seed, numpy ``Generator`` or ``RandomState``;
            ``None`` uses numpy's global generator.

    Example:
        >>> from fasttune.search.sample import grid_search, uniform
        >>> variants = list(generate_variants(
        ...     {"config": {"a": grid_search([1, 2]), "b": uniform(0, 1)}}, random_state=0))
        >>> [spec["config"]["a"] for _, spec in variants]
        [1, 2]
    """
    if not isinstance(unresolved_spec, Mapping):
        raise TypeError(f"generate_variants: unresolved_spec must be a dict, got {type(unresolved_spec).__name__}.")
    return generate_in_place(copy_spec(unresolved_spec), constant_grid_search, as_rng(random_state))


# ---------------------------------------------------------------------------
# Preset points
# ---------------------------------------------------------------------------


def preset_spec(spec: Mapping, point: Mapping, warn: bool = True) -> Any:
    """A working copy of ``spec`` with ``point``'s values written over ``spec["config"]``."""
    if not isinstance(point, Mapping):
        raise TypeError(
            f"points_to_evaluate entries must be dicts of parameter values, got {type(point).__name__} {point!r}."
        )
    work = copy_spec(spec)
    if isinstance(work.get("config"), dict):
        _merge_point(work["config"], point, ("config",), warn)
    else:
        _merge_point(work, point, (), warn)
    return work


def _merge_point(target: Any, point: Any, path: Path, warn: bool) -> None:
    items = point.items() if isinstance(point, Mapping) else enumerate(point)
    for key, value in items:
        here = path + (key,)
        if isinstance(target, dict):
            present = key in target
        else:
            present = isinstance(key, int) and 0 <= key < len(target)
        if not present:
            raise ValueError(
                f"points_to_evaluate sets '{path_str(here)}', which is not in the param_space; "
                f"add it to the param_space or remove it from the point."
            )
        current = target[key]
        if isinstance(value, Mapping) and isinstance(current, dict) and not is_grid_dict(current):
            _merge_point(current, value, here, warn)
            continue
        if isinstance(value, (list, tuple)) and isinstance(current, list) and len(value) == len(current):
            _merge_point(current, value, here, warn)
            continue
        if warn:
            warn_if_outside(current, value, here)
        target[key] = copy_spec(value)


def warn_if_outside(current: Any, value: Any, path: Path) -> None:
    if isinstance(current, Domain):
        if not current.is_valid(value):
            logger.warning(
                "points_to_evaluate: %r for '%s' is outside its search space %s; it is used anyway.",
                value, path_str(path), current.domain_str,
            )
        return
    if is_grid_dict(current):
        if not Categorical(current[GRID_KEY]).is_valid(value):
            logger.warning(
                "points_to_evaluate: %r for '%s' is not one of its grid values %s; it is used anyway.",
                value, path_str(path), current[GRID_KEY],
            )
        return
    try:
        differs = bool(current != value)
    except (TypeError, ValueError):
        differs = True
    if differs:
        logger.warning(
            "points_to_evaluate: %r for '%s' replaces the constant %r of the param_space.",
            value, path_str(path), current,
        )


def get_preset_variants(
    spec: Mapping,
    config: Mapping,
    constant_grid_search: bool = False,
    random_state: RandomState = None,
) -> Iterator[Tuple[Dict[Path, Any], Dict]]:
    """Like ``generate_variants``, with ``config``'s values fixed in ``spec["config"]``.

    Fixed values replace domains and grid searches; what ``config`` leaves out
    is drawn as usual.  A value outside its domain is logged and used anyway;
    a key that the space does not have is an error.

    Example:
        >>> from fasttune.search.sample import uniform
        >>> spec = {"config": {"lr": uniform(0, 1), "wd": uniform(0, 1)}}
        >>> _, resolved = next(get_preset_variants(spec, {"lr": 0.5}))
        >>> resolved["config"]["lr"]
        0.5
    """
    return generate_in_place(preset_spec(spec, config), constant_grid_search, as_rng(random_state))


# ---------------------------------------------------------------------------
# Tags
# ---------------------------------------------------------------------------


_NOT_PORTABLE = re.compile(r"[^a-zA-Z0-9_-]+")


def clean_value(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{value:.4f}"
    if type(value) is int:
        return str(value)  # digits and a sign only
    # Tags become directory names: keep them portable.
    return _NOT_PORTABLE.sub("_", str(value)).strip("_")


def format_vars(resolved_vars: Mapping[Path, Any]) -> str:
    """The short ``name=value`` form of drawn values used in experiment tags.

    Keys are the last element of each path, floats get four decimals, and
    characters unsafe in directory names become ``_``.

    Example:
        >>> format_vars({("config", "momentum"): 0.9, ("config", "lr"): 0.01})
        'lr=0.0100,momentum=0.9000'
    """
    ordered = sorted(resolved_vars.items(), key=lambda item: path_sort_key(item[0]))
    return ",".join(f"{clean_value(path[-1])}={clean_value(value)}" for path, value in ordered)


def flatten_resolved_vars(resolved_vars: Mapping[Path, Any]) -> Dict[str, Any]:
    """``{("config", "opt", "lr"): v}`` -> ``{"opt/lr": v}``: the trial's evaluated params.

    Example:
        >>> flatten_resolved_vars({("config", "opt", "lr"): 0.1, ("config", "layers", 0): 4})
        {'opt/lr': 0.1, 'layers/0': 4}
    """
    flat: Dict[str, Any] = {}
    for path, value in resolved_vars.items():
        if path and path[0] == "config":
            path = path[1:]
        flat["/".join(str(piece) for piece in path)] = value
    return flat


def resolve_nested_dict(nested_dict: Mapping) -> Dict[Path, Any]:
    """Flattens nested dicts into ``{path_tuple: value}``, the input of ``format_vars``.

    Example:
        >>> resolve_nested_dict({"a": {"b": 1}, "c": 2})
        {('a', 'b'): 1, ('c',): 2}
    """
    flat: Dict[Path, Any] = {}
    for key, value in nested_dict.items():
        if isinstance(value, Mapping):
            for sub_path, sub_value in resolve_nested_dict(value).items():
                flat[(key,) + sub_path] = sub_value
        else:
            flat[(key,)] = value
    return flat
