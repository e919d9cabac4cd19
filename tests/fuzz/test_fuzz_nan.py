"""NaN and infinity in results are written as Ray Tune 2.x writes them: ``NaN``,
``Infinity``, ``-Infinity`` in result.json (``json.dumps``'s default ``allow_nan``) and
``nan``, ``inf``, ``-inf`` in progress.csv (``str``); see docs/architecture.md, section 6."""
import csv
import io
import json
import os
import tempfile

import numpy as np
import pytest

import fasttune as tune
import fasttune._core as compiled
import fasttune._core_fallback as twin

from fuzz_testing import run_in_process

NAN, INF = float("nan"), float("inf")
REPORTED = {"nan": NAN, "inf": INF, "ninf": -INF, "np64": np.float64("nan"), "np32": np.float32("-inf"),
            "in_list": [NAN, INF, 1.5], "nested": {"x": -INF}}
# Ray Tune's JsonLoggerCallback: json.dump(result, f, cls=SafeFallbackEncoder); for these
# values the encoder's fallback is never reached, so the text is json.dumps's own.
JSON_TEXT = ('"nan": NaN, "inf": Infinity, "ninf": -Infinity, "np64": NaN, "np32": -Infinity, '
             '"in_list": [NaN, Infinity, 1.5], "nested": {"x": -Infinity}')
# Ray Tune's CSVLoggerCallback: flatten_dict(result, "/") and csv.DictWriter (str of each value).
CSV_ROW = {"nan": "nan", "inf": "inf", "ninf": "-inf", "np64": "nan", "np32": "-inf",
           "in_list": "[nan, inf, 1.5]", "nested/x": "-inf"}


def _reported_as_python():
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in REPORTED.items()}


def test_nan_and_infinity_reach_the_files_as_ray_tune_writes_them():
    assert json.dumps(_reported_as_python())[1:-1] == JSON_TEXT  # the Ray Tune reference, computed

    def train(config):
        tune.report(dict(REPORTED))

    with tempfile.TemporaryDirectory() as root:
        runner = run_in_process(train, os.path.join(root, "nan"), {})
        trial_dir = runner.get_trials()[0].path
        with open(os.path.join(trial_dir, "result.json"), encoding="utf-8") as f:
            line = f.readline()
        with open(os.path.join(trial_dir, "progress.csv"), newline="", encoding="utf-8") as f:
            row = next(csv.DictReader(f))
    assert line.startswith("{" + JSON_TEXT + ", ")
    assert {k: row[k] for k in CSV_ROW} == CSV_ROW


@pytest.mark.parametrize("core", [compiled, twin], ids=["compiled", "python"])
def test_both_cores_render_nan_and_infinity_alike(core):
    table = core.TrialTable("min")
    table.add()
    results = core.ResultBuffer(table, "nan")
    results.open_trial(0, "t_00000", "{}", None, start_time=1000.0, hostname="host", node_ip="10.0.0.1", pid=1)
    ingested = results.ingest(0, [_reported_as_python()], [1001.0], None)
    assert ingested.json_bytes.decode().startswith("{" + JSON_TEXT + ", ")
    row = next(csv.DictReader(io.StringIO(ingested.csv_bytes.decode(), newline="")))
    assert {k: row[k] for k in CSV_ROW} == CSV_ROW
