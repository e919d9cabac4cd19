"""``python -m bench.import_time [--repeats N] [--python-path DIR ...]``: what ``import fasttune``
costs, against ``from ray import tune``, as ``python -X importtime`` measures it.

Each repeat is a fresh interpreter; the engines alternate; the report is the median of the
cumulative time ``-X importtime`` gives the top-level module (``fasttune``; ``ray`` plus
``ray.tune``, which ``ray`` does not import itself) and of the whole process's wall time.  ``--python-path`` measures fasttune from another checkout (a
worktree at an older commit) in the same run, so before/after share one machine state.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional


def _one(statement: str, module: str, python_path: Optional[str]) -> tuple:
    env = dict(os.environ)
    if python_path:
        env["PYTHONPATH"] = python_path
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", statement], capture_output=True, text=True,
                          check=True, env=env)
    wall = time.perf_counter() - start
    return cumulative_us(done.stderr, module.split(",")), wall


def cumulative_us(importtime_output: str, modules: List[str]) -> int:
    """The summed cumulative microseconds ``-X importtime`` gives ``modules``.

    Example:
        >>> cumulative_us("import time: self [us] | cumulative | imported package\n"
        ...               "import time:      5 |      5 |   ray._private\n"
        ...               "import time:     10 |    300 | ray\n"
        ...               "import time:      4 |    600 | ray.tune\n", ["ray", "ray.tune"])
        900
    """
    total = 0
    for line in importtime_output.splitlines():
        parts = line.split("|")
        if line.startswith("import time:") and len(parts) == 3 and parts[2].strip() in modules:
            total += int(parts[1])
    return total


def measure(repeats: int, python_paths: List[str]) -> Dict[str, Dict[str, float]]:
    cases = [(f"fasttune ({path or 'installed'})", "import fasttune", "fasttune", path)
             for path in python_paths or [""]]
    cases.append(("ray.tune", "from ray import tune", "ray,ray.tune", None))
    samples: Dict[str, List[tuple]] = {name: [] for name, _, _, _ in cases}
    for _ in range(repeats):
        for name, statement, module, path in cases:
            samples[name].append(_one(statement, module, path))
    return {name: {"import_ms": statistics.median(s[0] for s in rows) / 1000,
                   "process_s": statistics.median(s[1] for s in rows)} for name, rows in samples.items()}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.import_time", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--python-path", action="append", default=[],
                        help="a checkout to import fasttune from (repeatable; default: the installed one)")
    args = parser.parse_args(argv)
    report = measure(args.repeats, args.python_path)
    print(f"| import | median -X importtime (ms) | median process wall (s) |  ({args.repeats} repeats, alternating)")
    print("|---|---|---|")
    for name, row in report.items():
        print(f"| {name} | {row['import_ms']:.0f} | {row['process_s']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
