"""The cluster benchmark's bookkeeping (no cluster starts): ratios of medians against the
issue's targets, failed runs kept out of medians and listed, sizes per side."""
import pytest

from bench.cluster import WORKLOADS, render_markdown, summarize


def _run(workload, side, value, status="ok"):
    return {"workload": workload, "side": side, "status": status, "value": value, "fit_s": 1.0,
            "reason": "" if status == "ok" else "no result within 900s"}


def _report(summary):
    machine = {"cpu_count": 2, "cpu_affinity": 2, "mem_total_gib": 23.5, "platform": "Linux", "python": "3.11",
               "ray": "2.60.0", "git_rev": "abc", "loadavg_start": [1.0, 1.0, 1.0]}
    return {"started": "now", "command": "python -m bench.cluster", "repeats": 3, "quick": False,
            "machine": machine, "pyarrow": "26", "moto": "5.2.6", "storage_root": "/dev/shm",
            "loadavg_end": [1.0, 1.0, 1.0], "loadavg_range": "1.0–2.0", "summary": summary}


def test_ratios_are_of_medians_and_say_whether_the_issue_targets_are_met():
    sides = {"throughput": ["fasttune_s3", "fasttune_local", "raytune_s3"]}
    sizes = {("throughput", "fasttune_s3"): 20_000, ("throughput", "fasttune_local"): 20_000,
             ("throughput", "raytune_s3"): 1_000}
    runs = [_run("throughput", "fasttune_s3", v) for v in (900.0, 1000.0, 5000.0)]
    runs += [_run("throughput", "fasttune_local", v) for v in (1500.0, 2000.0, 2500.0)]
    runs += [_run("throughput", "raytune_s3", v) for v in (10.0, 40.0)]
    runs.append(_run("throughput", "raytune_s3", None, status="timeout"))
    [row] = summarize(["throughput"], sides, sizes, runs)
    assert row["sides"]["fasttune_s3"]["median"] == 1000.0
    assert row["sides"]["raytune_s3"]["median"] == 25.0 and row["sides"]["raytune_s3"]["ok"] == 2
    assert row["sides"]["raytune_s3"]["problems"] == ["timeout: no result within 900s"]
    local, ray = row["ratios"]
    assert local["ratio"] == pytest.approx(0.5) and local["target"] == 0.5 and local["met"] is True
    assert ray["ratio"] == pytest.approx(40.0) and ray["target"] == 50.0 and ray["met"] is False
    text = render_markdown(_report([row]))
    assert "| throughput | results/s | raytune_s3 | 25.0 | 10.0–40.0 | 1,000 | 2/3 |" in text
    assert "| 40 | >= 50 **not met** |" in text and "| 0.5 | >= 0.5 met |" in text
    assert "- throughput / raytune_s3: timeout: no result within 900s" in text


def test_the_checkpoint_workload_reports_shares_of_the_upload_loop_without_a_target():
    sides = {"checkpoints": list(WORKLOADS["checkpoints"].sides)}
    assert sides["checkpoints"] == ["fasttune_s3", "pyarrow_loop", "raytune_s3"]
    sizes = {("checkpoints", s): WORKLOADS["checkpoints"].size_for(s, quick=False) for s in sides["checkpoints"]}
    assert sizes[("checkpoints", "raytune_s3")] == 5 and sizes[("checkpoints", "fasttune_s3")] == 10
    runs = [_run("checkpoints", "fasttune_s3", 20.0), _run("checkpoints", "pyarrow_loop", 40.0),
            _run("checkpoints", "raytune_s3", 5.0)]
    [row] = summarize(["checkpoints"], sides, sizes, runs)
    assert [(r["ratio"], r["met"]) for r in row["ratios"]] == [(0.5, None), (0.125, None), (4.0, None)]
