"""Whole-sweep benchmark harness: fasttune vs Ray Tune, same workload, same run.

    python -m bench [--suite throughput] [--repeats 3]       (= python -m bench.sweeps)
                           [--engines fasttune,raytune]
                           [--workloads result_throughput,...] [--quick]
                           [--size WORKLOAD[.ENGINE]=N ...] [--timeout S]

For every repeat and workload the engines run alternately (the order flips on
every repeat: A B, B A, A B, ...), each in its own fresh subprocess which
does ``ray.init(num_cpus=2, include_dashboard=False)`` (untimed), runs the
workload from ``bench.workloads`` against ``ray.tune`` or ``fasttune`` (timing
``Tuner.fit()`` wall-clock), counts the results and prints one JSON line back.

An engine that cannot be imported, or whose module lacks the API the workloads
use, is recorded as skipped with the reason.  The summary (medians, spread,
fasttune-vs-Ray-Tune ratio, sizes, machine facts) is printed as Markdown and
written as JSON + Markdown to ``bench/out/``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Any, Dict, List, Optional

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(REPO_ROOT, "bench", "out")
MARKER = "@@SWEEPS_JSON@@ "

# engine name -> module imported as ``tune``
ENGINES = {"raytune": "ray.tune", "fasttune": "fasttune"}
DEFAULT_ENGINES = ("fasttune", "raytune")


# --------------------------------------------------------------------------
# Child side: one engine, one workload, one repeat, fresh process
# --------------------------------------------------------------------------

def _import_engine(engine: str):
    """Import the engine's tune module; return (module, version) or raise
    _Skip with a reason."""
    import importlib

    modname = ENGINES[engine]
    try:
        mod = importlib.import_module(modname)
    except Exception as e:  # ImportError, or anything the import raises
        raise _Skip(f"import {modname} failed: {type(e).__name__}: {e}")
    from bench.workloads import REQUIRED_API

    missing = [a for a in REQUIRED_API if not hasattr(mod, a)]
    if missing:
        raise _Skip(f"{modname} is importable but lacks {', '.join(missing)}")
    return mod, _engine_version(engine, mod)


def _engine_version(engine: str, mod=None) -> Optional[str]:
    if engine == "raytune":
        try:
            import ray

            return ray.__version__
        except Exception:
            pass
    v = getattr(mod, "__version__", None) if mod is not None else None
    if v:
        return str(v)
    try:
        from importlib.metadata import version

        return version("ray" if engine == "raytune" else "fasttune")
    except Exception:
        return None


class _Skip(Exception):
    pass


def _emit(obj: Dict[str, Any]) -> None:
    sys.stdout.flush()
    sys.stdout.write(MARKER + json.dumps(obj) + "\n")
    sys.stdout.flush()


def _child_main(spec: Dict[str, Any]) -> int:
    engine = spec["engine"]
    rec: Dict[str, Any] = {"engine": engine, "workload": spec.get("workload")}
    try:
        mod, ver = _import_engine(engine)
    except _Skip as e:
        rec.update(status="skipped", reason=str(e))
        _emit(rec)
        return 0
    rec["engine_version"] = ver
    if spec.get("probe"):
        rec.update(status="ok")
        _emit(rec)
        return 0

    from bench.workloads import WORKLOADS

    wl = WORKLOADS[spec["workload"]]
    size = int(spec["size"])
    storage = tempfile.mkdtemp(prefix=f"sweeps-{engine}-{wl.name}-", dir=spec.get("storage_root"))
    rec["size"] = size
    try:
        import ray

        t0 = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False)
        rec["ray_init_s"] = time.perf_counter() - t0
        out = wl.run(mod, size, storage)
        rec.update(out)
        rec["value"] = wl.value(out)
        rec["status"] = "ok" if out.get("complete") else "incomplete"
    except Exception as e:
        rec.update(
            status="error",
            reason=f"{type(e).__name__}: {e}",
            traceback=traceback.format_exc()[-4000:],
        )
    _emit(rec)
    try:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    except Exception:
        pass
    if not spec.get("keep_storage"):
        shutil.rmtree(storage, ignore_errors=True)
    else:
        print(f"storage kept at {storage}", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------
# Parent side
# --------------------------------------------------------------------------

def _loadavg() -> Optional[List[float]]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _spawn(spec: Dict[str, Any], timeout: float, module: str = "bench.sweeps",
           settle_max_s: float = 60.0) -> Dict[str, Any]:
    """Run ``python -m <module> --_child <spec>`` in a fresh process group and return the
    record it emitted (``_emit``), then kill what it left and wait for the CPUs to settle
    (at most ``settle_max_s``)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO_ROOT + (
        os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
    )
    env.setdefault("PYTHONUNBUFFERED", "1")
    cmd = [sys.executable, "-m", module, "--_child", json.dumps(spec)]
    t0 = time.perf_counter()
    load = _loadavg()
    proc = subprocess.Popen(
        cmd,
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # so a timeout can end Ray's helpers too
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        stdout, stderr = proc.communicate()
        timed_out = True
    except BaseException:
        _kill_group(proc)
        proc.communicate()
        raise
    wall = time.perf_counter() - t0
    _kill_group(proc)  # Ray helpers a child left behind must not load the next run
    quiet_s = _settle(settle_max_s)
    rec = None
    for line in reversed(stdout.splitlines()):
        if line.startswith(MARKER):
            rec = json.loads(line[len(MARKER):])
            break
    if rec is None:
        rec = {
            "engine": spec["engine"],
            "workload": spec.get("workload"),
            "status": "timeout" if timed_out else "crashed",
            "reason": (
                f"no result within {timeout:.0f}s" if timed_out
                else f"child exited {proc.returncode} without a result"
            ),
            "stderr_tail": stderr[-3000:],
        }
    elif rec.get("status") in ("error", "incomplete"):
        rec["stderr_tail"] = stderr[-3000:]
    rec["process_wall_s"] = round(wall, 3)
    rec["loadavg_before"] = load
    rec["settle_s"] = quiet_s
    return rec


def _fs_probe_us(root: Optional[str], trials: int = 300) -> float:
    """Microseconds the storage file system takes for one trial's files (a directory
    and three small files), measured just before a run: this machine's disk has slow
    periods that bound short-trial throughput for any engine."""
    probe = tempfile.mkdtemp(prefix="sweeps-fsprobe-", dir=root)
    t0 = time.perf_counter()
    for i in range(trials):
        trial_dir = os.path.join(probe, f"trial_{i:05d}")
        os.mkdir(trial_dir)
        for name in ("params.json", "result.json", "progress.csv"):
            with open(os.path.join(trial_dir, name), "w") as f:
                f.write("{}")
    elapsed = time.perf_counter() - t0
    shutil.rmtree(probe, ignore_errors=True)
    return round(elapsed / trials * 1e6, 1)


def cpu_busy_fraction(window_s: float = 0.5) -> Optional[float]:
    def sample():
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return idle, sum(fields)

    try:
        idle0, total0 = sample()
        time.sleep(window_s)
        idle1, total1 = sample()
    except OSError:
        return None
    total = total1 - total0
    return 1.0 - (idle1 - idle0) / total if total > 0 else 0.0


def _settle(max_s: float = 60.0, busy_below: float = 0.15) -> float:
    """Flush dirty pages and wait until the CPUs are nearly idle, so one run's teardown
    (killed Ray workers, deleted trial directories) does not slow the next engine's run.
    Returns the seconds waited."""
    t0 = time.perf_counter()
    os.sync()
    while time.perf_counter() - t0 < max_s:
        busy = cpu_busy_fraction()
        if busy is None or busy < busy_below:
            break
    return round(time.perf_counter() - t0, 2)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _git_rev() -> Optional[str]:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT,
            capture_output=True, text=True, timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=10,
        ).stdout.strip()
        return (rev + ("-dirty" if dirty else "")) or None
    except Exception:
        return None


def _mem_total_gib() -> Optional[float]:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def machine_facts() -> Dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    def pkg(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "mem_total_gib": _mem_total_gib(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "python": platform.python_version(),
        "python_impl": platform.python_implementation(),
        "ray": pkg("ray"),
        "fasttune": pkg("fasttune"),
        "git_rev": _git_rev(),
        "loadavg_start": _loadavg(),
    }


def _median(xs: List[float]) -> Optional[float]:
    return statistics.median(xs) if xs else None


def summarize(workloads, engines, runs, sizes, skipped) -> List[Dict[str, Any]]:
    from bench.workloads import WORKLOADS

    rows = []
    for wname in workloads:
        wl = WORKLOADS[wname]
        row: Dict[str, Any] = {
            "workload": wname,
            "metric": wl.metric,
            "unit": wl.unit,
            "higher_is_better": wl.higher_is_better,
            "size_meaning": wl.size_meaning,
            "series": wl.series,
            "series_x": wl.series_x,
            "engines": {},
        }
        for eng in engines:
            if sizes[(wname, eng)] is None:
                row["engines"][eng] = {"size": None, "runs": 0, "ok": 0, "values": [], "median": None,
                                       "min": None, "max": None, "not_run": wl.not_run_reason}
                continue
            rs = [r for r in runs if r["workload"] == wname and r["engine"] == eng]
            vals = [r["value"] for r in rs if r.get("status") == "ok"]
            e: Dict[str, Any] = {
                "size": sizes[(wname, eng)],
                "runs": len(rs),
                "ok": len(vals),
                "values": vals,
                "median": _median(vals),
                "min": min(vals) if vals else None,
                "max": max(vals) if vals else None,
                "median_fit_s": _median(
                    [r["fit_s"] for r in rs if r.get("status") == "ok"]),
                "statuses": sorted({r.get("status") for r in rs}),
            }
            if eng in skipped:
                e["skipped"] = skipped[eng]
            bad = [r for r in rs if r.get("status") != "ok"]
            if bad:
                e["problems"] = [
                    f"{r.get('status')}: {r.get('reason', '')}".strip()
                    for r in bad
                ]
            row["engines"][eng] = e
        ft = row["engines"].get("fasttune", {}).get("median")
        rt = row["engines"].get("raytune", {}).get("median")
        if ft and rt:
            row["ratio_fasttune_over_raytune"] = ft / rt
            row["speedup"] = ft / rt if wl.higher_is_better else rt / ft
        else:
            row["ratio_fasttune_over_raytune"] = None
            row["speedup"] = None
        rows.append(row)
    return rows


def _probe_range(values: List[Optional[float]]) -> str:
    xs = sorted(v for v in values if v is not None)
    if not xs:
        return "n/a"
    return f"{xs[0]:.0f}–{statistics.median(xs):.0f}–{xs[-1]:.0f}"


def write_report(out_dir: str, prefix: str, started: str, report: Dict[str, Any], markdown: str,
                 latest: Optional[str] = None) -> str:
    """Write ``report`` as ``<prefix><stamp>.json`` and ``.md`` in ``out_dir``, copied to
    ``<latest>.json``/``.md`` (``<prefix>latest`` by default); returns the path less suffix."""
    stamp = started.replace(":", "").replace("-", "")
    base = os.path.join(out_dir, f"{prefix}{stamp}")
    with open(base + ".json", "w") as f:
        json.dump(report, f, indent=2, default=str)
    with open(base + ".md", "w") as f:
        f.write(markdown)
    for suffix in (".json", ".md"):
        shutil.copyfile(base + suffix, os.path.join(out_dir, (latest or prefix + "latest") + suffix))
    return base


def format_number(x: Optional[float]) -> str:
    """``x`` for a table: thousands separated, three significant digits below 10, — for none."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.3g}"


def render_markdown(report: Dict[str, Any]) -> str:
    m = report["machine"]
    engines = report["engines"]
    lines = [
        f"# fasttune sweep benchmark ({report['started']})",
        "",
        f"- command: `{report['command']}`",
        f"- repeats: {report['repeats']}  quick: {report['quick']}  "
        f"engine order: alternating, flipped every repeat",
        f"- machine: {m['cpu_count']} CPUs (affinity {m['cpu_affinity']}), "
        f"{m['mem_total_gib']} GiB, {m['platform']}",
        f"- versions: python {m['python']}, ray {m['ray']}, "
        f"fasttune {m['fasttune'] or report['engine_versions'].get('fasttune')}"
        f", git {m['git_rev']}",
        f"- loadavg start {m['loadavg_start']} end {report['loadavg_end']}",
        f"- storage root: `{report['storage_root']}`; file-system probe before each run "
        f"(µs for one trial's directory + 3 files), min–median–max: "
        f"{_probe_range(report['fs_probe_us_per_trial'])}",
        "",
    ]
    head = ["workload", "metric"]
    for e in engines:
        head += [f"{e} median", f"{e} min–max", f"{e} size", f"{e} ok"]
    head += ["speedup (fasttune vs raytune)"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for row in report["summary"]:
        cells = [row["workload"], row["unit"]]
        for e in engines:
            d = row["engines"][e]
            if "not_run" in d:
                cells += ["not run", "", "—", "0"]
                continue
            if "skipped" in d:
                cells += ["skipped", "", f"{d['size']:,}", "0"]
                continue
            cells += [
                format_number(d["median"]),
                f"{format_number(d['min'])}–{format_number(d['max'])}",
                f"{d['size']:,}",
                f"{d['ok']}/{d['runs']}",
            ]
        sp = row["speedup"]
        cells.append(f"{sp:.2f}×" if sp else "—")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for eng, why in report["skipped"].items():
        lines.append(f"- **{eng} skipped**: {why}")
    for row in report["summary"]:
        for e, d in row["engines"].items():
            if "not_run" in d:
                lines.append(f"- {row['workload']} / {e}: not run ({d['not_run']}; "
                             f"`--size {row['workload']}.{e}=N` runs it)")
    for row in report["summary"]:
        for e, d in row["engines"].items():
            for p in d.get("problems", []):
                if "skipped" not in d:
                    lines.append(f"- {row['workload']} / {e}: {p}")
    lines.append("")
    lines.append(
        "Rates are over the whole `Tuner.fit()` wall-clock; sizes may differ "
        "per engine (rates are comparable, sizes are recorded). "
        "Speedup > 1 means fasttune is faster."
    )
    snapshots = report.get("snapshots")
    if snapshots:
        from bench.bench_state import render_markdown as snapshot_markdown

        lines += ["", "### Experiment snapshots and restore against trial count (bench.bench_state)", "",
                  snapshot_markdown(snapshots).rstrip("\n")]
    if report.get("plots"):
        lines += ["", "Plots: " + ", ".join(f"`{os.path.basename(p)}`" for p in report["plots"])]
    return "\n".join(lines) + "\n"


def _parse_sizes(items: List[str]) -> Dict[str, Dict[str, int]]:
    """--size WORKLOAD=N or WORKLOAD.ENGINE=N -> {workload: {engine|'*': N}}"""
    out: Dict[str, Dict[str, int]] = {}
    for it in items:
        key, _, val = it.partition("=")
        if not val:
            raise SystemExit(f"--size expects WORKLOAD[.ENGINE]=N, got {it!r}")
        wname, _, eng = key.partition(".")
        out.setdefault(wname, {})[eng or "*"] = int(val.replace("_", ""))
    return out


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--_child"]:
        return _child_main(json.loads(argv[1]))

    from bench.workloads import SUITES, WORKLOADS

    p = argparse.ArgumentParser(
        prog="python -m bench.sweeps",
        description="Whole-sweep benchmark: fasttune vs Ray Tune.",
    )
    p.add_argument("--suite", default="throughput", choices=sorted(SUITES))
    p.add_argument("--workloads", default=None,
                   help="comma list; overrides --suite. "
                        f"Known: {','.join(WORKLOADS)}")
    p.add_argument("--engines", default=",".join(DEFAULT_ENGINES),
                   help=f"comma list of {','.join(ENGINES)}")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true",
                   help="small sizes for smoke checks")
    p.add_argument("--size", action="append", default=[],
                   metavar="WORKLOAD[.ENGINE]=N",
                   help="override a size, e.g. result_throughput.raytune=2000")
    p.add_argument("--timeout", type=float, default=1800.0,
                   help="seconds per child run before it is killed")
    p.add_argument("--out-dir", default=OUT_DIR)
    p.add_argument("--keep-storage", action="store_true",
                   help="keep each run's storage_path (for inspection)")
    p.add_argument("--snapshot-sizes", default=None,
                   help="trial counts of the experiment-snapshot series for fasttune (suite "
                        "throughput; default 1000,10000,100000, quick 1000,10000; '' = none)")
    p.add_argument("--snapshot-ray-sizes", default=None,
                   help="the same for Ray Tune (default 1000,10000, quick 1000; '' = none)")
    p.add_argument("--no-plots", action="store_true", help="JSON and Markdown only")
    p.add_argument("--storage-root", default=None,
                   help="directory under which each run's storage_path is made "
                        "(default: the system temp dir); e.g. /dev/shm to measure the "
                        "engines rather than a noisy disk")
    args = p.parse_args(argv)

    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    for e in engines:
        if e not in ENGINES:
            p.error(f"unknown engine {e!r}; known: {', '.join(ENGINES)}")
    workloads = (
        [w.strip() for w in args.workloads.split(",") if w.strip()]
        if args.workloads else list(SUITES[args.suite])
    )
    for w in workloads:
        if w not in WORKLOADS:
            p.error(f"unknown workload {w!r}; known: {', '.join(WORKLOADS)}")
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    overrides = _parse_sizes(args.size)
    for w, per_engine in overrides.items():
        if w not in WORKLOADS:
            p.error(f"--size: unknown workload {w!r}")
        for e in per_engine:
            if e != "*" and e not in ENGINES:
                p.error(f"--size {w}.{e}: unknown engine {e!r}; known: {', '.join(ENGINES)}")

    sizes = {}
    for w in workloads:
        for e in engines:
            o = overrides.get(w, {})
            sizes[(w, e)] = o.get(e, o.get("*", WORKLOADS[w].size_for(e, args.quick)))
    # The snapshot series belongs to the throughput suite (not to a --workloads list).
    with_snapshots = not args.workloads and args.suite == "throughput"
    snapshot_sizes = _int_list(args.snapshot_sizes, "1000,10000" if args.quick else "1000,10000,100000")
    snapshot_ray_sizes = _int_list(args.snapshot_ray_sizes, "1000" if args.quick else "1000,10000")

    started = _dt.datetime.now().strftime("%Y-%m-%dT%H:%M:%S")
    module = "bench" if os.path.basename(sys.argv[0]) == "__main__.py" else "bench.sweeps"
    command = f"python -m {module} " + " ".join(argv)
    machine = machine_facts()
    print(f"[sweeps] {command}", file=sys.stderr)

    # Probe each engine once (fresh process) so a missing engine is reported
    # once as skipped instead of failing every repeat.
    skipped: Dict[str, str] = {}
    versions: Dict[str, Optional[str]] = {}
    for e in engines:
        r = _spawn({"engine": e, "probe": True}, timeout=300)
        if r.get("status") != "ok":
            skipped[e] = r.get("reason", r.get("status"))
            print(f"[sweeps] {e}: skipped ({skipped[e]})", file=sys.stderr)
        else:
            versions[e] = r.get("engine_version")
            print(f"[sweeps] {e}: {ENGINES[e]} {versions[e]}", file=sys.stderr)
    active = [e for e in engines if e not in skipped]

    runs: List[Dict[str, Any]] = []
    for rep in range(args.repeats):
        order = active if rep % 2 == 0 else active[::-1]
        for w in workloads:
            for e in order:
                if sizes[(w, e)] is None:
                    continue  # not run at this size (recorded in the summary)
                spec = {"engine": e, "workload": w, "size": sizes[(w, e)],
                        "keep_storage": args.keep_storage,
                        "storage_root": args.storage_root}
                fs_probe = _fs_probe_us(args.storage_root)
                r = _spawn(spec, timeout=args.timeout)
                r["fs_probe_us_per_trial"] = fs_probe
                r["repeat"] = rep
                runs.append(r)
                if r.get("status") == "skipped":
                    skipped.setdefault(e, r.get("reason"))
                msg = (f"{WORKLOADS[w].unit} {format_number(r.get('value'))} "
                       f"(fit {r.get('fit_s', float('nan')):.2f}s)"
                       if r.get("status") == "ok"
                       else f"{r.get('status')}: {r.get('reason', '')}")
                print(f"[sweeps] rep {rep + 1}/{args.repeats} {w} {e} "
                      f"size={sizes[(w, e)]:,}: {msg}", file=sys.stderr)

    snapshots = None
    if with_snapshots and (snapshot_sizes or snapshot_ray_sizes):
        from bench.bench_state import measure

        snapshots = measure(
            sizes=snapshot_sizes if "fasttune" in active else [],
            ray_sizes=snapshot_ray_sizes if "raytune" in active else [],
            roots=[args.storage_root or tempfile.gettempdir()],
            repeats=args.repeats, warm=3, timeout=args.timeout, command=command)

    report = {
        "kind": "sweeps",
        "started": started,
        "finished": _dt.datetime.now().strftime("%Y-%m-%dT%H:%M:%S"),
        "command": command,
        "repeats": args.repeats,
        "quick": args.quick,
        "engines": engines,
        "workloads": workloads,
        "engine_versions": versions,
        "skipped": skipped,
        "sizes": {f"{w}.{e}": n for (w, e), n in sizes.items()},
        "machine": machine,
        "loadavg_end": _loadavg(),
        "storage_root": args.storage_root or tempfile.gettempdir(),
        "fs_probe_us_per_trial": [r.get("fs_probe_us_per_trial") for r in runs],
        "summary": summarize(workloads, engines, runs, sizes, skipped),
        "runs": runs,
        "snapshots": snapshots,
    }
    os.makedirs(args.out_dir, exist_ok=True)
    if not args.no_plots:
        report["plots"] = _plot(report, args.out_dir)
    md = render_markdown(report)
    print(md)

    base = write_report(args.out_dir, "sweeps-", started, report, md, latest="latest")
    print(f"[sweeps] wrote {base}.json and {base}.md", file=sys.stderr)
    failed = any(r.get("status") not in ("ok", "skipped") for r in runs)
    if snapshots and snapshots.get("failed"):
        failed = True
    return 1 if failed else 0


def _int_list(text: Optional[str], default: str) -> List[int]:
    """'1000,10000' -> [1000, 10000]; None -> the default; '' -> []."""
    text = default if text is None else text
    try:
        return [int(x.replace("_", "")) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"expected a comma list of trial counts such as 1000,10000, got {text!r}")


def _plot(report: Dict[str, Any], out_dir: str) -> List[str]:
    """The report's PNG plots beside its JSON; none (with a note) without matplotlib."""
    from bench.plots import plot_report

    try:
        return plot_report(report, out_dir)
    except ImportError as e:
        print(f"[sweeps] no plots: {e}", file=sys.stderr)
        return []


if __name__ == "__main__":
    sys.exit(main())
