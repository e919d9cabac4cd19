"""``fasttune ls`` and ``fasttune plot`` of one trial's directory in an experiment run with
``RunConfig(results_store="experiment")``: the trial's results are in the experiment's
store, not in a ``result.json`` of its own, and both commands show exactly what they show
for the same sweep with per-trial files (and so does ``Result.from_path``); a store that
does not name the trial is a clear error, and a damaged line in it a warning."""
import json
import logging
import os
import shutil

import pytest

import fasttune as tune
from cli_testing import FAILING_X, STORE_X, read_rows
from fasttune._cli._experiment import read_experiment
from fasttune._cli.plot import make_figure
from fasttune.cli import main
from fasttune.error import TuneError

pytestmark = pytest.mark.ray

# The columns whose values do not depend on the run (ids, times and paths do).
COLUMNS = "status,training_iteration,loss,best:loss,acc,nested/a,config/x,done"


def store_lines(experiment_path):
    """Every line of the experiment's store, parsed here independently of fasttune."""
    directory = os.path.join(experiment_path, "results")
    return [json.loads(line) for name in sorted(os.listdir(directory))
            for line in open(os.path.join(directory, name)).read().splitlines()]


def store_trial_dirs(experiment_path):
    """``{x: (trial directory, trial id)}`` of the trials of the store that have a directory."""
    named = {line[1]: (line[2], line[3]["x"]) for line in store_lines(experiment_path)
             if isinstance(line, list) and line[0] == "trial"}
    return {x: (os.path.join(experiment_path, name), trial_id) for name, (trial_id, x) in named.items()
            if os.path.isdir(os.path.join(experiment_path, name))}


def file_trial_dirs(experiment_path):
    """``{x: trial directory}`` of the per-trial experiment, from each ``params.json``."""
    out = {}
    for name in os.listdir(experiment_path):
        params = os.path.join(experiment_path, name, "params.json")
        if os.path.isfile(params):
            with open(params) as f:
                out[json.load(f)["x"]] = os.path.join(experiment_path, name)
    return out


def ls(capsys, *args):
    code = main(["ls", *map(str, args)])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def test_ls_of_a_store_trials_directory_shows_what_its_result_json_would(store_and_per_trial_experiments, capsys):
    in_store, in_files = store_and_per_trial_experiments
    store_dirs, file_dirs = store_trial_dirs(in_store), file_trial_dirs(in_files)
    # The trials that checkpointed and the one that failed have a directory; none holds results.
    assert sorted(store_dirs) == [1, 2, FAILING_X] and sorted(file_dirs) == sorted(STORE_X)
    assert not any(os.path.exists(os.path.join(d, "result.json")) for d, _ in store_dirs.values())
    for x, (store_dir, trial_id) in store_dirs.items():
        history = read_rows(file_dirs[x])
        last = history[-1]
        expected = [{"status": "ERROR" if x == FAILING_X else "TERMINATED",
                     "training_iteration": last["training_iteration"], "loss": last["loss"],
                     "best:loss": min(r["loss"] for r in history), "acc": last["acc"],
                     "nested/a": last["nested"]["a"], "config/x": x, "done": last["done"]}]
        assert expected[0]["training_iteration"] == (2 if x == FAILING_X else 4)
        listed = json.loads(ls(capsys, store_dir, "--format", "json", "--columns", COLUMNS))
        assert listed == json.loads(ls(capsys, file_dirs[x], "--format", "json", "--columns", COLUMNS)) == expected
        # The table and the CSV are the per-trial run's, character for character.
        for fmt in ("table", "csv"):
            assert ls(capsys, store_dir, "--format", fmt, "--columns", COLUMNS) == \
                ls(capsys, file_dirs[x], "--format", fmt, "--columns", COLUMNS)
        # The default columns: the trial's id as the store records it, its own path.
        (row,) = json.loads(ls(capsys, store_dir, "--format", "json", "--columns", "trial_id,path,loss"))
        assert row == {"trial_id": trial_id, "path": store_dir, "loss": last["loss"]}


def test_plot_of_a_store_trials_directory_draws_every_result_it_reported(store_and_per_trial_experiments,
                                                                          tmp_path, capsys):
    in_store, in_files = store_and_per_trial_experiments
    file_dirs = file_trial_dirs(in_files)
    for x, (store_dir, trial_id) in store_trial_dirs(in_store).items():
        history = read_rows(file_dirs[x])
        image = tmp_path / f"x{x}.png"
        assert main(["plot", store_dir, "-o", str(image)]) == 0, capsys.readouterr().err
        assert image.read_bytes().startswith(b"\x89PNG")
        experiment = read_experiment(store_dir)
        assert experiment.path == in_store and [t.trial_id for t in experiment.trials] == [trial_id]
        kept = ("training_iteration", "loss", "acc", "nested", "config", "done")
        assert [{k: r[k] for k in kept} for r in experiment.trials[0].rows] == [{k: r[k] for k in kept}
                                                                               for r in history]
        _, data = make_figure(experiment)
        (curve,) = data.curves
        assert (curve.label, curve.x, curve.y) == (trial_id, [r["training_iteration"] for r in history],
                                                   [r["loss"] for r in history])


def test_a_damaged_store_is_a_warning_and_a_trial_it_does_not_name_a_clear_error(store_and_per_trial_experiments,
                                                                                   tmp_path, capsys, caplog):
    path = str(tmp_path / "in_store")
    shutil.copytree(store_and_per_trial_experiments[0], path)
    store_dirs = store_trial_dirs(path)
    damaged_dir, damaged_id = store_dirs[1]
    kept_dir, kept_id = store_dirs[2]
    segment = os.path.join(path, "results", "000001.jsonl")
    lines = open(segment).read().splitlines(keepends=True)

    def is_trial_line(line, trial_id):
        return line.startswith('["trial", ') and json.loads(line)[2] == trial_id

    # x=1's trial line is cut short; one of x=2's results is not JSON any more.
    trial_line = next(i for i, line in enumerate(lines) if is_trial_line(line, damaged_id))
    lines[trial_line] = lines[trial_line][:20] + "\n"
    result_lines = [i for i, line in enumerate(lines)
                    if line.startswith("{") and json.loads(line)["trial_id"] == kept_id]
    lines[result_lines[1]] = "{not json\n"
    with open(segment, "w") as f:
        f.writelines(lines)
    with caplog.at_level(logging.WARNING, logger="fasttune._results_store"):
        (row,) = json.loads(ls(capsys, kept_dir, "--format", "json", "--columns", "trial_id,training_iteration"))
        assert row == {"trial_id": kept_id, "training_iteration": 4}
        assert read_experiment(kept_dir).trials[0].rows[1]["training_iteration"] == 3  # the bad line is skipped
        assert f"{segment}, line {result_lines[1] + 1}, is not valid JSON" in caplog.text
        assert main(["ls", damaged_dir]) == 1
        err = capsys.readouterr().err
        assert err.startswith("fasttune ls: error: ") and damaged_dir in err
        assert f"results store ({os.path.join(path, 'results')}) names no trial {os.path.basename(damaged_dir)!r}" \
            in err
        assert f"{segment}, line {trial_line + 1}, is not valid JSON" in caplog.text
        with pytest.raises(TuneError, match="names no trial"):
            read_experiment(damaged_dir)


def test_result_from_path_of_a_store_trials_directory_is_the_per_trial_runs(store_and_per_trial_experiments):
    in_store, in_files = store_and_per_trial_experiments
    file_dirs = file_trial_dirs(in_files)
    kept = ("training_iteration", "loss", "acc", "nested", "config", "done")
    for x, (store_dir, trial_id) in store_trial_dirs(in_store).items():
        from_store, from_files = tune.Result.from_path(store_dir), tune.Result.from_path(file_dirs[x])
        assert from_store.metrics["trial_id"] == trial_id
        assert {k: from_store.metrics[k] for k in kept} == {k: from_files.metrics[k] for k in kept}
        assert list(from_store.metrics_dataframe["loss"]) == list(from_files.metrics_dataframe["loss"])
        assert (from_store.error is None) == (from_files.error is None) == (x != FAILING_X)
        assert [os.path.basename(c.path) for c, _ in from_store.best_checkpoints] == \
            [os.path.basename(c.path) for c, _ in from_files.best_checkpoints]


def test_ls_of_a_store_trial_that_has_no_directory_reads_it_from_the_store(store_and_per_trial_experiments,
                                                                             tmp_path, capsys):
    in_store, in_files = store_and_per_trial_experiments
    named = {line[3]["x"]: (os.path.join(in_store, line[1]), line[2]) for line in store_lines(in_store)
             if isinstance(line, list) and line[0] == "trial"}
    trial_dir, trial_id = named[10]  # it only reported: the store made no directory for it
    assert not os.path.exists(trial_dir)
    listed = json.loads(ls(capsys, trial_dir, "--format", "json", "--columns", COLUMNS + ",trial_id,path"))
    expected = json.loads(ls(capsys, file_trial_dirs(in_files)[10], "--format", "json", "--columns", COLUMNS))
    assert [{k: v for k, v in row.items() if k not in ("trial_id", "path")} for row in listed] == expected
    assert [(row["trial_id"], row["path"]) for row in listed] == [(trial_id, trial_dir)]
    # A name the store does not hold, in that experiment: the store's error; elsewhere: "does not exist".
    for missing, message in [(os.path.join(in_store, "no_such_trial"), "names no trial 'no_such_trial'"),
                             (str(tmp_path / "nowhere"), "does not exist")]:
        assert main(["ls", missing]) == 1
        err = capsys.readouterr().err
        assert missing in err and message in err
