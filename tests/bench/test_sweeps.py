"""The throughput harness's bookkeeping (no sweep runs): sizes an engine does not run at are
recorded as such, and the suite holds every workload the issue names."""
import pytest

from bench.sweeps import _int_list, main, render_markdown, summarize
from bench.workloads import PBT_SCALING, SUITES, WORKLOADS


def test_the_throughput_suite_runs_every_named_workload():
    suite = SUITES["throughput"]
    for name in ("result_throughput", "trial_bookkeeping", "time_to_first_result", "asha_trials"):
        assert name in suite
    populations = [WORKLOADS[w].series_x for w in suite if WORKLOADS[w].series == "pbt_population"]
    assert populations == [16, 64, 256, 1000, 5000]
    assert WORKLOADS["asha_trials"].size_for("fasttune") == 2000


def test_ray_tune_is_not_run_at_the_populations_it_cannot_finish():
    big = WORKLOADS["pbt_scaling_5000"]
    assert big.size_for("raytune") is None and big.size_for("fasttune") == 12
    assert "Ray Tune" in big.not_run_reason
    assert [WORKLOADS[f"pbt_scaling_{p}"].size_for("raytune") for p, _, _ in PBT_SCALING][:3] == [24, 40, 12]


def _run(engine, value):
    return {"workload": "pbt_scaling_16", "engine": engine, "status": "ok", "value": value, "fit_s": 1.0}


def test_a_not_run_engine_is_summarised_and_rendered_as_not_run():
    sizes = {("pbt_scaling_16", "fasttune"): 1600, ("pbt_scaling_16", "raytune"): None}
    rows = summarize(["pbt_scaling_16"], ["fasttune", "raytune"],
                     [_run("fasttune", 3.0), _run("fasttune", 5.0), _run("fasttune", 4.0)], sizes, {})
    (row,) = rows
    assert row["engines"]["fasttune"]["median"] == 4.0
    assert row["engines"]["raytune"]["not_run"]
    assert row["speedup"] is None and row["series_x"] == 16
    report = {
        "started": "t", "command": "python -m bench", "repeats": 3, "quick": False,
        "engines": ["fasttune", "raytune"], "engine_versions": {}, "skipped": {},
        "machine": {"cpu_count": 2, "cpu_affinity": 2, "mem_total_gib": 1, "platform": "p",
                    "python": "3", "ray": "2", "fasttune": "0", "git_rev": "g", "loadavg_start": None},
        "loadavg_end": None, "storage_root": "/tmp", "fs_probe_us_per_trial": [], "summary": rows,
    }
    md = render_markdown(report)
    assert "| pbt_scaling_16 | results/s | 4 | 3–5 | 1,600 | 3/3 | not run |" in md
    assert "pbt_scaling_16 / raytune: not run" in md and "--size pbt_scaling_16.raytune=N" in md


def test_bad_sizes_and_counts_are_rejected_naming_the_fix():
    with pytest.raises(SystemExit, match="comma list of trial counts"):
        _int_list("1k,10k", "")
    assert _int_list("", "1000") == [] and _int_list(None, "1_000,10") == [1000, 10]
    with pytest.raises(SystemExit):
        main(["--size", "pbt_scaling_16.rayy=8"])
