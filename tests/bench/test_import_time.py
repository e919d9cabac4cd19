"""bench.import_time reads -X importtime's cumulative time of the modules each case imports."""
from pathlib import Path

from bench.import_time import cumulative_us, measure

ROOT = str(Path(__file__).resolve().parents[2])


def test_the_named_modules_lines_are_summed_and_nested_ones_ignored():
    output = ("import time: self [us] | cumulative | imported package\n"
              "import time:       120 |        120 |   fasttune._core\n"
              "import time:      2000 |     240000 | fasttune\n")
    assert cumulative_us(output, ["fasttune"]) == 240000
    assert cumulative_us(output, ["ray"]) == 0


def test_each_case_is_measured_in_a_fresh_interpreter():
    report = measure(repeats=1, python_paths=[ROOT])
    assert list(report) == [f"fasttune ({ROOT})", "ray.tune"]
    assert all(row["import_ms"] > 0 and row["process_s"] > 0 for row in report.values())
