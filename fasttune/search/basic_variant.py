"""The default search algorithm: grid and random search over the param space.

Trials are made one at a time, when the runner asks, so a 50,000-trial sweep
never holds more than the next variant in memory.

Example:
    >>> from fasttune.search.basic_variant import BasicVariantGenerator
    >>> from fasttune.search.sample import grid_search, uniform
    >>> class Experiment:  # the parts of fasttune.Experiment the generator uses
    ...     name = "demo"
    ...     spec = {"config": {"lr": grid_search([0.1, 0.01]), "wd": uniform(0, 1)}, "num_samples": 2}
    ...     def trial_factory(self, config, experiment_tag, evaluated_params, trial_id):
    ...         return type("Trial", (), {"trial_id": experiment_tag, "config": config})()
    >>> search = BasicVariantGenerator(random_state=0)
    >>> search.add_configurations(Experiment())
    >>> search.total_samples
    4
    >>> [search.next_trial().config["lr"] for _ in range(4)], search.is_finished()
    ([0.1, 0.01, 0.1, 0.01], True)
"""
from __future__ import annotations

import copy
import glob
import logging
import os
import sys
from collections import deque
from collections.abc import Mapping
from typing import Any, Deque, Dict, Iterator, List, Optional, Protocol, Tuple, Union

from fasttune._atomic import atomic_write
from fasttune._serialization import DataOnlyLoader, Loader, pack_noting_pickles, pack_state
from fasttune.search._validate import validate_param_space
from fasttune.search._rng import RandomState, Rng, as_rng
from fasttune.search._sampling_plan import SamplingPlan, PointOverlay
from fasttune.search.search_algorithm import SearchAlgorithm
from fasttune.search.variant_generator import (
    ATOM_TYPES,
    Path,
    copy_spec,
    count_variants,
    flatten_resolved_vars,
    format_vars,
    generate_in_place,
    preset_spec,
)

logger = logging.getLogger(__name__)

__all__ = ["BasicVariantGenerator"]


class _TrialLike(Protocol):
    trial_id: str


class _ExperimentLike(Protocol):
    """What the generator needs from an experiment (``fasttune.Experiment`` has it)."""

    name: str
    spec: Dict[str, Any]

    def trial_factory(
        self, config: Dict, experiment_tag: str, evaluated_params: Dict, trial_id: Optional[str]
    ) -> _TrialLike: ...


# (resolved_vars, spec, the plan whose describe() writes the tag faster, or None).
Variant = Tuple[Dict[Path, Any], Dict, Optional[SamplingPlan]]

# Whether random samples and points use a SamplingPlan; tests turn it off to compare with the general path.
_USE_SAMPLING_PLAN = True


# The overlay of a sample the plan draws whole (no point): PointOverlay() draws every entry.
_WHOLE_SAMPLE = PointOverlay()

# What a sample drawn at once leaves as its variants: nothing more (its one variant is taken).
_DRAWN: Iterator[Variant] = iter(())
# get_state's form: 2 saves how many points are left, not the points (1 listed them); 3 is
# what save_to_dir writes when it puts "packed_points" (the bytes of pack(points_to_evaluate),
# made once) in place of points_to_evaluate, and only then: other states stay readable by
# the fasttune versions that read 2.
_STATE_VERSION = 3
_UNPACKED_POINTS_VERSION = 2


class _PlainDataLoader(DataOnlyLoader):
    """Reads the points save_to_dir packed, which it packs only when they are plain data:
    a pickled object there was not written by fasttune, and is neither loaded nor let by
    unseen (what a restore loads is listed from the state, which holds these as bytes)."""

    def unpickle(self, data: bytes) -> Any:
        raise ValueError("the saved points to evaluate hold a pickled object, which fasttune never "
                         "writes there: the searcher's state file was changed or damaged")


def _planned_variants(item: "_ExperimentVariants", overlay: PointOverlay, rng: Rng) -> Iterator[Variant]:
    # A generator, so that the draw happens on next() as with generate_in_place.
    yield item.planned_variant(overlay, rng)


def _holds_atoms_only(point: Dict) -> bool:
    """Whether ``point``'s keys and values are all atoms (nothing in it can change)."""
    return all(isinstance(key, ATOM_TYPES) and isinstance(value, ATOM_TYPES) for key, value in point.items())


def _own_points(points: List[Mapping]) -> Tuple[List[Dict], bool]:
    """Copies of ``points`` that share nothing mutable with them (a plain copy of a point
    that only holds atoms: deepcopy would give the same), and whether all of them do."""
    owned_points, atoms_only = [], True
    for point in points:
        owned = dict(point)
        if not _holds_atoms_only(owned):
            owned, atoms_only = copy.deepcopy(owned), False
        owned_points.append(owned)
    return owned_points, atoms_only


def _saved_experiment(experiment: _ExperimentLike) -> _ExperimentLike:
    """``experiment`` as the generator's state keeps it: a ``fasttune.Experiment`` without
    its trainable object (``Experiment.without_trainable_object``), which trials name and a
    restore is given again; saved at each snapshot, a Simulation's table would be too."""
    without_trainable = getattr(experiment, "without_trainable_object", None)
    return experiment if without_trainable is None else without_trainable()


def _general_variants(work: Any, constant_grid_search: bool, rng: Rng) -> Iterator[Variant]:
    # A trial's tag and evaluated_params leave out what sample_from functions gave, as Ray
    # Tune's do (its Tuner and tune.run resolve those after the variant is made).
    for resolved_vars, spec in generate_in_place(work, constant_grid_search, rng, with_sample_from=False):
        yield resolved_vars, spec, None


class _ExperimentVariants:
    """The variants of one experiment, drawn on demand.

    The points to evaluate come first, each using up one of ``num_samples``;
    then each remaining sample expands the whole grid.  A checkpoint records
    the random state at the start of the current grid expansion and how many
    variants it yielded: replaying that many draws reproduces the position.
    """

    def __init__(
        self,
        experiment: _ExperimentLike,
        space: Dict,
        points: List[Dict],
        num_samples: int,
        constant_grid_search: bool,
    ) -> None:
        self.experiment = experiment
        self.space = space
        # Only read, never changed: the generator's own copies, shared by its experiments.
        self.points: Deque[Dict] = deque(points)
        # id(point) -> (point, its plan's overlay or None), as add_configurations's check found
        # them: each point's overlay is worked out once, not again when it is drawn.
        self.point_overlays: Dict[int, Tuple[Dict, Optional[PointOverlay]]] = {}
        self.samples_left = num_samples
        self.constant_grid_search = constant_grid_search
        # Samples and points draw from this plan when it can reproduce the general path's draw.
        self.plan = SamplingPlan.compile(space) if _USE_SAMPLING_PLAN else None
        self.variants: Optional[Iterator[Variant]] = None
        self.origin: Optional[Dict] = None
        self.start_state: Any = None
        # The current sample drew nothing: the generator is still at its start, and start_state
        # is read from it when saved (a copy of the generator's state for each such point costs).
        self.start_unmoved = False
        self.taken = 0

    def next_variant(self, rng: Rng) -> Optional[Variant]:
        while True:
            if self.variants is not None:
                variant = next(self.variants, None)
                if variant is not None:
                    self.taken += 1
                    return variant
                self.variants = None
            if self.points:
                origin: Optional[Dict] = self.points.popleft()
            elif self.samples_left > 0:
                origin = None
            else:
                self.start_state = self.saved_start_state(rng)  # (the generator moves on for others)
                self.start_unmoved = False
                return None
            self.samples_left -= 1
            overlay = self._plan_overlay(origin)
            if overlay is not None:
                # A sample the plan draws is one variant: drawn now, with no iterator made for it
                # (the same state as after open() and one next(): a restore opens it).
                unmoved = overlay.draws_nothing and rng.is_own  # (no one else moves it meanwhile)
                start_state = None if rng.is_global or unmoved else rng.get_state()
                self.origin, self.start_state, self.taken, self.variants = origin, start_state, 1, _DRAWN
                self.start_unmoved = unmoved
                return self.planned_variant(overlay, rng)
            self.open(origin, rng, None if rng.is_global else rng.get_state())

    def saved_start_state(self, rng: Rng) -> Any:
        """The generator's state at the start of the current sample, as a checkpoint keeps it
        (``None`` for numpy's global generator); ``rng`` is the generator the samples draw from."""
        return rng.get_state() if self.start_unmoved else self.start_state

    def open(self, origin: Optional[Dict], rng: Rng, start_state: Any) -> None:
        self.origin, self.start_state, self.taken, self.start_unmoved = origin, start_state, 0, False
        overlay = self._plan_overlay(origin)
        if overlay is not None:
            self.variants = _planned_variants(self, overlay, rng)
            return
        work = copy_spec(self.space) if origin is None else preset_spec(self.space, origin, warn=False)
        self.variants = _general_variants(work, self.constant_grid_search, rng)

    def _plan_overlay(self, origin: Optional[Dict]) -> Optional[PointOverlay]:
        """What the plan draws the sample of ``origin`` (a point, or ``None``) with; ``None``
        when only the general path can draw it."""
        if self.plan is None:
            return None
        if origin is None:
            return _WHOLE_SAMPLE if self.plan.complete else None
        return self._overlay_of(origin)

    def planned_variant(self, overlay: PointOverlay, rng: Rng) -> Variant:
        """The sample the plan draws with ``overlay`` (from :meth:`_plan_overlay`); the plan's
        tags are for whole samples only (a point's few drawn values use format_vars)."""
        plan = self.plan
        return plan.draw(rng, overlay) + ((plan if overlay is _WHOLE_SAMPLE else None),)

    def _overlay_of(self, point: Dict) -> Optional[PointOverlay]:
        known = self.point_overlays.pop(id(point), None)
        if known is not None and known[0] is point:
            return known[1]
        return self.plan.point_overlay(point)


class BasicVariantGenerator(SearchAlgorithm):
    """Grid and random search: expands each experiment's param space into trials.

    Each of ``num_samples`` samples runs the full grid (the product of all
    ``grid_search`` values); random domains are drawn per grid point.  Trials
    are created lazily, one per ``next_trial()`` call.

    Args:
        points_to_evaluate: Configs (possibly partial) to run first; their
            values replace those of the param space and each uses up one of
            ``num_samples``.
        max_concurrent: If > 0, ``next_trial()`` returns ``None`` while this
            many of its trials are running.
        constant_grid_search: Draw random values once per sample and reuse
            them for every grid point.
        random_state: An int seed, numpy ``Generator`` or ``RandomState`` for
            reproducible sweeps; ``None`` uses numpy's global generator.
    """

    CKPT_FILE_TMPL = "basic-variant-state-{}.pkl"

    def __init__(
        self,
        points_to_evaluate: Optional[List[Dict]] = None,
        max_concurrent: int = 0,
        constant_grid_search: bool = False,
        random_state: RandomState = None,
    ) -> None:
        if points_to_evaluate is not None:
            if not isinstance(points_to_evaluate, (list, tuple)):
                raise TypeError(
                    "points_to_evaluate must be a list of config dicts, got "
                    f"{type(points_to_evaluate).__name__}."
                )
            for index, point in enumerate(points_to_evaluate):
                if not isinstance(point, Mapping):
                    raise TypeError(
                        f"points_to_evaluate[{index}] must be a dict of parameter values, got "
                        f"{type(point).__name__} {point!r}."
                    )
        if isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int) or max_concurrent < 0:
            raise ValueError(f"max_concurrent must be an int >= 0 (0 means no limit), got {max_concurrent!r}.")
        self._points_to_evaluate, atoms_only = _own_points(points_to_evaluate or [])
        self.max_concurrent = max_concurrent
        self._constant_grid_search = bool(constant_grid_search)
        self._rng = as_rng(random_state)
        self._experiments: List[_ExperimentVariants] = []
        self._position = 0
        self._next: Optional[Tuple[int, Dict[Path, Any], Dict, Optional[SamplingPlan]]] = None
        self._counter = 0
        self._live_trials: set = set()
        self._total_samples = 0
        # (points_to_evaluate, pack of it or None): what save_to_dir writes, packed once.
        self._packed_points: Optional[Tuple[List[Dict], Optional[bytes]]] = None
        # (points_to_evaluate, whether its points hold atoms only), as made here.
        self._atoms_only = (self._points_to_evaluate, atoms_only)

    @property
    def total_samples(self) -> int:
        """How many trials the added experiments produce (grid x samples, plus points)."""
        return self._total_samples

    def add_configurations(self, experiments: Union[_ExperimentLike, List[_ExperimentLike]]) -> None:
        """Queues the trials of ``experiments`` (one or a list) after those already queued."""
        batch = list(experiments) if isinstance(experiments, (list, tuple)) else [experiments]
        for experiment in batch:
            spec = getattr(experiment, "spec", None)
            if not isinstance(spec, Mapping) or not callable(getattr(experiment, "trial_factory", None)):
                raise TypeError(
                    "add_configurations takes Experiment objects (with .spec and .trial_factory), "
                    f"got {type(experiment).__name__}."
                )
            config = spec.get("config") or {}
            validate_param_space(config)
            num_samples = self._num_samples(spec.get("num_samples", 1))
            space = {"config": config}
            points = self._points_to_evaluate
            item = _ExperimentVariants(experiment, space, points, num_samples, self._constant_grid_search)
            total = 0
            for point in points:
                # Checks every point against the space now, and warns once; a point the
                # plan draws sets every grid search (the plan leaves them to points).
                overlay = None
                if item.plan is not None:
                    overlay = item.plan.point_overlay(point, warn=True)
                    item.point_overlays[id(point)] = (point, overlay)
                if overlay is not None:
                    total += 1
                else:
                    total += count_variants(preset_spec(space, point, warn=True))
            total += count_variants(space, max(num_samples - len(points), 0))
            self._total_samples += total
            self._experiments.append(item)
        if self._next is None:
            self._next = self._advance()
            self._finished = self._next is None and self._finished

    @staticmethod
    def _num_samples(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or (value < 0 and value != -1):
            raise ValueError(f"num_samples must be an int >= 0, or -1 for unlimited, got {value!r}.")
        return sys.maxsize if value == -1 else value

    def _advance(self) -> Optional[Tuple[int, Dict[Path, Any], Dict, Optional[SamplingPlan]]]:
        while self._position < len(self._experiments):
            variant = self._experiments[self._position].next_variant(self._rng)
            if variant is not None:
                return (self._position,) + variant
            self._position += 1
        return None

    def next_trial(self) -> Optional[_TrialLike]:
        """The next trial, or ``None`` when finished or at ``max_concurrent`` live trials."""
        if self._finished:
            return None
        if self.max_concurrent > 0 and len(self._live_trials) >= self.max_concurrent:
            return None
        if self._next is None:
            self._next = self._advance()
            if self._next is None:
                self.set_finished()
                return None
        index, resolved_vars, spec, plan = self._next
        tag = str(self._counter)
        if not resolved_vars:  # (a point that sets every value draws nothing to show)
            evaluated_params: Dict[str, Any] = {}
        else:
            if plan is not None:
                tag_vars, evaluated_params = plan.describe(resolved_vars)
            else:
                tag_vars, evaluated_params = format_vars(resolved_vars), flatten_resolved_vars(resolved_vars)
            tag += "_" + tag_vars
        experiment = self._experiments[index].experiment
        trial = experiment.trial_factory(spec["config"], tag, evaluated_params, None)
        self._counter += 1
        self._live_trials.add(trial.trial_id)
        # Look one variant ahead so that is_finished() is true as soon as the
        # last trial is out, not one next_trial() call later.
        self._next = self._advance()
        if self._next is None:
            self.set_finished()
        return trial

    def on_trial_complete(self, trial_id: str, result: Optional[Dict] = None, error: bool = False) -> None:
        self._live_trials.discard(trial_id)

    # -- checkpointing -----------------------------------------------------

    def get_state(self) -> Dict[str, Any]:
        """The generator's position, as a picklable dict (the experiments included)."""
        experiments = []
        for index, item in enumerate(self._experiments):
            taken = item.taken
            if self._next is not None and self._next[0] == index:
                taken -= 1  # the look-ahead variant is redrawn on restore
            experiments.append(
                {
                    "experiment": _saved_experiment(item.experiment),
                    "space": item.space,
                    **self._saved_points(item),
                    "samples_left": item.samples_left,
                    "active": item.variants is not None,
                    "origin": item.origin,
                    "start_state": item.saved_start_state(self._rng),
                    "taken": taken,
                }
            )
        return {
            "version": _UNPACKED_POINTS_VERSION,
            "experiments": experiments,
            "position": self._position,
            "counter": self._counter,
            "live_trials": set(self._live_trials),
            "total_samples": self._total_samples,
            "finished": self._finished,
            "rng": self._rng,
            "points_to_evaluate": self._points_to_evaluate,
            "max_concurrent": self.max_concurrent,
            "constant_grid_search": self._constant_grid_search,
            "metric": self._metric,
            "mode": self._mode,
        }

    def _saved_points(self, item: _ExperimentVariants) -> Dict[str, Any]:
        # The points not run yet are the last ones of points_to_evaluate (taken from the
        # front): their number is saved, not each of them again at every snapshot.
        left, points = len(item.points), self._points_to_evaluate
        if not left or (left <= len(points) and item.points[0] is points[len(points) - left]):
            return {"points_left": left}
        return {"points": list(item.points)}  # (not a tail of them: never made so, kept safe)

    def set_state(self, state: Dict[str, Any]) -> None:
        """Continues from a ``get_state()`` dict, with the same trials still to come."""
        version = state.get("version", 1)
        if version > _STATE_VERSION:
            raise ValueError(
                f"This BasicVariantGenerator state has version {version}; this fasttune reads up to "
                f"{_STATE_VERSION}. Restore it with the fasttune version that saved it (or a newer one).")
        self._rng = state["rng"]
        self._position = state["position"]
        self._counter = state["counter"]
        self._live_trials = set(state["live_trials"])
        self._total_samples = state["total_samples"]
        self._finished = state["finished"]
        if "packed_points" in state:
            self._points_to_evaluate = _PlainDataLoader().unpack(state["packed_points"])
        else:
            self._points_to_evaluate = state["points_to_evaluate"]
        self.max_concurrent = state["max_concurrent"]
        self._constant_grid_search = state["constant_grid_search"]
        self._metric, self._mode = state["metric"], state["mode"]
        # Experiments added before the restore (a restored Tuner adds its own) make the
        # trials, so they carry this run's storage path and trial ids; the saved copies
        # serve a generator restored on its own.
        current = [item.experiment for item in self._experiments]
        if len(current) != len(state["experiments"]):
            current = [saved["experiment"] for saved in state["experiments"]]
        self._experiments = []
        for saved, experiment in zip(state["experiments"], current):
            item = _ExperimentVariants(
                experiment, saved["space"], self._restored_points(saved), saved["samples_left"],
                self._constant_grid_search)
            if saved["active"]:
                if saved["start_state"] is not None:
                    self._rng.set_state(saved["start_state"])
                item.open(saved["origin"], self._rng, saved["start_state"])
                for _ in range(saved["taken"]):
                    next(item.variants)
                item.taken = saved["taken"]
            self._experiments.append(item)
        self._next = None if self._finished else self._advance()

    def _restored_points(self, saved: Dict[str, Any]) -> List[Dict]:
        points = self._points_to_evaluate
        if "points_left" in saved:
            left = saved["points_left"]
            return points[len(points) - left:] if left else []
        listed = saved["points"]  # (version 1 listed them: the same tail, as objects of their own)
        if not listed or len(listed) > len(points):
            return listed
        return points[len(points) - len(listed):]  # (a tail by construction: never compared, values may not say)

    def save_to_dir(self, dirpath: str, session_str: str = "default") -> bool:
        """Writes the state to ``dirpath`` (msgpack; the experiments and random generator
        in it cloudpickled); returns ``False`` (and logs why) if it cannot be stored.

        Points to evaluate that hold plain values only are packed once and the bytes
        reused at each save: a snapshot's cost does not grow with how many points the
        sweep was given.

        Example:
            >>> import tempfile
            >>> generator = BasicVariantGenerator(points_to_evaluate=[{"x": 1}], random_state=0)
            >>> restored = BasicVariantGenerator()
            >>> with tempfile.TemporaryDirectory() as directory:
            ...     assert generator.save_to_dir(directory, session_str="s")
            ...     restored.restore_from_dir(directory)
            >>> restored.get_state()["points_to_evaluate"]
            [{'x': 1}]
        """
        try:
            state = self.get_state()
            packed_points = self._points_packed_once()
            if packed_points is not None:
                del state["points_to_evaluate"]
                state["packed_points"], state["version"] = packed_points, _STATE_VERSION
            data = pack_state(state)
        except Exception as exc:  # pickling arbitrary user objects fails in many ways
            logger.warning(
                "BasicVariantGenerator could not save its state (%s: %s); this sweep cannot be resumed "
                "from %s. Functions in the param_space and the experiment must be picklable.",
                type(exc).__name__, exc, dirpath,
            )
            return False
        atomic_write(os.path.join(dirpath, self.CKPT_FILE_TMPL.format(session_str)), data, durable=True)
        return True

    def _points_packed_once(self) -> Optional[bytes]:
        """``pack(points_to_evaluate)``, made once for the list; ``None`` (packed with the
        state each time, as any other value) when there are none, or when a point holds
        more than plain data (an object in it could change, and would be pickled)."""
        points = self._points_to_evaluate
        # (a generator pickled by an older fasttune has neither attribute)
        packed = getattr(self, "_packed_points", None)
        if packed is None or packed[0] is not points:
            data = None
            made = getattr(self, "_atoms_only", None)
            if made is not None and made[0] is points:
                atoms_only = made[1]
            else:  # (points a restore gave)
                atoms_only = all(type(point) is dict and _holds_atoms_only(point) for point in points)
            if points and atoms_only:
                # (an atom is data unless pickled: a subclass of int or str, complex, ...)
                data, pickled = pack_noting_pickles(points)
                if pickled:
                    data = None
            # The list and its dicts are the generator's own and never changed once made.
            packed = self._packed_points = (points, data)
        return packed[1]

    def has_checkpoint(self, dirpath: str) -> bool:
        return bool(glob.glob(os.path.join(dirpath, self.CKPT_FILE_TMPL.format("*"))))

    def restore_from_dir(self, dirpath: str) -> None:
        paths = glob.glob(os.path.join(dirpath, self.CKPT_FILE_TMPL.format("*")))
        if not paths:
            raise RuntimeError(
                f"No BasicVariantGenerator checkpoint ({self.CKPT_FILE_TMPL.format('*')}) in {dirpath}."
            )
        with open(max(paths, key=os.path.getmtime), "rb") as f:
            self.set_state(Loader().loads(f.read()))
