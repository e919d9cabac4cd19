"""What one short trial costs the driver (issue 20): its CPU per one-result trial, split by
phase and by default logger, beside Ray Tune's rates, driver memory, inodes and snapshots.

    python -m bench.per_trial --storage-root /dev/shm                 # every part, 3 repeats (~15 min)
    python -m bench.per_trial --parts breakdown --trials 2000 --repeats 1   # the breakdown alone
    python -m bench.per_trial --parts breakdown --profile             # + cProfile's cumulative times

Parts (``--parts``, default all of them):

``breakdown``
    ``bench.workloads.trial_bookkeeping_reuse`` on fasttune: ``--trials`` trials of a function
    trainable that reports once, random search (``x ~ uniform``), ``reuse_actors=True``, storage
    under ``--storage-root``, once per logger set (each run a fresh process, the sets' order
    reversed every repeat): ``default`` (the default loggers), ``none``
    (``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1``) and each default logger alone (``json``, ``csv``,
    ``tbx``: the variable set and ``RunConfig(callbacks=[that logger])``).  A logger's share is its
    run's CPU per trial less ``none``'s.  The child wraps the runner's methods (bench code only:
    nothing in fasttune changes) to count the main thread's CPU (``time.thread_time_ns``) in each
    phase of :data:`PHASES`, each exclusive of the phases it calls; a default logger's hooks are
    their own phase.  The counting's own cost, timed on a wrapped no-op first, is taken out of
    each phase and shown as its own row.  The window is the first ``TrialRunner.step()`` to ``Tuner.fit()``'s return;
    the process's CPU over it (all threads) is split into the main thread's phases, the rest of
    the main thread (``other``), the writer threads (their own CPU clocks) and the other threads
    (Ray's).  ``fit_cpu`` is the process CPU over the whole ``fit()``, as ``bench.sweeps``
    records it.  ``inodes`` counts the files and directories the sweep left.  With
    ``--profile`` one more ``default`` run goes under cProfile (no counters), for the
    cumulative times of the same methods.  ``--warmup N`` first runs an unmeasured sweep of
    ``N`` trials in the same process: Ray's one-time costs in a driver (about 0.2 s, mostly its
    first actor's serialization set-up) then fall outside the window, which leaves the cost
    each added trial brings.
``rates``
    ``trial_bookkeeping_reuse`` (fasttune ``--trials-rate``, Ray Tune ``--ray-trials``) and
    ``asha_trials`` (``--asha-trials`` / ``--ray-asha-trials``) through ``bench.sweeps``' child,
    the engines alternating; rates and their ratio, medians of the repeats.
``memory``
    ``bench.driver_memory`` at each ``--memory-trials``: peak RSS growth per added finished trial.
``snapshot``
    ``bench.bench_state`` at ``--snapshot-trials`` on the storage root: cold and warm snapshot.

Output: Markdown on stdout, ``bench/out/per-trial-<timestamp>.{json,md}`` and
``per-trial-latest.{json,md}``; exit status 1 if a run failed.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import functools
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import traceback
from collections import defaultdict
from typing import Any, Callable, Dict, List, Optional, Tuple

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The runner's phases: (phase, where it is counted).  Class methods are wrapped before the
# runner is built; the searcher's and the callbacks' on the runner's instances.
PHASES: List[Tuple[str, str]] = [
    ("creation: search step", "SearchAlgorithm.poll_trial / next_trial (less the Trial object)"),
    ("creation: Trial object", "Trial.__init__"),
    ("creation: add_trial", "TrialRunner.add_trial (table row, scheduler)"),
    ("creation: trial directory", "TrialRunner._take_config (hands params.json to the writer)"),
    ("dispatch", "TrialRunner._start_trial (spec, start on a pooled worker)"),
    ("executor: wait and collect", "RayTrialExecutor.get_next_executor_event (poll replies, decode)"),
    ("started", "TrialRunner._on_started"),
    ("result ingest", "TrialRunner._on_results"),
    ("completion", "TrialRunner._on_trial_end"),
    ("snapshot", "TrialRunner.checkpoint"),
    ("step's own", "TrialRunner.step less the above"),
    ("progress", "ProgressDriver.step"),
    ("end of experiment", "TrialRunner.cleanup, end_experiment_callbacks"),
]
LOGGER_PHASE = "logger: {}"  # a callback's hooks, by class name
OTHER_MAIN = "main thread, other (Tuner loop, ResultGrid)"
COUNTING = "the counters themselves (calibrated, taken out of the phases)"
WRITER_THREADS = {"fasttune-files": "writer thread: trial files", "fasttune-tbx": "writer thread: TensorBoard"}
OTHER_THREADS = "other threads (Ray)"
LOGGER_SETS = ("default", "none", "json", "csv", "tbx")
_LOGGER_CLASSES = {"json": "JsonLoggerCallback", "csv": "CSVLoggerCallback", "tbx": "TBXLoggerCallback"}


class PhaseClock:
    """Main-thread CPU per phase: ``own`` excludes the wrapped calls made inside, ``inclusive``
    counts a phase's outermost calls whole (cProfile's cumulative time), ``calls`` counts those.
    Calls on other threads pass through uncounted.  The counting costs CPU too (``thread_time_ns``
    is a system call: ~1 us on a quiet machine, several on a loaded one): :meth:`calibrate`
    measures it and :meth:`corrected` takes it out of each phase."""

    def __init__(self) -> None:
        self.own: Dict[str, int] = defaultdict(int)
        self.inclusive: Dict[str, int] = defaultdict(int)
        self.calls: Dict[str, int] = defaultdict(int)
        self.wrapped_calls: Dict[str, int] = defaultdict(int)  # every call, nested ones included
        self.calls_inside: Dict[str, int] = defaultdict(int)  # wrapped calls made directly inside
        self.inside_ns = self.outside_ns = 0.0
        self._stack: List[List[Any]] = []  # [start ns, ns of wrapped calls inside, phase]
        self._active: Dict[str, int] = defaultdict(int)
        self._main = threading.main_thread().ident

    def wrap(self, phase: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() != self._main:
                return fn(*args, **kwargs)
            frame = [time.thread_time_ns(), 0, phase]
            self._stack.append(frame)
            self._active[phase] += 1
            try:
                return fn(*args, **kwargs)
            finally:
                spent = time.thread_time_ns() - frame[0]
                self._stack.pop()
                self._active[phase] -= 1
                self.own[phase] += spent - frame[1]
                self.wrapped_calls[phase] += 1
                if not self._active[phase]:  # outermost: poll_trial calling next_trial is one call
                    self.calls[phase] += 1
                    self.inclusive[phase] += spent
                if self._stack:
                    self._stack[-1][1] += spent
                    self.calls_inside[self._stack[-1][2]] += 1

        return timed

    def calibrate(self, calls: int = 20_000) -> None:
        """Measure the counting's own CPU per wrapped call: ``inside_ns`` lands in the wrapped
        phase, ``outside_ns`` in its caller's."""
        probe = PhaseClock()

        def noop() -> None:
            pass

        wrapped = probe.wrap("probe", noop)
        start = time.thread_time_ns()
        for _ in range(calls):
            noop()
        plain = time.thread_time_ns() - start
        start = time.thread_time_ns()
        for _ in range(calls):
            wrapped()
        total = (time.thread_time_ns() - start - plain) / calls
        self.inside_ns = probe.own["probe"] / calls
        self.outside_ns = max(0.0, total - self.inside_ns)

    def corrected(self) -> Tuple[Dict[str, float], float]:
        """Each phase's own nanoseconds less the counting's cost in it (never below 0), and
        the counting's whole cost."""
        own = {phase: max(0.0, ns - self.wrapped_calls[phase] * self.inside_ns
                          - self.calls_inside[phase] * self.outside_ns) for phase, ns in self.own.items()}
        return own, sum(self.wrapped_calls.values()) * (self.inside_ns + self.outside_ns)


def _thread_cpu_ns() -> Dict[int, Tuple[str, int]]:
    """CPU nanoseconds of each live Python thread of this process, by ident."""
    out = {}
    for thread in threading.enumerate():
        try:
            out[thread.ident] = (thread.name, time.clock_gettime_ns(time.pthread_getcpuclockid(thread.ident)))
        except (OSError, TypeError):  # ended meanwhile
            pass
    return out


class CpuWindow:
    """Process and per-thread CPU from :meth:`open` (first call) to :meth:`close`; threads that
    end inside report their CPU through :meth:`thread_ended`."""

    def __init__(self) -> None:
        self.start: Optional[Tuple[int, Dict[int, Tuple[str, int]]]] = None
        self.ended: Dict[int, Tuple[str, int]] = {}
        self.result: Optional[Dict[str, Any]] = None

    def open(self) -> None:
        if self.start is None:
            self.start = (time.process_time_ns(), _thread_cpu_ns())

    def thread_ended(self) -> None:
        thread = threading.current_thread()
        self.ended[thread.ident] = (thread.name, time.thread_time_ns())

    def close(self) -> None:
        process_ns = time.process_time_ns() - self.start[0]
        threads = {**self.ended, **_thread_cpu_ns()}
        by_name: Dict[str, int] = defaultdict(int)
        for ident, (name, ns) in threads.items():
            by_name[name] += ns - self.start[1].get(ident, (name, 0))[1]
        self.result = {"process_ns": process_ns, "threads_ns": dict(by_name),
                       "main_ns": by_name[threading.main_thread().name]}


def instrument(clock: PhaseClock, window: CpuWindow) -> None:
    """Wrap fasttune's runner, executor, searcher, callbacks and writer threads (in this
    process only) so that ``clock`` counts each phase and ``window`` spans the sweep."""
    from fasttune._progress import ProgressDriver
    from fasttune.execution.ray_trial_executor import RayTrialExecutor
    from fasttune.execution.trial_runner import TrialRunner
    from fasttune.experiment.trial import Trial
    from fasttune.logger._writer_thread import WriterThread
    from fasttune.tuner import Tuner

    for name, phase in (("add_trial", "creation: add_trial"), ("_take_config", "creation: trial directory"),
                        ("_start_trial", "dispatch"), ("_on_started", "started"),
                        ("_on_results", "result ingest"), ("_on_trial_end", "completion"),
                        ("checkpoint", "snapshot"), ("cleanup", "end of experiment"),
                        ("end_experiment_callbacks", "end of experiment")):
        setattr(TrialRunner, name, clock.wrap(phase, getattr(TrialRunner, name)))
    RayTrialExecutor.get_next_executor_event = clock.wrap(
        "executor: wait and collect", RayTrialExecutor.get_next_executor_event)
    Trial.__init__ = clock.wrap("creation: Trial object", Trial.__init__)
    ProgressDriver.step = clock.wrap("progress", ProgressDriver.step)

    timed_step = clock.wrap("step's own", TrialRunner.step)

    def step(self: Any) -> None:
        window.open()
        timed_step(self)

    TrialRunner.step = step

    original_init = TrialRunner.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        for method in ("poll_trial", "next_trial"):
            setattr(self._search_alg, method, clock.wrap("creation: search step", getattr(self._search_alg, method)))
        for hook, callbacks in self._callbacks._by_hook.items():
            for callback in callbacks:
                if hook not in vars(callback):
                    setattr(callback, hook, clock.wrap(LOGGER_PHASE.format(type(callback).__name__),
                                                       getattr(callback, hook)))

    TrialRunner.__init__ = init

    original_drain = WriterThread._drain

    def drain(self: Any) -> None:
        try:
            original_drain(self)
        finally:
            window.thread_ended()

    WriterThread._drain = drain

    original_fit = Tuner.fit

    def fit(self: Any) -> Any:
        grid = original_fit(self)
        window.close()
        return grid

    Tuner.fit = fit


def breakdown(clock: PhaseClock, window: Dict[str, Any], trials: int) -> Dict[str, Any]:
    """Milliseconds of CPU per trial by row (every row >= 0 and the rows summing to the
    process's CPU over the window, barring clock rounding), with the counts behind them."""
    per_trial = 1e-6 / trials
    own, counting_ns = clock.corrected()
    rows = {phase: ns * per_trial for phase, ns in sorted(own.items(), key=lambda kv: -kv[1])}
    rows[COUNTING] = counting_ns * per_trial
    rows[OTHER_MAIN] = (window["main_ns"] - sum(own.values()) - counting_ns) * per_trial
    named = window["main_ns"]
    for thread_name, row in WRITER_THREADS.items():
        ns = window["threads_ns"].get(thread_name, 0)
        rows[row] = ns * per_trial
        named += ns
    rows[OTHER_THREADS] = (window["process_ns"] - named) * per_trial
    return {"ms_per_trial": rows, "process_ms_per_trial": window["process_ns"] * per_trial,
            "main_ms_per_trial": window["main_ns"] * per_trial,
            "inclusive_ms_per_trial": {p: ns * per_trial for p, ns in clock.inclusive.items()},
            "calls_per_trial": {p: n / trials for p, n in clock.calls.items()},
            "counting_ns_per_call": {"inside": clock.inside_ns, "outside": clock.outside_ns}}


# cProfile's view of the same phases: (phase, [(file suffix, function)]), cumulative seconds summed.
PROFILE_TARGETS = [
    ("creation: search step", [("search/search_algorithm.py", "poll_trial")]),
    ("creation: Trial object", [("experiment/trial.py", "__init__")]),
    ("creation: add_trial", [("execution/trial_runner.py", "add_trial")]),
    ("creation: trial directory", [("execution/trial_runner.py", "_take_config")]),
    ("dispatch", [("execution/trial_runner.py", "_start_trial")]),
    ("executor: wait and collect", [("execution/ray_trial_executor.py", "get_next_executor_event")]),
    ("started", [("execution/_trial_events.py", "_on_started")]),
    ("result ingest", [("execution/_trial_events.py", "_on_results")]),
    ("completion", [("execution/_trial_events.py", "_on_trial_end")]),
    ("snapshot", [("execution/trial_runner.py", "checkpoint")]),
    ("step's own", [("execution/trial_runner.py", "step")]),
    ("end of experiment", [("execution/trial_runner.py", "cleanup"),
                           ("execution/trial_runner.py", "end_experiment_callbacks")]),
]


def profile_cumulative(profile: Any, trials: int) -> Dict[str, float]:
    """cProfile's cumulative milliseconds per trial of each phase's methods."""
    import pstats

    stats = pstats.Stats(profile).stats
    out = {}
    for phase, targets in PROFILE_TARGETS:
        out[phase] = sum(ct for (path, _, func), (_, _, _, ct, _) in stats.items()
                         if any(path.endswith(suffix) and func == name for suffix, name in targets)) * 1e3 / trials
    return out


def count_inodes(path: str) -> int:
    """Files and directories under ``path`` (itself not counted)."""
    return sum(len(dirs) + len(files) for _, dirs, files in os.walk(path))


def _child_main(spec: Dict[str, Any]) -> int:
    from bench.sweeps import _emit

    from fasttune.logger._defaults import DISABLE_ENV

    loggers, trials = spec["loggers"], int(spec["trials"])
    rec: Dict[str, Any] = {"engine": "fasttune", "workload": f"per_trial[{loggers}]", "loggers": loggers,
                           "trials_asked": trials, "profile": bool(spec.get("profile"))}
    os.environ[DISABLE_ENV] = "0" if loggers == "default" else "1"  # each run is its own process
    storage = tempfile.mkdtemp(prefix=f"per-trial-{loggers}-", dir=spec.get("storage_root"))
    try:
        import ray

        import fasttune
        from bench import workloads

        if loggers in _LOGGER_CLASSES:
            import fasttune.logger as logger_module

            logger_class = getattr(logger_module, _LOGGER_CLASSES[loggers])
            original = workloads.fit_and_count

            def fit_and_count(tune_module: Any, trainable: Any, **kwargs: Any) -> Dict[str, Any]:
                return original(tune_module, trainable, callbacks=[logger_class()], **kwargs)

            workloads.fit_and_count = fit_and_count
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        if spec.get("warmup"):
            # Ray's one-time costs in a driver (its first actor's serialization set-up, the
            # worker class's export) go to this sweep, not the measured one.
            workloads.trial_bookkeeping_reuse(fasttune, int(spec["warmup"]), tempfile.mkdtemp(dir=storage))
            rec["warmup_trials"] = int(spec["warmup"])
        clock, window = PhaseClock(), CpuWindow()
        if not spec.get("profile"):
            clock.calibrate()
            instrument(clock, window)
        measured = os.path.join(storage, "measured")
        if spec.get("profile"):
            import cProfile

            profile = cProfile.Profile(time.thread_time)  # CPU, as the counters: waits do not count
            profile.enable()
            out = workloads.trial_bookkeeping_reuse(fasttune, trials, measured)
            profile.disable()
            rec["profile_ms_per_trial"] = profile_cumulative(profile, trials)
        else:
            out = workloads.trial_bookkeeping_reuse(fasttune, trials, measured)
            rec.update(breakdown(clock, window.result, trials))
        rec.update(out)
        rec["fit_cpu_ms_per_trial"] = out["fit_driver_cpu_s"] * 1e3 / trials
        rec["trials_per_s"] = out["trials_ok"] / out["fit_s"]
        rec["inodes_per_trial"] = count_inodes(measured) / trials
        rec["status"] = "ok" if out["complete"] else "incomplete"
    except Exception as exc:
        rec.update(status="error", reason=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc()[-4000:])
    _emit(rec)
    shutil.rmtree(storage, ignore_errors=True)
    return 0


# --------------------------------------------------------------------------------------
# Parent side
# --------------------------------------------------------------------------------------

def _median(values: List[float]) -> Optional[float]:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize_breakdown(runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Per logger set: the median of each figure over its ok runs; and each logger's share."""
    out: Dict[str, Any] = {}
    for loggers in LOGGER_SETS:
        ok = [r for r in runs if r["loggers"] == loggers and r.get("status") == "ok" and not r.get("profile")]
        if not ok:
            continue
        rows = sorted({row for r in ok for row in r["ms_per_trial"]})
        out[loggers] = {
            "runs": len(ok),
            "trials": ok[0]["trials"],
            "ms_per_trial": {row: _median([r["ms_per_trial"].get(row, 0.0) for r in ok]) for row in rows},
            "inclusive_ms_per_trial": {p: _median([r["inclusive_ms_per_trial"].get(p, 0.0) for r in ok])
                                       for p in ok[0]["inclusive_ms_per_trial"]},
            "calls_per_trial": ok[0]["calls_per_trial"],
            **{key: _median([r[key] for r in ok]) for key in (
                "process_ms_per_trial", "main_ms_per_trial", "fit_cpu_ms_per_trial", "trials_per_s",
                "inodes_per_trial")},
        }
    if "none" in out:
        base = out["none"]["process_ms_per_trial"]
        for loggers in ("default", "json", "csv", "tbx"):
            if loggers in out:
                out[loggers]["share_ms_per_trial"] = out[loggers]["process_ms_per_trial"] - base
    profiled = [r for r in runs if r.get("profile") and r.get("status") == "ok"]
    if profiled:
        out["profile_ms_per_trial"] = profiled[0]["profile_ms_per_trial"]
    return out


def _rate_summary(runs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    rows = []
    for workload in ("trial_bookkeeping_reuse", "asha_trials"):
        row: Dict[str, Any] = {"workload": workload}
        for engine in ("fasttune", "raytune"):
            ok = [r for r in runs if r["workload"] == workload and r["engine"] == engine and r.get("status") == "ok"]
            row[engine] = {"median": _median([r["value"] for r in ok]), "runs": len(ok),
                           "size": ok[0]["size"] if ok else None,
                           "driver_cpu_ms_per_trial": _median([r["fit_driver_cpu_s"] * 1e3 / r["trials"] for r in ok])}
        fast, ray_rate = row["fasttune"]["median"], row["raytune"]["median"]
        row["ratio"] = fast / ray_rate if fast and ray_rate else None
        rows.append(row)
    return rows


def _ms(x: Optional[float]) -> str:
    return "—" if x is None else f"{x:.3f}"


def render(report: Dict[str, Any]) -> str:
    from bench.sweeps import format_number

    lines = [f"# Per-trial cost of one-result trials ({report['started']}, git {report['git']})", "",
             f"`{report['command']}`; medians of {report['repeats']}; storage {report['storage_root']}; "
             f"load average at the start {report['loadavg_start']}.", ""]
    b = report.get("breakdown") or {}
    sets = [s for s in LOGGER_SETS if s in b]
    if sets:
        lines += [f"Driver CPU per trial ({b[sets[0]]['trials']:,} trials, ms): the process over the sweep "
                  "(first step to fit()'s return), the main thread, and the whole fit() (uninstrumented in "
                  "`rates`); a logger set's share is its process CPU less `none`'s.", "",
                  "| loggers | process CPU / trial | main thread | whole fit() | share vs none | trials/s | "
                  "inodes / trial |", "|---|---|---|---|---|---|---|"]
        for s in sets:
            row = b[s]
            lines.append(f"| {s} | {_ms(row['process_ms_per_trial'])} | {_ms(row['main_ms_per_trial'])} | "
                         f"{_ms(row['fit_cpu_ms_per_trial'])} | {_ms(row.get('share_ms_per_trial'))} | "
                         f"{format_number(row['trials_per_s'])} | {row['inodes_per_trial']:.2f} |")
        shown = [s for s in ("default", "none") if s in b]
        rows = [p for p, _ in PHASES] + sorted({r for s in shown for r in b[s]["ms_per_trial"]
                                                 if r.startswith("logger: ")})
        rows += [COUNTING, OTHER_MAIN, *WRITER_THREADS.values(), OTHER_THREADS]
        profile = b.get("profile_ms_per_trial", {})
        lines += ["", "Where it goes (ms of CPU per trial; a phase's own time, less the phases it calls; "
                  "inclusive and cProfile's cumulative time beside):", "",
                  "| phase | " + " | ".join(shown) + " | calls / trial | inclusive (default) | cProfile cumulative |",
                  "|---|" + "---|" * len(shown) + "---|---|---|"]
        for row in rows:
            first = b[shown[0]]
            lines.append(f"| {row} | " + " | ".join(_ms(b[s]["ms_per_trial"].get(row)) for s in shown) +
                         f" | {format_number(first['calls_per_trial'].get(row))} | "
                         f"{_ms(first['inclusive_ms_per_trial'].get(row))} | {_ms(profile.get(row))} |")
        lines.append("| **total (process)** | " + " | ".join(_ms(b[s]["process_ms_per_trial"]) for s in shown)
                     + " | | | |")
    rates = report.get("rates")
    if rates:
        lines += ["", "| workload | fasttune | Ray Tune 2.60 | ratio | driver CPU / trial ms (fasttune, Ray Tune) |",
                  "|---|---|---|---|---|"]
        for row in rates:
            f, r = row["fasttune"], row["raytune"]
            unit = "trials/s" if row["workload"] == "trial_bookkeeping_reuse" else "results/s"
            sizes = " / ".join("—" if n is None else f"{n:,}" for n in (f["size"], r["size"]))
            lines.append(f"| {row['workload']} ({sizes} trials) | "
                         f"{format_number(f['median'])} {unit} | {format_number(r['median'])} {unit} | "
                         f"{format_number(row['ratio'])}x | {_ms(f['driver_cpu_ms_per_trial'])}, "
                         f"{_ms(r['driver_cpu_ms_per_trial'])} |")
    memory = report.get("memory")
    if memory:
        lines += ["", "| driver memory | trials | peak RSS MB | bytes per trial at peak |", "|---|---|---|---|"]
        for r in memory["runs"]:
            if r.get("status") == "ok":
                lines.append(f"| fasttune | {r['trials']:,} | {r['peak_rss_mb']:.0f} | "
                             f"{format_number(r['per_trial_b'])} |")
        if memory.get("growth_b_per_trial") is not None:
            lines.append(f"\nPeak RSS growth per added finished trial: {format_number(memory['growth_b_per_trial'])} "
                         "bytes.")
    snap = report.get("snapshot")
    if snap:
        for r in snap["runs"]:
            if "summary" in r:
                s = r["summary"]
                lines.append(f"\nExperiment snapshot at {r['n']:,} trials ({r['root']}): cold "
                             f"{s['cold_s']['median'] * 1e3:,.0f} ms, warm {s['warm_s']['median'] * 1e3:,.0f} ms "
                             f"(medians of {s['cold_s']['n']} and {s['warm_s']['n']}).")
    if report.get("failures"):
        lines += ["", "Failed runs: " + "; ".join(report["failures"])]
    return "\n".join(lines) + "\n"


def _int_list(text: str) -> List[int]:
    return [int(t) for t in text.split(",") if t.strip()]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--_child", help=argparse.SUPPRESS)
    parser.add_argument("--parts", default="breakdown,rates,memory,snapshot")
    parser.add_argument("--trials", type=int, default=10_000, help="trials of each breakdown run")
    parser.add_argument("--loggers", default=",".join(LOGGER_SETS))
    parser.add_argument("--warmup", type=int, default=0,
                        help="trials of an unmeasured sweep first, in the same process (0: none)")
    parser.add_argument("--profile", action="store_true", help="one more default run under cProfile")
    parser.add_argument("--trials-rate", type=int, default=10_000)
    parser.add_argument("--ray-trials", type=int, default=1_000)
    parser.add_argument("--asha-trials", type=int, default=2_000)
    parser.add_argument("--ray-asha-trials", type=int, default=100)
    parser.add_argument("--memory-trials", default="1000,10000")
    parser.add_argument("--snapshot-trials", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--storage-root", default="/dev/shm" if os.path.isdir("/dev/shm") else None)
    parser.add_argument("--settle-s", type=float, default=20.0, help="most seconds to wait for idle CPUs after a run")
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--out-dir", default=os.path.join(REPO_ROOT, "bench", "out"))
    args = parser.parse_args(argv)
    if args._child:
        import json

        return _child_main(json.loads(args._child))
    from bench.sweeps import _git_rev, _loadavg, _spawn, write_report

    parts = set(args.parts.split(","))
    unknown = parts - {"breakdown", "rates", "memory", "snapshot"}
    if unknown:
        parser.error(f"--parts: unknown {sorted(unknown)}; choose from breakdown,rates,memory,snapshot")
    loggers = args.loggers.split(",")
    if set(loggers) - set(LOGGER_SETS):
        parser.error(f"--loggers: choose from {','.join(LOGGER_SETS)}")
    started = _dt.datetime.now().isoformat(timespec="seconds")
    report: Dict[str, Any] = {"started": started, "git": _git_rev(), "command": " ".join(["python -m bench.per_trial"]
                              + (argv if argv is not None else sys.argv[1:])), "repeats": args.repeats,
                              "storage_root": args.storage_root, "loadavg_start": _loadavg(), "failures": []}

    def spawn(spec: Dict[str, Any], module: str) -> Dict[str, Any]:
        rec = _spawn(dict(spec, storage_root=args.storage_root), args.timeout, module=module,
                     settle_max_s=args.settle_s)
        print(f"[per_trial] {rec.get('workload')} {rec.get('engine')}: {rec.get('status')} "
              f"{rec.get('reason', '')}", file=sys.stderr, flush=True)
        if rec.get("status") != "ok":
            report["failures"].append(f"{rec.get('workload')}/{rec.get('engine')}: {rec.get('status')} "
                                      f"{rec.get('reason', '')}")
        return rec

    if "breakdown" in parts:
        runs = []
        for repeat in range(args.repeats):
            for name in (loggers if repeat % 2 == 0 else loggers[::-1]):
                runs.append(spawn({"engine": "fasttune", "workload": f"per_trial[{name}]", "loggers": name,
                                    "trials": args.trials, "warmup": args.warmup}, "bench.per_trial"))
        if args.profile:
            runs.append(spawn({"engine": "fasttune", "workload": "per_trial[default, cProfile]", "loggers": "default",
                               "trials": args.trials, "profile": True, "warmup": args.warmup},
                              "bench.per_trial"))
        report["breakdown_runs"] = runs
        report["breakdown"] = summarize_breakdown(runs)
    if "rates" in parts:
        runs = []
        for repeat in range(args.repeats):
            for workload, sizes in (("trial_bookkeeping_reuse", (args.trials_rate, args.ray_trials)),
                                    ("asha_trials", (args.asha_trials, args.ray_asha_trials))):
                engines = list(zip(("fasttune", "raytune"), sizes))
                for engine, size in (engines if repeat % 2 == 0 else engines[::-1]):
                    runs.append(spawn({"engine": engine, "workload": workload, "size": size}, "bench.sweeps"))
        report["rate_runs"] = runs
        report["rates"] = _rate_summary(runs)
    if "memory" in parts:
        from bench.driver_memory import _run as memory_run

        runs = [memory_run({"engine": "fasttune", "trials": n, "trace": False, "storage_root": args.storage_root},
                           args.timeout) for n in _int_list(args.memory_trials)]
        ok = [r for r in runs if r.get("status") == "ok"]
        report["failures"] += [f"memory {r['trials']}: {r.get('status')}" for r in runs if r.get("status") != "ok"]
        growth = None
        if len(ok) >= 2 and ok[-1]["trials"] > ok[0]["trials"]:
            growth = (ok[-1]["peak_rss_mb"] - ok[0]["peak_rss_mb"]) * 2**20 / (ok[-1]["trials"] - ok[0]["trials"])
        report["memory"] = {"runs": runs, "growth_b_per_trial": growth}
    if "snapshot" in parts:
        from bench.bench_state import measure

        snap = measure([args.snapshot_trials], [], [args.storage_root or tempfile.gettempdir()],
                       repeats=args.repeats, timeout=args.timeout)
        if snap["failed"]:
            report["failures"].append("snapshot: a child failed or a restore lost trials")
        report["snapshot"] = snap
    report["loadavg_end"] = _loadavg()
    markdown = render(report)
    os.makedirs(args.out_dir, exist_ok=True)
    write_report(args.out_dir, "per-trial-", started, report, markdown)
    print(markdown)
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
