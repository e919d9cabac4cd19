"""What serving an experiment over HTTP costs (``tune.run(server_port=...)``).

Two figures, measured in one process (one ``ray.init(num_cpus=2)``), runs alternating
with and without the server so drift favours neither:

* sweep time with the server against without it: ``bookkeeping`` (M trials of one
  result each) and ``results`` (2 trials of N results each); medians of the repeats
  and their ratio (> 1: the server costs time);
* a request's round trip (``GET /trials/<id>`` from a ``TuneClient``) while the loop is
  busy with results, and while it is idle waiting on a worker; median and p90.

    python -m bench.bench_server                      # M=2000, N=50000, 3 repeats, 200 requests
    python -m bench.bench_server --trials 200 --results 5000 --repeats 1 --requests 50   # smoke (~1 min)
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional

import fasttune as tune
from fasttune.web_server import SERVER_FILE, TuneClient


def _one_result(config: Dict[str, Any]) -> None:
    tune.report({"score": config["x"]})


def _many_results(config: Dict[str, Any]) -> None:
    for i in range(config["n"]):
        tune.report({"score": i * config["x"]})


def _busy(config: Dict[str, Any]) -> None:
    i = 0
    while i % 1000 or not os.path.exists(config["hold"]):
        tune.report({"score": i})
        i += 1


def _held(config: Dict[str, Any]) -> None:
    tune.report({"score": 0})
    while not os.path.exists(config["hold"]):
        time.sleep(0.005)


def _sweep(storage: str, name: str, workload: str, size: int, server: bool) -> float:
    if workload == "bookkeeping":
        kwargs: Dict[str, Any] = dict(config={"x": tune.uniform(0, 1)}, num_samples=size)
        trainable = _one_result
    else:
        kwargs = dict(config={"x": tune.grid_search([1, 2]), "n": size})
        trainable = _many_results
    started = time.perf_counter()
    tune.run(trainable, name=name, storage_path=storage, verbose=0, server_port=0 if server else None, **kwargs)
    return time.perf_counter() - started


def _client_for(path: str, alive: threading.Thread) -> TuneClient:
    while not os.path.exists(os.path.join(path, SERVER_FILE)):
        if not alive.is_alive():
            raise RuntimeError("the sweep ended before its server started")
        time.sleep(0.01)
    return TuneClient(experiment_path=path)


def _round_trips(client: TuneClient, trial_id: Optional[str], count: int) -> List[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        if trial_id is None:
            client.get_all_trials()
        else:
            client.get_trial(trial_id)
        times.append(time.perf_counter() - started)
    return times


def _latency(storage: str, name: str, busy: bool, requests: int) -> List[float]:
    path = os.path.join(storage, name)
    hold = os.path.join(storage, f"{name}.hold")
    # Busy: results in a tight loop until the measurement is over; idle: one result, then
    # a trial that waits, so the loop waits on its worker.
    target = _busy if busy else _held
    kwargs = dict(config={"hold": hold})
    thread = threading.Thread(target=lambda: tune.run(target, name=name, storage_path=storage, verbose=0,
                                                      server_port=0, **kwargs), daemon=True)
    thread.start()
    client = _client_for(path, thread)
    while True:
        trials = client.get_all_trials()["trials"]
        if trials and trials[0]["status"] == "RUNNING" and trials[0]["result"]:
            break
        time.sleep(0.01)
    times = _round_trips(client, trials[0]["id"], requests)
    open(hold, "w").close()
    thread.join()
    return times


def _p90(values: List[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=2000, help="bookkeeping: trials of one result")
    parser.add_argument("--results", type=int, default=50000, help="results: results per trial (2 trials)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--requests", type=int, default=200, help="round trips per latency figure")
    args = parser.parse_args(argv)

    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    storage = tempfile.mkdtemp(prefix="bench-server-")
    print(f"load average before: {os.getloadavg()}")
    for workload, size in (("bookkeeping", args.trials), ("results", args.results)):
        runs: Dict[bool, List[float]] = {False: [], True: []}
        for repeat in range(args.repeats):
            order = (False, True) if repeat % 2 == 0 else (True, False)
            for server in order:
                name = f"{workload}-{repeat}-{'server' if server else 'plain'}"
                runs[server].append(_sweep(storage, name, workload, size, server))
        plain, served = statistics.median(runs[False]), statistics.median(runs[True])
        print(f"{workload} (size {size}): without server median {plain:.2f}s {runs[False]}, "
              f"with server median {served:.2f}s {runs[True]}, ratio {served / plain:.3f}")
    for busy in (True, False):
        times = _latency(storage, f"latency-{'busy' if busy else 'idle'}", busy, args.requests)
        print(f"GET /trials/<id> round trip, loop {'busy with results' if busy else 'idle'}: "
              f"median {statistics.median(times) * 1e3:.2f} ms, p90 {_p90(times) * 1e3:.2f} ms "
              f"({len(times)} requests)")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
