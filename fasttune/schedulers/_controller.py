"""What a scheduler may see and do of the runner: :class:`TuneControllerView`.

Every scheduler hook gets the runner as ``tune_controller``.  This protocol is the whole
of what a scheduler may use of it, so that the runner can change behind it and a test
can drive a scheduler with a small stand-in (``tests/schedulers/simulated_runner.py``).
:class:`fasttune.execution.trial_runner.TrialRunner` implements it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Protocol

if TYPE_CHECKING:  # pragma: no cover
    from fasttune.checkpoint import Checkpoint
    from fasttune.experiment.trial import Trial
    from fasttune.search.search_algorithm import SearchAlgorithm


class TuneControllerView(Protocol):
    """The runner as a scheduler sees it (structural: any object with these members)."""

    @property
    def table(self) -> Any:
        """The core TrialTable: one row per trial (``trial._row``), status counts in O(1)."""

    @property
    def metric(self) -> Optional[str]:
        """The result key the table's metric columns track (None: none)."""

    @property
    def search_alg(self) -> "SearchAlgorithm":
        """The search algorithm that adds trials (``is_finished()``: it will add no more)."""

    @property
    def is_stopping(self) -> bool:
        """True once all trials are being stopped (time budget, fail_fast, a Stopper)."""

    @property
    def experiment_path(self) -> Optional[str]:
        """The experiment's directory (None: the experiment writes no files)."""

    def get_trials(self) -> List["Trial"]:
        """Every trial, in the order they were added."""

    def get_trial(self, trial_id: str) -> Optional["Trial"]:
        """The trial with this id (None: no such trial)."""

    def get_live_trials(self) -> List["Trial"]:
        """The PENDING, RUNNING and PAUSED trials, in the order they were added."""

    def cluster_resources(self) -> Dict[str, float]:
        """The cluster's resources in all, free or not (e.g. ``{"CPU": 8.0, "GPU": 2.0}``)."""

    def first_trial_with_status(self, status: str) -> Optional["Trial"]:
        """The first trial with ``status`` that no worker holds; for PENDING the earliest added."""

    def is_trial_held(self, trial: "Trial") -> bool:
        """Whether a worker holds ``trial`` (running it, or queued to run it next)."""

    def stop_trial(self, trial: "Trial") -> None:
        """End ``trial`` now (TERMINATED)."""

    def pause_trial(self, trial: "Trial") -> None:
        """Release ``trial``'s worker; it resumes later from its latest checkpoint."""

    def reset_trial(
        self,
        trial: "Trial",
        new_config: Dict[str, Any],
        new_experiment_tag: str,
        checkpoint: Optional["Checkpoint"] = None,
        checkpoint_result: Optional[Dict[str, Any]] = None,
    ) -> None:
        """Let ``trial`` go on with ``new_config`` from ``checkpoint`` (PBT's exploit)."""


__all__ = ["TuneControllerView"]
