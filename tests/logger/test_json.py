"""JsonLoggerCallback: result.json holds each reported result, with the config."""
import math
import os

from fasttune_testing import lines
from reporting import STEPS, reported, reporting_sweep


def test_result_json_has_every_reported_result_and_the_config(ray_session, storage):
    grid = reporting_sweep(storage, "json")
    for result in grid:
        x = result.config["x"]
        rows = lines(os.path.join(result.path, "result.json"))
        assert [row["training_iteration"] for row in rows] == list(range(1, STEPS + 1))
        for i, row in enumerate(rows, start=1):
            expected = reported(i, x)
            assert math.isnan(row.pop("nan")) and math.isnan(expected.pop("nan"))
            assert {key: row[key] for key in expected} == expected
            assert row["config"] == {"x": x, "tag": "t"} and row["trial_id"] == result.metrics["trial_id"]
            assert row["done"] is False  # as Ray Tune's: a function's last report is not marked done
