"""What the XGBoost and LightGBM callback tests share: a seeded dataset, Ray Tune's own
callbacks as an oracle, and reading back what a trial reported."""
import json
import os
import sys

import numpy as np

from fasttune_testing import lines

# The project's simulation of a sweep (the schedulers' oracle), beside the scheduler tests.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "schedulers"))
from simulated_runner import SimulatedRunner  # noqa: E402


def dataset(seed=0, rows=300, features=6):
    """``(x_train, y_train, x_valid, y_valid)`` of a seeded binary task with some noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features))
    signal = x[:, 0] - 0.7 * x[:, 1] + 0.5 * x[:, 2] * x[:, 3]
    y = (signal + rng.normal(scale=0.8, size=rows) > 0).astype(int)
    split = rows * 2 // 3
    return x[:split], y[:split], x[split:], y[split:]


def recording(ray_callback_class):
    """Ray Tune's callback class with its two report calls recorded instead of sent: what it
    would report each round, and whether with a checkpoint (its engine never runs)."""

    class Recording(ray_callback_class):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.reports = []

        def _report_metrics(self, report_dict):
            self.reports.append([dict(report_dict), False])

        def _save_and_report_checkpoint(self, report_dict, model):
            self.reports.append([dict(report_dict), True])

    return Recording


def postprocessing(name):
    """A ``results_postprocessing_fn`` by name (configs hold names, not functions)."""
    if name == "mean":
        return lambda metrics: {**metrics, "mean": sum(metrics.values()) / len(metrics)}
    return None


def save_oracle(path, reports):
    with open(path, "w") as f:
        json.dump(reports, f)


def reported_like_the_oracle(result, oracle_path):
    """The trial's rows as ``[[chosen metrics, checkpointed?], ...]`` beside Ray Tune's record."""
    with open(oracle_path) as f:
        oracle = json.load(f)
    rows = lines(os.path.join(result.path, "result.json"))
    ours = [[{key: row[key] for key in metrics if key in row}, row["checkpoint_dir_name"] is not None]
            for row, (metrics, _) in zip(rows, oracle)]
    return ours, oracle, rows


def asha_finals(scheduler, curves, metric):
    """The final iteration of each trial (keyed by its ``eta``) when ``scheduler`` runs the
    ``curves`` ``{eta: [metric after round 1, ...]}`` one trial at a time, in order."""
    sim = SimulatedRunner(scheduler, curve=lambda config, it: curves[config["eta"]][it - 1],
                          configs=[{"eta": eta} for eta in curves], metric=metric, mode="min",
                          max_concurrent=1, max_concurrent_trials=True).run()
    return sim.final_iterations("eta")
