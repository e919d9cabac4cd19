"""``ExperimentAnalysis``: what the legacy ``tune.run`` returns."""
from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Optional, Union

from fasttune import _storage as storage
from fasttune.checkpoint import checkpoint_in_storage
from fasttune.error import TuneError
from fasttune.result_grid import ResultGrid, point_into_storage

logger = logging.getLogger(__name__)


class ExperimentAnalysis:
    """The trials of an experiment and the best of them: what the legacy ``tune.run``
    returns, or read from an experiment directory (finished or interrupted, no Ray needed),
    local or in storage (a URI, or a path on ``storage_filesystem``: see
    :meth:`ResultGrid.from_path <fasttune.ResultGrid.from_path>`).

    Reading a directory never unpickles: a config value the snapshot holds as a pickle
    is a placeholder here (only ``Tuner.restore`` loads such objects).  Damage stays
    with what it is in: a trial's bad result line is handled as in
    :meth:`ResultGrid.from_path <fasttune.ResultGrid.from_path>` (a warning; the rows
    before it), and an unreadable snapshot is logged, the trials then being what their
    files tell.

    Example:
        >>> import json, os, tempfile
        >>> import fasttune as tune
        >>> exp = tempfile.mkdtemp()  # an experiment directory, as tune.run leaves one
        >>> for i, lr in enumerate([0.1, 0.01]):
        ...     os.mkdir(os.path.join(exp, f"trial_{i}"))
        ...     with open(os.path.join(exp, f"trial_{i}", "params.json"), "w") as f:
        ...         json.dump({"lr": lr}, f)
        ...     with open(os.path.join(exp, f"trial_{i}", "result.json"), "w") as f:
        ...         json.dump({"loss": lr * 10, "done": True, "config": {"lr": lr}}, f)
        >>> analysis = tune.ExperimentAnalysis(exp, default_metric="loss", default_mode="min")
        >>> analysis.best_config
        {'lr': 0.01}
        >>> len(analysis.trials)
        2
    """

    def __init__(self, trials: Union[List[Any], str, "os.PathLike[str]"], result_grid: Optional[ResultGrid] = None,
                 default_metric: Optional[str] = None, default_mode: Optional[str] = None,
                 storage_filesystem: Any = None) -> None:
        if isinstance(trials, (str, os.PathLike)):
            from fasttune.execution._experiment_state import has_snapshot

            # In storage (a URI, or a path on storage_filesystem): read a local copy, and
            # point its checkpoints back into storage.
            location = storage.resolve(trials, storage_filesystem)
            if location is not None:
                path = storage.local_copy(location)
                result_grid = ResultGrid.from_path(path, default_metric, default_mode)
                result_grid = ResultGrid([point_into_storage(r, path, location) for r in result_grid],
                                         location.uri, default_metric, default_mode)
            else:
                path = os.path.abspath(os.path.expanduser(os.fspath(trials)))
                result_grid = ResultGrid.from_path(path, default_metric, default_mode)
            # The snapshot knows statuses, errors and checkpoints; trials it does not
            # hold yet (an interrupted run made them after it) are what their files tell.
            trials = _snapshot_trials(path) if has_snapshot(path) else []
            by_path = {r.path: r for r in result_grid}
            for trial in trials:
                # The files may be ahead of the snapshot (results reported after it):
                # the analysis shows everything that was reported.
                on_disk = by_path.pop(trial.path, None)
                if on_disk is not None and on_disk.metrics:
                    trial.last_result = on_disk.metrics
                if location is not None:
                    trial.checkpoints = [checkpoint_in_storage(c, path, location) for c in trial.checkpoints]
                    trial.checkpoint_results = [(checkpoint_in_storage(c, path, location), m)
                                                for c, m in trial.checkpoint_results]
            trials += [_FileTrial(r) for r in by_path.values()]
        elif result_grid is None:
            raise TypeError("ExperimentAnalysis takes an experiment directory, or trials and their ResultGrid.")
        self.trials = trials
        self._grid = result_grid
        self.default_metric = default_metric
        self.default_mode = default_mode

    @property
    def experiment_path(self) -> str:
        return self._grid.experiment_path

    def get_best_trial(self, metric: Optional[str] = None, mode: Optional[str] = None, scope: str = "last", filter_nan_and_inf: bool = True) -> Optional[Any]:
        try:
            best = self._grid.get_best_result(metric or self.default_metric, mode or self.default_mode, scope, filter_nan_and_inf)
        except RuntimeError:
            return None
        for trial in self.trials:
            if trial.path == best.path:
                return trial
        return None

    def get_best_config(self, metric: Optional[str] = None, mode: Optional[str] = None, scope: str = "last") -> Optional[Dict[str, Any]]:
        trial = self.get_best_trial(metric, mode, scope)
        return trial.config if trial is not None else None

    @property
    def best_trial(self) -> Optional[Any]:
        return self.get_best_trial()

    @property
    def best_config(self) -> Optional[Dict[str, Any]]:
        return self.get_best_config()

    @property
    def best_result(self) -> Optional[Dict[str, Any]]:
        trial = self.best_trial
        return trial.last_result if trial is not None else None

    @property
    def best_checkpoint(self) -> Optional[Any]:
        trial = self.best_trial
        return trial.checkpoint if trial is not None else None

    @property
    def results(self) -> Dict[str, Dict[str, Any]]:
        return {t.trial_id: t.last_result for t in self.trials}

    def dataframe(self, metric: Optional[str] = None, mode: Optional[str] = None) -> Any:
        return self._grid.get_dataframe(filter_metric=metric, filter_mode=mode)

    @property
    def results_df(self) -> Any:
        return self._grid.get_dataframe()


def _snapshot_trials(path: str) -> List[Any]:
    """The trials of the latest snapshot; none (with a warning) when it cannot be read."""
    from fasttune.execution._experiment_state import read_trials

    try:
        return read_trials(path)
    except TuneError as exc:
        logger.warning("The experiment state of %s cannot be read (%s); its trials are read from their "
                       "files alone.", path, exc)
        return []


class _FileTrial:
    """A trial known only from its directory: enough for the best-trial lookups."""

    def __init__(self, result: Any) -> None:
        self.path = self.local_path = result.path
        self.trial_id = (result.metrics or {}).get("trial_id") or os.path.basename(result.path)
        self.config = result.config
        self.last_result = result.metrics or {}
        self.checkpoint = result.checkpoint
        self.status = "ERROR" if result.error is not None else "TERMINATED"
