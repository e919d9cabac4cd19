"""What ``WandbLoggerCallback``'s tracking process does with W&B (``WandbRuns``): one W&B run per
running trial, all in that one process (``wandb.init(reinit="create_new")``; Ray Tune uses an
actor per trial instead), and the cleaning of results and configs for W&B, as Ray Tune does it.

Messages from the driver: ``start(trial_id, init_kwargs, exclude, trial_dir)``,
``results(trial_id, results)``, ``checkpoint(trial_id, name, path)``, ``end(trial_id, failed)``,
``close()`` (finishes the runs still open).
"""
from __future__ import annotations

import importlib
import logging
import numbers
import os
import pickle
from typing import Any, Dict, Iterable, List, Optional, Tuple

import numpy as np

from fasttune._flatten import flatten_dict
from fasttune.result import TRAINING_ITERATION

logger = logging.getLogger(__name__)

PROCESS_RUN_INFO_HOOK = "WANDB_PROCESS_RUN_INFO_HOOK"

# Result keys W&B gets as config, not history (they do not change along a trial), as in Ray Tune.
AUTO_CONFIG_KEYS = ("trial_id", "experiment_tag", "node_ip", "experiment_id", "hostname", "pid", "date")


def load_hook(path: str) -> Any:
    """The callable at ``"package.module.name"`` (the hooks Ray Tune's W&B environment variables name)."""
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def run_process_run_info_hook(run: Any) -> None:
    if PROCESS_RUN_INFO_HOOK in os.environ:
        try:
            load_hook(os.environ[PROCESS_RUN_INFO_HOOK])(run)
        except Exception:  # noqa: BLE001 - a hook's failure must not stop the logging
            logger.exception("The %s hook failed", PROCESS_RUN_INFO_HOOK)


def _is_loggable(value: Any, wandb: Any) -> bool:
    """A number, a one-element numeric array, a W&B object or a list of them."""
    if isinstance(value, np.ndarray) and value.size == 1:
        return isinstance(value.item(), numbers.Number)
    if isinstance(value, (list, tuple)) and value:
        return isinstance(value[0], wandb.sdk.data_types.base_types.wb_value.WBValue)
    return isinstance(value, (numbers.Number, wandb.sdk.data_types.base_types.wb_value.WBValue))


def clean_log(value: Any, wandb: Any, video_kwargs: Optional[Dict[str, Any]] = None,
              image_kwargs: Optional[Dict[str, Any]] = None) -> Any:
    """``value`` as W&B can take it, as Ray Tune cleans it: containers cleaned item by item,
    3-d arrays as ``wandb.Image``, 4-d as images, 5-d as ``wandb.Video``s; what W&B cannot
    serialise becomes an int, a float, or else its ``str``."""
    video_kwargs = video_kwargs or {}
    image_kwargs = image_kwargs or {}

    def clean(item: Any) -> Any:
        if isinstance(item, dict):
            return {key: clean(inner) for key, inner in item.items()}
        if isinstance(item, (list, set)):
            return [clean(inner) for inner in item]
        if isinstance(item, tuple):
            return tuple(clean(inner) for inner in item)
        if isinstance(item, np.ndarray) and item.ndim in (3, 4, 5):
            media = [wandb.Video(v, **video_kwargs) for v in item] if item.ndim == 5 else (
                [wandb.Image(v, **image_kwargs) for v in item] if item.ndim == 4 else [wandb.Image(item, **image_kwargs)])
            return media[0] if len(media) == 1 else media
        if _is_loggable(item, wandb):
            return item
        try:
            wandb.util.json_dumps_safer(item)
            pickle.dumps(item)
            return item
        except Exception:  # noqa: BLE001 - anything W&B cannot take becomes text
            text = str(item)
            for number in (int, float):
                try:
                    return number(text)
                except ValueError:
                    pass
            return text

    return clean(value)


def _matches(key: str, names: Iterable[str]) -> bool:
    return any(key == name or key.startswith(name + "/") for name in names)


def split_result(result: Dict[str, Any], exclude: Iterable[str], to_config: Iterable[str],
                 wandb: Any) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """The values of ``result`` to log as history and those to put in the run's config."""
    config_update = dict(result.get("config") or {})
    history: Dict[str, Any] = {}
    for key, value in flatten_dict(result).items():
        if _matches(key, exclude):
            continue
        if _matches(key, to_config):
            config_update[key] = value
        elif _is_loggable(value, wandb):
            history[key] = value
    config_update.pop("callbacks", None)
    return history, config_update


class WandbRuns:
    """The W&B runs of a sweep's trials, in the tracking process."""

    def __init__(self, to_config: List[str], video_kwargs: Dict[str, Any], image_kwargs: Dict[str, Any]) -> None:
        os.environ.setdefault("WANDB_START_METHOD", "thread")
        import wandb

        self.wandb = wandb
        self.to_config = to_config
        self.media_kwargs = {"video_kwargs": video_kwargs, "image_kwargs": image_kwargs}
        self.runs: Dict[str, Tuple[Any, List[str], Dict[str, Any]]] = {}  # trial id -> run, exclude, config sent

    def start(self, trial_id: str, init_kwargs: Dict[str, Any], exclude: List[str], trial_dir: Optional[str]) -> None:
        if trial_id in self.runs:
            return  # a trial started again without its checkpoint goes on in the same run
        run = self.wandb.init(**init_kwargs)
        if trial_dir:
            run.config.update({"trial_log_path": trial_dir}, allow_val_change=True)
        run_process_run_info_hook(run)
        self.runs[trial_id] = (run, exclude, {})

    def results(self, trial_id: str, results: List[Dict[str, Any]]) -> None:
        run, exclude, config_sent = self.runs[trial_id]
        for result in results:
            cleaned = clean_log(result, self.wandb, **self.media_kwargs)
            history, config_update = split_result(cleaned, exclude, self.to_config, self.wandb)
            changed = {key: value for key, value in config_update.items() if config_sent.get(key, config_sent) != value}
            if changed:
                run.config.update(changed, allow_val_change=True)
                config_sent.update(changed)
            run.log(history, step=history.get(TRAINING_ITERATION))

    def checkpoint(self, trial_id: str, name: str, path: str) -> None:
        run = self.runs[trial_id][0]
        artifact = self.wandb.Artifact(name=f"checkpoint_{name}", type="model")
        artifact.add_dir(path)
        run.log_artifact(artifact)

    def end(self, trial_id: str, failed: bool) -> None:
        run = self.runs.pop(trial_id)[0]
        run.finish(exit_code=1 if failed else 0)

    def close(self) -> None:
        for trial_id in list(self.runs):
            self.end(trial_id, False)
