"""Per-trial files against the experiment-level results store at many trials (issue 20).

    python -m bench.results_store --trials 10000,100000 --repeats 3,2 --storage-root /dev/shm
    python -m bench.results_store --trials 200 --repeats 1 --settle-s 0     # smoke check

``bench.workloads.trial_bookkeeping_reuse`` on fasttune (N one-result trials, random search,
``reuse_actors=True``, storage under ``--storage-root``) in three layouts, each run a fresh
process (``bench.sweeps``' ``_spawn``), the layouts alternating within each repeat (their
order reversed every other repeat):

``per_trial``
    ``RunConfig(results_store="per_trial")`` (the default) with the default loggers: a
    directory per trial with ``params.json``, ``result.json``, ``progress.csv`` and the
    TensorBoard file.
``per_trial_no_loggers``
    The same with ``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1`` (the directory, ``params.json``
    and ``result.json`` stay: restores read them).
``experiment``
    ``RunConfig(results_store="experiment")``: every trial's results in
    ``<experiment>/results/NNNNNN.jsonl``, no trial directories.

Figures per run: trials/s (over ``fit()``'s wall time), the driver process's CPU per trial
over ``fit()`` (all its threads), its peak RSS when ``fit()`` returns (``ru_maxrss``, before
the untimed counting), the files and directories under the experiment directory after
``fit()``, and the seconds to read it back cold (the store's read cache emptied first) with
``ResultGrid.from_path`` and with ``fasttune ls``'s reader
(``fasttune._cli._experiment.read_experiment``).  Every run also checks what it read back:
N trials with one result each from both readers, and for the store, N result lines and N
trial lines naming N distinct trials; a run that fails a check has status ``incomplete``
and names the check.

Output: Markdown on stdout (medians per trial count and layout, and the ratios of
``experiment`` to each per-trial layout), ``bench/out/results-store-<timestamp>.{json,md}``
and ``results-store-latest.{json,md}``; exit status 1 if a run failed.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from collections import Counter
from typing import Any, Dict, List, Optional

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LAYOUTS = ("per_trial", "per_trial_no_loggers", "experiment")
EXPERIMENT_NAME = "trial_bookkeeping_reuse"  # the workload's RunConfig(name=)
# The table's figures: (key, heading, format).
FIGURES = [
    ("trials_per_s", "trials/s", "rate"),
    ("cpu_ms_per_trial", "driver CPU ms / trial", "ms"),
    ("peak_rss_mb", "peak RSS MB", "mb"),
    ("inodes", "inodes", "count"),
    ("from_path_s", "ResultGrid.from_path s", "s"),
    ("read_experiment_s", "read_experiment s", "s"),
]


def store_counts(experiment_path: str) -> Dict[str, Any]:
    """What the store's segments hold, line by line, parsed here with plain ``json`` (not
    the store's reader, which this checks): result lines, trial lines, keep lines, the
    distinct trial ids of each, and the ids with more or fewer than one result."""
    from fasttune._results_store import segment_paths

    results: Counter = Counter()
    trial_lines: Counter = Counter()
    keeps = other = 0
    segments = segment_paths(experiment_path)
    for _, path in segments:
        with open(path, "rb") as f:
            for line in f:
                value = json.loads(line)
                if isinstance(value, dict):
                    results[value.get("trial_id")] += 1
                elif isinstance(value, list) and value and value[0] == "trial":
                    trial_lines[value[2]] += 1
                elif isinstance(value, list) and value and value[0] == "keep":
                    keeps += 1
                else:
                    other += 1
    return {"segments": len(segments), "result_lines": sum(results.values()), "result_trials": len(results),
            "trial_lines": sum(trial_lines.values()), "trial_line_trials": len(trial_lines), "keep_lines": keeps,
            "other_lines": other, "not_one_result": sorted(t for t, n in results.items() if n != 1)[:10],
            "results_without_trial_line": sorted(set(results) - set(trial_lines))[:10]}


def read_back(experiment_path: str) -> Dict[str, Any]:
    """Seconds to read the experiment with each reader, cold, and what each read."""
    from fasttune import ResultGrid
    from fasttune import _results_store
    from fasttune._cli._experiment import read_experiment

    out: Dict[str, Any] = {}
    _results_store._last_read.clear()  # fit() and earlier readers may have cached the store
    t0 = time.perf_counter()
    grid = ResultGrid.from_path(experiment_path)
    out["from_path_s"] = time.perf_counter() - t0
    results = list(grid)
    out["from_path"] = {"trials": len(results), "errors": sum(r.error is not None for r in results),
                        "distinct_trial_ids": len({(r.metrics or {}).get("trial_id") for r in results}),
                        "iterations": sum((r.metrics or {}).get("training_iteration") or 0 for r in results)}
    del grid, results
    _results_store._last_read.clear()
    t0 = time.perf_counter()
    data = read_experiment(experiment_path)
    out["read_experiment_s"] = time.perf_counter() - t0
    out["read_experiment"] = {"trials": len(data.trials), "rows": sum(len(t.rows) for t in data.trials),
                              "distinct_trial_ids": len({t.trial_id for t in data.trials})}
    return out


def failed_checks(rec: Dict[str, Any], trials: int) -> List[str]:
    """What the run read back that a complete sweep of ``trials`` one-result trials would not."""
    wanted = {"from_path": {"trials": trials, "errors": 0, "distinct_trial_ids": trials, "iterations": trials},
              "read_experiment": {"trials": trials, "rows": trials, "distinct_trial_ids": trials}}
    if rec["layout"] == "experiment":
        wanted["store"] = {"result_lines": trials, "result_trials": trials, "trial_lines": trials,
                           "trial_line_trials": trials, "keep_lines": 0, "other_lines": 0,
                           "not_one_result": [], "results_without_trial_line": []}
    return [f"{part}.{key} = {rec[part][key]!r}, expected {value!r}" for part, keys in wanted.items()
            for key, value in keys.items() if rec[part][key] != value]


def _count_without_dataframes(grid: Any) -> Dict[str, Any]:
    """``bench.workloads.count_results`` where no trial has a directory: results from each
    trial's ``training_iteration`` (the store's own lines are counted by :func:`store_counts`),
    without building 100,000 DataFrames from the store."""
    metrics = [(r.error, r.metrics or {}) for r in grid]
    errors = sum(error is not None for error, _ in metrics)
    iterations = sum(m.get("training_iteration") or 0 for _, m in metrics)
    return {"trials": len(metrics), "trials_ok": len(metrics) - errors, "errors": errors, "results": iterations,
            "results_source": "training_iteration", "reported_iterations": iterations}


def _child_main(spec: Dict[str, Any]) -> int:
    from bench.driver_memory import _rss_mb
    from bench.per_trial import count_inodes
    from bench.sweeps import _emit

    from fasttune.logger._defaults import DISABLE_ENV

    layout, trials = spec["layout"], int(spec["trials"])
    rec: Dict[str, Any] = {"engine": "fasttune", "workload": f"results_store[{layout}]", "layout": layout,
                           "trials_asked": trials}
    os.environ[DISABLE_ENV] = "1" if layout == "per_trial_no_loggers" else "0"  # each run is its own process
    storage = tempfile.mkdtemp(prefix=f"results-store-{layout}-", dir=spec.get("storage_root"))
    try:
        import ray

        import fasttune
        from bench import workloads

        original_fit = fasttune.Tuner.fit

        def fit(self: Any) -> Any:
            grid = original_fit(self)
            # ru_maxrss lags the last page faults slightly: never below the RSS just read.
            rec["peak_rss_mb"] = max(_rss_mb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
            return grid

        fasttune.Tuner.fit = fit
        if layout == "experiment":
            original = workloads.fit_and_count

            def fit_and_count(tune_module: Any, trainable: Any, **kwargs: Any) -> Dict[str, Any]:
                return original(tune_module, trainable, results_store="experiment", **kwargs)

            workloads.fit_and_count = fit_and_count
            workloads.count_results = _count_without_dataframes
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        rec["base_rss_mb"] = _rss_mb()
        out = workloads.trial_bookkeeping_reuse(fasttune, trials, storage)
        rec.update(out)
        experiment_path = os.path.join(storage, EXPERIMENT_NAME)
        rec["inodes"] = count_inodes(experiment_path)
        names = sorted(os.listdir(experiment_path))
        rec["top_level"] = {"entries": len(names), "first": names[:12]}
        rec["trials_per_s"] = out["trials_ok"] / out["fit_s"]
        rec["cpu_ms_per_trial"] = out["fit_driver_cpu_s"] * 1e3 / trials
        rec["store"] = store_counts(experiment_path)
        rec.update(read_back(experiment_path))
        rec["failed_checks"] = failed_checks(rec, trials)
        rec["status"] = "ok" if out["complete"] and not rec["failed_checks"] else "incomplete"
    except Exception as exc:
        rec.update(status="error", reason=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc()[-4000:])
    _emit(rec)
    shutil.rmtree(storage, ignore_errors=True)
    return 0


# --------------------------------------------------------------------------------------
# Parent side
# --------------------------------------------------------------------------------------

def summarize(runs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Per trial count and layout: the median of each figure over its ok runs, and the ratio
    of ``experiment``'s median to each per-trial layout's."""
    rows = []
    for trials in sorted({r["trials_asked"] for r in runs}):
        medians: Dict[str, Dict[str, Any]] = {}
        for layout in LAYOUTS:
            ok = [r for r in runs if r["trials_asked"] == trials and r["layout"] == layout and r.get("status") == "ok"]
            if ok:
                medians[layout] = {"runs": len(ok), **{key: statistics.median(r[key] for r in ok)
                                                       for key, _, _ in FIGURES}}
        ratios = {}
        if "experiment" in medians:
            for base in ("per_trial", "per_trial_no_loggers"):
                if base in medians:
                    ratios[base] = {key: medians["experiment"][key] / medians[base][key] if medians[base][key] else None
                                    for key, _, _ in FIGURES}
        rows.append({"trials": trials, "medians": medians, "ratios": ratios})
    return rows


def _cell(value: Optional[float], kind: str) -> str:
    from bench.sweeps import format_number

    if value is None:
        return "—"
    return {"rate": format_number(value), "ms": f"{value:.3f}", "mb": f"{value:.0f}", "count": f"{value:,.0f}",
            "s": f"{value:.2f}"}[kind]


def render(report: Dict[str, Any]) -> str:
    lines = [f"# Results store: per-trial files against one store ({report['started']}, git {report['git']})", "",
             f"`{report['command']}`; storage {report['storage_root']}; load average at the start "
             f"{report['loadavg_start']}, at the end {report['loadavg_end']}.", "",
             "| trials | layout | runs | " + " | ".join(h for _, h, _ in FIGURES) + " |",
             "|---|---|---|" + "---|" * len(FIGURES)]
    for row in report["summary"]:
        for layout, m in row["medians"].items():
            lines.append(f"| {row['trials']:,} | {layout} | {m['runs']} | "
                         + " | ".join(_cell(m[key], kind) for key, _, kind in FIGURES) + " |")
        for base, ratio in row["ratios"].items():
            lines.append(f"| {row['trials']:,} | **experiment / {base}** | | "
                         + " | ".join("—" if ratio[key] is None else f"{ratio[key]:.3g}x" for key, _, _ in FIGURES)
                         + " |")
    lines += ["", "Medians over the runs; trials/s over fit()'s wall time; driver CPU over fit(), all threads; "
              "peak RSS when fit() returns; inodes: files and directories under the experiment directory after "
              "fit(); the two readers cold (the store's read cache emptied)."]
    if report.get("failures"):
        lines += ["", "Failed runs: " + "; ".join(report["failures"])]
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--_child", help=argparse.SUPPRESS)
    parser.add_argument("--trials", default="10000,100000", help="trial counts, comma-separated")
    parser.add_argument("--repeats", default="3",
                        help="repeats, one number for every trial count or one per trial count (e.g. 3,2)")
    parser.add_argument("--layouts", default=",".join(LAYOUTS))
    parser.add_argument("--storage-root", default="/dev/shm" if os.path.isdir("/dev/shm") else None)
    parser.add_argument("--settle-s", type=float, default=20.0, help="most seconds to wait for idle CPUs after a run")
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--out-dir", default=os.path.join(REPO_ROOT, "bench", "out"))
    args = parser.parse_args(argv)
    if args._child:
        return _child_main(json.loads(args._child))
    from bench.per_trial import _int_list
    from bench.sweeps import _git_rev, _loadavg, _spawn, write_report

    trial_counts, repeats = _int_list(args.trials), _int_list(args.repeats)
    if len(repeats) == 1:
        repeats *= len(trial_counts)
    if len(repeats) != len(trial_counts):
        parser.error(f"--repeats: give one number or one per trial count ({len(trial_counts)})")
    layouts = args.layouts.split(",")
    if set(layouts) - set(LAYOUTS):
        parser.error(f"--layouts: choose from {','.join(LAYOUTS)}")
    started = _dt.datetime.now().isoformat(timespec="seconds")
    report: Dict[str, Any] = {"started": started, "git": _git_rev(),
                              "command": " ".join(["python -m bench.results_store"]
                                                  + (argv if argv is not None else sys.argv[1:])),
                              "storage_root": args.storage_root, "loadavg_start": _loadavg(), "failures": []}
    runs = []
    for trials, times in zip(trial_counts, repeats):
        for repeat in range(times):
            for layout in (layouts if repeat % 2 == 0 else layouts[::-1]):
                rec = _spawn({"engine": "fasttune", "workload": f"results_store[{layout}]", "layout": layout,
                              "trials": trials, "storage_root": args.storage_root}, args.timeout,
                             module="bench.results_store", settle_max_s=args.settle_s)
                rec.setdefault("layout", layout)
                rec.setdefault("trials_asked", trials)
                print(f"[results_store] {trials:,} {layout}: {rec.get('status')} "
                      f"{rec.get('reason', '')}{'; '.join(rec.get('failed_checks', []))} "
                      + " ".join(f"{key}={rec[key]:.4g}" for key, _, _ in FIGURES if key in rec)
                      + f" load {rec.get('loadavg_before')}", file=sys.stderr, flush=True)
                if rec.get("status") != "ok":
                    report["failures"].append(f"{trials} {layout}: {rec.get('status')} {rec.get('reason', '')}"
                                              + "; ".join(rec.get("failed_checks", [])))
                runs.append(rec)
    report["runs"] = runs
    report["summary"] = summarize(runs)
    report["loadavg_end"] = _loadavg()
    markdown = render(report)
    os.makedirs(args.out_dir, exist_ok=True)
    write_report(args.out_dir, "results-store-", started, report, markdown)
    print(markdown)
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
