"""A `ray start` cluster that is not the tests' own, for the tests of which Ray the suite
and ``fit()`` use.  Run as a script:

* ``hold ROOT``: start a head node under ROOT (tests/cluster's LocalCluster), print its
  address, and keep it up until stdin closes; the cluster's ``ray_current_cluster`` file
  is ``ROOT/head/ray/ray_current_cluster``, so a process whose ``TMPDIR`` is ``ROOT/head``
  finds it as ``ray.init()`` would find ``/tmp/ray/ray_current_cluster``;
* ``fit STORAGE``: run a one-trial ``fit()`` without calling ``ray.init()`` first.
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "cluster"))

from cluster_testing import LocalCluster, kill_leftovers, short_tempdir  # noqa: E402

__all__ = ["kill_leftovers", "short_tempdir", "address_file_of"]


def address_file_of(root: str) -> str:
    """Where the head node held under ``root`` writes ray_current_cluster."""
    return os.path.join(root, "head", "ray", "ray_current_cluster")


def hold(root: str) -> None:
    with LocalCluster(root) as cluster:
        # `ray start --block` writes its address file after the head takes connections
        # (seen late on a loaded machine): the cluster is announced once ray.init() would find it.
        deadline = time.monotonic() + 120
        while not (os.path.exists(address_file_of(root)) and os.path.getsize(address_file_of(root)) > 0):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the head node wrote no {address_file_of(root)} within 120 s")
            time.sleep(0.1)  # polling for a file to appear, not synchronising with a thread
        print(cluster.address, flush=True)
        sys.stdin.read()  # until the test closes it


def _one_report(config):
    import fasttune as tune

    tune.report({"loss": config["x"]})


def fit(storage: str) -> None:
    import fasttune as tune

    # The head node has no CPUs: a trial that asks for none runs there.
    grid = tune.Tuner(tune.with_resources(_one_report, {"cpu": 0}), param_space={"x": 1.0},
                      run_config=tune.RunConfig(name="joined", storage_path=storage, verbose=0)).fit()
    print(f"TRIALS {len(grid)} ERRORS {grid.num_errors}", flush=True)


if __name__ == "__main__":
    {"hold": hold, "fit": fit}[sys.argv[1]](sys.argv[2])
