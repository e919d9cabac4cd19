"""The ``fasttune`` entry point: subcommands with --help, --version, exit codes; ``ls``
and ``plot`` never import Ray; ``demo`` runs a sweep that ``ls`` then lists."""
import json
import os
import subprocess
import sys

import pytest

import fasttune
from fasttune.cli import main

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("command, expected", [
    ([], "usage: fasttune [-h] [--version] COMMAND"),
    (["ls"], "usage: fasttune ls [-h] [--columns A,B,...] [--sort COL] [--desc]"),
    (["plot"], "usage: fasttune plot [-h] -o FILE.png"),
    (["demo"], "usage: fasttune demo [-h] [--storage-path STORAGE_PATH]"),
])
def test_every_command_has_help(command, expected, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(expected)


def test_version_and_usage_errors(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"fasttune {fasttune.__version__}"
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["lsx"])
    assert exit_info.value.code == 2 and "invalid choice: 'lsx'" in capsys.readouterr().err


@pytest.mark.ray
def test_ls_and_plot_run_without_importing_ray(plain_experiment, pbt_experiment, tmp_path):
    script = (
        "import json, sys\n"
        "from fasttune.cli import main\n"
        "codes = [main(['ls', sys.argv[1], '--format', 'json', '-o', sys.argv[3]]),\n"
        "         main(['plot', sys.argv[2], '-o', sys.argv[4]])]\n"
        "print(json.dumps({'codes': codes, 'ray': sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.'))}))\n"
    )
    listing, image = tmp_path / "trials.json", tmp_path / "pbt.png"
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", script, plain_experiment, pbt_experiment, str(listing), str(image)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"codes": [0, 0], "ray": []}
    assert len(json.loads(listing.read_text())) == 8
    assert image.read_bytes().startswith(b"\x89PNG")


@pytest.mark.ray
def test_demo_runs_a_sweep_that_ls_lists(ray_session, tmp_path, capsys):
    storage = tmp_path / "demo_results"
    assert main(["demo", "--storage-path", str(storage), "--num-samples", "1", "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert "Best val_loss:" in out and f"fasttune ls {storage / 'demo'}" in out
    # The demo shows status and the summary, not every trial's results (verbose 1).
    assert "== Status ==" in out and "Result for" not in out and "This trial completed" not in out
    assert main(["ls", str(storage / "demo"), "--format", "json", "--sort", "best:val_loss"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 3 and {r["status"] for r in rows} == {"TERMINATED"}
    assert all(r["training_iteration"] == 2 for r in rows)
    assert [r["best:val_loss"] for r in rows] == sorted(r["best:val_loss"] for r in rows)
    assert sorted(r["config/l2"] for r in rows) == [0.0, 1e-3, 1e-1]
