"""One trial's bad data fails that trial, never the experiment: a config no worker can be
sent, a result with a non-string key, a malformed worker reply, and a trial that raises
something that is not an ``Exception`` (``SystemExit``, ``KeyboardInterrupt``).

The sweeps are real (Ray workers, trial files); a searcher hands out the configs in a
fixed order, so which trial gets which value is known.
"""
import datetime
import fractions
import http.client
import json
import os
import threading
import time

import pytest

import fasttune as tune
from fasttune.search import Searcher
from fasttune.web_server import SERVER_FILE, TuneClient
from fasttune_testing import fit, lines

pytestmark = pytest.mark.usefixtures("ray_session")

_DEADLINE_S = 120.0


class LiveHandle:
    """A value that copies (as a handle to a live resource does) but cannot be pickled."""

    def __deepcopy__(self, memo):
        return self

    def __reduce__(self):
        raise TypeError("a live handle cannot be pickled")


def _values():
    """One value per trial: what msgpack cannot carry but cloudpickle can, then one
    nothing can carry."""
    return [lambda x: x * 2, datetime.date(2026, 1, 2), fractions.Fraction, 2 ** 70, LiveHandle()]


class InOrder(Searcher):
    """Suggests ``{"i": i, "v": _values()[i]}`` for each i in turn."""

    def __init__(self):
        super().__init__()
        self.suggested = 0
        self.errored = []

    def suggest(self, trial_id):
        values = _values()
        if self.suggested == len(values):
            return Searcher.FINISHED
        self.suggested += 1
        return {"i": self.suggested - 1, "v": values[self.suggested - 1]}

    def on_trial_complete(self, trial_id, result=None, error=False):
        if error:
            self.errored.append(trial_id)


def uses_the_value(config):
    """Reports what it made of ``config["v"]``: each kind of value is used, not just held."""
    v, i = config["v"], config["i"]
    used = [lambda: v(3), lambda: v.isoformat(), lambda: str(v(6, 4)), lambda: str(v - 2 ** 70 + 5)][i]()
    tune.report({"used": used})


def test_a_config_msgpack_cannot_carry_reaches_the_trainable_and_one_nothing_can_carry_fails_its_trial(storage):
    grid = fit(uses_the_value, storage, tune_config=tune.TuneConfig(search_alg=InOrder(), num_samples=5))
    by_i = {r.config["i"]: r for r in grid}
    assert sorted(by_i) == [0, 1, 2, 3, 4]
    # Functions, dates, classes and huge ints go cloudpickled, and work in the trainable.
    assert [by_i[i].metrics["used"] for i in range(4)] == [6, "2026-01-02", "3/2", "5"]
    assert all(by_i[i].error is None for i in range(4))

    bad = by_i[4]
    assert isinstance(bad.error, tune.TuneError)
    assert "config['v'] is a LiveHandle" in str(bad.error) and "a live handle cannot be pickled" in str(bad.error)
    with open(os.path.join(bad.path, "error.txt")) as f:
        assert "config['v'] is a LiveHandle" in f.read()
    # It keeps its config with a placeholder for the value (its snapshot could pack it).
    assert bad.config == {"i": 4, "v": "<LiveHandle: cannot be sent>"}
    with open(os.path.join(bad.path, "params.json")) as f:
        assert json.load(f) == bad.config
    assert not os.path.exists(os.path.join(bad.path, "result.json"))


# ---- through the TuneServer ---------------------------------------------------------------
def held_open(config):
    """Reports ``config["x"]`` as text; the first trial waits for the ``hold`` file."""
    tune.report({"x": str(config["x"])})
    while config.get("hold") and not os.path.exists(config["hold"]):
        time.sleep(0.01)


def _wait_until(predicate, what):
    deadline = time.monotonic() + _DEADLINE_S
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"Timed out waiting for {what}.")


def test_the_server_refuses_a_config_no_worker_can_be_sent_and_carries_a_huge_int(storage, tmp_path):
    hold = str(tmp_path / "hold")
    outcome = {}

    def sweep():
        try:
            outcome["analysis"] = tune.run(held_open, name="srv", storage_path=storage, config={"x": 1, "hold": hold},
                                           server_port=0, verbose=0, resources_per_trial={"cpu": 0.5})
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=sweep, daemon=True)
    thread.start()
    path = os.path.join(storage, "srv")
    _wait_until(lambda: os.path.exists(os.path.join(path, SERVER_FILE)) or not thread.is_alive(), "the server")
    client = TuneClient(experiment_path=path)
    _wait_until(lambda: [t for t in client.get_all_trials()["trials"] if t["result"]], "the first result")

    # A lone surrogate is valid JSON but no UTF-8 string: msgpack cannot carry it.
    conn = http.client.HTTPConnection(client.tune_address, client.port_forward, timeout=30)
    conn.request("POST", "/trials", body=b'{"spec": {"config": {"x": 2, "s": "\\ud800"}}}',
                 headers={"Authorization": f"Bearer {client._token}"})
    response = conn.getresponse()
    status, body = response.status, json.loads(response.read())
    conn.close()
    assert status == 400 and "config['s'] is a str" in body["error"]
    assert len(client.get_all_trials()["trials"]) == 1  # refused before a trial was made

    added = client.add_trial("huge", {"config": {"x": 2 ** 64}})["trial"]
    open(hold, "w").close()
    thread.join(_DEADLINE_S)
    assert not thread.is_alive() and "error" not in outcome, outcome.get("error")
    by_id = {t.trial_id: t for t in outcome["analysis"].trials}
    assert sorted(t.status for t in by_id.values()) == ["TERMINATED", "TERMINATED"]
    assert [r["x"] for r in lines(os.path.join(by_id[added["id"]].path, "result.json"))] == [str(2 ** 64)]
