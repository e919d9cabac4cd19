"""An HTTP proxy in front of an S3 server that fails chosen uploads, deterministically.

:class:`FaultyS3Proxy` listens on a loopback port and forwards every request to the
server it fronts as it came (method, path, headers in their order, body bytes), and
the server's answer back, over one upstream connection per client connection.  A rule
set with :meth:`FaultyS3Proxy.fail` makes it answer ``403 AccessDenied`` instead to the
first ``times`` requests whose method is one of ``methods`` and whose URL-decoded path
contains a given text; those requests never reach the server.  Every request is
recorded, so a test can say exactly which ones were refused.

Example (a checkpoint upload of one trial refused once)::

    proxy = FaultyS3Proxy("127.0.0.1:5000")
    proxy.fail("x=3/checkpoint_000002/", times=1)
    uri = f"s3://bucket/exp?endpoint_override={proxy.address}&scheme=http"
    ...
    proxy.close()
"""
import http.client
import http.server
import threading
from typing import Dict, List, NamedTuple, Optional, Tuple
from urllib.parse import unquote, urlsplit

ACCESS_DENIED = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
                 b'<Message>Access Denied (refused by the test proxy)</Message>'
                 b'<RequestId>faulty-s3-proxy</RequestId></Error>')

# Hop-by-hop headers: they describe one connection, not the request (RFC 9110, 7.6.1).
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade"}


class Request(NamedTuple):
    """One request the proxy received."""

    method: str
    path: str  # URL-decoded, without the query
    headers: Dict[str, str]  # names in lower case
    refused: bool


class _Rule:
    """Refuse the next ``times`` requests with a method in ``methods`` whose path
    contains ``fragment``."""

    def __init__(self, fragment: str, times: int, methods: Tuple[str, ...]) -> None:
        self.fragment = fragment
        self.left = times
        self.methods = methods

    def matches(self, method: str, path: str) -> bool:
        return self.left > 0 and method in self.methods and self.fragment in path


class FaultyS3Proxy:
    """A forwarding proxy to the S3 server at ``upstream`` (``host:port``); see the module
    docstring.  ``address`` is its own ``127.0.0.1:PORT``."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.rsplit(":", 1)
        self._upstream = (host, int(port))
        self._lock = threading.Lock()
        self._rules: List[_Rule] = []
        #: Every request, in arrival order.
        self.requests: List[Request] = []
        proxy = self

        class Handler(_ForwardingHandler):
            owner = proxy

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="faulty-s3-proxy", daemon=True)
        self._thread.start()
        self.address = f"127.0.0.1:{self._server.server_address[1]}"

    def fail(self, fragment: str, times: int, methods: Tuple[str, ...] = ("PUT", "POST")) -> None:
        """Answer 403 AccessDenied to the next ``times`` requests with a method in
        ``methods`` whose URL-decoded path contains ``fragment``."""
        with self._lock:
            self._rules.append(_Rule(fragment, times, tuple(methods)))

    def refused(self) -> List[Tuple[str, str]]:
        """(method, path) of each request refused so far."""
        with self._lock:
            return [(r.method, r.path) for r in self.requests if r.refused]

    def _decide(self, method: str, path: str, headers: Dict[str, str]) -> bool:
        """Record the request; True when a rule refuses it (and count it against that rule)."""
        with self._lock:
            rule: Optional[_Rule] = next((r for r in self._rules if r.matches(method, path)), None)
            if rule is not None:
                rule.left -= 1
            self.requests.append(Request(method, path, headers, rule is not None))
            return rule is not None

    def close(self) -> None:
        """Stop listening; connections still open end with their threads."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


class _ForwardingHandler(http.server.BaseHTTPRequestHandler):
    """One client connection: each request is refused or forwarded upstream."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the S3 client expects
    owner: FaultyS3Proxy

    def setup(self) -> None:
        super().setup()
        self._connection: Optional[http.client.HTTPConnection] = None

    def finish(self) -> None:
        if self._connection is not None:
            self._connection.close()
        super().finish()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass  # the requests are recorded on the proxy instead

    def _handle(self) -> None:
        body = self._read_body()
        path = unquote(urlsplit(self.path).path)
        if self.owner._decide(self.command, path, {name.lower(): value for name, value in self.headers.items()}):
            self._answer(403, [("Content-Type", "application/xml"), ("Content-Length", str(len(ACCESS_DENIED)))],
                         ACCESS_DENIED)
            return
        if self._connection is None:
            self._connection = http.client.HTTPConnection(*self.owner._upstream, timeout=60)
        # The client's headers in their order; Expect was answered here already.
        self._connection.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for name, value in self.headers.items():
            if name.lower() not in _HOP_BY_HOP and name.lower() != "expect":
                self._connection.putheader(name, value)
        self._connection.endheaders(body)
        response = self._connection.getresponse()
        payload = response.read()
        headers = [(name, value) for name, value in response.getheaders()
                   if name.lower() not in _HOP_BY_HOP and name.lower() != "transfer-encoding"]
        if response.getheader("Transfer-Encoding") is not None:  # sent on with its length instead
            headers.append(("Content-Length", str(len(payload))))
        self._answer(response.status, headers, payload, response.reason)

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is not None:
            return self.rfile.read(int(length))
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        return b""

    def _read_chunked(self) -> bytes:
        """The raw chunked body (sizes, chunks, trailers), to forward unchanged."""
        raw = bytearray()
        while True:
            size_line = self.rfile.readline()
            raw += size_line
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while True:  # trailers, up to the empty line
                    line = self.rfile.readline()
                    raw += line
                    if line in (b"\r\n", b"\n", b""):
                        return bytes(raw)
            raw += self.rfile.read(size + 2)  # the chunk and its CRLF

    def _answer(self, status: int, headers: List[Tuple[str, str]], payload: bytes, reason: str = None) -> None:
        self.send_response_only(status, reason)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        self.wfile.flush()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle


__all__ = ["FaultyS3Proxy", "Request", "ACCESS_DENIED"]
