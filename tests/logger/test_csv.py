"""CSVLoggerCallback: progress.csv holds each reported result, nested keys flattened."""
import csv
import os

from reporting import STEPS, reported, reporting_sweep


def test_progress_csv_has_a_row_per_reported_result(ray_session, storage):
    grid = reporting_sweep(storage, "csv")
    for result in grid:
        x = result.config["x"]
        with open(os.path.join(result.path, "progress.csv"), newline="") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == STEPS
        for i, row in enumerate(rows, start=1):
            expected = reported(i, x)
            assert float(row["loss"]) == expected["loss"]
            assert float(row["acc/top1"]) == expected["acc"]["top1"]
            assert float(row["acc/top5"]) == expected["acc"]["top5"]
            assert int(row["n"]) == i and row["flag"] == str(expected["flag"]) and row["name"] == f"step{i}"
            assert int(row["training_iteration"]) == i
        assert len(result.metrics_dataframe) == STEPS
