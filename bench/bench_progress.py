"""What live progress costs: the sweeps of ``bench.workloads`` with progress off and on.

Runs ``result_throughput`` (2 trials reporting N results each) and ``trial_bookkeeping``
(M one-result trials) on fasttune with ``verbose=0`` (no reporter), ``verbose=1`` (the
plain CLIReporter, as in CI logs; its lines go to /dev/null), ``verbose=1`` with the rich
live view drawing on a terminal console whose output is discarded, and ``verbose=3``
(the default: tables in every update, each trial's detailed result).  Settings alternate
within each repeat, the order flipping every repeat, in one process with one Ray; the
report gives the median fit time of each and its ratio to ``verbose=0``.

    python -m bench.bench_progress                      # 5 repeats, N=100,000, M=5,000
    python -m bench.bench_progress --repeats 3 --results 50000 --trials 2000
    python -m bench.bench_progress --micro             # per-step and per-report costs, no Ray

``--micro`` times, on a TrialTable of M trials (a third running, the rest terminated):
the loop's per-step cost of progress when no report is due (``ProgressDriver.step``),
building one plain-text report, and one redraw of the rich live view.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import types
from typing import Any, Callable, Dict, List

import fasttune

from bench import workloads


def _tune_with(verbose: int, reporter: Callable[[], Any]) -> Any:
    """The fasttune module, with every RunConfig given this verbose and reporter."""
    module = types.SimpleNamespace(**{name: getattr(fasttune, name) for name in fasttune.__all__})

    def run_config(**kwargs: Any) -> Any:
        kwargs.update(verbose=verbose, progress_reporter=reporter())
        return fasttune.RunConfig(**kwargs)

    module.RunConfig = run_config
    return module


def _live_reporter() -> Any:
    from rich.console import Console

    from fasttune._progress_live import LiveReporter

    return LiveReporter(console=Console(file=io.StringIO(), force_terminal=True, width=160))


SETTINGS: Dict[str, Any] = {
    "verbose=0": lambda: _tune_with(0, lambda: None),
    "verbose=1 (CLIReporter)": lambda: _tune_with(1, fasttune.CLIReporter),
    "verbose=1 (rich live)": lambda: _tune_with(1, _live_reporter),
    "verbose=3 (CLIReporter)": lambda: _tune_with(3, fasttune.CLIReporter),
}


class _TableRunner:
    """The part of a TrialRunner progress reads: a TrialTable, its trials, the counters."""

    def __init__(self, trials: int) -> None:
        from fasttune import _corelib as core
        from fasttune.experiment.trial import Trial
        from fasttune.schedulers import FIFOScheduler

        self.table, self.metric, self.scheduler_alg = core.TrialTable("min"), "loss", FIFOScheduler()
        self.trials: List[Any] = []
        for i in range(trials):
            trial = Trial("train", {"x": i}, trial_id=f"m_{i:06d}", evaluated_params={"x": i})
            trial._attach(self.table, self.table.add())
            loss = float((i * 7919) % trials)
            self.table.set_status(trial._row, core.RUNNING)
            self.table.record_result(trial._row, 3, 1.0, loss)
            trial.last_result = {"loss": loss, "training_iteration": 3}
            if i % 3:
                self.table.set_status(trial._row, core.TERMINATED)
            self.trials.append(trial)
        self.results_processed = 3 * trials

    def get_trials(self) -> List[Any]:
        return self.trials


def _per_call_s(fn: Callable[[], Any], calls: int) -> float:
    import time

    fn()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def micro(trials: int, repeats: int) -> None:
    from rich.console import Console

    from fasttune._progress import ProgressDriver, RunnerColumns
    from fasttune._progress_live import LiveReporter

    runner = _TableRunner(trials)
    rows = []
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        quiet = fasttune.CLIReporter(max_report_frequency=1e9)
        driver = ProgressDriver(runner, reporter=quiet, verbose=2, metric="loss", mode="min", total_samples=trials)
        driver.step()  # the first report, then none is due
        rows.append(("ProgressDriver.step, no report due (verbose=2)", [_per_call_s(driver.step, 100_000)
                                                                         for _ in range(repeats)]))
        cli = fasttune.CLIReporter(print_intermediate_tables=True)
        cli.setup(total_samples=trials, metric=None, mode=None)
        cli.set_search_properties("loss", "min")
        cli._attach(RunnerColumns(runner), 3)
        rows.append(("CLIReporter report text, with table", [
            _per_call_s(lambda: cli._progress_str(runner.trials, False), 50) for _ in range(repeats)]))
        live = LiveReporter(console=Console(file=io.StringIO(), force_terminal=True, width=160))
        live.setup(total_samples=trials, metric="loss", mode="min")
        live._attach(RunnerColumns(runner), 3)
        rows.append(("LiveReporter view only (render)", [
            _per_call_s(lambda: live.render(runner.trials, False), 50) for _ in range(repeats)]))
        rows.append(("LiveReporter redraw (render + rich draw)", [
            _per_call_s(lambda: live.report(runner.trials, False), 10) for _ in range(repeats)]))
        live._close()
    print(f"\n| {trials:,} trials | median per call (n={repeats}) | min | max |")
    print("|---|---|---|---|")
    for name, values in rows:
        print(f"| {name} | {statistics.median(values) * 1e6:,.1f} us | {min(values) * 1e6:,.1f} us | "
              f"{max(values) * 1e6:,.1f} us |")


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--results", type=int, default=100_000, help="results per trial of result_throughput")
    parser.add_argument("--trials", type=int, default=5_000, help="trials of trial_bookkeeping")
    parser.add_argument("--settings", default=",".join(SETTINGS),
                        help="comma-separated subset of: " + ", ".join(SETTINGS))
    parser.add_argument("--micro", action="store_true", help="per-step and per-report costs only (no Ray)")
    args = parser.parse_args(argv)
    if args.micro:
        micro(args.trials, args.repeats)
        return 0

    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    import rich.live  # noqa: F401 - its one-time import (~0.2 s) is not what is measured
    import rich.table  # noqa: F401
    runs = [("result_throughput", workloads.result_throughput, args.results),
            ("trial_bookkeeping", workloads.trial_bookkeeping, args.trials)]
    times: Dict[tuple, List[float]] = {}
    names = [name.strip() for name in args.settings.split(",")]
    unknown = [name for name in names if name not in SETTINGS]
    if unknown or "verbose=0" not in names:
        parser.error(f"--settings must include 'verbose=0' and name only {list(SETTINGS)}; got {unknown or names}")
    for repeat in range(args.repeats):
        order = names if repeat % 2 == 0 else names[::-1]
        for workload, run, size in runs:
            for setting in order:
                with tempfile.TemporaryDirectory() as storage, open(os.devnull, "w") as sink:
                    with contextlib.redirect_stdout(sink):
                        out = run(SETTINGS[setting](), size, storage)
                if not out["complete"]:
                    print(f"incomplete run: {workload} {setting}: {out}", file=sys.stderr)
                    return 1
                times.setdefault((workload, setting), []).append(out["fit_s"])
                print(f"repeat {repeat + 1} {workload:18} {setting:24} fit {out['fit_s']:.2f}s", file=sys.stderr)
    print(f"\n| workload | setting | median fit_s (n={args.repeats}) | min | max | ratio to verbose=0 |")
    print("|---|---|---|---|---|---|")
    for workload, _, size in runs:
        base = statistics.median(times[(workload, "verbose=0")])
        for setting in names:
            t = times[(workload, setting)]
            print(f"| {workload} ({size:,}) | {setting} | {statistics.median(t):.2f} | {min(t):.2f} | "
                  f"{max(t):.2f} | {statistics.median(t) / base:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
