"""Live progress of a sweep: one status line every few seconds, a summary at the end.

Plain lines work in a terminal and in CI logs alike.  ``verbose``: 0 silent, 1 status
lines, 2 also each finished trial, 3 also each trial start.
"""
from __future__ import annotations

import math
import sys
import time
from typing import Any, Optional

from fasttune import _corelib as core

_INTERVAL_S = 2.0


class ProgressPrinter:
    def __init__(self, runner: Any, metric: Optional[str], mode: Optional[str], verbose: int = 1, file: Any = None) -> None:
        self._runner = runner
        self._metric = metric
        self._mode = mode
        self._verbose = verbose
        self._file = file or sys.stdout
        self._start = time.monotonic()
        self._last = self._start
        self._last_results = 0

    def _best(self) -> Optional[tuple]:
        if not self._metric or not self._mode:
            return None
        column = self._runner.table.column("best_metric")
        if len(column) == 0:
            return None
        import numpy as np

        finite = np.isfinite(column)
        if not finite.any():
            return None
        values = np.where(finite, column, np.inf if self._mode == "min" else -np.inf)
        row = int(values.argmin() if self._mode == "min" else values.argmax())
        return self._runner.get_trials()[row], float(column[row])

    def status_line(self) -> str:
        counts = self._runner.table.counts()
        elapsed = time.monotonic() - self._start
        results = self._runner.results_processed
        rate = results / elapsed if elapsed > 0 else 0.0
        parts = [f"fasttune {elapsed:7.1f}s"]
        parts.append(" ".join(f"{name} {n}" for name, n in zip(core.STATUS_NAMES, counts) if n))
        parts.append(f"{results:,} results ({rate:,.0f}/s)")
        best = self._best()
        if best is not None:
            trial, value = best
            parts.append(f"best {self._metric}={value:.6g} ({trial})")
        return " | ".join(parts)

    def maybe_report(self) -> None:
        if self._verbose < 1:
            return
        now = time.monotonic()
        if now - self._last >= _INTERVAL_S:
            self._last = now
            print(self.status_line(), file=self._file, flush=True)

    def final_report(self) -> None:
        if self._verbose < 1:
            return
        print(self.status_line(), file=self._file, flush=True)
        trials = self._runner.get_trials()
        if not trials or self._verbose < 1:
            return
        metric = self._metric
        rows = []
        for trial in trials:
            value = trial.last_result.get(metric) if metric else None
            rows.append((trial, value))
        if metric and self._mode:
            def key(item: Any) -> float:
                v = item[1]
                if not isinstance(v, (int, float)) or math.isnan(v):
                    return math.inf
                return v if self._mode == "min" else -v

            rows.sort(key=key)
        shown = rows[:10]
        print(f"{'trial':<40} {'status':<10} {'iter':>6} {metric or '':>14}", file=self._file)
        for trial, value in shown:
            value_text = f"{value:.6g}" if isinstance(value, (int, float)) else ""
            print(
                f"{str(trial):<40.40} {trial.status:<10} {trial.iteration:>6} {value_text:>14}",
                file=self._file,
            )
        if len(rows) > len(shown):
            print(f"... and {len(rows) - len(shown)} more trials", file=self._file)
        self._file.flush()
