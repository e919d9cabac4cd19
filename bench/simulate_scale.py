"""The simulator's rate and memory as trials grow (issue 19): does the rate hold at 1,000 /
10,000 / 100,000 trials, and what does a simulated trial cost in peak memory?

    python -m bench.simulate_scale --sizes 1000,10000,100000 --repeats 1
    python -m bench.simulate_scale --sizes 10000 --repeats 5 --checkpoint-at decision_points
    python -m bench.simulate_scale --sizes 10000 --repeats 5 --engine runner

Each size runs in a fresh process (peak RSS only grows within one): issue 19's workload on
a larger table, ``learning_curve_table(N)`` (N configurations x 27 epochs), the first N rows
of ``default_rng(seed).permutation(N)`` as the trials in that order, asynchronous ASHA on
the reported ``epoch`` (grace 1, reduction factor 3, max_t 27), 4 virtual workers, no trial
files and no checkpoints (the simulation's defaults; ASHA never resumes a trial;
``--checkpoint-at decision_points`` keeps one at each rung, for comparison; the sweep then
runs on the runner's loop, as it does with ``--engine runner``; by default it runs on the
simulation's direct loop).  Reported per size: wall and driver-thread CPU seconds of
``fit()``, results, results/s and trials/s (over the wall time), CPU per trial, and peak RSS
growth per trial (the process's peak after ``fit()`` less before it, the table built
first).  Output: a table on stdout and ``bench/out/simulate-scale-latest.json`` (``--out``).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List


def run_size(n_trials: int, seed: int, workers: int, checkpoint_at: Any = "auto", engine: str = "auto") -> Dict[str, Any]:
    """One sweep of ``n_trials`` in this process; what it cost."""
    import fasttune as tune
    from fasttune.schedulers import ASHAScheduler
    from fasttune.search import BasicVariantGenerator
    from fasttune.simulation import Simulation, learning_curve_table, reference_trial_order

    blackbox = learning_curve_table(n_trials, seed=0)
    points = reference_trial_order(blackbox, n_trials=n_trials, seed=seed)
    before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tempfile.TemporaryDirectory() as storage:
        tuner = tune.Tuner(
            Simulation(blackbox, num_workers=workers, checkpoint_at=checkpoint_at, engine=engine),
            param_space=blackbox.search_space,
            tune_config=tune.TuneConfig(
                metric="loss", mode="min", num_samples=n_trials,
                scheduler=ASHAScheduler(time_attr="epoch", max_t=27, grace_period=1, reduction_factor=3),
                search_alg=BasicVariantGenerator(points_to_evaluate=points, random_state=seed)),
            run_config=tune.RunConfig(storage_path=storage, name="scale", verbose=0))
        start, start_cpu = time.perf_counter(), time.thread_time()
        grid = tuner.fit()
        wall_s, cpu_s = time.perf_counter() - start, time.thread_time() - start_cpu
        results = sum(result.metrics["training_iteration"] for result in grid)
        best = min(result.metrics["loss"] for result in grid)
    peak_growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_kb) * 1024
    return {"trials": n_trials, "results": results, "wall_s": wall_s, "cpu_s": cpu_s,
            "results_per_s": results / wall_s, "trials_per_s": n_trials / wall_s,
            "cpu_us_per_trial": cpu_s / n_trials * 1e6, "peak_rss_growth_bytes_per_trial": peak_growth / n_trials,
            "best_last_loss": best}


def summarise(runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Medians over the repeats of one size (results and trials are the same in each)."""
    keys = ("wall_s", "cpu_s", "results_per_s", "trials_per_s", "cpu_us_per_trial", "peak_rss_growth_bytes_per_trial")
    out = {key: statistics.median(run[key] for run in runs) for key in keys}
    out.update(trials=runs[0]["trials"], results=runs[0]["results"], repeats=len(runs),
               same_results_every_repeat=all(run["results"] == runs[0]["results"] for run in runs))
    return out


def table(summaries: List[Dict[str, Any]]) -> str:
    lines = ["| trials | results | wall s | driver CPU s | results/s | trials/s | CPU µs / trial | peak RSS growth / trial |",
             "|---|---|---|---|---|---|---|---|"]
    for row in summaries:
        lines.append(f"| {row['trials']:,} | {row['results']:,} | {row['wall_s']:.2f} | {row['cpu_s']:.2f} | "
                     f"{row['results_per_s']:,.0f} | {row['trials_per_s']:,.0f} | {row['cpu_us_per_trial']:.0f} | "
                     f"{row['peak_rss_growth_bytes_per_trial'] / 1024:.1f} KB |")
    return "\n".join(lines)


def main(argv: List[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated numbers of trials")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--checkpoint-at", default="auto", choices=["auto", "decision_points", "none"],
                        help="Simulation(checkpoint_at=...); none: no checkpoints")
    parser.add_argument("--engine", default="auto", choices=["auto", "runner", "direct"],
                        help="Simulation(engine=...): the direct loop where the sweep qualifies, or either loop")
    parser.add_argument("--out", default="bench/out/simulate-scale-latest.json")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)  # one size, in this process
    args = parser.parse_args(argv)
    checkpoint_at = None if args.checkpoint_at == "none" else args.checkpoint_at
    if args.child is not None:
        print(json.dumps(run_size(args.child, args.seed, args.workers, checkpoint_at, args.engine)))
        return
    summaries = []
    for size in (int(s) for s in args.sizes.split(",")):
        runs = []
        for _ in range(args.repeats):
            child = subprocess.run([sys.executable, "-m", "bench.simulate_scale", "--child", str(size),
                                    "--seed", str(args.seed), "--workers", str(args.workers),
                                    "--checkpoint-at", args.checkpoint_at, "--engine", args.engine],
                                   capture_output=True, text=True, check=True)
            runs.append(json.loads(child.stdout.strip().splitlines()[-1]))
        summaries.append(summarise(runs))
        print(json.dumps(summaries[-1]), flush=True)
    print(table(summaries))
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"seed": args.seed, "workers": args.workers, "checkpoint_at": args.checkpoint_at, "engine": args.engine,
                   "sizes": summaries}, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1:])
