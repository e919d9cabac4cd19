"""TuneServer under abuse: too many connections, slow or idle clients, malformed
requests and deeply nested bodies, over real sockets against a real server.

No Ray: the runner is a stand-in, and the requests sent are refused before they would
reach it (or a test serves the event loop's side itself).  Deadlines run on a fake
clock the test moves; the test learns what the server did by polling its state
(bounded), never by sleeping.
"""
import json
import logging
import socket
import struct
import threading
import time

import pytest

from fasttune._json_nesting import nesting_depth
from fasttune.web_server import MAX_BODY_BYTES, MAX_BODY_DEPTH, TuneClient, TuneClientError, TuneServer

from runaway_testing import stopped_after

_BOUND_S = 60.0  # how long a poll or a read may take before the test fails


class FakeClock:
    """The server's clock: stands still until the test moves it."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class Runner:
    """The parts of a TrialRunner the server uses before any request reaches the loop."""

    def __init__(self, path):
        self.experiment_path = path
        self.experiment = None  # a POST /trials that reaches the loop is refused 409

    def flush_files(self):
        pass


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def server(tmp_path, clock):
    server = TuneServer(Runner(str(tmp_path)), port=0, clock=clock, request_deadline_s=5.0)
    yield server
    server.shutdown()


@pytest.fixture
def plain_server(tmp_path):
    """With the default limits (each request below is sent whole at once)."""
    server = TuneServer(Runner(str(tmp_path)), port=0)
    yield server
    server.shutdown()


def wait_until(predicate, what):
    """Poll the server's state until ``predicate`` holds (bounded; a bound reached fails)."""
    give_up = time.monotonic() + _BOUND_S
    while time.monotonic() < give_up:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"Timed out waiting for {what}.")


def connection_threads(server):
    name = f"fasttune-tune-server-{server.port}-connection"
    return [t for t in threading.enumerate() if t.name == name]


def connect(server):
    return socket.create_connection(("127.0.0.1", server.port), timeout=_BOUND_S)


def read_answer(sock):
    """Everything the server sends until it closes: ``(status, headers, JSON body)``.
    Checks that the answer is whole and its body JSON of type application/json."""
    data = b""
    while True:
        chunk = sock.recv(1 << 16)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    version, status, _ = status_line.split(" ", 2)
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines)}
    assert version == "HTTP/1.0"
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(body)
    return int(status), headers, json.loads(body)


def ask(server, request):
    with connect(server) as sock:
        sock.sendall(request)
        return read_answer(sock)


def test_connections_over_the_cap_are_refused_without_threads(server):
    assert connection_threads(server) == []
    held = [connect(server) for _ in range(32)]  # idle: on the fake clock they never time out
    wait_until(lambda: server.open_connections == 32, "32 open connections")
    assert len(connection_threads(server)) == 32

    # 168 more (200 in all): each answered 503 at once and closed, none given a thread.
    for _ in range(168):
        with connect(server) as sock:
            status, headers, body = read_answer(sock)
        assert status == 503 and headers["retry-after"] == "1"
        assert "32 connections" in body["error"]
        assert len(connection_threads(server)) == 32 and server.open_connections == 32

    # A connection that ends frees its place for the next one.
    held.pop().close()
    wait_until(lambda: server.open_connections == 31, "the closed connection to be let go")
    status, _, body = ask(server, b"GET /trials HTTP/1.0\r\n\r\n")
    assert status == 401 and "Authorization" in body["error"]
    for sock in held:
        sock.close()
    wait_until(lambda: not connection_threads(server), "the connection threads to end")


def test_a_slow_drip_request_is_cut_off_at_its_deadline(server, clock):
    # Sent whole within the deadline (however late in it): answered.
    with connect(server) as on_time:
        wait_until(lambda: server.open_connections == 1, "the connection to be accepted")
        accepted_at = clock.now
        clock.now = accepted_at + 4.9
        on_time.sendall(b"GET /trials HTTP/1.0\r\n\r\n")
        assert read_answer(on_time)[0] == 401
    wait_until(lambda: server.open_connections == 0, "the connection to be let go")

    # A byte now and then does not extend it: the deadline counts from the accept.
    with connect(server) as drip:
        wait_until(lambda: server.open_connections == 1, "the connection to be accepted")
        accepted_at = clock.now
        for after_s, piece in ((1.5, b"GET /tri"), (3.0, b"als HTTP/1.0\r\n"), (4.5, b"Authoriz")):
            drip.sendall(piece)
            clock.now = accepted_at + after_s
        clock.now = accepted_at + 5.0
        status, _, body = read_answer(drip)
    assert status == 408 and "within 5s" in body["error"]
    wait_until(lambda: server.open_connections == 0 and not connection_threads(server), "the thread to end")


def test_an_idle_connection_is_closed_at_its_deadline(server, clock):
    with connect(server) as idle:
        wait_until(lambda: server.open_connections == 1, "the connection to be accepted")
        clock.now += 5.0
        status, _, body = read_answer(idle)
    assert status == 408 and "within 5s" in body["error"]
    wait_until(lambda: server.open_connections == 0 and not connection_threads(server), "the thread to end")


def test_shutdown_ends_open_connections(tmp_path, clock):
    server = TuneServer(Runner(str(tmp_path)), port=0, clock=clock)
    held = [connect(server) for _ in range(3)]
    wait_until(lambda: server.open_connections == 3, "3 open connections")
    server.shutdown()  # on the fake clock no deadline ends them: shutdown must
    assert connection_threads(server) == [] and server.open_connections == 0
    for sock in held:
        assert sock.recv(1) == b""
        sock.close()


@pytest.mark.parametrize("request_bytes, status, says", [
    (b"GARBAGE\r\n\r\n", 400, "Bad request syntax ('GARBAGE')"),
    # Quotes and backslashes of the request come back JSON-escaped.
    (b'GET /trials HTTP/"1\\\r\n\r\n', 400, r"""Bad request version ('HTTP/"1\\')"""),  # repr doubles the \
    (b"FOO /trials HTTP/1.0\r\n\r\n", 501, "Unsupported method ('FOO')"),
    (b"GET /" + b"a" * 70000 + b" HTTP/1.0\r\n\r\n", 414, "URI is too long"),
    (b"GET /trials HTTP/1.0\r\nX-Pad: " + b"a" * 70000 + b"\r\n\r\n", 431, "Line too long"),
    (b"GET /trials HTTP/1.0\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(101)) + b"\r\n", 431,
     "Too many headers"),
    (b"GET /trials\r\n\r\n", 400, "HTTP/0.9 requests are not accepted"),  # the stdlib reads headers even then
    (b"POST /trials\r\n", 400, "Bad HTTP/0.9 request type ('POST')"),
])
def test_the_http_librarys_own_refusals_are_json(plain_server, request_bytes, status, says):
    answered, headers, body = ask(plain_server, request_bytes)
    assert answered == status and headers["connection"] == "close"
    assert set(body) == {"error"} and says in body["error"]


def test_a_deeply_nested_body_is_a_400_not_a_server_failure(plain_server, tmp_path, caplog):
    server = plain_server
    client = TuneClient(experiment_path=str(tmp_path))
    auth = f"Authorization: Bearer {server.token}\r\n".encode()

    def post(body):
        return ask(server, b"POST /trials HTTP/1.0\r\n" + auth + b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def nested(levels):
        config = 1
        for _ in range(levels - 2):  # the body and its "spec" are two levels
            config = {"a": config}
        return {"spec": {"config": config}} if levels > 2 else {"spec": {}}

    caplog.set_level(logging.DEBUG, logger="fasttune.web_server")
    # Deeper than the JSON parser recurses: refused, not a RecursionError.
    status, _, body = post(b"[" * 100_000 + b"]" * 100_000)
    assert status == 400 and f"more than {MAX_BODY_DEPTH} levels" in body["error"]
    # Parsed, and one level over the limit.
    status, _, body = post(json.dumps(nested(MAX_BODY_DEPTH + 1)).encode())
    assert status == 400 and f"more than {MAX_BODY_DEPTH} levels" in body["error"]
    with pytest.raises(TuneClientError) as refused:
        client.add_trial("deep", nested(MAX_BODY_DEPTH + 1)["spec"])
    assert refused.value.status == 400 and "levels" in str(refused.value)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]

    # At the limit it passes the HTTP checks and goes to the event loop (which refuses it
    # here: the stand-in runner has no experiment).
    loop = threading.Thread(target=lambda: server.wake.wait(_BOUND_S) and server.serve_pending())
    loop.start()
    status, _, body = post(json.dumps(nested(MAX_BODY_DEPTH)).encode())
    loop.join(_BOUND_S)
    assert status == 409 and "no experiment" in body["error"]


def test_a_body_of_escaped_quotes_is_answered_at_once(plain_server):
    # A quote, then escaped quotes to the end (1 MiB): a nesting scan quadratic on that
    # held the GIL for ~50 minutes, with the driver's event loop waiting.
    body = b'["' + b'\\"' * (MAX_BODY_BYTES // 2 - 1)
    assert len(body) == MAX_BODY_BYTES
    with stopped_after(20, "the nesting scan of the body"):  # here, where a runaway can be stopped
        assert nesting_depth(body) == 1
    request = (b"POST /trials HTTP/1.0\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n"
               % (plain_server.token.encode(), len(body)))
    status, _, answer = ask(plain_server, request + body)
    assert status == 400 and answer["error"].startswith("The body is not valid JSON (Unterminated string")


def test_a_connection_whose_thread_cannot_start_gives_its_place_back(tmp_path, monkeypatch, caplog):
    server = TuneServer(Runner(str(tmp_path)), port=0, max_connections=1)
    start_thread = threading.Thread.start
    refused = []

    def start_unless_first_connection(thread):
        if thread.name.endswith("-connection") and not refused:
            refused.append(thread)
            raise RuntimeError("can't start new thread")  # as the OS refusing one more thread
        start_thread(thread)

    monkeypatch.setattr(threading.Thread, "start", start_unless_first_connection)
    try:
        with connect(server) as sock:
            assert sock.recv(1) == b""  # closed, once its place was given back
        assert refused and server.open_connections == 0
        # The one place is free: the next connection is served, not refused 503.
        status, _, body = ask(server, b"GET /trials HTTP/1.0\r\n\r\n")
        assert status == 401 and "Authorization" in body["error"]
    finally:
        server.shutdown()
    assert "can't start new thread" in caplog.text  # reported, as a server fault


def test_a_client_resetting_mid_request_line_is_not_an_error(server, caplog):
    caplog.set_level(logging.DEBUG, logger="fasttune.web_server")
    sock = connect(server)
    wait_until(lambda: server.open_connections == 1, "the connection to be accepted")
    sock.sendall(b"GET /tri")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # with SO_LINGER 0: a reset, as a port scanner leaves
    wait_until(lambda: server.open_connections == 0, "the connection to be let go")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info] == []
    assert "ended the connection early" in caplog.text


def test_limits_are_checked():
    with pytest.raises(ValueError, match="max_connections"):
        TuneServer(Runner(None), port=0, max_connections=0)
    with pytest.raises(ValueError, match="request_deadline_s"):
        TuneServer(Runner(None), port=0, request_deadline_s=0)
