"""The per-trial cost benchmark on a tiny sweep: its breakdown has every phase, no row is
negative, the phases fit inside the main thread's CPU and the rows add up to the process's."""
import json

import pytest

from bench.per_trial import LOGGER_SETS, OTHER_MAIN, OTHER_THREADS, PHASES, WRITER_THREADS, main, render, \
    summarize_breakdown


@pytest.mark.parametrize("warmup", [0, 20])
def test_a_tiny_sweep_gives_a_breakdown_that_adds_up(tmp_path, warmup):
    assert main(["--parts", "breakdown", "--trials", "30", "--repeats", "1", "--loggers", "default",
                 "--warmup", str(warmup), "--settle-s", "0", "--storage-root", str(tmp_path),
                 "--out-dir", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "per-trial-latest.json").read_text())
    (run,) = report["breakdown_runs"]
    assert run["status"] == "ok" and run["trials"] == 30
    # A warm-up sweep runs first and counts nowhere (the calls below are the measured sweep's).
    assert run.get("warmup_trials", 0) == warmup
    rows = run["ms_per_trial"]
    assert all(value >= 0 for value in rows.values()), rows
    # One Trial object, one start and one completion per trial; TensorBoard is a default logger.
    for phase in ("creation: search step", "creation: Trial object", "creation: add_trial", "dispatch",
                  "started", "result ingest", "completion"):
        assert run["calls_per_trial"][phase] == 1.0, phase
    assert rows["logger: TBXLoggerCallback"] > 0 and rows[WRITER_THREADS["fasttune-files"]] > 0
    main_phases = sum(v for k, v in rows.items() if k not in (OTHER_MAIN, OTHER_THREADS, *WRITER_THREADS.values()))
    assert main_phases <= run["main_ms_per_trial"] <= run["process_ms_per_trial"]
    assert sum(rows.values()) == pytest.approx(run["process_ms_per_trial"], rel=1e-9)
    # A directory and params.json, result.json, progress.csv and an event file per trial.
    assert 5 <= run["inodes_per_trial"] < 6
    assert "| dispatch |" in (tmp_path / "out" / "per-trial-latest.md").read_text()


def _run(loggers, process_ms):
    return {"loggers": loggers, "status": "ok", "trials": 100, "ms_per_trial": {"dispatch": process_ms / 2},
            "inclusive_ms_per_trial": {"dispatch": process_ms / 2}, "calls_per_trial": {"dispatch": 1.0},
            "process_ms_per_trial": process_ms, "main_ms_per_trial": process_ms * 0.8,
            "fit_cpu_ms_per_trial": process_ms * 1.1, "trials_per_s": 1000.0, "inodes_per_trial": 5.0}


def test_a_loggers_share_is_its_median_less_the_median_without_loggers():
    runs = [_run("none", 0.2), _run("none", 0.3), _run("none", 0.25), _run("csv", 0.3), _run("csv", 0.32),
            _run("csv", 0.31), _run("default", 0.45)]
    summary = summarize_breakdown(runs)
    assert summary["csv"]["share_ms_per_trial"] == pytest.approx(0.31 - 0.25)
    assert summary["default"]["share_ms_per_trial"] == pytest.approx(0.45 - 0.25)
    assert "share_ms_per_trial" not in summary["none"] and set(summary) <= set(LOGGER_SETS)
    text = render({"started": "t", "git": "g", "command": "c", "repeats": 3, "storage_root": "/dev/shm",
                   "loadavg_start": None, "breakdown": summary, "failures": [],
                   "memory": {"runs": [{"status": "ok", "trials": 1000, "peak_rss_mb": 300.0, "per_trial_b": 7000.0}],
                              "growth_b_per_trial": 7200.0},
                   "snapshot": {"runs": [{"n": 100000, "root": "/dev/shm", "summary": {
                       "cold_s": {"median": 0.847, "n": 3}, "warm_s": {"median": 0.097, "n": 9}}}]}})
    assert "| csv | 0.310 | 0.248 | 0.341 | 0.060 | 1,000 | 5.00 |" in text
    assert "Peak RSS growth per added finished trial: 7,200 bytes." in text
    assert "snapshot at 100,000 trials (/dev/shm): cold 847 ms, warm 97 ms (medians of 3 and 9)." in text
    assert all(f"| {phase} |" in text for phase, _ in PHASES)


def test_the_phase_clock_counts_own_time_and_calls_and_takes_its_own_cost_out():
    from bench.per_trial import PhaseClock

    clock = PhaseClock()
    inner = clock.wrap("inner", lambda: sum(range(2000)))
    outer = clock.wrap("outer", lambda: [inner(), inner()])
    for _ in range(5):
        outer()
    assert dict(clock.calls) == {"inner": 10, "outer": 5} and dict(clock.calls_inside) == {"outer": 10}
    assert clock.inclusive["outer"] >= clock.own["outer"] + clock.own["inner"]
    clock.calibrate(calls=2000)
    assert clock.inside_ns > 0 and clock.outside_ns >= 0
    own, counting_ns = clock.corrected()
    assert all(ns >= 0 for ns in own.values())
    assert counting_ns == pytest.approx(15 * (clock.inside_ns + clock.outside_ns))
