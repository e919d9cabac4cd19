"""The sweep whose files the logger tests check against what it reported."""
import fasttune as tune
from fasttune_testing import fit

STEPS = 5


def reported(i, x):
    """What ``_reporting`` reports at step ``i`` (1-based) with config ``x``."""
    return {"loss": x / i, "acc": {"top1": i * 0.1, "top5": i * 0.25}, "n": i, "flag": i % 2 == 0,
            "name": f"step{i}", "hist": [float(i), 2.0 * i, 3.0 * i], "nan": float("nan")}


def _reporting(config):
    for i in range(1, STEPS + 1):
        tune.report(reported(i, config["x"]))


def reporting_sweep(storage, name, **run_kwargs):
    """Two trials (x = 1.0, 3.0) of STEPS results each, with the default loggers."""
    return fit(_reporting, storage, {"x": tune.grid_search([1.0, 3.0]), "tag": "t"}, name=name, **run_kwargs)
