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
metric, in a process of the callback's own (``_tracking.py``: the driver's event loop only
hands each batch over); the end of the sweep waits for it to write everything.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Optional, Tuple

from fasttune._flatten import flatten_dict
from fasttune._optional import import_optional
from fasttune.integration._tracking import TrackingLoggerCallback, TrialRuns

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


class CometRuns(TrialRuns):
    """The trials' Comet experiments, in the callback's tracking process (see ``_tracking.py``).

    ``start(trial_id, name, config)``: the trial's experiment (a trial started again keeps
    its own) named ``name``, with the config as parameters.  ``checkpoint(trial_id, name,
    files)``: a model artifact of ``files`` (``[(local path, logical path)]``).
    """

    def __init__(self, online: bool, tags: Optional[List[str]], experiment_kwargs: Dict[str, Any],
                 kinds: List[Tuple[str, List[str]]]) -> None:
        super().__init__()
        self.comet = _import_comet()
        self.online = online
        self.tags = tags
        self.experiment_kwargs = experiment_kwargs
        self.kinds = [(kind, frozenset(names)) for kind, names in kinds]
        # Per trial, what was logged last of the fields that rarely change (config, system
        # info, "other"): logged again only when they change, not with every result.
        self.logged: Dict[str, Dict[Any, Any]] = {}
        # Per trial, the key -> kind of every result key seen so far: a trial reports the
        # same keys again and again, and sorting them once is enough.
        self.key_kinds: Dict[str, Dict[str, str]] = {}

    # ---- the experiment's life cycle -------------------------------------------------
    def _start_run(self, trial_id: str, open_run: Optional[Any], name: str, config: Dict[str, Any]) -> Any:
        experiment = open_run
        if experiment is None:
            comet = self.comet
            experiment_cls = comet.Experiment if self.online else comet.OfflineExperiment
            experiment = experiment_cls(**self.experiment_kwargs)
            # Comet keeps the latest experiment as a global one; several are open at once here.
            comet.config.set_global_experiment(None)
        experiment.set_name(name)
        if self.tags:
            experiment.add_tags(self.tags)
        experiment.log_other("Created from", "Ray")  # as Ray Tune's: Comet filters and dashboards carry over
        experiment.log_parameters(config)
        self.logged[trial_id] = {"config": config}
        return experiment

    def _close_run(self, trial_id: str, run: Any, failed: bool) -> None:
        self.logged.pop(trial_id, None)
        self.key_kinds.pop(trial_id, None)
        run.end()

    # ---- results -----------------------------------------------------------------------
    def _kind(self, key: str) -> str:
        for kind, names in self.kinds:
            if _matches(key, names):
                return kind
        return "metric"

    def _log_batch(self, trial_id: str, experiment: Any, results: List[Dict[str, Any]]) -> None:
        logged = self.logged.setdefault(trial_id, {})
        kinds = self.key_kinds.setdefault(trial_id, {})
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
    def checkpoint(self, trial_id: str, name: str, files: List[Tuple[str, str]]) -> None:
        artifact = self.comet.Artifact(name=f"checkpoint_{name}", artifact_type="model")
        for local, logical in files:
            artifact.add(local, logical_path=logical)
        self._log_artifact(self.runs[trial_id], artifact)

    def _log_artifact(self, experiment: Any, artifact: Any) -> None:
        experiment.log_artifact(artifact)


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

    _service = "Comet logging"

    def __init__(self, online: bool = True, tags: Optional[List[str]] = None, save_checkpoints: bool = False,
                 **experiment_kwargs: Any) -> None:
        super().__init__()
        _import_comet()  # says what to install, here rather than in the process
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

    def _handler(self) -> tuple:
        # In the order a key is sorted: excluded first, then "other", system info, curves.
        kinds = [("exclude", self._exclude_results), ("other", self._other_results),
                 ("system", self._system_results), ("episode", self._episode_results)]
        return __name__, "CometRuns", (self.online, self.tags, self.experiment_kwargs, kinds)

    def _start_args(self, trial: Any) -> tuple:
        return str(trial), {key: value for key, value in trial.config.items() if key != "callbacks"}

    # ---- checkpoints -------------------------------------------------------------------
    def on_checkpoint(self, iteration: int, trials: List[Any], trial: Any, checkpoint: Any, **info: Any) -> None:
        # This hook, not ``log_trial_save``: it names the checkpoint saved, where
        # ``trial.checkpoint`` is already the latest of a batch that saved several.
        if self.save_checkpoints:
            self._ensure_started(trial)
            self._send("checkpoint", trial.trial_id, str(trial), self._checkpoint_files(trial, checkpoint))

    @staticmethod
    def _checkpoint_files(trial: Any, checkpoint: Any) -> List[Tuple[str, str]]:
        """The checkpoint's files, ``(local path, path in the checkpoint's directory)``, listed
        here, while they are surely there."""
        if checkpoint.filesystem is not None and type(checkpoint.filesystem).__name__ != "LocalFileSystem":
            # As Ray Tune: a checkpoint in remote storage is logged without its files (Comet
            # needs a URI to refer to them).
            logger.info("CometLoggerCallback logs checkpoint %s of trial %s without files: it is not on "
                        "this machine's file system.", checkpoint.path, trial)
            return []
        files = []
        root = checkpoint.path
        for directory, _, names in sorted(os.walk(root)):
            for name in sorted(names):
                local = os.path.join(directory, name)
                files.append((local, os.path.relpath(local, root).replace(os.sep, "/")))
        return files
