"""RunConfig(log_to_file=...): what a trial prints goes to files in its directory, as in
Ray Tune (True: ``stdout`` and ``stderr``; a name: one file for both; a pair: one each;
an absolute path as it is), appended across restarts, and only that trial's lines even
when one pooled worker ran several trials."""
import os
import sys

import pytest

import fasttune as tune
from fasttune.execution._output_capture import TrialOutput

pytestmark = pytest.mark.usefixtures("ray_session")


def prints(config):
    x = config["x"]
    print(f"out {x}")
    print(f"err {x}", file=sys.stderr)
    tune.report({"score": x})
    print(f"after report {x}")


class Prints(tune.Trainable):
    def setup(self, config):
        print(f"setup {config['x']}")

    def step(self):
        print(f"step {self.config['x']} {self.iteration + 1}")
        print(f"step err {self.config['x']}", file=sys.stderr)
        return {"score": self.config["x"]}

    def cleanup(self):
        print(f"cleanup {self.config['x']}")


def _fit(trainable, storage, log_to_file, xs=(1, 2), **run_kwargs):
    # One trial at a time: both run on the same pooled worker.
    tuner = tune.Tuner(trainable, param_space={"x": tune.grid_search(list(xs))},
                       tune_config=tune.TuneConfig(max_concurrent_trials=1),
                       run_config=tune.RunConfig(name="exp", storage_path=storage, verbose=0,
                                                 log_to_file=log_to_file, **run_kwargs))
    grid = tuner.fit()
    assert grid.errors == []
    return sorted(grid, key=lambda result: result.config["x"])


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def test_true_writes_each_function_trials_stdout_and_stderr_into_its_directory(storage):
    results = _fit(prints, storage, True)
    assert results[0].metrics["pid"] == results[1].metrics["pid"]  # one pooled worker ran both
    for result in results:
        x = result.config["x"]
        assert _read(os.path.join(result.path, "stdout")) == f"out {x}\nafter report {x}\n"
        assert _read(os.path.join(result.path, "stderr")) == f"err {x}\n"


def test_true_for_a_class_trainable_covers_setup_step_and_cleanup(storage):
    results = _fit(Prints, storage, True, stop={"training_iteration": 2})
    assert results[0].metrics["pid"] == results[1].metrics["pid"]
    for result in results:
        x = result.config["x"]
        # The instance kept for reuse is cleaned up while the next trial runs (or when the
        # worker is let go): what cleanup() prints still goes to its own trial's file.
        assert _read(os.path.join(result.path, "stdout")) == f"setup {x}\nstep {x} 1\nstep {x} 2\ncleanup {x}\n"
        assert _read(os.path.join(result.path, "stderr")) == f"step err {x}\nstep err {x}\n"


def test_a_string_is_one_file_for_both_streams_in_the_order_written(storage):
    results = _fit(prints, storage, "output.log")
    for result in results:
        x = result.config["x"]
        assert _read(os.path.join(result.path, "output.log")) == f"out {x}\nerr {x}\nafter report {x}\n"
        assert not {"stdout", "stderr"} & set(os.listdir(result.path))


def test_a_pair_names_each_file_and_an_absolute_path_is_used_as_it_is(storage, tmp_path):
    errors = str(tmp_path / "all_errors.txt")
    results = _fit(prints, storage, ("out.txt", errors))
    for result in results:
        x = result.config["x"]
        assert _read(os.path.join(result.path, "out.txt")) == f"out {x}\nafter report {x}\n"
    # Both trials append to the one absolute file, in the order they ran.
    assert _read(errors) == "err 1\nerr 2\n"


def test_false_writes_no_output_file(storage):
    results = _fit(prints, storage, False, xs=(1,))
    assert not {"stdout", "stderr"} & set(os.listdir(results[0].path))


def fails_once(config):
    marker = config["marker"]
    print(f"attempt {os.path.exists(marker)}")
    if not os.path.exists(marker):
        open(marker, "w").close()
        print("failing", file=sys.stderr)
        raise RuntimeError("the first attempt fails")
    tune.report({"score": 1})


def test_a_trial_restarted_after_a_failure_appends_to_its_files(storage, tmp_path):
    tuner = tune.Tuner(fails_once, param_space={"marker": str(tmp_path / "failed_once")},
                       run_config=tune.RunConfig(name="exp", storage_path=storage, verbose=0, log_to_file=True,
                                                 failure_config=tune.FailureConfig(max_failures=1)))
    [result] = tuner.fit()
    assert result.error is None
    assert _read(os.path.join(result.path, "stdout")) == "attempt False\nattempt True\n"
    assert _read(os.path.join(result.path, "stderr")) == "failing\n"


def test_tune_run_carries_log_to_file(storage):
    analysis = tune.run(prints, config={"x": 3}, storage_path=storage, name="exp", verbose=0, log_to_file=True)
    [trial] = analysis.trials
    assert _read(os.path.join(trial.path, "stdout")) == "out 3\nafter report 3\n"


def test_trial_output_restores_the_streams_it_found(tmp_path):
    before = sys.stdout, sys.stderr
    output = TrialOutput(str(tmp_path), "stdout", None)
    output.start()
    assert sys.stdout is not before[0] and sys.stderr is before[1]
    print("captured")
    output.close()
    assert (sys.stdout, sys.stderr) == before
    print("not captured")
    assert _read(str(tmp_path / "stdout")) == "captured\n"
