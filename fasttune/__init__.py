"""fasttune: hyperparameter tuning with Ray Tune's API and a batched, compiled engine.

``import fasttune as tune`` and use it as you would ``ray.tune``.

Example:
    >>> import fasttune as tune
    >>> space = {"lr": tune.loguniform(1e-4, 1e-1), "layers": tune.grid_search([1, 2])}
"""
from fasttune.callback import Callback
from fasttune.checkpoint import Checkpoint
from fasttune.config import CheckpointConfig, FailureConfig, RunConfig
from fasttune.error import TuneError
from fasttune.execution.placement_groups import PlacementGroupFactory
from fasttune.experiment.experiment import Experiment
from fasttune.progress_reporter import CLIReporter, JupyterNotebookReporter, ProgressReporter
from fasttune.registry import register_env, register_trainable
from fasttune.result import Result
from fasttune.result_grid import ResultGrid
from fasttune.schedulers import create_scheduler
from fasttune.search._registry import create_searcher
from fasttune.search.sample import (
    choice,
    grid_search,
    lograndint,
    loguniform,
    qlograndint,
    qloguniform,
    qrandint,
    qrandn,
    quniform,
    randint,
    randn,
    sample_from,
    uniform,
)
from fasttune.stopper import Stopper
from fasttune.syncer import SyncConfig
from fasttune.trainable.session import TuneContext, get_checkpoint, get_context, report
from fasttune.trainable.trainable import Trainable
from fasttune.tune import run, run_experiments, with_parameters, with_resources
from fasttune.analysis.experiment_analysis import ExperimentAnalysis
from fasttune.tune_config import ResumeConfig, TuneConfig
from fasttune.tuner import Tuner

__version__ = "0.1.0"

__all__ = [
    "Tuner",
    "Trainable",
    "TuneConfig",
    "ResumeConfig",
    "ExperimentAnalysis",
    "RunConfig",
    "CheckpointConfig",
    "FailureConfig",
    "SyncConfig",
    "Result",
    "ResultGrid",
    "report",
    "get_checkpoint",
    "get_context",
    "TuneContext",
    "Checkpoint",
    "run",
    "run_experiments",
    "Experiment",
    "with_parameters",
    "with_resources",
    "PlacementGroupFactory",
    "register_trainable",
    "register_env",
    "Stopper",
    "Callback",
    "ProgressReporter",
    "CLIReporter",
    "JupyterNotebookReporter",
    "grid_search",
    "sample_from",
    "uniform",
    "quniform",
    "loguniform",
    "qloguniform",
    "randn",
    "qrandn",
    "randint",
    "qrandint",
    "lograndint",
    "qlograndint",
    "choice",
    "TuneError",
    "create_scheduler",
    "create_searcher",
]
