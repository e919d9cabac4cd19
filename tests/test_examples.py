"""fasttune.examples: ``pbt_function`` reports what Ray Tune's does, and Ray Tune's own
``pb2_example`` script, with its imports changed, runs on it."""
import json
import os
import random
import re
import runpy
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import fasttune as tune
from fasttune.examples import pbt_function as example
from fasttune.trainable.session import Session, TuneContext, set_session



def ray_examples() -> Path:
    import importlib.util

    return Path(importlib.util.find_spec("ray.tune").origin).parent / "examples"


def on_fasttune(source: str) -> str:
    """A Ray Tune script's source with its imports changed to fasttune's (what a user migrating does)."""
    source = source.replace("from ray import tune\n", "import fasttune as tune\n")
    return re.sub(r"\bfrom ray\.tune(\.[\w.]+)? import", lambda m: f"from fasttune{m.group(1) or ''} import", source)


def ray_pbt_function_on_fasttune():
    """Ray Tune's own ``pbt_function``, run through fasttune's session."""
    module = types.ModuleType("ray_pbt_function_on_fasttune")
    exec(compile(on_fasttune((ray_examples() / "pbt_function.py").read_text()), module.__name__, "exec"),
         module.__dict__)
    return module.pbt_function


class Enough(Exception):
    """Ends the endless training function after the results a test wants."""


def reports(function, config, count, checkpoint=None, seed=0):
    """The first ``count`` results ``function`` reports, each with its checkpoint's content."""
    got = []

    def collect(metrics, saved):
        content = None
        if saved is not None:
            with saved.as_directory() as directory, open(os.path.join(directory, "checkpoint.json")) as f:
                content = json.load(f)
        got.append((dict(metrics), content))
        if len(got) == count:
            raise Enough

    random.seed(seed)
    np.random.seed(seed)
    set_session(Session(TuneContext(), collect, checkpoint))
    try:
        with pytest.raises(Enough):
            function(config)
    finally:
        set_session(None)
    return got


@pytest.mark.parametrize("lr", [0.0001, 0.004, 0.02])
def test_pbt_function_reports_as_ray_tunes(lr):
    config = {"lr": lr, "checkpoint_interval": 3}
    ours = reports(example.pbt_function, config, 40)
    assert ours == reports(ray_pbt_function_on_fasttune(), config, 40)
    assert [content is not None for _, content in ours] == [step % 3 == 0 for step in range(1, 41)]
    assert ours[2][1] == {"acc": ours[2][0]["mean_accuracy"], "step": 3}


def test_pbt_function_resumes_from_its_checkpoint_as_ray_tunes(tmp_path):
    (tmp_path / "checkpoint.json").write_text(json.dumps({"acc": 150.0, "step": 7}))
    checkpoint = tune.Checkpoint.from_directory(str(tmp_path))
    config = {"lr": 0.004, "checkpoint_interval": 2}
    ours = reports(example.pbt_function, config, 5, checkpoint=checkpoint, seed=1)
    assert ours == reports(ray_pbt_function_on_fasttune(), config, 5, checkpoint=checkpoint, seed=1)
    assert [content["step"] for _, content in ours if content] == [8, 10, 12]  # steps go on from 8


def test_pbt_function_is_done_past_an_accuracy_of_200(tmp_path):
    (tmp_path / "checkpoint.json").write_text(json.dumps({"acc": 1000.0, "step": 1}))
    got = reports(example.pbt_function, {"lr": 0.001}, 1, checkpoint=tune.Checkpoint.from_directory(str(tmp_path)))
    assert got[0][0]["done"] is True


@pytest.mark.usefixtures("ray_session")
def test_ray_tunes_pb2_example_runs_on_fasttune(tmp_path, monkeypatch, capsys):
    script = on_fasttune((ray_examples() / "pb2_example.py").read_text())
    assert "from fasttune.examples.pbt_function import pbt_function" in script
    # Shortened: 4 trials of 6 iterations, PB2 perturbing every 2.
    for ray_line, short in [('"training_iteration": 30', '"training_iteration": 6'), ("num_samples=8", "num_samples=4"),
                            ("perturbation_interval = 5", "perturbation_interval = 2")]:
        assert ray_line in script
        script = script.replace(ray_line, short)
    (tmp_path / "pb2_example.py").write_text(script)
    # Run as its own __main__, results under ~/fasttune_results: a home of the test's own.
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(sys, "argv", ["pb2_example.py"])
    runpy.run_path(str(tmp_path / "pb2_example.py"), run_name="__main__")
    assert "Best hyperparameters found were: " in capsys.readouterr().out
    experiment = tmp_path / "fasttune_results" / "pbt_test"
    trials = sorted(path for path in experiment.iterdir() if (path / "result.json").exists())
    assert len(trials) == 4
    for trial in trials:
        rows = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
        # (an exploiting trial goes on from its donor's checkpoint: iterations may step back)
        assert rows[-1]["training_iteration"] == 6
        assert all(1 <= row["training_iteration"] <= 6 for row in rows)
        assert 0.0001 <= rows[-1]["cur_lr"] <= 0.02


@pytest.mark.usefixtures("ray_session")
def test_run_tune_pbt_smoke_test(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path))
    results = example.run_tune_pbt(smoke_test=True)
    assert len(results) == 8 and results.num_errors == 0
    assert all(1 <= result.metrics["training_iteration"] <= 10 for result in results)
    assert "Best hyperparameters found were: " in capsys.readouterr().out
