"""TrialTable's setters of float columns (set_metrics, record_result, set_time_total) take
the same values in the compiled core and its twin: a real number, never a numeric string,
with the same exception type and message, and the core's order of checks (every argument
converted before the row's range is checked)."""
import decimal
import fractions
import math

import numpy as np
import pytest

import fasttune._core as compiled
import fasttune._core_fallback as twin


class HasFloat:
    def __float__(self):
        return 2.5


class HasIndex:
    def __index__(self):
        return 3


class FloatReturnsText:
    def __float__(self):
        return "2.5"


class TextSubclass(str):
    pass


VALUES = [
    1.5, -0.0, math.nan, math.inf, 7, True, 2 ** 2000, np.float32(1.5), np.int64(3), np.array(1.5),
    np.array([1.5]), decimal.Decimal("1.5"), fractions.Fraction(1, 4), HasFloat(), HasIndex(),
    FloatReturnsText(), "1.5", "nan", "inf", b"1.5", bytearray(b"1"), memoryview(b"1"), np.str_("1.5"),
    np.bytes_(b"1"), TextSubclass("1"), None, 1 + 0j, [1.0], object(),
]
SETTERS = {
    "set_metrics/last": lambda t, row, v: t.set_metrics(row, v, 1.0),
    "set_metrics/best": lambda t, row, v: t.set_metrics(row, 1.0, v),
    "record_result/time": lambda t, row, v: t.record_result(row, 2, v, 1.0),
    "record_result/metric": lambda t, row, v: t.record_result(row, 2, 1.0, v),
    "set_time_total": lambda t, row, v: t.set_time_total(row, v),
}


def _outcome(implementation, setter, row, value):
    """What the setter does on a fresh one-row table: its exception (type, message) or the
    row's float columns after it."""
    table = implementation.TrialTable(mode="min")
    table.add()
    try:
        setter(table, row, value)
    except Exception as exc:  # the point is to compare them
        return "raised", type(exc).__name__, str(exc)
    return "ok", tuple(repr(table.column(name)[0]) for name in ("last_metric", "best_metric", "time_total_s"))


@pytest.mark.parametrize("setter", SETTERS.values(), ids=list(SETTERS))
@pytest.mark.parametrize("value", VALUES, ids=[f"{type(v).__name__}-{i}" for i, v in enumerate(VALUES)])
def test_a_float_argument_is_taken_or_refused_alike(setter, value):
    assert _outcome(twin, setter, 0, value) == _outcome(compiled, setter, 0, value)


@pytest.mark.parametrize("setter", SETTERS.values(), ids=list(SETTERS))
@pytest.mark.parametrize("value", ["1.5", None, 1.5])
@pytest.mark.parametrize("row", [5, -1, "0", 0.0])
def test_a_bad_row_and_a_bad_value_raise_what_the_core_raises(setter, row, value):
    assert _outcome(twin, setter, row, value) == _outcome(compiled, setter, row, value)


@pytest.mark.parametrize("implementation", [compiled, twin], ids=["compiled", "python"])
def test_a_numeric_string_is_refused_and_the_row_left_as_it_was(implementation):
    table = implementation.TrialTable(mode="min")
    row = table.add()
    table.set_metrics(row, 4.0, 2.0)
    with pytest.raises(TypeError, match="must be real number, not str"):
        table.set_metrics(row, 3.0, "1.0")  # a bad best: the good last is not kept either
    assert (table.get_last_metric(row), table.get_best_metric(row)) == (4.0, 2.0)
