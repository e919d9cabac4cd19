"""A sweep whose last result batches find the disk full only as the driver closes its
files at the end, for ``test_disk_full_at_the_end.py``.

``drive()`` runs in a driver process of its own connected to the tests' Ray session and
lowers its own ``RLIMIT_FSIZE`` after ``ray.init`` (as ``disk_full_testing`` does): the
one trial's ``result.json`` outgrows it at the trial's last result (a stopper that never
stops makes every result a batch of its own: the worker waits for its answer).  The loop's
check of the writer thread (``TrialFiles.check``, which waits for nothing) sees nothing
here: the writer thread has not reached the failing batch yet when the loop checks, as
happens when the last batch is written after the loop's last step; the failure then
first shows up when the files are closed.
"""
import json
import os
import resource
import sys

import fasttune as tune
from fasttune.logger._trial_files import TrialFiles
from fasttune.search import BasicVariantGenerator

import disk_full_testing
import restore_testing
from restore_testing import counting_trainable


class RecordExperimentEnd(tune.Callback):
    """Writes the trials' statuses to ``path`` when the end-of-experiment callbacks run."""

    def __init__(self, path):
        self.path = path

    def on_experiment_end(self, trials, **info):
        with open(self.path, "w") as f:
            f.write(" ".join(t.status for t in trials))


def make_tuner(tmp, storage):
    space = dict(restore_testing.param_space(tmp, interrupt_after=-1),
                 pad="p" * (disk_full_testing.LINE_BYTES - 600))
    return tune.Tuner(
        counting_trainable,
        param_space=space,
        tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=1,
                                    search_alg=BasicVariantGenerator(random_state=5)),
        run_config=tune.RunConfig(name="full", storage_path=storage, verbose=0, stop=disk_full_testing.never_stop,
                                  callbacks=[RecordExperimentEnd(os.path.join(tmp, "ended"))]),
    )


def drive(address, tmp, storage, limit_bytes):
    """The driver process: run the sweep under the file-size limit; print what fit() raised."""
    import ray

    ray.init(address=address, log_to_driver=False, configure_logging=False)
    TrialFiles.check = lambda self: None  # the writer thread lags the loop (see the module docstring)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    try:
        make_tuner(tmp, storage).fit()
    except OSError as exc:
        print("FIT RAISED " + json.dumps({"type": type(exc).__name__, "message": str(exc)}))
        sys.exit(3)


if __name__ == "__main__":
    drive(*json.loads(sys.argv[1]))
