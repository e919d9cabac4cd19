"""``ExperimentAnalysis``: what the legacy ``tune.run`` returns."""
from __future__ import annotations

import logging
import math
import os
from typing import Any, Dict, List, Optional, Tuple, Union

from fasttune import _storage as storage
from fasttune._flatten import flatten_dict, lookup_flattened
from fasttune.checkpoint import checkpoint_in_storage
from fasttune.error import TuneError
from fasttune.result import DEFAULT_METRIC
from fasttune.result import import_pandas, trial_rows
from fasttune.result_grid import ResultGrid, as_number

logger = logging.getLogger(__name__)

_TRAINING_ITERATION = "training_iteration"


class ExperimentAnalysis:
    """The trials of an experiment and the best of them: what the legacy ``tune.run``
    returns, or read from an experiment directory (finished or interrupted, no Ray needed),
    local or in storage (a URI, or a path on ``storage_filesystem``: see
    :meth:`ResultGrid.from_path <fasttune.ResultGrid.from_path>`).

    Reading a directory never unpickles: a config value the snapshot holds as a pickle
    is a placeholder here (only ``Tuner.restore`` loads such objects).  A trial without
    result files (a simulated sweep writes none) has the last result its snapshot record
    keeps, and that one row is all its history.  Damage stays
    with what it is in: a trial's bad result line is handled as in
    :meth:`ResultGrid.from_path <fasttune.ResultGrid.from_path>` (a warning; the rows
    before it), and an unreadable snapshot is logged, the trials then being what their
    files tell.

    Args:
        experiment_checkpoint_path: The experiment directory, or a snapshot file in it.
        storage_filesystem: A ``pyarrow.fs.FileSystem`` the path is on (storage).
        trials: The experiment's trials when the caller holds them (``tune.run`` does);
            otherwise they are read from the snapshot and the trials' files.
        default_metric, default_mode: What ``best_*`` and the ``get_best_*`` methods rank
            by (``tune.run``'s ``metric`` and ``mode``); a mode alone ranks ``"_metric"``.

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

    def __init__(self, experiment_checkpoint_path: Union[str, "os.PathLike[str]"], *, storage_filesystem: Any = None,
                 trials: Optional[List[Any]] = None, default_metric: Optional[str] = None,
                 default_mode: Optional[str] = None, _result_grid: Optional[ResultGrid] = None) -> None:
        if default_mode is not None and default_mode not in ("min", "max"):
            raise ValueError(f"ExperimentAnalysis(default_mode={default_mode!r}) is not valid; use 'min', 'max' or None.")
        if default_metric is None and default_mode is not None:
            default_metric = DEFAULT_METRIC  # as Ray Tune: a mode alone ranks the anonymous metric
        if not isinstance(experiment_checkpoint_path, (str, os.PathLike)):
            raise TypeError(
                f"ExperimentAnalysis takes the experiment directory (or its experiment_state file), got "
                f"{type(experiment_checkpoint_path).__name__}.")
        if _result_grid is None:
            trials, _result_grid = self._read(experiment_checkpoint_path, storage_filesystem, trials,
                                              default_metric, default_mode)
        self.trials = trials if trials is not None else []
        self._grid = _result_grid
        self.default_metric = default_metric
        self.default_mode = default_mode
        self._trial_dataframes: Optional[Dict[str, Any]] = None

    @staticmethod
    def _read(path: Union[str, "os.PathLike[str]"], storage_filesystem: Any, given_trials: Optional[List[Any]],
              default_metric: Optional[str], default_mode: Optional[str]) -> Tuple[List[Any], ResultGrid]:
        """The trials and the grid of the experiment at ``path``, read from its files."""
        from fasttune.execution._experiment_state import has_snapshot, summaries_of

        text = os.fsdecode(os.fspath(path))
        if storage_filesystem is None and not storage.is_uri(text) and os.path.isfile(os.path.expanduser(text)):
            # As Ray Tune: the path of a snapshot file names the experiment it is in.
            text = os.path.dirname(os.path.expanduser(text))
        # In storage (a URI, or a path on storage_filesystem): read a local copy, and
        # point its checkpoints back into storage.
        location = storage.resolve(text, storage_filesystem)
        local = storage.local_copy(location) if location is not None else os.path.abspath(os.path.expanduser(text))
        # The snapshot knows statuses, errors and checkpoints; trials it does not
        # hold yet (an interrupted run made them after it) are what their files tell.
        # The grid takes what it needs of the snapshot from these trials: one decoding.
        trials = given_trials
        if trials is None:
            trials = _snapshot_trials(local) if has_snapshot(local) else []
            snapshot = summaries_of(trials)
        else:
            trials, snapshot = list(trials), None  # the grid reads the snapshot itself
        if location is not None:
            result_grid = ResultGrid.from_local_copy(local, location, default_metric, default_mode, snapshot)
        else:
            result_grid = ResultGrid._from_directory(local, default_metric, default_mode, snapshot)
        if given_trials is not None:
            return trials, result_grid
        by_path = {r.path: r for r in result_grid}
        for trial in trials:
            # The files may be ahead of the snapshot (results reported after it):
            # the analysis shows everything that was reported.
            on_disk = by_path.pop(trial.path, None)
            if on_disk is not None and on_disk.metrics:
                trial.last_result = on_disk.metrics
            if location is not None:
                trial.checkpoints = [checkpoint_in_storage(c, local, location) for c in trial.checkpoints]
                trial.checkpoint_results = [(checkpoint_in_storage(c, local, location), m)
                                            for c, m in trial.checkpoint_results]
        trials += [_FileTrial(r) for r in by_path.values()]
        return trials, result_grid

    @property
    def experiment_path(self) -> str:
        return self._grid.experiment_path

    @property
    def result_grid(self) -> ResultGrid:
        """The experiment's results as a :class:`~fasttune.ResultGrid` (what ``ResultGrid(analysis)`` holds)."""
        return self._grid

    # -- the best trial --------------------------------------------------------------

    def _validate_mode(self, mode: Optional[str]) -> str:
        mode = mode or self.default_mode
        if mode is None:
            raise ValueError("No mode was given and the analysis has no default_mode: pass mode='min' or 'max' "
                             "(or metric and mode to tune.run()).")
        if mode not in ("min", "max"):
            raise ValueError(f"mode={mode!r} is not valid; use 'min' or 'max'.")
        return mode

    def _require_defaults(self, what: str, instead: str) -> None:
        # As Ray Tune: the best_* properties rank by the run's metric and mode, and only by them.
        if not self.default_metric or not self.default_mode:
            raise ValueError(f"ExperimentAnalysis.{what} ranks trials by the metric and mode given to tune.run(), "
                             f"and none were given: pass metric= and mode= to tune.run(), or call {instead}.")

    def get_best_trial(self, metric: Optional[str] = None, mode: Optional[str] = None, scope: str = "last",
                       filter_nan_and_inf: bool = True) -> Optional[Any]:
        """The best trial by ``metric`` and ``mode`` (the run's by default) over ``scope``
        (``"last"``, ``"avg"``, ``"last-5-avg"``, ``"last-10-avg"`` or ``"all"``, as in
        :meth:`ResultGrid.get_best_result <fasttune.ResultGrid.get_best_result>`); None when
        no trial reported a usable value."""
        try:
            best = self._grid.get_best_result(metric or self.default_metric, mode or self.default_mode, scope,
                                              filter_nan_and_inf)
        except RuntimeError:
            logger.warning("No best trial found: no trial reported a usable value of %r.",
                           metric or self.default_metric)
            return None
        return self._trial_at(best.path)

    def _trial_at(self, path: str) -> Optional[Any]:
        for trial in self.trials:
            if trial.path == path:
                return trial
        return None

    def get_best_config(self, metric: Optional[str] = None, mode: Optional[str] = None,
                        scope: str = "last") -> Optional[Dict[str, Any]]:
        trial = self.get_best_trial(metric, mode, scope)
        return trial.config if trial is not None else None

    @property
    def best_trial(self) -> Optional[Any]:
        self._require_defaults("best_trial", "get_best_trial(metric, mode)")
        return self.get_best_trial()

    @property
    def best_config(self) -> Optional[Dict[str, Any]]:
        self._require_defaults("best_config", "get_best_config(metric, mode)")
        return self.get_best_config()

    @property
    def best_logdir(self) -> Optional[str]:
        """The directory of the best trial (older Ray Tune releases had this property)."""
        self._require_defaults("best_logdir", "get_best_trial(metric, mode).path")
        trial = self.best_trial
        return trial.path if trial is not None else None

    @property
    def best_result(self) -> Optional[Dict[str, Any]]:
        self._require_defaults("best_result", "get_best_trial(metric, mode).last_result")
        trial = self.best_trial
        return trial.last_result if trial is not None else None

    @property
    def best_result_df(self) -> Any:
        """The best trial's last result as a one-row DataFrame indexed by ``trial_id``,
        nested values flattened with "/"."""
        pd = import_pandas("ExperimentAnalysis.best_result_df")
        self._require_defaults("best_result_df", "get_best_trial(metric, mode).last_result")
        trial = self.best_trial
        row = dict(trial.last_result) if trial is not None else {}
        if trial is not None and "config" not in row:
            row["config"] = trial.config  # as in a result read from its file
        return pd.DataFrame.from_records([flatten_dict(row)], index="trial_id")

    @property
    def best_dataframe(self) -> Any:
        """Every result of the best trial, as in :attr:`trial_dataframes`."""
        self._require_defaults("best_dataframe", "get_best_trial(metric, mode) and trial_dataframes")
        trial = self.best_trial
        if trial is None:
            raise ValueError(f"No best trial for metric {self.default_metric!r}: no trial reported a usable value.")
        return self.trial_dataframes[trial.trial_id]

    @property
    def best_checkpoint(self) -> Optional[Any]:
        """The best trial's checkpoint whose result ranks best by the run's metric and
        mode (as Ray Tune's; ``best_trial.checkpoint`` is its latest)."""
        self._require_defaults("best_checkpoint", "get_best_checkpoint(trial, metric, mode)")
        trial = self.best_trial
        if trial is None:
            raise ValueError(f"No best trial found for the metric {self.default_metric!r} "
                             f"(mode {self.default_mode!r}): check that the trials report it.")
        return self.get_best_checkpoint(trial, self.default_metric, self.default_mode)

    # -- checkpoints -----------------------------------------------------------------

    def get_best_checkpoint(self, trial: Any, metric: Optional[str] = None,
                            mode: Optional[str] = None) -> Optional[Any]:
        """The kept checkpoint of ``trial`` (a trial, or its directory) whose result ranks
        best by ``metric`` (default: the run's metric, else ``training_iteration``) and
        ``mode`` (default: the run's); checkpoints whose value is missing or NaN are left
        out, and None (logged) when none is left."""
        metric = metric or self.default_metric or _TRAINING_ITERATION
        mode = self._validate_mode(mode)
        if isinstance(trial, (str, os.PathLike)):
            path = os.fsdecode(os.fspath(trial))
            found = self._trial_at(path)
            if found is None:
                raise ValueError(f"No trial of this experiment has the directory {path!r}.")
            trial = found
        scored = []
        for checkpoint, metrics in trial.checkpoint_results:
            value = as_number(lookup_flattened(metrics, metric))
            if value is not None and not math.isnan(value):
                scored.append((checkpoint, value))
        if not scored:
            logger.error("No checkpoint of trial %s has a value of %r.", trial, metric)
            return None
        sign = -1.0 if mode == "min" else 1.0
        return max(scored, key=lambda pair: sign * pair[1])[0]  # ties: the oldest, as Ray Tune

    def get_last_checkpoint(self, trial: Optional[Any] = None, metric: str = _TRAINING_ITERATION,
                            mode: str = "max") -> Optional[Any]:
        """The checkpoint of ``trial`` with the highest ``training_iteration``; without a
        trial, that of the best trial by ``metric`` and ``mode`` (default: the one that ran
        the most iterations)."""
        trial = trial or self.get_best_trial(metric, mode)
        if trial is None:
            return None
        return self.get_best_checkpoint(trial, _TRAINING_ITERATION, "max")

    # -- tables ----------------------------------------------------------------------

    def get_all_configs(self, prefix: bool = False) -> Dict[str, Dict[str, Any]]:
        """Each trial's config by trial id; ``prefix=True`` flattens it under ``config/``."""
        return {t.trial_id: flatten_dict({"config": t.config}) if prefix else t.config for t in self.trials}

    @property
    def results(self) -> Dict[str, Dict[str, Any]]:
        return {t.trial_id: t.last_result for t in self.trials}

    @property
    def trial_dataframes(self) -> Dict[str, Any]:
        """Every result of each trial, by trial id: a DataFrame read from its ``result.json``
        (or the experiment's results store), nested values flattened with "/"; for a trial
        with neither (a simulated sweep writes no files), its last result, the one the
        snapshot keeps; empty for a trial that reported nothing."""
        if self._trial_dataframes is None:
            pd = import_pandas("ExperimentAnalysis.trial_dataframes")
            frames = {}
            for trial in self.trials:
                last = [trial.last_result] if trial.last_result else []
                rows = trial_rows(trial.path, on_bad_line="warn", missing=last) if trial.path else last
                frames[trial.trial_id] = pd.json_normalize(rows, sep="/") if rows else pd.DataFrame()
            self._trial_dataframes = frames
        return self._trial_dataframes

    def dataframe(self, metric: Optional[str] = None, mode: Optional[str] = None) -> Any:
        """One row per trial: its result with the best ``metric`` by ``mode`` over its whole
        history, or without a mode (as in Ray Tune) its last result."""
        if mode is not None and metric is None:
            raise ValueError(f"ExperimentAnalysis.dataframe(mode={mode!r}) needs the metric to rank by as well.")
        if mode is None:
            return self._grid.get_dataframe()
        return self._grid.get_dataframe(filter_metric=metric, filter_mode=mode)

    @property
    def results_df(self) -> Any:
        """Every trial's last result, one row per trial, indexed by ``trial_id`` (as Ray Tune's)."""
        frame = self._grid.get_dataframe()
        return frame.set_index("trial_id") if "trial_id" in frame.columns else frame


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
        self.checkpoint_results = list(result.best_checkpoints)
        self.checkpoints = [checkpoint for checkpoint, _ in self.checkpoint_results]
        self.status = "ERROR" if result.error is not None else "TERMINATED"
