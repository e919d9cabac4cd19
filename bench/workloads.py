"""Whole-sweep benchmark workloads, each written once against a ``tune`` module.

Every workload is a function ``run(tune, size, storage_path) -> dict`` where
``tune`` is either ``ray.tune`` or ``fasttune`` (same public API).  It builds a
``Tuner``, times ``Tuner.fit()`` wall-clock (construction and the counting of
results afterwards are *not* timed), then counts what the sweep produced from
the ResultGrid and from the per-trial result files on disk.

The returned dict always has:

    fit_s            wall-clock seconds of tuner.fit()
    fit_driver_cpu_s CPU seconds the driver process (all threads) spent in tuner.fit()
    construct_s      wall-clock seconds of Tuner(...) construction (untimed
                     in the metric, recorded for information)
    trials           number of trials in the ResultGrid
    trials_ok        trials that finished without error
    errors           trials that errored
    results          results counted (result files; see count_results)
    results_source   where ``results`` came from
    expected_trials / expected_results   what a complete sweep produces
    complete         True when everything expected was produced

Each workload is described by a ``Workload`` record (metric, unit, direction,
default and quick sizes per engine) in ``WORKLOADS``; ``bench.sweeps`` turns a
run dict into the metric value with ``Workload.value``.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional

# Names a ``tune`` module must provide for these workloads to run.
REQUIRED_API = (
    "Tuner",
    "TuneConfig",
    "RunConfig",
    "report",
    "grid_search",
    "uniform",
    "with_resources",
)


# --------------------------------------------------------------------------
# Counting what a sweep produced
# --------------------------------------------------------------------------

def _count_lines(path: str) -> int:
    n = 0
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                n += 1
    return n


def count_results(grid) -> Dict[str, Any]:
    """Count trials and results in a ResultGrid.

    Results are counted per trial from, in order of preference:
      1. the trial's ``result.json`` (one JSON line per reported result,
         written by the default JSON logger) under ``Result.path``;
      2. ``len(Result.metrics_dataframe)``;
      3. ``Result.metrics["training_iteration"]`` (the engine's own counter).
    The engine counter is also summed separately as a cross-check.
    """
    trials = 0
    errors = 0
    results = 0
    reported_iters = 0
    sources = set()
    for res in grid:
        trials += 1
        if getattr(res, "error", None) is not None:
            errors += 1
        metrics = getattr(res, "metrics", None) or {}
        it = metrics.get("training_iteration")
        if isinstance(it, int):
            reported_iters += it
        path = getattr(res, "path", None)
        result_json = os.path.join(path, "result.json") if path else None
        if result_json and os.path.isfile(result_json):
            results += _count_lines(result_json)
            sources.add("result.json")
            continue
        df = getattr(res, "metrics_dataframe", None)
        if df is not None:
            results += len(df)
            sources.add("metrics_dataframe")
            continue
        if isinstance(it, int):
            results += it
            sources.add("training_iteration")
        else:
            sources.add("none")
    return {
        "trials": trials,
        "trials_ok": trials - errors,
        "errors": errors,
        "results": results,
        "results_source": "+".join(sorted(sources)) or "none",
        "reported_iterations": reported_iters,
    }


def fit_and_count(tune, trainable, *, name, storage_path, param_space, tune_config, **run_config):
    """Build a Tuner (untimed), time ``fit()`` and count what it produced (untimed)."""
    run_config = tune.RunConfig(name=name, storage_path=storage_path, verbose=0, **run_config)
    t0 = time.perf_counter()
    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune_config,
        run_config=run_config,
    )
    t1 = time.perf_counter()
    cpu = time.process_time()
    grid = tuner.fit()
    t2 = time.perf_counter()
    # The driver's CPU seconds (all its threads): what driver-side work such as the
    # loggers costs, much less sensitive than wall time to a loaded machine.
    out = {"construct_s": t1 - t0, "fit_s": t2 - t1, "fit_driver_cpu_s": time.process_time() - cpu}
    out.update(count_results(grid))
    return out


def _finish(out, expected_trials, expected_results):
    out["expected_trials"] = expected_trials
    out["expected_results"] = expected_results
    out["complete"] = (
        out["errors"] == 0
        and out["trials"] == expected_trials
        and out["results"] == expected_results
    )
    return out


# --------------------------------------------------------------------------
# Workloads
# --------------------------------------------------------------------------

def result_throughput(tune, size: int, storage_path: str) -> Dict[str, Any]:
    """2 concurrent trials (grid over x in {1, 2}, 1 CPU each), each reporting
    ``size`` small results ``{"score": i * x, "i": i}`` in a tight loop.
    Default loggers stay on."""

    def trainable(config):
        report = tune.report
        x = config["x"]
        for i in range(config["n"]):
            report({"score": i * x, "i": i})

    out = fit_and_count(
        tune,
        tune.with_resources(trainable, {"cpu": 1}),
        name="result_throughput",
        storage_path=storage_path,
        param_space={"x": tune.grid_search([1, 2]), "n": size},
        tune_config=tune.TuneConfig(num_samples=1),
    )
    return _finish(out, expected_trials=2, expected_results=2 * size)


def _without_default_loggers(run: Callable[[Any, int, str], Dict[str, Any]]) -> Callable[[Any, int, str], Dict[str, Any]]:
    """``run`` with ``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1``: no default loggers
    (fasttune still writes ``result.json``, which its restores read; Ray Tune then
    writes no result files, and its results are counted from its own counter), so
    the default loggers' cost is the ratio of the two workloads in one invocation."""

    def run_without_default_loggers(tune, size: int, storage_path: str) -> Dict[str, Any]:
        os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"  # each run is its own process
        out = run(tune, size, storage_path)
        if out["results_source"] != "result.json":
            out["results"] = out["reported_iterations"]
            out["complete"] = (out["errors"] == 0 and out["trials"] == out["expected_trials"]
                               and out["results"] == out["expected_results"])
        return out

    run_without_default_loggers.__doc__ = f"{run.__name__} without the default loggers."
    return run_without_default_loggers


def _bookkeeping(tune, size: int, storage_path: str, name: str, **tune_config: Any) -> Dict[str, Any]:
    def trainable(config):
        tune.report({"score": config["x"]})

    out = fit_and_count(
        tune,
        tune.with_resources(trainable, {"cpu": 1}),
        name=name,
        storage_path=storage_path,
        param_space={"x": tune.uniform(0.0, 1.0)},
        tune_config=tune.TuneConfig(num_samples=size, **tune_config),
    )
    return _finish(out, expected_trials=size, expected_results=size)


def trial_bookkeeping(tune, size: int, storage_path: str) -> Dict[str, Any]:
    """``size`` trials (num_samples=size, x ~ uniform(0, 1), 1 CPU each), each
    reporting exactly one result."""
    return _bookkeeping(tune, size, storage_path, "trial_bookkeeping")


def trial_bookkeeping_reuse(tune, size: int, storage_path: str) -> Dict[str, Any]:
    """As ``trial_bookkeeping`` with ``TuneConfig(reuse_actors=True)``: Ray Tune's best
    case (its default starts a process per trial); fasttune always reuses workers."""
    return _bookkeeping(tune, size, storage_path, "trial_bookkeeping_reuse", reuse_actors=True)


def time_to_first_result(tune, size: int, storage_path: str) -> Dict[str, Any]:
    """1 trial (1 CPU) reporting 1 result; latency of the whole fit() call.
    ``size`` is fixed at 1 (kept for a uniform signature)."""

    def trainable(config):
        tune.report({"score": config["x"]})

    out = fit_and_count(
        tune,
        tune.with_resources(trainable, {"cpu": 1}),
        name="time_to_first_result",
        storage_path=storage_path,
        param_space={"x": 1.0},
        tune_config=tune.TuneConfig(num_samples=1),
    )
    return _finish(out, expected_trials=1, expected_results=1)


def _checkpoint_config(tune, **kwargs):
    cls = getattr(tune, "CheckpointConfig", None)
    if cls is None:  # older Ray keeps it in ray.train
        from ray.train import CheckpointConfig as cls
    return cls(**kwargs)


def _schedulers(tune):
    import importlib

    return importlib.import_module(tune.__name__ + ".schedulers")


def class_checkpointing(tune, size: int, storage_path: str) -> Dict[str, Any]:
    """16 class-trainable trials (1 CPU each) of ``size`` iterations, a checkpoint every
    10 iterations (a small file), CheckpointConfig(num_to_keep=2)."""

    class Walker(tune.Trainable):
        def setup(self, config):
            self.value = 0.0

        def step(self):
            self.value += self.config["x"]
            return {"score": self.value, "done": self.iteration + 1 >= self.config["n"]}

        def save_checkpoint(self, checkpoint_dir):
            with open(os.path.join(checkpoint_dir, "value"), "w") as f:
                f.write(repr(self.value))

        def load_checkpoint(self, checkpoint_dir):
            with open(os.path.join(checkpoint_dir, "value")) as f:
                self.value = float(f.read())

    out = fit_and_count(
        tune,
        tune.with_resources(Walker, {"cpu": 1}),
        name="class_checkpointing",
        storage_path=storage_path,
        param_space={"x": tune.grid_search([0.01 * i for i in range(16)]), "n": size},
        tune_config=tune.TuneConfig(num_samples=1),
        checkpoint_config=_checkpoint_config(tune, checkpoint_frequency=10, num_to_keep=2),
    )
    kept = 0
    for entry in os.scandir(os.path.join(storage_path, "class_checkpointing")):
        if entry.is_dir():
            kept += sum(1 for d in os.listdir(entry.path) if d.startswith("checkpoint_"))
    out["checkpoints_on_disk"] = kept
    return _finish(out, expected_trials=16, expected_results=16 * size)


def pause_resume_1mb(tune, size: int, storage_path: str) -> Dict[str, Any]:
    """1 class trial with 1 MB of state, paused by its scheduler at every 2nd iteration
    and resumed at once, ``size`` times; the round trip is the wall time between the
    step before a pause and the step after the resume (median over the cycles)."""
    import numpy as np

    schedulers = _schedulers(tune)

    class PauseEveryOther(schedulers.FIFOScheduler):
        def on_trial_result(self, tune_controller, trial, result):
            return self.PAUSE if result["training_iteration"] % 2 == 0 else self.CONTINUE

    if hasattr(schedulers, "DecisionPoints"):  # fasttune: where the scheduler decides
        PauseEveryOther.decision_points = lambda self, trial: schedulers.DecisionPoints.every(2)

    class Stateful(tune.Trainable):
        def setup(self, config):
            self.state = np.random.default_rng(0).bytes(1 << 20)

        def step(self):
            return {"t": time.time(), "pid": os.getpid(), "done": self.iteration + 1 >= self.config["n"]}

        def save_checkpoint(self, checkpoint_dir):
            with open(os.path.join(checkpoint_dir, "state.bin"), "wb") as f:
                f.write(self.state)

        def load_checkpoint(self, checkpoint_dir):
            with open(os.path.join(checkpoint_dir, "state.bin"), "rb") as f:
                self.state = f.read()
            assert len(self.state) == 1 << 20

    iterations = 2 * size + 1
    out = fit_and_count(
        tune,
        tune.with_resources(Stateful, {"cpu": 1}),
        name="pause_resume_1mb",
        storage_path=storage_path,
        param_space={"n": iterations},
        tune_config=tune.TuneConfig(num_samples=1, scheduler=PauseEveryOther(), reuse_actors=True),
    )
    rows = []
    for entry in os.scandir(os.path.join(storage_path, "pause_resume_1mb")):
        result_json = os.path.join(entry.path, "result.json")
        if entry.is_dir() and os.path.isfile(result_json):
            with open(result_json) as f:
                rows = [json.loads(line) for line in f if line.strip()]
    by_iteration = {r["training_iteration"]: r for r in rows}
    gaps = [by_iteration[i + 1]["t"] - by_iteration[i]["t"]
            for i in range(2, iterations, 2) if i in by_iteration and i + 1 in by_iteration]
    gaps.sort()
    out["round_trip_s"] = gaps[len(gaps) // 2] if gaps else float("nan")
    out["processes"] = len({r["pid"] for r in rows})
    return _finish(out, expected_trials=1, expected_results=iterations)


class _DriverUsage:
    """The driver process's CPU seconds and peak RSS over a block (the sweep's own
    bookkeeping, excluding the Ray workers, which are other processes)."""

    def __enter__(self):
        self._cpu = sum(os.times()[:2])
        self._wall = time.perf_counter()
        return self

    def __exit__(self, *exc):
        import resource

        cpu = sum(os.times()[:2]) - self._cpu
        wall = time.perf_counter() - self._wall
        self.cpu_share = cpu / wall if wall > 0 else float("nan")
        self.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        return False


def pbt_trainable(tune):
    import tempfile

    def trainable(config):
        score, start = 0.0, 0
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as d:
                with open(os.path.join(d, "state.json")) as f:
                    score, start = json.load(f)
        for step in range(start + 1, config["n"] + 1):
            score += config["lr"] * (1.0 - score)
            if step % 4 == 0:
                with tempfile.TemporaryDirectory(dir=config["scratch"]) as d:
                    with open(os.path.join(d, "state.json"), "w") as f:
                        json.dump([score, step], f)
                    tune.report({"score": score}, checkpoint=tune.Checkpoint.from_directory(d))
            else:
                tune.report({"score": score})

    return trainable


def _pbt(tune, population: int, iterations: int, storage_path: str, name: str, cpu: float) -> Dict[str, Any]:
    schedulers = _schedulers(tune)
    pbt = schedulers.PopulationBasedTraining(
        time_attr="training_iteration", perturbation_interval=4,
        hyperparam_mutations={"lr": tune.uniform(0.001, 0.1)}, metric="score", mode="max")
    # Checkpoints are written under the storage root (tmpfs with --storage-root /dev/shm),
    # not this VM's slow /tmp disk, for both engines alike.
    scratch = os.path.join(storage_path, "scratch")
    os.makedirs(scratch, exist_ok=True)
    with _DriverUsage() as usage:
        out = fit_and_count(
            tune,
            tune.with_resources(pbt_trainable(tune), {"cpu": cpu}),
            name=name,
            storage_path=storage_path,
            param_space={"lr": tune.uniform(0.001, 0.1), "n": iterations, "scratch": scratch},
            tune_config=tune.TuneConfig(num_samples=population, scheduler=pbt, reuse_actors=True),
            # The engine then knows where each trial ends: no trial is chosen as a donor
            # at its very last iteration (its clones would end at once).
            stop={"training_iteration": iterations},
        )
    out["driver_cpu_share"] = usage.cpu_share
    out["driver_peak_rss_mb"] = usage.peak_rss_mb
    # Exploits may repeat iterations (a clone continues from its donor's checkpoint), so
    # a complete sweep is every trial reaching ``iterations``, not a count of lines.
    out["complete_trials"] = out["reported_iterations"] == population * iterations
    return _finish(out, expected_trials=population, expected_results=out["results"])


def pbt_population_64(tune, size: int, storage_path: str) -> Dict[str, Any]:
    """PBT over a population of 64 function trials at 1 CPU each (two run at a time on two
    CPUs; the others wait PAUSED or PENDING and take turns at perturbation points),
    ``size`` iterations, a perturbation and a checkpoint every 4 iterations."""
    return _pbt(tune, 64, size, storage_path, "pbt_population_64", cpu=1.0)


def pbt_population_5000(tune, size: int, storage_path: str) -> Dict[str, Any]:
    """PBT over a population of ``size`` trials (1 CPU each, so two run at a time and the
    rest wait PAUSED or PENDING), 40 iterations, perturbation and checkpoint every 4."""
    return _pbt(tune, size, 40, storage_path, "pbt_population_5000", cpu=1.0)


def pbt_population_series(population: int) -> Callable[[Any, int, str], Dict[str, Any]]:
    """The workload ``pbt_scaling_<population>``: PBT as in ``pbt_population_64`` over a
    population of ``population`` trials (1 CPU each, two at a time), ``size`` iterations
    each, a perturbation and a checkpoint every 4 iterations."""

    def run(tune, size: int, storage_path: str) -> Dict[str, Any]:
        return _pbt(tune, population, size, storage_path, f"pbt_scaling_{population}", cpu=1.0)

    run.__name__ = f"pbt_scaling_{population}"
    return run


def asha_trials(tune, size: int, storage_path: str) -> Dict[str, Any]:
    """ASHA (max_t=100, grace_period=1, reduction_factor=4) over ``size`` trials of up to
    100 iterations each (1 CPU each), reuse_actors=True."""
    schedulers = _schedulers(tune)

    def trainable(config):
        for step in range(1, 101):
            tune.report({"score": config["x"] * (1.0 - 1.0 / (step + 1))})

    with _DriverUsage() as usage:
        out = fit_and_count(
            tune,
            tune.with_resources(trainable, {"cpu": 1}),
            name="asha_trials",
            storage_path=storage_path,
            param_space={"x": tune.uniform(0.0, 1.0)},
            tune_config=tune.TuneConfig(
                num_samples=size, metric="score", mode="max", reuse_actors=True,
                scheduler=schedulers.ASHAScheduler(max_t=100, grace_period=1, reduction_factor=4)),
        )
    out["driver_cpu_share"] = usage.cpu_share
    out["driver_peak_rss_mb"] = usage.peak_rss_mb
    return _finish(out, expected_trials=size, expected_results=out["results"])


def optuna_search(tune, size: int, storage_path: str) -> Dict[str, Any]:
    """``size`` trials of a trivial 2-D quadratic through the engine's OptunaSearch (TPE,
    seed 0), 1 CPU each, reuse_actors=True; in the same process, before the sweep, Optuna's
    own ``study.optimize`` runs the same objective ``size`` times as the baseline."""
    import importlib

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial):
        x, y = trial.suggest_float("x", -5.0, 5.0), trial.suggest_float("y", -5.0, 5.0)
        return (x - 1.0) ** 2 + (y + 2.0) ** 2

    t0 = time.perf_counter()
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    study.optimize(objective, n_trials=size)
    optuna_s = time.perf_counter() - t0

    def trainable(config):
        tune.report({"loss": (config["x"] - 1.0) ** 2 + (config["y"] + 2.0) ** 2})

    search = importlib.import_module(tune.__name__ + ".search.optuna")
    out = fit_and_count(
        tune,
        tune.with_resources(trainable, {"cpu": 1}),
        name="optuna_search",
        storage_path=storage_path,
        param_space={"x": tune.uniform(-5.0, 5.0), "y": tune.uniform(-5.0, 5.0)},
        tune_config=tune.TuneConfig(
            num_samples=size, metric="loss", mode="min", reuse_actors=True,
            search_alg=search.OptunaSearch(sampler=optuna.samplers.TPESampler(seed=0))),
    )
    out["optuna_s"] = optuna_s
    out["times_optuna"] = out["fit_s"] / optuna_s if optuna_s > 0 else float("nan")
    return _finish(out, expected_trials=size, expected_results=size)


# --------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Workload:
    name: str
    run: Callable[[Any, int, str], Dict[str, Any]]
    metric: str              # human name of the metric
    unit: str                # unit of Workload.value
    higher_is_better: bool
    value: Callable[[Dict[str, Any]], float]
    # Per engine; None: the engine does not run at this size by default (too slow to
    # finish here), recorded as "not run" with ``not_run_reason``; ``--size`` enables it.
    sizes: Dict[str, Optional[int]] = field(default_factory=dict)
    quick_sizes: Dict[str, Optional[int]] = field(default_factory=dict)
    size_meaning: str = ""
    description: str = ""
    not_run_reason: str = ""
    # A point of a scaling curve: the series it belongs to and its x (e.g. the population).
    series: Optional[str] = None
    series_x: Optional[int] = None

    def size_for(self, engine: str, quick: bool = False) -> Optional[int]:
        table = self.quick_sizes if quick else self.sizes
        return table.get(engine, table["default"])


# PBT population scaling: (population, fasttune iterations, Ray Tune iterations or None).
# Iterations shrink as the population grows so each point costs a fasttune run ~25-60k
# results; Ray Tune runs the sizes it finishes in a few minutes per repeat.  At population
# 16 Ray Tune pauses and resumes a trial at nearly every segment (~0.8 s each here: 16 x
# 160 iterations ran over 10 minutes), so it gets 24 iterations there.
PBT_SCALING = (
    (16, 1600, 24),
    (64, 400, 40),
    (256, 100, 12),
    (1000, 40, None),
    (5000, 12, None),
)


def _pbt_scaling_workloads():
    for population, iterations, ray_iterations in PBT_SCALING:
        yield Workload(
            name=f"pbt_scaling_{population}",
            run=pbt_population_series(population),
            metric="results/s over the whole fit()",
            unit="results/s",
            higher_is_better=True,
            value=_rate("results"),
            sizes={"default": iterations, "raytune": ray_iterations},
            quick_sizes={"default": 8, "raytune": 8 if population <= 64 else None},
            size_meaning=f"iterations per trial (population {population:,}, two at a time)",
            description=f"PBT, population {population:,} at 1 CPU each (time-shared), "
                        "perturbation and checkpoint every 4 iterations.",
            not_run_reason=f"Ray Tune needs ~0.4 s per trial and ~60 ms per 4 iterations "
                           f"here: {population:,} trials would take over 10 minutes a repeat",
            series="pbt_population",
            series_x=population,
        )


def _rate(key):
    def f(r):
        return r[key] / r["fit_s"] if r["fit_s"] > 0 else float("nan")
    return f


def _no_loggers(workload: Workload) -> Workload:
    """``workload`` with ``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1`` (not in any suite: run
    it beside ``workload``, and the ratio of the two is the default loggers' cost)."""
    return dataclasses.replace(
        workload, name=f"{workload.name}_no_loggers", run=_without_default_loggers(workload.run),
        description=f"{workload.name} with TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1: the baseline of the "
                    "default loggers' cost.")


WORKLOADS: Dict[str, Workload] = {
    w.name: w
    for w in (
        Workload(
            name="result_throughput",
            run=result_throughput,
            metric="results/s over the whole fit()",
            unit="results/s",
            higher_is_better=True,
            value=_rate("results"),
            sizes={"default": 5_000, "raytune": 5_000, "fasttune": 100_000},
            quick_sizes={"default": 200},
            size_meaning="results per trial (2 trials)",
            description="2 concurrent trials, each reporting N small results "
                        "in a tight loop; default loggers on.",
        ),
        Workload(
            name="trial_bookkeeping",
            run=trial_bookkeeping,
            metric="trials/s over the whole fit()",
            unit="trials/s",
            higher_is_better=True,
            value=_rate("trials_ok"),
            # Ray Tune's rate does not grow with size (a process per trial), and 500
            # trials take it over ten minutes a repeat here; 50 give the same rate.
            sizes={"default": 500, "raytune": 50, "fasttune": 10_000},
            quick_sizes={"default": 20},
            size_meaning="trials (1 result each)",
            description="M trials (num_samples=M, uniform param) of one "
                        "result each, 1 CPU per trial.",
        ),
        Workload(
            name="trial_bookkeeping_reuse",
            run=trial_bookkeeping_reuse,
            metric="trials/s over the whole fit()",
            unit="trials/s",
            higher_is_better=True,
            value=_rate("trials_ok"),
            sizes={"default": 500, "raytune": 500, "fasttune": 10_000},
            quick_sizes={"default": 20},
            size_meaning="trials (1 result each), reuse_actors=True",
            description="As trial_bookkeeping with TuneConfig(reuse_actors=True), "
                        "Ray Tune's fastest setting.",
        ),
        Workload(
            name="time_to_first_result",
            run=time_to_first_result,
            metric="seconds from fit() call to return",
            unit="s",
            higher_is_better=False,
            value=lambda r: r["fit_s"],
            sizes={"default": 1},
            quick_sizes={"default": 1},
            size_meaning="fixed: 1 trial, 1 result",
            description="1 trial reporting 1 result; fit() latency.",
        ),
        Workload(
            name="class_checkpointing",
            run=class_checkpointing,
            metric="results/s over the whole fit()",
            unit="results/s",
            higher_is_better=True,
            value=_rate("results"),
            sizes={"default": 200},
            quick_sizes={"default": 20},
            size_meaning="iterations per trial (16 class trials, checkpoint every 10, keep 2)",
            description="16 class-trainable trials, a checkpoint every 10 iterations, "
                        "num_to_keep=2.",
        ),
        Workload(
            name="pause_resume_1mb",
            run=pause_resume_1mb,
            metric="median pause -> resume round trip",
            unit="s",
            higher_is_better=False,
            value=lambda r: r["round_trip_s"],
            sizes={"default": 20},
            quick_sizes={"default": 3},
            size_meaning="pause/resume cycles of 1 trial with 1 MB of state",
            description="A class trial with 1 MB of state paused at every 2nd iteration "
                        "and resumed; the wall time from the step before the pause to "
                        "the step after the resume.",
        ),
        Workload(
            name="pbt_population_64",
            run=pbt_population_64,
            metric="results/s over the whole fit()",
            unit="results/s",
            higher_is_better=True,
            value=_rate("results"),
            sizes={"default": 400, "raytune": 40},
            quick_sizes={"default": 8},
            size_meaning="iterations per trial (population 64, two at a time)",
            description="PBT, population 64 at 1 CPU each (time-shared), perturbation and "
                        "checkpoint every 4 iterations.",
        ),
        Workload(
            name="pbt_population_5000",
            run=pbt_population_5000,
            metric="seconds for the whole fit()",
            unit="s",
            higher_is_better=False,
            value=lambda r: r["fit_s"],
            sizes={"default": 5_000, "raytune": 50},
            quick_sizes={"default": 20},
            size_meaning="population (40 iterations each, 2 at a time)",
            description="PBT over a population that cannot run at once: trials take "
                        "turns through pause and resume.",
        ),
        Workload(
            name="asha_trials",
            run=asha_trials,
            metric="results/s over the whole fit()",
            unit="results/s",
            higher_is_better=True,
            value=_rate("results"),
            sizes={"default": 2_000, "raytune": 100},
            quick_sizes={"default": 20},
            size_meaning="trials (max_t=100)",
            description="ASHA over many trials of up to 100 iterations, "
                        "reuse_actors=True.",
        ),
        Workload(
            name="optuna_search",
            run=optuna_search,
            metric="fit() wall time as a multiple of Optuna's study.optimize (same run)",
            unit="x Optuna",
            higher_is_better=False,
            value=lambda r: r["times_optuna"],
            sizes={"default": 500, "raytune": 100},
            quick_sizes={"default": 20},
            size_meaning="trials of a trivial objective through OptunaSearch (TPE)",
            description="OptunaSearch over a 2-D quadratic; the baseline is Optuna's own "
                        "study.optimize on the same objective in the same process.",
        ),
        *_pbt_scaling_workloads(),
    )
}

# Each with TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1 beside it, e.g.
# --workloads result_throughput,result_throughput_no_loggers
for _base in ("result_throughput", "trial_bookkeeping"):
    _variant = _no_loggers(WORKLOADS[_base])
    WORKLOADS[_variant.name] = _variant

SUITES: Dict[str, tuple] = {
    # The whole throughput suite (``python -m bench``); bench.sweeps adds the experiment
    # snapshot series (bench.bench_state) to it.
    "throughput": ("result_throughput", "trial_bookkeeping", "trial_bookkeeping_reuse",
                   "time_to_first_result", *(f"pbt_scaling_{p}" for p, _, _ in PBT_SCALING),
                   "asha_trials"),
    "basic": ("result_throughput", "trial_bookkeeping", "trial_bookkeeping_reuse",
              "time_to_first_result"),
    "pbt_scaling": tuple(f"pbt_scaling_{p}" for p, _, _ in PBT_SCALING),
    "checkpoints": ("class_checkpointing", "pause_resume_1mb"),
    "schedulers": ("pbt_population_64", "pbt_population_5000", "asha_trials"),
    "searchers": ("optuna_search",),
}


if __name__ == "__main__":  # pragma: no cover - convenience listing
    print(json.dumps({k: w.description for k, w in WORKLOADS.items()}, indent=2))
