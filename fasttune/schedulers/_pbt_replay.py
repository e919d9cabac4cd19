"""PBT replay (``ray.tune.schedulers.PopulationBasedTrainingReplay``): one trial follows
the hyperparameter schedule a PBT trial followed, read from its ``pbt_policy`` file.

:func:`load_policy` reads the file: one JSON line per exploit, ``[target trial id, clone
trial id, target iteration, clone iteration, clone config, new config]``, as
:class:`fasttune.schedulers.pbt.PopulationBasedTraining` writes it.  The public import
path is :mod:`fasttune.schedulers.pbt`.
"""
from __future__ import annotations

import copy
import logging
import os
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple, Union

from fasttune._serialization import dump_file, load_file
from fasttune.error import TuneError
from fasttune.result import parse_json
from fasttune.schedulers._common import TRAINING_ITERATION
from fasttune.schedulers._pbt_explore import perturbed_tag
from fasttune.schedulers.trial_scheduler import DecisionPoints, FIFOScheduler, TrialScheduler

if TYPE_CHECKING:  # pragma: no cover
    from fasttune.checkpoint import Checkpoint
    from fasttune.experiment.trial import Trial
    from fasttune.schedulers._controller import TuneControllerView

# PBT's logger: users configure the logging of PBT and its replay by one name.
logger = logging.getLogger("fasttune.schedulers.pbt")

# The version of the state file save() writes.
_STATE_FORMAT = 1


def load_policy(policy_file: str) -> Tuple[Optional[Dict[str, Any]], List[Tuple[int, Dict[str, Any]]]]:
    """The initial config and the ``(iteration, new config)`` changes of a policy file."""
    rows = []
    with open(policy_file, "rt") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = parse_json(line)
            except ValueError as exc:  # not JSON, or nested too deep to parse safely
                raise ValueError(
                    f"Could not read PBT policy file {policy_file}: line {number} is not JSON ({exc}). Pass "
                    "a pbt_policy_<trial_id>.txt written by PopulationBasedTraining(log_config=True)."
                ) from None
            if not isinstance(row, list) or len(row) != 6:
                raise ValueError(
                    f"PBT policy file {policy_file}, line {number}: expected [target trial, clone "
                    "trial, target iteration, clone iteration, old config, new config], got "
                    f"{line.strip()[:200]!r}."
                )
            rows.append(row)
    # Walk back from the last exploit along the chain of clones: each earlier line must
    # be the exploit that produced the trial cloned by the line after it.
    changes: List[Tuple[int, Dict[str, Any]]] = []
    expected_target: Optional[str] = None
    initial_config: Optional[Dict[str, Any]] = None
    for target, clone, _target_step, clone_step, old_config, new_config in reversed(rows):
        if expected_target is not None and target != expected_target:
            break  # earlier lines describe a history this trial's clone overwrote
        expected_target = clone
        initial_config = old_config
        changes.append((int(clone_step), new_config))
    changes.reverse()
    return initial_config, changes


class PopulationBasedTrainingReplay(FIFOScheduler):
    """Replays the hyperparameter schedule one PBT trial followed, on a single trial.

    PBT's result is a *schedule* of configs (say a large learning rate early, a smaller
    one later).  Given the ``pbt_policy_<trial_id>.txt`` file a
    :class:`PopulationBasedTraining` run wrote (``log_config=True``, the default), this
    scheduler starts one trial with the initial config of that trial's lineage and
    changes its config at the recorded iterations, in place through
    ``tune_controller.reset_trial``.  Nothing of another trial is restored: when the trial
    saved a checkpoint at that very iteration it is passed along (it holds the trial's
    current state, so a function trainable, which restarts on a reset, resumes there);
    otherwise no checkpoint is passed.

    Args:
        policy_file: Path to a ``pbt_policy_<trial_id>.txt`` file (``~`` is expanded).

    Example:
        >>> from fasttune.schedulers.pbt import PopulationBasedTrainingReplay
        >>> replay = PopulationBasedTrainingReplay(  # doctest: +SKIP
        ...     "~/ray_results/pbt_test/pbt_policy_abc12_00001.txt")
        >>> tuner = tune.Tuner(train, tune_config=tune.TuneConfig(scheduler=replay),  # doctest: +SKIP
        ...                    run_config=tune.RunConfig(stop={"training_iteration": 100}))
    """

    def __init__(self, policy_file: Union[str, "os.PathLike[str]"]) -> None:
        if not isinstance(policy_file, (str, os.PathLike)):
            raise TypeError(f"policy_file must be a path to a pbt_policy_<trial_id>.txt file, got {policy_file!r}.")
        path = os.path.expanduser(os.fspath(policy_file))
        if not os.path.isfile(path):
            raise ValueError(
                f"Policy file not found: {path}. Pass a pbt_policy_<trial_id>.txt from the "
                "experiment directory of a PopulationBasedTraining(log_config=True) run."
            )
        super().__init__()
        self.policy_file = path
        initial_config, self._policy = load_policy(path)
        self.experiment_tag = f"replay_{os.path.basename(path)}"
        self.config: Optional[Dict[str, Any]] = initial_config
        self._trial: Optional["Trial"] = None
        self._position = 0  # changes applied so far
        self._current_step = 0
        self._num_perturbations = 0
        self._warned: set = set()

    def on_trial_add(self, tune_controller: TuneControllerView, trial: "Trial") -> None:
        if self._trial is not None and self._trial.trial_id != trial.trial_id:
            raise ValueError(
                "More than one trial was added to a PopulationBasedTrainingReplay run; it replays "
                "one schedule on one trial. Set TuneConfig(num_samples=1) and no grid search."
            )
        self._trial = trial
        if trial.config and self._policy:
            logger.warning(
                "The trial's config was replaced by the initial config of the replayed policy "
                "(%s); the param_space given to the Tuner is not used.", self.policy_file,
            )
        elif trial.config and not self._policy:
            self.config = trial.config  # no changes recorded: train with the given config
        elif not trial.config and not self._policy:
            raise ValueError(
                f"The policy file {self.policy_file} records no config change and the trial has "
                "no config. Pass a param_space to the Tuner, or do not use PBT replay for this run."
            )
        trial.config = copy.deepcopy(self.config) if self.config is not None else {}

    def on_trial_result(self, tune_controller: TuneControllerView, trial: "Trial", result: Dict[str, Any]) -> str:
        step = result.get(TRAINING_ITERATION)
        if step is None or self._position >= len(self._policy):
            return TrialScheduler.CONTINUE
        self._current_step = step
        due = self._position
        while due < len(self._policy) and step >= self._policy[due][0]:
            due += 1
        if due == self._position:
            return TrialScheduler.CONTINUE
        new_config = copy.deepcopy(self._policy[due - 1][1])
        logger.info("PBT replay at iteration %s: the config becomes %s.", step, new_config)
        new_tag = perturbed_tag(self.experiment_tag, new_config, new_config)
        checkpoint, checkpoint_result = self._own_checkpoint_at(trial, step)
        tune_controller.reset_trial(
            trial, new_config, new_tag, checkpoint=checkpoint, checkpoint_result=checkpoint_result)
        self._num_perturbations += due - self._position
        self._position = due
        return TrialScheduler.CONTINUE

    def _own_checkpoint_at(self, trial: "Trial", step: Any) -> Tuple[Optional["Checkpoint"], Optional[Dict[str, Any]]]:
        """The trial's own checkpoint of iteration ``step``, if it saved one then.

        Continuing from it changes no state (it is where the trial is), but lets a
        function trainable, which restarts on a reset, resume there instead of from
        scratch.  Without one, the config changes in place and a function trainable
        restarts from its beginning (with a one-time warning).
        """
        for saved, saved_result in reversed(getattr(trial, "checkpoint_results", None) or []):
            if saved_result.get(TRAINING_ITERATION) == step:
                return saved, dict(saved_result)
            break
        if "no-own-checkpoint" not in self._warned:
            self._warned.add("no-own-checkpoint")
            logger.warning(
                "PBT replay: trial %s has no checkpoint of iteration %s, where its config "
                "changes; the config changes in place (a function trainable restarts from its "
                "beginning). Report a checkpoint every iteration to replay exactly.", trial, step,
            )
        return None, None

    def decision_points(self, trial: "Trial") -> DecisionPoints:
        """The iterations at which a recorded config change is due."""
        remaining = self._policy[self._position:]
        if not remaining:
            return DecisionPoints.never()
        current = int(trial.iteration)
        return DecisionPoints.at({max(int(step), current + 1) for step, _ in remaining})

    def debug_string(self) -> str:
        return f"PopulationBasedTraining replay: step {self._current_step}, perturb {self._num_perturbations}"

    def save(self, checkpoint_path: str) -> None:
        state = {
            "format": _STATE_FORMAT,
            "scheduler": type(self).__name__,
            "position": self._position,
            "current_step": self._current_step,
            "num_perturbations": self._num_perturbations,
            "config": self.config,
        }
        dump_file(checkpoint_path, state)

    def restore(self, checkpoint_path: str) -> None:
        state = load_file(checkpoint_path)
        if not isinstance(state, dict) or state.get("scheduler") != type(self).__name__:
            raise TuneError(f"{checkpoint_path} is not a {type(self).__name__} state file written by save().")
        self._position = state["position"]
        self._current_step = state["current_step"]
        self._num_perturbations = state["num_perturbations"]
        self.config = state["config"]


__all__ = ["PopulationBasedTrainingReplay", "load_policy"]
