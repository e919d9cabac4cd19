"""Where an ASHA sweep of tiny trials spends its time (issue 20's ASHA target).

Each trial stops at its first rung and waits there for the scheduler's answer: one
``poll`` round trip per decision.  This runs ``asha_trials`` (ASHA, grace period 1, 100
iterations at most, 1 CPU a trial, ``reuse_actors=True``) in this process after an
unmeasured warm-up sweep, with the executor's poll submission and collection wrapped
(bench code only: nothing in fasttune changes), and reports:

* polls per trial (on Ray or on the driver's socket, see ``fasttune/execution/_channel.py``;
  ``FASTTUNE_WORKER_CHANNEL=ray`` keeps them all on Ray); how long a poll is in flight (submitted to collected by the driver)
  and the driver's turnaround (collected to the worker's next poll), p10/p50/p90 in ms;
* the CPU per trial of the driver process and of the pooled workers' processes;
* what one Ray actor round trip costs by itself here: a trivial call on a threaded actor
  (``max_concurrency=4``, as the pooled workers), driver CPU and actor CPU per call;
* with ``--bound``, what the same sweep would cost if no decision needed a round trip: the
  same trials under FIFO, each stopping itself at ASHA's rungs (1, 4, 16, 64) unless its
  ``x`` is in the top quarter of the uniform draw there (the cutoff ASHA converges to, known
  in advance).  It is an upper bound on deciding in the worker, not a scheduler: its
  results per trial are close to ASHA's, and its results/s and CPU per trial are reported
  beside ASHA's, run in the same process.

::

    python -m bench.decision_latency --trials 2000 --storage-root /dev/shm --bound
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List


def _quantiles_ms(values: List[float]) -> List[float]:
    if len(values) < 2:
        return [round(v * 1e3, 3) for v in values]
    cuts = statistics.quantiles(values, n=10)
    return [round(cuts[i] * 1e3, 3) for i in (0, 4, 8)]


class PollClock:
    """Wraps ``RayTrialExecutor._dispatch`` and ``_take_reply`` to time each worker's polls
    (on Ray or on the driver's socket)."""

    def __init__(self) -> None:
        self.in_flight: List[float] = []
        self.turnaround: List[float] = []
        self._submitted: Dict[int, float] = {}
        self._collected: Dict[int, float] = {}

    def install(self) -> None:
        from fasttune.execution.ray_trial_executor import RayTrialExecutor

        dispatch, take_reply, clock = RayTrialExecutor._dispatch, RayTrialExecutor._take_reply, self

        def polling(worker: Any) -> bool:
            return worker.future is not None or worker.channel_busy

        def timed_dispatch(executor: Any) -> None:
            idle = {w.slot for w in executor._workers.values() if not polling(w)}
            dispatch(executor)
            now = time.perf_counter()
            for worker in executor._workers.values():
                if worker.slot in idle and polling(worker):
                    clock._submitted[worker.slot] = now
                    if worker.slot in clock._collected:
                        clock.turnaround.append(now - clock._collected.pop(worker.slot))

        def timed_take_reply(executor: Any, worker: Any, raw: bytes) -> None:
            take_reply(executor, worker, raw)
            now = time.perf_counter()
            if worker.slot in clock._submitted:
                clock.in_flight.append(now - clock._submitted.pop(worker.slot))
                clock._collected[worker.slot] = now

        RayTrialExecutor._dispatch = timed_dispatch
        RayTrialExecutor._take_reply = timed_take_reply

    def clear(self) -> None:
        self.in_flight.clear()
        self.turnaround.clear()


class WorkerCpu:
    """The CPU seconds the pooled workers' processes (``ray::TrialWorkerActor``) use while it runs."""

    def __init__(self) -> None:
        self._first: Dict[int, float] = {}
        self._last: Dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        import psutil

        while not self._stop.is_set():
            for process in psutil.process_iter(["cmdline"]):
                try:
                    if "TrialWorker" in " ".join(process.info["cmdline"] or []):
                        times = process.cpu_times()
                        self._first.setdefault(process.pid, times.user + times.system)
                        self._last[process.pid] = times.user + times.system
                except Exception:  # noqa: BLE001 - a process that ended meanwhile
                    continue
            self._stop.wait(0.05)

    def __enter__(self) -> "WorkerCpu":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def seconds(self) -> float:
        return sum(self._last[pid] - self._first[pid] for pid in self._last)


def round_trips(calls: int) -> Dict[str, Dict[str, float]]:
    """Driver and actor CPU (µs) and wall time of one trivial poll on a threaded actor
    (``max_concurrency=4``, as the pooled workers): as a Ray actor call, and over the
    driver's socket as ``fasttune.execution._channel`` carries a worker's polls."""
    import psutil
    import ray

    from fasttune.execution import _channel as channel

    @ray.remote(num_cpus=1, max_concurrency=4)
    class Echo:
        def pid(self) -> int:
            return os.getpid()

        def poll(self, payload: bytes = b"") -> bytes:
            return payload

        def open_channel(self, path: str, secret: bytes) -> bool:
            taken: List[bytes] = []
            channel.serve(channel.connect(path, secret), taken.append, lambda: taken.pop(),
                          lambda commands: None, lambda exc: None)
            return True

    actor = Echo.remote()
    process = psutil.Process(ray.get(actor.pid.remote()))
    listener = channel.ChannelListener()
    ray.get(actor.open_channel.remote(listener.path, listener.secret_for(0)))
    (_, sock), = listener.accept()

    def on_ray() -> None:
        ray.get(actor.poll.remote(b"x" * 64))

    def on_socket() -> None:
        channel.send_frame(sock, channel.POLL + b"x" * 64)
        channel.read_frame(sock)

    out = {}
    for name, call in (("ray", on_ray), ("socket", on_socket)):
        for _ in range(200):
            call()
        actor_cpu, driver_cpu, wall = sum(process.cpu_times()[:2]), time.process_time(), time.perf_counter()
        for _ in range(calls):
            call()
        out[name] = {"wall_us": (time.perf_counter() - wall) / calls * 1e6,
                     "driver_cpu_us": (time.process_time() - driver_cpu) / calls * 1e6,
                     "actor_cpu_us": (sum(process.cpu_times()[:2]) - actor_cpu) / calls * 1e6}
    sock.close()
    listener.close()
    ray.kill(actor)
    return out


# Where asha_trials' ASHA (reduction factor 4) stops a trial of score ~ x * const, x ~ U(0, 1):
# below the 3/4 quantile of what its rung recorded.  The cutoffs it converges to, as x.
_RUNG_CUTOFFS = {1: 1 - 1 / 4, 4: 1 - 1 / 16, 16: 1 - 1 / 64, 64: 1 - 1 / 256}


def rungs_decided_in_trial(tune: Any, trials: int, storage_root: str) -> Dict[str, Any]:
    """asha_trials' sweep with no scheduler: each trial stops itself at the rungs (see the
    module docstring); results/s, polls and driver CPU per trial."""
    from bench.workloads import fit_and_count

    def trainable(config: Dict[str, float]) -> None:
        for step in range(1, 101):
            tune.report({"score": config["x"] * (1.0 - 1.0 / (step + 1))})
            cutoff = _RUNG_CUTOFFS.get(step)
            if cutoff is not None and config["x"] < cutoff:
                return

    with tempfile.TemporaryDirectory(dir=storage_root) as storage_path:
        out = fit_and_count(
            tune, tune.with_resources(trainable, {"cpu": 1}), name="rungs_in_trial", storage_path=storage_path,
            param_space={"x": tune.uniform(0.0, 1.0)},
            tune_config=tune.TuneConfig(num_samples=trials, metric="score", mode="max", reuse_actors=True))
    return {"results": out["results"], "results_per_s": out["results"] / out["fit_s"],
            "driver_cpu_ms_per_trial": out["fit_driver_cpu_s"] / trials * 1e3}


def measure(trials: int, warmup: int, storage_root: str, calls: int, bound: bool = False) -> Dict[str, Any]:
    import ray

    import fasttune
    from bench import workloads

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    clock = PollClock()
    clock.install()
    with tempfile.TemporaryDirectory(dir=storage_root) as storage_path:
        workloads.asha_trials(fasttune, warmup, storage_path)
    if bound:
        rungs_decided_in_trial(fasttune, warmup, storage_root)
    clock.clear()
    with WorkerCpu() as workers, tempfile.TemporaryDirectory(dir=storage_root) as storage_path:
        out = workloads.asha_trials(fasttune, trials, storage_path)
    polls = len(clock.in_flight)
    report = {
        "trials": trials, "results": out["results"], "fit_s": out["fit_s"],
        "results_per_s": out["results"] / out["fit_s"],
        "polls_per_trial": polls / trials,
        "in_flight_ms_p10_p50_p90": _quantiles_ms(clock.in_flight),
        "turnaround_ms_p10_p50_p90": _quantiles_ms(clock.turnaround),
        "driver_cpu_ms_per_trial": out["fit_driver_cpu_s"] / trials * 1e3,
        "workers_cpu_ms_per_trial": workers.seconds / trials * 1e3,
        "round_trip": round_trips(calls),
    }
    if bound:
        clock.clear()
        report["rungs_decided_in_trial"] = rungs_decided_in_trial(fasttune, trials, storage_root)
        report["rungs_decided_in_trial"]["polls_per_trial"] = len(clock.in_flight) / trials
    return report


def main(argv: Any = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--round-trips", type=int, default=2000)
    parser.add_argument("--storage-root", default="/dev/shm" if os.path.isdir("/dev/shm") else None)
    parser.add_argument("--bound", action="store_true",
                        help="also run the sweep with rungs decided in the trial (see above)")
    args = parser.parse_args(argv)
    report = measure(args.trials, args.warmup, args.storage_root or tempfile.gettempdir(), args.round_trips,
                     args.bound)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
