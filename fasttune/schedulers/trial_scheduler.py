"""The scheduler interface: decides, per result, whether a trial goes on.

Every hook gets the runner as ``tune_controller``, seen through
:class:`TuneControllerView` (what a scheduler may ask of it).  A scheduler also says
*when* it needs to decide (:meth:`TrialScheduler.decision_points`).
Between those iterations a trial reports without waiting for the driver; at them, the
trial blocks until the scheduler's decision arrives.  A scheduler that does not say gets
a decision at every result, which is exactly Ray Tune's behaviour.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Optional, Sequence, Tuple

from fasttune._decision_points import DecisionPoints
from fasttune.schedulers._controller import TuneControllerView

if TYPE_CHECKING:  # pragma: no cover
    from fasttune.experiment.trial import Trial

class TrialScheduler:
    """Base class of schedulers; the defaults run every trial to its end (FIFO)."""

    CONTINUE = "CONTINUE"
    PAUSE = "PAUSE"
    STOP = "STOP"
    NOOP = "NOOP"

    _metric: Optional[str] = None
    _mode: Optional[str] = None
    @property
    def metric(self) -> Optional[str]:
        return self._metric

    def _check_final_result(self, trial: "Trial", result: Dict[str, Any]) -> None:
        """Raise ``MetricNotANumber`` where :meth:`on_trial_complete` would for ``trial``'s
        final ``result``, changing nothing: the runner asks before the trial is TERMINATED,
        so that the trial fails instead (the default: it reads no metric there)."""

    @property
    def mode(self) -> Optional[str]:
        return self._mode

    def set_search_properties(self, metric: Optional[str], mode: Optional[str], **spec: Any) -> bool:
        if self._metric and metric and self._metric != metric:
            return False
        if self._mode and mode and self._mode != mode:
            return False
        if metric:
            self._metric = metric
        if mode:
            self._mode = mode
        return True

    def decision_points(self, trial: "Trial") -> DecisionPoints:
        """Iterations at which this scheduler must decide for ``trial`` before it goes on.

        The default, every result, is always correct; built-in schedulers narrow it.
        """
        return DecisionPoints.every_result()

    def pauses_for_waiting_trials(self, trial: "Trial") -> bool:
        """Whether, at each of ``trial``'s decision points, this scheduler answers PAUSE
        whenever another trial waits to run (time-sharing, as PBT does).

        Then a worker with another trial queued behind ``trial`` hands itself over at a
        decision point without waiting for the answer, when it can resume ``trial`` from
        that point (a checkpoint came with the result, or a class trainable saves one).
        The scheduler still sees every result and still decides: a STOP ends the paused
        trial, a reset applies when it resumes, and a CONTINUE (a guess that was wrong)
        resumes it from that checkpoint, so the trial's history is the same either way.
        The default, False, always waits for the answer.
        """
        return False

    @property
    def resumes_from_checkpoints(self) -> bool:
        """Whether a trial may go on from a checkpoint under this scheduler: paused and
        resumed later (HyperBand's milestones, time-sharing), or continuing from another
        trial's (PBT's exploit).  An executor for which checkpoints are optional (a
        simulation's) keeps them only then.  The default, True, is always safe."""
        return True

    def on_trial_add(self, tune_controller: TuneControllerView, trial: "Trial") -> None:
        pass

    def on_trial_error(self, tune_controller: TuneControllerView, trial: "Trial") -> None:
        pass

    def on_trial_result(self, tune_controller: TuneControllerView, trial: "Trial", result: Dict[str, Any]) -> str:
        return TrialScheduler.CONTINUE

    def result_keys(self) -> Optional[Tuple[str, ...]]:
        """The keys of a result that :meth:`on_trial_result` reads (with ``result.get``),
        when it reads no others; None (the default): it may read any.

        Where each is a top-level key of the result that flattening leaves as it is, the
        runner may hand the scheduler the result itself rather than its flattened copy
        (which reads the same at those keys): flattening every result costs a sweep of
        short trials more than judging it.

        Example:
            >>> TrialScheduler().result_keys() is None
            True
        """
        return None

    def on_trial_complete(self, tune_controller: TuneControllerView, trial: "Trial", result: Dict[str, Any]) -> None:
        pass

    def on_trial_remove(self, tune_controller: TuneControllerView, trial: "Trial") -> None:
        pass

    def choose_trial_to_run(self, tune_controller: TuneControllerView) -> Optional["Trial"]:
        """A PENDING trial to start next (the earliest added), or a PAUSED one."""
        for status in ("PENDING", "PAUSED"):
            trial = tune_controller.first_trial_with_status(status)
            if trial is not None:
                return trial
        return None

    def debug_string(self) -> str:
        return f"Using {type(self).__name__} scheduling algorithm."

    def save(self, checkpoint_path: str) -> None:
        raise NotImplementedError

    def restore(self, checkpoint_path: str) -> None:
        raise NotImplementedError


class FIFOScheduler(TrialScheduler):
    """Runs trials in the order they were added and never stops one early."""

    def decision_points(self, trial: "Trial") -> DecisionPoints:
        return DecisionPoints.never()

    @property
    def resumes_from_checkpoints(self) -> bool:
        # FIFO itself never pauses a trial; a subclass (PBT's replay, a user's) may.
        return type(self) is not FIFOScheduler

    def debug_string(self) -> str:
        return "Using FIFO scheduling algorithm."


def overrides(obj: Any, base: type, method: str) -> bool:
    """Whether ``obj``'s class replaces ``base.method`` (so calling it can matter)."""
    return getattr(type(obj), method, None) is not getattr(base, method, None)


__all__: Sequence[str] = ["TrialScheduler", "FIFOScheduler", "DecisionPoints", "TuneControllerView"]
