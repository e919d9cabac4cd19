"""``python -m bench.tracking [--results N] [--repeats R] [--trackers mlflow,wandb,aim,comet]``: what the
experiment-tracking callbacks cost a fast sweep.

The sweep is ``result_throughput``'s (``bench/workloads.py``): two trials, each reporting N small
results in a tight loop, so the driver handles results as fast as fasttune can.  It runs
without a tracking callback and with each one, alternating, R times in one Ray session; the
report gives medians of the sweep's loop time (until the last trial ended: what the callback
costs the event loop), of the whole ``fit()`` (which adds the callback's wait at the end for its
store to take everything), of the driver's CPU seconds, and their ratios to the run without a
callback.  Each tracker writes to a local store in a temporary directory
(MLflow: SQLite; W&B: offline mode; Aim: a repository in the experiment's directory, its
default; Comet: offline experiments), so no network is involved.  Aim and Comet take far
longer per result than MLflow and W&B: ``--results 5000`` keeps their runs short.

``TRACKERS`` is the list of callbacks measured: ``(name, make)`` where ``make(folder)`` returns
the callback, writing under ``folder``.  Add an entry to measure another tracker.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Tuple


def _mlflow(folder: str) -> Any:
    from mlflow import MlflowClient

    from fasttune.integration.mlflow import MLflowLoggerCallback

    uri = f"sqlite:///{folder}/mlflow.db"
    MlflowClient(tracking_uri=uri).create_experiment("bench", artifact_location=os.path.join(folder, "artifacts"))
    return MLflowLoggerCallback(uri, experiment_name="bench")


def _wandb(folder: str) -> Any:
    from fasttune.integration.wandb import WandbLoggerCallback

    os.environ["WANDB_SILENT"] = "true"
    return WandbLoggerCallback(project="bench", mode="offline", dir=folder)


def _aim(folder: str) -> Any:
    from fasttune.integration.aim import AimLoggerCallback

    return AimLoggerCallback()


def _comet(folder: str) -> Any:
    from fasttune.integration.comet import CometLoggerCallback

    return CometLoggerCallback(online=False, offline_directory=os.path.join(folder, "comet"),
                               display_summary_level=0)


def _noop_hook(folder: str) -> Any:
    from fasttune.logger import LoggerCallback

    class TakesBatches(LoggerCallback):
        def log_trial_result_batch(self, iteration, trial, results, times):
            pass

    return TakesBatches()


# (name, make(folder) -> callback); None measures the sweep without a tracking callback.
# "batch-hook" takes every batch and does nothing: what the engine spends to hand results to any
# tracker (it makes result dicts only when a callback asks for them), the floor of the others.
TRACKERS: List[Tuple[str, Optional[Callable[[str], Any]]]] = [
    ("batch-hook", _noop_hook),
    ("mlflow", _mlflow),
    ("wandb", _wandb),
    ("aim", _aim),
    ("comet", _comet),
]


def run_once(tune: Any, make: Optional[Callable[[str], Any]], results: int) -> Dict[str, Any]:
    from bench.workloads import count_results

    class LoopEnd(tune.Callback):
        # First in the list: its on_experiment_end runs before the tracker's waits for its store.
        at = None

        def on_experiment_end(self, trials, **info):
            LoopEnd.at = time.perf_counter()

    def trainable(config):
        report = tune.report
        x = config["x"]
        for i in range(config["n"]):
            report({"score": i * x, "i": i})

    with tempfile.TemporaryDirectory(prefix="bench-tracking-") as folder:
        callbacks = [LoopEnd()] + ([make(folder)] if make is not None else [])
        tuner = tune.Tuner(tune.with_resources(trainable, {"cpu": 1}),
                           param_space={"x": tune.grid_search([1, 2]), "n": results},
                           run_config=tune.RunConfig(name="tracking", storage_path=os.path.join(folder, "runs"),
                                                     verbose=0, callbacks=callbacks))
        start, cpu = time.perf_counter(), time.process_time()
        grid = tuner.fit()
        end = time.perf_counter()
        out = {"fit_s": end - start, "loop_s": LoopEnd.at - start, "driver_cpu_s": time.process_time() - cpu}
        out.update(count_results(grid))
    out["complete"] = out["errors"] == 0 and out["results"] == 2 * results
    return out


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=int, default=100_000, help="results per trial (2 trials)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trackers", default=",".join(name for name, _ in TRACKERS))
    args = parser.parse_args(argv)
    chosen = [(name, make) for name, make in TRACKERS if name in args.trackers.split(",")]
    variants = [("none", None)] + chosen

    import ray

    import fasttune as tune

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    runs: Dict[str, List[Dict[str, Any]]] = {name: [] for name, _ in variants}
    run_once(tune, None, 1000)  # warm up the worker pool and the imports
    for repeat in range(args.repeats):
        for name, make in variants:
            out = run_once(tune, make, args.results)
            runs[name].append(out)
            print(f"repeat {repeat + 1}/{args.repeats} {name}: {out['fit_s']:.2f} s"
                  f"{'' if out['complete'] else ' INCOMPLETE'}", file=sys.stderr)
    ray.shutdown()

    total = 2 * args.results
    baseline = statistics.median(run["fit_s"] for run in runs["none"])
    loop_baseline = statistics.median(run["loop_s"] for run in runs["none"])
    print(f"{total:,} results (2 trials x {args.results:,}), medians of {args.repeats}")
    print("| tracker | sweep s (loop) | results/s in the loop | loop vs none | fit s (with the end's wait) "
          "| fit vs none | driver CPU s | complete |")
    print("|---|---|---|---|---|---|---|---|")
    for name, _ in variants:
        loop_s = statistics.median(run["loop_s"] for run in runs[name])
        fit_s = statistics.median(run["fit_s"] for run in runs[name])
        cpu_s = statistics.median(run["driver_cpu_s"] for run in runs[name])
        complete = all(run["complete"] for run in runs[name])
        print(f"| {name} | {loop_s:.2f} | {total / loop_s:,.0f} | {loop_s / loop_baseline:.2f}x | {fit_s:.2f} "
              f"| {fit_s / baseline:.2f}x | {cpu_s:.2f} | {complete} |")
    return 0 if all(run["complete"] for variant in runs.values() for run in variant) else 1


if __name__ == "__main__":
    sys.exit(main())
