"""The default loggers' driver CPU per one-result trial (issue 20).

Runs ``N`` one-result trials (as ``trial_bookkeeping``) with the default loggers and with
``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1``, alternating, each run in a fresh process, and
prints the median driver CPU per trial of each (all the driver's threads: the event loop
and the writer threads) and their difference, the loggers' share::

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


def _one_run(trials: int, storage_root: str) -> dict:
    import fasttune as tune
    from bench.workloads import trial_bookkeeping

    storage = tempfile.mkdtemp(dir=storage_root)
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    out = trial_bookkeeping(tune, trials, storage)
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
            print(f"{case}: {cpu[case][-1]:.3f} ms/trial (fit {out['fit_s']:.2f} s)", file=sys.stderr)
    with_loggers, without = statistics.median(cpu["defaults"]), statistics.median(cpu["disabled"])
    print(f"driver CPU per one-result trial ({args.trials} trials, median of {args.repeats}): "
          f"default loggers {with_loggers:.3f} ms, disabled {without:.3f} ms, "
          f"loggers' share {with_loggers - without:.3f} ms")


if __name__ == "__main__":
    main()
