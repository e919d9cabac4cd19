"""bench.simulate_scale: the simulator's rate and memory at growing trial counts."""
import json

from bench.simulate_scale import main, run_size, summarise, table


def test_a_size_runs_every_trial_and_reports_its_costs():
    run = run_size(60, seed=0, workers=4)
    assert run["trials"] == 60 and run["results"] >= 60
    assert run["wall_s"] > 0 and run["cpu_s"] > 0 and run["peak_rss_growth_bytes_per_trial"] >= 0
    assert run["results_per_s"] == run["results"] / run["wall_s"]
    again = run_size(60, seed=0, workers=4)
    assert (again["results"], again["best_last_loss"]) == (run["results"], run["best_last_loss"])  # seeded
    summary = summarise([run, again])
    assert summary["same_results_every_repeat"] and summary["repeats"] == 2
    assert "| 60 |" in table([summary])


def test_the_command_runs_each_size_in_a_process_of_its_own(tmp_path, capsys):
    out = tmp_path / "scale.json"
    main(["--sizes", "30,90", "--out", str(out)])
    report = json.loads(out.read_text())
    assert [row["trials"] for row in report["sizes"]] == [30, 90]
    assert "| 90 |" in capsys.readouterr().out


def test_checkpoints_at_the_rungs_change_no_result():
    without = run_size(60, seed=0, workers=4)  # ASHA's default: none
    with_checkpoints = run_size(60, seed=0, workers=4, checkpoint_at="decision_points")
    assert (with_checkpoints["results"], with_checkpoints["best_last_loss"]) == (without["results"],
                                                                                without["best_last_loss"])
