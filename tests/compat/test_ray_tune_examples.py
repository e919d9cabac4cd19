"""Ray Tune 2.60's example scripts that need no deep-learning framework run on fasttune, to the
end and without a failed trial, once their imports say fasttune (their ``--smoke-test`` sizes).

Each runs in this process on the test run's Ray: a script's own ``ray.init(num_cpus=...)`` joins
that session instead of starting a second one (the session has the 2 CPUs the PBT examples ask
for to force pausing)."""
import sys

import pytest
import ray

from fasttune.result_grid import ResultGrid
from fasttune.analysis import ExperimentAnalysis
from ray_examples_testing import example_source

EXAMPLES = [
    "async_hyperband_example",
    "custom_checkpointing_with_callback",
    "custom_func_checkpointing",
    "hyperband_example",
    "hyperband_function_example",
    "logging_example",
    "pb2_example",
    "pbt_example",
    "pbt_function",
    "tune_basic_example",
]

# This one keeps its sweep inside a function: the script's own end (printing the best) is the check.
SWEEP_INSIDE_A_FUNCTION = {"pbt_function"}


@pytest.fixture
def example_env(ray_session, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FASTTUNE_STORAGE_PATH", str(tmp_path / "results"))
    real_init = ray.init
    monkeypatch.setattr(ray, "init", lambda *args, **kwargs: None if ray.is_initialized() else real_init(*args, **kwargs))
    return tmp_path


def _outcomes(namespace):
    """The sweeps a script left in its globals (``results = tuner.fit()`` or ``tune.run(...)``)."""
    return [value for value in namespace.values() if isinstance(value, (ResultGrid, ExperimentAnalysis))]


@pytest.mark.parametrize("name", EXAMPLES)
def test_ray_tune_example_runs_on_fasttune(example_env, name, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", [f"{name}.py", "--smoke-test"])
    namespace = {"__name__": "__main__", "__file__": f"{name}.py"}
    exec(compile(example_source(name), f"<ray.tune.examples.{name} on fasttune>", "exec"), namespace)
    out = capsys.readouterr().out
    assert "Best" in out  # every one of these ends by printing its best config or checkpoint
    outcomes = _outcomes(namespace)
    assert outcomes or name in SWEEP_INSIDE_A_FUNCTION
    for outcome in outcomes:
        trials = outcome if isinstance(outcome, ResultGrid) else outcome.trials
        assert len(trials) > 0
        if isinstance(outcome, ResultGrid):
            assert outcome.num_errors == 0, [r.error for r in outcome if r.error]
        else:
            assert all(t.status == "TERMINATED" for t in outcome.trials)
