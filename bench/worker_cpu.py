"""What one short trial costs a pooled worker's process (issue 20's ASHA target, worker side).

Runs ``asha_trials``' sweep (ASHA, grace period 1, 100 iterations at most, 1 CPU a trial,
``reuse_actors=True``) in this process after an unmeasured warm-up sweep, with the random
search seeded (``--seed``) so that every run makes the same decisions and results.  A
callback marks the 10th and the 90th percentile of ended trials; between the marks it
reports, per ended trial:

* ``worker_ms``: the CPU of the pooled workers' processes (``ray::TrialWorkerActor``), all
  their threads, from ``/proc/<pid>/task/*/schedstat`` (nanoseconds, not clock ticks);
* ``worker_switches``: their threads' time slices (a wake-up or a preemption each);
* ``driver_ms``: this process's CPU (``time.process_time``);
* ``polls``: the polls the driver sent on the workers' sockets;
* ``trials_per_s``: ended trials per wall-clock second.

With ``--workers 1`` (the default) one worker runs every trial, so its process's CPU is
the whole worker side.  One run a process (Ray's start is not timed).  To compare two
checkouts, alternate them, each on its own ``PYTHONPATH``, run as a script from a directory
outside both (``python -m`` would put the working directory's fasttune first)::

    cd /tmp; for i in 1 2 3 4 5; do for tree in $BASE $NEW; do
        PYTHONPATH=$tree python $NEW/bench/worker_cpu.py --trials 3000 --tag $tree; done; done
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from typing import Any, Dict, Tuple


def worker_threads() -> Dict[int, Tuple[int, int]]:
    """Each pooled worker process's (CPU ns, time slices), summed over its threads."""
    import psutil

    out = {}
    for process in psutil.process_iter(["cmdline"]):
        try:
            if "TrialWorker" not in " ".join(process.info["cmdline"] or []):
                continue
            cpu_ns = slices = 0
            for thread in os.listdir(f"/proc/{process.pid}/task"):
                try:
                    with open(f"/proc/{process.pid}/task/{thread}/schedstat") as f:
                        fields = f.read().split()
                except OSError:
                    continue  # a thread that ended meanwhile
                cpu_ns += int(fields[0])
                slices += int(fields[2])
            out[process.pid] = (cpu_ns, slices)
        except Exception:  # noqa: BLE001 - a process that ended meanwhile
            continue
    return out


def sweep(tune: Any, trials: int, seed: int, storage_root: str, polls: Any) -> Dict[str, float]:
    """One ASHA sweep of ``trials`` trials; the per-trial figures between its marks."""
    from fasttune import schedulers
    from fasttune.search.basic_variant import BasicVariantGenerator

    marks = []
    at = (trials // 10, trials - trials // 10)

    class Marks(tune.Callback):
        ended = 0

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.ended += 1
            if self.ended in at:
                marks.append((self.ended, worker_threads(), time.process_time(), polls[0], time.perf_counter()))

    def trainable(config):
        for step in range(1, 101):
            tune.report({"score": config["x"] * (1.0 - 1.0 / (step + 1))})

    with tempfile.TemporaryDirectory(dir=storage_root) as storage_path:
        grid = tune.Tuner(
            tune.with_resources(trainable, {"cpu": 1}), param_space={"x": tune.uniform(0.0, 1.0)},
            tune_config=tune.TuneConfig(
                num_samples=trials, metric="score", mode="max", reuse_actors=True,
                search_alg=BasicVariantGenerator(random_state=seed),
                scheduler=schedulers.ASHAScheduler(max_t=100, grace_period=1, reduction_factor=4)),
            run_config=tune.RunConfig(storage_path=storage_path, name="worker_cpu", verbose=0,
                                      callbacks=[Marks()])).fit()
    (ended0, workers0, driver0, polls0, wall0), (ended1, workers1, driver1, polls1, wall1) = marks
    n = ended1 - ended0
    common = [pid for pid in workers1 if pid in workers0]
    return {
        "trials": trials, "results": sum(r.metrics["training_iteration"] for r in grid), "measured_trials": n,
        "worker_ms": sum(workers1[p][0] - workers0[p][0] for p in common) / n * 1e-6,
        "worker_switches": sum(workers1[p][1] - workers0[p][1] for p in common) / n,
        "driver_ms": (driver1 - driver0) / n * 1e3,
        "polls": (polls1 - polls0) / n,
        "trials_per_s": n / (wall1 - wall0),
    }


def main(argv: Any = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=100, help="trials of an unmeasured sweep first")
    parser.add_argument("--workers", type=int, default=1, help="ray.init(num_cpus=...): pooled workers")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--storage-root", default="/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir())
    parser.add_argument("--tag", default="", help="a label printed with the figures")
    args = parser.parse_args(argv)

    import ray

    import fasttune as tune
    from fasttune.execution import _channel as channel

    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
    polls, send_frame = [0], channel.send_frame

    def counted_send_frame(*a: Any, **k: Any) -> None:  # the driver's polls on sockets
        polls[0] += 1
        send_frame(*a, **k)

    channel.send_frame = counted_send_frame
    sweep(tune, args.warmup, args.seed + 1, args.storage_root, polls)
    report = sweep(tune, args.trials, args.seed, args.storage_root, polls)
    report.update(tag=args.tag, workers=args.workers)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
