"""``CometLoggerCallback``: each trial as a Comet experiment (Ray Tune's
``ray.air.integrations.comet``).

One ``comet_ml.Experiment`` per trial (``OfflineExperiment`` with ``online=False``), named after
the trial and tagged with ``tags``.  The trial's config becomes the experiment's parameters
(nested dicts flattened with ``/``); each result's numbers become metrics at step
``training_iteration``, except ``node_ip``, ``hostname``, ``pid`` and ``date`` (system info),
``trial_id``, ``experiment_id`` and ``experiment_tag`` ("other" fields), ``done`` and
``should_checkpoint`` (left out), and RLlib's ``hist_stats/episode_reward`` and
``hist_stats/episode_lengths`` (curves).  With ``save_checkpoints=True`` (online only) every
checkpoint is logged as a model artifact.  The experiment ends when the trial ends, failed or not.  Needs
comet_ml (``pip install "fasttune[comet]"``) and, online, a Comet API key (``COMET_API_KEY``
or ``api_key=...``)::

    import fasttune as tune
    from fasttune.integration.comet import CometLoggerCallback

    tuner = tune.Tuner(train, param_space={"lr": tune.loguniform(1e-4, 1e-1)},
                       run_config=tune.RunConfig(callbacks=[CometLoggerCallback(
                           tags=["sweep"], project_name="my-project")]))

Comet turns every metric of every result into one message: tens of microseconds per
metric (on the callback's own thread, not the driver's event loop), which bounds a sweep to
some thousands of results a second while this logger is on.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Optional

from fasttune._flatten import flatten_dict
from fasttune._optional import import_optional
from fasttune.integration._tracking import TrackingLoggerCallback

__all__ = ["CometLoggerCallback"]

logger = logging.getLogger(__name__)


def _import_comet() -> Any:
    # Comet's automatic logging patches frameworks as they are imported: off, as in Ray
    # Tune, unless the user chose otherwise.
    os.environ.setdefault("COMET_DISABLE_AUTO_LOGGING", "1")
    return import_optional("comet_ml", "comet", "CometLoggerCallback", package="comet_ml")


def _matches(key: str, names: frozenset) -> bool:
    """Whether ``key`` is one of ``names`` or below one of them (``name/...``)."""
    return key in names or any(key.startswith(name + "/") for name in names)


class CometLoggerCallback(TrackingLoggerCallback):
    """Logs each trial as a Comet experiment (see the module's description).

    ``online``: ``comet_ml.Experiment`` (True) or ``OfflineExperiment`` (False, written as a
    zip archive under ``offline_directory``).  ``tags``: added to every experiment.
    ``save_checkpoints``: log each checkpoint as a model artifact.  ``experiment_kwargs`` go to
    the experiment's constructor (``project_name``, ``workspace``, ``api_key``,
    ``offline_directory``, ...); Comet's ``auto_output_logging``, ``log_git_metadata``,
    ``log_git_patch``, ``log_env_cpu`` and ``log_env_gpu`` are off unless set.

    Example:
        >>> import fasttune as tune
        >>> from fasttune.integration.comet import CometLoggerCallback
        >>> callback = CometLoggerCallback(online=False, tags=["sweep"], offline_directory="comet-runs")
        >>> run_config = tune.RunConfig(callbacks=[callback])
    """

    # Comet's automatic logging that slows a sweep down: off unless asked for.
    _exclude_autolog = ["auto_output_logging", "log_git_metadata", "log_git_patch", "log_env_cpu", "log_env_gpu"]
    _exclude_results = ["done", "should_checkpoint"]
    _system_results = ["node_ip", "hostname", "pid", "date"]
    _other_results = ["trial_id", "experiment_id", "experiment_tag"]
    _episode_results = ["hist_stats/episode_reward", "hist_stats/episode_lengths"]

    _service = "Comet"

    def __init__(self, online: bool = True, tags: Optional[List[str]] = None, save_checkpoints: bool = False,
                 **experiment_kwargs: Any) -> None:
        super().__init__()
        self._comet = _import_comet()
        if tags is not None and (isinstance(tags, str) or not all(isinstance(tag, str) for tag in tags)):
            raise TypeError(f"CometLoggerCallback(tags={tags!r}) takes a list of strings.")
        if save_checkpoints and not online:
            raise ValueError("CometLoggerCallback(save_checkpoints=True) needs online=True: Comet logs artifacts "
                             "only for online experiments.")
        self.online = online
        self.tags = list(tags) if tags is not None else None
        self.save_checkpoints = save_checkpoints
        self.experiment_kwargs = dict(experiment_kwargs)
        for option in self._exclude_autolog:
            if not self.experiment_kwargs.get(option):
                self.experiment_kwargs[option] = False
        self._to_exclude = frozenset(self._exclude_results)
        self._to_system = frozenset(self._system_results)
        self._to_other = frozenset(self._other_results)
        self._to_episodes = frozenset(self._episode_results)

    _NOT_PICKLED = TrackingLoggerCallback._NOT_PICKLED + ("_logged", "_kinds")

    def _start_afresh(self) -> None:
        super()._start_afresh()
        # Per trial, what was logged last of the fields that rarely change (config, system
        # info, "other"): logged again only when they change, not with every result.
        self._logged: Dict[Any, Dict[str, Any]] = {}
        # Per trial, the key -> kind of every result key seen so far: a trial reports the
        # same keys again and again, and sorting them once is enough.
        self._kinds: Dict[Any, Dict[str, str]] = {}

    # ---- the experiment's life cycle -------------------------------------------------
    def _open_run(self, trial: Any) -> Any:
        comet = self._comet
        experiment_cls = comet.Experiment if self.online else comet.OfflineExperiment
        experiment = experiment_cls(**self.experiment_kwargs)
        # Comet keeps the latest experiment as a global one; several are open at once here.
        comet.config.set_global_experiment(None)
        return experiment

    def _close_run(self, trial: Any, run: Any, failed: bool) -> None:
        self._logged.pop(trial, None)
        self._kinds.pop(trial, None)
        run.end()

    def _start_run(self, trial: Any) -> None:
        experiment = self._runs.get(trial)
        if experiment is None:  # a trial started again keeps its experiment
            experiment = self._runs[trial] = self._open_run(trial)
        experiment.set_name(str(trial))
        if self.tags:
            experiment.add_tags(self.tags)
        experiment.log_other("Created from", "Ray")  # as Ray Tune's: Comet filters and dashboards carry over
        config = {key: value for key, value in trial.config.items() if key != "callbacks"}
        experiment.log_parameters(config)
        self._logged[trial] = {"config": config}

    # ---- results -----------------------------------------------------------------------
    def _kind(self, key: str) -> str:
        if _matches(key, self._to_exclude):
            return "exclude"
        if _matches(key, self._to_other):
            return "other"
        if _matches(key, self._to_system):
            return "system"
        if _matches(key, self._to_episodes):
            return "episode"
        return "metric"

    def _log_batch(self, trial: Any, experiment: Any, results: List[Dict[str, Any]]) -> None:
        logged = self._logged.setdefault(trial, {})
        kinds = self._kinds.setdefault(trial, {})
        log_metrics = experiment.log_metrics
        for result in results:
            step = result["training_iteration"]
            config = {key: value for key, value in (result.get("config") or {}).items() if key != "callbacks"}
            if config != logged.get("config"):  # the first result's, and a scheduler's changes (PBT)
                experiment.log_parameters(flatten_dict(config), step=step)
                logged["config"] = config
            metrics, other, system, episodes = {}, {}, {}, {}
            sorted_into = {"metric": metrics, "other": other, "system": system, "episode": episodes}
            for key, value in flatten_dict({k: v for k, v in result.items() if k != "config"}).items():
                kind = kinds.get(key)
                if kind is None:
                    kind = kinds[key] = self._kind(key)
                if kind != "exclude" and value is not None:  # Comet ignores None, with a warning each
                    sorted_into[kind][key] = value
            if other and other != logged.get("other"):
                experiment.log_others(other)
                logged["other"] = other
            log_metrics(metrics, step=step)
            for key, value in system.items():
                if logged.get(("system", key), self) != value:
                    experiment.log_system_info(key, value)
                    logged["system", key] = value
            for key, values in episodes.items():
                experiment.log_curve(key, x=range(len(values)), y=values, step=step)

    # ---- checkpoints -------------------------------------------------------------------
    def on_checkpoint(self, iteration: int, trials: List[Any], trial: Any, checkpoint: Any, **info: Any) -> None:
        # This hook, not ``log_trial_save``: it names the checkpoint saved, where
        # ``trial.checkpoint`` is already the latest of a batch that saved several.
        if self.save_checkpoints:
            # The artifact is made here, while the checkpoint's files are surely there.
            self._submit(self._log_checkpoint, trial, self._checkpoint_artifact(trial, checkpoint))

    def _log_checkpoint(self, trial: Any, artifact: Any) -> None:
        self._log_artifact(self._run_of(trial), artifact)

    def _checkpoint_artifact(self, trial: Any, checkpoint: Any) -> Any:
        """``checkpoint`` as a Comet model artifact: its files under their paths in the
        checkpoint's directory."""
        artifact = self._comet.Artifact(name=f"checkpoint_{trial}", artifact_type="model")
        if checkpoint.filesystem is None or type(checkpoint.filesystem).__name__ == "LocalFileSystem":
            root = checkpoint.path
            for directory, _, files in sorted(os.walk(root)):
                for name in sorted(files):
                    local = os.path.join(directory, name)
                    artifact.add(local, logical_path=os.path.relpath(local, root).replace(os.sep, "/"))
        else:
            # As Ray Tune: a checkpoint in remote storage is logged without its files (Comet
            # needs a URI to refer to them).
            logger.info("CometLoggerCallback logs checkpoint %s of trial %s without files: it is not on "
                        "this machine's file system.", checkpoint.path, trial)
        return artifact

    def _log_artifact(self, experiment: Any, artifact: Any) -> None:
        experiment.log_artifact(artifact)
