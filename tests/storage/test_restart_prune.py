"""A trial that fails and is retried writes its checkpoints under the same names again;
workers upload without clearing a name first, so the runner deletes what the dead run
saved but never reported before the retry starts: a rewritten checkpoint holds only what
the retry wrote."""
import json
import os
import tempfile
import uuid

from pyarrow import fs

import fasttune as tune


def _train(config):
    """Reports step 0 with a checkpoint; on its first run it then leaves a checkpoint
    under the next name that it never reports (as a run that dies mid-report does),
    and fails."""
    start = 0
    if tune.get_checkpoint() is not None:
        with tune.get_checkpoint().as_directory() as directory:
            with open(os.path.join(directory, "state.json")) as f:
                start = json.load(f)["step"] + 1
    for step in range(start, 3):
        with tempfile.TemporaryDirectory() as directory:
            with open(os.path.join(directory, "state.json"), "w") as f:
                json.dump({"step": step}, f)
            tune.report({"step": step}, checkpoint=tune.Checkpoint.from_directory(directory))
        if step == 0 and start == 0:
            filesystem = fs.S3FileSystem(endpoint_override=config["endpoint"], scheme="http", access_key="testing",
                                         secret_key="testing", region="us-east-1")
            root = config["root"]
            trial = os.path.basename(tune.get_context().get_trial_dir())
            with filesystem.open_output_stream(f"{root}/{trial}/checkpoint_000001/stale.bin") as f:
                f.write(b"from the dead run")
            raise RuntimeError("the first run dies here")


def test_a_retried_trials_rewritten_checkpoint_holds_only_what_the_retry_wrote(ray_session, s3_endpoint,
                                                                                s3_filesystem, s3_bucket):
    name = f"retry-{uuid.uuid4().hex[:8]}"
    root = f"{s3_bucket}/restarts/{name}"
    grid = tune.Tuner(
        _train, param_space={"endpoint": s3_endpoint, "root": root},
        run_config=tune.RunConfig(name=name, storage_path=f"{s3_bucket}/restarts", storage_filesystem=s3_filesystem,
                                  verbose=0, failure_config=tune.FailureConfig(max_failures=1)),
    ).fit()
    assert grid.num_errors == 0
    trial = f"{root}/{os.path.basename(grid[0].path)}"
    files = sorted(os.path.relpath(info.path, trial) for info in
                   s3_filesystem.get_file_info(fs.FileSelector(trial, recursive=True))
                   if info.type == fs.FileType.File and "checkpoint_" in info.path)
    assert files == ["checkpoint_000000/state.json", "checkpoint_000001/state.json", "checkpoint_000002/state.json"]
    with s3_filesystem.open_input_stream(f"{trial}/result.json") as f:
        assert [json.loads(line)["step"] for line in f.read().splitlines()] == [0, 1, 2]
