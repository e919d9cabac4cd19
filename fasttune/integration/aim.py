"""``AimLoggerCallback``: each trial's results as an Aim run (Ray Tune's ``ray.tune.logger.aim``).

One Aim ``Run`` per trial, in ``repo`` (default: the experiment's directory) under the
experiment ``experiment_name`` (default: the experiment's directory name).  The run holds the
trial's searched parameters as ``run["hparams"]`` and ``trial_id``, ``trial_log_dir`` and
``trial_ip`` (from its first result); each numeric field of a result (nested dicts flattened with ``/``) becomes the
metric ``ray/tune/<field>`` at step ``timesteps_total`` (when set) else
``training_iteration``, with the result's ``epoch`` and ``context`` (dict) keys as Aim's
epoch and context.  The run is closed when the trial ends, failed or not.  Needs aim
(``pip install "fasttune[aim]"``)::

    import fasttune as tune
    from fasttune.integration.aim import AimLoggerCallback

    tuner = tune.Tuner(train, param_space={"lr": tune.loguniform(1e-4, 1e-1)},
                       run_config=tune.RunConfig(callbacks=[AimLoggerCallback(repo="/tmp/aim")]))

Aim writes every value of every step to its store (several RocksDB writes per metric and
step): some hundred microseconds per metric and result, in a process of the callback's own
(``_tracking.py``: the driver's event loop only hands each batch over), which bounds what
Aim takes to some thousand results a second; the end of the sweep waits for it to write
everything.  ``metrics=[...]`` tracks only those.
"""
from __future__ import annotations

import logging
import math
import os
from typing import Any, Dict, List, Optional

import numpy as np

from fasttune._flatten import flatten_dict
from fasttune._optional import import_optional
from fasttune.integration._tracking import TrackingLoggerCallback, TrialRuns

__all__ = ["AimLoggerCallback"]

logger = logging.getLogger(__name__)

#: The result value types tracked as metrics (NaN and infinities left out), as Ray Tune's.
VALID_SUMMARY_TYPES = [int, float, np.float32, np.float64, np.int32, np.int64]
_METRIC_TYPES = tuple(VALID_SUMMARY_TYPES)
# Left out of the metrics (``epoch`` and ``context`` go to Aim's own fields).
_NOT_TRACKED = frozenset({"config", "pid", "timestamp", "time_total_s", "training_iteration", "epoch", "context"})
_METRIC_PREFIX = "ray/tune/"  # Ray Tune's metric names, so Aim queries and dashboards carry over


class AimRuns(TrialRuns):
    """The trials' Aim runs, in the callback's tracking process (see ``_tracking.py``).

    ``start(trial_id, repo, experiment, fields, hparams)``: a new run (a trial started again
    from scratch gets a new one) in ``repo``, holding ``fields`` and ``hparams``.
    """

    def __init__(self, metrics: Optional[List[str]], aim_run_kwargs: Dict[str, Any]) -> None:
        super().__init__()
        self.aim = import_optional("aim", "aim", "AimLoggerCallback")
        self.metrics = frozenset(metrics) if metrics is not None else None
        self.aim_run_kwargs = aim_run_kwargs
        # Runs whose trial had not reported yet when they opened: a fasttune trial learns its
        # node's address from its first result (its workers are pooled), so the run gets
        # ``trial_ip`` then.
        self.without_ip: set = set()

    def _start_run(self, trial_id: str, open_run: Optional[Any], repo: str, experiment: str,
                   fields: Dict[str, Any], hparams: Dict[str, Any]) -> Any:
        if open_run is not None:
            self._close_run(trial_id, open_run, failed=False)
        os.makedirs(repo, exist_ok=True)
        run = self.aim.Run(repo=repo, experiment=experiment, **self.aim_run_kwargs)
        for key, value in fields.items():
            run[key] = value
        if "trial_ip" not in fields:
            self.without_ip.add(trial_id)
        if hparams:
            run["hparams"] = hparams
        return run

    def _close_run(self, trial_id: str, run: Any, failed: bool) -> None:
        self.without_ip.discard(trial_id)
        run.close()

    def _log_batch(self, trial_id: str, run: Any, results: List[Dict[str, Any]]) -> None:
        if trial_id in self.without_ip and results[0].get("node_ip"):
            run["trial_ip"] = results[0]["node_ip"]
            self.without_ip.discard(trial_id)
        track = run.track
        wanted = self.metrics
        for result in results:
            step = result.get("timesteps_total") or result["training_iteration"]
            values = {}
            for key, value in flatten_dict({k: v for k, v in result.items() if k not in _NOT_TRACKED}).items():
                if wanted is not None and key not in wanted:
                    continue
                if isinstance(value, _METRIC_TYPES) and math.isfinite(value):
                    values[_METRIC_PREFIX + key] = value
            if values:
                # One call for all of a result's metrics: Aim writes them under one step.
                track(values, step=step, epoch=result.get("epoch"), context=result.get("context"))


class AimLoggerCallback(TrackingLoggerCallback):
    """Logs each trial as an Aim run (see the module's description).

    ``repo``: an Aim repository's directory or an ``aim.Repo`` (default: the experiment's
    directory).  ``experiment_name``: the runs' Aim experiment (default: the experiment's
    directory name).  ``metrics``: the (flattened) result fields to track (default: all).
    ``aim_run_kwargs`` go to ``aim.Run`` (``system_tracking_interval``,
    ``capture_terminal_logs``, ...).

    Example:
        >>> import fasttune as tune
        >>> from fasttune.integration.aim import AimLoggerCallback
        >>> callback = AimLoggerCallback(repo="aim-runs", experiment_name="sweep", metrics=["loss"])
        >>> run_config = tune.RunConfig(callbacks=[callback])
    """

    VALID_HPARAMS = (str, bool, int, float, list, type(None))
    VALID_NP_HPARAMS = (np.bool_, np.float32, np.float64, np.int32, np.int64)

    _service = "Aim logging"

    def __init__(self, repo: Optional[Any] = None, experiment_name: Optional[str] = None,
                 metrics: Optional[List[str]] = None, **aim_run_kwargs: Any) -> None:
        super().__init__()
        aim = import_optional("aim", "aim", "AimLoggerCallback")
        if metrics is not None and (isinstance(metrics, str) or not list(metrics)):
            raise ValueError(
                f"AimLoggerCallback(metrics={metrics!r}): give a non-empty list of result fields to track, "
                "or None to track every numeric field.")
        if repo is not None and not isinstance(repo, (str, os.PathLike, aim.Repo)):
            raise TypeError(f"AimLoggerCallback(repo=...) takes a directory or an aim.Repo, got {type(repo).__name__}.")
        # The process opens the repository again by its directory.
        self._repo_path = repo.root_path if isinstance(repo, aim.Repo) else repo
        self._experiment_name = experiment_name
        self._metrics = frozenset(metrics) if metrics is not None else None
        self._aim_run_kwargs = aim_run_kwargs

    def _handler(self) -> tuple:
        metrics = sorted(self._metrics) if self._metrics is not None else None
        return __name__, "AimRuns", (metrics, self._aim_run_kwargs)

    def _start_args(self, trial: Any) -> tuple:
        repo = os.fspath(self._repo_path) if self._repo_path is not None else trial.local_experiment_path
        fields = {"trial_id": trial.trial_id, "trial_log_dir": trial.path}
        trial_ip = trial.get_ray_actor_ip()
        if trial_ip:
            fields["trial_ip"] = trial_ip
        hparams = self._hparams(trial.evaluated_params) if trial.evaluated_params else {}
        return repo, self._experiment_name or trial.experiment_dir_name, fields, hparams

    def _hparams(self, evaluated_params: Dict[str, Any]) -> Dict[str, Any]:
        """The searched parameters, flattened with ``/``, as values Aim stores (numpy
        scalars as Python ones); other values are left out, and logged at INFO."""
        kept, removed = {}, {}
        for key, value in flatten_dict(evaluated_params).items():
            if isinstance(value, self.VALID_HPARAMS):
                kept[key] = value
            elif isinstance(value, self.VALID_NP_HPARAMS):
                kept[key] = value.tolist()
            else:
                removed[key] = value
        if removed:
            logger.info("AimLoggerCallback leaves out these hyperparameters, which Aim cannot store: %s", removed)
        return kept
