"""What the Aim and Comet loggers cost a sweep: the same sweep without a tracking logger, with
``AimLoggerCallback`` and with ``CometLoggerCallback`` (offline), each in its own process,
alternating, repeated; medians and the ratio to the sweep without one.

    python -m bench.tracking_aim_comet                      # 3 repeats, 20,000 results per trial
    python -m bench.tracking_aim_comet --size 5000 --repeats 1 --variants none,comet

The sweep is ``bench.workloads.result_throughput``'s: 2 concurrent trials, each reporting
``size`` small results ``{"score": i * x, "i": i}`` in a tight loop, default loggers on.
Aim writes into the experiment's directory (its default), Comet offline into a directory
beside it; both with their libraries' defaults otherwise.  Needs aim and comet_ml.  Writes
``bench/out/tracking_aim_comet-<timestamp>.{json,md}`` and prints the Markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List

from bench.sweeps import REPO_ROOT, machine_facts
from bench.workloads import _finish, fit_and_count

MARKER = "@@TRACKING@@"
VARIANTS = ("none", "aim", "comet")


def _callbacks(variant: str, storage: str) -> List[Any]:
    if variant == "aim":
        from fasttune.integration.aim import AimLoggerCallback

        return [AimLoggerCallback()]
    if variant == "comet":
        from fasttune.integration.comet import CometLoggerCallback

        return [CometLoggerCallback(online=False, offline_directory=os.path.join(storage, "comet"),
                                    display_summary_level=0)]
    return []


def _child(variant: str, size: int, storage_root: str) -> None:
    import ray

    import fasttune as tune

    def trainable(config):
        report = tune.report
        x = config["x"]
        for i in range(config["n"]):
            report({"score": i * x, "i": i})

    storage = tempfile.mkdtemp(prefix=f"tracking-{variant}-", dir=storage_root)
    try:
        ray.init(num_cpus=2, include_dashboard=False)
        out = fit_and_count(tune, tune.with_resources(trainable, {"cpu": 1}), name="tracking",
                            storage_path=storage, param_space={"x": tune.grid_search([1, 2]), "n": size},
                            tune_config=tune.TuneConfig(num_samples=1), callbacks=_callbacks(variant, storage))
        out = _finish(out, expected_trials=2, expected_results=2 * size)
        out["results_per_s"] = out["results"] / out["fit_s"]
        out["status"] = "ok" if out["complete"] else "incomplete"
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        out = {"status": "error", "reason": f"{type(exc).__name__}: {exc}"}
    finally:
        ray.shutdown()
        shutil.rmtree(storage, ignore_errors=True)
    out.update(variant=variant, size=size)
    print(MARKER + json.dumps(out), flush=True)


def _spawn(variant: str, size: int, storage_root: str, timeout: float) -> Dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    command = [sys.executable, "-m", "bench.tracking_aim_comet", "--_child", variant, str(size), storage_root]
    try:
        done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"variant": variant, "size": size, "status": "timeout"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER):])
    return {"variant": variant, "size": size, "status": "crashed", "stderr_tail": done.stderr[-3000:]}


def summarize(runs: List[Dict[str, Any]], variants: List[str]) -> List[Dict[str, Any]]:
    rows = []
    for variant in variants:
        ok = [run for run in runs if run["variant"] == variant and run["status"] == "ok"]
        fit_s = statistics.median(run["fit_s"] for run in ok) if ok else None
        rows.append({
            "variant": variant,
            "runs_ok": len(ok),
            "fit_s": fit_s,
            "results_per_s": statistics.median(run["results_per_s"] for run in ok) if ok else None,
            "driver_cpu_s": statistics.median(run["fit_driver_cpu_s"] for run in ok) if ok else None,
        })
    baseline = next((row["fit_s"] for row in rows if row["variant"] == "none"), None)
    for row in rows:
        row["fit_s_ratio"] = row["fit_s"] / baseline if baseline and row["fit_s"] else None
    return rows


def render_markdown(rows: List[Dict[str, Any]], size: int, repeats: int) -> str:
    lines = [f"2 trials x {size:,} results, median of {repeats}", "",
             "| logger | fit() s | results/s | driver CPU s | fit() vs none |", "|---|---|---|---|---|"]
    for row in rows:
        def cell(value, fmt):
            return format(value, fmt) if value is not None else "-"
        lines.append(f"| {row['variant']} | {cell(row['fit_s'], '.2f')} | {cell(row['results_per_s'], ',.0f')} | "
                     f"{cell(row['driver_cpu_s'], '.2f')} | {cell(row['fit_s_ratio'], '.2f')}x |")
    return "\n".join(lines) + "\n"


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=20_000, help="results per trial (2 trials)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--storage-root", default=None, help="where each run's storage_path is made")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--out-dir", default=os.path.join(REPO_ROOT, "bench", "out"))
    parser.add_argument("--_child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._child:
        variant, size, root = args._child
        _child(variant, int(size), root)
        return 0
    variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"--variants: unknown {unknown}; choose from {list(VARIANTS)}")
    storage_root = args.storage_root or tempfile.gettempdir()
    runs = []
    for repeat in range(args.repeats):
        for variant in variants:  # alternating, so a slow period of the machine hits every variant
            run = _spawn(variant, args.size, storage_root, args.timeout)
            print(f"repeat {repeat + 1} {variant}: {run.get('status')} fit {run.get('fit_s', 0):.2f}s", file=sys.stderr)
            runs.append(run)
    rows = summarize(runs, variants)
    markdown = render_markdown(rows, args.size, args.repeats)
    print(markdown)
    os.makedirs(args.out_dir, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    report = {"size": args.size, "repeats": args.repeats, "rows": rows, "runs": runs, "machine": machine_facts()}
    base = os.path.join(args.out_dir, f"tracking_aim_comet-{stamp}")
    with open(base + ".json", "w") as f:
        json.dump(report, f, indent=1, default=str)
    with open(base + ".md", "w") as f:
        f.write(markdown)
    return 0 if all(run["status"] == "ok" for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
