"""For a sweep kept in storage, a trial's code runs in its directory on the node (the scratch
copy ``get_trial_dir()`` names): its relative writes reach storage with
``SyncConfig(sync_artifacts=True)``, a kept class instance's ``cleanup()`` included, and
nothing is left on the node."""
import os
import uuid

from pyarrow.fs import FileSelector

import fasttune as tune
from test_artifacts import _assert_nothing_left_on_the_node


class WritesRelativeFiles(tune.Trainable):
    def _write(self, what):
        with open(f"{what}_{self.config['x']}.txt", "w") as f:
            f.write(what)

    def setup(self, config):
        self._write("setup")

    def step(self):
        self._write("step")
        return {"cwd": os.getcwd(), "logdir": self.logdir, "trial_dir": tune.get_context().get_trial_dir()}

    def cleanup(self):
        self._write("cleanup")


def test_a_class_trials_relative_writes_reach_its_directory_in_storage(ray_session, s3_filesystem, s3_bucket):
    name = f"cwd-{uuid.uuid4().hex[:8]}"  # a scratch directory no earlier run used
    grid = tune.Tuner(
        WritesRelativeFiles, param_space={"x": tune.grid_search([1, 2])},
        tune_config=tune.TuneConfig(max_concurrent_trials=1),  # both on one pooled worker
        run_config=tune.RunConfig(name=name, storage_path=f"{s3_bucket}/cwd", storage_filesystem=s3_filesystem,
                                  verbose=0, stop={"training_iteration": 1},
                                  sync_config=tune.SyncConfig(sync_artifacts=True)),
    ).fit()
    assert grid.errors == []
    results = sorted(grid, key=lambda result: result.config["x"])
    assert results[0].metrics["pid"] == results[1].metrics["pid"]
    for result in results:
        x = result.config["x"]
        metrics = result.metrics
        assert os.path.realpath(metrics["cwd"]) == os.path.realpath(metrics["trial_dir"]) \
            == os.path.realpath(metrics["logdir"])
        stored = f"{s3_bucket}/cwd/{name}/{os.path.basename(result.path)}"
        written = sorted(info.base_name for info in s3_filesystem.get_file_info(FileSelector(stored))
                         if info.base_name.endswith(".txt"))
        assert written == [f"{what}_{x}.txt" for what in ("cleanup", "setup", "step")]
    _assert_nothing_left_on_the_node(s3_filesystem, f"{s3_bucket}/cwd/{name}")
