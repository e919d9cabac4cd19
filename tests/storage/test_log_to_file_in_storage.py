"""RunConfig(log_to_file=True) for an experiment kept in storage: the trial's directory on
the worker's node is scratch, so the worker sends the captured files to the trial's
directory in storage when each run segment ends, appending to what earlier segments sent."""
import os
import sys
import uuid

import ray

import fasttune as tune
from fasttune import _storage as storage


def _fails_once(config):
    marker = config["marker"]
    print(f"attempt {config['x']}")
    if config["x"] == 1 and not os.path.exists(marker):
        open(marker, "w").close()
        print("failing", file=sys.stderr)
        raise RuntimeError("the first attempt fails")
    tune.report({"score": config["x"]})


@ray.remote(num_cpus=0)
def _files_in_node_scratch(location):
    root = storage.node_scratch(location)
    return [os.path.join(d, f) for d, _, files in os.walk(root) for f in files]


def test_captured_output_reaches_storage_and_a_restart_appends(ray_session, s3_filesystem, s3_bucket, tmp_path):
    name = f"logs-{uuid.uuid4().hex[:8]}"  # a scratch directory no earlier run used
    grid = tune.Tuner(
        _fails_once, param_space={"x": tune.grid_search([1, 2]), "marker": str(tmp_path / "failed_once")},
        run_config=tune.RunConfig(name=name, storage_path=f"{s3_bucket}/logs", storage_filesystem=s3_filesystem,
                                  verbose=0, log_to_file=True, failure_config=tune.FailureConfig(max_failures=1)),
    ).fit()
    assert grid.num_errors == 0
    expected = {1: ("attempt 1\nattempt 1\n", "failing\n"), 2: ("attempt 2\n", "")}
    for result in grid:
        stored = f"{s3_bucket}/logs/{name}/{os.path.basename(result.path)}"
        out, err = expected[result.config["x"]]
        with s3_filesystem.open_input_stream(f"{stored}/stdout") as f:
            assert f.read().decode() == out
        with s3_filesystem.open_input_stream(f"{stored}/stderr") as f:
            assert f.read().decode() == err
    location = storage.resolve(f"{s3_bucket}/logs/{name}", s3_filesystem)
    assert ray.get(_files_in_node_scratch.remote(location)) == []


class _PrintsInEachHook(tune.Trainable):
    def setup(self, config):
        print(f"setup {config['x']}")

    def step(self):
        return {"score": self.config["x"], "done": True}

    def cleanup(self):
        print(f"cleanup {self.config['x']}")


def test_a_kept_instances_cleanup_output_reaches_its_trials_file_in_storage(ray_session, s3_filesystem, s3_bucket):
    name = f"class-logs-{uuid.uuid4().hex[:8]}"
    grid = tune.Tuner(
        _PrintsInEachHook, param_space={"x": tune.grid_search([1, 2])},
        tune_config=tune.TuneConfig(max_concurrent_trials=1, reuse_actors=True),
        run_config=tune.RunConfig(name=name, storage_path=f"{s3_bucket}/logs", storage_filesystem=s3_filesystem,
                                  verbose=0, log_to_file=True),
    ).fit()
    assert grid.num_errors == 0
    for result in grid:
        x = result.config["x"]
        with s3_filesystem.open_input_stream(f"{s3_bucket}/logs/{name}/{os.path.basename(result.path)}/stdout") as f:
            assert f.read().decode() == f"setup {x}\ncleanup {x}\n"
    location = storage.resolve(f"{s3_bucket}/logs/{name}", s3_filesystem)
    assert ray.get(_files_in_node_scratch.remote(location)) == []
