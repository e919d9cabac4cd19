"""Live progress of a sweep (``ray.tune.progress_reporter``).

``tune.run`` and ``Tuner.fit`` ask their reporter ``should_report(trials, done)`` after
every step of the experiment loop and, when it says yes, call ``report(trials, done,
*sys_info)``.  Without a reporter given, fasttune picks one: an HTML view inside a
Jupyter notebook (:class:`JupyterNotebookReporter`), a rich live view in a terminal when
``rich`` is installed, and :class:`CLIReporter`'s plain text elsewhere (CI logs).

Example:
    >>> import fasttune as tune
    >>> reporter = tune.CLIReporter(metric_columns={"loss": "Loss"}, parameter_columns=["lr"],
    ...                             max_report_frequency=10)
    >>> reporter.add_metric_column("accuracy", "Acc")
    >>> run_config = tune.RunConfig(progress_reporter=reporter, verbose=1)
"""
from __future__ import annotations

import datetime
import html
import math
import numbers
import sys
import time
from typing import Any, Dict, List, Mapping, Optional

from fasttune._optional import import_optional
from fasttune._progress_view import (
    AUTO_RESULT_KEYS,
    DEFAULT_METRIC_COLUMNS,
    ColumnSpec,
    ProgressView,
    TrialColumns,
    best_trial_line,
    build_view,
    counts_line,
    duration,
    results_text,
    table_cells,
)
from fasttune._text_table import text_table
from fasttune.result import DEFAULT_METRIC  # noqa: F401 - Ray Tune has it here too

__all__ = ["ProgressReporter", "TuneReporterBase", "CLIReporter", "JupyterNotebookReporter"]

def in_notebook() -> bool:
    """Whether this process is a Jupyter (IPython kernel) session."""
    ipython = sys.modules.get("IPython")  # a kernel has imported it; looking costs no import
    if ipython is None:
        return False
    shell = ipython.get_ipython() if hasattr(ipython, "get_ipython") else None
    return shell is not None and (type(shell).__name__ == "ZMQInteractiveShell" or hasattr(shell, "kernel"))


#: Whether this module was imported in a Jupyter notebook, as Ray Tune's constant
#: (fasttune's default reporter asks :func:`in_notebook` again when a run starts).
IS_NOTEBOOK = in_notebook()


class ProgressReporter:
    """Base class of experiment progress reporters.

    Subclass it and implement :meth:`should_report` and :meth:`report`; pass an instance
    as ``tune.run(progress_reporter=...)`` or ``RunConfig(progress_reporter=...)``.
    ``should_report`` is called after every loop step (many thousands of times a second
    in a fast sweep), so keep it O(1), e.g. time-based.

    Example:
        >>> import time
        >>> class EveryTenSeconds(ProgressReporter):
        ...     def __init__(self):
        ...         self.last = 0.0
        ...     def should_report(self, trials, done=False):
        ...         if done or time.monotonic() - self.last > 10:
        ...             self.last = time.monotonic()
        ...             return True
        ...         return False
        ...     def report(self, trials, done, *sys_info):
        ...         print(f"{len(trials)} trials", "(done)" if done else "")
    """

    def setup(self, start_time: Optional[float] = None, total_samples: Optional[int] = None,
              metric: Optional[str] = None, mode: Optional[str] = None, **kwargs: Any) -> None:
        """Called once before the loop: the start (``time.time()``), the number of trials
        the search will make (None: unknown), and the experiment's metric and mode."""

    def should_report(self, trials: List[Any], done: bool = False) -> bool:
        """Whether to report now; ``done`` is True for the last call, after the loop."""
        raise NotImplementedError

    def report(self, trials: List[Any], done: bool, *sys_info: str) -> None:
        """Show the progress of ``trials``; ``sys_info`` are extra lines (the scheduler's)."""
        raise NotImplementedError


def _check_columns(value: Any, name: str) -> Optional[ColumnSpec]:
    if value is None:
        return None
    if isinstance(value, Mapping):
        bad = [k for k, v in value.items() if not isinstance(k, str) or not isinstance(v, str)]
        if bad:
            raise TypeError(f"{name} as a dict maps result keys to column headings, both str; "
                            f"{bad[0]!r} -> {value[bad[0]]!r} is not.")
        return dict(value)
    if isinstance(value, (list, tuple)):
        bad = [v for v in value if not isinstance(v, str)]
        if bad:
            raise TypeError(f"{name} must list result keys as str, got {bad[0]!r}.")
        if len(set(value)) != len(value):
            raise ValueError(f"{name} names a column twice: {list(value)}.")
        return list(value)
    raise TypeError(f"{name} must be a list of keys or a dict of key -> heading, "
                    f"got {type(value).__name__} {value!r}; e.g. {name}=['loss'] or {{'loss': 'Loss'}}.")


def _check_count(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}.")
    return int(value)


def _check_mode(mode: Any) -> Optional[str]:
    if mode is not None and mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min', 'max' or None, got {mode!r}.")
    return mode


class TuneReporterBase(ProgressReporter):
    """What fasttune's reporters share: columns, the best trial, time-based reporting.

    Args:
        metric_columns: Result keys to show as columns: a list, or a dict of key ->
            heading.  Default: Ray Tune's (``mean_accuracy``, ``mean_loss``,
            ``training_iteration``, ``time_total_s``, ...) plus up to ``infer_limit``
            numeric metrics the trials report.
        parameter_columns: Config keys to show (list, or dict of key -> heading);
            default: every searched parameter.
        total_samples: How many trials the search will make (usually set by ``setup``).
        max_progress_rows: Rows of the trial table while the sweep runs (all at the end).
        max_error_rows: Rows of the errored-trials table while the sweep runs.
        max_column_length: Longer cells and headings are cut to this many characters.
        max_report_frequency: Seconds between reports.
        infer_limit: How many reported metrics to add as columns when
            ``metric_columns`` is not given.
        print_intermediate_tables: Show the trial table in every report, not only the
            last; ``None``: at ``verbose=3``.
        metric, mode: What "best" means (default: ``TuneConfig``'s metric and mode).
        sort_by_metric: List TERMINATED trials best first.

    Example:
        >>> r = CLIReporter(metric_columns=["loss"])
        >>> r.add_metric_column("loss")
        Traceback (most recent call last):
        ...
        ValueError: Column loss already exists.
    """

    DEFAULT_COLUMNS = DEFAULT_METRIC_COLUMNS
    VALID_SUMMARY_TYPES = (int, float, numbers.Real)

    def __init__(
        self,
        *,
        metric_columns: Optional[ColumnSpec] = None,
        parameter_columns: Optional[ColumnSpec] = None,
        total_samples: Optional[int] = None,
        max_progress_rows: int = 20,
        max_error_rows: int = 20,
        max_column_length: int = 20,
        max_report_frequency: float = 5,
        infer_limit: int = 3,
        print_intermediate_tables: Optional[bool] = None,
        metric: Optional[str] = None,
        mode: Optional[str] = None,
        sort_by_metric: bool = False,
    ) -> None:
        metric_columns = _check_columns(metric_columns, "metric_columns")
        self._metrics_override = metric_columns is not None
        self._metric_columns: ColumnSpec = metric_columns if metric_columns is not None else dict(DEFAULT_METRIC_COLUMNS)
        self._parameter_columns: ColumnSpec = _check_columns(parameter_columns, "parameter_columns") or []
        self._inferred_metrics: Dict[str, str] = {}
        self._total_samples = None if total_samples is None else _check_count(total_samples, "total_samples", 0)
        self._max_progress_rows = _check_count(max_progress_rows, "max_progress_rows", 1)
        self._max_error_rows = _check_count(max_error_rows, "max_error_rows", 0)
        self._max_column_length = _check_count(max_column_length, "max_column_length", 4)
        self._infer_limit = _check_count(infer_limit, "infer_limit", 0)
        if isinstance(max_report_frequency, bool) or not isinstance(max_report_frequency, numbers.Real) \
                or not max_report_frequency >= 0:
            raise ValueError(f"max_report_frequency must be a number of seconds >= 0, got {max_report_frequency!r}.")
        self._max_report_frequency = float(max_report_frequency)
        if print_intermediate_tables is not None and not isinstance(print_intermediate_tables, bool):
            raise TypeError(f"print_intermediate_tables must be None, True or False, got {print_intermediate_tables!r}.")
        self._intermediate_tables_given = print_intermediate_tables
        if metric is not None and not isinstance(metric, str):
            raise TypeError(f"metric must be a result key (str) or None, got {metric!r}.")
        self._user_metric, self._user_mode = metric, _check_mode(mode)
        self._metric, self._mode = metric, mode
        self._sort_by_metric = bool(sort_by_metric)
        self._start_time = time.time()
        self._last_report_time = -math.inf
        self._source: Any = None  # the running experiment's columns (set by the run loop)
        self._verbose = 3  # Ray Tune's default verbosity when used on its own
        self._print_intermediate_tables = self._verbose >= 3 if print_intermediate_tables is None \
            else print_intermediate_tables

    # ---- setup -------------------------------------------------------------------------
    def setup(self, start_time: Optional[float] = None, total_samples: Optional[int] = None,
              metric: Optional[str] = None, mode: Optional[str] = None, **kwargs: Any) -> None:
        self.set_start_time(start_time)
        self.set_total_samples(total_samples)
        self.set_search_properties(metric=metric, mode=mode)

    def set_search_properties(self, metric: Optional[str], mode: Optional[str]) -> bool:
        """Take the experiment's metric and mode, unless this reporter was given its own."""
        if (self._user_metric and metric) or (self._user_mode and mode):
            raise ValueError(
                "The progress reporter was created with its own metric/mode "
                f"({self._user_metric!r}, {self._user_mode!r}) and the experiment sets them too "
                f"({metric!r}, {mode!r}); remove them from the reporter or from TuneConfig / tune.run.")
        self._metric = self._user_metric or metric
        self._mode = self._user_mode or _check_mode(mode)
        if self._metric is None and self._mode:
            self._metric = DEFAULT_METRIC
        return True

    def set_total_samples(self, total_samples: Optional[int]) -> None:
        self._total_samples = total_samples

    def set_start_time(self, timestamp: Optional[float] = None) -> None:
        """When the sweep started (``time.time()``); None: now."""
        self._start_time = time.time() if timestamp is None else float(timestamp)

    def _attach(self, source: Any, verbose: int) -> None:
        """Called by the run loop: read trial state from ``source`` (the runner's
        TrialTable as numpy columns) instead of from every trial object."""
        self._source = source
        self._verbose = verbose
        if self._intermediate_tables_given is None:
            self._print_intermediate_tables = verbose >= 3

    def __getstate__(self) -> Dict[str, Any]:
        # Saved with the Tuner's RunConfig: keep the settings, not a run's live state.
        state = self.__dict__.copy()
        state["_source"] = None
        return state

    # ---- reporting -----------------------------------------------------------------------
    def should_report(self, trials: List[Any], done: bool = False) -> bool:
        """True at most once every ``max_report_frequency`` seconds, and when ``done``."""
        now = time.monotonic()
        if now - self._last_report_time > self._max_report_frequency:
            self._last_report_time = now
            return True
        return done

    def add_metric_column(self, metric: str, representation: Optional[str] = None) -> None:
        """Show result key ``metric`` as a column headed ``representation`` (default: the key)."""
        self._add_column("_metric_columns", metric, representation, "metric")
        self._metrics_override = True

    def add_parameter_column(self, parameter: str, representation: Optional[str] = None) -> None:
        """Show config key ``parameter`` as a column headed ``representation``."""
        self._add_column("_parameter_columns", parameter, representation, "parameter")

    def _add_column(self, attr: str, key: str, representation: Optional[str], kind: str) -> None:
        if not isinstance(key, str):
            raise TypeError(f"add_{kind}_column takes the {kind}'s key as a str, got {key!r}.")
        columns = getattr(self, attr)
        if key in columns:
            raise ValueError(f"Column {key} already exists.")
        if isinstance(columns, dict):
            columns[key] = representation or key
        elif representation is not None and representation != key:
            raise ValueError(
                f"add_{kind}_column({key!r}, {representation!r}): this reporter's {kind} columns are a "
                f"list, so a column's heading is its key; create the reporter with a dict of "
                f"key -> heading to give headings.")
        else:
            columns.append(key)

    def _columns(self, trials: List[Any]) -> TrialColumns:
        source = self._source
        if source is not None and source.covers(trials):
            return source.columns(self._metric)
        return TrialColumns.from_trials(trials, self._metric)

    def _view(self, trials: List[Any], done: bool, order: str = "status") -> ProgressView:
        if self._sort_by_metric and (self._metric is None or self._mode is None):
            import warnings

            warnings.warn("sort_by_metric needs both metric and mode; the table is not sorted.", stacklevel=3)
            self._sort_by_metric = False
        view = build_view(
            trials, self._columns(trials), metric=self._metric, mode=self._mode,
            max_rows=None if done and order == "status" else self._max_progress_rows, order=order,
            sort_by_metric=self._sort_by_metric, max_error_rows=None if done else self._max_error_rows,
            total_samples=self._total_samples)
        if not self._metrics_override:
            self._infer_user_metrics(view.rows, self._infer_limit)
        return view

    def _infer_user_metrics(self, trials: List[Any], limit: int = 4) -> Dict[str, str]:
        """Add up to ``limit`` numeric metrics the shown trials report as columns."""
        for trial in trials:
            if len(self._inferred_metrics) >= limit:
                break
            for key, value in trial.last_result.items():
                if len(self._inferred_metrics) >= limit:
                    break
                if key not in DEFAULT_METRIC_COLUMNS and key not in AUTO_RESULT_KEYS and \
                        isinstance(value, numbers.Real) and not isinstance(value, bool):
                    self._inferred_metrics[key] = key
                    self._metric_columns[key] = key  # type: ignore[index]
        return self._inferred_metrics

    def _show_table(self, done: bool) -> bool:
        return self._print_intermediate_tables or (done and self._verbose >= 2)

    def _table(self, view: ProgressView):
        return table_cells(view, self._metric_columns, self._parameter_columns, self._max_column_length)

    def _progress_str(self, trials: List[Any], done: bool, *sys_info: str, fmt: str = "psql",
                      delim: str = "\n") -> str:
        """The plain-text report: status header, best trial, counts, tables."""
        view = self._view(trials, done)
        now = time.time()
        elapsed = now - self._start_time
        clock = datetime.datetime.fromtimestamp(now).strftime("%Y-%m-%d %H:%M:%S")
        lines = ["== Status ==", f"Current time: {clock} (running for {duration(elapsed)})"]
        throughput = results_text(view, elapsed)
        if throughput:
            lines.append(f"Processed: {throughput}")
        lines.extend(info for info in sys_info if info)
        best = best_trial_line(view, self._parameter_columns)
        if best:
            lines.append(best)
        if trials and getattr(trials[0], "experiment_path", None):
            lines.append(f"Result logdir: {trials[0].experiment_path}")
        lines.append(counts_line(view))
        if trials and self._show_table(done):
            headers, cells = self._table(view)
            lines.append(text_table(headers, cells))
            if view.hidden:
                lines.append(f"... {view.hidden} more trials not shown ({view.hidden_by_status})")
        if view.num_errored:
            lines.extend(_error_lines(view, self._max_error_rows if not done else None))
        return delim.join(lines) + delim


def _error_rows(view: ProgressView) -> List[List[str]]:
    return [[str(t), f"{t.num_failures}{'' if t.status == 'ERROR' else '*'}", str(t.error_file or "")]
            for t in view.errored]


def _error_lines(view: ProgressView, max_rows: Optional[int]) -> List[str]:
    lines = [f"Number of errored trials: {view.num_errored}"]
    if max_rows is not None and view.num_errored > max_rows:
        lines.append(f"Table truncated to {max_rows} rows ({view.num_errored - max_rows} overflow)")
    lines.append(text_table(["Trial name", "# failures", "error file"], _error_rows(view)))
    if any(t.status != "ERROR" for t in view.errored):
        lines.append("* The trial terminated successfully after retrying.")
    return lines


class CLIReporter(TuneReporterBase):
    """Prints the status of the sweep as plain text: for terminals and CI logs.

    Every ``max_report_frequency`` seconds: the time running, results processed and
    their rate, the best trial so far, the trials per status and (with
    ``print_intermediate_tables``, or ``verbose=3``) a table of the trials; at the end
    the table of all trials (``verbose >= 2``) and of the errored ones.  Takes the
    arguments of :class:`TuneReporterBase`.

    Example:
        >>> from fasttune.experiment.trial import Trial
        >>> trial = Trial("train", {"lr": 0.1}, trial_id="a_00000", evaluated_params={"lr": 0.1})
        >>> trial.last_result = {"loss": 0.25, "training_iteration": 3}
        >>> reporter = CLIReporter(metric="loss", mode="min", print_intermediate_tables=True)
        >>> text = reporter._progress_str([trial], done=False)
        >>> "Current best trial: a_00000 with loss=0.25" in text
        True
    """

    def _print(self, msg: str) -> None:
        print(msg, flush=True)

    def report(self, trials: List[Any], done: bool, *sys_info: str) -> None:
        self._print(self._progress_str(trials, done, *sys_info))


class JupyterNotebookReporter(TuneReporterBase):
    """Shows the status of the sweep in a Jupyter notebook as HTML, updated in place.

    Args:
        overwrite: Clear the cell's output before the first report.
        The other arguments are :class:`TuneReporterBase`'s (as :class:`CLIReporter`).

    Needs IPython (``pip install ipython``; notebooks have it).

    Example:
        >>> reporter = JupyterNotebookReporter(overwrite=False, metric_columns=["loss"])
    """

    def __init__(
        self,
        *,
        overwrite: bool = True,
        metric_columns: Optional[ColumnSpec] = None,
        parameter_columns: Optional[ColumnSpec] = None,
        total_samples: Optional[int] = None,
        max_progress_rows: int = 20,
        max_error_rows: int = 20,
        max_column_length: int = 20,
        max_report_frequency: float = 5,
        infer_limit: int = 3,
        print_intermediate_tables: Optional[bool] = None,
        metric: Optional[str] = None,
        mode: Optional[str] = None,
        sort_by_metric: bool = False,
    ) -> None:
        # Spelled out, not **kwargs, so that the signature shows what CLIReporter takes.
        super().__init__(
            metric_columns=metric_columns, parameter_columns=parameter_columns, total_samples=total_samples,
            max_progress_rows=max_progress_rows, max_error_rows=max_error_rows, max_column_length=max_column_length,
            max_report_frequency=max_report_frequency, infer_limit=infer_limit,
            print_intermediate_tables=print_intermediate_tables, metric=metric, mode=mode,
            sort_by_metric=sort_by_metric,
        )
        self._overwrite = bool(overwrite)
        self._display_handle: Any = None

    def __getstate__(self) -> Dict[str, Any]:
        state = super().__getstate__()
        state["_display_handle"] = None
        return state

    def report(self, trials: List[Any], done: bool, *sys_info: str) -> None:
        self.display(self._progress_html(trials, done, *sys_info))

    def display(self, string: str) -> None:
        """Show ``string`` (HTML) in the cell: the first time as a new display, then by
        updating that display."""
        ipython_display = import_optional(
            "IPython.display", "jupyter", "JupyterNotebookReporter", package="ipython",
            advice="Or use tune.CLIReporter outside notebooks.",
        )
        HTML, clear_output, display = ipython_display.HTML, ipython_display.clear_output, ipython_display.display
        if self._display_handle is None:
            if self._overwrite:
                clear_output(wait=True)
            self._display_handle = display(HTML(string), display_id=True)
        else:
            self._display_handle.update(HTML(string))

    def _progress_html(self, trials: List[Any], done: bool, *sys_info: str) -> str:
        """The report as an HTML fragment: status, best trial, trials table, errors."""
        view = self._view(trials, done)
        elapsed = time.time() - self._start_time
        esc = html.escape
        status = [("Current time:", datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")),
                  ("Running for:", duration(elapsed))]
        throughput = results_text(view, elapsed)
        if throughput:
            status.append(("Processed:", throughput))
        status.append(("Trials:", counts_line(view).split(": ", 1)[1]))
        parts = ['<div class="fasttune-status">', "<h3>Tune Status</h3>", _html_table(None, status)]
        parts.extend(f"<p>{esc(info)}</p>" for info in sys_info if info)
        best = best_trial_line(view, self._parameter_columns)
        if best:
            parts.append(f'<p class="best-trial">{esc(best)}</p>')
        if view.total_samples:
            parts.append(f'<progress value="{view.num_finished}" max="{view.total_samples}"></progress> '
                         f"{view.num_finished}/{view.total_samples} trials finished")
        if trials:
            headers, cells = self._table(view)
            parts.append("<h3>Trial Progress</h3>")
            parts.append(_html_table(headers, cells))
            if view.hidden:
                parts.append(f"<p>... {view.hidden} more trials not shown ({esc(view.hidden_by_status)})</p>")
        if view.num_errored:
            parts.append(f"<h3>Errored trials: {view.num_errored}</h3>")
            parts.append(_html_table(["Trial name", "# failures", "error file"], _error_rows(view)))
        parts.append("</div>")
        return "\n".join(parts)


def _html_table(headers: Optional[List[str]], rows: List[Any]) -> str:
    esc = html.escape
    out = ["<table>"]
    if headers:
        out.append("<thead><tr>" + "".join(f"<th>{esc(str(h))}</th>" for h in headers) + "</tr></thead>")
    out.append("<tbody>")
    out.extend("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    out.append("</tbody></table>")
    return "".join(out)


def check_progress_reporter(reporter: Any, where: str) -> Optional[ProgressReporter]:
    """``reporter`` if it is None or a ProgressReporter; else a TypeError naming ``where``."""
    if reporter is None or isinstance(reporter, ProgressReporter):
        return reporter
    raise TypeError(
        f"{where} must be a tune.ProgressReporter (e.g. tune.CLIReporter(...)), got "
        f"{type(reporter).__name__}; subclass tune.ProgressReporter and implement should_report and report.")
