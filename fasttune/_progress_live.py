"""The default progress view in a terminal: a rich Live display, redrawn in place.

It shows the time running, results processed and their rate, the trials per status, a
progress bar when the number of trials is known, the best trial so far and (``verbose
>= 2``) a table of the top trials by the metric.  Lines printed meanwhile (per-trial
results at ``verbose >= 2``) scroll above it.  Needs ``rich`` (``pip install
fasttune[rich]``).

Example:
    >>> import io
    >>> from rich.console import Console
    >>> from fasttune.experiment.trial import Trial
    >>> trial = Trial("train", {"lr": 0.1}, trial_id="a_00000", evaluated_params={"lr": 0.1})
    >>> trial.last_result = {"loss": 0.25}
    >>> console = Console(file=io.StringIO(), force_terminal=True, width=100)
    >>> reporter = LiveReporter(metric="loss", mode="min", console=console)
    >>> reporter.setup(total_samples=4)
    >>> console.print(reporter.render([trial], done=False))
    >>> "best loss=0.25" in console.file.getvalue()
    True
"""
from __future__ import annotations

import time
from typing import Any, Dict, List

from fasttune._optional import import_optional
from fasttune._progress_view import duration, results_text
from fasttune.progress_reporter import TuneReporterBase

_STATUS_STYLES = {"RUNNING": "green", "PENDING": "yellow", "PAUSED": "cyan", "TERMINATED": "blue", "ERROR": "red"}


def import_rich() -> Any:
    return import_optional(
        "rich", "rich", "The live progress view",
        advice="Without it fasttune prints plain status lines (tune.CLIReporter).",
    )


class LiveReporter(TuneReporterBase):
    """A rich Live view of the sweep: the default reporter in a terminal with rich.

    Args:
        refresh_per_second: Redraws per second at most (each redraw builds the view
            from the trial table: cheap, but not free at 100,000 results/s).
        console: The rich Console to draw on (default: a new one on stdout).
        **kwargs: The arguments of :class:`fasttune.progress_reporter.TuneReporterBase`.
    """

    def __init__(self, *, refresh_per_second: float = 1.0, console: Any = None, **kwargs: Any) -> None:
        import_rich()
        if not isinstance(refresh_per_second, (int, float)) or isinstance(refresh_per_second, bool) or \
                not refresh_per_second > 0:
            raise ValueError(f"refresh_per_second must be a number > 0, got {refresh_per_second!r}.")
        kwargs.setdefault("max_report_frequency", 1.0 / refresh_per_second)
        kwargs.setdefault("max_progress_rows", 10)
        super().__init__(**kwargs)
        self._console = console
        self._live: Any = None

    def __getstate__(self) -> Dict[str, Any]:
        state = super().__getstate__()
        state["_live"] = None
        state["_console"] = None
        return state

    def render(self, trials: List[Any], done: bool, *sys_info: str) -> Any:
        """The view of ``trials`` as a rich renderable."""
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        view = self._view(trials, done, order="metric")
        elapsed = time.time() - self._start_time
        header = Text.assemble(("fasttune", "bold"), f"  running for {duration(elapsed)}")
        throughput = results_text(view, elapsed)
        if throughput:
            header.append("  " + throughput)
        parts: List[Any] = [header]
        counts = Text("Trials: ")
        for i, (name, n) in enumerate(sorted(view.counts.items())):
            counts.append(("  " if i else "") + f"{n} {name}", style=_STATUS_STYLES.get(name, ""))
        if not view.counts:
            counts.append("none yet")
        parts.append(counts)
        if view.total_samples:
            bar = Table.grid(padding=(0, 1))
            bar.add_row(ProgressBar(total=view.total_samples, completed=view.num_finished, width=40),
                        Text(f"{view.num_finished}/{view.total_samples} trials finished"))
            parts.append(bar)
        if view.best_trial is not None:
            parts.append(Text.assemble("Best trial: ", (str(view.best_trial), "bold"),
                                       f"  best {view.metric}={view.best_value:.6g}  config={view.best_trial.config}"))
        parts.extend(Text(info, style="dim") for info in sys_info if info)
        if trials and (self._verbose >= 2 or self._print_intermediate_tables):
            headers, cells = self._table(view)
            table = Table(title=None, header_style="bold")
            for i, heading in enumerate(headers):
                table.add_column(heading, justify="left" if i < 2 else "right")
            for row, status in zip(cells, view.row_status):
                row[1] = f"[{_STATUS_STYLES.get(status, '')}]{status}[/]"
                table.add_row(*row)
            parts.append(table)
            if view.hidden:
                parts.append(Text(f"... {view.hidden} more trials not shown ({view.hidden_by_status})",
                                  style="dim"))
        if view.num_errored:
            names = ", ".join(str(t) for t in view.errored[:5])
            more = f" and {view.num_errored - 5} more" if view.num_errored > 5 else ""
            parts.append(Text(f"Errored trials: {view.num_errored} ({names}{more}); see each error.txt",
                              style="red"))
        return Group(*parts)

    def report(self, trials: List[Any], done: bool, *sys_info: str) -> None:
        from rich.live import Live

        renderable = self.render(trials, done, *sys_info)
        if self._live is None:
            if self._console is None:
                from rich.console import Console

                self._console = Console()
            self._live = Live(renderable, console=self._console, auto_refresh=False, transient=False,
                              redirect_stdout=True, redirect_stderr=True)
            self._live.start(refresh=True)
        else:
            self._live.update(renderable, refresh=True)
        if done:
            self._close()

    def _close(self) -> None:
        """Stop the live display, leaving its last state on screen."""
        if self._live is not None:
            live, self._live = self._live, None
            live.stop()
