"""The driver-memory benchmark's report (no sweep runs): the table, and the growth per
added trial between consecutive sizes of one engine."""
from bench.driver_memory import render


def _run(engine, trials, peak, base=100.0):
    return {"engine": engine, "trials": trials, "status": "ok", "base_rss_mb": base, "peak_rss_mb": peak,
            "end_rss_mb": peak - 1, "per_trial_b": (peak - base) * 2**20 / trials, "fit_s": 1.0}


def test_growth_per_added_trial_is_between_sizes_of_one_engine():
    runs = [_run("fasttune", 1000, 140.0), _run("fasttune", 11000, 150.0),
            _run("raytune", 100, 220.0, base=196.0), {"engine": "raytune", "trials": 1000, "status": "timeout"}]
    text = render({"started": "now", "git": "abc", "runs": runs})
    assert "| fasttune | 11,000 | 100 | 150 | 149 | 4,766 | 1.0 | yes |" in text
    # 10 MiB more over 10,000 more trials.
    assert "fasttune, 1,000 -> 11,000 trials: 1,049 bytes of peak RSS per added trial." in text
    assert "| raytune | 1,000 | — | — | — | — | — | timeout:  |" in text
    assert "raytune, 100 -> 1,000" not in text and "fasttune, 11,000 -> 100" not in text


def test_the_peak_when_the_loop_ended_is_told_apart_from_the_result_grids():
    run = dict(_run("fasttune", 1000, 140.0), loop_end_peak_mb=130.0)
    text = render({"started": "now", "git": "abc", "runs": [run]})
    assert "fasttune, 1,000 trials: peak 130 MB when the loop ended, 10 MB more building the ResultGrid." in text
