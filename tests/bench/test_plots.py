"""Plots are drawn from saved reports alone: a throughput report gives the two scaling
curves, a quality report one figure per algorithm family."""
import json

import pytest

pytest.importorskip("matplotlib")

from bench.plots import main, plot_report  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def _row(population, ft, rt):
    engines = {"fasttune": {"median": ft, "min": ft * 0.9, "max": ft * 1.1},
               "raytune": {"median": rt, "min": rt, "max": rt} if rt else {"median": None, "not_run": "slow"}}
    return {"workload": f"pbt_scaling_{population}", "series": "pbt_population", "series_x": population,
            "engines": engines}


def _snapshot_run(engine, n, ms):
    s = {"median": ms / 1e3, "min": ms / 1e3, "max": ms / 1e3}
    return {"engine": engine, "n": n, "root": "/tmp", "summary": {"cold_s": s, "warm_s": s, "restore_s": s}}


def test_a_throughput_report_gives_both_scaling_curves(tmp_path):
    report = {
        "kind": "sweeps",
        "summary": [_row(16, 3000.0, 80.0), _row(64, 2800.0, 70.0), _row(5000, 2000.0, None),
                    {"workload": "result_throughput", "series": None, "engines": {}}],
        "snapshots": {"runs": [_snapshot_run("fasttune", 1000, 10), _snapshot_run("fasttune", 10000, 100),
                               _snapshot_run("raytune", 1000, 500), {"engine": "raytune", "n": 10000,
                                                                     "root": "/tmp", "error": "timed out"}]},
    }
    paths = plot_report(report, str(tmp_path))
    assert [p.rsplit("/", 1)[1] for p in paths] == ["pbt_scaling.png", "snapshot_scaling.png"]
    for p in paths:
        assert open(p, "rb").read(8) == PNG


def test_a_quality_report_is_replotted_from_its_json(tmp_path):
    report = {
        "kind": "quality", "seeds": 2, "problems": ["branin", "pbt_toy"],
        "problem_meta": {"branin": {"optimum": 0.397887, "metric": "loss"},
                         "pbt_toy": {"optimum": None, "metric": "q"}},
        "searchers": ["random"], "schedulers": ["pbt"],
        "results": {"random/branin": {"curves": [[3.0, 1.0, 0.397887], [2.0, 2.0, 0.5]]},
                    "pbt/pbt_toy": {"curves": [[1.0, 2.0], [1.0, 3.0]]},
                    "pbt/branin": {"skipped": "ImportError"}},
    }
    saved = tmp_path / "quality-latest.json"
    saved.write_text(json.dumps(report))
    assert main([str(saved)]) == 0
    for name in ("quality_searchers.png", "quality_schedulers.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG


def test_a_report_with_nothing_to_plot_says_so(tmp_path, capsys):
    saved = tmp_path / "r.json"
    saved.write_text(json.dumps({"kind": "sweeps", "summary": []}))
    assert main([str(saved)]) == 1
    assert "nothing to plot" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(tmp_path / "missing.json")])
