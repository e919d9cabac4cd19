"""The interface between the trial runner and whatever decides which trials to run.

Example:
    >>> from fasttune.search.search_algorithm import SearchAlgorithm
    >>> class OneTrial(SearchAlgorithm):
    ...     def __init__(self, trial):
    ...         self._trial = trial
    ...     def add_configurations(self, experiments):
    ...         pass
    ...     def next_trial(self):
    ...         trial, self._trial = self._trial, None
    ...         if trial is None:
    ...             self.set_finished()
    ...         return trial
    >>> algo = OneTrial("a trial")
    >>> algo.next_trial(), algo.next_trial(), algo.is_finished()
    ('a trial', None, True)
"""
from __future__ import annotations

import abc
import threading
from typing import Any, Dict, List, Optional, Union


class SearchAlgorithm(abc.ABC):
    """Produces ``Trial`` objects for the trial runner and hears how they went.

    ``next_trial()`` returning ``None`` means "nothing to start right now";
    the runner stops asking once ``is_finished()`` is true.
    """

    _finished: bool = False
    # Whether the runner may create this algorithm's trials ahead of free resources
    # (queued on busy workers, so short trials never wait for the driver).  A searcher
    # that learns from results should be asked only when a trial can start.
    asks_ahead: bool = True
    _metric: Optional[str] = None
    _mode: Optional[str] = None

    @property
    def metric(self) -> Optional[str]:
        """The result key being optimised, if known."""
        return self._metric

    @property
    def mode(self) -> Optional[str]:
        """``"min"`` or ``"max"``, if known."""
        return self._mode

    def set_search_properties(self, metric: Optional[str], mode: Optional[str], config: Dict, **spec: Any) -> bool:
        """Passes the tuner's metric, mode and param space down to the algorithm.

        Returns:
            ``False`` when a metric was already set and another is given (the
            algorithm keeps its own), ``True`` otherwise.
        """
        if self._metric and metric:
            return False
        if metric:
            self._metric = metric
        if mode:
            self._mode = mode
        return True

    @property
    def total_samples(self) -> int:
        """How many trials the algorithm will produce, when it knows (else 0)."""
        return 0

    @abc.abstractmethod
    def add_configurations(self, experiments: Union[Any, List[Any]]) -> None:
        """Registers experiments whose trials the algorithm will produce."""

    @abc.abstractmethod
    def next_trial(self) -> Optional[Any]:
        """The next trial to run, or ``None`` when none is available now."""

    # -- for the trial runner: suggestions made off its event loop ---------------------------
    def poll_trial(self, ask: bool = True) -> Optional[Any]:
        """``next_trial`` for the event loop, which must never wait on a slow algorithm.

        Returns a trial when one is ready now.  An algorithm that makes its trials in
        the background (``SearchGenerator``) returns ``None`` while it is still working
        and, with ``ask``, starts making the next one if it is not already; the runner
        then waits on :attr:`pending_suggestion`.  ``ask=False`` only collects a trial
        that is already being made (the runner stops asking once it is stopping).
        The default is the synchronous ``next_trial()``.
        """
        return self.next_trial() if ask else None

    @property
    def pending_suggestion(self) -> Optional[threading.Event]:
        """An Event that is set once the trial being made in the background is ready to
        collect with :meth:`poll_trial`; ``None`` when nothing is being made."""
        return None

    def close(self, timeout: Optional[float] = None) -> None:
        """Ends background work (waiting at most ``timeout`` seconds); called once the
        experiment's loop is over, also when it failed."""

    def on_trial_result(self, trial_id: str, result: Dict) -> None:
        """Called with every intermediate result of a trial."""

    def on_trial_complete(self, trial_id: str, result: Optional[Dict] = None, error: bool = False) -> None:
        """Called once when a trial ends, with its last result or ``error=True``."""

    def is_finished(self) -> bool:
        """Whether the algorithm will produce no more trials."""
        return self._finished

    def set_finished(self) -> None:
        self._finished = True

    def has_checkpoint(self, dirpath: str) -> bool:
        """Whether ``dirpath`` holds a state this algorithm can restore."""
        return False

    def save_to_dir(self, dirpath: str, **kwargs: Any) -> bool:
        """Saves the algorithm's state under ``dirpath``; returns whether it did.  The
        runner passes ``session_str`` as a keyword, which subclasses may name or not."""
        return False

    def restore_from_dir(self, dirpath: str) -> None:
        """Restores the state ``save_to_dir`` wrote under ``dirpath``."""
        raise NotImplementedError(f"{type(self).__name__} cannot restore its state from a directory.")
