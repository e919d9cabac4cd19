"""``fasttune plot``: it writes a PNG, and the lines it draws (the matplotlib Line2D
data) are the trials' results and, for PBT, the policy log's exploits."""
import builtins
import json
import os
from collections import defaultdict

import pytest

from cli_testing import FAILING_X, read_rows, trial_dirs
from fasttune._cli._experiment import read_experiment
from fasttune._cli.plot import make_figure
from fasttune.cli import main

pytestmark = pytest.mark.ray

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def axes_titled(figure, start):
    found = [ax for ax in figure.axes if ax.get_title().startswith(start)]
    assert len(found) == 1, [ax.get_title() for ax in figure.axes]
    return found[0]


def lines_by_gid(ax):
    """Each trial's drawn points, its lines (one per run between exploits) joined."""
    out = defaultdict(lambda: ([], []))
    for line in ax.get_lines():
        xs, ys = out[line.get_gid()]
        xs += [float(v) for v in line.get_xdata()]
        ys += [float(v) for v in line.get_ydata()]
    return dict(out)


def histories(experiment_path):
    return {rows[-1]["trial_id"]: rows for rows in map(read_rows, trial_dirs(experiment_path))}


def test_plot_writes_a_png(plain_experiment, tmp_path, capsys):
    out = tmp_path / "sub" / "plain.png"
    assert main(["plot", plain_experiment, "-o", str(out)]) == 0
    data = out.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 20_000
    assert "learning curves, best so far; metric loss, min" in capsys.readouterr().err


def test_learning_curves_are_the_top_trials_results(plain_experiment):
    figure, data = make_figure(read_experiment(plain_experiment), top=3)
    by_trial = histories(plain_experiment)
    best = sorted(by_trial, key=lambda t: (min(r["loss"] for r in by_trial[t]), t))[:3]
    drawn = lines_by_gid(axes_titled(figure, "loss: top 3 trials"))
    assert list(drawn) == best == [s.label for s in data.curves]
    for trial_id, (xs, ys) in drawn.items():
        assert xs == [r["training_iteration"] for r in by_trial[trial_id]]
        assert ys == [r["loss"] for r in by_trial[trial_id]]


def test_learning_curves_against_time_total_s_for_max_metric(plain_experiment):
    figure, _ = make_figure(read_experiment(plain_experiment), metric="acc", mode="max", top=2, x="time_total_s")
    by_trial = histories(plain_experiment)
    best = sorted(by_trial, key=lambda t: -max(r["acc"] for r in by_trial[t]))[:2]
    ax = axes_titled(figure, "acc: top 2 trials (max)")
    assert ax.get_xlabel() == "time_total_s"
    drawn = lines_by_gid(ax)
    assert set(drawn) == set(best)
    for trial_id, (xs, ys) in drawn.items():
        assert xs == [r["time_total_s"] for r in by_trial[trial_id]]
        assert ys == [r["acc"] for r in by_trial[trial_id]]


def test_best_so_far_follows_every_result_in_wall_time(plain_experiment):
    figure, _ = make_figure(read_experiment(plain_experiment), kind="best")
    assert len(figure.axes) == 1
    (line,) = axes_titled(figure, "best loss so far").get_lines()
    results = [(r["timestamp"], r["loss"]) for rows in histories(plain_experiment).values() for r in rows]
    seconds = sorted({t for t, _ in results})
    assert len(seconds) > 5
    expected = [min(loss for t, loss in results if t <= second) for second in seconds]
    assert [float(v) for v in line.get_ydata()] == expected
    assert [float(v) for v in line.get_xdata()] == [t - seconds[0] for t in seconds]
    assert line.get_drawstyle() == "steps-post"


def test_pbt_lineage_shows_each_trials_config_and_the_logged_exploits(pbt_experiment, tmp_path):
    with open(os.path.join(pbt_experiment, "pbt_global.txt")) as f:
        policy = [json.loads(line) for line in f]
    figure, data = make_figure(read_experiment(pbt_experiment), kind="lineage")
    ax = axes_titled(figure, "PBT lineage: lr")
    exploits = [line for line in ax.get_lines() if line.get_gid() == "exploit"]
    assert len(exploits) == len(policy) >= 1
    for line, (_, _, _, donor_step, donor_config, new_config) in zip(exploits, policy):
        assert list(line.get_xdata()) == [donor_step, donor_step]
        assert list(line.get_ydata()) == [donor_config["lr"], new_config["lr"]]
    per_trial = defaultdict(lambda: ([], []))
    for line in ax.get_lines():
        if line.get_gid() != "exploit":
            xs, ys = per_trial[line.get_label().lstrip("_")]
            xs += list(line.get_xdata())
            ys += list(line.get_ydata())
    lineage = {s.label for s in data.lineage["lr"]}
    by_trial = histories(pbt_experiment)
    assert lineage == set(by_trial)
    for trial_id, rows in by_trial.items():
        drawn = [(x, y) for s in data.lineage["lr"] if s.label == trial_id for x, y in zip(s.x, s.y)]
        assert drawn == [(r["training_iteration"], r["config"]["lr"]) for r in rows]
    drawn_points = sorted((x, y) for xs, ys in per_trial.values() for x, y in zip(xs, ys))
    assert drawn_points == sorted((r["training_iteration"], r["config"]["lr"])
                                  for rows in by_trial.values() for r in rows)


def test_pbt_plot_has_all_three_panels(pbt_experiment, tmp_path):
    out = tmp_path / "pbt.png"
    assert main(["plot", pbt_experiment, "-o", str(out), "--top", "2"]) == 0
    assert out.read_bytes().startswith(PNG_SIGNATURE)
    figure, data = make_figure(read_experiment(pbt_experiment), top=2)
    assert [ax.get_title().split(":")[0] for ax in figure.axes] == ["q", "best q so far (max) over wall time",
                                                                     "PBT lineage"]
    # An exploit restarts a trial at its donor's iteration: the curve breaks there instead
    # of drawing a line back (the seeded sweep's top two include such a trial).
    runs_per_trial = defaultdict(int)
    for ax_line in figure.axes[0].get_lines():
        xs = list(ax_line.get_xdata())
        assert xs == sorted(set(xs))
        runs_per_trial[ax_line.get_gid()] += 1
    assert max(runs_per_trial.values()) > 1
    by_trial = histories(pbt_experiment)
    for series in data.curves:
        assert series.y == [r["q"] for r in by_trial[series.label]]


def test_a_running_experiment_plots_complete_results_and_trials_newer_than_the_snapshot(running_experiment):
    figure, data = make_figure(read_experiment(running_experiment), top=20)
    drawn = lines_by_gid(axes_titled(figure, "loss: top"))
    assert len(drawn) == 9
    assert drawn["new_99999"] == ([1.0, 2.0], [7.0, 6.0])
    assert -100.0 not in data.best_so_far.y and -5.0 not in data.best_so_far.y


@pytest.mark.parametrize("args, message", [
    (["--kind", "lineage"], "has no pbt_global.txt: the lineage plot needs a PopulationBasedTraining"),
    (["--metric", "nope", "--mode", "min"], "Unknown metric 'nope': no trial of"),
    (["--metric", "acc"], "No mode for metric 'acc': pass --mode min or --mode max"),
])
def test_bad_options_are_clear_errors(plain_experiment, tmp_path, capsys, args, message):
    assert main(["plot", plain_experiment, "-o", str(tmp_path / "x.png"), *args]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_output_must_be_a_png_and_path_an_experiment(plain_experiment, tmp_path, capsys):
    assert main(["plot", plain_experiment, "-o", str(tmp_path / "x.jpg")]) == 1
    assert "writes PNG images; name the file FILE.png" in capsys.readouterr().err
    assert main(["plot", str(tmp_path / "missing"), "-o", str(tmp_path / "x.png")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_missing_matplotlib_names_the_install(plain_experiment, tmp_path, capsys, monkeypatch):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    assert main(["plot", plain_experiment, "-o", str(tmp_path / "x.png")]) == 1
    assert 'needs matplotlib: pip install "fasttune[plot]"' in capsys.readouterr().err


def test_failed_trials_are_plotted_with_what_they_reported(plain_experiment):
    _, data = make_figure(read_experiment(plain_experiment), top=8)
    by_trial = histories(plain_experiment)
    failed = {t for t, rows in by_trial.items() if rows[-1]["config"]["x"] == FAILING_X}
    assert failed <= {s.label for s in data.curves}
    for series in data.curves:
        assert series.y == [r["loss"] for r in by_trial[series.label]]
