"""Driver for test_node_death.py (a process of its own: it joins a cluster, not the test
run's local Ray).  Four trials run on two worker nodes; when trial x=0 reaches iteration
10 its node is killed.  Prints one JSON line with what each trial's files hold."""
import glob
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ray  # noqa: E402

import fasttune as tune  # noqa: E402
from cluster_testing import LocalCluster  # noqa: E402

ITERATIONS = 30


def train(config):
    shared = config["shared"]
    for i in range(ITERATIONS):
        node = ray.get_runtime_context().get_node_id()
        tune.report({"i": i, "node": node})
        if i == 10 and config["x"] == 0 and not os.path.exists(os.path.join(shared, "killed")):
            # Waits here until its node is killed (the driver does it on this result);
            # the restarted run finds the mark and goes on.
            while True:
                time.sleep(1)
        time.sleep(0.02)


class KillNodeOf(tune.Callback):
    def __init__(self, cluster, shared):
        self.cluster, self.shared, self.killed = cluster, shared, None

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if self.killed is None and trial.config["x"] == 0 and result["i"] == 10:
            self.killed = result["node"]
            open(os.path.join(self.shared, "killed"), "w").close()
            self.cluster.kill_node(self.cluster.name_of(result["node"]))


def main(root, nodes_root):
    storage, shared = os.path.join(root, "storage"), os.path.join(root, "shared")
    os.makedirs(storage)
    os.makedirs(shared)
    with LocalCluster(nodes_root) as cluster:
        # The driver's storage is not there for the worker nodes (a disk of their own).
        nodes = [cluster.add_node(f"worker{n}", num_cpus=2, private=[storage]) for n in range(2)]
        killer = KillNodeOf(cluster, shared)
        grid = tune.Tuner(
            train,
            param_space={"x": tune.grid_search([0, 1, 2, 3]), "shared": shared},
            run_config=tune.RunConfig(name="node_death", storage_path=storage, verbose=0, callbacks=[killer],
                                      failure_config=tune.FailureConfig(max_failures=2)),
        ).fit()
        trials = {}
        for trial_dir in sorted(glob.glob(os.path.join(storage, "node_death", "train_*"))):
            with open(os.path.join(trial_dir, "result.json")) as f:
                rows = [json.loads(line) for line in f]
            error = os.path.join(trial_dir, "error.txt")
            trials[str(rows[0]["config"]["x"])] = {
                "iterations": [row["i"] for row in rows],
                "nodes": sorted({row["node"] for row in rows}),
                "error": open(error).read() if os.path.exists(error) else None,
            }
        print(json.dumps({"errors": grid.num_errors, "trials": trials, "nodes": nodes, "killed": killer.killed}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
