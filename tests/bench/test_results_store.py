"""The results-store benchmark: a tiny sweep in two layouts reads back whole and the
store's figures make the table; its checks catch a store that lost or doubled a result."""
import json

from bench.results_store import failed_checks, main, render, store_counts, summarize

from fasttune._results_store import STORE_DIR, keep_record, segment_name, trial_record


def test_a_tiny_sweep_in_each_layout_reads_back_whole_and_the_store_makes_few_inodes(tmp_path):
    assert main(["--trials", "20", "--repeats", "1", "--layouts", "per_trial,experiment", "--settle-s", "0",
                 "--storage-root", str(tmp_path), "--out-dir", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "results-store-latest.json").read_text())
    runs = {run["layout"]: run for run in report["runs"]}
    assert set(runs) == {"per_trial", "experiment"}
    for run in runs.values():
        assert run["status"] == "ok" and run["failed_checks"] == [], run
        assert run["from_path"] == {"trials": 20, "errors": 0, "distinct_trial_ids": 20, "iterations": 20}
        assert run["read_experiment"] == {"trials": 20, "rows": 20, "distinct_trial_ids": 20}
    store = runs["experiment"]["store"]
    assert (store["segments"], store["result_lines"], store["trial_lines"], store["trial_line_trials"]) == (1, 20, 20, 20)
    # A directory and params.json, result.json, progress.csv and an event file per trial; the
    # store has none of them.
    assert runs["per_trial"]["inodes"] >= 5 * 20
    assert runs["experiment"]["inodes"] < 20 and STORE_DIR in runs["experiment"]["top_level"]["first"]
    assert runs["per_trial"]["store"]["segments"] == 0
    markdown = (tmp_path / "out" / "results-store-latest.md").read_text()
    assert "| 20 | experiment | 1 |" in markdown and "| 20 | **experiment / per_trial** | |" in markdown


def _store(tmp_path, lines):
    (tmp_path / STORE_DIR).mkdir()
    (tmp_path / STORE_DIR / segment_name(1)).write_bytes(b"".join(lines))


def test_the_checks_name_a_doubled_result_and_a_result_without_its_trial_line(tmp_path):
    _store(tmp_path, [trial_record("t_0", "a", '{"x": 1}'), b'{"trial_id": "a", "training_iteration": 1}\n',
                      b'{"trial_id": "a", "training_iteration": 1}\n', b'{"trial_id": "b", "training_iteration": 1}\n',
                      keep_record("t_0", 1)])
    counts = store_counts(str(tmp_path))
    assert counts == {"segments": 1, "result_lines": 3, "result_trials": 2, "trial_lines": 1, "trial_line_trials": 1,
                      "keep_lines": 1, "other_lines": 0, "not_one_result": ["a"], "results_without_trial_line": ["b"]}
    rec = {"layout": "experiment", "store": counts,
           "from_path": {"trials": 2, "errors": 0, "distinct_trial_ids": 2, "iterations": 2},
           "read_experiment": {"trials": 2, "rows": 2, "distinct_trial_ids": 2}}
    assert failed_checks(rec, 2) == ["store.result_lines = 3, expected 2", "store.trial_lines = 1, expected 2",
                                     "store.trial_line_trials = 1, expected 2", "store.keep_lines = 1, expected 0",
                                     "store.not_one_result = ['a'], expected []",
                                     "store.results_without_trial_line = ['b'], expected []"]
    # The per-trial layouts have no store to check.
    assert failed_checks(dict(rec, layout="per_trial"), 2) == []


def _run(layout, trials, rate, inodes, status="ok"):
    return {"layout": layout, "trials_asked": trials, "status": status, "trials_per_s": rate, "cpu_ms_per_trial": 0.4,
            "peak_rss_mb": 300.0, "inodes": inodes, "from_path_s": 2.0, "read_experiment_s": 1.0}


def test_the_table_gives_medians_per_layout_and_the_ratios_of_the_store_to_each_per_trial_layout():
    runs = [_run("per_trial", 1000, 2000.0, 5003), _run("per_trial", 1000, 2200.0, 5003),
            _run("per_trial", 1000, 2400.0, 5003), _run("experiment", 1000, 3000.0, 5),
            _run("experiment", 1000, 3300.0, 5), _run("experiment", 1000, 9999.0, 5, status="incomplete"),
            _run("per_trial_no_loggers", 1000, 2500.0, 3003)]
    (row,) = summarize(runs)
    assert row["medians"]["experiment"]["trials_per_s"] == 3150.0 and row["medians"]["experiment"]["runs"] == 2
    assert row["ratios"]["per_trial"]["trials_per_s"] == 3150.0 / 2200.0
    text = render({"started": "t", "git": "g", "command": "c", "storage_root": "/dev/shm", "loadavg_start": [1.0],
                   "loadavg_end": [2.0], "summary": [row], "failures": ["1000 experiment: incomplete"]})
    assert "| 1,000 | per_trial | 3 | 2,200 | 0.400 | 300 | 5,003 | 2.00 | 1.00 |" in text
    assert "| 1,000 | **experiment / per_trial** | | 1.43x | 1x | 1x | 0.000999x | 1x | 1x |" in text
    assert "| 1,000 | **experiment / per_trial_no_loggers** | | 1.26x |" in text
    assert "Failed runs: 1000 experiment: incomplete" in text
