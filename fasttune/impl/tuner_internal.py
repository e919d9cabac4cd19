"""What ``Tuner.fit()`` does: build the experiment, run the loop, collect the results."""
from __future__ import annotations

import dataclasses
import functools
import logging
import os
import sys
import posixpath
import signal
import threading
from typing import Any, Dict, List, Optional

from fasttune import _storage as storage
from fasttune._progress import ProgressDriver
from fasttune._results_store import has_store
from fasttune.callback import CallbackList
from fasttune.config import RunConfig
from fasttune.error import TuneError
from fasttune.execution.ray_trial_executor import RayTrialExecutor
from fasttune.execution._checkpoint_retention import best_checkpoints
from fasttune.execution._storage_sync import StorageSync, prepare_staging
from fasttune.execution.trial_runner import TrialRunner
from fasttune.experiment.experiment import Experiment
from fasttune.progress_reporter import check_progress_reporter
from fasttune.registry import get_trainable_cls
from fasttune.impl._trial_results import TrialResults
from fasttune.impl._tuner_spec import TUNER_FILE, load_tuner_spec, save_tuner_spec
from fasttune.logger._defaults import callbacks_from_env, with_default_loggers
from fasttune.result import Result, metrics_with_config
from fasttune.result_grid import ResultGrid, point_into_storage
from fasttune.schedulers.trial_scheduler import FIFOScheduler, TrialScheduler
from fasttune.search.basic_variant import BasicVariantGenerator
from fasttune.search.search_algorithm import SearchAlgorithm
from fasttune.trainable.trainable import Trainable, is_trainable_class
from fasttune.tune_config import ResumeConfig, TuneConfig

logger = logging.getLogger(__name__)


def ensure_ray() -> None:
    """Use the Ray the user connected to (a cluster via ``ray.init(address=...)``), or
    else the one ``ray.init()`` picks: the cluster named by ``RAY_ADDRESS`` or by the
    last ``ray start`` on this machine, if any, or a new local one.  Joining a cluster
    this process did not start is said once, with its address: it may be someone
    else's, or one left behind."""
    import ray

    if ray.is_initialized():
        return
    joining = _cluster_ray_init_would_join()
    ray.init(include_dashboard=False, ignore_reinit_error=True, log_to_driver=True)
    if joining:
        logger.warning(
            "fasttune joined the running Ray cluster at %s (named by RAY_ADDRESS or by the last "
            "`ray start` on this machine) instead of starting a Ray of its own; call "
            "ray.init(address=\"local\") before fit() for a local one.", ray.get_runtime_context().gcs_address)


def _cluster_ray_init_would_join() -> Optional[str]:
    """The address of the existing cluster ``ray.init()`` would connect to, or None when
    it would start a local Ray (Ray's own rule, asked of Ray)."""
    try:
        from ray._private.services import canonicalize_bootstrap_address
    except ImportError:  # a Ray that moved it: no message, Ray's behaviour is unchanged
        return None
    try:
        return canonicalize_bootstrap_address(None)
    except Exception:  # noqa: BLE001 - ray.init() reports a bad address itself, better
        return None


class TunerInternal:
    """The engine behind :class:`fasttune.Tuner` (``ray.tune.impl.tuner_internal``)."""

    def __init__(
        self,
        restore_path: Optional[str] = None,
        storage_filesystem: Any = None,
        resume_config: Any = None,
        trainable: Any = None,
        param_space: Optional[Dict[str, Any]] = None,
        tune_config: Optional[TuneConfig] = None,
        run_config: Optional[RunConfig] = None,
    ) -> None:
        if trainable is None:
            raise TypeError("Tuner needs a trainable: a function taking the config dict, or a registered name.")
        if tune_config is not None and not isinstance(tune_config, TuneConfig):
            raise TypeError(f"tune_config must be a tune.TuneConfig, got {type(tune_config).__name__}.")
        if run_config is not None and not isinstance(run_config, RunConfig):
            raise TypeError(f"run_config must be a tune.RunConfig, got {type(run_config).__name__}.")
        if param_space is not None and not isinstance(param_space, dict):
            raise TypeError(
                f"param_space must be a dict of parameter names to values or search-space "
                f"domains, got {type(param_space).__name__}."
            )
        self._resume_config: Optional[ResumeConfig] = None
        self._restored_as_code: List[str] = []
        kept = None
        if restore_path is not None:
            if resume_config is not None and not isinstance(resume_config, ResumeConfig):
                raise TypeError(f"resume_config must be a tune.ResumeConfig, got {type(resume_config).__name__}.")
            location = storage.resolve(restore_path, storage_filesystem)
            if location is None:
                restore_path = os.path.abspath(os.path.expanduser(os.fspath(restore_path)))
                saved = load_tuner_spec(restore_path)
                name, parent = os.path.basename(restore_path), os.path.dirname(restore_path)
            else:
                # In storage: its settings are read from the staging copy, brought up to date.
                kept = storage.ExperimentStorage(location, storage.staging_path(location))
                prepare_staging(kept, resume=True)
                saved = load_tuner_spec(kept.staging, shown_as=location.uri)
                name = posixpath.basename(location.path)
                parent = (posixpath.dirname(location.path) if storage_filesystem is not None
                          else storage.parent_uri(location.uri))
            self._restored_as_code = saved.unpickled
            if param_space is None:
                param_space = saved.param_space
            else:  # as Ray Tune: the same space, re-given for what does not pickle
                self._restored_as_code = [n for n in self._restored_as_code if not n.startswith("param_space")]
            tune_config = TuneConfig(**saved.tune_config)
            run_config = RunConfig(**dict(saved.run_config, name=name, storage_path=parent,
                                          storage_filesystem=storage_filesystem))
            self._resume_config = resume_config or ResumeConfig()
        self._trainable = trainable
        self._param_space = param_space or {}
        self.tune_config = tune_config or TuneConfig()
        self.run_config = run_config or RunConfig()
        self._results: Optional[ResultGrid] = None
        self._validate_space()
        self._experiment = self._make_experiment()
        if kept is not None and self._experiment.storage is not None and \
                self._experiment.storage.staging != kept.staging:
            prepare_staging(self._experiment.storage, resume=True)  # named differently: its own copy

    def _validate_space(self) -> None:
        from fasttune.search._validate import validate_param_space

        validate_param_space(self.param_space)

    def _make_experiment(self) -> Experiment:
        tc, rc = self.tune_config, self.run_config
        return Experiment(
            rc.name,
            self.trainable,
            stop=rc.stop,
            config=self.param_space,
            num_samples=tc.num_samples,
            storage_path=rc.storage_path,
            storage_filesystem=rc.storage_filesystem,
            sync_config=rc.sync_config,
            checkpoint_config=self._checkpoint_config(),
            trial_name_creator=tc.trial_name_creator,
            trial_dirname_creator=tc.trial_dirname_creator,
            max_failures=rc.failure_config.max_failures,
            log_to_file=rc.log_to_file,
        )

    def _checkpoint_config(self) -> Any:
        """RunConfig's checkpoint_config, where a class trainable left ``checkpoint_at_end``
        unset (None) checkpointing when it ends: a Tuner's default in Ray Tune too
        (``tune.run`` leaves it unset, which saves nothing at the end).  Not for a class
        without its own ``save_checkpoint``: it has nothing to save (Ray Tune's default
        ``save_checkpoint`` raises, failing the trial at its end)."""
        config = self.run_config.checkpoint_config
        if config is None or config.checkpoint_at_end is not None:
            return config
        trainable = get_trainable_cls(self.trainable) if isinstance(self.trainable, str) else self.trainable
        if not is_trainable_class(trainable) or trainable.save_checkpoint is Trainable.save_checkpoint:
            return config
        return dataclasses.replace(config, checkpoint_at_end=True)

    @property
    def experiment_path(self) -> str:
        return self._experiment.location

    # Read-only: the experiment is built from them when the TunerInternal is made.
    @property
    def trainable(self) -> Any:
        return self._trainable

    @property
    def param_space(self) -> Dict[str, Any]:
        return self._param_space

    def get_run_config(self) -> RunConfig:
        return self.run_config

    def get_results(self) -> ResultGrid:
        """The results of :meth:`fit`; for a restored experiment not run again, its
        results so far, read from its directory.

        Raises:
            RuntimeError: a new experiment that has not been run.
        """
        if self._results is not None:
            return self._results
        if self._resume_config is None:
            raise RuntimeError("The experiment has not been run yet, so it has no results; call Tuner.fit() first.")
        storage_filesystem = self.run_config.storage_filesystem
        kept = self._experiment.storage
        where = kept.location.path if storage_filesystem is not None and kept is not None else self._experiment.location
        return ResultGrid.from_path(where, default_metric=self.tune_config.metric, default_mode=self.tune_config.mode,
                                    storage_filesystem=storage_filesystem)

    def fit(self) -> ResultGrid:
        if self._resume_config is None:
            if self._experiment.storage is not None:
                prepare_staging(self._experiment.storage, resume=False)
            save_tuner_spec(self._experiment.path, self._experiment.trainable_name, self.param_space,
                            self.tune_config, self.run_config)
        self._results = run_experiment(
            self._experiment,
            resume_config=self._resume_config,
            restored_as_code=[f"{name} from {TUNER_FILE}" for name in self._restored_as_code],
            metric=self.tune_config.metric,
            mode=self.tune_config.mode,
            search_alg=self.tune_config.search_alg,
            scheduler=self.tune_config.scheduler,
            max_concurrent_trials=self.tune_config.max_concurrent_trials,
            time_budget_s=self.tune_config.time_budget_s,
            reuse_actors=self.tune_config.reuse_actors,
            callbacks=self.run_config.callbacks,
            verbose=self.run_config.verbose,
            progress_reporter=self.run_config.progress_reporter,
            fail_fast=self.run_config.failure_config.fail_fast,
            results_store=self.run_config.results_store,
        )
        return self._results


def _searcher_for(experiment: Experiment, search_alg: Any, max_concurrent: Optional[int]) -> SearchAlgorithm:
    """The SearchAlgorithm the runner drives for ``TuneConfig(search_alg=...)``.

    A ``Searcher`` is wrapped in a ``SearchGenerator``; with ``max_concurrent_trials``
    it is first wrapped in a ``ConcurrencyLimiter`` (as Ray Tune does), so the searcher
    is never asked while that many of its trials are live.  The runner applies the same
    bound to running trials for every search algorithm; the two agree.
    """
    if search_alg is None:
        return BasicVariantGenerator(max_concurrent=max_concurrent or 0)
    if isinstance(search_alg, SearchAlgorithm):
        return search_alg
    from fasttune.search.concurrency_limiter import ConcurrencyLimiter
    from fasttune.search.search_generator import SearchGenerator
    from fasttune.search.searcher import Searcher

    if isinstance(search_alg, Searcher):
        if max_concurrent:
            if isinstance(search_alg, ConcurrencyLimiter):
                if search_alg.max_concurrent != max_concurrent:
                    raise ValueError(
                        f"TuneConfig(max_concurrent_trials={max_concurrent}) and the search_alg, a "
                        f"ConcurrencyLimiter(max_concurrent={search_alg.max_concurrent}), disagree; "
                        "set the limit in one place (e.g. max_concurrent_trials=None)."
                    )
            else:
                search_alg = ConcurrencyLimiter(search_alg, max_concurrent=max_concurrent)
        return SearchGenerator(search_alg)
    raise TypeError(
        f"search_alg must be a fasttune SearchAlgorithm or Searcher, got {type(search_alg).__name__}."
    )


def _refuse_file_loggers(callbacks: Any, instead: str) -> None:
    """A per-trial file logger in a sweep that writes no per-trial files would write
    nothing (or, for TensorBoard, files beside none): say how to get the files instead."""
    from fasttune.logger import CSVLoggerCallback, JsonLoggerCallback, TBXLoggerCallback

    for callback in callbacks or []:
        if isinstance(callback, (CSVLoggerCallback, JsonLoggerCallback, TBXLoggerCallback)):
            raise ValueError(f"{type(callback).__name__} writes trial files, and {instead}, or leave the "
                             "logger out.")


def _simulation_of(trainable: Any) -> Any:
    """The ``fasttune.simulation.Simulation`` the trainable is, or None (the module is
    looked at only when a script loaded it)."""
    module = sys.modules.get("fasttune.simulation._simulation")
    return trainable if module is not None and isinstance(trainable, module.Simulation) else None


def run_experiment(
    experiment: Experiment,
    *,
    metric: Optional[str] = None,
    mode: Optional[str] = None,
    search_alg: Any = None,
    scheduler: Optional[TrialScheduler] = None,
    max_concurrent_trials: Optional[int] = None,
    time_budget_s: Optional[float] = None,
    reuse_actors: Optional[bool] = None,
    callbacks: Optional[List[Any]] = None,
    verbose: Optional[int] = None,
    progress_reporter: Any = None,
    fail_fast: Any = False,
    return_trials: bool = False,
    resume_config: Optional[ResumeConfig] = None,
    restored_as_code: Optional[List[str]] = None,
    server_port: Optional[int] = None,
    results_store: str = "per_trial",
) -> Any:
    """Run one experiment to completion on Ray and return its ResultGrid (and, with
    ``return_trials``, its trials too).  With ``resume_config`` the experiment continues
    from its latest snapshot in ``experiment.path``.

    The first Ctrl-C ends the loop: running trials stay unfinished in the snapshot (so
    ``Tuner.restore`` continues them) and the ResultGrid so far is returned; a second
    Ctrl-C raises KeyboardInterrupt at once.  ``server_port`` serves the experiment
    over HTTP while it runs (see :mod:`fasttune.web_server`).  ``results_store``: see
    ``RunConfig.results_store``."""
    if mode is not None and mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', got {mode!r}.")
    if scheduler is not None and not isinstance(scheduler, TrialScheduler):
        raise TypeError(f"scheduler must be a fasttune TrialScheduler, got {type(scheduler).__name__}.")
    check_progress_reporter(progress_reporter, "progress_reporter")
    searcher = _searcher_for(experiment, search_alg, max_concurrent_trials)
    scheduler = scheduler or FIFOScheduler()
    if not searcher.set_search_properties(metric, mode, experiment.spec["config"]):
        raise TuneError(
            f"The search algorithm {type(searcher).__name__} already has a metric/mode that "
            f"differs from TuneConfig(metric={metric!r}, mode={mode!r}); set them in one place."
        )
    if not scheduler.set_search_properties(metric, mode):
        raise TuneError(
            f"The scheduler {type(scheduler).__name__} already has a metric/mode that differs "
            f"from TuneConfig(metric={metric!r}, mode={mode!r}); set them in one place."
        )
    searcher.add_configurations([experiment])

    sync = None
    if experiment.storage is not None:
        sync = StorageSync(experiment.storage, experiment.sync_config)
        os.makedirs(experiment.path, exist_ok=True)
        sync.check_writable()  # what is staged (the Tuner's settings) goes up before any trial starts
    simulation = _simulation_of(experiment.trainable)
    if simulation is not None:
        # Simulated time, in this process: no Ray.  The executor's state (its clock, the
        # checkpoints' fidelities, what was running) goes into the snapshots first of all.
        executor = simulation.executor(time_budget_s, scheduler)
        callbacks = [simulation.state_callback(executor)] + list(callbacks or [])
    else:
        ensure_ray()
        executor = RayTrialExecutor(reuse_actors=True if reuse_actors is None else bool(reuse_actors),
                                    storage=experiment.storage)
    executor.register_trainable(experiment.trainable_name, experiment.trainable)
    if resume_config is not None and has_store(experiment.path):
        results_store = "experiment"  # as it was run (tune.run(resume=...) does not say)
    # Without per-trial files (a simulation unless asked, or one store for all trials) no
    # default loggers are added, and a per-trial file logger is refused with why.
    no_trial_files = None
    if simulation is not None and not simulation.write_results:
        no_trial_files = "this Simulation writes none: pass Simulation(..., write_results=True) to have each trial's files"
    elif results_store == "experiment":
        no_trial_files = ("RunConfig(results_store='experiment') keeps all trials' results in one store instead: "
                          "leave results_store at 'per_trial' for per-trial files")
    if no_trial_files is None:
        callbacks = with_default_loggers(callbacks)
    else:
        callbacks = list(callbacks or []) + callbacks_from_env()
        _refuse_file_loggers(callbacks, no_trial_files)
    runner = TrialRunner(
        search_alg=searcher,
        scheduler=scheduler,
        trial_executor=executor,
        experiment_path=experiment.path,
        stopper=experiment.stopper,
        callbacks=callbacks,
        # The TrialTable tracks the scheduler's metric when TuneConfig names none, so
        # schedulers can read it as a numpy column.
        metric=metric or scheduler.metric,
        mode=mode or scheduler.mode,
        fail_fast=fail_fast,
        time_budget_s=time_budget_s,
        max_concurrent_trials=max_concurrent_trials,
        server_port=server_port,
        storage_sync=sync,
        results_store=results_store,
    )
    os.makedirs(experiment.path, exist_ok=True)
    runner.setup_experiments([experiment], getattr(searcher, "total_samples", 0))
    if resume_config is not None:
        unpickled = list(restored_as_code or []) + runner.resume(resume_config=resume_config)
        if unpickled:
            # Unpickling runs code: say exactly what came back that way.
            logger.warning("Restoring %s loaded with (cloud)pickle: %s. Restore only directories you trust.",
                           experiment.location, "; ".join(unpickled))
    # A simulated sweep whose trials only go on or stop runs on the simulation's direct loop
    # (a restored one goes on on the runner's, from the state it saved).
    direct = None if simulation is None or resume_config is not None else simulation.direct_loop(
        runner, executor, metric or scheduler.metric, scheduler=scheduler, stopper=experiment.stopper,
        stop=experiment.stopping_criterion, callbacks=CallbackList(callbacks), fail_fast=fail_fast,
        server_port=server_port, results_store=results_store)
    progress = ProgressDriver(runner, reporter=progress_reporter, verbose=verbose, metric=metric, mode=mode,
                              total_samples=getattr(searcher, "total_samples", 0))
    interrupted = _InterruptFlag()
    try:
        with interrupted:
            if direct is not None:
                direct.run(progress, interrupted)
            while not runner.is_finished() and not interrupted.presses:
                runner.step()
                progress.step()
    except BaseException as error:
        progress.close()  # a live display ends before the error is shown
        # A second Ctrl-C means now: the callbacks are not waited for (as in Ray Tune).
        _finish_quietly(runner, sync, end_callbacks=isinstance(error, Exception))
        raise
    try:
        runner.cleanup()
    except BaseException:
        # Ending the trials failed (the executor's cleanup, or a result write seen only as
        # the files closed): the experiment still ends as it would (final snapshot,
        # callbacks, the upload) before fit() raises it.
        progress.close()
        _save_final_snapshot_quietly(runner)
        _end_quietly(runner, sync)
        raise
    runner.checkpoint(force=True)
    if interrupted.presses:
        logger.warning(
            "The experiment was interrupted (Ctrl-C); its state is saved. Continue it with "
            "Tuner.restore(%r, trainable=...).fit().", experiment.location)
    runner.end_experiment_callbacks()
    if sync is not None:
        sync.finish()  # after the callbacks: what loggers write at the end goes up too
    progress.finish()
    storage_location = experiment.storage.location if experiment.storage is not None else None
    # Each Result is made from its trial when first read: a finished trial stays compact, and
    # the grid costs no Python objects per trial until a script reads it (see _trial_results).
    results = TrialResults(list(runner.get_trials()),
                           functools.partial(_result_of, path=experiment.path, storage=storage_location))
    grid = ResultGrid._of_sequence(results, experiment.location, default_metric=metric, default_mode=mode)
    return (grid, runner.get_trials()) if return_trials else grid


def _finish_quietly(runner: TrialRunner, sync: Optional[StorageSync], end_callbacks: bool = True) -> None:
    """Wind down after the loop raised: save what can be, end the callbacks (as Ray Tune
    does: the loggers' files are whole and their threads gone when fit() raises; not
    with ``end_callbacks=False``), then upload, without hiding that error."""
    try:
        runner.cleanup()
    except Exception:  # noqa: BLE001 - the loop's own error is the one raised
        logger.exception("Ending the trials after the error below failed too.")
    _save_final_snapshot_quietly(runner)
    if end_callbacks:
        _end_quietly(runner, sync)
    else:
        _upload_quietly(sync)


def _save_final_snapshot_quietly(runner: TrialRunner) -> None:
    """The final snapshot, also when ending the trials failed (else a restore reruns what
    finished since the last periodic one); its own failure is logged, as the error being
    raised is another.  After a failed result write cleanup saved it already (or logged why
    it could not): the same state is not saved, nor its failure told, a second time."""
    if runner.final_snapshot_tried:
        return
    try:
        runner.checkpoint(force=True)
    except Exception:  # noqa: BLE001 - the error being raised is the one the caller raises
        logger.exception("Saving the experiment's state after the error below failed too.")


def _end_quietly(runner: TrialRunner, sync: Optional[StorageSync]) -> None:
    """End the experiment after an error (the loop's, or cleanup's once its final snapshot
    is saved): the end-of-experiment callbacks, then the upload, without hiding that error."""
    runner.end_experiment_callbacks(after_error=True)  # each one's failure is logged
    _upload_quietly(sync)


def _upload_quietly(sync: Optional[StorageSync]) -> None:
    """The last upload to storage, after an error that is raised; its own failure is logged."""
    if sync is None:
        return
    try:
        sync.finish()
    except Exception:  # noqa: BLE001 - the error being raised is the one the caller raises
        logger.exception("Uploading the experiment to storage after the error below failed too.")


def _result_of(trial: Any, path: str, storage: Optional[str]) -> Result:
    """The Result of ``trial`` as the sweep left it (``storage``: the location of the
    experiment's storage, whose checkpoints the Result then points into)."""
    source = trial.__dict__.get("_source")
    parts = source.result_parts(trial) if source is not None else None
    if parts is not None:  # a compact trial with no checkpoint and no error: read from its record
        config, last_result, trial_path = parts
        checkpoint, best, error, status = None, [], None, trial.status
    else:
        t = trial._whole()  # a decoded copy: a finished trial stays compact
        config, last_result, trial_path = t.config, t.last_result, t.path
        checkpoint, best, status = t.checkpoint, _best_checkpoints(t), t.status
        error = t.error if status == "ERROR" else None
    result = Result(
        metrics=metrics_with_config(last_result, config),
        checkpoint=checkpoint,
        best_checkpoints=best,
        error=error,
        path=trial_path,
        _config=config,
        _status=status,
    )
    # As ResultGrid.from_path(uri) reads them: files from the local copy, checkpoints in storage.
    return point_into_storage(result, path, storage) if storage is not None else result


def _best_checkpoints(trial: Any) -> list:
    """The (checkpoint, metrics) pairs of Ray Tune's ``Result.best_checkpoints``."""
    config = trial.checkpoint_config
    return best_checkpoints(
        trial.checkpoint_results,
        getattr(config, "num_to_keep", None),
        getattr(config, "checkpoint_score_attribute", None),
        getattr(config, "checkpoint_score_order", "max") or "max",
    )


class _InterruptFlag:
    """First Ctrl-C asks the loop to stop trials cleanly; the second exits at once."""

    def __init__(self) -> None:
        self.presses = 0
        self._previous: Any = None

    def __enter__(self) -> "_InterruptFlag":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.presses += 1
        if self.presses > 1:
            raise KeyboardInterrupt

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
