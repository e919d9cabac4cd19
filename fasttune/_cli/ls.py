"""``fasttune ls PATH``: one row per trial of an experiment, as a table, CSV or JSON.

Columns are the trial's id and status, every key of its last result (nested keys joined
with "/", its config as ``config/<key>``), its directory as ``path``, and
``best:<metric>``, the best value a trial reported over its whole history.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="fasttune")
    >>> _ = add_parser(parser.add_subparsers())
    >>> args = parser.parse_args(["ls", "results/my_sweep", "--sort", "loss", "--limit", "3"])
    >>> args.sort, args.limit, args.format
    ('loss', 3, None)
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import operator
import os
import re
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from fasttune._cli._arguments import positive_int
from fasttune._cli._experiment import ExperimentData, numeric, read_experiment
from fasttune._flatten import flatten_dict
from fasttune.error import TuneError

BEST_PREFIX = "best:"
DEFAULT_COLUMNS = ("trial_id", "status", "training_iteration", "time_total_s")
FILTER_OPS: Dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt,
}
FORMATS = ("table", "csv", "json")
_FILTER = re.compile(r"^\s*(.+?)\s*(==|!=|<=|>=|<|>)\s*(.*?)\s*$")

_HELP = """\
List the trials of an experiment, one row per trial. Works on finished, interrupted and
running experiments, without Ray.

PATH is an experiment directory (<storage_path>/<name>) or one trial's directory.

Columns: trial_id, status, path (the trial directory), every key of the trial's last
result (nested keys joined with "/": config keys are config/<key>), and
best:<metric>, the best value of <metric> over all the trial's results (by --mode).
By default: trial_id, status, training_iteration, time_total_s, the Tuner's metric
and best:<metric>, and every config/ column; default columns empty in every row are
left out. Status comes from the newest experiment snapshot; a trial made after it
shows what its files say (RUNNING, TERMINATED when its last result is done, ERROR
when it has an error.txt). A trial without result files (a simulated sweep writes
none) shows the last result the snapshot keeps, its only one (so best:<metric> is
its last value).
"""

_EPILOG = """\
examples:
  fasttune ls ~/fasttune_results/my_sweep
  fasttune ls ~/fasttune_results/my_sweep --sort best:loss --limit 5
  fasttune ls EXP --columns trial_id,config/lr,loss --filter "config/lr < 0.01" --filter "status == TERMINATED"
  fasttune ls EXP --format json -o trials.json
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``ls`` to the ``fasttune`` command's subparsers."""
    parser = subparsers.add_parser(
        "ls", help="list the trials of an experiment (table, CSV or JSON)", description=_HELP, epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", metavar="PATH", help="experiment directory, or one trial's directory; local, or a URI such as s3://bucket/prefix/name (pip install \"fasttune[storage]\")")
    parser.add_argument("--columns", metavar="A,B,...",
                        help="comma-separated columns to show, in this order (e.g. trial_id,config/lr,loss)")
    parser.add_argument("--sort", metavar="COL", help="sort the rows by this column (missing values last)")
    parser.add_argument("--desc", action="store_true", help="sort in descending order")
    parser.add_argument("--filter", metavar='"COL OP VALUE"', action="append", default=[], dest="filters",
                        help="keep rows where COL OP VALUE holds; OP is one of == != < <= > >=; numbers "
                             "compare as numbers, anything else as text; repeat to combine (all must hold)")
    parser.add_argument("--limit", metavar="N", type=positive_int("rows"), help="show at most N rows (after sort and filter)")
    parser.add_argument("--metric", help="metric of the default and best: columns (default: the Tuner's metric)")
    parser.add_argument("--mode", choices=("min", "max"), help="what best:<metric> means (default: the Tuner's mode)")
    parser.add_argument("--format", choices=FORMATS,
                        help="output format (default: from the -o file's extension, .csv or .json, else table)")
    parser.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")
    parser.set_defaults(func=run)
    return parser


# ---- the table -----------------------------------------------------------------------------
class TrialTable:
    """Every column of every trial, with ``best:<key>`` columns computed on demand.

    Example:
        >>> from fasttune._cli._experiment import ExperimentData, TrialData
        >>> t = TrialData("a", "TERMINATED", "/e/a", {"lr": 0.1},
        ...               [{"loss": 2.0}, {"loss": 1.5, "config": {"lr": 0.1}}])
        >>> table = TrialTable(ExperimentData("/e", [t], "loss", "min"))
        >>> table.rows[0]["loss"], table.rows[0]["config/lr"], table.value(0, "best:loss")
        (1.5, 0.1, 1.5)
    """

    def __init__(self, experiment: ExperimentData, metric: Optional[str] = None, mode: Optional[str] = None) -> None:
        self.experiment = experiment
        self.metric = metric or experiment.metric
        # The Tuner's mode belongs to the Tuner's metric: another metric needs --mode.
        self.mode = mode or (experiment.mode if self.metric == experiment.metric else None)
        self.rows: List[Dict[str, Any]] = []
        self._best: Dict[Tuple[int, str], Any] = {}
        self.columns: Dict[str, None] = {"trial_id": None, "status": None}
        for trial in experiment.trials:
            row: Dict[str, Any] = {"trial_id": trial.trial_id, "status": trial.status}
            for key, value in flatten_dict(trial.last_result).items():
                row.setdefault(key, value)
            for key, value in flatten_dict(trial.config or {}, prefix="config").items():
                row.setdefault(key, value)
            row["path"] = trial.path
            self.columns.update(dict.fromkeys(row))
            self.rows.append(row)

    def check_column(self, column: str, where: str) -> None:
        """Raise a TuneError naming the known columns when ``column`` is not one."""
        key = column[len(BEST_PREFIX):] if column.startswith(BEST_PREFIX) else column
        if key in self.columns:
            if column.startswith(BEST_PREFIX) and self.mode not in ("min", "max"):
                raise TuneError(f"Column {column!r} in {where} needs a mode: pass --mode min or --mode max.")
            return
        known = list(self.columns)
        shown = ", ".join(known[:40]) + (f", ... ({len(known) - 40} more)" if len(known) > 40 else "")
        raise TuneError(f"Unknown column {column!r} in {where}. Columns: {shown}; and best:<key> for any of them.")

    def value(self, index: int, column: str) -> Any:
        if column.startswith(BEST_PREFIX):
            if (index, column) not in self._best:  # it reads the whole history: once
                key = column[len(BEST_PREFIX):]
                self._best[index, column] = self.experiment.trials[index].best(key, self.mode or "min")
            return self._best[index, column]
        return self.rows[index].get(column)

    def default_columns(self) -> List[str]:
        columns = [c for c in DEFAULT_COLUMNS if c in self.columns]
        if self.metric and self.metric in self.columns:
            columns.append(self.metric)
            if self.mode in ("min", "max"):
                columns.append(BEST_PREFIX + self.metric)
        columns += [c for c in self.columns if c.startswith("config/") and c not in columns]
        keep = {"trial_id", "status"}
        return [c for c in columns if c in keep or any(self.value(i, c) is not None for i in range(len(self.rows)))]


def parse_filter(text: str) -> Tuple[str, str, str]:
    """``"COL OP VALUE"`` as ``(column, op, value)``.

    Example:
        >>> parse_filter("config/lr <= 0.1"), parse_filter("status==ERROR")
        (('config/lr', '<=', '0.1'), ('status', '==', 'ERROR'))
    """
    parts = text.split(None, 2)
    if len(parts) == 3 and parts[1] in FILTER_OPS:
        return parts[0], parts[1], parts[2]
    if len(parts) == 3 and set(parts[1]) <= set("=<>!~"):
        raise TuneError(f"Unknown operator {parts[1]!r} in --filter {text!r}; use one of "
                        f"{' '.join(FILTER_OPS)}, as in --filter \"loss < 0.5\".")
    match = _FILTER.match(text)
    if match is None or not match.group(3):
        raise TuneError(f"--filter {text!r} is not \"COLUMN OP VALUE\" (OP one of {' '.join(FILTER_OPS)}), "
                        "as in --filter \"loss < 0.5\".")
    return match.group(1), match.group(2), match.group(3)


def _matches(cell: Any, op: str, text: str) -> bool:
    if cell is None:
        return op == "!="
    number, wanted = numeric(cell), _as_number(text)
    if number is not None and wanted is not None:
        return FILTER_OPS[op](number, wanted)
    if isinstance(cell, bool) and text.lower() in ("true", "false"):
        return FILTER_OPS[op](cell, text.lower() == "true")
    return FILTER_OPS[op](_text(cell), text)


def _as_number(text: str) -> Optional[float]:
    try:
        return float(text)
    except ValueError:
        return None


def _sort_key(value: Any) -> Tuple[int, Any]:
    number = numeric(value)
    if number is not None:
        return (0, -math.inf if math.isnan(number) else number)
    return (1, _text(value))


def select(table: TrialTable, columns: Sequence[str], filters: Sequence[str] = (), sort: Optional[str] = None,
           desc: bool = False, limit: Optional[int] = None) -> List[List[Any]]:
    """The table's rows (as lists of values in ``columns`` order) that pass every filter,
    sorted and cut to ``limit``.

    Raises:
        TuneError: an unknown column or operator, or a filter that does not parse.
    """
    for column in columns:
        table.check_column(column, "--columns")
    parsed = [parse_filter(f) for f in filters]
    for column, _, _ in parsed:
        table.check_column(column, "--filter")
    if sort is not None:
        table.check_column(sort, "--sort")
    indices = [i for i in range(len(table.rows))
               if all(_matches(table.value(i, c), op, v) for c, op, v in parsed)]
    if sort is not None:
        present = [i for i in indices if table.value(i, sort) is not None]
        present.sort(key=lambda i: _sort_key(table.value(i, sort)), reverse=desc)
        indices = present + [i for i in indices if table.value(i, sort) is None]
    if limit is not None:
        indices = indices[:limit]
    return [[table.value(i, c) for c in columns] for i in indices]


# ---- rendering -----------------------------------------------------------------------------
def _text(value: Any) -> str:
    """A cell as CSV text: numbers in full (they read back exactly), lists and dicts as JSON."""
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=str)
    return str(value)


def table_cell(value: Any) -> str:
    """A cell as the table shows it: floats to 6 significant digits, the rest as in CSV."""
    if isinstance(value, float):
        return f"{value:.6g}"
    return _text(value)


def render(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str) -> str:
    """The rows as ``fmt`` (table, csv or json) text."""
    if fmt == "json":
        # A value JSON has no type for (a snapshot's placeholder for a pickled object) as its text.
        return json.dumps([dict(zip(columns, row)) for row in rows], indent=2, default=str) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([_text(v) for v in row] for row in rows)
        return out.getvalue()
    cells = [[table_cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    right = [bool(rows) and all(v is None or numeric(v) is not None for v in (r[i] for r in rows))
             for i in range(len(columns))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right)).rstrip()

    lines = [line(columns), line(["-" * w for w in widths])] + [line(r) for r in cells]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    """Carry out ``fasttune ls`` for parsed ``args``."""
    experiment = read_experiment(args.path)
    table = TrialTable(experiment, args.metric, args.mode)
    if args.metric and args.metric not in table.columns:
        table.check_column(args.metric, "--metric")
    columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else table.default_columns()
    rows = select(table, columns, args.filters, args.sort, args.desc, args.limit)
    fmt = args.format
    if fmt is None:
        extension = os.path.splitext(args.output or "")[1].lower()
        fmt = {".csv": "csv", ".json": "json"}.get(extension, "table")
    text = render(columns, rows, fmt)
    if args.output:
        with open(args.output, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        print(f"Wrote {len(rows)} trials to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
