"""What reading a large sweep's results costs: ``fit()``'s ResultGrid (iterated, ranked, as a
DataFrame) and the experiment read back from its directory (``ResultGrid.from_path``,
``ExperimentAnalysis``), after a simulated ASHA sweep of N trials that writes no trial files.

    python -m bench.grid_read --trials 100000 --repeats 5

The sweep is ``bench.simulate_scale``'s (issue 19's workload on ``learning_curve_table(N)``),
stored on ``--storage-root`` (default: the temporary directory).  Each read is timed
``--repeats`` times (process CPU for the grid's calls, wall time for the readers, which read
files); printed as medians, in µs a trial for the grid's calls and seconds for the readers.
Run it from each tree for an A/B (the tree's ``fasttune`` is the one imported).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List


def _median_of(call: Callable[[], Any], repeats: int, clock: Callable[[], float]) -> float:
    times = []
    for _ in range(repeats):
        start = clock()
        call()
        times.append(clock() - start)
    return statistics.median(times)


def measure(n_trials: int, repeats: int, storage_root: str) -> Dict[str, Any]:
    import fasttune as tune
    from fasttune.schedulers import ASHAScheduler
    from fasttune.search import BasicVariantGenerator
    from fasttune.simulation import Simulation, learning_curve_table, reference_trial_order

    blackbox = learning_curve_table(n_trials, seed=0)
    points = reference_trial_order(blackbox, n_trials=n_trials, seed=0)
    with tempfile.TemporaryDirectory(dir=storage_root) as storage:
        tuner = tune.Tuner(
            Simulation(blackbox, num_workers=4),
            param_space=blackbox.search_space,
            tune_config=tune.TuneConfig(
                metric="loss", mode="min", num_samples=n_trials,
                scheduler=ASHAScheduler(time_attr="epoch", max_t=27, grace_period=1, reduction_factor=3),
                search_alg=BasicVariantGenerator(points_to_evaluate=points, random_state=0)),
            run_config=tune.RunConfig(storage_path=storage, name="grid_read", verbose=0))
        grid = tuner.fit()
        best_loss = grid.get_best_result().metrics["loss"]
        per_trial = 1e6 / n_trials
        out: Dict[str, Any] = {"trials": n_trials, "repeats": repeats}
        cpu = time.process_time
        out["iterate_us"] = per_trial * _median_of(lambda: [r.metrics["loss"] for r in grid], repeats, cpu)
        out["get_best_result_us"] = per_trial * _median_of(grid.get_best_result, repeats, cpu)
        out["get_dataframe_us"] = per_trial * _median_of(grid.get_dataframe, repeats, cpu)
        experiment = os.path.join(storage, "grid_read")
        read = tune.ResultGrid.from_path(experiment)
        found = [r.metrics["loss"] for r in read if r.metrics]
        out["from_path_results_with_metrics"] = len(found)
        out["from_path_best_equals_fit"] = bool(found) and min(found) == best_loss
        out["from_path_s"] = _median_of(lambda: tune.ResultGrid.from_path(experiment), repeats, time.perf_counter)
        out["experiment_analysis_s"] = _median_of(
            lambda: tune.ExperimentAnalysis(experiment, default_metric="loss", default_mode="min"), repeats,
            time.perf_counter)
    return out


def main(argv: List[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--storage-root", default=tempfile.gettempdir())
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.trials, args.repeats, args.storage_root)))


if __name__ == "__main__":
    main(sys.argv[1:])
