"""Driver for test_storage_on_cluster.py's PBT test: a population of four on two worker
nodes (two CPUs each, private disks), checkpoints in S3 (moto's server).

    pbt_cluster_driver.py SHARED NODES_ROOT URI

The population is made so that an exploit across nodes happens every run:

* each iteration adds ``rate`` to a trial's score, and ``FAST_BONUS`` more on the node
  ``fast_node`` (the first worker node): both trials there are ahead of both trials on
  the other node, whatever their rates;
* the four trials start together (all four at once: two per node) and tell each other
  their node and rate through ``SHARED``;
* the slow node's lowest trial reports its first perturbation point (training iteration
  ``PERTURBATION_INTERVAL``) only after the fast node's best trial reported its own.  By
  then PBT has recorded that best score, so the slow trial is in the lower quantile and
  the fast best trial in the upper one: it clones a checkpoint made on the other node.

Every checkpoint holds the trainable's whole state, and the result that reported it
says what it saved; the first result after a restore says what was restored.  Prints one
JSON line at the end.
"""
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import ray  # noqa: E402

import fasttune as tune  # noqa: E402
from cluster_testing import listing_on_node  # noqa: E402
from fasttune.schedulers import PopulationBasedTraining  # noqa: E402
from storage_cluster_driver import start_cluster  # noqa: E402

ITERATIONS = 6
PERTURBATION_INTERVAL = 4  # one perturbation point: training iteration 4
CHECKPOINT_EVERY = 2  # a checkpoint at training iterations 2, 4 and 6
FAST_BONUS = 100
RATES = [1, 2, 3, 4]


def wait_for(predicate):
    deadline = time.monotonic() + 120
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the population did not line up within 120 s")
        time.sleep(0.02)  # polling files the other trials write


def line_up(shared, trial_id, node, rate):
    """Tell the others this trial's node and rate, and wait until all four have: returns
    ``{trial_id: (node, rate)}``."""
    started = os.path.join(shared, "started")
    os.makedirs(started, exist_ok=True)
    with open(os.path.join(started, f".{trial_id}"), "w") as f:
        json.dump([node, rate], f)
    os.rename(os.path.join(started, f".{trial_id}"), os.path.join(started, trial_id))  # whole when seen
    wait_for(lambda: len([n for n in os.listdir(started) if not n.startswith(".")]) == len(RATES))
    population = {}
    for name in os.listdir(started):
        if not name.startswith("."):
            with open(os.path.join(started, name)) as f:
                population[name] = tuple(json.load(f))
    return population


def train(config):
    node = ray.get_runtime_context().get_node_id()
    context = tune.get_context()
    trial_id, trial_dir = context.get_trial_id(), context.get_trial_dir()
    shared, fast = config["shared"], node == config["fast_node"]
    top_reported, released = os.path.join(shared, "top_reported"), os.path.join(shared, "released")
    state, restored, role = {"i": -1, "score": 0.0, "trial": trial_id, "node": node}, None, None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            with open(os.path.join(directory, "state.json")) as f:
                state = json.load(f)
        restored = dict(state)
        if os.path.exists(os.path.join(shared, f"low.{trial_id}")):
            open(released, "w").close()  # the low trial cloned: the others may go on
    else:
        population = line_up(shared, trial_id, node, config["rate"])
        fast_ones = {t: rate for t, (n, rate) in population.items() if n == config["fast_node"]}
        slow_ones = {t: rate for t, (n, rate) in population.items() if n != config["fast_node"]}
        assert len(fast_ones) == len(slow_ones) == 2, population
        role = ("top" if trial_id == max(fast_ones, key=fast_ones.get)
                else "low" if trial_id == min(slow_ones, key=slow_ones.get) else None)
        if role == "low":
            open(os.path.join(shared, f"low.{trial_id}"), "w").close()
    for i in range(state["i"] + 1, ITERATIONS):
        if i == PERTURBATION_INTERVAL:
            # Every trial holds after the perturbation point until the low trial's turn
            # came: PBT clones only from trials that have not finished, and the latest
            # checkpoint of each is the one of the perturbation point.
            wait_for(lambda: os.path.exists(released))
        gain = config["rate"] + (FAST_BONUS if fast else 0)
        state = {"i": i, "score": state["score"] + gain, "trial": trial_id, "node": node}
        metrics = {"i": i, "score": state["score"], "node": node, "restored": restored}
        restored = None  # only the first result of a run from a checkpoint says so
        if role == "low" and i + 1 == PERTURBATION_INTERVAL:
            wait_for(lambda: os.path.exists(top_reported))
        if (i + 1) % CHECKPOINT_EVERY == 0:
            made = os.path.join(trial_dir, f"made_{i}")
            os.makedirs(made, exist_ok=True)
            with open(os.path.join(made, "state.json"), "w") as f:
                json.dump(state, f)
            tune.report(dict(metrics, saved=state), checkpoint=tune.Checkpoint.from_directory(made))
        else:
            tune.report(metrics)
        if i + 1 == PERTURBATION_INTERVAL:
            # report() of a perturbation point returns once PBT decided (it holds the
            # score then); it returns at all only when this trial did not clone another.
            if role == "top":
                open(top_reported, "w").close()
            elif role == "low":
                open(released, "w").close()


def main(shared, nodes_root, uri):
    random.seed(7)  # PBT's draws (the donor among the upper quantile, the explored rate)
    np.random.seed(7)
    cache = os.environ["FASTTUNE_STORAGE_CACHE"]
    cluster, nodes = start_cluster(nodes_root, cache)
    try:
        scheduler = PopulationBasedTraining(
            time_attr="training_iteration", perturbation_interval=PERTURBATION_INTERVAL,
            hyperparam_mutations={"rate": RATES}, quantile_fraction=0.25)
        grid = tune.Tuner(
            train,
            param_space={"rate": tune.grid_search(RATES), "fast_node": nodes[0], "shared": shared},
            tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=scheduler),
            run_config=tune.RunConfig(name="pbt", storage_path=uri, verbose=0),
        ).fit()
        leftovers = {node: listing_on_node(node, cache) for node in nodes}
        print(json.dumps({"nodes": nodes, "errors": grid.num_errors, "leftovers": leftovers}))
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:4])
