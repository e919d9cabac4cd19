import pytest

from fasttune._flatten import flatten_dict, lookup_flattened, lookup_nested

ROW = {"loss": 0.5, "val": {"acc": 0.9, "top/1": 0.8, "deep": {"x": 1}}, "a/b": 2, "empty": {}}


@pytest.mark.parametrize("key, expected", [
    ("loss", 0.5),
    ("val/acc", 0.9),
    ("a/b", 2),  # a literal key wins
    ("val/deep/x", 1),
    ("val/deep", {"x": 1}),  # what the path reaches, dict or not
    ("val", ROW["val"]),
    ("val/top/1", None),  # the path goes through "top", which is not there
    ("missing", None),
    ("loss/x", None),  # through a number
    ("empty/x", None),
])
def test_lookup_nested(key, expected):
    assert lookup_nested(ROW, key) == expected


@pytest.mark.parametrize("key, expected", [
    ("loss", 0.5),
    ("val/acc", 0.9),
    ("a/b", 2),
    ("val/deep/x", 1),
    ("val/deep", None),  # leaves only, below the top level
    ("val", ROW["val"]),  # a literal key of the row
    ("val/top/1", 0.8),  # a nested key holding "/"
    ("missing", None),
    ("empty", {}),
])
def test_lookup_flattened(key, expected):
    assert lookup_flattened(ROW, key) == expected


@pytest.mark.parametrize("lookup", [lookup_nested, lookup_flattened])
def test_default_and_no_row(lookup):
    assert lookup(ROW, "missing", default=-1) == -1
    assert lookup(None, "loss") is None
    assert lookup({}, "loss", default=0) == 0
    assert lookup({"x": None}, "x", default=0) is None  # a stored None is a value


def test_flatten_dict_round_trip_names():
    flat = flatten_dict({"a": {"b": 1, "c": {"d": 2}}, "e": 3})
    assert flat == {"a/b": 1, "a/c/d": 2, "e": 3}
    assert all(lookup_nested({"a": {"b": 1, "c": {"d": 2}}, "e": 3}, k) == v for k, v in flat.items())
