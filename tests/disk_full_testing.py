"""A sweep whose driver runs out of room for its result files, for the disk-full tests.

``drive()`` runs in a driver process of its own connected to the tests' Ray session.  It
lowers its own ``RLIMIT_FSIZE`` (after ``ray.init``, so Ray's processes keep theirs):
each trial's ``result.json`` pads every line with ``config["pad"]`` so that it outgrows
the limit after ``FULL_AFTER_ROWS`` results, while the experiment snapshot stays under it.
Python ignores SIGXFSZ, so the write that crosses the limit is short and the next one
fails with EFBIG, as on a full disk.  The trainable is the restore tests' counting one.
"""
import json
import os
import resource
import sys

import fasttune as tune
from fasttune.search import BasicVariantGenerator

import restore_testing
from restore_testing import counting_trainable

# The final snapshot must stay under the limit (~14.5 lines).  It holds the searcher's
# space (with the pad) and, for each trial, its config, its last result and the results its
# checkpoints were saved with (at most FULL_AFTER_ROWS // CHECKPOINT_EVERY = 3), each about
# a line: with 2 trials at most ~12 lines (30.5 KB, measured with both at 3 checkpoints).
# With 3 trials it reached ~17 lines when all three got far enough, and failed too.
NUM_SAMPLES = 2
# The pad makes a result line ~LINE_BYTES long: the limit falls inside row FULL_AFTER_ROWS + 1.
LINE_BYTES = 2500
FULL_AFTER_ROWS = 14


def whole_rows(path):
    """The iterations of the result file's lines; every line must be whole JSON."""
    with open(path, "rb") as f:
        data = f.read()
    assert not data or data.endswith(b"\n"), f"{path} ends in a torn line"
    return [json.loads(line)["training_iteration"] for line in data.splitlines()]


def never_stop(trial_id, result):
    """A stopper: the driver then judges each result as it comes, so each arrives in a
    batch of its own and a file fills at a row, not inside a batch of many (after a
    failed write no trial writes more: with big batches no trial might keep a checkpoint)."""
    return False


def make_tuner(tmp, storage, seed, pad=LINE_BYTES - 600, results_store="per_trial"):
    space = dict(restore_testing.param_space(tmp, interrupt_after=-1), pad="p" * pad)
    return tune.Tuner(
        counting_trainable,
        param_space=space,
        tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=NUM_SAMPLES,
                                    search_alg=BasicVariantGenerator(random_state=seed)),
        run_config=tune.RunConfig(name="full", storage_path=storage, verbose=0, stop=never_stop,
                                  results_store=results_store),
    )


def drive(address, tmp, storage, seed, limit_bytes, results_store="per_trial"):
    """The driver process: run the sweep under the file-size limit; print what fit() raised."""
    import ray

    ray.init(address=address, log_to_driver=False, configure_logging=False)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    try:
        make_tuner(tmp, storage, seed, results_store=results_store).fit()
    except OSError as exc:
        print("FIT RAISED " + json.dumps({"type": type(exc).__name__, "message": str(exc)}))
        sys.exit(3)


if __name__ == "__main__":
    drive(*json.loads(sys.argv[1]))
