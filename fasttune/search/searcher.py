"""The base class of suggestion algorithms: one config per ``suggest(trial_id)``.

A ``Searcher`` only proposes configs and learns from results; a
``SearchGenerator`` turns its suggestions into trials.

Example:
    >>> from fasttune.search.searcher import Searcher
    >>> class Countdown(Searcher):
    ...     def __init__(self, n):
    ...         super().__init__(metric="loss", mode="min")
    ...         self.n = n
    ...     def suggest(self, trial_id):
    ...         if self.n == 0:
    ...             return Searcher.FINISHED
    ...         self.n -= 1
    ...         return {"x": self.n}
    ...     def on_trial_complete(self, trial_id, result=None, error=False):
    ...         pass
    >>> searcher = Countdown(1)
    >>> searcher.suggest("t0"), searcher.suggest("t1")
    ({'x': 0}, 'FINISHED')
"""
from __future__ import annotations

import glob
import logging
import os
import uuid
import warnings
from typing import Any, Dict, List, Optional, Union

from fasttune._atomic import fsync_directory
from fasttune._serialization import dump_file, load_file

logger = logging.getLogger(__name__)

_MODES = ("min", "max")


class Searcher:
    """Proposes configs for new trials and learns from their results.

    Subclasses implement ``suggest`` and ``on_trial_complete``; ``get_state``
    and ``set_state`` are enough for ``save``/``restore`` to work.

    Args:
        metric: The result key to optimise (a list for multi-objective searchers).
        mode: ``"min"`` or ``"max"`` (a list, with ``"obs"`` for observed-only
            metrics, for multi-objective searchers).
    """

    FINISHED = "FINISHED"
    CKPT_FILE_TMPL = "searcher-state-{}.pkl"

    def __init__(self, metric: Optional[Union[str, List[str]]] = None, mode: Optional[Union[str, List[str]]] = None) -> None:
        self._metric = metric
        self._mode = mode
        if mode is None:
            return
        if isinstance(mode, str):
            if mode not in _MODES:
                raise ValueError(f"mode must be 'min' or 'max', got {mode!r}.")
            if metric is not None and not isinstance(metric, str):
                raise TypeError(f"metric must be a str when mode is a str, got {type(metric).__name__}.")
        elif isinstance(mode, (list, tuple)):
            if not all(m in _MODES + ("obs",) for m in mode):
                raise ValueError(f"every mode must be 'min', 'max' or 'obs', got {list(mode)!r}.")
            if metric is not None and (not isinstance(metric, (list, tuple)) or len(metric) != len(mode)):
                raise ValueError(f"metric and mode must be lists of the same length, got {metric!r} and {mode!r}.")
        else:
            raise TypeError(f"mode must be 'min', 'max' or a list of them, got {type(mode).__name__} {mode!r}.")

    @property
    def metric(self) -> Optional[Union[str, List[str]]]:
        """The result key being optimised."""
        return self._metric

    @property
    def mode(self) -> Optional[Union[str, List[str]]]:
        """Whether the metric is minimised or maximised."""
        return self._mode

    def set_search_properties(self, metric: Optional[str], mode: Optional[str], config: Dict, **spec: Any) -> bool:
        """Hands the tuner's metric, mode and param space to the searcher.

        Returns:
            ``True`` if the searcher took them, ``False`` if it cannot (e.g. it
            already has a search space).  The base class takes nothing.
        """
        return False

    def suggest(self, trial_id: str) -> Optional[Union[Dict, str]]:
        """A config for trial ``trial_id``; ``None`` to wait, ``Searcher.FINISHED`` to end."""
        raise NotImplementedError

    def on_trial_result(self, trial_id: str, result: Dict) -> None:
        """Called with every intermediate result of a trial."""

    def on_trial_complete(self, trial_id: str, result: Optional[Dict] = None, error: bool = False) -> None:
        """Called once when a trial ends, with its last result or ``error=True``."""
        raise NotImplementedError

    def add_evaluated_point(
        self,
        parameters: Dict,
        value: float,
        error: bool = False,
        pruned: bool = False,
        intermediate_values: Optional[List[float]] = None,
    ) -> None:
        """Tells the searcher about a config evaluated outside this run."""
        raise NotImplementedError

    def add_evaluated_trials(self, trials_or_analysis: Any, metric: str) -> None:
        """Feeds finished trials (one, a list, or an object with ``.trials``) to ``add_evaluated_point``.

        A trial is anything with ``config``, ``last_result`` and ``status``.
        """
        if type(self).add_evaluated_point is Searcher.add_evaluated_point:
            raise NotImplementedError(f"{type(self).__name__} does not implement add_evaluated_point.")
        if isinstance(trials_or_analysis, (list, tuple)):
            trials = list(trials_or_analysis)
        elif hasattr(trials_or_analysis, "trials"):
            trials = list(trials_or_analysis.trials)
        elif hasattr(trials_or_analysis, "last_result"):
            trials = [trials_or_analysis]
        else:
            raise TypeError(
                "add_evaluated_trials expects a trial, a list of trials, or an object with "
                f".trials; got {type(trials_or_analysis).__name__}."
            )
        any_finished_with_metric = False
        for trial in trials:
            result = trial.last_result or {}
            if metric not in result:
                continue
            terminated = trial.status == "TERMINATED"
            done = bool(result.get("done", False))
            any_finished_with_metric = any_finished_with_metric or (terminated and done)
            self.add_evaluated_point(
                parameters=trial.config,
                value=result[metric],
                error=trial.status == "ERROR",
                pruned=terminated and not done,
                intermediate_values=None,
            )
        if not any_finished_with_metric:
            warnings.warn(
                f"No finished trial reported the metric {metric!r}; check the metric name.",
                stacklevel=2,
            )

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        """Returns ``True`` if the searcher limits concurrency itself (the base does not)."""
        return False

    def get_state(self) -> Dict:
        """The searcher's state as a picklable dict."""
        raise NotImplementedError

    def set_state(self, state: Dict) -> None:
        """Restores what ``get_state`` returned."""
        raise NotImplementedError

    def save(self, checkpoint_path: str) -> None:
        """Writes the searcher's state to the file ``checkpoint_path``.

        The default stores ``get_state()`` as msgpack (objects in it, such as a
        library's sampler, cloudpickled); override both ``save`` and ``restore`` to
        store the state differently.
        """
        dump_file(checkpoint_path, self.get_state())

    def restore(self, checkpoint_path: str) -> None:
        """Reads back what ``save`` wrote."""
        self.set_state(load_file(checkpoint_path))

    def save_to_dir(self, checkpoint_dir: str, session_str: str = "default") -> None:
        """Saves into ``checkpoint_dir`` as ``CKPT_FILE_TMPL.format(session_str)``, atomically."""
        file_name = self.CKPT_FILE_TMPL.format(session_str)
        tmp_path = os.path.join(checkpoint_dir, f".{uuid.uuid4().hex}-tmp-{file_name}")
        try:
            self.save(tmp_path)
        except NotImplementedError:
            logger.warning("%s does not implement save(); its state is not checkpointed.", type(self).__name__)
            return
        if os.path.exists(tmp_path):
            os.replace(tmp_path, os.path.join(checkpoint_dir, file_name))
            fsync_directory(checkpoint_dir)  # the rename itself is durable before a snapshot counts on it

    def restore_from_dir(self, checkpoint_dir: str) -> None:
        """Restores the newest state ``save_to_dir`` wrote into ``checkpoint_dir``."""
        paths = glob.glob(os.path.join(checkpoint_dir, self.CKPT_FILE_TMPL.format("*")))
        if not paths:
            raise RuntimeError(
                f"No searcher checkpoint ({self.CKPT_FILE_TMPL.format('*')}) in {checkpoint_dir}."
            )
        self.restore(max(paths, key=os.path.getmtime))
