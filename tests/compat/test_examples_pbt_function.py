"""fasttune.examples: ``pbt_function`` reports what Ray Tune's does (Ray Tune's ``pb2_example``
imports it; test_ray_tune_examples.py runs that script)."""
import json
import os
import random
import types

import numpy as np
import pytest

import fasttune as tune
from fasttune.examples import pbt_function as example
from fasttune.trainable.session import Session, TuneContext, set_session
from ray_examples_testing import example_source



def ray_pbt_function_on_fasttune():
    """Ray Tune's own ``pbt_function``, run through fasttune's session."""
    module = types.ModuleType("ray_pbt_function_on_fasttune")
    exec(compile(example_source("pbt_function"), module.__name__, "exec"), module.__dict__)
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
def test_run_tune_pbt_smoke_test(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path))  # results under ~/fasttune_results: a home of the test's own
    monkeypatch.delenv("FASTTUNE_STORAGE_PATH", raising=False)
    results = example.run_tune_pbt(smoke_test=True)
    assert len(results) == 8 and results.num_errors == 0
    assert all(1 <= result.metrics["training_iteration"] <= 10 for result in results)
    assert "Best hyperparameters found were: " in capsys.readouterr().out
