"""Weights & Biases tracking, at Ray Tune's ``ray.air.integrations.wandb``: ``WandbLoggerCallback``
logs a sweep from the driver, ``setup_wandb`` opens a W&B run inside a trial.

The callback makes one W&B run per trial, as Ray Tune does: run id the trial id, name the trial's
name, group the experiment's directory name (or ``group``), the trial's config as the run's config,
each result as one history row at step ``training_iteration`` (numbers and W&B media, flattened
with ``/``; ``done`` and ``should_checkpoint`` left out, and ``config`` too unless ``log_config``),
the keys that never change along a trial (``trial_id``, ``hostname``, ``pid``, ...) in the config,
and with ``upload_checkpoints`` each checkpoint as a ``model`` artifact.  The runs' files go in
each trial's directory (``<trial dir>/wandb``) unless ``dir`` or ``$WANDB_DIR`` says otherwise.

W&B costs about 0.3 ms of Python per logged row, so the callback runs it in a process of its own
(one for the sweep, holding every trial's run) and only hands it each batch of results; at the
end of the sweep it waits (at most ``upload_timeout`` seconds) for that process to finish.

Example:
    >>> import fasttune as tune
    >>> from fasttune.integration.wandb import WandbLoggerCallback
    >>> callback = WandbLoggerCallback(project="my-sweeps", mode="offline")
    >>> run_config = tune.RunConfig(callbacks=[callback])
"""
from __future__ import annotations

import os
import warnings
from typing import Any, Dict, List, Optional

from fasttune._optional import import_optional
from fasttune.integration._tracking_process import TrackingProcess
from fasttune.integration._wandb_runs import AUTO_CONFIG_KEYS, clean_log, load_hook, run_process_run_info_hook
from fasttune.logger.logger import LoggerCallback
from fasttune.trainable.session import get_session

wandb = import_optional("wandb", "wandb", "fasttune.integration.wandb")

__all__ = ["WandbLoggerCallback", "setup_wandb"]

WANDB_ENV_VAR = "WANDB_API_KEY"
WANDB_PROJECT_ENV_VAR = "WANDB_PROJECT_NAME"
WANDB_GROUP_ENV_VAR = "WANDB_GROUP_NAME"
WANDB_MODE_ENV_VAR = "WANDB_MODE"
# Hooks named by "package.module.function", as in Ray Tune: the first returns an API key, the
# second sets WANDB_PROJECT_NAME / WANDB_GROUP_NAME, the third receives each new run.
WANDB_SETUP_API_KEY_HOOK = "WANDB_SETUP_API_KEY_HOOK"
WANDB_POPULATE_RUN_LOCATION_HOOK = "WANDB_POPULATE_RUN_LOCATION_HOOK"
WANDB_PROCESS_RUN_INFO_HOOK = "WANDB_PROCESS_RUN_INFO_HOOK"

_DEFAULT_UPLOAD_TIMEOUT = 1800  # seconds; Ray Tune's default sync timeout


def _set_api_key(api_key_file: Optional[str] = None, api_key: Optional[str] = None,
                 mode: Optional[str] = None) -> None:
    """Put the API key in ``$WANDB_API_KEY``: from ``api_key`` or the first line of
    ``api_key_file``, else one already there, else a ``wandb login``, else the key hook.
    Offline and disabled modes (``mode``, else ``$WANDB_MODE``) need none."""
    if (mode or os.environ.get(WANDB_MODE_ENV_VAR)) in {"offline", "disabled"}:
        return
    if api_key_file:
        if api_key:
            raise ValueError("Pass either api_key or api_key_file for W&B, not both.")
        with open(os.path.expanduser(api_key_file), "rt") as f:
            api_key = f.readline().strip()
    if not api_key and not os.environ.get(WANDB_ENV_VAR):
        if getattr(getattr(wandb, "api", None), "api_key", None):
            return  # logged in with `wandb login`
        if WANDB_SETUP_API_KEY_HOOK in os.environ:
            api_key = load_hook(os.environ[WANDB_SETUP_API_KEY_HOOK])()
    if api_key:
        os.environ[WANDB_ENV_VAR] = api_key
    elif not os.environ.get(WANDB_ENV_VAR):
        raise ValueError(f"No W&B API key: set ${WANDB_ENV_VAR}, pass api_key or api_key_file, run `wandb login`, "
                         f"or log offline with {WANDB_MODE_ENV_VAR}=offline.")


def _project(project: Optional[str]) -> Optional[str]:
    if not project and not os.environ.get(WANDB_PROJECT_ENV_VAR) and os.environ.get(WANDB_POPULATE_RUN_LOCATION_HOOK):
        load_hook(os.environ[WANDB_POPULATE_RUN_LOCATION_HOOK])()
    return project or os.environ.get(WANDB_PROJECT_ENV_VAR)


def setup_wandb(config: Optional[Dict[str, Any]] = None, api_key: Optional[str] = None,
                api_key_file: Optional[str] = None, rank_zero_only: bool = True, **kwargs: Any) -> Any:
    """Start a W&B run for the calling trial and return it (``run.log({...})`` logs into it).

    Inside a trial the run id is the trial id, its name the trial's name and its group the
    experiment's name; ``config`` becomes the run's config; ``kwargs`` go to ``wandb.init`` and
    win over these.  The run of the trial before on the same worker is finished first.  A
    fasttune trial is one process, rank 0, so ``rank_zero_only`` changes nothing.

    Example:
        >>> import fasttune as tune
        >>> from fasttune.integration.wandb import setup_wandb
        >>> def train(config):
        ...     run = setup_wandb(config, project="my-sweeps", mode="offline")
        ...     run.log({"loss": 0.5})
        ...     tune.report({"loss": 0.5})
    """
    session = get_session()
    context = session.context if session is not None else None
    if context is not None and rank_zero_only and context.get_world_rank() != 0:
        return wandb.init(mode="disabled")
    _set_api_key(api_key_file, api_key, kwargs.get("mode"))
    init_kwargs: Dict[str, Any] = dict(
        id=context.get_trial_id() if context is not None else None,
        name=context.get_trial_name() if context is not None else None,
        group=(context.get_experiment_name() if context is not None else None) or os.environ.get(WANDB_GROUP_ENV_VAR),
        project=_project(kwargs.pop("project", None)),
        config=clean_log(dict(config or {}), wandb),
        resume="allow", reinit="finish_previous", allow_val_change=True,
    )
    init_kwargs.update(kwargs)
    run = wandb.init(**init_kwargs)
    run_process_run_info_hook(run)
    return run


class WandbLoggerCallback(LoggerCallback):
    """Logs each trial as a W&B run (config, one history row per result, checkpoints).

    ``project``: the W&B project (else ``$WANDB_PROJECT_NAME``; one of them is required).
    ``group``: the runs' group (default: the experiment's directory name).  ``api_key_file`` /
    ``api_key``: the key (else ``$WANDB_API_KEY`` or ``wandb login``; none offline).
    ``excludes``: result and config keys to leave out.  ``log_config``: log the result's
    ``config`` in each row too (it changes under PBT).  ``upload_checkpoints``: each checkpoint
    as a ``model`` artifact (``save_checkpoints``: its deprecated name).  ``upload_timeout``:
    seconds to wait at the end of the sweep for W&B to finish.  ``video_kwargs`` /
    ``image_kwargs``: for ``wandb.Video`` / ``wandb.Image`` made from 5-d / 3-d and 4-d arrays.
    Other keyword arguments go to ``wandb.init`` (``mode="offline"``, ``entity``, ``tags``...).
    """

    _exclude_results = ["done", "should_checkpoint"]
    AUTO_CONFIG_KEYS = list(AUTO_CONFIG_KEYS)  # result keys put in the run's config, not its history

    def __init__(self, project: Optional[str] = None, group: Optional[str] = None, api_key_file: Optional[str] = None,
                 api_key: Optional[str] = None, excludes: Optional[List[str]] = None, log_config: bool = False,
                 upload_checkpoints: bool = False, save_checkpoints: bool = False,
                 upload_timeout: int = _DEFAULT_UPLOAD_TIMEOUT, video_kwargs: Optional[dict] = None,
                 image_kwargs: Optional[dict] = None, **kwargs: Any) -> None:
        if save_checkpoints:
            warnings.warn("WandbLoggerCallback(save_checkpoints=...) is deprecated: use upload_checkpoints.",
                          DeprecationWarning, stacklevel=2)
            upload_checkpoints = True
        if excludes is not None and (isinstance(excludes, str) or not all(isinstance(e, str) for e in excludes)):
            raise TypeError(f"WandbLoggerCallback(excludes=...) must be a list of key names, got {excludes!r}.")
        self.project = project
        self.group = group
        self.api_key_path = api_key_file
        self.api_key = api_key
        self.excludes = list(excludes or [])
        self.log_config = log_config
        self.upload_checkpoints = upload_checkpoints
        self._upload_timeout = upload_timeout
        self.video_kwargs = video_kwargs or {}
        self.image_kwargs = image_kwargs or {}
        self.kwargs = kwargs
        self._process: Optional[TrackingProcess] = None
        self._started: set = set()  # ids of the trials whose run is open

    def setup(self, *args: Any, **kwargs: Any) -> None:
        self.api_key_file = os.path.expanduser(self.api_key_path) if self.api_key_path else None
        _set_api_key(self.api_key_file, self.api_key, self.kwargs.get("mode"))
        self.project = _project(self.project)
        if not self.project:
            raise ValueError(f"WandbLoggerCallback needs a project: pass project=... or set ${WANDB_PROJECT_ENV_VAR}.")
        if not self.group and os.environ.get(WANDB_GROUP_ENV_VAR):
            self.group = os.environ[WANDB_GROUP_ENV_VAR]
        runs = (list(self.AUTO_CONFIG_KEYS), self.video_kwargs, self.image_kwargs)
        self._process = TrackingProcess("W&B logging", ("fasttune.integration._wandb_runs", "WandbRuns", runs),
                                        self._upload_timeout)

    # ---- on the driver ------------------------------------------------------------------
    def log_trial_start(self, trial: Any) -> None:
        if trial.trial_id in self._started:
            return
        self._started.add(trial.trial_id)
        exclude = self._exclude_results + self.excludes + ([] if self.log_config else ["config"])
        config = {key: value for key, value in trial.config.items() if key not in self.excludes and key != "callbacks"}
        init_kwargs = dict(id=trial.trial_id, name=str(trial), resume=False, allow_val_change=True,
                           group=self.group or trial.experiment_dir_name, project=self.project,
                           config=clean_log(config, wandb))
        if trial.local_path and not os.environ.get("WANDB_DIR"):
            os.makedirs(trial.local_path, exist_ok=True)
            init_kwargs["dir"] = trial.local_path
        init_kwargs.update(self.kwargs)
        init_kwargs["reinit"] = "create_new"  # the process holds every running trial's run
        self._process.send("start", trial.trial_id, init_kwargs, exclude, trial.local_path)

    def log_trial_result_batch(self, iteration: int, trial: Any, results: List[Dict[str, Any]],
                               times: List[float]) -> None:
        if trial.trial_id not in self._started:
            self.log_trial_start(trial)
        self._process.send("results", trial.trial_id, results)

    def log_trial_save(self, trial: Any) -> None:
        checkpoint = trial.checkpoint
        if self.upload_checkpoints and checkpoint is not None and os.path.isdir(checkpoint.path):
            self._process.send("checkpoint", trial.trial_id, str(trial), checkpoint.path)

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        if trial.trial_id in self._started:
            self._started.discard(trial.trial_id)
            self._process.send("end", trial.trial_id, failed)

    def on_experiment_end(self, trials: List[Any], **info: Any) -> None:
        if self._process is not None:
            self._process.finish()
