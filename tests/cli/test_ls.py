"""``fasttune ls``: its table, CSV and JSON hold what the trials' result files hold;
filters, sorting, column choice and limits; clear errors."""
import csv
import json
import os
import re
import shutil

import pytest

from cli_testing import FAILING_X, NEW_TRIAL, read_rows, trial_dirs
from fasttune.cli import main

pytestmark = pytest.mark.ray


def ls(capsys, *args):
    code = main(["ls", *map(str, args)])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def ls_json(capsys, *args):
    return json.loads(ls(capsys, *args, "--format", "json"))


def expected_rows(experiment_path):
    """One dict per trial directory, built from its result.json alone."""
    out = []
    for trial_dir in trial_dirs(experiment_path):
        rows = read_rows(trial_dir)
        last = rows[-1]
        out.append({
            "trial_id": last["trial_id"],
            "status": "ERROR" if last["config"]["x"] == FAILING_X else "TERMINATED",
            "training_iteration": last["training_iteration"],
            "time_total_s": last["time_total_s"],
            "loss": last["loss"],
            "best:loss": min(r["loss"] for r in rows),
            "config/x": last["config"]["x"],
            "config/name": last["config"]["name"],
        })
    return out


def test_default_json_holds_the_last_and_best_results_of_every_trial(plain_experiment, capsys):
    rows = ls_json(capsys, plain_experiment)
    expected = expected_rows(plain_experiment)
    assert len(rows) == len(expected) == 8
    assert sorted(rows, key=lambda r: r["trial_id"]) == sorted(expected, key=lambda r: r["trial_id"])
    assert {r["status"] for r in rows} == {"ERROR", "TERMINATED"}
    assert list(rows[0]) == ["trial_id", "status", "training_iteration", "time_total_s", "loss", "best:loss",
                             "config/x", "config/name"]


def test_csv_cells_read_back_as_the_result_values(plain_experiment, capsys, tmp_path):
    out_file = tmp_path / "trials.csv"
    assert main(["ls", plain_experiment, "-o", str(out_file), "--columns",
                 "trial_id,loss,acc,nested/a,config/x,config/name,done,path"]) == 0  # format from .csv
    with open(out_file) as f:
        rows = {r["trial_id"]: r for r in csv.DictReader(f)}
    assert "Wrote 8 trials" in capsys.readouterr().err
    for trial_dir in trial_dirs(plain_experiment):
        last = read_rows(trial_dir)[-1]
        row = rows[last["trial_id"]]
        assert float(row["loss"]) == last["loss"] and float(row["acc"]) == last["acc"]
        assert int(row["nested/a"]) == last["nested"]["a"]
        assert int(row["config/x"]) == last["config"]["x"] and row["config/name"] == last["config"]["name"]
        assert row["done"] == str(last["done"])
        assert row["path"] == trial_dir


def test_table_shows_the_result_values(plain_experiment, capsys):
    out = ls(capsys, plain_experiment, "--columns", "trial_id,status,loss,acc,config/name")
    header, rule, *lines = out.splitlines()
    assert header.split() == ["trial_id", "status", "loss", "acc", "config/name"]
    assert set(rule.replace(" ", "")) == {"-"}
    by_id = {line.split()[0]: line.split() for line in lines}
    assert len(by_id) == 8
    for trial_dir in trial_dirs(plain_experiment):
        last = read_rows(trial_dir)[-1]
        trial_id, status, loss, acc, name = by_id[last["trial_id"]]
        assert float(loss) == pytest.approx(last["loss"], rel=1e-5)
        assert float(acc) == pytest.approx(last["acc"], rel=1e-5)
        assert name == last["config"]["name"]
        assert status == ("ERROR" if last["config"]["x"] == FAILING_X else "TERMINATED")


def test_filters_compare_numbers_as_numbers_and_text_as_text(plain_experiment, capsys):
    # As text "10" < "9"; as numbers it is not.
    rows = ls_json(capsys, plain_experiment, "--filter", "config/x < 9", "--filter", "config/name==b",
                   "--columns", "config/x,config/name")
    assert sorted(r["config/x"] for r in rows) == [1, 2, 3]
    assert {r["config/name"] for r in rows} == {"b"}
    rows = ls_json(capsys, plain_experiment, "--filter", "status != ERROR", "--columns", "trial_id,status,config/x")
    assert len(rows) == 6 and all(r["config/x"] != FAILING_X for r in rows)
    rows = ls_json(capsys, plain_experiment, "--filter", "done == False", "--columns", "done")
    assert len(rows) == 8


def test_sort_desc_and_limit_pick_the_rows_the_results_rank(plain_experiment, capsys):
    expected = sorted(expected_rows(plain_experiment), key=lambda r: r["best:loss"], reverse=True)
    rows = ls_json(capsys, plain_experiment, "--sort", "best:loss", "--desc", "--limit", "3",
                   "--columns", "trial_id,best:loss")
    assert rows == [{"trial_id": r["trial_id"], "best:loss": r["best:loss"]} for r in expected[:3]]
    rows = ls_json(capsys, plain_experiment, "--sort", "config/name", "--columns", "config/name")
    assert [r["config/name"] for r in rows] == ["a"] * 4 + ["b"] * 4


def test_metric_and_mode_choose_the_best_column(plain_experiment, capsys):
    rows = ls_json(capsys, plain_experiment, "--metric", "acc", "--mode", "max")
    by_id = {r["trial_id"]: r for r in rows}
    for trial_dir in trial_dirs(plain_experiment):
        history = read_rows(trial_dir)
        assert by_id[history[-1]["trial_id"]]["best:acc"] == max(r["acc"] for r in history)


def test_another_metric_than_the_tuners_needs_its_own_mode(plain_experiment, capsys):
    rows = ls_json(capsys, plain_experiment, "--metric", "acc")
    assert "acc" in rows[0] and "best:acc" not in rows[0]
    assert main(["ls", plain_experiment, "--metric", "acc", "--columns", "best:acc"]) == 1
    assert "Column 'best:acc' in --columns needs a mode" in capsys.readouterr().err


def test_a_trial_directory_lists_that_trial(plain_experiment, capsys):
    trial_dir = trial_dirs(plain_experiment)[1]
    rows = ls_json(capsys, trial_dir)
    assert [r["trial_id"] for r in rows] == [read_rows(trial_dir)[-1]["trial_id"]]
    assert rows[0]["status"] in ("TERMINATED", "ERROR")


def test_a_running_experiment_lists_complete_results_and_trials_newer_than_the_snapshot(running_experiment, capsys):
    rows = {r["trial_id"]: r for r in ls_json(capsys, running_experiment, "--columns",
                                               "trial_id,status,training_iteration,loss,best:loss,config/x")}
    assert len(rows) == 9
    first = read_rows(trial_dirs(running_experiment)[0])  # its torn last line is left out here too
    assert rows[first[-1]["trial_id"]]["loss"] == first[-1]["loss"]
    assert rows[first[-1]["trial_id"]]["best:loss"] == min(r["loss"] for r in first) > -100
    new = rows["new_99999"]
    assert new == {"trial_id": "new_99999", "status": "RUNNING", "training_iteration": 2, "loss": 6.0,
                   "best:loss": 6.0, "config/x": 7}
    assert os.path.isdir(os.path.join(running_experiment, NEW_TRIAL))


def test_best_columns_need_a_mode_when_the_tuner_set_none(plain_experiment, capsys, tmp_path):
    path = str(tmp_path / "copy")
    shutil.copytree(plain_experiment, path)
    os.remove(os.path.join(path, "tuner.msgpack"))
    assert "loss" not in ls_json(capsys, path)[0]  # no Tuner metric: no metric columns by default
    assert main(["ls", path, "--columns", "best:loss"]) == 1
    assert "needs a mode: pass --mode min or --mode max" in capsys.readouterr().err
    rows = ls_json(capsys, path, "--columns", "best:loss", "--mode", "max", "--sort", "best:loss")
    assert rows[-1]["best:loss"] == max(r["loss"] for d in trial_dirs(path) for r in read_rows(d))


@pytest.mark.parametrize("args, message", [
    (["--columns", "trial_id,nope"], "Unknown column 'nope' in --columns"),
    (["--sort", "config/lrr"], "Unknown column 'config/lrr' in --sort"),
    (["--filter", "bogus > 1"], "Unknown column 'bogus' in --filter"),
    (["--filter", "loss = 1"], "Unknown operator '=' in --filter"),
    (["--filter", "loss =< 1"], "Unknown operator '=<' in --filter"),
    (["--filter", "loss"], "is not \"COLUMN OP VALUE\""),
    (["--metric", "los"], "Unknown column 'los' in --metric"),
])
def test_bad_options_are_clear_errors(plain_experiment, capsys, args, message):
    assert main(["ls", plain_experiment, *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fasttune ls: error: ") and message in err


def test_bad_paths_are_clear_errors(tmp_path, capsys):
    assert main(["ls", str(tmp_path / "missing")]) == 1
    assert "does not exist; pass an experiment directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["ls", str(tmp_path / "empty")]) == 1
    assert "is not a fasttune experiment" in capsys.readouterr().err


def test_limit_must_be_positive(plain_experiment, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["ls", plain_experiment, "--limit", "0"])
    assert exit_info.value.code == 2
    assert re.search(r"--limit: 0 is not a positive number of rows", capsys.readouterr().err)
