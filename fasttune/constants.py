"""Environment variables fasttune reads (``ray.tune.constants``).

``TUNE_ENV_VARS`` names every variable that changes what fasttune does, or that it sets.  It
holds the Ray Tune variables fasttune honours, under Ray Tune's names, and fasttune's own; Ray
Tune's other variables tune Ray Tune's engine, which fasttune replaces, so they have no effect.

* ``RAY_TUNE_CALLBACKS``: comma-separated ``module.Class`` paths of callbacks that every
  experiment adds, each made with no arguments.
* ``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1``: no default CSV, JSON and TensorBoard loggers.
* ``TUNE_DISABLE_STRICT_METRIC_CHECKING=1``: a result without ``TuneConfig(metric=...)``'s
  metric is taken (its metric is NaN) instead of failing the trial.
* ``TUNE_WARN_THRESHOLD_S``: seconds after which ``fasttune.utils.warn_if_slow`` warns.
* ``RAY_CHDIR_TO_TRIAL_DIR=0``: a trial runs in its worker's working directory instead of
  its own trial directory (the driver's value, else the worker's).
* ``TUNE_ORIG_WORKING_DIR``: set by each worker (unless set already) to its working
  directory before it first moves into a trial's directory, as Ray Tune sets it.
* ``FASTTUNE_STORAGE_PATH``: where experiments go when ``RunConfig`` names no storage path.
* ``FASTTUNE_STORAGE_CACHE``: the local cache of a remote (``s3://``...) storage path.
* ``FASTTUNE_NODE_CHECKPOINT_CACHE_BYTES`` / ``FASTTUNE_NODE_CHECKPOINT_CACHE_ENTRIES``: how
  much of the checkpoints a node uploaded it keeps for resumes there (0 bytes: none).
* ``FASTTUNE_GLOBAL_CHECKPOINT_S``: seconds between experiment snapshots.
* ``FASTTUNE_SYNCHRONOUS=1``: trials run one step at a time in order (reproducible runs).
* ``FASTTUNE_PUREPYTHON=1``: the pure-Python core instead of the compiled one.
* ``FASTTUNE_WORKER_CHANNEL=ray``: workers on the driver's node take the driver's polls as
  Ray actor calls, like workers on other nodes, instead of over a Unix socket (the default).

Example:
    >>> from fasttune.constants import RAY_TUNE_CALLBACKS_ENV_VAR, TUNE_ENV_VARS
    >>> RAY_TUNE_CALLBACKS_ENV_VAR in TUNE_ENV_VARS
    True
"""

import os

RAY_TUNE_CALLBACKS_ENV_VAR = "RAY_TUNE_CALLBACKS"
DISABLE_STRICT_METRIC_CHECKING_ENV_VAR = "TUNE_DISABLE_STRICT_METRIC_CHECKING"
RAY_CHDIR_TO_TRIAL_DIR = "RAY_CHDIR_TO_TRIAL_DIR"  # Ray Tune has it in ray.train.constants
WORKER_CHANNEL_ENV_VAR = "FASTTUNE_WORKER_CHANNEL"

TUNE_ENV_VARS = {
    RAY_TUNE_CALLBACKS_ENV_VAR,
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS",
    DISABLE_STRICT_METRIC_CHECKING_ENV_VAR,
    "TUNE_WARN_THRESHOLD_S",
    RAY_CHDIR_TO_TRIAL_DIR,
    "TUNE_ORIG_WORKING_DIR",
    "FASTTUNE_STORAGE_PATH",
    "FASTTUNE_STORAGE_CACHE",
    "FASTTUNE_NODE_CHECKPOINT_CACHE_BYTES",
    "FASTTUNE_NODE_CHECKPOINT_CACHE_ENTRIES",
    "FASTTUNE_GLOBAL_CHECKPOINT_S",
    "FASTTUNE_SYNCHRONOUS",
    "FASTTUNE_PUREPYTHON",
    WORKER_CHANNEL_ENV_VAR,
}


def strict_metric_checking() -> bool:
    """Whether a result must carry the experiment's metric (unless the variable is 1, as in Ray Tune)."""
    return os.environ.get(DISABLE_STRICT_METRIC_CHECKING_ENV_VAR, "0").strip() != "1"
