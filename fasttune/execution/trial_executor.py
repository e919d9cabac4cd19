"""The contract between the runner and whatever carries its decisions out.

:class:`TrialExecutor` is all that :class:`~fasttune.execution.trial_runner.TrialRunner`
(and ``TunerInternal``, which registers the trainable) calls of an executor:
:class:`~fasttune.execution.ray_trial_executor.RayTrialExecutor`
implements it on a pool of Ray actors; a second executor (e.g. one that runs trials in
simulated time, in-process) implements the same methods.  Trials are handed to
*workers*, named by an integer *slot*; a worker may hold several trials (the running
one first, the next ones queued).  What a worker reports comes back from
:meth:`TrialExecutor.get_next_executor_event` as the event records of
``fasttune.execution._protocol``.

Example:
    >>> from fasttune.execution.ray_trial_executor import RayTrialExecutor
    >>> from fasttune.execution.trial_executor import TrialExecutor
    >>> isinstance(RayTrialExecutor(), TrialExecutor)
    True
"""
from __future__ import annotations

import threading
from typing import Any, Dict, List, Optional, Protocol, Tuple, runtime_checkable

from fasttune import _corelib as core

#: Event kinds of :meth:`TrialExecutor.get_next_executor_event` (the core's EventSelector's).
EVENT_START = core.EVENT_START  # a trial can start now (payload None)
EVENT_BATCH = core.EVENT_BATCH  # a worker's reply arrived (payload: its event records)
EVENT_ERROR = core.EVENT_ERROR  # a worker died (payload: the exception)


@runtime_checkable
class TrialExecutor(Protocol):
    """Starts, feeds, stops and pauses trials on workers for the runner."""

    def register_trainable(self, name: str, trainable: Any) -> None:
        """Make ``trainable`` known under ``name`` (the trial specs name it)."""

    def check_feasible(self, trial: Any) -> None:
        """Raise ``TuneError`` if ``trial``'s resource request can never be met."""

    def has_resources_for_trial(self, trial: Any, queue: bool = True) -> bool:
        """Whether ``trial`` can be handed to a worker now (``queue``: possibly behind a
        busy worker's running trial)."""

    def start_trial(self, trial: Any, spec: Dict[str, Any], queue: bool = True) -> int:
        """Hand ``trial`` with its run ``spec`` to a worker; returns the worker's slot."""

    def send_decision(self, slot: int, trial_id: str, decision: str) -> None:
        """Answer a trial waiting at a decision point: "continue", "stop" or "pause"."""

    def reset_trial(self, trial: Any, new_config: Dict[str, Any], new_experiment_tag: str,
                    fields: Optional[Dict[str, Any]] = None) -> bool:
        """Answer a trial waiting at a decision point by going on with ``new_config`` as a
        new run segment (spec updated by ``fields``); False if no worker holds it."""

    def stop_trial(self, trial: Any) -> bool:
        """End a running or queued trial now; False if no worker holds it."""

    def pause_trial(self, trial: Any, should_checkpoint: bool = True) -> bool:
        """End a running or queued trial as paused (``should_checkpoint``: a class
        trainable saves a checkpoint first); False if no worker holds it."""

    def trial_ended(self, slot: int, trial: Any) -> None:
        """The worker in ``slot`` reported ``trial`` over: it no longer holds it."""

    def adapt_depth(self, slot: int, whole_trials_in_reply: int, starved: int = 0) -> None:
        """Feedback from one reply: how many trials started and ended within it, and
        whether a trial found nothing queued to yield to (hand out more ahead)."""

    def get_next_executor_event(self, next_trial_exists: bool, wake: Optional[threading.Event] = None,
                                timeout: Optional[float] = None,
                                wake_poll_s: Optional[float] = None) -> Optional[Tuple[int, int, Any]]:
        """The next ``(kind, slot, payload)``, or None when there is nothing to wait for
        (or ``wake`` was set, or ``timeout`` passed)."""

    def cluster_resources(self) -> Dict[str, float]:
        """The cluster's resources in all, free or not (e.g. ``{"CPU": 8.0, "GPU": 2.0}``)."""

    def await_resources(self, trial: Any) -> Optional[str]:
        """Nothing runs and ``trial`` cannot start: wait a moment when the cluster may fit it
        again (it did before nodes left) and say why; None when it never could."""

    def worker_died(self, slot: int) -> List[Any]:
        """Forget the dead worker in ``slot``; returns the trials it held, running one first."""

    def cleanup(self) -> None:
        """Release every worker."""
