"""What the experiment loop calls to show progress: the reporter and per-trial lines.

``verbose`` as in Ray Tune: 0 silent; 1 status updates (the reporter) and, once, the
traceback of each trial that errors; 2 also a line per trial that completes; 3 also the
trial table in every update and each trial's detailed results (when it ends, and every
5 s while it reports).  ``None`` is Ray
Tune's default, 3.

Every loop step costs the reporter's ``should_report`` (time-based, O(1)) and one
``counts()`` of the TrialTable: per-trial lines come from
comparing the table's status and iteration columns, a few times a second at most,
never from a per-result hook.

Example:
    >>> from fasttune.progress_reporter import CLIReporter
    >>> isinstance(default_reporter(verbose=1, stdout_isatty=False), CLIReporter)
    True
"""
from __future__ import annotations

import math
import sys
import time
from typing import Any, Callable, List, Optional

import numpy as np

from fasttune import _corelib as core
from fasttune._flatten import lookup_nested
from fasttune._progress_view import TrialColumns
from fasttune.progress_reporter import (
    CLIReporter,
    JupyterNotebookReporter,
    ProgressReporter,
    TuneReporterBase,
    in_notebook,
)

#: Ray Tune's default verbosity (status, brief and detailed trial results).
DEFAULT_VERBOSE = 3
#: Seconds between a running trial's detailed results at verbose 3 (Ray Tune's 5 s).
DETAIL_INTERVAL_S = 5.0
#: Seconds between looks at which trials ended (their lines are printed together).
SCAN_INTERVAL_S = 0.2


class RunnerColumns:
    """A running experiment's trial state as numpy columns, read from its TrialTable."""

    def __init__(self, runner: Any) -> None:
        self._runner = runner

    def covers(self, trials: List[Any]) -> bool:
        """Whether ``trials`` are the runner's trials (row i is ``trials[i]``)."""
        return trials is self._runner.get_trials()

    def columns(self, metric: Optional[str]) -> TrialColumns:
        runner = self._runner
        return TrialColumns.from_table(runner.table, runner.get_trials(), runner.metric, metric,
                                       runner.results_processed)


def _rich_installed() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def default_reporter(verbose: int, stdout_isatty: Optional[bool] = None) -> TuneReporterBase:
    """The reporter used when none is given: the notebook view in Jupyter, the rich live
    view in a terminal (when rich is installed), plain text otherwise."""
    if in_notebook():
        return JupyterNotebookReporter(overwrite=verbose < 2)
    if stdout_isatty is None:
        stdout_isatty = bool(getattr(sys.stdout, "isatty", lambda: False)())
    if stdout_isatty and _rich_installed():
        from fasttune._progress_live import LiveReporter

        return LiveReporter()
    return CLIReporter()


def _pretty(result: dict, indent: str = "  ") -> List[str]:
    """A result as ``key: value`` lines, nested dicts indented, sorted, without config."""
    lines = []
    for key in sorted(result, key=str):
        value = result[key]
        if key == "config" or value is None:
            continue
        if isinstance(value, dict):
            lines.append(f"{indent}{key}:")
            lines.extend(_pretty(value, indent + "  "))
        else:
            lines.append(f"{indent}{key}: {value}")
    return lines


class TrialResultLines:
    """Per-trial lines: from verbose 1 an errored trial's traceback; at verbose 2 also one
    line per trial that completes; at verbose 3 the trial's detailed last result then, and
    every 5 s while it reports."""

    def __init__(self, runner: Any, verbose: int, metric: Optional[str], out: Callable[[str], None] = print) -> None:
        self._runner = runner
        self._verbose = verbose
        self._metric = metric
        self._out = out
        table = runner.table
        self._seen_status = np.array(table.column("status"))  # trials ended before now print nothing
        self._printed_iteration = np.array(table.column("iteration"))
        self._ended = self._ended_counts()
        self._last_scan = -math.inf
        self._last_details = time.monotonic()

    def _ended_counts(self) -> tuple:
        counts = self._runner.table.counts()
        return counts[core.TERMINATED], counts[core.ERROR]

    def step(self, force: bool = False) -> None:
        """Print what is new; cheap (one ``counts()``) when nothing is."""
        now = time.monotonic()
        details_due = self._verbose >= 3 and now - self._last_details >= DETAIL_INTERVAL_S
        if not force and not details_due:
            if now - self._last_scan < SCAN_INTERVAL_S or self._ended_counts() == self._ended:
                return
        self._last_scan = now
        self._ended = self._ended_counts()
        table, trials = self._runner.table, self._runner.get_trials()
        status = table.column("status")
        iteration = table.column("iteration")
        n = len(status)
        if len(self._seen_status) < n:  # trials added since: PENDING (0) when first seen
            self._seen_status = np.concatenate([self._seen_status, np.zeros(n - len(self._seen_status), np.uint8)])
            self._printed_iteration = np.concatenate(
                [self._printed_iteration, np.zeros(n - len(self._printed_iteration), np.int64)])
        ended = (status != self._seen_status) & ((status == core.TERMINATED) | (status == core.ERROR))
        if details_due or force:
            self._last_details = now
            if self._verbose >= 3:
                fresh = (status == core.RUNNING) & (iteration != self._printed_iteration) & (iteration > 0)
                for row in np.flatnonzero(fresh):
                    self._details(trials[row])
                self._printed_iteration[fresh] = iteration[fresh]
        for row in np.flatnonzero(ended):
            trial = trials[row]
            if self._verbose >= 3 and iteration[row] != self._printed_iteration[row]:
                self._details(trial)
            self._ended_line(trial, int(status[row]) == core.ERROR)
        self._printed_iteration[ended] = iteration[ended]
        self._seen_status = np.array(status)

    def _details(self, trial: Any) -> None:
        self._out("\n".join([f"Result for {trial}:"] + _pretty(trial.last_result)))

    def _ended_line(self, trial: Any, error: bool) -> None:
        if error:
            # The traceback once, as Ray Tune logs it when a trial fails; error.txt keeps it too.
            traceback_text = (trial.error_msg or "").rstrip()
            self._out(f"The trial {trial} errored with parameters={trial.config}. Error file: {trial.error_file}"
                      + (f"\n{traceback_text}" if traceback_text else ""))
        elif self._verbose < 2:
            return
        elif self._verbose >= 3:
            self._out(f"Trial {trial} completed.")
        elif self._metric is not None and lookup_nested(trial.last_result, self._metric) is not None:
            value = lookup_nested(trial.last_result, self._metric)
            shown = f"{value:.6g}" if isinstance(value, (int, float)) else str(value)
            self._out(f"Trial {trial} reported {self._metric}={shown} with parameters={trial.config}. "
                      "This trial completed.")
        else:
            metrics = ",".join(f"{k}={v}" for k, v in trial.last_result.items()
                               if k not in ("config",) and not isinstance(v, dict) and v is not None)
            self._out(f"Trial {trial} reported {metrics} with parameters={trial.config}. This trial completed.")


class ProgressDriver:
    """Reports a running experiment's progress: ``step()`` after each loop step,
    ``finish()`` after the loop, ``close()`` in any case (stops a live display)."""

    def __init__(self, runner: Any, *, reporter: Optional[ProgressReporter], verbose: Optional[int],
                 metric: Optional[str], mode: Optional[str], total_samples: Optional[int]) -> None:
        self._runner = runner
        self._verbose = DEFAULT_VERBOSE if verbose is None else int(verbose)
        self._reporter: Optional[ProgressReporter] = None
        self._lines: Optional[TrialResultLines] = None  # from verbose 1: errored trials' tracebacks
        if self._verbose < 1:
            return
        if reporter is None:
            reporter = default_reporter(self._verbose)
        reporter.setup(start_time=time.time(), total_samples=total_samples or None, metric=metric, mode=mode)
        if isinstance(reporter, TuneReporterBase):
            reporter._attach(RunnerColumns(runner), self._verbose)
        self._reporter = reporter
        self._lines = TrialResultLines(runner, self._verbose, metric or runner.metric)

    @property
    def reporter(self) -> Optional[ProgressReporter]:
        return self._reporter

    def _sys_info(self) -> List[str]:
        scheduler = self._runner.scheduler_alg
        return [scheduler.debug_string()] if hasattr(scheduler, "debug_string") else []

    def step(self) -> None:
        reporter = self._reporter
        if reporter is None:
            return
        if self._lines is not None:
            self._lines.step()
        trials = self._runner.get_trials()
        if reporter.should_report(trials, done=False):
            reporter.report(trials, False, *self._sys_info())

    def finish(self) -> None:
        reporter = self._reporter
        if reporter is None:
            return
        if self._lines is not None:
            self._lines.step(force=True)
        trials = self._runner.get_trials()
        if reporter.should_report(trials, done=True):
            reporter.report(trials, True, *self._sys_info())

    def close(self) -> None:
        close = getattr(self._reporter, "_close", None)
        if close is not None:
            close()
