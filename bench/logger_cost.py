"""The default loggers' driver CPU per one-result trial (issue 20).

Runs ``N`` one-result trials (as ``trial_bookkeeping``) with the default loggers and with
``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1``, alternating, each run in a fresh process, and
prints the median driver CPU per trial of each (all the driver's threads: the event loop
and the writer threads) and their difference, the loggers' share; each run's line splits
its CPU by thread (``main``: the event loop; ``fasttune-files``: the result files' writer;
``fasttune-tbx``: TensorBoard's)::

    PYTHONPATH=. python -m bench.logger_cost --trials 5000 --repeats 3 --storage-root /dev/shm
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile


def _thread_cpu() -> dict:
    """CPU seconds of each of this process's threads, by name."""
    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/self/task/{tid}/comm") as f:
                name = f.read().strip()
        except OSError:
            continue
        out[(tid, name)] = (int(fields[11]) + int(fields[12])) / ticks
    return out


def _name_writer_threads() -> None:
    """Give each writer thread its name in /proc (Python 3.11 leaves it "python")."""
    import ctypes

    from fasttune.logger._writer_thread import WriterThread

    libc = ctypes.CDLL(None)
    drain = WriterThread._drain

    def named_drain(self) -> None:
        libc.prctl(15, self._thread_name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
        drain(self)

    WriterThread._drain = named_drain


def _one_run(trials: int, storage_root: str) -> dict:
    import threading
    import time

    import fasttune as tune
    from bench.workloads import trial_bookkeeping

    _name_writer_threads()
    seen: dict = {}
    stop = threading.Event()

    def watch() -> None:  # threads that end before fit() returns are seen while they run
        while not stop.wait(0.2):
            seen.update(_thread_cpu())


    storage = tempfile.mkdtemp(dir=storage_root)
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    before = _thread_cpu()
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out = trial_bookkeeping(tune, trials, storage)
    stop.set()
    watcher.join()
    seen.update(_thread_cpu())
    by_name: dict = {}
    for key, cpu in seen.items():
        # Python's own threads all show as "python": the main one, and those fit() started
        # (the writer threads, the searcher's).
        name = "main" if key[0] == str(os.getpid()) else key[1] + ("" if key in before else " (new)")
        by_name[name] = by_name.get(name, 0.0) + cpu - before.get(key, 0.0)
    out["thread_cpu_s"] = by_name
    ray.shutdown()
    import shutil

    shutil.rmtree(storage, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--storage-root", default="/dev/shm")
    parser.add_argument("--child", choices=("defaults", "disabled"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        out = _one_run(args.trials, args.storage_root)
        print("RESULT " + json.dumps(out))
        return
    cpu = {"defaults": [], "disabled": []}
    for _ in range(args.repeats):
        for case in ("defaults", "disabled"):
            env = dict(os.environ)
            env.pop("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", None)
            if case == "disabled":
                env["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
            done = subprocess.run([sys.executable, "-m", "bench.logger_cost", "--child", case, "--trials",
                                   str(args.trials), "--storage-root", args.storage_root],
                                  env=env, capture_output=True, text=True, check=True)
            line = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")][-1]
            out = json.loads(line[len("RESULT "):])
            assert out["complete"], out
            cpu[case].append(out["fit_driver_cpu_s"] / args.trials * 1e3)
            threads = ", ".join(f"{name} {seconds / args.trials * 1e3:.3f}" for name, seconds in
                                sorted(out["thread_cpu_s"].items(), key=lambda kv: -kv[1]) if seconds > 0.01)
            print(f"{case}: {cpu[case][-1]:.3f} ms/trial (fit {out['fit_s']:.2f} s; by thread, ms/trial: {threads})",
                  file=sys.stderr)
    with_loggers, without = statistics.median(cpu["defaults"]), statistics.median(cpu["disabled"])
    print(f"driver CPU per one-result trial ({args.trials} trials, median of {args.repeats}): "
          f"default loggers {with_loggers:.3f} ms, disabled {without:.3f} ms, "
          f"loggers' share {with_loggers - without:.3f} ms")


if __name__ == "__main__":
    main()
