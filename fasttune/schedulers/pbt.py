"""Population Based Training (``ray.tune.schedulers.PopulationBasedTraining``).

PBT trains a population of trials side by side.  Every ``perturbation_interval`` (of
``time_attr``) a trial reaches a *perturbation point*; if its score is in the bottom
``quantile_fraction`` of the population it *exploits* a trial of the top quantile (it
continues from that trial's latest checkpoint) and *explores* (its hyperparameters become
a mutation of that trial's).  The exploit reaches the engine through
``tune_controller.reset_trial(...)``; this module only decides.

Per-trial scores and clocks live in numpy arrays indexed by the order trials were added,
so a perturbation costs a few O(N) numpy operations and a result between perturbation
points costs O(1), whatever the population size.

Randomness: exploit/explore decisions draw from Python's :mod:`random` module and
resampling a search-space domain (``tune.uniform`` ...) draws from numpy's global
generator, as in Ray Tune: seed both (``random.seed(s); numpy.random.seed(s)``) for a
reproducible schedule.  The scheduler's saved state holds both generators' states (the
mutation functions a user passes draw from them too, so a generator of its own would not
cover them): a restored sweep draws what the sweep never interrupted would have drawn.

How a config is mutated lives in :mod:`fasttune.schedulers._pbt_explore`; the replay of
one trial's schedule, :class:`PopulationBasedTrainingReplay`, in
:mod:`fasttune.schedulers._pbt_replay`.  Both classes are imported from here.
"""
from __future__ import annotations

import json
import logging
import math
import os
import random
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from fasttune import _corelib as core
from fasttune._atomic import atomic_write
from fasttune._serialization import dump_file, load_file
from fasttune._jsonable import json_default
from fasttune.error import TuneError
from fasttune.schedulers._common import (
    TRAINING_ITERATION,
    MetricNotANumber,
    check_function,
    check_mode,
    check_name,
    check_number,
    check_numbers,
    is_real_number,
    starts_over,
    trials_waiting,
)
from fasttune.schedulers._pbt_explore import (
    Mutation,
    check_mutations,
    explore,
    explore_summary,
    fill_missing,
    perturbed_tag,
)
from fasttune.schedulers._pbt_replay import PopulationBasedTrainingReplay
from fasttune.schedulers.trial_scheduler import DecisionPoints, FIFOScheduler, TrialScheduler

if TYPE_CHECKING:  # pragma: no cover
    from fasttune.checkpoint import Checkpoint
    from fasttune.experiment.trial import Trial
    from fasttune.schedulers._controller import TuneControllerView

logger = logging.getLogger(__name__)

# An explicit list of decision points is used up to this many entries; beyond it,
# ``DecisionPoints.every`` (a superset) is declared instead.
_MAX_LISTED_POINTS = 10_000
_STATE_FORMAT = 1


class _TrialState:
    """What PBT keeps per trial besides the numpy columns."""

    __slots__ = ("orig_tag", "last_result", "resume_iteration")

    def __init__(self, orig_tag: str) -> None:
        self.orig_tag = orig_tag
        self.last_result: Dict[str, Any] = {}  # the result of the last perturbation point
        self.resume_iteration: Optional[int] = None  # set by an exploit


# ---------------------------------------------------------------------------------------
# PopulationBasedTraining
# ---------------------------------------------------------------------------------------
class PopulationBasedTraining(FIFOScheduler):
    """Population Based Training: poor trials clone good ones and perturb their config.

    Semantics follow Ray Tune's PBT.  At a result where ``time_attr >= burn_in_period``
    and ``time_attr - <time of the trial's last perturbation> >= perturbation_interval``
    (a *perturbation point*), the trial's score is recorded and the population is split:
    of the trials with a recorded score that are not finished, the worst
    ``ceil(n * quantile_fraction)`` (at most ``n // 2``) form the lower quantile and as
    many best ones the upper quantile.  A trial in the lower quantile continues from the
    latest checkpoint of a random upper-quantile trial, with that trial's config mutated
    by ``hyperparam_mutations`` / ``custom_explore_fn``.

    Args:
        time_attr: The result key that measures progress; it must increase
            monotonically (``training_iteration``, ``time_total_s``, ...).
        metric: The result key to optimise (or set ``TuneConfig(metric=...)``).
        mode: ``"min"`` or ``"max"`` (or set ``TuneConfig(mode=...)``).
        perturbation_interval: A trial is considered for exploit/explore every this many
            units of ``time_attr``.  The donor of an exploit must have a checkpoint, so a
            trainable should report one at least this often.
        burn_in_period: No perturbation happens before ``time_attr`` reaches this.
        hyperparam_mutations: For each hyperparameter: a list of values (explore moves to
            a neighbouring value), a search-space domain such as ``tune.uniform(0, 1)``
            or a function of no arguments (explore multiplies the value by one of
            ``perturbation_factors``, or resamples), or a dict of nested mutations.
            Values the initial config lacks are drawn from here.
        quantile_fraction: Fraction of the population in each of the lower and upper
            quantiles, in ``[0, 0.5]``; 0 disables exploitation.
        resample_probability: Probability of drawing a fresh value instead of
            perturbing, in ``[0, 1]``.
        perturbation_factors: Factors to choose between when perturbing a number.
        custom_explore_fn: ``f(config) -> config`` applied after the built-in mutations.
        log_config: Write ``pbt_global.txt`` and ``pbt_policy_<trial_id>.txt`` (one JSON
            line per exploit: ``[target trial id, clone trial id, target iteration,
            clone iteration, clone config, new config]``) in the experiment directory;
            :class:`PopulationBasedTrainingReplay` replays a ``pbt_policy`` file.
        require_attrs: Raise when a result lacks ``time_attr`` or ``metric`` (False:
            warn once and ignore such results).
        synch: Synchronous PBT: a trial pauses at its perturbation point until every
            live trial has reached it; then all exploit/explore at once and resume.

    Decision points (when a trial waits for the driver): with
    ``time_attr="training_iteration"`` and ``require_attrs=True``, the iterations where
    the rule above can fire: exact when the trial has a ``training_iteration`` stop
    criterion (``DecisionPoints.every(step, start=..., until=...)`` when they form one
    progression, as on the population's grid; else an explicit list), else
    ``DecisionPoints.every(g)`` for the largest ``g`` dividing all of them (exact when
    ``burn_in_period <= perturbation_interval``, a superset otherwise).  Any other ``time_attr``, or
    ``require_attrs=False``, needs a decision at every result.

    Example:
        >>> import fasttune as tune
        >>> from fasttune.schedulers.pbt import PopulationBasedTraining
        >>> pbt = PopulationBasedTraining(
        ...     time_attr="training_iteration", metric="acc", mode="max",
        ...     perturbation_interval=5,
        ...     hyperparam_mutations={"lr": tune.loguniform(1e-4, 1e-1), "batch": [16, 32, 64]},
        ... )
        >>> pbt.debug_string()
        'PopulationBasedTraining: 0 perturbs, 0 exploits skipped (donor without checkpoint)'
    """

    _policy_prefix = "pbt"

    def __init__(
        self,
        time_attr: str = "time_total_s",
        metric: Optional[str] = None,
        mode: Optional[str] = None,
        perturbation_interval: float = 60.0,
        burn_in_period: float = 0.0,
        hyperparam_mutations: Optional[Dict[str, Mutation]] = None,
        quantile_fraction: float = 0.25,
        resample_probability: float = 0.25,
        perturbation_factors: Tuple[float, ...] = (1.2, 0.8),
        custom_explore_fn: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None,
        log_config: bool = True,
        require_attrs: bool = True,
        synch: bool = False,
    ) -> None:
        owner = type(self).__name__
        check_name(time_attr, "time_attr", owner)
        check_name(metric, "metric", owner, optional=True)
        check_mode(mode, owner)
        # PBT's numeric arguments raise ValueError for a non-number too, as they always have.
        check_number(perturbation_interval, "perturbation_interval", owner, greater_than=0,
                     hint="in time_attr units, e.g. 5", wrong_kind=ValueError)
        check_number(burn_in_period, "burn_in_period", owner, at_least=0, wrong_kind=ValueError)
        if hyperparam_mutations is None:
            hyperparam_mutations = {}
        check_mutations(hyperparam_mutations)
        check_function(custom_explore_fn, "custom_explore_fn", owner, "config -> config", optional=True)
        if not hyperparam_mutations and custom_explore_fn is None:
            raise ValueError(
                f"{owner} needs hyperparam_mutations or custom_explore_fn (or both) to explore; "
                "e.g. hyperparam_mutations={'lr': tune.loguniform(1e-4, 1e-1)}."
            )
        check_number(quantile_fraction, "quantile_fraction", owner, at_least=0, at_most=0.5,
                     hint="the fraction of the population in each of the top and bottom quantiles",
                     wrong_kind=ValueError)
        check_number(resample_probability, "resample_probability", owner, at_least=0, at_most=1,
                     wrong_kind=ValueError)
        perturbation_factors = check_numbers(perturbation_factors, "perturbation_factors", owner, "(1.2, 0.8)")
        super().__init__()
        self._time_attr = time_attr
        self._metric = metric
        self._mode = mode
        self._metric_op = self._op_for(mode)
        self._perturbation_interval = float(perturbation_interval)
        self._burn_in_period = float(burn_in_period)
        self._hyperparam_mutations = hyperparam_mutations
        self._quantile_fraction = float(quantile_fraction)
        self._resample_probability = float(resample_probability)
        self._perturbation_factors = tuple(perturbation_factors)
        self._custom_explore_fn = custom_explore_fn
        self._log_config = bool(log_config)
        self._policy_histories: Dict[str, bytes] = {}  # trial id -> its policy file's bytes
        self._require_attrs = bool(require_attrs)
        self._synch = bool(synch)
        self._next_perturbation_sync = max(self._perturbation_interval, self._burn_in_period)
        self._last_sync_time = self._next_perturbation_sync

        # Per-trial state, indexed by the order trials were added.
        self._trials: List["Trial"] = []
        self._index: Dict[str, int] = {}
        self._states: List[_TrialState] = []
        self._score = np.full(16, np.nan)  # metric_op * metric at the last perturbation point
        self._train_time = np.zeros(16)  # time_attr at the last perturbation point
        self._perturb_time = np.zeros(16)  # time_attr of the last perturbation
        self._rows = np.full(16, -1, dtype=np.int64)  # TrialTable rows
        self._rows_known = 0  # how many leading rows are known to be attached

        self._restored: Dict[str, Dict[str, Any]] = {}
        self._num_perturbations = 0
        self._num_skipped = 0
        self._warned: set = set()

    # ---- properties and configuration ------------------------------------------------
    @staticmethod
    def _op_for(mode: Optional[str]) -> Optional[float]:
        return 1.0 if mode == "max" else -1.0 if mode == "min" else None

    def set_search_properties(self, metric: Optional[str], mode: Optional[str], **spec: Any) -> bool:
        if mode not in (None, "min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}.")
        if not super().set_search_properties(metric, mode, **spec):
            return False
        self._metric_op = self._op_for(self._mode)
        return True

    def _warn_once(self, key: str, message: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(message, *args)

    # ---- per-trial registry --------------------------------------------------------------
    @property
    def _n(self) -> int:
        return len(self._trials)

    def _register(self, trial: "Trial") -> int:
        idx = len(self._trials)
        if idx == len(self._score):
            grow = max(16, idx)
            self._score = np.concatenate([self._score, np.full(grow, np.nan)])
            self._train_time = np.concatenate([self._train_time, np.zeros(grow)])
            self._perturb_time = np.concatenate([self._perturb_time, np.zeros(grow)])
            self._rows = np.concatenate([self._rows, np.full(grow, -1, dtype=np.int64)])
        self._trials.append(trial)
        self._index[trial.trial_id] = idx
        self._states.append(_TrialState(trial.experiment_tag))
        self._rows[idx] = getattr(trial, "_row", -1)
        saved = self._restored.pop(trial.trial_id, None)
        if saved is not None:
            self._apply_saved(idx, saved)
        return idx

    def _idx(self, trial: "Trial") -> int:
        idx = self._index.get(trial.trial_id)
        return self._register(trial) if idx is None else idx

    def _status_codes(self, tune_controller: TuneControllerView) -> np.ndarray:
        """The TrialTable status code of every registered trial (numpy, by index)."""
        n = self._n
        rows = self._rows[:n]
        if n:
            if n > self._rows_known:
                # Rows may have been attached after registration.
                for i in np.flatnonzero(rows < 0):
                    rows[i] = getattr(self._trials[i], "_row", -1)
                if rows.min() >= 0:
                    self._rows_known = n
            if self._rows_known == n:
                try:
                    return np.asarray(tune_controller.table.column("status"))[rows]
                except (IndexError, KeyError):  # a row of another table (a restored trial)
                    pass
        codes = {name: code for code, name in enumerate(core.STATUS_NAMES)}
        return np.fromiter((codes[t.status] for t in self._trials), dtype=np.int64, count=n)

    def _live_mask(self, tune_controller: TuneControllerView) -> np.ndarray:
        return self._status_codes(tune_controller) <= core.PAUSED  # PENDING, RUNNING, PAUSED

    # ---- hooks ---------------------------------------------------------------------------
    def _require_metric(self) -> None:
        if not self._metric or self._metric_op is None:
            raise ValueError(
                f"{type(self).__name__} has no metric ({self._metric!r}) or mode ({self._mode!r}); "
                f"pass them to {type(self).__name__}(metric=..., mode=...) or to "
                "tune.TuneConfig(metric=..., mode=...)."
            )

    def on_trial_add(self, tune_controller: TuneControllerView, trial: "Trial") -> None:
        self._require_metric()
        idx = self._index.get(trial.trial_id)
        if idx is not None:  # added again (a restored experiment): follow the new object
            self._trials[idx] = trial
            self._rows[idx] = getattr(trial, "_row", -1)
            if self._rows[idx] < 0:
                self._rows_known = min(self._rows_known, idx)
        else:
            known = trial.trial_id in self._restored  # a restored experiment's, first heard of now
            filled: Dict[str, Any] = {}
            self._fill_missing(trial.config, filled)
            if filled:
                trial.evaluated_params.update(filled)
            idx = self._register(trial)
            if not known:
                return
        if starts_over(trial):
            self._start_over(idx, trial)

    def _start_over(self, idx: int, trial: "Trial") -> None:
        """``trial`` runs again from scratch (restored with ``restart_errored``): it is
        judged from its first perturbation point on, as a new trial, and its earlier run's
        score no longer ranks it."""
        state = self._states[idx]
        state.last_result, state.resume_iteration = {}, None
        self._score[idx] = np.nan
        self._train_time[idx] = self._perturb_time[idx] = 0.0

    def _fill_missing(self, config: Dict[str, Any], filled: Dict[str, Any]) -> None:
        fill_missing(config, self._hyperparam_mutations, filled)

    def _check_result(self, trial: "Trial", result: Dict[str, Any]) -> bool:
        for kind, key in (("time_attr", self._time_attr), ("metric", self._metric)):
            if key not in result:
                message = (
                    f"{type(self).__name__}: a result of trial {trial} has no {kind} {key!r} "
                    f"(its keys are {sorted(result)}). Report {key!r} in every result"
                )
                if self._require_attrs:
                    raise TuneError(
                        message + f", or pass {type(self).__name__}(require_attrs=False) to "
                        "ignore such results."
                    )
                self._warn_once(f"missing-{kind}", "%s; such results are ignored.", message)
                return False
        return True

    def on_trial_result(self, tune_controller: TuneControllerView, trial: "Trial", result: Dict[str, Any]) -> str:
        self._require_metric()
        if not self._check_result(trial, result):
            return TrialScheduler.CONTINUE
        time = result[self._time_attr]
        if not is_real_number(time):
            raise TuneError(
                f"{type(self).__name__}: time_attr {self._time_attr!r} of trial {trial} must be a "
                f"number, got {time!r}."
            )
        idx = self._idx(trial)
        state = self._states[idx]
        if state.resume_iteration is not None:
            state.resume_iteration = None  # the clone has reported: trial.iteration is current
        if time < self._burn_in_period:
            return TrialScheduler.CONTINUE
        if time - self._perturb_time[idx] < self._perturbation_interval:
            return TrialScheduler.CONTINUE
        self._save_trial_state(idx, trial, float(time), result)

        if not self._synch:
            self._perturb_time[idx] = time
            lower, upper = self._quantiles(tune_controller)
            # Yield the worker while another trial waits for one.
            decision = TrialScheduler.PAUSE if trials_waiting(tune_controller) else TrialScheduler.CONTINUE
            if len(upper) and np.any(lower == idx):
                self._exploit(tune_controller, idx, int(random.choice(list(upper))))
            return decision

        # Synchronous: wait until every live trial reached the perturbation point.
        self._last_sync_time = float(time)
        n = self._n
        behind = self._live_mask(tune_controller) & (self._train_time[:n] < self._next_perturbation_sync)
        behind[idx] = False
        if behind.any():
            return TrialScheduler.PAUSE
        self._perturb_all(tune_controller, float(time))
        # The last trial to arrive does not need to wait for anyone: it goes on at once
        # (with its new config and checkpoint if it exploited); the paused ones resume
        # through choose_trial_to_run.
        return TrialScheduler.CONTINUE

    def _save_trial_state(self, idx: int, trial: "Trial", time: float, result: Dict[str, Any]) -> float:
        value = result[self._metric]
        if not is_real_number(value) and not isinstance(value, np.number):
            raise MetricNotANumber(
                f"{type(self).__name__}: metric {self._metric!r} of trial {trial} must be a number, "
                f"got {value!r}."
            )
        score = float(self._metric_op) * float(value)
        self._score[idx] = score
        self._train_time[idx] = time
        self._states[idx].last_result = result
        self._record(idx, trial, time, score)
        return score

    def _record(self, idx: int, trial: "Trial", time: float, score: float) -> None:
        """Called at every perturbation point (PB2 collects its data here)."""

    def _perturb_all(self, tune_controller: TuneControllerView, time: float) -> None:
        """The synchronous perturbation: every trial at once."""
        n = self._n
        lower, upper = self._quantiles(tune_controller)
        self._perturb_time[:n] = time
        if len(upper):
            upper_list = list(upper)
            for idx in lower:
                self._exploit(tune_controller, int(idx), int(random.choice(upper_list)))
        self._next_perturbation_sync = max(
            self._next_perturbation_sync + self._perturbation_interval,
            float(self._train_time[:n].max()) if n else 0.0,
        )

    def _maybe_release_sync(self, tune_controller: TuneControllerView) -> None:
        """Synch mode: when a trial ends, the ones waiting for it may go on."""
        if not self._synch or not self._n or tune_controller.is_stopping:
            return
        n = self._n
        status = self._status_codes(tune_controller)
        live = status <= core.PAUSED
        if not (status == core.PAUSED).any():
            return  # nobody is waiting
        if (self._train_time[:n][live] >= self._next_perturbation_sync).all():
            self._perturb_all(tune_controller, self._last_sync_time)

    def on_trial_complete(self, tune_controller: TuneControllerView, trial: "Trial", result: Dict[str, Any]) -> None:
        self._maybe_release_sync(tune_controller)

    def on_trial_error(self, tune_controller: TuneControllerView, trial: "Trial") -> None:
        self._maybe_release_sync(tune_controller)

    def on_trial_remove(self, tune_controller: TuneControllerView, trial: "Trial") -> None:
        self._maybe_release_sync(tune_controller)

    # ---- quantiles -------------------------------------------------------------------------
    def _quantiles(self, tune_controller: TuneControllerView) -> Tuple[np.ndarray, np.ndarray]:
        """Indices of the lower and upper quantile trials, each in ascending score order.

        Among live trials with a score; ties are broken by the order trials were added
        (a stable sort, as in Ray Tune).  O(N) numpy.
        """
        n = self._n
        empty = np.empty(0, dtype=np.int64)
        if n < 2:
            return empty, empty
        scores = self._score[:n]
        candidates = np.flatnonzero(self._live_mask(tune_controller) & ~np.isnan(scores))
        m = len(candidates)
        if m <= 1:
            return empty, empty
        k = int(math.ceil(m * self._quantile_fraction))
        if k > m / 2:
            k = m // 2
        if k == 0:
            return empty, empty
        if m <= _SMALL_POPULATION:
            # A stable sort in Python beats a dozen numpy calls on small populations.
            order = sorted(candidates.tolist(), key=scores.item)
            return np.array(order[:k], dtype=np.int64), np.array(order[m - k:], dtype=np.int64)
        values = scores[candidates]
        lower = candidates[_stable_smallest(values, k)]
        upper = candidates[_stable_largest(values, k)]
        return _by_score(lower, scores), _by_score(upper, scores)

    # ---- exploit and explore ----------------------------------------------------------------
    @staticmethod
    def _donor_checkpoint(donor: "Trial") -> Tuple[Optional["Checkpoint"], Dict[str, Any]]:
        checkpoint = donor.checkpoint
        if checkpoint is None:
            return None, {}
        for saved, saved_result in reversed(getattr(donor, "checkpoint_results", None) or []):
            if saved is checkpoint or getattr(saved, "path", None) == checkpoint.path:
                return checkpoint, dict(saved_result)
        return checkpoint, dict(donor.last_result or {})

    def _exploit(self, tune_controller: TuneControllerView, idx: int, donor_idx: int) -> bool:
        """Makes trial ``idx`` continue from ``donor_idx``'s checkpoint with an explored config."""
        trial, donor = self._trials[idx], self._trials[donor_idx]
        checkpoint, checkpoint_result = self._donor_checkpoint(donor)
        if checkpoint is None:
            self._num_skipped += 1
            self._warn_once(
                "no-checkpoint",
                "%s: trial %s should clone trial %s, which has no checkpoint yet, so the exploit "
                "is skipped. Report a checkpoint at least every perturbation_interval (%s %s) "
                "(function trainables: tune.report(..., checkpoint=...); class trainables: "
                "CheckpointConfig(checkpoint_frequency=...)).",
                type(self).__name__, trial, donor, self._perturbation_interval, self._time_attr,
            )
            return False
        # The one check of a view member: a stand-in controller without reset_trial (not a
        # whole TuneControllerView) gets a clear error before any state changes.
        if getattr(tune_controller, "reset_trial", None) is None:
            raise TuneError(
                f"{type(self).__name__} needs a trial runner with reset_trial(); "
                f"{type(tune_controller).__name__} has none."
            )
        new_config, operations = self._get_new_config(trial, donor, checkpoint_result)
        state = self._states[idx]
        logger.info(
            "[%s] [Exploit] Cloning trial %s (score = %.4f) into trial %s (score = %.4f)",
            type(self).__name__, donor.trial_id, self._score[donor_idx], trial.trial_id, self._score[idx],
        )
        if logger.isEnabledFor(logging.INFO):
            summary = explore_summary(donor.config, new_config, operations) or "No hyperparameters mutated."
            logger.info("[%s] [Explore] New config of trial %s:\n%s", type(self).__name__, trial.trial_id, summary)
        if self._log_config:
            self._log_policy(tune_controller, trial, donor, state, checkpoint_result, new_config)
        new_tag = perturbed_tag(state.orig_tag, new_config, self._hyperparam_mutations)
        tune_controller.reset_trial(
            trial, new_config, new_tag, checkpoint=checkpoint, checkpoint_result=checkpoint_result)
        self._num_perturbations += 1
        self._perturb_time[idx] = self._perturb_time[donor_idx]
        self._train_time[idx] = self._train_time[donor_idx]
        iteration = checkpoint_result.get(TRAINING_ITERATION)
        state.resume_iteration = int(iteration) if is_real_number(iteration) else None
        self._after_exploit(idx, donor_idx, new_config, checkpoint_result)
        return True

    def _get_new_config(
        self, trial: "Trial", donor: "Trial", checkpoint_result: Dict[str, Any]
    ) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        new_config, operations = self._explore_config(trial, donor, checkpoint_result)
        if self._custom_explore_fn is not None:
            explored = self._custom_explore_fn(new_config)
            if not isinstance(explored, dict):
                raise TuneError(
                    f"custom_explore_fn must return the new config dict, got "
                    f"{type(explored).__name__}; end it with `return config`."
                )
            new_config = explored
        return new_config, operations

    def _explore_config(
        self, trial: "Trial", donor: "Trial", checkpoint_result: Dict[str, Any]
    ) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        return explore(donor.config, self._hyperparam_mutations, self._resample_probability, self._perturbation_factors)

    def _after_exploit(self, idx: int, donor_idx: int, new_config: Dict[str, Any], checkpoint_result: Dict[str, Any]) -> None:
        """Called after trial ``idx`` was reset to a clone of ``donor_idx`` (PB2 uses it)."""

    def _log_policy(
        self,
        tune_controller: TuneControllerView,
        trial: "Trial",
        donor: "Trial",
        state: _TrialState,
        checkpoint_result: Dict[str, Any],
        new_config: Dict[str, Any],
    ) -> None:
        directory = tune_controller.experiment_path or trial.experiment_path
        if not directory:
            self._warn_once(
                "no-log-dir",
                "%s(log_config=True): the experiment has no directory, so no policy logs are written.",
                type(self).__name__,
            )
            return
        os.makedirs(directory, exist_ok=True)
        policy = [
            trial.trial_id,
            donor.trial_id,
            (state.last_result or trial.last_result or {}).get(TRAINING_ITERATION, 0),
            checkpoint_result.get(TRAINING_ITERATION, 0),
            donor.config,
            new_config,
        ]
        line = (json.dumps(policy, default=json_default) + "\n").encode()
        prefix = self._policy_prefix
        with open(os.path.join(directory, f"{prefix}_global.txt"), "ab") as f:
            f.write(line)
        # The target's policy becomes the donor's history plus this exploit.  Histories
        # written in this process are kept, so an exploit reads no file; one written
        # before a restore is read once.
        cache = self._policy_histories
        history = cache.get(donor.trial_id)
        if history is None:
            donor_path = os.path.join(directory, f"{prefix}_policy_{donor.trial_id}.txt")
            history = b""
            if os.path.exists(donor_path):
                with open(donor_path, "rb") as f:
                    history = f.read()
        history += line
        cache[trial.trial_id] = history
        atomic_write(os.path.join(directory, f"{prefix}_policy_{trial.trial_id}.txt"), history, durable=False)

    # ---- which trial runs next ----------------------------------------------------------------
    def choose_trial_to_run(self, tune_controller: TuneControllerView) -> Optional["Trial"]:
        """The PENDING or PAUSED trial that has trained least (by ``time_attr`` at its last
        perturbation point), so that a population larger than the cluster is
        time-multiplexed fairly; in synch mode only trials short of the next
        synchronisation point."""
        n = self._n
        if not n:
            return super().choose_trial_to_run(tune_controller)
        if not trials_waiting(tune_controller):
            return None  # O(1) answer for the common case: nothing is waiting to run
        status = self._status_codes(tune_controller)
        candidates = np.flatnonzero((status == core.PENDING) | (status == core.PAUSED))
        if self._synch:
            candidates = candidates[self._train_time[candidates] < self._next_perturbation_sync]
        if not len(candidates):
            return None
        # The least trained; argmin takes the first (earliest added) among ties.
        first = candidates[np.argmin(self._train_time[candidates])]
        if not tune_controller.is_trial_held(self._trials[first]):
            return self._trials[first]
        order = candidates[np.lexsort((candidates, self._train_time[candidates]))]
        for idx in order:
            trial = self._trials[idx]
            if not tune_controller.is_trial_held(trial):  # a worker may hold it already
                return trial
        return None

    # ---- decision points ----------------------------------------------------------------------
    def decision_points(self, trial: "Trial") -> DecisionPoints:
        """Iterations at which ``trial`` must wait for a decision.

        With ``time_attr="training_iteration"`` (and ``require_attrs=True``) these are the
        iterations where the perturbation rule can fire: the first is the smallest
        iteration ``t`` after the one the trial continues from (``trial.iteration``, or
        the donor checkpoint's iteration right after an exploit) with
        ``t >= burn_in_period`` and ``t - last_perturbation >= perturbation_interval``;
        then every ``ceil(perturbation_interval)`` iterations.  The population's grid is
        included too, since an exploit moves the trial onto its donor's clock.  With another
        time_attr, asynchronous PBT waits where the perturbation rule fires
        (``DecisionPoints.reaching_every``); synchronous PBT, and results that may lack the
        metric, need a decision at every result.
        """
        if not self._require_attrs:
            return DecisionPoints.every_result()
        if self._time_attr != TRAINING_ITERATION:
            if self._synch:
                return DecisionPoints.every_result()
            idx = self._index.get(trial.trial_id)
            last = float(self._perturb_time[idx]) if idx is not None else 0.0
            return DecisionPoints.reaching_every(self._time_attr, self._perturbation_interval,
                                                 start=self._burn_in_period, since=last,
                                                 needs=[self._metric])
        step = max(1, int(math.ceil(self._perturbation_interval)))
        anchor = max(step, int(math.ceil(self._burn_in_period)))  # the population's first point
        idx = self._index.get(trial.trial_id)
        last = float(self._perturb_time[idx]) if idx is not None else 0.0
        current = int(trial.iteration)
        if idx is not None and self._states[idx].resume_iteration is not None:
            current = self._states[idx].resume_iteration  # cloned, not yet reported again
        first = max(
            int(math.ceil(self._burn_in_period)),
            int(math.ceil(last + self._perturbation_interval)),
            current + 1,
            1,
        )
        horizon = (getattr(trial, "stopping_criterion", None) or {}).get(TRAINING_ITERATION)
        if is_real_number(horizon) and not math.isinf(horizon):
            end = int(math.floor(horizon))
            # After an exploit the trial follows its donor's clock: the population's grid.
            grid_start = anchor + max(0, -(-(first - anchor) // step)) * step
            if (grid_start - first) % step == 0:
                # One progression (grid_start >= first): four numbers on the wire, not a list.
                return DecisionPoints.every(step, start=first, until=end)
            points = set(range(first, end + 1, step))
            points.update(range(grid_start, end + 1, step))
            if len(points) <= _MAX_LISTED_POINTS:
                return DecisionPoints.at(points)
        return DecisionPoints.every(math.gcd(math.gcd(first, step), anchor))

    @property
    def resumes_from_checkpoints(self) -> bool:
        return True  # exploits continue from the donor's checkpoint; paused trials resume

    def pauses_for_waiting_trials(self, trial: "Trial") -> bool:
        # Asynchronous PBT pauses a trial at every perturbation point while others wait
        # (its decision points are those points, whatever its time_attr).
        return not self._synch and self._require_attrs

    # ---- reporting and persistence -------------------------------------------------------------
    def last_scores(self, trials: List["Trial"]) -> List[float]:
        """The score (``metric`` times +1 for "max", -1 for "min") each of ``trials`` had at
        its last perturbation point, leaving out finished trials and those without one."""
        scores = []
        for trial in trials:
            score = self._score[self._index[trial.trial_id]]
            if not math.isnan(score) and not trial.is_finished():
                scores.append(float(score))
        return scores

    def reset_stats(self) -> None:
        """Zeroes the counts :meth:`debug_string` shows."""
        self._num_perturbations = 0
        self._num_skipped = 0

    def debug_string(self) -> str:
        return (
            f"{type(self).__name__}: {self._num_perturbations} perturbs, "
            f"{self._num_skipped} exploits skipped (donor without checkpoint)"
        )

    def _trial_snapshot(self, idx: int) -> Dict[str, Any]:
        state = self._states[idx]
        return {
            "orig_tag": state.orig_tag,
            "last_result": state.last_result,
            "resume_iteration": state.resume_iteration,
            "score": float(self._score[idx]),
            "train_time": float(self._train_time[idx]),
            "perturb_time": float(self._perturb_time[idx]),
        }

    def _apply_saved(self, idx: int, saved: Dict[str, Any]) -> None:
        state = self._states[idx]
        state.orig_tag = saved["orig_tag"]
        state.last_result = saved["last_result"]
        state.resume_iteration = saved["resume_iteration"]
        self._score[idx] = saved["score"]
        self._train_time[idx] = saved["train_time"]
        self._perturb_time[idx] = saved["perturb_time"]

    def _extra_state(self) -> Dict[str, Any]:
        return {}

    def _set_extra_state(self, extra: Dict[str, Any]) -> None:
        pass

    def save(self, checkpoint_path: str) -> None:
        """Writes the scheduler's state (per trial, keyed by trial id) to ``checkpoint_path``."""
        trials = dict(self._restored)
        trials.update({t.trial_id: self._trial_snapshot(i) for i, t in enumerate(self._trials)})
        state = {
            "format": _STATE_FORMAT,
            "scheduler": type(self).__name__,
            "trials": trials,
            "next_perturbation_sync": self._next_perturbation_sync,
            "last_sync_time": self._last_sync_time,
            "num_perturbations": self._num_perturbations,
            "num_skipped": self._num_skipped,
            "extra": self._extra_state(),
            "global_random": _global_random_state(),
        }
        dump_file(checkpoint_path, state)

    def restore(self, checkpoint_path: str) -> None:
        """Restores what :meth:`save` wrote; trials added later pick up their saved state."""
        state = load_file(checkpoint_path)
        if not isinstance(state, dict) or state.get("format") != _STATE_FORMAT:
            raise TuneError(f"{checkpoint_path} is not a {type(self).__name__} state file written by save().")
        if state.get("scheduler") != type(self).__name__:
            raise TuneError(
                f"{checkpoint_path} holds the state of a {state.get('scheduler')}, not of a "
                f"{type(self).__name__}; restore it with the scheduler that saved it."
            )
        self._next_perturbation_sync = state["next_perturbation_sync"]
        self._last_sync_time = state["last_sync_time"]
        self._num_perturbations = state["num_perturbations"]
        self._num_skipped = state["num_skipped"]
        self._restored = {}
        for trial_id, saved in state["trials"].items():
            idx = self._index.get(trial_id)
            if idx is None:
                self._restored[trial_id] = saved
            else:
                self._apply_saved(idx, saved)
        self._set_extra_state(state["extra"])
        if state.get("global_random") is not None:  # (absent from states saved before it was kept)
            _set_global_random_state(state["global_random"])


def _global_random_state() -> Dict[str, Any]:
    """The states of Python's :mod:`random` and of numpy's global generator, as plain data
    (the scheduler's saved state is msgpack)."""
    version, internal, gauss_next = random.getstate()
    _, key, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    return {"random": [version, list(internal), gauss_next],
            "numpy": [key.tolist(), int(pos), int(has_gauss), float(cached_gaussian)]}


def _set_global_random_state(saved: Dict[str, Any]) -> None:
    version, internal, gauss_next = saved["random"]
    random.setstate((version, tuple(internal), gauss_next))
    key, pos, has_gauss, cached_gaussian = saved["numpy"]
    np.random.set_state(("MT19937", np.array(key, dtype=np.uint32), pos, has_gauss, cached_gaussian))


_SMALL_POPULATION = 256


def _stable_smallest(values: np.ndarray, k: int) -> np.ndarray:
    """Positions of the first ``k`` entries of a stable ascending sort of ``values`` (O(n))."""
    threshold = np.partition(values, k - 1)[k - 1]
    below = np.flatnonzero(values < threshold)
    ties = np.flatnonzero(values == threshold)[: k - len(below)]
    return np.concatenate([below, ties])


def _stable_largest(values: np.ndarray, k: int) -> np.ndarray:
    """Positions of the last ``k`` entries of a stable ascending sort of ``values`` (O(n))."""
    n = len(values)
    threshold = np.partition(values, n - k)[n - k]
    above = np.flatnonzero(values > threshold)
    ties = np.flatnonzero(values == threshold)
    ties = ties[len(ties) - (k - len(above)):]
    return np.concatenate([ties, above])


def _by_score(indices: np.ndarray, scores: np.ndarray) -> np.ndarray:
    return indices[np.lexsort((indices, scores[indices]))]


__all__ = ["PopulationBasedTraining", "PopulationBasedTrainingReplay"]
