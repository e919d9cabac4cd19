"""bench.grid_read: what reading a large sweep's results costs."""
import json

from bench.grid_read import main, measure


def test_it_reads_every_trial_back_and_reports_each_cost(tmp_path):
    report = measure(60, repeats=2, storage_root=str(tmp_path))
    assert report["trials"] == 60 and report["repeats"] == 2
    # The experiment read back from its directory has every trial's last result (no trial files).
    assert report["from_path_results_with_metrics"] == 60 and report["from_path_best_equals_fit"]
    for key in ("iterate_us", "get_best_result_us", "get_dataframe_us", "from_path_s", "experiment_analysis_s"):
        assert report[key] > 0, key


def test_the_command_prints_its_report_as_json(tmp_path, capsys):
    main(["--trials", "30", "--repeats", "1", "--storage-root", str(tmp_path)])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["trials"] == 30 and report["from_path_results_with_metrics"] == 30
