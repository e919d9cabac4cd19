"""TuneServer and TuneClient: a running sweep served over HTTP, its bad requests refused.

The sweeps run ``tune.run`` on a thread while the test is the client.  They are held
open by a trainable that waits for a file the test creates; the test learns what the
sweep did by polling the client (bounded), never by sleeping.
"""
import http.client
import json
import os
import socket
import stat
import threading
import time

import pytest

import fasttune as tune
from fasttune.error import TuneError
from fasttune.web_server import SERVER_FILE, TuneClient, TuneClientError, TuneServer
from fasttune_testing import wait_until

pytestmark = pytest.mark.ray

_DEADLINE_S = 120.0


def gated(config):
    """Reports ``iters`` results (score ``10 * x + i``); with ``hold`` it waits after the
    first until that file exists; with ``endless`` it reports until stopped (or until
    that file exists)."""
    if config.get("endless"):
        i = 0
        while not os.path.exists(config["endless"]):
            tune.report({"score": config["x"] * 10 + i})
            i += 1
            time.sleep(0.01)  # pacing only: the test waits on its results, not on this
        return
    for i in range(config.get("iters", 2)):
        tune.report({"score": config["x"] * 10 + i})
        if i == 0 and config.get("hold"):
            while not os.path.exists(config["hold"]):
                time.sleep(0.01)


def release(path):
    with open(path, "w"):
        pass


class Sweep:
    """``tune.run(gated, server_port=0, ...)`` on a thread."""

    def __init__(self, storage, name, config, **kwargs):
        self.path = os.path.join(storage, name)
        self.analysis = None
        self.error = None
        kwargs.setdefault("resources_per_trial", {"cpu": 0.5})
        self._thread = threading.Thread(target=self._run, args=(storage, name, config, kwargs), daemon=True)
        self._thread.start()

    def _run(self, storage, name, config, kwargs):
        try:
            self.analysis = tune.run(gated, name=name, storage_path=storage, config=config, server_port=0,
                                     verbose=0, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            self.error = exc

    def client(self):
        server_file = os.path.join(self.path, SERVER_FILE)
        wait_until(lambda: os.path.exists(server_file) or not self._thread.is_alive(), "the server file")
        assert self.error is None, self.error
        return TuneClient(experiment_path=self.path)

    def join(self):
        self._thread.join(_DEADLINE_S)
        assert not self._thread.is_alive(), "the sweep did not finish"
        if self.error is not None:
            raise self.error
        return self.analysis


def running_with_result(client, trial_id=None, min_iteration=1):
    def check():
        trials = client.get_all_trials()["trials"]
        chosen = [t for t in trials if trial_id is None or t["id"] == trial_id]
        if chosen and chosen[0]["status"] == "RUNNING" and (chosen[0]["result"] or {}).get(
                "training_iteration", 0) >= min_iteration:
            return chosen[0]
        return None

    return wait_until(check, f"trial {trial_id or 'one'} RUNNING with a result")


def raw(client, method, path, body=None, headers=None, token=True):
    """One request as sent by hand: ``(status, decoded JSON body, response headers)``."""
    conn = http.client.HTTPConnection(client.tune_address, client.port_forward, timeout=30)
    try:
        sent = dict(headers or {})
        if token is True:
            sent.setdefault("Authorization", f"Bearer {client._token}")
        elif token:
            sent["Authorization"] = token
        conn.request(method, path, body=body, headers=sent)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null"), dict(response.getheaders())
    finally:
        conn.close()


def result_lines(trial_path):
    with open(os.path.join(trial_path, "result.json")) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_bad_requests_are_refused_and_the_sweep_finishes_intact(ray_session, storage, tmp_path):
    hold = str(tmp_path / "hold")
    sweep = Sweep(storage, "bad_requests", {"x": 1, "hold": hold})
    client = sweep.client()
    trial = running_with_result(client)
    trial_id = trial["id"]

    server_file = os.path.join(sweep.path, SERVER_FILE)
    assert stat.S_IMODE(os.stat(server_file).st_mode) == 0o600

    status, body, headers = raw(client, "GET", "/trials", token=None)
    assert status == 401 and "Authorization" in body["error"] and headers["WWW-Authenticate"].startswith("Bearer")
    assert raw(client, "GET", "/trials", token="Bearer not-the-token")[0] == 401
    assert raw(client, "GET", f"/trials/{trial_id}", token=f"Basic {client._token}")[0] == 401
    with pytest.raises(TuneClientError) as wrong:
        TuneClient(client.tune_address, client.port_forward, token="wrong").get_all_trials()
    assert wrong.value.status == 401 and "Wrong token" in str(wrong.value)
    # Unauthenticated, even a bad path or method says nothing but 401; a body goes unused.
    assert raw(client, "DELETE", "/nowhere", token=None)[0] == 401
    assert raw(client, "POST", "/trials", body=json.dumps({"spec": {"config": {"x": 9}}}), token=None)[0] == 401

    status, body, _ = raw(client, "POST", "/trials", body=b'{"name": "x", "spec": ')
    assert status == 400 and "not valid JSON" in body["error"]
    status, body, _ = raw(client, "POST", "/trials", body=b"[1, 2]")
    assert status == 400 and "JSON object" in body["error"]
    status, body, _ = raw(client, "POST", "/trials", body=json.dumps({"nme": "x", "spec": {}}))
    assert status == 400 and "nme" in body["error"]
    status, body, _ = raw(client, "POST", "/trials", body=json.dumps({"spec": {"config": {}, "stop": {}}}))
    assert status == 400 and "'stop'" in body["error"]
    status, body, _ = raw(client, "POST", "/trials", body=json.dumps({"spec": {"config": [1]}}))
    assert status == 400 and "spec['config'] must be a JSON object" in body["error"]
    status, body, _ = raw(client, "POST", "/trials",
                          body=json.dumps({"spec": {"config": {"x": {"grid_search": [1, 2]}}}}))
    assert status == 400 and "grid_search" in body["error"]
    status, body, _ = raw(client, "POST", "/trials", body=json.dumps({"spec": {"config": {}, "run": "other"}}))
    assert status == 400 and "'other'" in body["error"] and "gated" in body["error"]
    with pytest.raises(TuneClientError) as bad_name:
        client.add_trial(7, {"config": {"x": 3}})
    assert bad_name.value.status == 400 and "'name'" in str(bad_name.value)

    status, body, _ = raw(client, "GET", "/trials/nope_00042")
    assert status == 404 and "nope_00042" in body["error"]
    with pytest.raises(TuneClientError) as unknown:
        client.stop_trial("nope_00042")
    assert unknown.value.status == 404
    status, body, _ = raw(client, "GET", "/metrics")
    assert status == 404 and "/trials" in body["error"]

    status, body, headers = raw(client, "DELETE", "/trials")
    assert status == 405 and headers["Allow"] == "GET, POST"
    assert raw(client, "POST", f"/trials/{trial_id}", body=b"{}")[0] == 405
    assert raw(client, "GET", "/stop_experiment")[0] == 405

    # Refused from the Content-Length alone, the body not read: not even the start of it.
    for declared, sent in ((64 << 20, b""), ((1 << 20) + 1, b'{"spec": {"config": {"pad": "' + b"x" * 1000)):
        conn = http.client.HTTPConnection(client.tune_address, client.port_forward, timeout=30)
        conn.putrequest("POST", "/trials")
        conn.putheader("Authorization", f"Bearer {client._token}")
        conn.putheader("Content-Length", str(declared))
        conn.endheaders(sent)
        response = conn.getresponse()
        assert response.status == 413 and f"{declared} bytes" in json.loads(response.read())["error"]
        conn.close()
    conn = http.client.HTTPConnection(client.tune_address, client.port_forward, timeout=30)
    conn.putrequest("POST", "/trials")
    conn.putheader("Authorization", f"Bearer {client._token}")
    conn.endheaders()
    assert conn.getresponse().status == 411
    conn.close()

    # None of it reached the sweep: one trial, still running on its first result.
    trials = client.get_all_trials()["trials"]
    assert [(t["id"], t["status"], t["result"]["training_iteration"]) for t in trials] == [(trial_id, "RUNNING", 1)]

    release(hold)
    analysis = sweep.join()
    (done,) = analysis.trials
    assert done.status == "TERMINATED" and done.trial_id == trial_id
    assert [r["score"] for r in result_lines(done.path)] == [10, 11]

    # Shut down cleanly: the token file is gone and the port is free again.
    assert not os.path.exists(server_file)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((client.tune_address, client.port_forward), timeout=5).close()
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind((client.tune_address, client.port_forward))
        again.listen()
    with pytest.raises(TuneClientError) as gone:
        client.get_all_trials()
    assert gone.value.status is None and "Cannot reach" in str(gone.value)


def test_a_client_adds_and_stops_trials_during_a_sweep(ray_session, storage, tmp_path):
    hold, endless_stop = str(tmp_path / "hold"), str(tmp_path / "endless")
    sweep = Sweep(storage, "add_stop", {"x": 1, "hold": hold})
    client = sweep.client()
    first = running_with_result(client)
    assert first["config"] == {"x": 1, "hold": hold}
    assert first["result"]["score"] == 10 and first["trainable_name"] == "gated"
    assert client.get_trial(first["id"])["trial"]["status"] == "RUNNING"

    # Added: a normal trial of the experiment, with the next id of its counter.
    added = client.add_trial("extra", {"config": {"x": 7, "iters": 3}})["trial"]
    prefix, counter = first["id"].rsplit("_", 1)
    assert added["id"] == f"{prefix}_{int(counter) + 1:05d}"
    assert added["status"] == "PENDING" and added["config"] == {"x": 7, "iters": 3}
    assert "extra" in added["path"] and os.path.dirname(added["path"]) == sweep.path
    finished = wait_until(lambda: (lambda t: t if t["status"] == "TERMINATED" else None)(
        client.get_trial(added["id"])["trial"]), "the added trial to finish")
    assert finished["result"]["score"] == 72 and finished["result"]["training_iteration"] == 3
    assert [r["score"] for r in result_lines(finished["path"])] == [70, 71, 72]
    with open(os.path.join(finished["path"], "params.json")) as f:
        assert json.load(f) == {"x": 7, "iters": 3}

    # Stopped while it runs: TERMINATED at once, with the results it reported.
    endless = client.add_trial(None, {"config": {"x": 2, "endless": endless_stop}})["trial"]
    running_with_result(client, endless["id"], min_iteration=2)
    stopped = client.stop_trial(endless["id"])["trial"]
    assert stopped["status"] == "TERMINATED" and stopped["result"]["training_iteration"] >= 2
    assert client.stop_trial(endless["id"])["trial"]["status"] == "TERMINATED"  # again: nothing changes

    release(hold)
    analysis = sweep.join()
    by_id = {t.trial_id: t for t in analysis.trials}
    assert sorted(by_id) == sorted([first["id"], added["id"], endless["id"]])
    assert all(t.status == "TERMINATED" for t in analysis.trials)
    assert [r["score"] for r in result_lines(by_id[first["id"]].path)] == [10, 11]
    # Stopped wherever it was: every result it reported is kept once, in order (results
    # in flight at the stop included), and its last result is the last row.
    kept = result_lines(by_id[endless["id"]].path)
    assert len(kept) >= stopped["result"]["training_iteration"] >= 2
    assert [r["score"] for r in kept] == list(range(20, 20 + len(kept)))
    assert by_id[endless["id"]].last_result["training_iteration"] == len(kept)
    assert by_id[added["id"]].config == {"x": 7, "iters": 3}

    # In the experiment's snapshot like any other trial: a resume brings them back.
    resumed = tune.run(gated, name="add_stop", storage_path=storage, config={"x": 1, "hold": hold}, resume=True,
                       verbose=0)
    again = {t.trial_id: t for t in resumed.trials}
    assert sorted(again) == sorted(by_id)
    assert again[added["id"]].config == {"x": 7, "iters": 3} and again[added["id"]].status == "TERMINATED"
    assert again[added["id"]].last_result["score"] == 72


def test_stop_experiment_ends_the_sweep(ray_session, storage, tmp_path):
    sweep = Sweep(storage, "stop_all", {"x": 3, "endless": str(tmp_path / "never")}, num_samples=2)
    client = sweep.client()
    wait_until(lambda: [t for t in client.get_all_trials()["trials"]
                        if t["status"] == "RUNNING" and t["result"]] , "a running trial")
    assert client.stop_experiment() == {"stopping": True}
    analysis = sweep.join()
    assert [t.status for t in analysis.trials] == ["TERMINATED", "TERMINATED"]
    assert any(t.last_result for t in analysis.trials)


# ---- without a sweep ------------------------------------------------------------------------
class _Runner:
    """What a TuneServer needs of its runner to start."""

    def __init__(self, path=None):
        self.experiment_path = path

    def flush_files(self):
        pass


def test_server_file_holds_address_and_token_and_goes_at_shutdown(tmp_path):
    server = TuneServer(_Runner(str(tmp_path / "exp")), port=0)
    try:
        path = tmp_path / "exp" / SERVER_FILE
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        saved = json.loads(path.read_text())
        assert (saved["host"], saved["port"], saved["token"]) == ("127.0.0.1", server.port, server.token)
        assert len(server.token) >= 32 and TuneServer(_Runner(), port=0).token != server.token
    finally:
        server.shutdown()
    assert not path.exists()
    server.shutdown()  # idempotent


def test_server_refuses_a_taken_port_and_a_bad_one():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(TuneError, match="cannot listen on 127.0.0.1:.*server_port"):
            TuneServer(_Runner(), port=taken.getsockname()[1])
    with pytest.raises(ValueError, match="port number"):
        TuneServer(_Runner(), port=70000)


def test_client_needs_the_token_and_says_where_it_is(tmp_path):
    with pytest.raises(TuneClientError, match="token"):
        TuneClient("127.0.0.1", 4321)
    with pytest.raises(TuneClientError, match=f"No {SERVER_FILE}"):
        TuneClient(experiment_path=str(tmp_path))
    assert TuneClient("127.0.0.1", 4321, token="t").port_forward == 4321


def _ask_in_thread(call):
    answers = []

    def ask():
        try:
            answers.append(call())
        except TuneClientError as exc:
            answers.append(exc)

    thread = threading.Thread(target=ask)
    thread.start()
    return thread, answers


def test_requests_wait_for_the_loop_and_a_queued_one_is_refused_at_shutdown(tmp_path):
    runner = _Runner(str(tmp_path))
    runner.get_trial = lambda trial_id: None
    server = TuneServer(runner, port=0)
    client = TuneClient(experiment_path=str(tmp_path))
    thread, answers = _ask_in_thread(lambda: client.get_trial("a_00000"))
    # Queued, and answered only when the loop serves it: an unknown id is a 404.
    assert server.wake.wait(_DEADLINE_S)
    assert answers == []
    assert server.serve_pending() == 1
    thread.join(_DEADLINE_S)
    (answer,) = answers
    assert isinstance(answer, TuneClientError) and answer.status == 404
    assert server.serve_pending() == 0 and not server.wake.is_set()

    thread, answers = _ask_in_thread(client.get_all_trials)
    assert server.wake.wait(_DEADLINE_S)
    server.shutdown()  # the loop ended without serving it
    thread.join(_DEADLINE_S)
    (answer,) = answers
    assert isinstance(answer, TuneClientError) and answer.status == 503 and "ended" in str(answer)
