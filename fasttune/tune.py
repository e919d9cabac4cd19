"""The legacy entry points ``run`` and ``run_experiments``, and trainable wrappers."""
from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Callable, Dict, List, Optional, Union

from fasttune.analysis.experiment_analysis import ExperimentAnalysis
from fasttune.config import CheckpointConfig
from fasttune.error import TuneError
from fasttune.experiment.experiment import Experiment, convert_to_experiment_list, refuse_unsupported
from fasttune.syncer import SyncConfig
from fasttune.trainable.util import with_parameters, with_resources  # noqa: F401  (Ray Tune has them here too)
from fasttune.tune_config import DEPRECATED_VALUE, refuse_chdir_to_trial_dir


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
    verbose: Optional[int] = None,
    progress_reporter: Any = None,
    log_to_file: Any = False,
    trial_name_creator: Optional[Callable[..., str]] = None,
    trial_dirname_creator: Optional[Callable[..., str]] = None,
    sync_config: Any = None,
    max_failures: int = 0,
    fail_fast: Any = False,
    resume: Union[bool, str, None] = None,
    resume_config: Any = None,
    reuse_actors: Optional[bool] = None,
    raise_on_failed_trial: bool = True,
    callbacks: Optional[List[Any]] = None,
    max_concurrent_trials: Optional[int] = None,
    keep_checkpoints_num: Optional[int] = None,
    checkpoint_score_attr: Optional[str] = None,
    checkpoint_freq: int = 0,
    checkpoint_at_end: bool = False,
    chdir_to_trial_dir: Any = DEPRECATED_VALUE,
    local_dir: Optional[str] = None,
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
    ``True`` (there must be one) or ``"AUTO"`` (when there is one, else start anew), either
    with Ray Tune's suffixes for errored trials: ``"+ERRORED"`` (continue them from their
    checkpoints), ``"+RESTART_ERRORED"`` (start them over), ``"+ERRORED_ONLY"`` /
    ``"+RESTART_ERRORED_ONLY"`` (likewise, and leave unfinished trials as they are);
    ``"ERRORED_ONLY"`` alone restarts only the errored trials.  ``resume_config`` (a
    ``tune.ResumeConfig``) says the same in full, and resumes when there is a snapshot.

    ``keep_checkpoints_num``, ``checkpoint_score_attr`` (``"min-"`` before the name ranks
    the lowest first), ``checkpoint_freq`` and ``checkpoint_at_end`` are Ray Tune's older
    names for ``checkpoint_config``'s fields: they still set them, with a
    ``DeprecationWarning``.  ``local_dir`` and ``chdir_to_trial_dir`` are refused, as Ray
    Tune refuses them (``DeprecationWarning`` raised): set ``storage_path`` and the
    ``RAY_CHDIR_TO_TRIAL_DIR`` environment variable instead.

    ``server_port`` serves the experiment over HTTP on 127.0.0.1 while it runs (0: any
    free port); a :class:`fasttune.web_server.TuneClient` lists, adds and stops trials.

    ``storage_path`` may be in storage (a URI such as ``s3://bucket/prefix``, or a path on
    ``storage_filesystem``); ``sync_config`` (a ``tune.SyncConfig``) says how often the
    driver uploads there.  With a local ``storage_path`` there is nothing to sync.
    """
    from fasttune.execution._storage_sync import prepare_staging
    from fasttune.impl.tuner_internal import run_experiment

    if local_dir is not None:
        raise DeprecationWarning(
            f"tune.run(local_dir={local_dir!r}) is no longer supported (Ray Tune deprecated it too): set "
            f"storage_path=... instead, the directory under which the experiment's results go.")
    refuse_chdir_to_trial_dir(chdir_to_trial_dir, "tune.run")
    refuse_unsupported(_unsupported, "tune.run")
    if sync_config is not None and not isinstance(sync_config, SyncConfig):
        raise TypeError(f"tune.run(sync_config=...) needs a tune.SyncConfig, got {type(sync_config).__name__}.")
    checkpoint_config = _with_legacy_checkpoint_args(checkpoint_config, keep_checkpoints_num, checkpoint_score_attr,
                                                     checkpoint_freq, checkpoint_at_end)
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
            log_to_file=log_to_file,
        )
    if experiment.storage is not None:
        # In storage: the staging copy is started afresh, or brought up to date to resume.
        prepare_staging(experiment.storage, resume=resume not in (False, None) or resume_config is not None)
    resume_config = _resume_config(resume, resume_config, experiment.path)
    grid, trials = run_experiment(
        experiment,
        resume_config=resume_config,
        metric=metric,
        mode=mode,
        search_alg=search_alg,
        scheduler=scheduler,
        max_concurrent_trials=max_concurrent_trials,
        # An Experiment's own budget (tune.run(Experiment(...)), run_experiments' specs) counts too.
        time_budget_s=time_budget_s if time_budget_s is not None else experiment.time_budget_s,
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
    return ExperimentAnalysis(grid.experiment_path, trials=trials, default_metric=metric, default_mode=mode,
                              _result_grid=grid)


def _with_legacy_checkpoint_args(checkpoint_config: Any, keep_checkpoints_num: Optional[int],
                                 checkpoint_score_attr: Optional[str], checkpoint_freq: int,
                                 checkpoint_at_end: bool) -> Any:
    """``checkpoint_config`` with tune.run's older checkpoint arguments set in it (a copy:
    the caller's config is left as it is), each with a DeprecationWarning as in Ray Tune."""
    changes: Dict[str, Any] = {}
    if keep_checkpoints_num is not None:
        _deprecated("keep_checkpoints_num", "checkpoint_config=tune.CheckpointConfig(num_to_keep=...)")
        changes["num_to_keep"] = keep_checkpoints_num
    if checkpoint_score_attr is not None:
        _deprecated("checkpoint_score_attr", "tune.CheckpointConfig(checkpoint_score_attribute=...)")
        if checkpoint_score_attr.startswith("min-"):
            _deprecated("checkpoint_score_attr='min-...'", "tune.CheckpointConfig(checkpoint_score_order='min')")
            changes.update(checkpoint_score_attribute=checkpoint_score_attr[len("min-"):],
                           checkpoint_score_order="min")
        else:
            changes.update(checkpoint_score_attribute=checkpoint_score_attr, checkpoint_score_order="max")
    if checkpoint_freq:
        _deprecated("checkpoint_freq", "tune.CheckpointConfig(checkpoint_frequency=...)")
        changes["checkpoint_frequency"] = checkpoint_freq
    if checkpoint_at_end:
        _deprecated("checkpoint_at_end", "tune.CheckpointConfig(checkpoint_at_end=True)")
        changes["checkpoint_at_end"] = checkpoint_at_end
    if not changes:
        return checkpoint_config
    return dataclasses.replace(checkpoint_config or CheckpointConfig(), **changes)


def _deprecated(old: str, new: str) -> None:
    warnings.warn(f"tune.run({old}) is deprecated (in Ray Tune too): use {new} instead.", DeprecationWarning,
                  stacklevel=3)


_ERRORED_SUFFIXES = {
    # suffix: (unfinished trials, errored trials), Ray Tune's meanings
    "": ("resume", "skip"),
    "+ERRORED": ("resume", "resume"),
    "+RESTART_ERRORED": ("resume", "restart"),
    "+ERRORED_ONLY": ("skip", "resume"),
    "+RESTART_ERRORED_ONLY": ("skip", "restart"),
}
_RESUME_MODES = tuple(f"AUTO{suffix}" for suffix in _ERRORED_SUFFIXES) + ("ERRORED_ONLY",)


def _resume_config(resume: Union[bool, str, None], resume_config: Any, path: str) -> Any:
    """The ResumeConfig that ``resume`` / ``resume_config`` ask for; None to start anew."""
    from fasttune.execution._experiment_state import has_snapshot
    from fasttune.tune_config import ResumeConfig

    if resume_config is not None and not isinstance(resume_config, ResumeConfig):
        raise TypeError(f"tune.run(resume_config=...) needs a tune.ResumeConfig, got {type(resume_config).__name__}.")
    if resume is False or resume is None:
        # As Ray Tune: a resume_config alone resumes, when there is something to resume.
        return resume_config if resume_config is not None and has_snapshot(path) else None
    if resume is not True and resume not in _RESUME_MODES:
        raise ValueError(f"tune.run(resume={resume!r}) is not valid; use False, True or one of {list(_RESUME_MODES)}.")
    if not has_snapshot(path):
        if resume is True or resume == "ERRORED_ONLY":
            raise TuneError(
                f"tune.run(resume={resume!r}) found no experiment to resume in {path}; give the name and "
                "storage_path of the experiment, or resume='AUTO' to start anew when there is none.")
        return None
    if resume_config is not None:
        return resume_config
    if resume == "ERRORED_ONLY":
        return ResumeConfig(unfinished="skip", errored="restart")
    unfinished, errored = _ERRORED_SUFFIXES["" if resume is True else resume[len("AUTO"):]]
    return ResumeConfig(unfinished=unfinished, errored=errored)


def run_experiments(
    experiments: Any,
    scheduler: Any = None,
    verbose: Optional[int] = None,
    progress_reporter: Any = None,
    resume: Union[bool, str, None] = None,
    resume_config: Any = None,
    reuse_actors: Optional[bool] = None,
    raise_on_failed_trial: bool = True,
    concurrent: bool = True,
    callbacks: Optional[List[Any]] = None,
) -> List[Any]:
    """Run each experiment (``ray.tune.run_experiments``); returns all their trials.

    The experiments run one after another, each with the whole cluster, whatever
    ``concurrent`` says (Ray Tune runs them side by side by default).

    Example:
        >>> import fasttune as tune
        >>> def train(config):
        ...     tune.report({"score": config["x"]})
        >>> trials = tune.run_experiments({"demo": {"run": train, "config": {"x": 1}}})  # doctest: +SKIP
    """
    trials: List[Any] = []
    for experiment in convert_to_experiment_list(experiments):
        analysis = run(experiment, scheduler=scheduler, verbose=verbose, progress_reporter=progress_reporter,
                       resume=resume, resume_config=resume_config, reuse_actors=reuse_actors,
                       raise_on_failed_trial=raise_on_failed_trial, callbacks=callbacks)
        trials.extend(analysis.trials)
    return trials
