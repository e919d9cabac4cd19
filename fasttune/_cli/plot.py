"""``fasttune plot PATH -o FILE.png``: an experiment's learning curves, best-so-far and
PBT config lineage, as panels of one PNG.

:func:`make_figure` draws and returns the matplotlib Figure (with what each panel shows
in :class:`PlotData`); :func:`run` saves it.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="fasttune")
    >>> _ = add_parser(parser.add_subparsers())
    >>> args = parser.parse_args(["plot", "results/pbt", "-o", "pbt.png", "--top", "3"])
    >>> args.top, args.x, args.kind
    (3, 'training_iteration', 'all')
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

from fasttune._cli._arguments import positive_int
from fasttune._cli._experiment import POLICY_LOG, ExperimentData, TrialData, numeric, read_experiment
from fasttune._flatten import flatten_dict
from fasttune._optional import import_optional
from fasttune.error import TuneError
from fasttune.result import parse_json

KINDS = ("all", "curves", "best", "lineage")
X_AXES = ("training_iteration", "time_total_s")

_HELP = """\
Plot an experiment (finished, interrupted or running; no Ray needed) into one PNG
with a panel per plot:

  curves   the metric of the --top K trials (ranked by the best value each reached)
           against --x
  best     the best value of the metric reached so far across the whole experiment,
           against wall time: seconds since the first result, from each result's
           timestamp (whole seconds, as in Ray Tune)
  lineage  only for PBT experiments with log_config=True (a pbt_global.txt is present):
           each trial's value of every mutated hyperparameter against
           training_iteration, one panel per hyperparameter; a dashed vertical line
           marks each exploit, at the donor's iteration, from the donor's value to the
           new, perturbed one

A learning curve breaks where a trial's x goes back (a PBT exploit restarts it from
its donor's iteration). --kind draws one plot alone (default: all that apply). The
metric and mode default to the Tuner's TuneConfig(metric=, mode=). Needs matplotlib:
pip install "fasttune[plot]".
"""

_EPILOG = """\
examples:
  fasttune plot ~/fasttune_results/my_sweep -o sweep.png
  fasttune plot EXP -o curves.png --kind curves --metric val_loss --mode min --top 10 --x time_total_s
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``plot`` to the ``fasttune`` command's subparsers."""
    parser = subparsers.add_parser(
        "plot", help="plot learning curves, best-so-far and PBT lineage into a PNG", description=_HELP,
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", metavar="PATH", help="experiment directory, or one trial's directory; local, or a URI such as s3://bucket/prefix/name (pip install \"fasttune[storage]\")")
    parser.add_argument("-o", "--output", metavar="FILE.png", required=True, help="the image to write")
    parser.add_argument("--metric", help="metric to plot (default: the Tuner's metric)")
    parser.add_argument("--mode", choices=("min", "max"), help="whether lower or higher is better (default: the Tuner's mode)")
    parser.add_argument("--top", metavar="K", type=positive_int("trials"), default=5,
                        help="learning curves of the K best trials (default 5)")
    parser.add_argument("--x", choices=X_AXES, default="training_iteration",
                        help="x axis of the learning curves (default training_iteration)")
    parser.add_argument("--kind", choices=KINDS, default="all", help="which plot to draw (default: all that apply)")
    parser.set_defaults(func=run)
    return parser


# ---- what is plotted -------------------------------------------------------------------------
class Series(NamedTuple):
    """One drawn line: its label (a trial id, or what it is) and its points."""

    label: str
    x: List[float]
    y: List[float]


class Exploit(NamedTuple):
    """One PBT exploit as the lineage panel draws it: ``target`` cloned ``donor`` at the
    donor's ``iteration``; ``hyperparameter`` went from ``before`` to ``after``."""

    target: str
    donor: str
    iteration: float
    hyperparameter: str
    before: Any
    after: Any


class PlotData(NamedTuple):
    """What :func:`make_figure` drew, panel by panel (empty for a panel not drawn)."""

    metric: str
    mode: str
    curves: List[Series]
    best_so_far: Optional[Series]
    lineage: Dict[str, List[Series]]  # hyperparameter -> one series per run segment of a trial
    exploits: List[Exploit]


def top_trials(experiment: ExperimentData, metric: str, mode: str, k: int) -> List[TrialData]:
    """The ``k`` trials with the best value of ``metric`` over their results, best first."""
    scored = [(t.best(metric, mode), n, t) for n, t in enumerate(experiment.trials)]
    ranked = [(s, n, t) for s, n, t in scored if s is not None]
    ranked.sort(key=lambda item: (-item[0] if mode == "max" else item[0], item[1]))
    return [t for _, _, t in ranked[:k]]


def learning_curves(experiment: ExperimentData, metric: str, mode: str, k: int, x: str) -> List[Series]:
    """The metric against ``x`` for each of the top ``k`` trials."""
    return [Series(t.trial_id, *t.metric_values(metric, x)) for t in top_trials(experiment, metric, mode, k)]


def best_so_far(experiment: ExperimentData, metric: str, mode: str) -> Series:
    """The best value of ``metric`` any trial reported up to each second of wall time:
    one point per distinct result ``timestamp`` (whole seconds, as in Ray Tune), in
    seconds since the experiment's first result."""
    better = max if mode == "max" else min
    per_second: Dict[float, float] = {}
    for trial in experiment.trials:
        for t, v in zip(*trial.metric_values(metric, "timestamp")):
            if not math.isnan(v):
                per_second[t] = better(per_second.get(t, v), v)
    xs: List[float] = []
    ys: List[float] = []
    best: Optional[float] = None
    start = min(per_second, default=0.0)
    for t in sorted(per_second):
        best = per_second[t] if best is None else better(best, per_second[t])
        xs.append(t - start)
        ys.append(best)
    return Series(f"best {metric} so far", xs, ys)


def read_policy_log(experiment_path: str) -> List[list]:
    """The exploits in ``pbt_global.txt``: ``[target, donor, target iteration, donor
    iteration, donor config, new config]`` each; a torn last line is skipped."""
    rows = []
    with open(os.path.join(experiment_path, POLICY_LOG), "r", encoding="utf-8") as f:
        for line in f:
            try:
                row = parse_json(line)
            except ValueError:
                continue  # a line the scheduler is still writing, or one nested deeper than any it writes
            if isinstance(row, list) and len(row) == 6 and isinstance(row[4], dict) and isinstance(row[5], dict):
                rows.append(row)
    return rows


def mutated_hyperparameters(policy: Sequence[list]) -> List[str]:
    """The (flattened) config keys whose value some exploit changed, in first-seen order."""
    keys: Dict[str, None] = {}
    for *_, donor_config, new_config in policy:
        before, after = flatten_dict(donor_config), flatten_dict(new_config)
        keys.update((k, None) for k in after if k in before and before[k] != after[k])
    return list(keys)


def lineage(experiment: ExperimentData, policy: Sequence[list]) -> Tuple[Dict[str, List[Series]], List[Exploit]]:
    """Each trial's value of each mutated hyperparameter against ``training_iteration``,
    from the configs in its results, split where an exploit changed its config; and the
    exploits themselves, from the policy log."""
    hyperparameters = mutated_hyperparameters(policy)
    segments: Dict[str, List[Series]] = {h: [] for h in hyperparameters}
    for trial in experiment.trials:
        runs: List[Tuple[Dict[str, Any], List[float]]] = []  # (config, iterations)
        for row in trial.rows:
            config = flatten_dict(row.get("config") or {})
            iteration = numeric(row.get("training_iteration"))
            if iteration is None:
                continue
            if not runs or runs[-1][0] != config or iteration <= runs[-1][1][-1]:
                runs.append((config, []))
            runs[-1][1].append(iteration)
        for h in hyperparameters:
            for config, iterations in runs:
                if h in config:
                    segments[h].append(Series(trial.trial_id, iterations, [config[h]] * len(iterations)))
    exploits = []
    for target, donor, _, donor_iteration, donor_config, new_config in policy:
        before, after = flatten_dict(donor_config), flatten_dict(new_config)
        for h in hyperparameters:
            if h in before and h in after and numeric(donor_iteration) is not None:
                exploits.append(Exploit(str(target), str(donor), float(donor_iteration), h, before[h], after[h]))
    return segments, exploits


# ---- drawing ---------------------------------------------------------------------------------
def _new_figure(**kwargs: Any) -> Any:
    """A matplotlib Figure on an Agg canvas, without pyplot (so no global backend switch
    and no display needed)."""
    try:
        backend_agg = import_optional("matplotlib.backends.backend_agg", "plot", "fasttune plot")
        figure_module = import_optional("matplotlib.figure", "plot", "fasttune plot")
    except ImportError as exc:
        raise TuneError(str(exc)) from None  # the CLI reports a TuneError as a one-line error
    figure = figure_module.Figure(**kwargs)
    backend_agg.FigureCanvasAgg(figure)
    return figure


def _category_axis(ax: Any, values: Sequence[Any]) -> Dict[Any, int]:
    """Positions for non-numeric hyperparameter values, labelled on the y axis."""
    names = sorted({json.dumps(v, sort_keys=True) for v in values})
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names)
    return {name: i for i, name in enumerate(names)}


def _increasing_runs(xs: Sequence[float], ys: Sequence[float]) -> List[Tuple[List[float], List[float]]]:
    """The points split where x stops increasing.

    Example:
        >>> _increasing_runs([1, 2, 3, 2, 3], [5, 6, 7, 6, 8])
        [([1, 2, 3], [5, 6, 7]), ([2, 3], [6, 8])]
    """
    runs: List[Tuple[List[float], List[float]]] = []
    for x, y in zip(xs, ys):
        if not runs or x <= runs[-1][0][-1]:
            runs.append(([], []))
        runs[-1][0].append(x)
        runs[-1][1].append(y)
    return runs


def _draw_lineage(ax: Any, hyperparameter: str, segments: Sequence[Series], exploits: Sequence[Exploit],
                  colors: Dict[str, str]) -> None:
    values = [v for s in segments for v in s.y] + [v for e in exploits for v in (e.before, e.after)]
    categories = None if all(numeric(v) is not None for v in values) else _category_axis(ax, values)

    def position(value: Any) -> float:
        return float(value) if categories is None else categories[json.dumps(value, sort_keys=True)]

    labelled = set()
    for series in segments:
        color = colors.get(series.label, "grey")
        ax.plot(series.x, [position(v) for v in series.y], color=color, marker=".", markersize=3, linewidth=1.2,
                label=None if series.label in labelled else series.label)
        labelled.add(series.label)
    for e in exploits:
        # Vertical at the donor's iteration: the target continues from the donor's state
        # there, with the perturbed value.
        ax.plot([e.iteration, e.iteration], [position(e.before), position(e.after)], linestyle="--",
                color=colors.get(e.target, "grey"), linewidth=0.9, gid="exploit")
    if categories is None and values:
        low, high = min(map(float, values)), max(map(float, values))
        if low > 0 and high >= 100 * low:  # spans orders of magnitude, as a log-uniform lr does
            ax.set_yscale("log")
    ax.set_title(f"PBT lineage: {hyperparameter} (dashed: exploits)")
    ax.set_xlabel("training_iteration")
    ax.set_ylabel(hyperparameter)
    if 0 < len(labelled) <= 12:  # a legend of a whole large population would hide the plot
        ax.legend(fontsize="small", loc="best", ncol=2)


def make_figure(experiment: ExperimentData, metric: Optional[str] = None, mode: Optional[str] = None,
                top: int = 5, x: str = "training_iteration", kind: str = "all") -> Tuple[Any, PlotData]:
    """Draw the experiment's plots into a new Figure (Agg) and return it with the data of
    every line drawn.

    Raises:
        TuneError: no metric or mode is known, the metric was never reported,
            ``kind="lineage"`` on an experiment without a PBT policy log, or matplotlib
            is missing.

    Example:
        >>> from fasttune._cli._experiment import ExperimentData, TrialData
        >>> t = TrialData("a", "TERMINATED", "/e/a", {},
        ...               [{"loss": 2.0, "training_iteration": 1, "timestamp": 10},
        ...                {"loss": 1.0, "training_iteration": 2, "timestamp": 12}])
        >>> figure, data = make_figure(ExperimentData("/e", [t], "loss", "min"))
        >>> data.curves[0].y, data.best_so_far.x
        ([2.0, 1.0], [0.0, 2.0])
    """
    if kind not in KINDS:
        raise TuneError(f"Unknown plot kind {kind!r}; use one of {', '.join(KINDS)}.")
    if x not in X_AXES:
        raise TuneError(f"Unknown x axis {x!r}; use one of {', '.join(X_AXES)}.")
    metric, mode = experiment.resolve_metric(metric, mode)
    has_policy = os.path.isfile(os.path.join(experiment.path, POLICY_LOG))
    if kind == "lineage" and not has_policy:
        raise TuneError(f"{experiment.path} has no {POLICY_LOG}: the lineage plot needs a PopulationBasedTraining "
                        "run with log_config=True (the default).")

    curves = learning_curves(experiment, metric, mode, top, x) if kind in ("all", "curves") else []
    best = best_so_far(experiment, metric, mode) if kind in ("all", "best") else None
    segments: Dict[str, List[Series]] = {}
    exploits: List[Exploit] = []
    if kind in ("all", "lineage") and has_policy:
        segments, exploits = lineage(experiment, read_policy_log(experiment.path))
    lineage_panels = list(segments) if kind in ("all", "lineage") else []
    if kind == "lineage" and not lineage_panels:
        raise TuneError(f"{POLICY_LOG} in {experiment.path} records no hyperparameter change yet.")

    panels = (1 if kind in ("all", "curves") else 0) + (1 if best is not None else 0) + len(lineage_panels)
    figure = _new_figure(figsize=(9, 3.6 * panels), layout="constrained")
    axes = figure.subplots(panels, 1, squeeze=False)[:, 0]
    at = 0
    # A trial has the same color in every panel.
    colors = {t.trial_id: f"C{n % 10}" for n, t in enumerate(experiment.trials)}
    if kind in ("all", "curves"):
        ax = axes[at]
        at += 1
        for series in curves:
            # One line per stretch of increasing x: a PBT exploit restarts a trial from its
            # donor's (earlier or later) iteration, and a line back would be no curve at all.
            for i, (xs, ys) in enumerate(_increasing_runs(series.x, series.y)):
                ax.plot(xs, ys, color=colors.get(series.label, "grey"), linewidth=1.2, gid=series.label,
                        label=series.label if i == 0 else None)
        ax.set_title(f"{metric}: top {len(curves)} trials ({mode})")
        ax.set_xlabel(x)
        ax.set_ylabel(metric)
        if curves:
            ax.legend(fontsize="small", loc="best")
    if best is not None:
        ax = axes[at]
        at += 1
        ax.plot(best.x, best.y, drawstyle="steps-post", marker=".", label=best.label, color="black")
        ax.set_title(f"best {metric} so far ({mode}) over wall time")
        ax.set_xlabel("seconds since the first result")
        ax.set_ylabel(metric)
    for h in lineage_panels:
        _draw_lineage(axes[at], h, segments[h], [e for e in exploits if e.hyperparameter == h], colors)
        at += 1
    data = PlotData(metric, mode, curves, best, {h: segments[h] for h in lineage_panels}, exploits)
    return figure, data


def run(args: argparse.Namespace) -> int:
    """Carry out ``fasttune plot`` for parsed ``args``."""
    if not args.output.lower().endswith(".png"):
        raise TuneError(f"-o {args.output!r}: fasttune plot writes PNG images; name the file FILE.png.")
    experiment = read_experiment(args.path)
    figure, data = make_figure(experiment, args.metric, args.mode, args.top, args.x, args.kind)
    directory = os.path.dirname(os.path.abspath(args.output))
    os.makedirs(directory, exist_ok=True)
    figure.savefig(args.output, dpi=100)
    drawn = [name for name, shown in (("learning curves", data.curves), ("best so far", data.best_so_far),
                                      ("lineage", data.lineage)) if shown]
    print(f"Wrote {args.output} ({', '.join(drawn) or 'no data yet'}; metric {data.metric}, {data.mode})",
          file=sys.stderr)
    return 0
