"""bench.simulate: algorithm comparisons in simulated time, with the same report on every
run (apart from the real seconds each run took)."""
import json
import os

import pytest

from bench.plots import plot_report
from bench.simulate import ALGORITHMS, GRID_POINTS, main, render_markdown, run_comparison


def without_wall_times(report):
    for entry in report["results"].values():
        for run in entry["runs"]:
            run.pop("wall_s")
    return report


def test_a_tiny_comparison_writes_its_report_and_is_the_same_to_the_bit_when_run_again(tmp_path, capsys):
    args = ["--seeds", "2", "--budget", "150", "--workers", "2", "--algorithms", "random,asha,pbt", "--population", "4"]
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    table = capsys.readouterr().out
    assert main(args + ["--out", str(tmp_path / "b"), "--no-plots"]) == 0
    for name in ("simulate.json", "simulate.md", "simulate_time.png", "simulate_compute.png"):
        assert (tmp_path / "a" / name).stat().st_size > 0
    first = json.loads((tmp_path / "a" / "simulate.json").read_text())
    second = json.loads((tmp_path / "b" / "simulate.json").read_text())

    assert (first["kind"], first["algorithms"], first["seeds"], first["budget_s"], first["workers"]) == (
        "simulate", ["random", "asha", "pbt"], [0, 1], 150.0, 2)
    assert first["population"] == 4  # PBT's trials: two workers start three of the four within 150 s
    assert [run["trials"] for run in first["results"]["pbt"]["runs"]] == [3, 3]
    assert first["grid"]["time"][-1] == 150.0 and first["grid"]["compute"][-1] == 300.0
    for name, entry in first["results"].items():
        assert [run["seed"] for run in entry["runs"]] == [0, 1]
        for run in entry["runs"]:
            assert run["errors"] == 0 and run["results"] >= run["trials"] > 0
            assert run["final"] == run["time"]["best"][-1] == run["compute"]["best"][-1]
            assert run["time"]["x"][-1] <= 150.0 and run["compute"]["x"][-1] <= 300.0
            assert run["wall_s"] > 0
        finals = sorted(run["final"] for run in entry["runs"])
        assert entry["final_median"] == (finals[0] + finals[1]) / 2
        for against in ("time", "compute"):
            assert sorted(entry[against]) == ["q25", "q50", "q75"]
            assert all(len(values) == GRID_POINTS for values in entry[against].values())
            assert entry[against]["q50"][0] is None and entry[against]["q50"][-1] == entry["final_median"]
        assert f"| {name} | {entry['final_median']:.6f} |" in table
    assert without_wall_times(first) == without_wall_times(second)
    assert first["results"]["random"]["runs"][0]["final"] != first["results"]["random"]["runs"][1]["final"]
    assert (tmp_path / "a" / "simulate.md").read_text() == table
    assert 0 < first["optimum"] <= min(entry["final_median"] for entry in first["results"].values())
    replotted = plot_report(first, str(tmp_path / "c"))  # what python -m bench.plots simulate.json does
    assert sorted(os.path.basename(path) for path in replotted) == ["simulate_compute.png", "simulate_time.png"]


def test_every_algorithm_is_known_and_an_unknown_one_is_named():
    assert ALGORITHMS == ("random", "asha", "hyperband", "pbt", "pb2", "tpe", "tpe_asha")
    with pytest.raises(ValueError, match="unknown algorithm 'bohb'; known: random, asha"):
        run_comparison(["bohb"], seeds=[0], budget=10.0, workers=1)
    with pytest.raises(SystemExit):
        main(["--algorithms", "nope", "--out", "/nonexistent"])


def test_hyperband_and_tpe_with_asha_run_in_simulated_time_too():
    report = run_comparison(["hyperband", "tpe_asha"], seeds=[0], budget=30.0, workers=2)
    for entry in report["results"].values():
        (run,) = entry["runs"]
        assert run["errors"] == 0 and run["results"] > 0 and run["time"]["x"][-1] <= 30.0
    assert "| tpe_asha |" in render_markdown(report)
