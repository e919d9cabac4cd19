"""Driver for test_node_join.py's second test (a process of its own).  The only worker
node dies while its two trials wait at iteration 1; a new node joins a moment later from
a thread of the driver.  The trials must wait PENDING for it (not end the sweep), then
restart there.  Prints one JSON line: each trial's iterations and nodes, and the
warnings the sweep logged."""
import glob
import json
import logging
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ray  # noqa: E402

import fasttune as tune  # noqa: E402
from cluster_testing import LocalCluster  # noqa: E402

ITERATIONS = 3


def train(config):
    # The first run waits at iteration 1 until its node is killed (the driver marks that
    # first); the run that restarts afterwards finds the mark and goes on.
    first_run = not os.path.exists(os.path.join(config["shared"], "killed"))
    for i in range(ITERATIONS):
        tune.report({"i": i, "node": ray.get_runtime_context().get_node_id()})
        while i == 1 and first_run:
            time.sleep(1)


class KillTheNodeThenAddOne(tune.Callback):
    def __init__(self, cluster, shared):
        self.cluster, self.shared = cluster, shared
        self.waiting, self.replacement, self.thread = set(), None, None

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if self.thread is None and result["i"] == 1:
            self.waiting.add(trial.trial_id)
            if len(self.waiting) == 2:
                open(os.path.join(self.shared, "killed"), "w").close()
                self.cluster.kill_node("worker0")
                # The driver handles the workers' deaths after this returns: by then Ray
                # counts the node's CPUs no more, so the trials cannot start anywhere.
                dead = self.cluster.node_id("worker0")
                while any(n["NodeID"] == dead and n["Alive"] for n in ray.nodes()):
                    time.sleep(0.1)  # polled: Ray's health check notices the death
                self.thread = threading.Thread(target=self._add)
                self.thread.start()

    def _add(self):
        self.replacement = self.cluster.add_node("worker1", num_cpus=2)


class Warnings(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def main(root, nodes_root):
    storage, shared = os.path.join(root, "storage"), os.path.join(root, "shared")
    os.makedirs(storage)
    os.makedirs(shared)
    warnings = Warnings()
    logging.getLogger("fasttune").addHandler(warnings)
    with LocalCluster(nodes_root) as cluster:
        first = cluster.add_node("worker0", num_cpus=2)
        callback = KillTheNodeThenAddOne(cluster, shared)
        grid = tune.Tuner(
            train,
            param_space={"x": tune.grid_search([0, 1]), "shared": shared},
            run_config=tune.RunConfig(name="node_return", storage_path=storage, verbose=0, callbacks=[callback],
                                      failure_config=tune.FailureConfig(max_failures=1)),
        ).fit()
        callback.thread.join()
        trials = {}
        for trial_dir in sorted(glob.glob(os.path.join(storage, "node_return", "train_*"))):
            with open(os.path.join(trial_dir, "result.json")) as f:
                rows = [json.loads(line) for line in f]
            trials[str(rows[0]["config"]["x"])] = {"iterations": [row["i"] for row in rows],
                                                   "nodes": sorted({row["node"] for row in rows})}
        print(json.dumps({"errors": grid.num_errors, "trials": trials, "first": first,
                          "replacement": callback.replacement, "warnings": warnings.messages}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
