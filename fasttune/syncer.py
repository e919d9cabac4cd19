"""How often and how long experiment files are synced to ``storage_path``
(``ray.tune.syncer``).

With a local (or mounted) ``storage_path`` there is nothing to sync: the driver and the
workers write the experiment directory in place, so a ``SyncConfig`` is accepted and
kept with the experiment (``tuner.msgpack``) but changes nothing.  With storage on S3 or
another ``pyarrow.fs`` filesystem, the driver uploads its staging copy of the result
files and snapshots every ``sync_period`` seconds and when the sweep ends
(``fasttune.execution._storage_sync``); checkpoints are uploaded by the workers as they
are reported, whatever the period.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

#: Ray Tune's defaults: at most one sync every 5 minutes, each given up to 30 minutes.
DEFAULT_SYNC_PERIOD = 300
DEFAULT_SYNC_TIMEOUT = 1800


@dataclass
class SyncConfig:
    """Syncing of the experiment directory to ``RunConfig(storage_path)``.

    Args:
        sync_period: Least number of seconds between two syncs of the experiment's
            files (snapshots, result rows) from the driver.
        sync_timeout: Most number of seconds one sync may take before it fails.
        sync_artifacts: Also sync the files a trial writes into its own directory
            (``tune.get_context().get_trial_dir()``), not only its checkpoints.
        sync_artifacts_on_checkpoint: With ``sync_artifacts``, sync them at every
            reported checkpoint as well.

    Example:
        >>> from fasttune import RunConfig, SyncConfig
        >>> RunConfig(storage_path="/tmp/runs", sync_config=SyncConfig(sync_period=60)).sync_config.sync_period
        60
        >>> SyncConfig(sync_timeout=0)
        Traceback (most recent call last):
        ...
        ValueError: SyncConfig.sync_timeout=0 is not valid; use a number of seconds > 0.
    """

    sync_period: int = DEFAULT_SYNC_PERIOD
    sync_timeout: int = DEFAULT_SYNC_TIMEOUT
    sync_artifacts: bool = False
    sync_artifacts_on_checkpoint: bool = True

    def __post_init__(self) -> None:
        if not _is_seconds(self.sync_period) or self.sync_period < 0:
            raise ValueError(
                f"SyncConfig.sync_period={self.sync_period!r} is not valid; use a number of seconds >= 0.")
        if not _is_seconds(self.sync_timeout) or self.sync_timeout <= 0:
            raise ValueError(
                f"SyncConfig.sync_timeout={self.sync_timeout!r} is not valid; use a number of seconds > 0.")
        for name in ("sync_artifacts", "sync_artifacts_on_checkpoint"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"SyncConfig.{name} must be True or False, got {getattr(self, name)!r}.")


def _is_seconds(value: object) -> bool:
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(float(value)))


__all__ = ["SyncConfig", "DEFAULT_SYNC_PERIOD", "DEFAULT_SYNC_TIMEOUT"]
