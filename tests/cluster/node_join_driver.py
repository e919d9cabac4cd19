"""Driver for test_node_join.py (a process of its own: it joins a cluster, not the test
run's local Ray).  One worker node with 2 CPUs runs the first trials, which wait at their
first result; a second node joins then, and those trials go on only once a trial has
reported from it.  If the joined node never got work the sweep would never end.  Prints
one JSON line: which node each trial's rows came from."""
import glob
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ray  # noqa: E402

import fasttune as tune  # noqa: E402
from cluster_testing import LocalCluster  # noqa: E402

TRIALS = 8
ITERATIONS = 3


def train(config):
    release = os.path.join(config["shared"], "release")
    for i in range(ITERATIONS):
        tune.report({"i": i, "node": ray.get_runtime_context().get_node_id()})
        while not os.path.exists(release):  # polled: the driver creates it (see AddNodeThenRelease)
            time.sleep(0.05)


class AddNodeThenRelease(tune.Callback):
    """Once both CPUs of the first node are busy, a second node joins; once a trial
    reports from it, every trial may go on."""

    def __init__(self, cluster, shared):
        self.cluster, self.shared = cluster, shared
        self.first_nodes, self.joined = set(), None

    def on_trial_result(self, iteration, trials, trial, result, **info):
        node = result["node"]
        if self.joined is None:
            self.first_nodes.add(trial.trial_id)
            if len(self.first_nodes) == 2:
                self.joined = self.cluster.add_node("worker1", num_cpus=2)
        elif node == self.joined:
            open(os.path.join(self.shared, "release"), "w").close()


def main(root, nodes_root):
    storage, shared = os.path.join(root, "storage"), os.path.join(root, "shared")
    os.makedirs(storage)
    os.makedirs(shared)
    with LocalCluster(nodes_root) as cluster:
        first = cluster.add_node("worker0", num_cpus=2)
        joiner = AddNodeThenRelease(cluster, shared)
        grid = tune.Tuner(
            train,
            param_space={"x": tune.grid_search(list(range(TRIALS))), "shared": shared},
            run_config=tune.RunConfig(name="node_join", storage_path=storage, verbose=0, callbacks=[joiner]),
        ).fit()
        trials = {}
        for trial_dir in sorted(glob.glob(os.path.join(storage, "node_join", "train_*"))):
            with open(os.path.join(trial_dir, "result.json")) as f:
                rows = [json.loads(line) for line in f]
            trials[str(rows[0]["config"]["x"])] = {"iterations": [row["i"] for row in rows],
                                                   "nodes": sorted({row["node"] for row in rows})}
        print(json.dumps({"errors": grid.num_errors, "trials": trials, "first": first, "joined": joiner.joined}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
