"""MLflow tracking, at Ray Tune's ``ray.air.integrations.mlflow``: ``MLflowLoggerCallback`` logs a
sweep from the driver, ``setup_mlflow`` opens an MLflow run inside a trial.

The callback lays a sweep out as Ray Tune does: one run per trial in one experiment (run name and
``trial_name`` tag: the trial's name), the trial's flattened config as params, every numeric value
of each result (flattened with ``/``) as a metric at step ``timesteps_total`` or else
``training_iteration``, the trial's directory as artifacts with ``save_artifact=True``, and the
status FINISHED or FAILED when the trial ends.  Runs are flat: neither Ray Tune nor fasttune makes
parent or child runs.  Results reach MLflow in batches (``log_batch``) from a process of the
callback's own, so the event loop does not wait for the tracking store (the end of the sweep does).

Example:
    >>> import fasttune as tune
    >>> from fasttune.integration.mlflow import MLflowLoggerCallback
    >>> callback = MLflowLoggerCallback(tracking_uri="sqlite:///mlflow.db", experiment_name="sweep",
    ...                                 tags={"owner": "me"}, save_artifact=True)
    >>> run_config = tune.RunConfig(callbacks=[callback])
"""
from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Optional

from fasttune._flatten import flatten_dict
from fasttune._optional import import_optional
from fasttune.integration._tracking_process import TrackingProcess
from fasttune.logger.logger import LoggerCallback
from fasttune.result import TIMESTEPS_TOTAL, TRAINING_ITERATION
from fasttune.trainable.session import get_session

mlflow = import_optional("mlflow", "mlflow", "fasttune.integration.mlflow")
from mlflow.entities import Metric, Param, RunStatus  # noqa: E402 - after the check that mlflow is there

__all__ = ["MLflowLoggerCallback", "setup_mlflow"]

logger = logging.getLogger(__name__)

_TOKEN_ENV = "MLFLOW_TRACKING_TOKEN"
_FINISH_TIMEOUT = 1800  # seconds the end of a sweep waits for MLflow to take what is left


class _NoopModule:
    """What ``setup_mlflow`` returns where it must not log (a worker of rank > 0): every
    attribute is another no-op and every call returns None."""

    def __getattr__(self, name: str) -> "_NoopModule":
        return _NoopModule()

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        return None


def _experiment_id(client: Any, experiment_id: Optional[str], experiment_name: Optional[str],
                   artifact_location: Optional[str], create: bool) -> str:
    """The experiment to log to, as Ray Tune picks it: ``experiment_id`` (else
    ``$MLFLOW_EXPERIMENT_ID``) when it exists, then ``experiment_name`` (else
    ``$MLFLOW_EXPERIMENT_NAME``) when it exists, then a new experiment of that name if ``create``."""
    experiment_id = experiment_id if experiment_id is not None else os.environ.get("MLFLOW_EXPERIMENT_ID")
    if experiment_id is not None:
        try:
            return client.get_experiment(experiment_id).experiment_id
        except mlflow.exceptions.MlflowException:
            pass
    experiment_name = experiment_name if experiment_name is not None else os.environ.get("MLFLOW_EXPERIMENT_NAME")
    if experiment_name is not None:
        experiment = client.get_experiment_by_name(experiment_name)
        if experiment is not None:
            return experiment.experiment_id
        if create:
            return client.create_experiment(experiment_name, artifact_location=artifact_location)
    if create:
        raise ValueError(f"MLflow has no experiment with the id {experiment_id!r} and no experiment_name was "
                         "given: pass experiment_name (created when missing) or the id of an existing one.")
    raise ValueError(f"MLflow has no experiment with the id {experiment_id!r} or the name {experiment_name!r}: "
                     "create it first, pass the id or name of an existing one, or pass "
                     "create_experiment_if_not_exists=True.")


def _param_values(config: Dict[str, Any]) -> Dict[str, str]:
    """The config as MLflow params: flattened with ``/``, every value as text (so any config
    can be sent to the tracking process, whatever its values are)."""
    return {key: str(value) for key, value in flatten_dict(config).items()}


def _params(values: Dict[str, str]) -> List[Any]:
    return [Param(key, value) for key, value in values.items()]


def _metrics(results: List[Dict[str, Any]], times: List[float]) -> List[Any]:
    """Every value of each result that ``float()`` takes (as Ray Tune: booleans count, lists
    and strings that are not numbers do not), at the result's step and report time."""
    metrics = []
    add = metrics.append
    for result, reported_at in zip(results, times):
        step = result.get(TIMESTEPS_TOTAL) or result[TRAINING_ITERATION]
        timestamp = int(reported_at * 1000)
        for key, value in flatten_dict(result).items():
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue
            add(Metric(key, number, timestamp, step))
    return metrics


class MLflowRuns:
    """The MLflow runs of a sweep's trials, in the callback's tracking process: one message per
    trial event (``start``, ``results``, ``end``), each in a call of MLflow's client."""

    def __init__(self, tracking_uri: Optional[str], registry_uri: Optional[str], experiment_id: str,
                 tags: Dict[str, str], save_artifact: bool, log_params_on_trial_end: bool) -> None:
        self.client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)
        self.experiment_id = experiment_id
        self.tags = tags
        self.save_artifact = save_artifact
        self.log_params_on_trial_end = log_params_on_trial_end
        self.runs: Dict[str, str] = {}  # trial id -> run id

    def _run_id(self, trial_id: str, name: str) -> str:
        """The trial's run, created on its first event (a trial resumed with the experiment
        gets a new run, as in Ray Tune)."""
        run_id = self.runs.get(trial_id)
        if run_id is None:
            tags = {**self.tags, "trial_name": name}
            run_id = self.client.create_run(self.experiment_id, tags=tags, run_name=name).info.run_id
            self.runs[trial_id] = run_id
        return run_id

    def start(self, trial_id: str, name: str, params: Dict[str, str]) -> None:
        run_id = self._run_id(trial_id, name)
        if not self.log_params_on_trial_end:
            self.client.log_batch(run_id, params=_params(params))

    def results(self, trial_id: str, name: str, results: List[Dict[str, Any]], times: List[float]) -> None:
        self.client.log_batch(self._run_id(trial_id, name), metrics=_metrics(results, times))

    def end(self, trial_id: str, name: str, params: Dict[str, str], trial_dir: Optional[str], failed: bool) -> None:
        run_id = self._run_id(trial_id, name)
        if self.save_artifact and trial_dir and os.path.isdir(trial_dir):
            self.client.log_artifacts(run_id, trial_dir)
        if self.log_params_on_trial_end:
            self.client.log_batch(run_id, params=_params(params))
        status = RunStatus.to_string(RunStatus.FAILED if failed else RunStatus.FINISHED)
        self.client.set_terminated(run_id, status=status)
        del self.runs[trial_id]

    def close(self) -> None:
        """Runs still open (their trials did not end) stay RUNNING, as in Ray Tune."""


class MLflowLoggerCallback(LoggerCallback):
    """Logs each trial as an MLflow run: params, metrics per step, artifacts, status.

    ``tracking_uri``/``registry_uri``: where the runs go (MLflow's default when None; MLflow 3
    wants a database such as ``"sqlite:///mlflow.db"`` or a server, not a directory).
    ``experiment_name``: the experiment that holds the runs, created when missing (None:
    ``$MLFLOW_EXPERIMENT_NAME``, else the experiment ``$MLFLOW_EXPERIMENT_ID`` names).
    ``tags``: set on every run, beside ``trial_name``.  ``tracking_token``: put in
    ``$MLFLOW_TRACKING_TOKEN`` for a server that wants one.  ``save_artifact``: upload the
    trial's directory when it ends.  ``log_params_on_trial_end``: log the config at the end
    instead of at the start.

    The callback runs on the driver: a trial cannot call ``mlflow.log_*`` into its run (use
    :func:`setup_mlflow` inside the trial for that).  MLflow's client runs in a process of the
    callback's own; at the end of the sweep the callback waits for it to write everything.
    """

    def __init__(self, tracking_uri: Optional[str] = None, *, registry_uri: Optional[str] = None,
                 experiment_name: Optional[str] = None, tags: Optional[Dict[str, Any]] = None,
                 tracking_token: Optional[str] = None, save_artifact: bool = False,
                 log_params_on_trial_end: bool = False) -> None:
        if tags is not None and not isinstance(tags, dict):
            raise TypeError(f"MLflowLoggerCallback(tags=...) must be a dict of tag names to values, got "
                            f"{type(tags).__name__}.")
        self.tracking_uri = tracking_uri
        self.registry_uri = registry_uri
        self.experiment_name = experiment_name
        self.tags = tags
        self.tracking_token = tracking_token
        self.should_save_artifact = save_artifact
        self.log_params_on_trial_end = log_params_on_trial_end
        self.experiment_id: Optional[str] = None
        self._process: Optional[TrackingProcess] = None

    def setup(self, *args: Any, **kwargs: Any) -> None:
        if self.tracking_token:
            os.environ[_TOKEN_ENV] = self.tracking_token
        client = mlflow.MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri)
        self.experiment_id = _experiment_id(client, None, self.experiment_name, None, create=True)
        if self.tags is None:
            self.tags = {}
        tags = {key: str(value) for key, value in self.tags.items()}
        runs = (self.tracking_uri or mlflow.get_tracking_uri(), self.registry_uri, self.experiment_id, tags,
                self.should_save_artifact, self.log_params_on_trial_end)
        self._process = TrackingProcess("MLflow tracking", (__name__, "MLflowRuns", runs), _FINISH_TIMEOUT)

    def log_trial_start(self, trial: Any) -> None:
        self._process.send("start", trial.trial_id, str(trial), _param_values(trial.config))

    def log_trial_result_batch(self, iteration: int, trial: Any, results: List[Dict[str, Any]],
                               times: List[float]) -> None:
        self._process.send("results", trial.trial_id, str(trial), results, times)

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        self._process.send("end", trial.trial_id, str(trial), _param_values(trial.config), trial.local_path,
                           failed)

    def on_experiment_end(self, trials: List[Any], **info: Any) -> None:
        if self._process is not None:
            self._process.finish()


# The run setup_mlflow started in this process, and the trial it was for: a pooled worker runs
# one trial after another, so the next trial's setup_mlflow ends it (Ray Tune's process per
# trial ends it when it exits).
_open_run: Dict[str, Optional[str]] = {"trial_id": None, "run_id": None}


def setup_mlflow(config: Optional[Dict[str, Any]] = None, tracking_uri: Optional[str] = None,
                 registry_uri: Optional[str] = None, experiment_id: Optional[str] = None,
                 experiment_name: Optional[str] = None, tracking_token: Optional[str] = None,
                 artifact_location: Optional[str] = None, run_name: Optional[str] = None,
                 create_experiment_if_not_exists: bool = False, tags: Optional[Dict[str, Any]] = None,
                 rank_zero_only: bool = True) -> Any:
    """Start an MLflow run for the calling trial and return the ``mlflow`` module to log with.

    Inside a trial, the experiment id and name default to the trial's id and name (pass
    ``experiment_name`` of an existing experiment, or ``create_experiment_if_not_exists=True``),
    the run is named ``run_name`` or else the experiment name, and ``config`` is logged
    (flattened) as the run's params.  The run is the active run of ``mlflow``, so
    ``mlflow.log_metric(...)`` logs into it; the trial that follows on the same worker ends it.
    A fasttune trial is one process, rank 0, so ``rank_zero_only`` changes nothing.

    Example:
        >>> import fasttune as tune
        >>> from fasttune.integration.mlflow import setup_mlflow
        >>> def train(config):
        ...     mlflow = setup_mlflow(config, tracking_uri="sqlite:///mlflow.db", experiment_name="sweep",
        ...                           create_experiment_if_not_exists=True)
        ...     mlflow.log_metric("loss", 0.5, step=1)
        ...     tune.report({"loss": 0.5})
    """
    if config is not None and not isinstance(config, dict):
        raise TypeError(f"setup_mlflow(config=...) must be the trial's config dict, got {type(config).__name__}.")
    session = get_session()
    context = session.context if session is not None else None
    trial_id = context.get_trial_id() if context is not None else None
    if context is not None and rank_zero_only and context.get_world_rank() != 0:
        return _NoopModule()
    experiment_id = experiment_id or trial_id
    experiment_name = experiment_name or (context.get_trial_name() if context is not None else None)

    if tracking_token:
        os.environ[_TOKEN_ENV] = tracking_token
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(registry_uri)
    client = mlflow.MlflowClient()
    chosen = _experiment_id(client, experiment_id, experiment_name, artifact_location,
                            create=create_experiment_if_not_exists)

    _end_previous_trial_run(client, trial_id)
    active = mlflow.active_run()
    if active is None:
        active = mlflow.start_run(run_name=run_name or experiment_name, experiment_id=chosen, tags=tags)
    _open_run.update(trial_id=trial_id, run_id=active.info.run_id)
    if config:
        client.log_batch(active.info.run_id, params=_params(_param_values(config)))
    return mlflow


def _end_previous_trial_run(client: Any, trial_id: Optional[str]) -> None:
    run_id = _open_run["run_id"]
    if run_id is None or _open_run["trial_id"] == trial_id:
        return
    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        mlflow.end_run()
    elif client.get_run(run_id).info.status == "RUNNING":
        client.set_terminated(run_id)  # started on another thread, whose active run this is
    _open_run.update(trial_id=None, run_id=None)
