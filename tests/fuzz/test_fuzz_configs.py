"""Random configs through trial creation and through the TuneServer's ``POST /trials``:
a config is carried to its trial as given (what msgpack cannot carry is cloudpickled, as
snapshots do), only a value nothing can carry fails its trial, naming the key, and the
server refuses a request before accepting it, never with a 500; the experiment's other
trial keeps its result either way."""
import datetime
import http.client
import json
import math
import os
import tempfile
import threading

import numpy as np
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

import fasttune as tune
from fasttune import ResultGrid
from fasttune.web_server import TuneServer

from fuzz_testing import FUZZ, in_process_runner, is_clear_error, read_result_lines, run_in_process, run_to_end, same

# What each trial's trainable received, by trial id (the worker runs in this process).
RECEIVED = {}


def record_config(config):
    RECEIVED[tune.get_context().get_trial_id()] = config
    tune.report({"loss": 1.0})


def module_function(x):
    return x


class ModuleClass:
    pass


text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=6)
# "grid_search" marks a search space and a leading "_" is kept out of trial names: both
# are about search spaces, not about carrying a value.
keys = text.filter(lambda k: "grid_search" not in k)
floats = st.floats(allow_nan=True, allow_infinity=True)
carryable = st.one_of(
    st.none(), st.booleans(), st.integers(), floats, text, st.binary(max_size=4),
    floats.map(np.float64), st.integers(-2**31, 2**31 - 1).map(np.int32),
    st.dates(), st.datetimes(), st.just(module_function), st.just(ModuleClass), st.just(math.sqrt))
configs = st.dictionaries(
    keys,
    st.recursive(carryable, lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.tuples(inner), st.dictionaries(keys, inner, max_size=3)), max_leaves=6),
    max_size=4)


def _first_uncarryable_key(config, path=""):
    for key, value in config.items():
        where = f"{path}/{key}" if path else key
        if isinstance(value, type(threading.Lock())):
            return key
        if isinstance(value, dict):
            found = _first_uncarryable_key(value, where)
            if found is not None:
                return found
    return None


@st.composite
def trial_configs(draw):
    """A config, sometimes with a value nothing can carry (a lock) at some key."""
    config = dict(draw(configs))
    if draw(st.integers(0, 4)) == 0:
        config[draw(keys)] = threading.Lock()
    return config


# No shrinking here or below: a failing example leaves its sweep's worker behind, and
# shrinking one took minutes (the examples print unshrunk, reproducibly).
@settings(FUZZ, max_examples=150, deadline=10_000, phases=[Phase.explicit, Phase.generate])
@given(config=trial_configs())
def test_config_reaches_its_trial_as_given_or_fails_that_trial_naming_the_key(config):
    RECEIVED.clear()
    with tempfile.TemporaryDirectory() as root:
        path = os.path.join(root, "fuzz")
        # Two trials: the fuzzed config, and a plain one beside it.
        space = {"which": tune.grid_search(["plain-a", "plain-b"])}
        runner = in_process_runner(record_config, path, space)
        fuzz_config = dict(config, which="fuzz")
        runner.add_trial(runner.experiment.trial_factory(fuzz_config, experiment_tag="fuzz"))
        run_to_end(runner)  # never raises: one trial's config cannot end the sweep
        trials = runner.get_trials()
        fuzz = next(t for t in trials if t.experiment_tag == "fuzz")
        others = [t for t in trials if t is not fuzz]
        assert [t.status for t in others] == ["TERMINATED", "TERMINATED"]
        for trial in others:
            assert [row["loss"] for row in read_result_lines(trial.path)] == [1.0]
        bad_key = _first_uncarryable_key(config)
        if bad_key is not None:
            assert fuzz.status == "ERROR" and is_clear_error(fuzz.error), repr(fuzz.error)
            assert repr(bad_key) in str(fuzz.error) or bad_key in str(fuzz.error), str(fuzz.error)
        else:
            assert fuzz.status == "TERMINATED", fuzz.error
            assert same(RECEIVED[fuzz.trial_id], fuzz_config), (RECEIVED[fuzz.trial_id], fuzz_config)
        grid = ResultGrid.from_path(path)
        assert sorted(r.metrics["loss"] for r in grid if r.error is None and r.metrics) == \
            [1.0] * (3 if bad_key is None else 2)


# ---- the TuneServer ----------------------------------------------------------------------------
json_values = st.recursive(
    # integers past msgpack's 64 bits too: JSON has no bound
    st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=2**64, max_value=2**70), floats, text),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)),
    max_leaves=8)
bodies = st.one_of(
    # mostly well-formed add requests, with any config a JSON object can be
    st.fixed_dictionaries({"name": st.one_of(st.none(), text), "spec": st.fixed_dictionaries(
        {"config": st.dictionaries(keys, json_values, max_size=4)})}),
    # and any JSON value at all
    json_values)


def _post(server, body_bytes):
    connection = http.client.HTTPConnection(server.host, server.port, timeout=30)
    try:
        connection.request("POST", "/trials", body=body_bytes, headers={
            "Authorization": f"Bearer {server.token}", "Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@settings(FUZZ, max_examples=100, deadline=10_000, phases=[Phase.explicit, Phase.generate])
@given(body=bodies)
def test_server_adds_a_trial_with_the_config_sent_or_refuses_the_request_with_json(body):
    RECEIVED.clear()
    with tempfile.TemporaryDirectory() as root:
        path = os.path.join(root, "fuzz")
        runner = in_process_runner(record_config, path, {"which": "plain"})
        server = TuneServer(runner, port=0)
        try:
            answer = {}
            body_bytes = json.dumps(body).encode()  # NaN and Infinity too: Python's JSON reads them
            answered = threading.Event()

            def client():
                answer["reply"] = _post(server, body_bytes)
                answered.set()
                server.wake.set()  # the loop below also wakes for a request refused before it

            thread = threading.Thread(target=client)
            thread.start()
            # The event loop's part: serve what the server queued until the client has its answer.
            while not answered.is_set():
                server.wake.wait()
                server.serve_pending()
            thread.join()
            status, reply = answer["reply"]
        finally:
            server.shutdown()
        decoded = json.loads(reply)  # every answer is JSON
        assert status in (201, 400), (status, decoded)
        run_to_end(runner)
        trials = runner.get_trials()
        plain = [t for t in trials if t.config == {"which": "plain"}]
        assert len(plain) == 1 and plain[0].status == "TERMINATED"
        assert [row["loss"] for row in read_result_lines(plain[0].path)] == [1.0]
        if status == 400:
            assert isinstance(decoded.get("error"), str) and decoded["error"]
            assert len(trials) == 1
            return
        added = next(t for t in trials if t.trial_id == decoded["trial"]["id"])
        sent = body["spec"]["config"]
        assert added.status == "TERMINATED", added.error
        assert same(RECEIVED[added.trial_id], sent), (RECEIVED[added.trial_id], sent)
