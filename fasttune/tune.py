"""The legacy entry points ``run`` and ``run_experiments``, and trainable wrappers."""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Union

from fasttune.analysis.experiment_analysis import ExperimentAnalysis
from fasttune.error import TuneError
from fasttune.experiment.experiment import Experiment, convert_to_experiment_list
from fasttune.syncer import SyncConfig
from fasttune.trainable.util import with_parameters, with_resources  # noqa: F401  (Ray Tune has them here too)


def run(
    run_or_experiment: Any,
    *,
    name: Optional[str] = None,
    metric: Optional[str] = None,
    mode: Optional[str] = None,
    stop: Any = None,
    time_budget_s: Optional[float] = None,
    config: Optional[Dict[str, Any]] = None,
    resources_per_trial: Any = None,
    num_samples: int = 1,
    storage_path: Optional[str] = None,
    storage_filesystem: Any = None,
    search_alg: Any = None,
    scheduler: Any = None,
    checkpoint_config: Any = None,
    sync_config: Any = None,
    verbose: Optional[int] = None,
    progress_reporter: Any = None,
    fail_fast: Any = False,
    max_failures: int = 0,
    callbacks: Optional[List[Any]] = None,
    reuse_actors: Optional[bool] = None,
    raise_on_failed_trial: bool = True,
    max_concurrent_trials: Optional[int] = None,
    trial_name_creator: Optional[Callable[..., str]] = None,
    trial_dirname_creator: Optional[Callable[..., str]] = None,
    resume: Union[bool, str] = False,
    server_port: Optional[int] = None,
    **_unsupported: Any,
) -> ExperimentAnalysis:
    """Run one experiment (``ray.tune.run``); prefer :class:`fasttune.Tuner` in new code.

    Example:
        >>> import fasttune as tune
        >>> def train(config):
        ...     tune.report({"loss": config["x"] ** 2})
        >>> analysis = tune.run(train, config={"x": tune.uniform(-1, 1)}, num_samples=4,
        ...                     metric="loss", mode="min")  # doctest: +SKIP

    ``verbose`` (0-3, default 3) and ``progress_reporter`` (a ``tune.ProgressReporter``)
    set what is shown while it runs, as in Ray Tune.

    ``resume`` continues the experiment ``storage_path/name`` from its latest snapshot:
    ``True`` (there must be one), ``"AUTO"`` (when there is one, else start anew),
    ``"AUTO+ERRORED"`` / ``"ERRORED_ONLY"`` (also restart errored trials; only them).

    ``server_port`` serves the experiment over HTTP on 127.0.0.1 while it runs (0: any
    free port); a :class:`fasttune.web_server.TuneClient` lists, adds and stops trials.

    ``storage_path`` may be in storage (a URI such as ``s3://bucket/prefix``, or a path on
    ``storage_filesystem``); ``sync_config`` (a ``tune.SyncConfig``) says how often the
    driver uploads there.  With a local ``storage_path`` there is nothing to sync.
    """
    from fasttune.execution._storage_sync import prepare_staging
    from fasttune.impl.tuner_internal import run_experiment

    if _unsupported:
        raise TypeError(f"tune.run() got arguments fasttune does not support: {sorted(_unsupported)}.")
    if sync_config is not None and not isinstance(sync_config, SyncConfig):
        raise TypeError(f"tune.run(sync_config=...) needs a tune.SyncConfig, got {type(sync_config).__name__}.")
    if isinstance(run_or_experiment, Experiment):
        experiment = run_or_experiment
        if experiment.sync_config is None:
            experiment.sync_config = sync_config
    else:
        experiment = Experiment(
            name,
            run_or_experiment,
            stop=stop,
            config=config,
            resources_per_trial=resources_per_trial,
            num_samples=num_samples,
            storage_path=storage_path,
            storage_filesystem=storage_filesystem,
            sync_config=sync_config,
            checkpoint_config=checkpoint_config,
            trial_name_creator=trial_name_creator,
            trial_dirname_creator=trial_dirname_creator,
            max_failures=max_failures,
        )
    if experiment.storage is not None:
        # In storage: the staging copy is started afresh, or brought up to date to resume.
        prepare_staging(experiment.storage, resume=resume not in (False, None))
    resume_config = _resume_config(resume, experiment.path)
    grid, trials = run_experiment(
        experiment,
        resume_config=resume_config,
        metric=metric,
        mode=mode,
        search_alg=search_alg,
        scheduler=scheduler,
        max_concurrent_trials=max_concurrent_trials,
        time_budget_s=time_budget_s,
        reuse_actors=reuse_actors,
        callbacks=callbacks,
        verbose=verbose,
        progress_reporter=progress_reporter,
        fail_fast=fail_fast,
        return_trials=True,
        server_port=server_port,
    )
    incomplete = [t for t in trials if t.status != "TERMINATED"]
    if incomplete and raise_on_failed_trial:
        raise TuneError(f"Trials did not complete: {incomplete}")
    return ExperimentAnalysis(trials, grid, default_metric=metric, default_mode=mode)


_RESUME_MODES = ("AUTO", "AUTO+ERRORED", "ERRORED_ONLY")


def _resume_config(resume: Union[bool, str], path: str) -> Any:
    from fasttune.execution._experiment_state import has_snapshot
    from fasttune.tune_config import ResumeConfig

    if resume is False or resume is None:
        return None
    if resume is not True and resume not in _RESUME_MODES:
        raise ValueError(f"tune.run(resume={resume!r}) is not valid; use False, True or one of {list(_RESUME_MODES)}.")
    if not has_snapshot(path):
        if resume is True or resume == "ERRORED_ONLY":
            raise TuneError(
                f"tune.run(resume={resume!r}) found no experiment to resume in {path}; give the name and "
                "storage_path of the experiment, or resume='AUTO' to start anew when there is none.")
        return None
    types = ResumeConfig.ResumeType
    if resume == "ERRORED_ONLY":
        return ResumeConfig(unfinished=types.SKIP, errored=types.RESTART)
    return ResumeConfig(errored=types.RESTART if resume == "AUTO+ERRORED" else types.SKIP)


def run_experiments(experiments: Any, *, scheduler: Any = None, verbose: Optional[int] = None, raise_on_failed_trial: bool = True, **kwargs: Any) -> List[Any]:
    """Run each experiment in turn (``ray.tune.run_experiments``); returns all trials."""
    trials: List[Any] = []
    for experiment in convert_to_experiment_list(experiments):
        analysis = run(experiment, scheduler=scheduler, verbose=verbose, raise_on_failed_trial=raise_on_failed_trial, **kwargs)
        trials.extend(analysis.trials)
    return trials
