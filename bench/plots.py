"""PNG plots of saved benchmark reports, apart from the measuring.

    python -m bench.plots bench/out/latest.json                 # throughput suite
    python -m bench.plots bench/out/quality-latest.json --out-dir bench/results

A throughput report (``python -m bench``) gives ``pbt_scaling.png`` (results/s against
PBT population, both engines, log axes) and ``snapshot_scaling.png`` (experiment snapshot
and restore ms against trial count, both engines, log axes).  A quality report
(``python -m bench.quality``) gives ``quality_searchers.png`` and
``quality_schedulers.png``: per problem, the best-so-far curve of every algorithm, the
median over seeds with the interquartile band (regret ``best - optimum`` on a log axis
for the synthetic functions, progress ``q`` for the PBT toy problem).

matplotlib is optional (``pip install matplotlib``, or the ``bench`` extra); without it
these functions raise ImportError saying so.

Example:
    >>> import json
    >>> from bench.plots import plot_report                     # doctest: +SKIP
    >>> plot_report(json.load(open("bench/out/latest.json")), "bench/out")   # doctest: +SKIP
    ['bench/out/pbt_scaling.png', 'bench/out/snapshot_scaling.png']
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Dict, List, Optional

ENGINE_STYLE = {"fasttune": {"color": "tab:blue", "marker": "o"},
                "raytune": {"color": "tab:orange", "marker": "s"}}
ENGINE_LABEL = {"fasttune": "fasttune", "raytune": "Ray Tune"}
REGRET_FLOOR = 1e-9  # a regret at (or, by the rounding of the optimum, just under) zero
SIMULATE_REGRET_FLOOR = 1e-4  # bench.simulate: where a run found the table's best loss (a regret of 0)


def _pyplot():
    try:
        import matplotlib
    except ImportError as e:
        raise ImportError("bench.plots needs matplotlib: pip install matplotlib "
                          "(or pip install -e \".[bench]\")") from e
    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt

    return plt


def plot_report(report: Dict[str, Any], out_dir: str) -> List[str]:
    """Write the plots of a saved report (throughput or quality) into ``out_dir``;
    returns the paths written."""
    os.makedirs(out_dir, exist_ok=True)
    if report.get("kind") == "quality":
        return plot_quality(report, out_dir)
    if report.get("kind") == "simulate":
        return plot_simulate(report, out_dir)
    return plot_sweeps(report, out_dir)


# --------------------------------------------------------------------------
# Throughput suite
# --------------------------------------------------------------------------

def plot_sweeps(report: Dict[str, Any], out_dir: str) -> List[str]:
    """Scaling curves of a ``bench.sweeps`` report (those it has data for)."""
    paths = []
    series = [row for row in report.get("summary", []) if row.get("series") == "pbt_population"]
    if series:
        paths.append(_plot_series(series, os.path.join(out_dir, "pbt_scaling.png"),
                                  xlabel="PBT population (trials)", ylabel="results/s over fit()",
                                  title="PBT population scaling (2 CPUs, 1 CPU per trial)"))
    snapshots = report.get("snapshots")
    if snapshots and any("summary" in r for r in snapshots.get("runs", [])):
        paths.append(_plot_snapshots(snapshots, os.path.join(out_dir, "snapshot_scaling.png")))
    return paths


def _plot_series(rows: List[Dict[str, Any]], path: str, xlabel: str, ylabel: str, title: str) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    engines = sorted({e for row in rows for e in row["engines"]})
    for engine in engines:
        pts = sorted((row["series_x"], row["engines"][engine]) for row in rows
                     if (row["engines"].get(engine) or {}).get("median"))
        if not pts:
            continue
        xs = [x for x, _ in pts]
        med = [d["median"] for _, d in pts]
        low = [d["median"] - d["min"] for _, d in pts]
        high = [d["max"] - d["median"] for _, d in pts]
        ax.errorbar(xs, med, yerr=[low, high], capsize=3, label=ENGINE_LABEL.get(engine, engine),
                    **ENGINE_STYLE.get(engine, {}))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(title="median, min–max over repeats", fontsize=8, title_fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plot_snapshots(snapshots: Dict[str, Any], path: str) -> str:
    plt = _pyplot()
    figures = (("cold_s", "cold snapshot"), ("warm_s", "warm snapshot"), ("restore_s", "restore"))
    fig, axes = plt.subplots(1, 3, figsize=(12, 4), sharey=True)
    runs = [r for r in snapshots["runs"] if "summary" in r]
    roots = sorted({r["root"] for r in runs})
    for ax, (key, label) in zip(axes, figures):
        for engine in ("fasttune", "raytune"):
            for root in roots:
                pts = sorted((r["n"], r["summary"][key]) for r in runs
                             if r["engine"] == engine and r["root"] == root)
                if not pts:
                    continue
                xs = [n for n, _ in pts]
                med = [s["median"] * 1e3 for _, s in pts]
                err = [[(s["median"] - s["min"]) * 1e3 for _, s in pts],
                       [(s["max"] - s["median"]) * 1e3 for _, s in pts]]
                where = "tmpfs" if root.startswith("/dev/shm") else "disk"
                style = dict(ENGINE_STYLE.get(engine, {}))
                if len(roots) > 1 and where == "disk":
                    style["linestyle"] = "--"
                ax.errorbar(xs, med, yerr=err, capsize=3,
                            label=f"{ENGINE_LABEL.get(engine, engine)}" + (f" ({where})" if len(roots) > 1 else ""),
                            **style)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("trials in the experiment")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("ms (median, min–max)")
    axes[0].legend(fontsize=8)
    fig.suptitle("Experiment snapshot and restore cost against trial count", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------
# Quality suite
# --------------------------------------------------------------------------

def plot_quality(report: Dict[str, Any], out_dir: str) -> List[str]:
    """One figure per algorithm family, a panel per problem."""
    paths = []
    for family, axis in (("searchers", "trials completed"), ("schedulers", "training iterations consumed")):
        algorithms = report.get(family) or []
        problems = [p for p in report["problems"]
                    if any("curves" in report["results"].get(f"{a}/{p}", {}) for a in algorithms)]
        if problems:
            path = os.path.join(out_dir, f"quality_{family}.png")
            paths.append(_plot_quality_family(report, algorithms, problems, axis, path, family))
    return paths


def _plot_quality_family(report, algorithms, problems, axis, path, family) -> str:
    import numpy as np

    plt = _pyplot()
    fig, axes = plt.subplots(1, len(problems), figsize=(4.2 * len(problems), 3.8), squeeze=False)
    colors = plt.get_cmap("tab10")
    for ax, problem in zip(axes[0], problems):
        meta = report["problem_meta"][problem]
        optimum = meta.get("optimum")
        for i, algorithm in enumerate(algorithms):
            entry = report["results"].get(f"{algorithm}/{problem}") or {}
            if "curves" not in entry:
                continue
            curves = np.asarray(entry["curves"], dtype=float)
            if optimum is not None:
                curves = np.maximum(curves - optimum, REGRET_FLOOR)
            q1, med, q3 = np.percentile(curves, [25, 50, 75], axis=0)
            xs = np.arange(1, curves.shape[1] + 1)
            ax.plot(xs, med, color=colors(i), label=algorithm, linewidth=1.4)
            ax.fill_between(xs, q1, q3, color=colors(i), alpha=0.18, linewidth=0)
        if optimum is not None:
            ax.set_yscale("log")
            ax.set_ylabel("regret: best so far − optimum")
        else:
            ax.set_ylabel(f"best {meta.get('metric', 'value')} so far (higher is better)")
        ax.set_xlabel(axis)
        ax.set_title(problem, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{family.capitalize()}: median and interquartile band over {report['seeds']} seeds",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------
# Simulated-time comparisons (bench.simulate)
# --------------------------------------------------------------------------
def plot_simulate(report: Dict[str, Any], out_dir: str) -> List[str]:
    """Regret (best loss so far minus the problem's best), median and interquartile band
    over seeds, one line per algorithm, on a log axis floored at ``SIMULATE_REGRET_FLOOR``:
    against simulated time (``simulate_time.png``) and against compute (``simulate_compute.png``)."""
    import numpy as np

    plt = _pyplot()
    paths = []
    labels = {"time": "simulated time (s)", "compute": "compute spent: all trials' simulated seconds"}
    for against, xlabel in labels.items():
        grid = np.asarray(report["grid"][against], dtype=float)
        fig, ax = plt.subplots(figsize=(7.5, 4.5))
        colors = plt.get_cmap("tab10")
        for i, algorithm in enumerate(report["algorithms"]):
            band = report["results"][algorithm][against]
            q25, q50, q75 = (np.maximum(np.array([np.nan if v is None else v for v in band[key]], dtype=float)
                                        - report["optimum"], SIMULATE_REGRET_FLOOR)
                             for key in ("q25", "q50", "q75"))
            ax.plot(grid, q50, color=colors(i), label=algorithm, linewidth=1.4, drawstyle="steps-post")
            ax.fill_between(grid, q25, q75, color=colors(i), alpha=0.15, linewidth=0, step="post")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"regret: best {report['metric']} so far − {report['optimum']:.4f}")
        ax.set_title(f"{len(report['seeds'])} seeds, {report['workers']} workers, budget {report['budget_s']:g} s",
                     fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = os.path.join(out_dir, f"simulate_{against}.png")
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    return paths


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.plots",
                                description="Re-plot a saved bench report (JSON) as PNG files.")
    p.add_argument("report", help="a JSON report, e.g. bench/out/latest.json or bench/out/quality-latest.json")
    p.add_argument("--out-dir", default=None, help="where the PNG files go (default: beside the JSON)")
    args = p.parse_args(argv)
    try:
        with open(args.report) as f:
            report = json.load(f)
    except (OSError, ValueError) as e:
        p.error(f"cannot read the report {args.report!r}: {e}")
    out_dir = args.out_dir or os.path.dirname(os.path.abspath(args.report))
    try:
        paths = plot_report(report, out_dir)
    except ImportError as e:
        p.error(str(e))
    if not paths:
        print(f"{args.report}: nothing to plot (no PBT scaling, snapshot or quality data)", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
