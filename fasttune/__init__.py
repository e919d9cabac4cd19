"""fasttune: hyperparameter tuning with Ray Tune's API and a batched, compiled engine.

``import fasttune as tune`` and use it as you would ``ray.tune``.

Example:
    >>> import fasttune as tune
    >>> space = {"lr": tune.loguniform(1e-4, 1e-1), "layers": tune.grid_search([1, 2])}
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from fasttune._lazy import module_hooks

__version__ = "0.1.0"

# Where each public name lives.  A name's module is imported when the name is first used:
# a Ray worker, which runs the worker side only, then starts without the driver's modules
# (about 0.15 s less before its first trial), and a script imports what it uses.
_PUBLIC = {
    "Tuner": "fasttune.tuner",
    "Trainable": "fasttune.trainable.trainable",
    "TuneConfig": "fasttune.tune_config",
    "ResumeConfig": "fasttune.tune_config",
    "ExperimentAnalysis": "fasttune.analysis.experiment_analysis",
    "RunConfig": "fasttune.config",
    "CheckpointConfig": "fasttune.config",
    "FailureConfig": "fasttune.config",
    "SyncConfig": "fasttune.syncer",
    "Result": "fasttune.result",
    "ResultGrid": "fasttune.result_grid",
    "report": "fasttune.trainable.session",
    "get_checkpoint": "fasttune.trainable.session",
    "get_context": "fasttune.trainable.session",
    "TuneContext": "fasttune.trainable.session",
    "Checkpoint": "fasttune.checkpoint",
    "run": "fasttune.tune",
    "run_experiments": "fasttune.tune",
    "Experiment": "fasttune.experiment.experiment",
    "with_parameters": "fasttune.tune",
    "with_resources": "fasttune.tune",
    "PlacementGroupFactory": "fasttune.execution.placement_groups",
    "register_trainable": "fasttune.registry",
    "register_env": "fasttune.registry",
    "Stopper": "fasttune.stopper",
    "Callback": "fasttune.callback",
    "ProgressReporter": "fasttune.progress_reporter",
    "CLIReporter": "fasttune.progress_reporter",
    "JupyterNotebookReporter": "fasttune.progress_reporter",
    "grid_search": "fasttune.search.sample",
    "sample_from": "fasttune.search.sample",
    "uniform": "fasttune.search.sample",
    "quniform": "fasttune.search.sample",
    "loguniform": "fasttune.search.sample",
    "qloguniform": "fasttune.search.sample",
    "randn": "fasttune.search.sample",
    "qrandn": "fasttune.search.sample",
    "randint": "fasttune.search.sample",
    "qrandint": "fasttune.search.sample",
    "lograndint": "fasttune.search.sample",
    "qlograndint": "fasttune.search.sample",
    "choice": "fasttune.search.sample",
    "TuneError": "fasttune.error",
    "create_scheduler": "fasttune.schedulers",
    "create_searcher": "fasttune.search._registry",
}

__all__ = list(_PUBLIC)


__getattr__, __dir__ = module_hooks(globals(), _PUBLIC)

if TYPE_CHECKING:  # what the names are, for type checkers and editors
    from fasttune.tuner import Tuner  # noqa: F401
    from fasttune.trainable.trainable import Trainable  # noqa: F401
    from fasttune.tune_config import TuneConfig, ResumeConfig  # noqa: F401
    from fasttune.analysis.experiment_analysis import ExperimentAnalysis  # noqa: F401
    from fasttune.config import RunConfig, CheckpointConfig, FailureConfig  # noqa: F401
    from fasttune.syncer import SyncConfig  # noqa: F401
    from fasttune.result import Result  # noqa: F401
    from fasttune.result_grid import ResultGrid  # noqa: F401
    from fasttune.trainable.session import report, get_checkpoint, get_context, TuneContext  # noqa: F401
    from fasttune.checkpoint import Checkpoint  # noqa: F401
    from fasttune.tune import run, run_experiments, with_parameters, with_resources  # noqa: F401
    from fasttune.experiment.experiment import Experiment  # noqa: F401
    from fasttune.execution.placement_groups import PlacementGroupFactory  # noqa: F401
    from fasttune.registry import register_trainable, register_env  # noqa: F401
    from fasttune.stopper import Stopper  # noqa: F401
    from fasttune.callback import Callback  # noqa: F401
    from fasttune.progress_reporter import ProgressReporter, CLIReporter, JupyterNotebookReporter  # noqa: F401
    from fasttune.search.sample import grid_search, sample_from, uniform, quniform, loguniform, qloguniform, randn, qrandn, randint, qrandint, lograndint, qlograndint, choice  # noqa: F401
    from fasttune.error import TuneError  # noqa: F401
    from fasttune.schedulers import create_scheduler  # noqa: F401
    from fasttune.search._registry import create_searcher  # noqa: F401
