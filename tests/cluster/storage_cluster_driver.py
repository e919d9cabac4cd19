"""Driver for test_storage_on_cluster.py: sweeps whose experiment lives in S3 (moto's
server), run on a real cluster of a head and two worker nodes with two CPUs each (three
on the first one in ``interrupt`` and ``restore``).

A process of its own (it joins a cluster, not the test run's local Ray):

    storage_cluster_driver.py MODE SHARED NODES_ROOT URI

``SHARED`` is a directory every node sees (the trainables' hold markers, and the files
this driver leaves for the test); ``NODES_ROOT`` the cluster's short root; ``URI`` the
storage path.  ``FASTTUNE_STORAGE_CACHE`` (this node's staging and cache root) comes in
the environment: every worker node gets a private tmpfs over it, so no node sees the
driver's staging copy or another node's files.  Modes:

* ``sweep``: four trials to the end; prints what each worker node still holds below
  its cache root afterwards.
* ``node-death``: four trials; once all four hold after iteration ``HOLD_AT``, the node
  of trial x=0 is SIGKILLed (the trials there restart on the other node).
* ``interrupt``: four trials hold after iteration ``HOLD_AT`` until the file
  ``SHARED/resume`` exists, while a fifth one (the ticker, x=TICKER, on the first worker
  node's third CPU) keeps reporting: the driver's loop waits for events, and writes and uploads
  snapshots only while some come.  Once storage holds a snapshot written after all four
  held (it counts each one's checkpoint of iteration ``HOLD_AT - 1``), the driver writes
  ``SHARED/stored`` and goes on until the test SIGKILLs it.
* ``restore``: ``Tuner.restore(URI)`` (``URI`` is the interrupted experiment's) on a
  fresh cluster of the same shape.

Each mode but ``interrupt`` prints one JSON line at the end.
"""
import json
import os
import sys
import threading
import time
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ray  # noqa: E402

import fasttune as tune  # noqa: E402
from cluster_testing import LocalCluster, listing_on_node  # noqa: E402

ITERATIONS = 12
CHECKPOINT_EVERY = 3  # a checkpoint after iterations 2, 5, 8, 11
HOLD_AT = 6  # node-death / interrupt: the iteration after which every trial holds
TRIALS = 4
TICKER = TRIALS  # interrupt / restore: the x of a fifth trial that keeps reporting while the others hold


def train(config):
    """Reports iterations ``0..ITERATIONS-1`` from where its checkpoint left off; every
    row says which node made it and which checkpoint iteration this run resumed from.
    Checkpoints are made in the trial directory this node gives the trial (its scratch
    space below the cache root), and left there: removing them is fasttune's job."""
    node = ray.get_runtime_context().get_node_id()
    trial_dir = tune.get_context().get_trial_dir()
    start, restored_from = 0, None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            with open(os.path.join(directory, "state.json")) as f:
                restored_from = json.load(f)["i"]
        start = restored_from + 1
    hold = config.get("hold")
    if config["x"] == TICKER:
        tick(hold, node, trial_dir)
        return
    for i in range(start, ITERATIONS):
        metrics = {"i": i, "node": node, "trial_dir": trial_dir, "restored_from": restored_from}
        if (i + 1) % CHECKPOINT_EVERY == 0:
            made = os.path.join(trial_dir, f"made_{i}")
            os.makedirs(made, exist_ok=True)
            with open(os.path.join(made, "state.json"), "w") as f:
                json.dump({"i": i, "x": config["x"]}, f)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(made))
        else:
            tune.report(metrics)
        if hold and i == HOLD_AT:
            while not os.path.exists(hold):  # the driver (or the test) lets it go on
                time.sleep(0.05)


def tick(resume, node, trial_dir):
    """The ticker of ``interrupt``: reports until the file ``resume`` exists, so that the
    driver's loop keeps going (and writing snapshots) while the other trials hold; no
    checkpoints, so a restored run starts it afresh and it reports once."""
    i = 0
    while True:
        tune.report({"i": i, "node": node, "trial_dir": trial_dir, "restored_from": None})
        if os.path.exists(resume):
            return
        i += 1
        time.sleep(0.1)


class KillNodeWhenAllHold(tune.Callback):
    """Once every trial reported iteration HOLD_AT (and holds), SIGKILLs the node of trial
    x=0, then lets the trials go on; counts each trial's recoveries."""

    def __init__(self, cluster, release):
        self.cluster, self.release = cluster, release
        self.holding, self.killed, self.recoveries = {}, None, {}

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if self.killed is None and result["i"] == HOLD_AT:
            self.holding[trial.config["x"]] = result["node"]
            if len(self.holding) == TRIALS:
                self.killed = self.holding[0]
                self.cluster.kill_node(self.cluster.name_of(self.killed))
                # After the kill: no trial of the dead node may get past its checkpoint
                # of iteration HOLD_AT - 1 before it dies.
                open(self.release, "w").close()

    def on_trial_recover(self, iteration, trials, trial, **info):
        x = trial.config["x"]
        self.recoveries[x] = self.recoveries.get(x, 0) + 1


class SignalWhenStored(tune.Callback):
    """Once every trial but the ticker reported iteration HOLD_AT, waits (on a thread of
    its own) until storage holds an experiment snapshot written after that, which counts
    those results and so each trial's checkpoint of iteration HOLD_AT - 1; then writes
    the file ``stored``.  Does nothing in a restored run (the file ``resume`` exists then)."""

    def __init__(self, experiment_uri, stored, resume):
        self.experiment_uri, self.stored, self.resume = experiment_uri, stored, resume
        self.holding = set()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if os.path.exists(self.resume) or trial.config["x"] == TICKER or result["i"] != HOLD_AT:
            return
        self.holding.add(trial.trial_id)
        if len(self.holding) == TRIALS:
            # The newest snapshot in the driver's staging copy now: the next one counts
            # these results.
            written = newest_snapshot(os.listdir(trial.experiment_path))
            threading.Thread(target=self._signal_once_stored, args=(written,), daemon=True).start()

    def _signal_once_stored(self, written):
        from pyarrow import fs

        filesystem, path = fs.FileSystem.from_uri(self.experiment_uri)
        while True:
            names = [info.base_name for info in filesystem.get_file_info(fs.FileSelector(path))]
            if newest_snapshot(names) > written:
                open(self.stored, "w").close()
                return
            time.sleep(0.05)  # polling storage for the driver's next upload


def newest_snapshot(names):
    """The newest experiment snapshot among ``names`` ('' if none): their numbers are
    zero-padded, so the newest sorts last."""
    return max((name for name in names if name.startswith("experiment_state-")), default="")


def below(uri, name):
    """The URI of ``name`` inside the directory ``uri`` (its query options kept)."""
    split = urlsplit(uri)
    return urlunsplit(split._replace(path=split.path.rstrip("/") + "/" + name))


def start_cluster(nodes_root, cache, cpus=(2, 2)):
    os.makedirs(cache, exist_ok=True)  # the mount point of each worker node's private tmpfs
    cluster = LocalCluster(nodes_root).__enter__()
    nodes = [cluster.add_node(f"worker{n}", num_cpus=count, private=[cache]) for n, count in enumerate(cpus)]
    return cluster, nodes


def main(mode, shared, nodes_root, uri):
    cache = os.environ["FASTTUNE_STORAGE_CACHE"]
    # interrupt / restore: one more CPU, for the ticker.
    cluster, nodes = start_cluster(nodes_root, cache, cpus=(3, 2) if mode in ("interrupt", "restore") else (2, 2))
    try:
        out = {"nodes": nodes}
        space = {"x": tune.grid_search(list(range(TRIALS + (mode == "interrupt"))))}
        if mode == "sweep":
            grid = tune.Tuner(train, param_space=space, run_config=tune.RunConfig(
                name="sweep", storage_path=uri, verbose=0,
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2))).fit()
            out["leftovers"] = {node: listing_on_node(node, cache) for node in nodes}
        elif mode == "node-death":
            killer = KillNodeWhenAllHold(cluster, os.path.join(shared, "release"))
            space["hold"] = killer.release
            grid = tune.Tuner(train, param_space=space, run_config=tune.RunConfig(
                name="node_death", storage_path=uri, verbose=0, callbacks=[killer],
                failure_config=tune.FailureConfig(max_failures=2))).fit()
            survivor = next(node for node in nodes if node != killer.killed)
            out.update(killed=killer.killed, recoveries=killer.recoveries,
                       leftovers={survivor: listing_on_node(survivor, cache)})
        elif mode == "interrupt":
            resume = os.path.join(shared, "resume")
            with open(os.path.join(shared, "first_nodes.json"), "w") as f:
                json.dump(nodes, f)
            space["hold"] = resume
            signal = SignalWhenStored(below(uri, "interrupted"), os.path.join(shared, "stored"), resume)
            tune.Tuner(train, param_space=space, run_config=tune.RunConfig(
                name="interrupted", storage_path=uri, verbose=0, callbacks=[signal],
                sync_config=tune.SyncConfig(sync_period=0))).fit()
            raise AssertionError("the interrupted sweep was to be killed before it ended")
        elif mode == "restore":
            assert tune.Tuner.can_restore(uri)
            grid = tune.Tuner.restore(uri, trainable=train).fit()
        else:
            raise ValueError(mode)
        out.update(errors=grid.num_errors, experiment_path=grid.experiment_path,
                   checkpoints={str(r.config["x"]): r.checkpoint.path if r.checkpoint else None for r in grid})
        print(json.dumps(out))
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:5])
