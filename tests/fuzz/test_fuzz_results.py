"""Random results through ``report()`` -> ``result.json``/``progress.csv`` ->
``ResultGrid.from_path``: what can be stored is stored as reported (as Ray Tune writes
it), what cannot fails the reporting trial with an error naming the key, and the other
trial of the sweep keeps its result either way."""
import csv
import os
import pickle
import tempfile

import numpy as np
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

import fasttune as tune
from fasttune import ResultGrid

from fasttune_testing import fit
from fuzz_testing import FUZZ, as_written, comparable, is_clear_error, read_result_lines, run_in_process

# The automatic fields fasttune fills in (and "config"): a result naming them is a
# different question from the one fuzzed here.
RESERVED = {"timestamp", "checkpoint_dir_name", "done", "training_iteration", "trial_id", "date",
            "time_this_iter_s", "time_total_s", "pid", "hostname", "node_ip", "time_since_restore",
            "iterations_since_restore", "config", "should_checkpoint"}

# Text that UTF-8 can carry (a lone surrogate cannot be stored in any file format here).
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)
string_keys = text.filter(lambda k: k not in RESERVED)
other_keys = st.one_of(st.integers(-3, 3), st.binary(max_size=3), st.tuples(st.integers(0, 2)), st.none(),
                       st.booleans(), st.floats(allow_nan=False))
floats = st.floats(allow_nan=True, allow_infinity=True)
numpy_scalars = st.one_of(
    floats.map(np.float64), floats.map(np.float32), st.integers(-2**63, 2**63 - 1).map(np.int64),
    st.integers(0, 255).map(np.uint8), st.booleans().map(np.bool_))
numpy_arrays = st.lists(floats, max_size=3).map(np.array)
# msgpack's integers: a value outside them cannot be reported.
huge_ints = st.one_of(st.integers(min_value=2**64), st.integers(max_value=-2**63 - 1))
leaves = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), floats, text, st.binary(max_size=4),
                   numpy_scalars, numpy_arrays)
values = st.recursive(
    leaves,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.tuples(inner, inner),
                            st.dictionaries(string_keys, inner, max_size=3)),
    max_leaves=8)
results = st.dictionaries(string_keys, values, max_size=5)


def _bad_keys(value):
    """The non-string keys in ``value``, outermost first (a result must have string keys
    throughout; ``None`` is one of them, hence a list, not a "found or None")."""
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                found.append(key)
            found += _bad_keys(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            found += _bad_keys(item)
    return found


def _has_huge_int(value):
    if isinstance(value, dict):
        return any(_has_huge_int(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_huge_int(v) for v in value)
    return isinstance(value, int) and not isinstance(value, bool) and not -2**63 <= value < 2**64


@st.composite
def fuzzed_results(draw):
    """A result: mostly storable, sometimes with a non-string key (at any depth) or an
    integer msgpack cannot carry."""
    result = dict(draw(results))  # a new dict: the example printed is the one reported
    twist = draw(st.sampled_from(["none", "none", "key", "nested key", "huge int"]))
    if twist == "key":
        result[draw(other_keys)] = draw(leaves)
    elif twist == "nested key":
        result[draw(string_keys)] = {draw(other_keys): draw(leaves)}
    elif twist == "huge int":
        result[draw(string_keys)] = [draw(huge_ints)]
    return result


def _sweep(path, reported):
    """Two trials: "fuzz" reports ``reported`` (then a plain second result), "plain"
    reports one plain result."""
    def train(config):
        if config["which"] == "fuzz":
            tune.report(dict(reported))
            tune.report({"after": 1})
        else:
            tune.report({"loss": 1.0})

    return run_in_process(train, path, {"which": tune.grid_search(["fuzz", "plain"])})


def check_stored(reported, error, stored):
    """The invariant for one trial that reported ``reported`` and then ``{"after": 1}``:
    ``error`` is what the trial ended with, ``stored`` its Result as read from disk."""
    bad_keys = _bad_keys(reported)
    if bad_keys or _has_huge_int(reported):
        assert error is not None, f"{reported!r} was accepted"
        assert is_clear_error(error), repr(error)
        if bad_keys:  # the error names the key it found (report() walks keys in order)
            assert any(f"the key {key!r} (a {type(key).__name__})" in str(error) for key in bad_keys), str(error)
        assert read_result_lines(stored.path) == []
        return
    assert error is None, f"{reported!r} failed its trial: {error!r}"
    lines = read_result_lines(stored.path)
    assert len(lines) == 2
    for key, value in reported.items():
        assert comparable(lines[0][key]) == as_written(value), key
    assert comparable(stored.metrics) == comparable(lines[1])
    with open(os.path.join(stored.path, "progress.csv"), newline="", encoding="utf-8") as f:
        assert len(list(csv.DictReader(f))) == 2


@settings(FUZZ, max_examples=200, deadline=10_000)
@given(reported=fuzzed_results())
def test_reported_result_is_stored_as_reported_or_fails_its_trial_naming_the_key(reported):
    with tempfile.TemporaryDirectory() as root:
        path = os.path.join(root, "fuzz")
        runner = _sweep(path, reported)  # never raises: one trial's result cannot end the sweep
        fuzz = next(t for t in runner.get_trials() if t.config["which"] == "fuzz")
        grid = ResultGrid.from_path(path)
        plain = [r for r in grid if r.config["which"] == "plain"]
        assert len(plain) == 1 and plain[0].error is None and plain[0].metrics["loss"] == 1.0
        assert [row["loss"] for row in read_result_lines(plain[0].path)] == [1.0]
        check_stored(reported, fuzz.error, next(r for r in grid if r.config["which"] == "fuzz"))


def report_from_file(config):
    """A trial of the Ray fit: reports the result at ``index`` of the pickled list."""
    with open(config["source"], "rb") as f:
        reported = pickle.load(f)[config["index"]]
    tune.report(reported)
    tune.report({"after": 1})


TRIALS_PER_FIT = 6


# Two real fits of six trials each: the in-process test above carries the volume, these
# check that the Ray hop (the reply bytes through Ray's object store) changes nothing.
# No shrinking: each try would be a fit of its own.
@settings(FUZZ, max_examples=2, deadline=None, phases=[Phase.explicit, Phase.generate])
@given(reported=st.lists(fuzzed_results(), min_size=TRIALS_PER_FIT, max_size=TRIALS_PER_FIT))
def test_results_of_a_real_fit_are_stored_as_reported_or_fail_their_trial(ray_session, reported):
    with tempfile.TemporaryDirectory() as root:
        source = os.path.join(root, "results.pkl")
        with open(source, "wb") as f:
            pickle.dump(reported, f)
        grid = fit(report_from_file, root, name="fuzz",
                   space={"index": tune.grid_search(list(range(TRIALS_PER_FIT))), "source": source})
        assert len(grid) == TRIALS_PER_FIT
        errors = {r.config["index"]: r.error for r in grid}
        stored = {r.config["index"]: r for r in ResultGrid.from_path(grid.experiment_path)}
        for index, result in enumerate(reported):
            check_stored(result, errors[index], stored[index])
