"""What a progress report shows, computed once from numpy columns and rendered three ways
(plain text, a rich Live view, HTML).

A sweep may have thousands of trials and report 100,000 results a second, so a view is
built from the TrialTable's columns (status, iteration, failures, last metric) with
vectorised numpy: counts are O(1), the best trial is one ``nanargmin``, the rows shown
come from ``argpartition``.  Python touches only the few trials a view shows.

Example:
    >>> from fasttune.experiment.trial import Trial
    >>> a, b = Trial("train", {"x": 1}), Trial("train", {"x": 2})
    >>> a.last_result, b.last_result = {"loss": 0.5}, {"loss": 0.2}
    >>> view = build_view([a, b], TrialColumns.from_trials([a, b], "loss"), metric="loss", mode="min",
    ...                   max_rows=10, order="metric")
    >>> view.best_trial is b, view.best_value
    (True, 0.2)
"""
from __future__ import annotations

import math
import numbers
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from fasttune import _corelib as core
from fasttune._flatten import lookup_nested  # "a/b" finds result["a"]["b"] too

ColumnSpec = Union[List[str], Dict[str, str]]

#: The order Ray Tune's tables list statuses in.
TABLE_STATUS_ORDER = (core.RUNNING, core.PAUSED, core.PENDING, core.TERMINATED, core.ERROR)

_STATUS_CODES = {name: code for code, name in enumerate(core.STATUS_NAMES)}


def as_number(value: Any) -> float:
    """A real number as float; anything else (None, a string, a bool) as nan."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    return math.nan


@dataclass
class TrialColumns:
    """The per-trial numbers a view needs, one entry per trial in ``trials`` order."""

    status: np.ndarray  # uint8 status codes (fasttune._corelib)
    iteration: np.ndarray
    failures: np.ndarray
    metric: np.ndarray  # float64; nan where the trial reported no metric yet
    counts: Tuple[int, ...]
    results: Optional[int] = None  # results processed so far (None: unknown)

    @classmethod
    def from_table(cls, table: Any, trials: Sequence[Any], table_metric: Optional[str], metric: Optional[str],
                   results: Optional[int] = None) -> "TrialColumns":
        """Columns straight from the runner's TrialTable.  The table tracks one metric
        (``table_metric``); a reporter asking for another one reads it from each trial's
        last result, the one case that costs a Python loop over all trials."""
        if metric is not None and metric == table_metric:
            values = table.column("last_metric")
        elif metric is not None:
            values = np.fromiter((as_number(lookup_nested(t.last_result, metric)) for t in trials), float, len(trials))
        else:
            values = np.full(len(table), np.nan)
        return cls(table.column("status"), table.column("iteration"), table.column("failures"), values,
                   tuple(table.counts()), results)

    @classmethod
    def from_trials(cls, trials: Sequence[Any], metric: Optional[str]) -> "TrialColumns":
        """Columns gathered from trial objects: for a reporter used outside the run loop."""
        n = len(trials)
        status = np.fromiter((_STATUS_CODES[t.status] for t in trials), np.uint8, n)
        iteration = np.fromiter((int(t.iteration) for t in trials), np.int64, n)
        failures = np.fromiter((int(getattr(t, "num_failures", 0) or 0) for t in trials), np.int64, n)
        if metric is None:
            values = np.full(n, np.nan)
        else:
            values = np.fromiter((as_number(lookup_nested(t.last_result, metric)) for t in trials), float, n)
        counts = tuple(int(c) for c in np.bincount(status, minlength=len(core.STATUS_NAMES)))
        return cls(status, iteration, failures, values, counts)


@dataclass
class ProgressView:
    """One report's content: counts, the best trial, the rows to show, the errored trials."""

    counts: Dict[str, int]  # status name -> number of trials, statuses with none left out
    num_trials: int
    total_samples: Optional[int]  # None: unknown or unbounded
    results: Optional[int]
    metric: Optional[str]
    mode: Optional[str]
    best_trial: Any = None
    best_value: Optional[float] = None
    rows: List[Any] = field(default_factory=list)  # trials to show, in order
    row_status: List[str] = field(default_factory=list)
    hidden: int = 0  # trials not shown
    hidden_by_status: str = ""  # "3 RUNNING, 40 TERMINATED"
    errored: List[Any] = field(default_factory=list)  # trials that failed at least once (shown ones)
    num_errored: int = 0

    @property
    def num_finished(self) -> int:
        return self.counts.get("TERMINATED", 0) + self.counts.get("ERROR", 0)


def build_view(trials: Sequence[Any], columns: TrialColumns, *, metric: Optional[str], mode: Optional[str],
               max_rows: Optional[int], order: str = "status", sort_by_metric: bool = False,
               max_error_rows: Optional[int] = None, total_samples: Optional[int] = None) -> ProgressView:
    """The view of ``trials`` for one report.

    ``order="status"`` lists trials as Ray Tune's tables do: RUNNING, PAUSED, PENDING,
    TERMINATED, ERROR, each status given a fair share of ``max_rows`` (oldest trials
    first; TERMINATED best first with ``sort_by_metric``).  ``order="metric"`` lists the
    best ``max_rows`` trials by ``metric``/``mode``, then, while there is room, running
    trials that have not reported it yet.
    """
    counts = {core.STATUS_NAMES[code]: int(n) for code, n in enumerate(columns.counts) if n}
    if total_samples is not None and (total_samples <= 0 or total_samples >= sys.maxsize):
        total_samples = None
    view = ProgressView(counts, len(columns.status), total_samples, columns.results, metric, mode)
    ranked = metric is not None and mode in ("min", "max")
    limit = len(columns.status) if max_rows is None else max(0, int(max_rows))
    if order == "metric" and ranked:
        rows = _top_rows(columns, mode, limit)
        best = rows[:1] if len(rows) and not np.isnan(columns.metric[rows[0]]) else rows[:0]
    else:
        rows = _status_rows(columns, mode if (sort_by_metric and ranked) else None, limit)
        best = _best_first(columns.metric, mode, 1) if ranked else rows[:0]
    if len(best):
        view.best_trial = trials[int(best[0])]
        view.best_value = float(columns.metric[best[0]])
    view.rows = [trials[int(r)] for r in rows]
    view.row_status = [core.STATUS_NAMES[columns.status[int(r)]] for r in rows]
    view.hidden = len(columns.status) - len(rows)
    if view.hidden:
        shown = np.bincount(columns.status[rows], minlength=len(core.STATUS_NAMES)) if len(rows) else \
            np.zeros(len(core.STATUS_NAMES), int)
        view.hidden_by_status = ", ".join(
            f"{columns.counts[code] - int(shown[code])} {core.STATUS_NAMES[code]}"
            for code in TABLE_STATUS_ORDER if columns.counts[code] - int(shown[code]) > 0)
    failed = np.flatnonzero(columns.failures > 0)
    view.num_errored = len(failed)
    if max_error_rows is not None:
        failed = failed[:max(0, int(max_error_rows))]
    view.errored = [trials[int(r)] for r in failed]
    return view


def _best_first(values: np.ndarray, mode: Optional[str], k: int, rows: Optional[np.ndarray] = None) -> np.ndarray:
    """The up to ``k`` rows (of ``rows``, default all) with the best non-nan ``values``,
    best first: one ``argpartition`` of the column, then a sort of the ``k`` kept."""
    vals = values if rows is None else values[rows]
    key = np.where(np.isnan(vals), np.inf, -vals if mode == "max" else vals)
    k = min(max(k, 0), len(key))
    picked = np.argpartition(key, k - 1)[:k] if 0 < k < len(key) else np.arange(k)
    picked = picked[np.argsort(key[picked], kind="stable")]
    picked = picked[~np.isnan(vals[picked])]
    return picked if rows is None else rows[picked]


def _top_rows(columns: TrialColumns, mode: Optional[str], limit: int) -> np.ndarray:
    rows = _best_first(columns.metric, mode, limit)
    if len(rows) < limit:
        unranked = np.isnan(columns.metric)
        for code in TABLE_STATUS_ORDER:
            room = limit - len(rows)
            if room <= 0:
                break
            more = np.flatnonzero(unranked & (columns.status == code))[:room]
            rows = np.concatenate([rows, more])
    return rows.astype(np.intp)


def _fair_shares(sizes: Sequence[int], limit: int) -> List[int]:
    """Rows per status when only ``limit`` fit: one at a time to each status that has
    more, round robin, as Ray Tune shares its table."""
    shares = [0] * len(sizes)
    if limit >= sum(sizes):
        return list(sizes)
    # Whole rounds at once (every status still short of its size gets one per round),
    # then the remainder one by one; the same shares as one row at a time.
    while limit > 0:
        open_ = [i for i, n in enumerate(sizes) if shares[i] < n]
        step = min(min(sizes[i] - shares[i] for i in open_), limit // len(open_))
        if step == 0:
            for i in open_[:limit]:
                shares[i] += 1
            break
        for i in open_:
            shares[i] += step
        limit -= step * len(open_)
    return shares


def _status_rows(columns: TrialColumns, sort_mode: Optional[str], limit: int) -> np.ndarray:
    by_status = [np.flatnonzero(columns.status == code) for code in TABLE_STATUS_ORDER]
    shares = _fair_shares([len(r) for r in by_status], limit)
    picked = []
    for code, rows, share in zip(TABLE_STATUS_ORDER, by_status, shares):
        if code == core.TERMINATED and sort_mode is not None:
            best = _best_first(columns.metric, sort_mode, share, rows)
            if len(best) < share:  # terminated without the metric: after the ranked ones
                unranked = rows[np.isnan(columns.metric[rows])]
                best = np.concatenate([best, unranked[:share - len(best)]])
            picked.append(best)
        else:
            picked.append(rows[:share])
    return np.concatenate(picked).astype(np.intp) if picked else np.empty(0, np.intp)


# ---- cells -----------------------------------------------------------------------------

#: Ray Tune's default metric columns and their headings.
DEFAULT_METRIC_COLUMNS = {
    "mean_accuracy": "acc",
    "mean_loss": "loss",
    "training_iteration": "iter",
    "time_total_s": "total time (s)",
    "timesteps_total": "ts",
    "episode_reward_mean": "reward",
}

#: Keys fasttune adds to every result: never inferred as user metrics.
AUTO_RESULT_KEYS = frozenset({
    "training_iteration", "time_this_iter_s", "time_total_s", "timestamp", "date", "done", "trial_id",
    "experiment_id", "pid", "hostname", "node_ip", "time_since_restore", "iterations_since_restore",
    "timesteps_since_restore", "timesteps_total", "episodes_total", "config", "checkpoint_dir_name",
    "should_checkpoint", "experiment_tag",
})


def format_cell(value: Any, max_length: int) -> str:
    """A table cell: numbers with 6 significant digits, other values cut to ``max_length``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        text = str(value)
    elif isinstance(value, numbers.Integral):
        text = str(int(value))
    elif isinstance(value, numbers.Real):
        text = f"{float(value):.6g}"
    else:
        text = str(value)
    if max_length and len(text) > max_length:
        text = text[:max(1, max_length - 3)] + "..."
    return text


def column_names(spec: ColumnSpec) -> Dict[str, str]:
    """``{key: heading}`` for a list (heading = key) or dict column spec."""
    if isinstance(spec, Mapping):
        return dict(spec)
    return {key: key for key in spec}


def table_cells(view: ProgressView, metric_columns: ColumnSpec, parameter_columns: ColumnSpec,
                max_length: int) -> Tuple[List[str], List[List[str]]]:
    """Headings and cells for the trials a view shows: name, status, parameters, metrics.

    Metric columns none of the shown trials reported are left out; without
    ``parameter_columns`` every searched parameter of the shown trials is a column.
    """
    metrics = column_names(metric_columns)
    if view.metric and view.metric not in metrics:
        metrics = {view.metric: view.metric, **metrics}
    metrics = {k: h for k, h in metrics.items() if any(lookup_nested(t.last_result, k) is not None for t in view.rows)}
    if parameter_columns:
        params = column_names(parameter_columns)
    else:
        params = {k: k for k in sorted(set().union(*[t.evaluated_params for t in view.rows]))} if view.rows else {}
    headers = ["Trial name", "status"] + [format_cell(h, max_length) for h in params.values()] + \
        [format_cell(h, max_length) for h in metrics.values()]
    cells = []
    for trial, status in zip(view.rows, view.row_status):
        values = trial.evaluated_params if not parameter_columns else None
        row = [str(trial), status]
        for key in params:
            value = values.get(key) if values is not None and key in values else lookup_nested(trial.config, key)
            row.append(format_cell(value, max_length))
        row.extend(format_cell(lookup_nested(trial.last_result, key), max_length) for key in metrics)
        cells.append(row)
    return headers, cells


def best_trial_line(view: ProgressView, parameter_columns: ColumnSpec) -> Optional[str]:
    """Ray Tune's "Current best trial: ..." sentence, or None without a ranked metric."""
    trial = view.best_trial
    if trial is None:
        return None
    keys = list(column_names(parameter_columns)) if parameter_columns else list(trial.config)
    params = {key: lookup_nested(trial.config, key) for key in keys}
    return f"Current best trial: {trial.trial_id} with {view.metric}={view.best_value:.6g} and parameters={params}"


def counts_line(view: ProgressView) -> str:
    """``Number of trials: 12/100 (4 RUNNING, 8 TERMINATED)``."""
    total = f"/{view.total_samples}" if view.total_samples else ""
    by_status = ", ".join(f"{n} {name}" for name, n in sorted(view.counts.items()))
    return f"Number of trials: {view.num_trials}{total} ({by_status})"


def duration(seconds: float) -> str:
    """``HH:MM:SS.ss``, as Ray Tune shows how long a sweep has been running."""
    seconds = max(0.0, seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{int(hours):02d}:{int(minutes):02d}:{secs:05.2f}"


def results_text(view: ProgressView, elapsed_s: float) -> Optional[str]:
    """``12,345 results (1,234/s)``: fasttune's throughput; None when unknown."""
    if view.results is None:
        return None
    rate = view.results / elapsed_s if elapsed_s > 0 else 0.0
    return f"{view.results:,} results ({rate:,.0f}/s)"
