"""Changing a live trial's resources: ``ray.tune.schedulers.ResourceChangingScheduler``.

:class:`ResourceChangingScheduler` wraps another scheduler (FIFO by default).  After the
wrapped scheduler lets a trial go on, it asks ``resources_allocation_function`` what the
trial should hold now; when the answer differs from the trial's current
PlacementGroupFactory, the trial is paused (it resumes from its latest checkpoint),
given the new resources, and restarted on a worker of that shape from the pool.  A
function trainable reads them with ``fasttune.get_context().get_trial_resources()``, a
class trainable with ``self.trial_resources``.

:class:`DistributeResources` (the default allocation) spreads the cluster's CPUs or GPUs
evenly over the live trials; :class:`DistributeResourcesToTopJob` gives what is free to
the best trial.

Decision points: those of the wrapped scheduler together with those the allocation
function asks for (its ``decision_points(trial)`` when it has one, and it is then asked
only there; else every result, as Ray Tune asks it at each result), so a change always
pauses the trial at a decision point, at the checkpoint of that result.

Differences from Ray Tune, deliberate: it works with pooled workers
(``reuse_actors=True``, fasttune's default) instead of refusing them: the trial's old
worker goes back to the pool of its shape, and idle workers of other shapes are let go
when the new shape needs their resources; a dict answered by the allocation function is
compared with the trial's resources as the PlacementGroupFactory it stands for (Ray Tune
treats every dict as a change).

Example:
    >>> from fasttune.schedulers import ASHAScheduler, ResourceChangingScheduler
    >>> from fasttune.schedulers.resource_changing_scheduler import DistributeResources
    >>> scheduler = ResourceChangingScheduler(
    ...     base_scheduler=ASHAScheduler(metric="loss", mode="min", max_t=8),
    ...     resources_allocation_function=DistributeResources(add_bundles=False))
    >>> scheduler.debug_string().startswith("(ResourceChangingScheduler) ")
    True
"""
from __future__ import annotations

import logging
import math
import warnings
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Set, Tuple, Union

from fasttune._decision_points import DecisionPoints
from fasttune._resources import PlacementGroupFactory, resource_dict_to_pg_factory
from fasttune.schedulers._common import load_state, save_state
from fasttune.schedulers._controller import TuneControllerView
from fasttune.schedulers.trial_scheduler import FIFOScheduler, TrialScheduler

if TYPE_CHECKING:  # pragma: no cover
    from fasttune.experiment.trial import Trial

logger = logging.getLogger(__name__)

Bundles = List[Dict[str, float]]
AllocationFunction = Callable[
    [TuneControllerView, "Trial", Dict[str, Any], "ResourceChangingScheduler"],
    Optional[Union[PlacementGroupFactory, Dict[str, Any]]],
]


def _cpu(resources: Dict[str, float]) -> float:
    return resources.get("CPU", 0)


def _gpu(resources: Dict[str, float]) -> float:
    return resources.get("GPU", 0)


def _summed(bundles: Bundles) -> Dict[str, float]:
    """Each resource summed over ``bundles`` (only those named; CPU and GPU 0 for none)."""
    if not bundles:
        return {"CPU": 0, "GPU": 0}
    total: Dict[str, float] = {}
    for bundle in bundles:
        for name, amount in bundle.items():
            total[name] = total.get(name, 0) + amount
    return total


def _real_bundles(pgf: PlacementGroupFactory) -> Bundles:
    """The bundles that ask for something (an empty head bundle left out, as Ray Tune
    lists them): the arithmetic below counts in these."""
    bundles = pgf.bundles
    return bundles[1:] if pgf.head_bundle_is_empty and len(bundles) > 1 else bundles


class DistributeResources:
    """An allocation function that shares the cluster's CPUs and GPUs evenly between the
    live trials, so that all of them are in use; each trial keeps at least the resources
    it started with (the scheduler's ``base_trial_resources``), and gives some back when
    it holds more than is free.

    Args:
        add_bundles: grow a trial by adding bundles (True) or by enlarging its one bundle
            (False; then trials must have a single bundle).
        increase_by: the unit a trial grows by, e.g. ``{"CPU": 2}``; by default its last
            bundle with ``add_bundles``, else 1 GPU when it has GPUs, else 1 CPU.
        increase_by_times: at most this many units are added to a trial (< 1: no limit).
        reserve_resources: resources never handed out, e.g. ``{"CPU": 1}``.

    Subclass it and override :meth:`_get_new_added_bundles` for another policy, or pass
    any callable ``(tune_controller, trial, result, scheduler) -> PGF | dict | None``.
    """

    def __init__(
        self,
        add_bundles: bool = False,
        increase_by: Optional[Dict[str, float]] = None,
        increase_by_times: int = -1,
        reserve_resources: Optional[Dict[str, float]] = None,
    ) -> None:
        if increase_by:
            if not isinstance(increase_by, dict):
                raise TypeError(f"increase_by must be a dict such as {{'CPU': 1}}, got {type(increase_by).__name__}.")
            if _cpu(increase_by) < 0 or _gpu(increase_by) < 0 or not (_cpu(increase_by) or _gpu(increase_by)):
                raise ValueError(f"increase_by must give a positive amount of CPU or GPU (and none negative), "
                                 f"got {increase_by!r}.")
        self.add_bundles = add_bundles
        self.increase_by = increase_by or {}
        self.increase_by_times = increase_by_times
        self.reserve_resources = reserve_resources or {}

    def decision_points(self, trial: "Trial") -> DecisionPoints:
        """Every result: what is free changes whenever a trial starts or ends."""
        return DecisionPoints.every_result()

    # ---- what the cluster and the trials hold ----------------------------------------------
    def _get_total_available_resources(self, tune_controller: TuneControllerView) -> Tuple[float, float]:
        """The cluster's CPUs and GPUs (all of them, not only the free ones), less the reserve."""
        total = tune_controller.cluster_resources()
        return _cpu(total) - _cpu(self.reserve_resources), _gpu(total) - _gpu(self.reserve_resources)

    def _get_used_cpus_and_gpus(self, trial: "Trial") -> Tuple[float, float]:
        required = trial.placement_group_factory.required_resources
        return _cpu(required), _gpu(required)

    def _get_resources_from_bundles(self, bundles: Bundles) -> Dict[str, float]:
        return _summed(bundles)

    def _is_bundle_empty(self, bundle: Dict[str, float]) -> bool:
        return not (_cpu(bundle) or _gpu(bundle))

    # ---- bundle arithmetic ------------------------------------------------------------------
    def _add_two_bundles(self, bundles_a: Bundles, bundles_b: Bundles, increase_by: Dict[str, float],
                         limit_to_increase_by_times: bool, max_increase_by_times: int = -1) -> Bundles:
        """``bundles_a`` and ``bundles_b`` together; with ``limit_to_increase_by_times``,
        capped at the smaller of ``max_increase_by_times`` and ``increase_by_times`` units
        (a cap <= 0 is no cap)."""
        cap = max_increase_by_times
        if limit_to_increase_by_times and self.increase_by_times > 0:
            cap = min(cap, self.increase_by_times) if cap > 0 else self.increase_by_times
        if self.add_bundles:
            joined = [b for b in list(bundles_a) + list(bundles_b) if not self._is_bundle_empty(b)]
            return joined[:cap] if cap > 0 else joined
        first_a = (bundles_a or [{}])[0]
        first_b = (bundles_b or [{}])[0]
        merged = {"CPU": _cpu(first_a) + _cpu(first_b), "GPU": _gpu(first_a) + _gpu(first_b)}
        if cap > 0:
            merged["CPU"] = min(merged["CPU"], _cpu(increase_by) * cap)
            merged["GPU"] = min(merged["GPU"], _gpu(increase_by) * cap)
        return [merged]

    def _get_multiplier(self, increase_by: Dict[str, float], cpus: float = 0, gpus: float = 0,
                        max_multiplier: int = -1) -> int:
        """How many units of ``increase_by`` fit in ``cpus`` and ``gpus`` (negative when
        they are negative: units to give back), at most ``max_multiplier`` when > 0."""
        unit_cpus, unit_gpus = _cpu(increase_by), _gpu(increase_by)
        if unit_cpus and unit_gpus:
            units = min(cpus // unit_cpus, gpus // unit_gpus)
        elif unit_gpus:
            units = gpus // unit_gpus
        else:
            units = cpus // unit_cpus
        if max_multiplier > 0 and units > 0:
            units = min(max_multiplier, units)
        return int(units)

    def _remove_bundles(self, bundles: Bundles, increase_by: Dict[str, float], multiplier: int) -> Bundles:
        """``bundles`` less ``|multiplier|`` units (never below zero)."""
        units = abs(multiplier)
        if self.add_bundles:
            return bundles[:-units] if units else bundles
        first = dict(bundles[0])
        first["CPU"] = max(_cpu(first) - _cpu(increase_by) * units, 0)
        first["GPU"] = max(_gpu(first) - _gpu(increase_by) * units, 0)
        return [first] + [dict(b) for b in bundles[1:]]

    def _create_new_bundles(self, increase_by: Dict[str, float], multiplier: int) -> Bundles:
        """``|multiplier|`` units: as that many bundles, or as one."""
        units = abs(multiplier)
        if self.add_bundles:
            return [increase_by] * int(units)
        return [{"CPU": _cpu(increase_by) * units, "GPU": _gpu(increase_by) * units}]

    def _modify_bundles_with_free_resources(self, bundles: Bundles, increase_by: Dict[str, float],
                                            free_cpus: float, free_gpus: float, *, max_multiplier: int = -1,
                                            max_increase_by_times: int = -1) -> Bundles:
        """``bundles`` grown by the units that fit in what is free, or shrunk by those
        missing when less than nothing is free."""
        units = self._get_multiplier(increase_by, free_cpus, free_gpus, max_multiplier)
        if units < 0:
            return self._remove_bundles(bundles, increase_by, units)
        if units > 0:
            return self._add_two_bundles(bundles, self._create_new_bundles(increase_by, units), increase_by,
                                         True, max_increase_by_times)
        return bundles

    def _get_added_bundles(self, bundles: Bundles, base_bundles: Bundles) -> Bundles:
        """What ``bundles`` hold beyond ``base_bundles``."""
        if self.add_bundles:
            return bundles[len(base_bundles):]
        first = (bundles or [{}])[0]
        base = (base_bundles or [{}])[0]
        return [{"CPU": _cpu(first) - _cpu(base), "GPU": _gpu(first) - _gpu(base)}]

    def _are_bundles_below_limit(self, bundles: Bundles, base_bundles: Optional[Bundles] = None,
                                 max_added_cpus: Optional[float] = None,
                                 max_added_gpus: Optional[float] = None) -> bool:
        """Whether a trial holding ``bundles`` may still grow (below the
        ``increase_by_times`` limit in CPUs or in GPUs)."""
        limited = self.increase_by_times > 0
        if not max_added_cpus:
            max_added_cpus = _cpu(self.increase_by) * self.increase_by_times if limited else math.inf
        if not max_added_gpus:
            max_added_gpus = _gpu(self.increase_by) * self.increase_by_times if limited else math.inf
        added = _summed(self._get_added_bundles(bundles, base_bundles) if base_bundles else bundles)
        # A resource the bundles do not name counts as below any limit.
        return added.get("CPU", -math.inf) < max_added_cpus or added.get("GPU", -math.inf) < max_added_gpus

    # ---- the policy ---------------------------------------------------------------------------
    def _get_new_added_bundles(self, trial: "Trial", all_trials: List["Trial"], base_bundles: Bundles,
                               increase_by: Dict[str, float], total_available_cpus: float,
                               total_available_gpus: float, used_cpus: float, used_gpus: float) -> Bundles:
        """What ``trial`` should hold beyond the base resources.

        Its fair share is found by handing units out one at a time, round robin over all
        live trials, from what the cluster has beyond every trial's base resources; the
        first trial's count of units is the cap (trials then differ by at most one).  The
        trial then grows by what is free now, up to that cap (or shrinks by what is missing).
        """
        base = _summed(base_bundles)
        left_cpus = total_available_cpus - _cpu(base) * len(all_trials)
        left_gpus = total_available_gpus - _gpu(base) * len(all_trials)
        shares: List[Bundles] = [[] for _ in all_trials]
        full: Set[int] = set()
        share_cap = 0
        turn = 0
        while len(full) < len(all_trials) and left_cpus >= _cpu(increase_by) and left_gpus >= _gpu(increase_by):
            index = turn % len(shares)
            before = shares[index]
            shares[index] = self._modify_bundles_with_free_resources(before, increase_by, left_cpus, left_gpus,
                                                                     max_multiplier=1)
            gained = _summed(self._get_added_bundles(shares[index], before))
            if not _cpu(gained) and not _gpu(gained):
                full.add(index)
            elif index == 0:
                share_cap += 1
            left_cpus -= _cpu(gained)
            left_gpus -= _gpu(gained)
            turn += 1
        return self._modify_bundles_with_free_resources(
            self._get_added_bundles(_real_bundles(trial.placement_group_factory), base_bundles), increase_by,
            total_available_cpus - used_cpus, total_available_gpus - used_gpus,
            max_increase_by_times=share_cap)

    def _increase_unit(self, base: PlacementGroupFactory) -> Dict[str, float]:
        if self.increase_by:
            return self.increase_by
        if self.add_bundles:
            return _real_bundles(base)[-1]
        return {"GPU": 1} if _gpu(base.bundles[0]) else {"CPU": 1}

    def __call__(self, tune_controller: TuneControllerView, trial: "Trial", result: Dict[str, Any],
                 scheduler: "ResourceChangingScheduler") -> Optional[PlacementGroupFactory]:
        """The resources ``trial`` should hold after ``result`` (None: leave them; the
        scheduler also leaves them when the answer equals what the trial holds)."""
        base = scheduler.base_trial_resources
        if not isinstance(base, PlacementGroupFactory):
            raise ValueError(f"{type(self).__name__} works with PlacementGroupFactory resources only, "
                             f"got {base!r}.")
        base_bundles = _real_bundles(base)
        if not self.add_bundles and len(base_bundles) > 1:
            raise ValueError(f"{type(self).__name__}(add_bundles=False) needs trials with one bundle; the trials "
                             f"request {len(base_bundles)} ({base}). Pass add_bundles=True.")
        if result.get("training_iteration", 0) < 1:
            return None
        increase_by = self._increase_unit(base)
        total_cpus, total_gpus = self._get_total_available_resources(tune_controller)
        all_trials = tune_controller.get_live_trials()
        used = [self._get_used_cpus_and_gpus(t) for t in all_trials]
        added = self._get_new_added_bundles(
            trial, all_trials, base_bundles, increase_by, total_cpus, total_gpus,
            sum(cpus for cpus, _ in used), sum(gpus for _, gpus in used))
        bundles = self._add_two_bundles(base_bundles, added, increase_by, False)
        if base.head_bundle_is_empty:
            bundles = [{}] + bundles  # the trial's own worker still asks for nothing
        return PlacementGroupFactory(bundles, base.strategy)


class DistributeResourcesToTopJob(DistributeResources):
    """An allocation function that gives every free CPU or GPU to the best trial by
    ``metric`` and ``mode`` (the first below its ``increase_by_times`` limit); the others
    keep what they hold, unless less than nothing is free.  ``metric`` and ``mode``
    default to the wrapped scheduler's, then to the TuneConfig's."""

    def __init__(
        self,
        add_bundles: bool = False,
        increase_by: Optional[Dict[str, float]] = None,
        increase_by_times: int = -1,
        reserve_resources: Optional[Dict[str, float]] = None,
        metric: Optional[str] = None,
        mode: Optional[str] = None,
    ) -> None:
        super().__init__(add_bundles, increase_by, increase_by_times, reserve_resources)
        self.metric = metric
        self.mode = mode

    @property
    def _metric_op(self) -> float:
        if self.mode not in ("min", "max"):
            raise ValueError(f"DistributeResourcesToTopJob needs mode 'min' or 'max', got {self.mode!r}.")
        return 1.0 if self.mode == "max" else -1.0

    def _get_new_added_bundles(self, trial: "Trial", all_trials: List["Trial"], base_bundles: Bundles,
                               increase_by: Dict[str, float], total_available_cpus: float,
                               total_available_gpus: float, used_cpus: float, used_gpus: float) -> Bundles:
        if self.metric is None:
            raise ValueError("DistributeResourcesToTopJob needs a metric: set it here, in the wrapped scheduler "
                             "or in TuneConfig(metric=...).")
        free_cpus = total_available_cpus - used_cpus
        free_gpus = total_available_gpus - used_gpus
        sign = self._metric_op
        # A trial without the metric yet sorts as +inf would (first when maximizing).
        ranked = sorted(all_trials, key=lambda t: -sign * (t.last_result or {}).get(self.metric, math.inf))
        best = next((t for t in ranked
                     if self._are_bundles_below_limit(_real_bundles(t.placement_group_factory), base_bundles)),
                    ranked[0])
        added = self._get_added_bundles(_real_bundles(trial.placement_group_factory), base_bundles)
        if trial.trial_id != best.trial_id and self._get_multiplier(increase_by, free_cpus, free_gpus) >= 0:
            return added
        return self._modify_bundles_with_free_resources(added, increase_by, free_cpus, free_gpus)


_DistributeResourcesDefault = DistributeResources(add_bundles=False)
_DistributeResourcesDistributedDefault = DistributeResources(add_bundles=True)


def _union(a: DecisionPoints, b: DecisionPoints) -> DecisionPoints:
    """Iterations in ``a`` or in ``b``; every result when the union has no exact form."""
    if a == DecisionPoints.never():
        return b
    if b == DecisionPoints.never() or a == b:
        return a
    wire_a, wire_b = a.to_wire(), b.to_wire()
    if isinstance(wire_a, list) and isinstance(wire_b, list) and wire_a[0] == wire_b[0] == "at":
        return DecisionPoints.at(list(wire_a[1]) + list(wire_b[1]))
    return DecisionPoints.every_result()


class ResourceChangingScheduler(TrialScheduler):
    """Wraps ``base_scheduler`` (FIFO when None) and changes live trials' resources with
    ``resources_allocation_function`` (see the module docstring).

    Args:
        base_scheduler: the scheduler whose decisions are carried out.
        resources_allocation_function: ``(tune_controller, trial, result, scheduler)``
            returning the trial's new resources (a PlacementGroupFactory or a dict such as
            ``{"cpu": 2}``) or None to keep them; called on each result the wrapped
            scheduler lets go on.  None: resources never change.  Default: a
            :class:`DistributeResources`.
    """

    def __init__(
        self,
        base_scheduler: Optional[TrialScheduler] = None,
        resources_allocation_function: Optional[AllocationFunction] = _DistributeResourcesDefault,
    ) -> None:
        super().__init__()
        if resources_allocation_function is None:
            warnings.warn("ResourceChangingScheduler got resources_allocation_function=None: trial resources "
                          "will never change. Pass an allocation function (e.g. DistributeResources()).")
        elif not callable(resources_allocation_function):
            raise TypeError("resources_allocation_function must be callable (tune_controller, trial, result, "
                            f"scheduler) -> resources, got {type(resources_allocation_function).__name__}.")
        self._resources_allocation_function = resources_allocation_function
        self._base_scheduler = base_scheduler or FIFOScheduler()
        self._base_trial_resources: Optional[PlacementGroupFactory] = None
        # trial id -> its new resources, applied once the trial no longer runs
        self._trials_to_reallocate: Dict[str, PlacementGroupFactory] = {}
        self._reallocated_trial_ids: Set[str] = set()
        # Trials this wrapper paused to change their resources, in order: it resumes them
        # itself, as the wrapped scheduler had said CONTINUE and may never resume a trial it
        # did not pause (HyperBand resumes only the trials it kept at a halving).
        self._paused_to_resize: Dict[str, bool] = {}  # trial id -> chosen to resume yet

    @property
    def metric(self) -> Optional[str]:
        return self._base_scheduler.metric

    def _check_final_result(self, trial: "Trial", result: Dict[str, Any]) -> None:
        self._base_scheduler._check_final_result(trial, result)

    @property
    def mode(self) -> Optional[str]:
        return self._base_scheduler.mode

    @property
    def base_trial_resources(self) -> Optional[PlacementGroupFactory]:
        """The resources every trial starts with (those of the first trial added)."""
        return self._base_trial_resources

    def set_search_properties(self, metric: Optional[str], mode: Optional[str], **spec: Any) -> bool:
        self._metric, self._mode = metric, mode
        return self._base_scheduler.set_search_properties(metric, mode, **spec)

    def decision_points(self, trial: "Trial") -> DecisionPoints:
        """The wrapped scheduler's decision points and the allocation function's."""
        points = self._base_scheduler.decision_points(trial)
        allocate = self._resources_allocation_function
        if allocate is None:
            return points
        return _union(points, self._allocation_points(trial))

    def _allocation_points(self, trial: "Trial") -> DecisionPoints:
        """Where the allocation function is asked (its ``decision_points``, else every result)."""
        asked = getattr(self._resources_allocation_function, "decision_points", None)
        wanted = asked(trial) if callable(asked) else None
        return wanted if isinstance(wanted, DecisionPoints) else DecisionPoints.every_result()

    def pauses_for_waiting_trials(self, trial: "Trial") -> bool:
        # Only at the wrapped scheduler's own points: where the union adds others (the
        # allocation function's, or every result), a yield there would pause trials the
        # wrapped scheduler lets run.
        base = self._base_scheduler
        return base.pauses_for_waiting_trials(trial) and self.decision_points(trial) == base.decision_points(trial)

    # Keywords (none from fasttune's runner) go on to the wrapped scheduler, as in Ray Tune.
    def on_trial_add(self, tune_controller: TuneControllerView, trial: "Trial", **kwargs: Any) -> None:
        resources = trial.placement_group_factory
        if self._base_trial_resources is None:
            self._base_trial_resources = resources
        elif trial.trial_id not in self._reallocated_trial_ids and resources != self._base_trial_resources:
            raise RuntimeError(
                f"ResourceChangingScheduler needs every trial to start with the same resources: the first "
                f"trial had {self._base_trial_resources}, trial {trial} has {resources}.")
        self._base_scheduler.on_trial_add(tune_controller, trial, **kwargs)

    def on_trial_error(self, tune_controller: TuneControllerView, trial: "Trial", **kwargs: Any) -> None:
        self._forget(trial.trial_id)
        self._base_scheduler.on_trial_error(tune_controller, trial, **kwargs)

    def on_trial_result(self, tune_controller: TuneControllerView, trial: "Trial", result: Dict[str, Any]) -> str:
        decision = self._base_scheduler.on_trial_result(tune_controller, trial, result)
        if decision == TrialScheduler.CONTINUE:
            new_resources = self.reallocate_trial_resources_if_needed(tune_controller, trial, result)
            if new_resources is not None:
                # Paused at this result (its checkpoint): it restarts with them.
                self._trials_to_reallocate[trial.trial_id] = new_resources
                self._paused_to_resize[trial.trial_id] = False
                return TrialScheduler.PAUSE
        return decision

    def _forget(self, trial_id: str) -> None:
        self._trials_to_reallocate.pop(trial_id, None)
        self._paused_to_resize.pop(trial_id, None)

    def on_trial_complete(self, tune_controller: TuneControllerView, trial: "Trial", result: Dict[str, Any],
                          **kwargs: Any) -> None:
        self._forget(trial.trial_id)
        self._base_scheduler.on_trial_complete(tune_controller, trial, result, **kwargs)

    def on_trial_remove(self, tune_controller: TuneControllerView, trial: "Trial", **kwargs: Any) -> None:
        self._forget(trial.trial_id)
        self._base_scheduler.on_trial_remove(tune_controller, trial, **kwargs)

    def choose_trial_to_run(self, tune_controller: TuneControllerView, **kwargs: Any) -> Optional["Trial"]:
        for trial_id, new_resources in list(self._trials_to_reallocate.items()):
            trial = tune_controller.get_trial(trial_id)
            if trial is None or trial.is_finished():
                del self._trials_to_reallocate[trial_id]
            elif trial.status != "RUNNING" and not tune_controller.is_trial_held(trial):
                del self._trials_to_reallocate[trial_id]
                self.set_trial_resources(trial, new_resources)
        for trial_id, chosen in list(self._paused_to_resize.items()):
            trial = tune_controller.get_trial(trial_id)
            if trial is None or trial.is_finished() or (chosen and trial.status != "PAUSED"):
                del self._paused_to_resize[trial_id]  # ended, or resumed
            elif trial.status == "PAUSED" and trial_id not in self._trials_to_reallocate \
                    and not tune_controller.is_trial_held(trial):
                self._paused_to_resize[trial_id] = True
                return trial  # it goes on with its new resources, first
        return self._base_scheduler.choose_trial_to_run(tune_controller, **kwargs)

    def set_trial_resources(self, trial: "Trial", new_resources: Any) -> bool:
        """Give ``trial`` (not running) ``new_resources``; True when there were any."""
        if not new_resources:
            return False
        logger.info("Trial %s now gets %s.", trial, new_resources)
        trial.update_resources(new_resources)
        self._reallocated_trial_ids.add(trial.trial_id)
        return True

    def reallocate_trial_resources_if_needed(self, tune_controller: TuneControllerView, trial: "Trial",
                                             result: Dict[str, Any]) -> Optional[PlacementGroupFactory]:
        """The allocation function's answer for ``trial`` when it changes its resources,
        else None."""
        allocate = self._resources_allocation_function
        if allocate is None or result.get("training_iteration") not in self._allocation_points(trial):
            return None  # a change between its decision points would pause the trial anywhere
        # An allocation function with its own metric/mode takes the scheduler's when unset.
        if hasattr(allocate, "metric") and not allocate.metric:
            allocate.metric = self._base_scheduler.metric or self._metric
        if hasattr(allocate, "mode") and not allocate.mode:
            allocate.mode = self._base_scheduler.mode or self._mode
        new_resources = allocate(tune_controller, trial, result, self)
        if not new_resources:
            return None
        if isinstance(new_resources, dict):
            new_resources = resource_dict_to_pg_factory(new_resources)
        if not isinstance(new_resources, PlacementGroupFactory):
            raise TypeError("resources_allocation_function must return a PlacementGroupFactory, a dict or None, "
                            f"got {type(new_resources).__name__}.")
        if new_resources == trial.placement_group_factory:
            return None
        return new_resources

    def debug_string(self) -> str:
        return f"(ResourceChangingScheduler) {self._base_scheduler.debug_string()}"

    def save(self, checkpoint_path: str) -> None:
        """Save the whole state, the wrapped scheduler and the allocation function included
        (cloudpickled, so a lambda allocation function saves too)."""
        save_state(checkpoint_path, {"scheduler": type(self).__name__, "state": dict(self.__dict__)})

    def restore(self, checkpoint_path: str) -> None:
        self.__dict__.update(load_state(checkpoint_path, type(self).__name__)["state"])


__all__ = ["ResourceChangingScheduler", "DistributeResources", "DistributeResourcesToTopJob"]
