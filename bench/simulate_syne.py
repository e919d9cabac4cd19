"""Syne Tune 0.16's simulator on issue 19's reference workload, beside fasttune.simulation.

Two things, in one process (Syne Tune is not in fasttune's extras, so this runs in a
virtual environment of its own; fasttune comes from the checkout through PYTHONPATH):

1. Values: the reference table (``fasttune.simulation.reference_asha_table``) is written to
   a CSV file; fasttune's ``TabularBlackbox`` reads it, and Syne Tune's
   ``BlackboxTabular`` is built from the same file (objectives ``loss`` and the cumulative
   ``elapsed_time``).  Every configuration's whole curve is compared, and the results Syne
   Tune's ``UserBlackboxBackend`` would report (``metrics_for_configuration``): they must be
   equal to the bit.
2. The reference run: ``UserBlackboxBackend`` over that ``BlackboxTabular``, Syne Tune's
   stopping ASHA (metric ``loss``, min, ``time_attr="epoch"``, ``max_t`` 27, grace period
   1, reduction factor 3), the first ``--trials`` rows of
   ``numpy.random.default_rng(seed).permutation(2000)`` as ``points_to_evaluate`` in that
   order, exactly ``--trials`` trials (the scheduler's ``suggest()`` returns None after
   that many), ``Tuner(sleep_time=0, callbacks=[SimulatorCallback()])``; for each number of
   workers, ``--repeats`` runs: wall time of ``Tuner.run`` and its CPU time (medians; on a
   shared machine the CPU time is the steadier number), results/s, trials/s (over the wall time),
   the number of results, the best loss, and each trial's last epoch (ASHA's decisions).

Setup and run (from the repository root)::

    python -m venv /work/venv-syne
    /work/venv-syne/bin/pip install "syne-tune==0.16.*" huggingface_hub pandas msgpack
    PYTHONPATH=. /work/venv-syne/bin/python bench/simulate_syne.py --workers 4,32 --repeats 3

(``huggingface_hub``: ``syne_tune.blackbox_repository`` imports it although nothing is
downloaded; ``msgpack``: ``import fasttune`` needs it.)  Output: a summary on stdout and
``bench/out/simulate-syne-latest.json`` (``--out``).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pandas as pd

from fasttune.simulation import TabularBlackbox, reference_asha_table, reference_trial_order

CONFIG_COLUMNS = ["lr", "width", "dropout"]


def syne_blackbox(frame: pd.DataFrame) -> Any:
    """Syne Tune's ``BlackboxTabular`` of a long table (one row per configuration and epoch)."""
    from syne_tune.blackbox_repository.blackbox_tabular import BlackboxTabular
    from syne_tune.config_space import loguniform, randint, uniform

    frame = frame.sort_values(CONFIG_COLUMNS + ["epoch"], kind="stable")
    epochs = np.sort(frame["epoch"].unique())
    grouped = frame.groupby(CONFIG_COLUMNS, sort=False)
    hyperparameters = grouped.head(1)[CONFIG_COLUMNS].reset_index(drop=True)
    n_configs = len(hyperparameters)
    objectives = frame[["loss", "elapsed_time"]].to_numpy().reshape(n_configs, 1, len(epochs), 2)
    return BlackboxTabular(
        hyperparameters=hyperparameters,
        configuration_space={
            "lr": loguniform(1e-4, 1e-1),
            "width": randint(16, 512),
            "dropout": uniform(0.0, 0.5),
        },
        fidelity_space={"epoch": randint(1, int(epochs.max()))},
        objectives_evaluations=objectives,
        fidelity_values=epochs,
        objectives_names=["loss", "elapsed_time"],
    )


def compare_values(ours: TabularBlackbox, theirs: Any) -> Dict[str, Any]:
    """Every configuration's curve from both; the number of values that differ."""
    from syne_tune.blackbox_repository.utils import metrics_for_configuration

    mismatches = 0
    compared = 0
    for row in range(ours.n_configs):
        config = {column: ours.configs[column][row].item() for column in CONFIG_COLUMNS}
        metrics, step_seconds = ours.curve(config)
        elapsed = ours.elapsed[ours.row(config)]
        curve = theirs.objective_function(config, seed=0)  # (epochs, objectives)
        reported = metrics_for_configuration(theirs, config, time_attr="epoch", seed=0)
        syne_loss = np.asarray([result["loss"] for result in reported])
        syne_elapsed = np.asarray([result["elapsed_time"] for result in reported])
        syne_steps = np.diff(syne_elapsed, prepend=0.0)
        mismatches += int(np.sum(curve[:, 0] != metrics["loss"])) + int(np.sum(curve[:, 1] != elapsed))
        mismatches += int(np.sum(syne_loss != metrics["loss"])) + int(np.sum(syne_elapsed != elapsed))
        mismatches += int(np.sum(syne_steps != step_seconds))
        if [result["epoch"] for result in reported] != ours.fidelities.tolist():
            mismatches += 1
        compared += 5 * len(ours.fidelities)
    return {"values_compared": compared, "values_differing": mismatches}


def run_syne(blackbox: Any, points: List[Dict[str, Any]], n_workers: int, seed: int) -> Dict[str, Any]:
    """One reference run of Syne Tune's simulator; wall time and what it decided."""
    from syne_tune import StoppingCriterion, Tuner
    from syne_tune.backend.simulator_backend.simulator_callback import SimulatorCallback
    from syne_tune.blackbox_repository.simulated_tabular_backend import UserBlackboxBackend
    from syne_tune.optimizer.schedulers.asha import AsynchronousSuccessiveHalving

    class ExactlyNTrials(AsynchronousSuccessiveHalving):
        """Syne Tune's ASHA that suggests ``n_trials`` configurations, then no more."""

        def __init__(self, n_trials: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.suggestions_left = n_trials

        def suggest(self):
            if self.suggestions_left == 0:
                return None
            self.suggestions_left -= 1
            return super().suggest()

    np.random.seed(seed)  # (ASHA's bracket choice draws from numpy's global generator)
    scheduler = ExactlyNTrials(
        len(points),
        config_space=blackbox.configuration_space,
        metric="loss",
        do_minimize=True,
        time_attr="epoch",
        max_t=27,
        grace_period=1,
        reduction_factor=3,
        random_seed=seed,
        searcher_kwargs={"points_to_evaluate": [dict(point) for point in points]},
    )
    backend = UserBlackboxBackend(blackbox=blackbox, elapsed_time_attr="elapsed_time")
    callback = SimulatorCallback()
    tuner = Tuner(
        trial_backend=backend,
        scheduler=scheduler,
        # The run ends when the scheduler has no more trials and the last one is done.
        stop_criterion=StoppingCriterion(max_wallclock_time=10**9),
        n_workers=n_workers,
        sleep_time=0,
        callbacks=[callback],
        results_update_interval=10**9,
        print_update_interval=10**9,
        save_tuner=False,
    )
    start, start_cpu = time.perf_counter(), time.process_time()
    tuner.run()
    wall_s, cpu_s = time.perf_counter() - start, time.process_time() - start_cpu
    results = callback.dataframe()
    last_epoch = results.groupby("trial_id")["epoch"].max()
    first_rows = results.groupby("trial_id").head(1).set_index("trial_id")
    in_order = all(
        {column: first_rows.loc[trial_id, f"config_{column}"].item() for column in CONFIG_COLUMNS} == point
        for trial_id, point in enumerate(points)
    )
    return {
        "workers": n_workers,
        "wall_s": wall_s,
        "cpu_s": cpu_s,
        "results": len(results),
        "trials": int(results["trial_id"].nunique()),
        "trials_in_points_order": in_order,
        "best_loss": float(results["loss"].min()),
        "trials_to_max_t": int((last_epoch >= 27).sum()),
        "simulated_end_s": float(results["st_tuner_time"].max()),
        "last_epoch_per_trial": [int(last_epoch[i]) for i in sorted(last_epoch.index)],
    }


def run_fasttune(blackbox: TabularBlackbox, points: List[Dict[str, Any]], n_workers: int, seed: int,
                 storage: str) -> Dict[str, Any]:
    """The same reference run on fasttune's simulated executor (no per-trial files, its
    default, as Syne Tune's simulator keeps its results in memory; the best loss over every
    result from an ``AnytimeRecorder``): wall time and what it decided."""
    import fasttune as tune
    from fasttune.schedulers import ASHAScheduler
    from fasttune.search import BasicVariantGenerator
    from fasttune.simulation import AnytimeRecorder, Simulation, anytime_curve

    recorder = AnytimeRecorder("loss")
    row_points = [dict(point, row=blackbox.row(point)) for point in points]
    tuner = tune.Tuner(
        Simulation(blackbox, num_workers=n_workers), param_space=blackbox.search_space,
        tune_config=tune.TuneConfig(
            metric="loss", mode="min", num_samples=len(points),
            scheduler=ASHAScheduler(time_attr="epoch", max_t=27, grace_period=1, reduction_factor=3),
            search_alg=BasicVariantGenerator(points_to_evaluate=row_points, random_state=seed)),
        run_config=tune.RunConfig(storage_path=storage, name=f"fasttune-{n_workers}-{time.monotonic_ns()}", verbose=0,
                                  callbacks=[recorder]))
    start, start_cpu = time.perf_counter(), time.process_time()
    grid = tuner.fit()
    wall_s, cpu_s = time.perf_counter() - start, time.process_time() - start_cpu
    last_epoch = [int(result.metrics["epoch"]) for result in grid]
    return {
        "workers": n_workers,
        "wall_s": wall_s,
        "cpu_s": cpu_s,
        "results": sum(result.metrics["training_iteration"] for result in grid),
        "trials": len(grid),
        "best_loss": float(anytime_curve(recorder, "loss").final),
        "trials_to_max_t": sum(epoch >= 27 for epoch in last_epoch),
        "last_epoch_per_trial": last_epoch,
    }


def main(argv: List[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--workers", default="4,32", help="comma-separated numbers of workers")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="seed of the trial order (and of Syne Tune's ASHA)")
    parser.add_argument("--skip-values", action="store_true", help="skip the value comparison")
    parser.add_argument("--out", default="bench/out/simulate-syne-latest.json")
    args = parser.parse_args(argv)
    logging.getLogger("syne_tune").setLevel(logging.WARNING)
    import syne_tune

    report: Dict[str, Any] = {"syne_tune": syne_tune.__version__, "trials": args.trials, "seed": args.seed}
    with tempfile.TemporaryDirectory() as scratch:
        os.environ.setdefault("SYNETUNE_FOLDER", os.path.join(scratch, "syne-tune"))
        path = os.path.join(scratch, "reference.csv")
        reference_asha_table().to_dataframe().to_csv(path, index=False)
        ours = TabularBlackbox(
            path, config_columns=CONFIG_COLUMNS, fidelity_column="epoch", metric_columns=["loss"],
            elapsed_column="elapsed_time",
        )
        theirs = syne_blackbox(pd.read_csv(path))
        if not args.skip_values:
            report["values"] = compare_values(ours, theirs)
            print(f"values: {report['values']}", flush=True)
        points = [
            {column: config[column] for column in CONFIG_COLUMNS}
            for config in reference_trial_order(ours, n_trials=args.trials, seed=args.seed)
        ]
        report["runs"] = []
        for n_workers in (int(w) for w in args.workers.split(",")):
            runs = [run_syne(theirs, points, n_workers, args.seed) for _ in range(args.repeats)]
            wall = statistics.median(run["wall_s"] for run in runs)
            summary = {
                "workers": n_workers,
                "wall_s_each": [round(run["wall_s"], 3) for run in runs],
                "wall_s_median": wall,
                # CPU seconds of this process: what the run costs when the machine is busy.
                "cpu_s_median": statistics.median(run["cpu_s"] for run in runs),
                "results_per_s": runs[0]["results"] / wall,
                "trials_per_s": runs[0]["trials"] / wall,
                "same_decisions_every_repeat": all(
                    run["last_epoch_per_trial"] == runs[0]["last_epoch_per_trial"] for run in runs
                ),
                **{key: runs[0][key] for key in ("results", "trials", "trials_in_points_order", "best_loss", "trials_to_max_t", "simulated_end_s")},
                "last_epoch_per_trial": runs[0]["last_epoch_per_trial"],
            }
            report["runs"].append(summary)
            shown = {key: value for key, value in summary.items() if key != "last_epoch_per_trial"}
            print(json.dumps(shown), flush=True)
            ours_runs = [run_fasttune(ours, points, n_workers, args.seed, scratch) for _ in range(args.repeats)]
            ours_wall = statistics.median(run["wall_s"] for run in ours_runs)
            same_epochs = sum(a == b for a, b in zip(ours_runs[0]["last_epoch_per_trial"], summary["last_epoch_per_trial"]))
            fasttune_summary = {
                "engine": "fasttune", "workers": n_workers,
                "wall_s_each": [round(run["wall_s"], 3) for run in ours_runs], "wall_s_median": ours_wall,
                "cpu_s_median": statistics.median(run["cpu_s"] for run in ours_runs),
                "results_per_s": ours_runs[0]["results"] / ours_wall,
                "results_per_s_vs_syne": (ours_runs[0]["results"] / ours_wall) / summary["results_per_s"],
                "same_decisions_every_repeat": all(
                    run["last_epoch_per_trial"] == ours_runs[0]["last_epoch_per_trial"] for run in ours_runs),
                "trials_stopped_at_the_same_epoch_as_syne": same_epochs,
                **{key: ours_runs[0][key] for key in ("results", "trials", "best_loss", "trials_to_max_t")},
            }
            report["runs"].append(fasttune_summary)
            print(json.dumps(fasttune_summary), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
