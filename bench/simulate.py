"""Algorithm comparisons in simulated time: anytime curves over seeds on a synthetic blackbox.

    python -m bench.simulate                                  # every algorithm, 5 seeds
    python -m bench.simulate --seeds 3 --budget 1800 --workers 8 --algorithms random,asha,tpe_asha

Every run is a ``Tuner.fit()`` of a :class:`~fasttune.simulation.Simulation` of the
problem :func:`problem` (issue 19's learning-curve table, 2,000 configurations x 27 epochs
from seed 0, each epoch taking 1-10 simulated seconds; ``match="nearest"``, so searchers,
PBT's mutations and PB2's continuous suggestions all land on a row), on ``--workers``
virtual workers, until ``--budget`` simulated seconds are spent (``time_budget_s``).  An
:class:`~fasttune.simulation.AnytimeRecorder` keeps each result; the report holds each
run's best-so-far loss against simulated time and against compute (all trials' seconds
summed), and the median and interquartile range over seeds on a common grid.

Algorithms (``ALGORITHMS``): ``random`` (BasicVariantGenerator, FIFO), ``asha``,
``hyperband``, ``pbt``, ``pb2`` (a population of ``--population`` trials, 8 by default, resumed
from checkpoints: a simulated checkpoint is the epoch reached; they end once the whole
population reached the last epoch, often before the budget), ``tpe`` (OptunaSearch with TPESampler) and
``tpe_asha``.  Schedulers count ``training_iteration`` (one per epoch, and their rungs are
the trials' decision points).  ``num_samples=-1``: searchers go on until the budget ends
(PBT and PB2 end with their population).

Reproducible bit for bit: simulated time never depends on the machine, every searcher and
scheduler is seeded (``random`` and ``numpy.random`` too, for PBT and PB2), and BLAS runs
one thread (PB2's Gaussian process), so two invocations write the same report except the
``wall_s`` fields (the real seconds each run took, which the summary also prints).

Output under ``--out`` (default ``bench/out/``): ``simulate.json`` (every run's curves and
the aggregates), ``simulate.md`` (the summary table) and ``simulate_time.png`` /
``simulate_compute.png`` (median and IQR band of the regret, best loss so far minus the
table's best, against simulated time / compute; ``python -m bench.plots bench/out/simulate.json`` re-draws them).

Example (a tiny budget, two seeds):
    >>> report = run_comparison(["random", "asha"], seeds=[0, 1], budget=120.0, workers=2)
    >>> sorted(report["results"]), report["results"]["asha"]["runs"][0]["seed"]
    (['asha', 'random'], 0)
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

import fasttune as tune
from fasttune.simulation import (
    AnytimeCurve, AnytimeRecorder, Simulation, aggregate_curves, anytime_curve, learning_curve_table,
)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(REPO_ROOT, "bench", "out")

ALGORITHMS = ("random", "asha", "hyperband", "pbt", "pb2", "tpe", "tpe_asha")
N_CONFIGS = 2000
MAX_EPOCHS = 27
POPULATION = 8  # PBT's and PB2's
PERTURBATION_INTERVAL = 3
GRID_POINTS = 200
QUANTILES = (0.25, 0.5, 0.75)
METRIC, MODE = "loss", "min"


def problem():
    """The blackbox every run tunes: :func:`~fasttune.simulation.learning_curve_table`
    (2,000 configurations, 27 epochs, seed 0), nearest-row matching."""
    return learning_curve_table(N_CONFIGS, seed=0, n_epochs=MAX_EPOCHS, match="nearest")


def _bounds(space: Dict[str, Any]) -> Dict[str, List[float]]:
    return {name: [domain.lower, domain.upper] for name, domain in space.items()}


def make_algorithm(name: str, space: Dict[str, Any], seed: int, population: int = POPULATION) -> Dict[str, Any]:
    """``TuneConfig`` arguments (search_alg, scheduler, num_samples) of algorithm ``name``,
    seeded with ``seed`` (``population``: PBT's and PB2's number of trials)."""
    from fasttune import schedulers
    from fasttune.search import BasicVariantGenerator

    clock = "training_iteration"
    searcher: Any = BasicVariantGenerator(random_state=seed)
    scheduler: Any = None
    num_samples = -1
    if name in ("tpe", "tpe_asha"):
        import optuna

        from fasttune.search.optuna import OptunaSearch

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        searcher = OptunaSearch(sampler=optuna.samplers.TPESampler(seed=seed))
    if name in ("asha", "tpe_asha"):
        scheduler = schedulers.ASHAScheduler(time_attr=clock, max_t=MAX_EPOCHS, grace_period=1, reduction_factor=3)
    elif name == "hyperband":
        scheduler = schedulers.HyperBandScheduler(time_attr=clock, max_t=MAX_EPOCHS, reduction_factor=3)
    elif name == "pbt":
        scheduler = schedulers.PopulationBasedTraining(time_attr=clock, perturbation_interval=PERTURBATION_INTERVAL,
                                                       hyperparam_mutations=dict(space))
        num_samples = population
    elif name == "pb2":
        from fasttune.schedulers.pb2 import PB2

        scheduler = PB2(time_attr=clock, perturbation_interval=PERTURBATION_INTERVAL, hyperparam_bounds=_bounds(space))
        num_samples = population
    elif name not in ("random", "tpe"):
        raise ValueError(f"unknown algorithm {name!r}; known: {', '.join(ALGORITHMS)}")
    return {"search_alg": searcher, "scheduler": scheduler, "num_samples": num_samples}


def _one_blas_thread():
    """BLAS on one thread while a run lasts (PB2's GP is then the same to the bit, and a
    busy machine is not oversubscribed); nothing when threadpoolctl is absent."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1)


def run_one(algorithm: str, seed: int, budget: float, workers: int, blackbox: Any = None,
            population: int = POPULATION) -> Dict[str, Any]:
    """One seeded run of ``algorithm``: its anytime curves and counts, and ``wall_s``."""
    blackbox = blackbox if blackbox is not None else problem()
    random.seed(seed)  # PBT's and PB2's choices draw from random and numpy.random, as Ray Tune's do
    np.random.seed(seed)
    recorder = AnytimeRecorder(METRIC)
    started = time.perf_counter()
    with _one_blas_thread(), tempfile.TemporaryDirectory(prefix="bench-simulate-") as storage:
        grid = tune.Tuner(
            Simulation(blackbox, num_workers=workers),
            param_space=blackbox.search_space,
            tune_config=tune.TuneConfig(metric=METRIC, mode=MODE, time_budget_s=budget,
                                        **make_algorithm(algorithm, blackbox.search_space, seed, population)),
            run_config=tune.RunConfig(name=f"{algorithm}-{seed}", storage_path=storage, callbacks=[recorder],
                                      verbose=0),
        ).fit()
    wall_s = time.perf_counter() - started
    by_time = anytime_curve(recorder, METRIC, MODE, against="time")
    by_compute = anytime_curve(recorder, METRIC, MODE, against="compute")
    return {"seed": seed, "trials": len(grid), "results": recorder.num_results, "errors": len(grid.errors),
            "final": by_time.final, "wall_s": wall_s,
            "time": {"x": by_time.x.tolist(), "best": by_time.best.tolist()},
            "compute": {"x": by_compute.x.tolist(), "best": by_compute.best.tolist()}}


def _aggregate(runs: Sequence[Dict[str, Any]], against: str, grid: np.ndarray) -> Dict[str, Any]:
    curves = [AnytimeCurve(np.asarray(run[against]["x"]), np.asarray(run[against]["best"]), METRIC, MODE, against)
              for run in runs]
    aggregate = aggregate_curves(curves, grid, QUANTILES)
    return {f"q{int(q * 100)}": [None if np.isnan(v) else v for v in aggregate.quantile(q).tolist()]
            for q in QUANTILES}


def run_comparison(algorithms: Sequence[str], seeds: Sequence[int], budget: float, workers: int,
                   progress: Any = None, population: int = POPULATION) -> Dict[str, Any]:
    """Every algorithm x seed, and per algorithm the median and quartiles over seeds on the
    common grids: simulated time 0..budget, compute 0..budget * workers."""
    for name in algorithms:
        if name not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {name!r}; known: {', '.join(ALGORITHMS)}")
    if budget <= 0 or workers < 1 or population < 1 or not seeds:
        raise ValueError(f"need a positive budget, workers >= 1, population >= 1 and a seed "
                         f"(got {budget}, {workers}, {population}, {list(seeds)})")
    blackbox = problem()
    grids = {"time": np.linspace(0.0, budget, GRID_POINTS), "compute": np.linspace(0.0, budget * workers, GRID_POINTS)}
    results: Dict[str, Any] = {}
    for name in algorithms:
        runs = []
        for seed in seeds:
            run = run_one(name, seed, budget, workers, blackbox, population)
            if progress is not None:
                print(f"{name:>10} seed {seed}: best {run['final']:.6f}, {run['trials']} trials, "
                      f"{run['results']} results, {run['wall_s']:.2f} s", file=progress, flush=True)
            runs.append(run)
        finals = [run["final"] for run in runs]
        results[name] = {"runs": runs, "final_median": float(np.median(finals)),
                         "final_q25": float(np.quantile(finals, 0.25)), "final_q75": float(np.quantile(finals, 0.75)),
                         "time": _aggregate(runs, "time", grids["time"]),
                         "compute": _aggregate(runs, "compute", grids["compute"])}
    return {"kind": "simulate", "problem": repr(blackbox), "metric": METRIC, "mode": MODE, "budget_s": budget,
            "optimum": float(blackbox.metric_table[METRIC].min()),  # the table's best loss, at any epoch
            "workers": workers, "population": population, "seeds": list(seeds), "algorithms": list(algorithms),
            "grid": {against: grid.tolist() for against, grid in grids.items()}, "results": results,
            "fasttune": tune.__version__}


def render_markdown(report: Dict[str, Any]) -> str:
    """The summary table: per algorithm the median final best (and quartiles) over seeds,
    the median trials and results, and the median and largest wall time of a run."""
    lines = [f"Simulated: {report['problem']} (its best loss: {report['optimum']:.6f}); "
             f"budget {report['budget_s']:g} simulated s, "
             f"{report['workers']} workers, seeds {report['seeds']}, PBT/PB2 population {report['population']}.", "",
             "| algorithm | median best loss | IQR | trials (median) | results (median) | wall s per run (median / max) |",
             "|---|---|---|---|---|---|"]
    for name in report["algorithms"]:
        entry = report["results"][name]
        runs = entry["runs"]
        walls = [run["wall_s"] for run in runs]
        lines.append(f"| {name} | {entry['final_median']:.6f} | {entry['final_q25']:.6f} - {entry['final_q75']:.6f} | "
                     f"{np.median([run['trials'] for run in runs]):g} | {np.median([run['results'] for run in runs]):g} | "
                     f"{np.median(walls):.2f} / {max(walls):.2f} |")
    return "\n".join(lines) + "\n"


def write_report(report: Dict[str, Any], out_dir: str, plots: bool = True) -> List[str]:
    """``simulate.json``, ``simulate.md`` and (with matplotlib) the two PNG plots."""
    os.makedirs(out_dir, exist_ok=True)
    paths = [os.path.join(out_dir, "simulate.json"), os.path.join(out_dir, "simulate.md")]
    with open(paths[0], "w") as f:
        json.dump(report, f, indent=1)
    with open(paths[1], "w") as f:
        f.write(render_markdown(report))
    if plots:
        from bench.plots import plot_simulate

        paths += plot_simulate(report, out_dir)
    return paths


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.simulate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 per algorithm (default 5)")
    parser.add_argument("--budget", type=float, default=3600.0, help="simulated seconds per run (default 3600)")
    parser.add_argument("--workers", type=int, default=4, help="virtual workers (default 4)")
    parser.add_argument("--algorithms", default=",".join(ALGORITHMS),
                        help=f"comma-separated, of {', '.join(ALGORITHMS)} (default all)")
    parser.add_argument("--population", type=int, default=POPULATION,
                        help=f"PBT's and PB2's trials (default {POPULATION}); they end once all reach the last epoch")
    parser.add_argument("--out", default=OUT_DIR, help="output directory (default bench/out/)")
    parser.add_argument("--no-plots", action="store_true", help="JSON and Markdown only")
    args = parser.parse_args(argv)
    algorithms = [name for name in args.algorithms.split(",") if name]
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    try:
        report = run_comparison(algorithms, list(range(args.seeds)), args.budget, args.workers, progress=sys.stderr,
                                population=args.population)
    except ValueError as e:
        parser.error(str(e))
    paths = write_report(report, args.out, plots=not args.no_plots)
    sys.stdout.write(render_markdown(report))
    print("wrote " + ", ".join(paths), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
