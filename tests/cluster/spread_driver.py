"""Driver for test_node_join.py's spread test (a process of its own): two worker nodes
with 4 CPUs each, two trials at once (Ray's default would pack both onto one).  Prints
one JSON line: the node of each trial."""
import glob
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ray  # noqa: E402

import fasttune as tune  # noqa: E402
from cluster_testing import LocalCluster  # noqa: E402


def train(config):
    tune.report({"node": ray.get_runtime_context().get_node_id()})


def main(root, nodes_root):
    storage = os.path.join(root, "storage")
    with LocalCluster(nodes_root) as cluster:
        nodes = [cluster.add_node(f"worker{n}", num_cpus=4) for n in range(2)]
        tune.Tuner(train, param_space={"x": tune.grid_search([0, 1])},
                   run_config=tune.RunConfig(name="spread", storage_path=storage, verbose=0)).fit()
        ran_on = {}
        for trial_dir in sorted(glob.glob(os.path.join(storage, "spread", "train_*"))):
            with open(os.path.join(trial_dir, "result.json")) as f:
                row = json.loads(f.readline())
            ran_on[str(row["config"]["x"])] = row["node"]
        print(json.dumps({"nodes": nodes, "ran_on": ran_on}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
