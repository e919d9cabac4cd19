"""Control a running experiment over HTTP: :class:`TuneServer` and :class:`TuneClient`
(``ray.tune.web_server``).

``tune.run(..., server_port=4321)`` (or ``TrialRunner(server_port=...)``) serves the
experiment on ``127.0.0.1``.  Every request needs ``Authorization: Bearer <token>``; the
token is random per run and written, with the address, to
``<experiment_dir>/tune_server.json`` (mode 0600, removed when the experiment ends), so
only someone who can read the experiment directory can steer it.  As in Ray Tune,
``tune.run`` has the switch and the ``Tuner`` API does not (a ``RunConfig`` field would
be saved with the experiment and bind the same fixed port again on every restore).

Endpoints (JSON in and out; an error is ``{"error": "<what is wrong and what to do>"}``):

=======  ========================  =================================================
GET      ``/trials``               ``{"trials": [trial info, ...]}``
GET      ``/trials/<trial_id>``    ``{"trial": trial info}``
POST     ``/trials``               body ``{"name": "tag", "spec": {"config": {...}}}``:
                                   a new trial of the experiment; 201 ``{"trial": ...}``
PUT      ``/trials/<trial_id>``    stop the trial (TERMINATED, its results kept)
PUT      ``/stop_experiment``      stop every trial and the search
=======  ========================  =================================================

A trial info is ``{"id", "name", "trainable_name", "status", "config", "result" (the
last result or null), "path", "error" (the error text or null)}``.  The HTTP thread
never touches the runner: each request becomes a command that the event loop carries
out in its next step (it is woken for it) and answers, the trial files holding every
result the answer reports; a bad request is refused before it gets that far.

Status codes: 401 no or wrong token, 400 bad JSON or fields (or JSON nested over 100
levels), 404 unknown trial or path, 405 wrong method, 408 the request did not arrive in
time, 409 the experiment is stopping, 411 no Content-Length, 413 a body over 1 MiB
(refused from its Content-Length, never read), 503 the experiment ended (or its loop did
not answer in time; the command was then not carried out) or too many connections.
Every error answer, the HTTP library's own (a malformed request line, an unknown
method, a header too long) included, is a JSON ``{"error": ...}``.

Limits, so that no client can grow the server or hold it: each connection carries one
request, which must arrive whole within ``request_deadline_s`` (10 s) of the connection
being accepted, however slowly its bytes come (else 408 and the connection is closed);
at most ``max_connections`` (32) are served at once, and one more is answered 503 at
once and closed, by the thread that accepts connections, without reading its request
and without a thread of its own.

Example:
    >>> import fasttune as tune
    >>> from fasttune.web_server import TuneClient
    >>> def train(config):
    ...     tune.report({"score": config["x"]})
    >>> # in one process:
    >>> tune.run(train, config={"x": 1}, name="demo", server_port=4321)  # doctest: +SKIP
    >>> # in another, while it runs:
    >>> client = TuneClient(experiment_path="~/fasttune_results/demo")  # doctest: +SKIP
    >>> client.add_trial("extra", {"config": {"x": 5}})["trial"]["id"]  # doctest: +SKIP
    '9c1e2_00001'
"""
from __future__ import annotations

import hmac
import io
import json
import logging
import math
import os
import secrets
import select
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from concurrent.futures import Future, TimeoutError as FutureTimeout
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Tuple

from fasttune._atomic import atomic_write
from fasttune._json_nesting import nests_deeper_than
from fasttune._jsonable import json_default
from fasttune.error import TuneError

__all__ = ["TuneClient", "TuneClientError", "TuneServer"]

logger = logging.getLogger(__name__)

SERVER_FILE = "tune_server.json"  # address and token, in the experiment directory
MAX_BODY_BYTES = 1 << 20
MAX_BODY_DEPTH = 100  # nesting levels of a JSON body: no real config comes near; deeper hits recursion limits later
_SOCKET_TIMEOUT_S = 10.0  # writing an answer to a client that does not read it
# Waits for a request's bytes re-read the server's clock this often: a clock given to
# the server (a test's) need not move with real time.
_DEADLINE_POLL_S = 0.5
# After an answer, what the client still sends is read and dropped for this long before
# the socket closes: closing with unread data resets the connection, and the client
# could lose the answer.
_LINGER_S = 2.0
_MAX_NAME_CHARS = 100

# A command carried out on the event loop: runner -> (HTTP status, JSON body bytes).
_Command = Callable[[Any], Tuple[int, bytes]]


class TuneClientError(TuneError):
    """A request the TuneServer refused (``status`` its HTTP status), or could not get
    to it (``status`` None)."""

    def __init__(self, message: str, status: Optional[int] = None) -> None:
        super().__init__(message)
        self.status = status


class _RequestError(Exception):
    """Ends a request with ``status`` and a JSON error body saying ``message``."""

    def __init__(self, status: int, message: str, headers: Optional[Dict[str, str]] = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def _json_bytes(body: Any) -> bytes:
    return json.dumps(body, default=json_default).encode("utf-8")


# ---- what the event loop carries out ----------------------------------------------------
def _trial_info(trial: Any) -> Dict[str, Any]:
    return {
        "id": trial.trial_id,
        "name": str(trial),
        "trainable_name": trial.trainable_name,
        "status": trial.status,
        "config": trial.config,
        "result": trial.last_result or None,
        "path": trial.path,
        "error": trial.error_msg,
    }


def _find_trial(runner: Any, trial_id: str) -> Any:
    trial = runner.get_trial(trial_id)
    if trial is None:
        raise _RequestError(404, f"No trial {trial_id!r} in this experiment; GET /trials lists them.")
    return trial


def _list_trials(runner: Any) -> Tuple[int, bytes]:
    return 200, _json_bytes({"trials": [_trial_info(t) for t in runner.get_trials()]})


def _get_trial(trial_id: str) -> _Command:
    return lambda runner: (200, _json_bytes({"trial": _trial_info(_find_trial(runner, trial_id))}))


def _stop_trial(trial_id: str) -> _Command:
    def stop(runner: Any) -> Tuple[int, bytes]:
        trial = _find_trial(runner, trial_id)
        # As in Ray Tune, stopping a trial that already ended changes nothing (PUT is
        # idempotent); the answer shows the status it ended with.
        runner.stop_trial(trial)
        return 200, _json_bytes({"trial": _trial_info(trial)})

    return stop


def _stop_experiment(runner: Any) -> Tuple[int, bytes]:
    runner.request_stop_experiment()
    return 200, _json_bytes({"stopping": True})


def _add_trial(name: Optional[str], config: Dict[str, Any], run: Optional[str]) -> _Command:
    def add(runner: Any) -> Tuple[int, bytes]:
        experiment = runner.experiment
        if experiment is None:
            raise _RequestError(409, "The runner has no experiment set up yet; add the trial once it runs.")
        if runner.is_stopping:
            raise _RequestError(409, "The experiment is stopping; no trial can be added to it now.")
        if run is not None and run != experiment.trainable_name:
            raise _RequestError(
                400, f"spec['run'] is {run!r} but this experiment runs {experiment.trainable_name!r}; a trial "
                     "added to a running experiment uses its trainable (leave 'run' out).")
        try:
            from fasttune.execution._protocol import wire_config

            # Refused here, not added as an ERROR trial: a config no worker can be sent.
            wire_config(config)
            # A normal trial of the experiment: its trainable, resources, stop criteria,
            # checkpoint config and storage, and the next id of its counter.
            trial = experiment.trial_factory(config, experiment_tag=name or "added")
            # Asked for now: it waits for a free worker, not behind a running trial.
            runner.add_trial(trial, queue=False)
        except (TuneError, ValueError, TypeError) as exc:
            raise _RequestError(400, f"The trial cannot be added: {exc}") from exc
        return 201, _json_bytes({"trial": _trial_info(trial)})

    return add


# ---- what the HTTP thread checks on its own -----------------------------------------------
def _parse_add_body(body: Any) -> Tuple[Optional[str], Dict[str, Any], Optional[str]]:
    """``(name, config, run)`` of a POST /trials body, or a 400 naming what is wrong."""
    usage = 'the body is {"name": "<tag>", "spec": {"config": {...}}}'
    if not isinstance(body, dict):
        raise _RequestError(400, f"The body must be a JSON object, got {type(body).__name__}; {usage}.")
    unknown = sorted(set(body) - {"name", "spec"})
    if unknown:
        raise _RequestError(400, f"Unknown field(s) {unknown} in the body; {usage}.")
    name = body.get("name")
    if name is not None and (not isinstance(name, str) or not 0 < len(name) <= _MAX_NAME_CHARS):
        raise _RequestError(400, f"'name' must be a string of 1 to {_MAX_NAME_CHARS} characters or null, "
                                 f"got {name!r:.120}.")
    spec = body.get("spec")
    if not isinstance(spec, dict):
        raise _RequestError(400, f"'spec' must be a JSON object, got {type(spec).__name__}; {usage}.")
    unknown = sorted(set(spec) - {"config", "run"})
    if unknown:
        raise _RequestError(
            400, f"Unknown field(s) {unknown} in 'spec': a trial added to a running experiment takes the "
                 "experiment's trainable, resources, stop criteria and checkpoint config; only 'config' "
                 "(and 'run', which must name the experiment's trainable) may be given.")
    config = spec.get("config", {})
    if not isinstance(config, dict):
        raise _RequestError(400, f"spec['config'] must be a JSON object, got {type(config).__name__}.")
    where = _search_space_in(config)
    if where is not None:
        raise _RequestError(
            400, f"spec['config'][{where}] is a search space (grid_search); a request adds one trial with a "
                 "resolved config: send one request per value.")
    run = spec.get("run")
    if run is not None and not isinstance(run, str):
        raise _RequestError(400, f"spec['run'] must be the trainable's name, got {type(run).__name__}.")
    return name, config, run


def _search_space_in(config: Dict[str, Any], prefix: str = "") -> Optional[str]:
    for key, value in config.items():
        if isinstance(value, dict):
            if "grid_search" in value:
                return f"{prefix}{key!r}"
            found = _search_space_in(value, f"{prefix}{key!r}][")
            if found is not None:
                return found
    return None


class _DeadlinePassed(Exception):
    """A request did not arrive whole by its connection's deadline."""


class _DeadlineReader(io.RawIOBase):
    """Reads a connection's socket until a deadline on the server's clock.

    Data that has already arrived is always taken; a read that would wait past the
    deadline raises :class:`_DeadlinePassed` instead.  A per-read timeout would not do:
    a client sending a byte now and then would keep every read short.
    """

    def __init__(self, sock: socket.socket, deadline: float, clock: Callable[[], float]) -> None:
        super().__init__()
        self._sock = sock
        self.deadline = deadline
        self._clock = clock
        self._poll = select.poll()  # not select.select: a process with Ray has fds past FD_SETSIZE
        self._poll.register(sock, select.POLLIN)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while True:
            remaining = self.deadline - self._clock()
            wait_s = min(max(remaining, 0.0), _DEADLINE_POLL_S)
            if self._poll.poll(math.ceil(wait_s * 1000)):
                return self._sock.recv_into(buffer)
            if remaining <= 0:
                raise _DeadlinePassed()


class _Handler(BaseHTTPRequestHandler):
    server: "_HTTPServer"
    timeout = _SOCKET_TIMEOUT_S  # bounds writing an answer; reading is bounded by the deadline

    def setup(self) -> None:
        super().setup()
        # Reads go through the connection's deadline (the stdlib's buffered file is
        # closed first: it holds a reference that would keep the socket open).
        self.rfile.close()
        self.rfile = io.BufferedReader(_DeadlineReader(self.connection, self.server.deadline_of(self.connection),
                                                       self.server.clock))

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except _DeadlinePassed:
            self.log_message("request not received within %.1fs", self.server.request_deadline_s)
            self._respond(408, _json_bytes({"error": f"The request did not arrive whole within "
                                                     f"{self.server.request_deadline_s:g}s of connecting; send it "
                                                     "at once after connecting."}))

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        if self.request_version == "HTTP/0.9":
            self.send_error(400, "HTTP/0.9 requests are not accepted; send an HTTP/1.0 or HTTP/1.1 request line")
            return False
        return True

    def send_error(self, code: int, message: Optional[str] = None, explain: Optional[str] = None) -> None:
        """The stdlib's own refusals (a malformed request line, an unknown method, a
        header too long) answer in JSON like every other error."""
        short, long = self.responses.get(code, ("Error", ""))
        text = message or f"{short}: {long}"
        if explain:
            text = f"{text}: {explain}"
        self.log_error("code %d, message %s", code, text)
        self._respond(code, _json_bytes({"error": text}))

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._handle("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle("DELETE")

    def do_PATCH(self) -> None:  # noqa: N802
        self._handle("PATCH")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        logger.debug("TuneServer %s: " + format, self.address_string(), *args)

    def _handle(self, method: str) -> None:
        self._body_taken = False
        try:
            self._authenticate()
            command = self._route(method)
            status, body = self.server.tune.carry_out(command)
            self._respond(status, body)
        except _RequestError as exc:
            self._drain_unread_body()
            self._respond(exc.status, _json_bytes({"error": exc.message}), exc.headers)
        except (ConnectionError, socket.timeout):
            self.close_connection = True  # the client went away
        except _DeadlinePassed:
            raise  # answered 408 by handle_one_request
        except Exception as exc:  # noqa: BLE001 - a request never takes the server down
            logger.exception("TuneServer failed to answer %s %s.", method, self.path)
            self._respond(500, _json_bytes({"error": f"The server failed: {type(exc).__name__}: {exc}"}))

    def _authenticate(self) -> None:
        header = self.headers.get("Authorization")
        where = f"the token is in {SERVER_FILE} in the experiment directory"
        if not header:
            raise _RequestError(401, f"No Authorization header: send 'Authorization: Bearer <token>' ({where}).",
                                {"WWW-Authenticate": "Bearer"})
        scheme, _, value = header.partition(" ")
        given = value.strip().encode("latin-1", "replace")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given, self.server.tune.token.encode("ascii")):
            raise _RequestError(401, f"Wrong token ({where}).", {"WWW-Authenticate": 'Bearer error="invalid_token"'})

    def _route(self, method: str) -> _Command:
        path = urllib.parse.urlsplit(self.path).path
        parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/")] if path.strip("/") else []
        if parts == ["trials"]:
            allowed = {"GET": lambda: _list_trials, "POST": lambda: _add_trial(*_parse_add_body(self._json_body()))}
        elif len(parts) == 2 and parts[0] == "trials" and parts[1]:
            allowed = {"GET": lambda: _get_trial(parts[1]), "PUT": lambda: _stop_trial(parts[1])}
        elif parts == ["stop_experiment"]:
            allowed = {"PUT": lambda: _stop_experiment}
        else:
            raise _RequestError(404, f"No endpoint {path!r}; the endpoints are GET/POST /trials, "
                                     "GET/PUT /trials/<trial_id> and PUT /stop_experiment.")
        if method not in allowed:
            raise _RequestError(405, f"{method} is not allowed on {path}; use {' or '.join(sorted(allowed))}.",
                                {"Allow": ", ".join(sorted(allowed))})
        if method != "POST":
            self._read_body()  # unused, but read: see _drain_unread_body
        return allowed[method]()

    def _read_body(self) -> bytes:
        """The request body, refused (413) from its Content-Length when over the limit:
        more than that is never read."""
        self._body_taken = True
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.close_connection = True
            raise _RequestError(411, "Chunked bodies are not accepted; send a Content-Length.")
        declared = self.headers.get("Content-Length")
        if declared is None:
            return b""
        try:
            length = int(declared)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            raise _RequestError(400, f"Content-Length {declared!r:.40} is not a byte count.")
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            raise _RequestError(413, f"The body has {length} bytes; at most {MAX_BODY_BYTES} are accepted.")
        return self.rfile.read(length)

    def _drain_unread_body(self) -> None:
        """Read a body within the limit that an error left unread: closing a socket with
        unread data resets the connection, and the client would miss the answer."""
        if self._body_taken:
            return
        self._body_taken = True
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return
        if 0 < length <= MAX_BODY_BYTES:
            try:
                self.rfile.read(length)
            except (ConnectionError, socket.timeout, _DeadlinePassed):
                self.close_connection = True

    def _json_body(self) -> Any:
        if self.headers.get("Content-Length") is None:
            self.close_connection = True
            raise _RequestError(411, "POST /trials needs a JSON body with a Content-Length.")
        raw = self._read_body()
        try:
            text = raw.decode("utf-8")
            # Counted before parsing: the parser recurses once per level.
            if nests_deeper_than(text, MAX_BODY_DEPTH):
                raise _RequestError(400, f"The body is JSON nested more than {MAX_BODY_DEPTH} levels deep; no "
                                         "request needs that many.")
            return json.loads(text)
        except ValueError as exc:  # UnicodeDecodeError included
            raise _RequestError(400, f"The body is not valid JSON ({exc}).") from exc

    def _respond(self, status: int, body: bytes, headers: Optional[Dict[str, str]] = None) -> None:
        if not hasattr(self, "requestline"):  # the deadline passed before the request line came
            self.requestline = self.command = ""
        if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":
            # Not parsed (yet), or HTTP/0.9, which has no status line: answer in HTTP/1.0.
            self.request_version = "HTTP/1.0"
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Connection", "close")  # one request per connection (see _HTTPServer)
            self.end_headers()
            if getattr(self, "command", None) != "HEAD":
                self.wfile.write(body)
        except (ConnectionError, socket.timeout):
            self.close_connection = True


class _HTTPServer(ThreadingHTTPServer):
    """One thread per connection, at most ``max_connections`` at once; one more is
    answered 503 on the accepting thread and closed.

    The handler speaks HTTP/1.0 (``protocol_version``) and closes after each answer, so
    a connection carries one request, and its deadline runs from the accept.
    """

    daemon_threads = True  # a handler waiting on the loop never keeps the process alive
    block_on_close = False  # TuneServer.shutdown ends the connections itself, within a bound
    request_queue_size = 128  # a burst of connections waits to be answered or refused, not for SYN retries
    tune: "TuneServer"

    def __init__(self, address: Tuple[str, int], max_connections: int, request_deadline_s: float,
                 clock: Callable[[], float]) -> None:
        self.max_connections = max_connections
        self.request_deadline_s = request_deadline_s
        self.clock = clock
        self._deadlines: Dict[socket.socket, float] = {}  # of the connections being served
        self._connection_threads: Dict[socket.socket, threading.Thread] = {}
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    @property
    def open_connections(self) -> int:
        with self._connections_lock:
            return len(self._deadlines)

    def deadline_of(self, connection: socket.socket) -> float:
        with self._connections_lock:
            return self._deadlines[connection]

    def process_request(self, request: socket.socket, client_address: Any) -> None:
        with self._connections_lock:
            admitted = len(self._deadlines) < self.max_connections
            if admitted:
                thread = threading.Thread(target=self._serve_connection, args=(request, client_address),
                                          name=f"fasttune-tune-server-{self.server_address[1]}-connection",
                                          daemon=True)
                self._deadlines[request] = self.clock() + self.request_deadline_s
                self._connection_threads[request] = thread
        if not admitted:
            _refuse_connection(request, self.max_connections)
            return
        try:
            thread.start()
        except BaseException:  # e.g. "can't start new thread": the place must not stay taken
            self._let_go(request)
            raise  # socketserver reports it (handle_error) and closes the socket

    def _let_go(self, request: socket.socket) -> None:
        with self._connections_lock:
            del self._deadlines[request]
            del self._connection_threads[request]

    def _serve_connection(self, request: socket.socket, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except ConnectionError:  # reset or closed by the client (a port scanner, say): nothing to report
            logger.debug("TuneServer: the client at %s ended the connection early.", client_address)
        except Exception:  # noqa: BLE001 - one connection never takes the server down
            self.handle_error(request, client_address)
        finally:
            _close_lingering(request)
            self._let_go(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.exception("TuneServer failed to serve a connection from %s.", client_address)

    def end_connections(self, timeout_s: float) -> None:
        """Stop reading every open connection (a handler waiting for a request sees the
        client's end; one writing its answer still can) and wait, within ``timeout_s``,
        for their threads."""
        with self._connections_lock:
            connections = list(self._connection_threads.items())
        for sock, _ in connections:
            try:
                sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass  # already closed by its thread
        give_up = time.monotonic() + timeout_s
        for _, thread in connections:
            thread.join(max(0.0, give_up - time.monotonic()))


class _HTTPServer6(_HTTPServer):
    address_family = socket.AF_INET6


def _refuse_connection(sock: socket.socket, limit: int) -> None:
    """Answer 503 on a connection over the limit and close it, never waiting on it (it
    runs on the thread that accepts connections).  What its client already sent is read
    and dropped first, so that the close does not reset the connection."""
    body = _json_bytes({"error": f"The TuneServer already serves {limit} connections, its limit; try again "
                                 "when one has ended."})
    answer = (f"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n"
              f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n").encode("ascii") + body
    try:
        sock.setblocking(False)
        try:
            while sock.recv(1 << 16):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        sock.send(answer)  # a few hundred bytes: a fresh socket's send buffer takes them whole
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # the client is gone already
    finally:
        sock.close()


def _close_lingering(sock: socket.socket) -> None:
    """Close a served connection: send the end of the answer, then read and drop what
    the client still sends until it closes too (at most _LINGER_S), so that unread data
    does not turn the close into a reset that could lose the answer."""
    try:
        sock.shutdown(socket.SHUT_WR)
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        give_up = time.monotonic() + _LINGER_S
        while True:
            left_s = give_up - time.monotonic()
            if left_s <= 0 or not poller.poll(int(left_s * 1000)) or not sock.recv(1 << 16):
                break
    except OSError:
        pass  # the client is gone already
    finally:
        sock.close()


class TuneServer:
    """Serves one experiment's trials over HTTP (``ray.tune.web_server.TuneServer``).

    Started by ``TrialRunner(server_port=...)``; ``port=0`` takes any free port (see
    :attr:`port`).  The token goes to ``<runner.experiment_path>/tune_server.json``
    (only to :attr:`token` when the runner has no path), created with mode 0600,
    together with the address; :meth:`shutdown` closes the port, ends the open
    connections and removes the file.  The event loop calls :meth:`serve_pending` in
    every step and waits on :attr:`wake` (set when a request is queued), so a request is
    answered as soon as the loop is free, not at its next poll.

    ``request_timeout_s`` bounds the wait for the event loop to take a request;
    ``request_deadline_s`` the time a client has, from connecting, to send its request
    whole, measured on ``clock``; ``max_connections`` how many connections are served
    at once (one more is answered 503 and closed, with no thread of its own).

    Example:
        >>> import tempfile
        >>> from fasttune.web_server import TuneClient, TuneServer
        >>> class Runner:  # the parts of a TrialRunner the server uses
        ...     experiment_path = tempfile.mkdtemp()
        ...     def get_trials(self):
        ...         return []
        ...     def flush_files(self):
        ...         pass
        >>> server = TuneServer(Runner(), port=0)
        >>> client = TuneClient(experiment_path=Runner.experiment_path)
        >>> import threading
        >>> answer = threading.Thread(target=lambda: server.wake.wait(10) and server.serve_pending())
        >>> answer.start()
        >>> client.get_all_trials()
        {'trials': []}
        >>> answer.join(); server.shutdown()
    """

    DEFAULT_PORT = 4321

    def __init__(self, runner: Any, port: Optional[int] = None, host: str = "127.0.0.1",
                 token: Optional[str] = None, request_timeout_s: float = 30.0, *, max_connections: int = 32,
                 request_deadline_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535):
            raise ValueError(f"server_port must be a port number (0 for any free port), got {port!r}.")
        if request_timeout_s <= 0:
            raise ValueError(f"request_timeout_s must be positive, got {request_timeout_s!r}.")
        if isinstance(max_connections, bool) or not isinstance(max_connections, int) or max_connections < 1:
            raise ValueError(f"max_connections must be a positive int, got {max_connections!r}.")
        if request_deadline_s <= 0:
            raise ValueError(f"request_deadline_s must be positive, got {request_deadline_s!r}.")
        self._runner = runner
        self.token = token or secrets.token_urlsafe(32)
        self.request_timeout_s = request_timeout_s
        self.wake = threading.Event()
        self._queue: deque = deque()
        self._lock = threading.Lock()
        self._closed = False
        server_class = _HTTPServer6 if ":" in host else _HTTPServer
        port = self.DEFAULT_PORT if port is None else port
        try:
            self._httpd = server_class((host, port), max_connections, request_deadline_s, clock)
        except OSError as exc:
            raise TuneError(f"The TuneServer cannot listen on {host}:{port} ({exc}); choose another "
                            "server_port (0 takes any free port).") from exc
        self._httpd.tune = self
        self.host = host
        self.port: int = self._httpd.server_address[1]
        self.server_file: Optional[str] = None
        try:
            if runner.experiment_path:
                self.server_file = _write_server_file(runner.experiment_path, self.host, self.port, self.token)
        except OSError:
            self._httpd.server_close()
            raise
        # A short poll interval: shutdown() at the experiment's end waits for one.
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.1,),
                                        name="fasttune-tune-server", daemon=True)
        self._thread.start()
        logger.info("TuneServer listening on http://%s:%d (token in %s).", _url_host(host), self.port,
                    self.server_file or "TuneServer.token")

    @property
    def open_connections(self) -> int:
        """How many connections are being served now (at most ``max_connections``)."""
        return self._httpd.open_connections

    @property
    def address(self) -> str:
        """``http://host:port`` of the server."""
        return f"http://{_url_host(_client_host(self.host))}:{self.port}"

    # ---- the HTTP side ------------------------------------------------------------------
    def carry_out(self, command: _Command) -> Tuple[int, bytes]:
        """Queue ``command`` for the event loop and wait for its answer (HTTP threads)."""
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise _RequestError(503, "The experiment has ended.")
            self._queue.append((command, future))
        self.wake.set()
        try:
            return future.result(timeout=self.request_timeout_s)
        except FutureTimeout:
            if future.cancel():
                raise _RequestError(
                    503, f"The experiment's event loop did not take the request within "
                         f"{self.request_timeout_s:.0f}s (it is busy in a callback or searcher); it was "
                         "not carried out, try again.") from None
            return future.result()  # being carried out right now: its answer comes at once

    # ---- the event loop's side ------------------------------------------------------------
    def serve_pending(self) -> int:
        """Carry out the queued requests (the event loop calls this); returns how many."""
        if not self._queue:
            return 0
        self.wake.clear()  # before draining: a request queued from now on sets it again
        # A trial reported as ended (or with a result) has it in its files too.
        self._runner.flush_files()
        served = 0
        while self._queue:
            command, future = self._queue.popleft()
            if not future.set_running_or_notify_cancel():
                continue  # its client gave up waiting
            try:
                future.set_result(command(self._runner))
            except _RequestError as exc:
                future.set_exception(exc)
            except Exception as exc:  # noqa: BLE001 - a bad request never ends the sweep
                logger.exception("A TuneServer request failed on the event loop.")
                future.set_exception(_RequestError(500, f"The request failed: {type(exc).__name__}: {exc}"))
            served += 1
        return served

    def shutdown(self) -> None:
        """Stop serving: queued requests are answered 503, the port is closed and the
        server file removed.  Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pending = list(self._queue)
            self._queue.clear()
        for _, future in pending:
            if future.set_running_or_notify_cancel():
                future.set_exception(_RequestError(503, "The experiment ended before the request was carried out."))
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=_SOCKET_TIMEOUT_S)
        self._httpd.end_connections(timeout_s=_SOCKET_TIMEOUT_S)
        if self.server_file is not None:
            try:
                os.unlink(self.server_file)
            except FileNotFoundError:
                pass


def _write_server_file(experiment_path: str, host: str, port: int, token: str) -> str:
    """Write the address and token to ``experiment_path/tune_server.json``: a new file
    created with mode 0600 (never a chmod after writing), moved into place atomically.
    Not fsynced: it only matters while this process serves."""
    os.makedirs(experiment_path, exist_ok=True)
    path = os.path.join(experiment_path, SERVER_FILE)
    text = json.dumps({"host": _client_host(host), "port": port, "token": token, "pid": os.getpid()})
    atomic_write(path, text, durable=False, mode=0o600)
    return path


def _client_host(host: str) -> str:
    """Where a client on this machine reaches a server bound to ``host``."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class TuneClient:
    """Talks to a running experiment's :class:`TuneServer` (``ray.tune.web_server.TuneClient``).

    Give the server's address and the token, or ``experiment_path``: the client reads
    whatever is not given from ``<experiment_path>/tune_server.json``.  A refused request
    raises :class:`TuneClientError` (its ``status`` the HTTP status); proxies from the
    environment are never used, so the token goes nowhere but the server.

    Example:
        >>> from fasttune.web_server import TuneClient
        >>> client = TuneClient("127.0.0.1", 4321, token="...")
        >>> client.get_all_trials()  # doctest: +SKIP
        {'trials': [{'id': '9c1e2_00000', 'status': 'RUNNING', ...}]}
    """

    def __init__(self, tune_address: Optional[str] = None, port_forward: Optional[int] = None, *,
                 token: Optional[str] = None, experiment_path: Optional[str] = None,
                 timeout: float = 60.0) -> None:
        if experiment_path is not None and (tune_address is None or port_forward is None or token is None):
            saved = _read_server_file(os.path.abspath(os.path.expanduser(os.fspath(experiment_path))))
            tune_address = tune_address or saved["host"]
            port_forward = port_forward or saved["port"]
            token = token or saved["token"]
        if tune_address is None or port_forward is None:
            raise TuneClientError("TuneClient needs the server's address and port (tune_address, port_forward), "
                                  "or experiment_path to read them from.")
        if not token:
            raise TuneClientError(f"TuneClient needs the server's token: pass token=..., or experiment_path=... "
                                  f"(the server writes it to <experiment_path>/{SERVER_FILE}).")
        self.tune_address = tune_address
        self.port_forward = int(port_forward)
        self.timeout = timeout
        self._token = token
        self._path = f"http://{_url_host(tune_address)}:{self.port_forward}"
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def get_all_trials(self, timeout: Optional[float] = None) -> Dict[str, List[Dict[str, Any]]]:
        """``{"trials": [trial info, ...]}``: every trial of the experiment."""
        return self._request("GET", "/trials", timeout=timeout)

    def get_trial(self, trial_id: str, timeout: Optional[float] = None) -> Dict[str, Dict[str, Any]]:
        """``{"trial": trial info}`` of ``trial_id``."""
        return self._request("GET", f"/trials/{urllib.parse.quote(trial_id, safe='')}", timeout=timeout)

    def add_trial(self, name: Optional[str], specification: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
        """Add a trial with ``specification["config"]`` to the experiment; ``name`` tags
        it (its name and directory carry it).  Returns ``{"trial": trial info}``."""
        return self._request("POST", "/trials", {"name": name, "spec": specification})

    def stop_trial(self, trial_id: str) -> Dict[str, Dict[str, Any]]:
        """Stop ``trial_id`` (it ends TERMINATED with its results); ``{"trial": trial info}``."""
        return self._request("PUT", f"/trials/{urllib.parse.quote(trial_id, safe='')}")

    def stop_experiment(self) -> Dict[str, Any]:
        """Stop every trial and the search: the experiment ends."""
        return self._request("PUT", "/stop_experiment")

    def _request(self, method: str, path: str, body: Any = None, timeout: Optional[float] = None) -> Any:
        data = None if body is None else _json_bytes(body)
        request = urllib.request.Request(self._path + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self._token}", "Content-Type": "application/json",
            "Accept": "application/json"})
        try:
            with self._opener.open(request, timeout=timeout or self.timeout) as response:
                return json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            raw = exc.read(MAX_BODY_BYTES)
            try:
                message = json.loads(raw.decode("utf-8"))["error"]
            except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                message = raw.decode("utf-8", "replace") or exc.reason
            raise TuneClientError(f"{method} {path} was refused ({exc.code}): {message}", exc.code) from None
        except (urllib.error.URLError, ConnectionError, socket.timeout) as exc:
            reason = getattr(exc, "reason", exc)
            raise TuneClientError(f"Cannot reach the TuneServer at {self._path} ({reason}); is the experiment "
                                  "running with server_port set?") from None


def _read_server_file(experiment_path: str) -> Dict[str, Any]:
    path = os.path.join(experiment_path, SERVER_FILE)
    try:
        with open(path) as f:
            saved = json.load(f)
        return {"host": str(saved["host"]), "port": int(saved["port"]), "token": str(saved["token"])}
    except FileNotFoundError:
        raise TuneClientError(f"No {SERVER_FILE} in {experiment_path}: the experiment is not running with "
                              "server_port set (or has ended).") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise TuneClientError(f"{path} cannot be read ({exc}); it is written by a running TuneServer.") from None
