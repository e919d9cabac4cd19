"""The ASHA decision-latency probe on a tiny sweep: every trial waits at its first rung, so
there is at least one poll a trial, and each figure it reports is there and positive."""
import json
import os
import subprocess
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_a_tiny_asha_sweep_reports_its_polls_and_round_trips(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "bench.decision_latency", "--trials", "40", "--warmup", "10", "--round-trips", "50",
         "--storage-root", str(tmp_path)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [REPO_ROOT, os.environ.get("PYTHONPATH")]))))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout[done.stdout.index("{"):])
    assert report["trials"] == 40 and report["results"] >= 40
    # Each trial's first result waits for a decision, which only a poll's reply carries.
    assert report["polls_per_trial"] >= 1.0
    for key in ("in_flight_ms_p10_p50_p90", "turnaround_ms_p10_p50_p90"):
        p10, p50, p90 = report[key]
        assert 0 < p10 <= p50 <= p90, (key, report[key])
    # CPU is read at the clock tick (10 ms): a tiny run may see none of the workers'.
    assert report["driver_cpu_ms_per_trial"] > 0 and report["workers_cpu_ms_per_trial"] >= 0
    for path in ("ray", "socket"):
        round_trip = report["round_trip"][path]
        assert round_trip["wall_us"] > 0 and round_trip["driver_cpu_us"] >= 0 and round_trip["actor_cpu_us"] >= 0


def test_the_bound_decides_rungs_in_the_trial_without_a_poll_per_trial(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "bench.decision_latency", "--trials", "200", "--warmup", "10", "--round-trips", "10",
         "--storage-root", str(tmp_path), "--bound"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [REPO_ROOT, os.environ.get("PYTHONPATH")]))))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout[done.stdout.index("{"):])
    bound = report["rungs_decided_in_trial"]
    # The same number of trials, each stopping itself at a rung: at least one result each,
    # fewer than 200 iterations in all unless x happens to clear every rung.
    assert 200 <= bound["results"] < 200 * 100
    # No trial waits for a decision, so polls carry several trials; ASHA's carry at most one.
    assert bound["polls_per_trial"] < 1.0 <= report["polls_per_trial"]
    assert bound["results_per_s"] > 0 and bound["driver_cpu_ms_per_trial"] > 0
    # Nothing is left in the storage root: each sweep's directory goes when it ends.
    assert os.listdir(tmp_path) == []
