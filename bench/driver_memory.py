"""Driver memory against trial count (issue 16): the peak RSS of the driver process over
a sweep of N one-result trials, for several N, and what the memory holds at the end.

    python -m bench.driver_memory                                  # 1,000 / 10,000 / 100,000
    python -m bench.driver_memory --trials 1000,10000 --engines fasttune,raytune
    python -m bench.driver_memory --trials 10000 --trace           # where the bytes are (slow)

Each (engine, N) runs in a fresh driver process: ``ray.init(num_cpus=2)``, then
``bench.workloads.trial_bookkeeping_reuse`` (N trials, 1 CPU each, one result each, workers
reused, which is Ray Tune's fastest setting and fasttune's only one; default loggers; storage
under ``--storage-root``). Figures per run:

  base_rss_mb   RSS after ``ray.init`` and the engine's import, before ``Tuner(...)``
  peak_rss_mb   the process's peak RSS (``ru_maxrss``), which ``fit()`` sets
  end_rss_mb    RSS right after ``fit()`` returns, the ResultGrid still alive
  per_trial_b   (peak - base) / N: what each trial costs the driver at its peak
  loop_end_peak_mb  the peak when the sweep's loop has ended (a callback's
                ``on_experiment_end``), before ``fit()`` builds the ResultGrid

and, between consecutive sizes of one engine, the peak's growth per added trial.

With ``--trace`` the run keeps ``tracemalloc`` on over ``fit()`` and lists the source lines
holding the most memory when the experiment ends (the runner still alive: a callback's
``on_experiment_end``); tracing slows the sweep several times, so its rates mean nothing.
Output: Markdown on stdout, ``bench/out/memory-<timestamp>.{json,md}`` and
``bench/out/memory-latest.{json,md}``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import traceback
from typing import Any, Dict, List, Optional

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rss_mb() -> float:
    """This process's resident set now, from /proc (ru_maxrss is only the peak)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _top_lines(snapshot, limit: int) -> List[Dict[str, Any]]:
    """The ``limit`` source lines whose allocations hold the most memory in ``snapshot``."""
    top = []
    for stat in snapshot.statistics("lineno")[:limit]:
        frame = stat.traceback[0]
        where = os.path.relpath(frame.filename, REPO_ROOT) if frame.filename.startswith(REPO_ROOT) else frame.filename
        top.append({"where": f"{where}:{frame.lineno}", "mb": round(stat.size / 2**20, 2), "blocks": stat.count})
    return top


def _git_rev() -> Optional[str]:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _child_main(spec: Dict[str, Any]) -> int:
    record: Dict[str, Any] = {"engine": spec["engine"], "trials": spec["trials"]}
    storage = tempfile.mkdtemp(prefix=f"memory-{spec['engine']}-", dir=spec["storage_root"])
    try:
        import importlib

        import ray

        tune = importlib.import_module("ray.tune" if spec["engine"] == "raytune" else "fasttune")
        from bench import workloads

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        record["base_rss_mb"] = _rss_mb()
        callbacks = []

        class LoopEnd(tune.Callback):
            # The sweep's loop is over, the ResultGrid not built yet: what it adds shows apart.
            def on_experiment_end(self, trials, **info):
                record["loop_end_peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

        callbacks.append(LoopEnd())
        if spec.get("trace"):
            import tracemalloc

            class TraceAtEnd(tune.Callback):
                def on_experiment_end(self, trials, **info):
                    record["traced_total_mb"] = round(tracemalloc.get_traced_memory()[0] / 2**20, 1)
                    record["top_lines"] = _top_lines(tracemalloc.take_snapshot(), 15)

            tracemalloc.start()
            callbacks.append(TraceAtEnd())
        original = workloads.fit_and_count

        def fit_and_count(tune_module, trainable, **kwargs):
            return original(tune_module, trainable, callbacks=callbacks, **kwargs)

        workloads.fit_and_count = fit_and_count
        out = workloads.trial_bookkeeping_reuse(tune, spec["trials"], storage)
        record["end_rss_mb"] = _rss_mb()
        # ru_maxrss lags the last page faults slightly: never below the RSS just read.
        record["peak_rss_mb"] = max(record["end_rss_mb"], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
        record["per_trial_b"] = (record["peak_rss_mb"] - record["base_rss_mb"]) * 2**20 / spec["trials"]
        record.update({k: out[k] for k in ("fit_s", "trials", "trials_ok", "results", "complete")})
        record["status"] = "ok" if out["complete"] else "incomplete"
    except Exception as exc:
        record.update(status="error", reason=f"{type(exc).__name__}: {exc}",
                      traceback=traceback.format_exc()[-3000:])
    print("@@RESULT " + json.dumps(record), flush=True)
    shutil.rmtree(storage, ignore_errors=True)
    return 0


def _run(spec: Dict[str, Any], timeout: float) -> Dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        proc = subprocess.run([sys.executable, "-m", "bench.driver_memory", "--child", json.dumps(spec)],
                              cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return dict(spec, status="timeout")
    for line in proc.stdout.splitlines():
        if line.startswith("@@RESULT "):
            return json.loads(line[len("@@RESULT "):])
    return dict(spec, status="error", reason=f"exit {proc.returncode}: {proc.stderr[-2000:]}")


def render(report: Dict[str, Any]) -> str:
    from bench.sweeps import format_number

    lines = [f"# Driver memory against trial count ({report['started']}, git {report['git']})", "",
             "| engine | trials | base RSS MB | peak RSS MB | end RSS MB | bytes per trial at peak | fit s | ok |",
             "|---|---|---|---|---|---|---|---|"]
    for r in report["runs"]:
        if r.get("status") != "ok":
            lines.append(f"| {r['engine']} | {r['trials']:,} | — | — | — | — | — | {r.get('status')}: "
                         f"{r.get('reason', '')[:120]} |")
            continue
        lines.append(f"| {r['engine']} | {r['trials']:,} | {r['base_rss_mb']:.0f} | {r['peak_rss_mb']:.0f} | "
                     f"{r['end_rss_mb']:.0f} | {format_number(r['per_trial_b'])} | {r['fit_s']:.1f} | yes |")
    ok = [r for r in report["runs"] if r.get("status") == "ok"]
    for r in ok:
        if r.get("loop_end_peak_mb") is not None:
            lines.append(f"\n{r['engine']}, {r['trials']:,} trials: peak {r['loop_end_peak_mb']:.0f} MB when the loop "
                         f"ended, {r['peak_rss_mb'] - r['loop_end_peak_mb']:.0f} MB more building the ResultGrid.")
    for smaller, larger in zip(ok, ok[1:]):
        if smaller["engine"] == larger["engine"] and larger["trials"] > smaller["trials"]:
            slope = (larger["peak_rss_mb"] - smaller["peak_rss_mb"]) * 2**20 / (larger["trials"] - smaller["trials"])
            lines.append(f"\n{larger['engine']}, {smaller['trials']:,} -> {larger['trials']:,} trials: "
                         f"{format_number(slope)} bytes of peak RSS per added trial.")
    for r in report["runs"]:
        if r.get("top_lines"):
            lines += ["", f"Where {r['engine']}'s memory is at the end of {r['trials']:,} trials "
                          f"(tracemalloc, {r['traced_total_mb']} MB traced in all):", "",
                      "| source line | MB | blocks |", "|---|---|---|"]
            lines += [f"| `{t['where']}` | {t['mb']} | {t['blocks']:,} |" for t in r["top_lines"]]
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--trials", default="1000,10000,100000")
    parser.add_argument("--engines", default="fasttune")
    parser.add_argument("--trace", action="store_true", help="tracemalloc over fit() (slow)")
    parser.add_argument("--storage-root", default=None)
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--out-dir", default=os.path.join(REPO_ROOT, "bench", "out"))
    args = parser.parse_args(argv)
    if args.child:
        return _child_main(json.loads(args.child))
    from bench.sweeps import write_report

    started = _dt.datetime.now().isoformat(timespec="seconds")
    runs = []
    for engine in args.engines.split(","):
        for trials in (int(t) for t in args.trials.split(",")):
            spec = {"engine": engine, "trials": trials, "trace": args.trace, "storage_root": args.storage_root}
            runs.append(_run(spec, args.timeout))
            print(json.dumps({k: v for k, v in runs[-1].items() if k != "top_lines"}), file=sys.stderr)
    report = {"started": started, "git": _git_rev(), "loadavg": os.getloadavg(), "runs": runs}
    markdown = render(report)
    os.makedirs(args.out_dir, exist_ok=True)
    write_report(args.out_dir, "memory-", started, report, markdown)
    print(markdown)
    return 0 if all(r.get("status") == "ok" for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
