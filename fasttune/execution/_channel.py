"""A direct socket between the driver and its pooled workers on the driver's own node.

A Ray actor call costs ~0.4 ms of CPU on each side; a poll that answers one decision
(ASHA's first rung, PBT's perturbation point) is mostly that cost.  A worker on the
driver's node therefore carries its polls over a Unix socket instead: the same msgpack
command and reply bytes as ``TrialWorker.poll``, framed by a 4-byte length, one poll in
flight at a time.  Stops and pauses that cannot wait for the poll's reply (``interrupt``)
travel on the same socket, so they keep their order with the polls around them.  Ray
still creates, releases and kills the actor, and still reports its death (a socket that
closes sends the worker back to Ray's poll, which raises the actor's error).  Workers on
other nodes keep Ray's calls.

The socket lives in a directory only the driver's user can enter, and a worker proves it
is the one the driver created by sending first the secret it was handed through Ray.
The driver never blocks on a worker: it reads only what has arrived (``FrameReader``),
finishes a handshake only once the secret is all there, and gives up a send to a worker
that takes nothing for ``SEND_TIMEOUT_S``.

Example (both ends in one process):
    >>> listener = ChannelListener()
    >>> secret = listener.secret_for(7)
    >>> worker_end = connect(listener.path, secret)
    >>> [(slot, type(channel).__name__) for slot, channel in listener.accept()]
    [(7, 'socket')]
    >>> worker_end.close()
    >>> listener.close()
"""
from __future__ import annotations

import fcntl
import hmac
import os
import queue
import secrets
import select
import selectors
import shutil
import socket
import struct
import tempfile
import threading
import time
import weakref
from typing import Any, Callable, Dict, List, Optional, Tuple

from fasttune.constants import WORKER_CHANNEL_ENV_VAR

_HEADER = struct.Struct("<I")
_DIR_PREFIX = "fasttune-channel-"
_SECRET_BYTES = 32
HANDSHAKE_S = 2.0  # a connecting worker sends its secret at once; a silent peer is dropped
SEND_TIMEOUT_S = 10.0  # a worker that takes none of a frame this long is left to Ray
POLL = b"P"  # a frame from the driver: a poll's commands
INTERRUPT = b"I"  # a frame from the driver: commands to apply at once (stop, pause)
_READ_AHEAD = 1 << 16  # read_frame with a pending buffer takes up to this much a recv


def send_frame(sock: socket.socket, data: bytes, timeout: Optional[float] = None) -> None:
    """One length-prefixed frame, written whole.  With ``timeout``, raises ``TimeoutError``
    when the peer takes nothing for that long (the frame may then be cut: drop the socket)."""
    if timeout is None:
        sock.sendall(_HEADER.pack(len(data)))  # apart: a large reply is not copied to join them
        sock.sendall(data)
    else:
        _send_within(sock, memoryview(_HEADER.pack(len(data)) + data), timeout)


def send_small_frame(sock: socket.socket, data: bytes) -> bool:
    """Sends a small frame (an interrupt) now or not at all: False when the socket's buffer
    has no room for it (the stream is untouched).  Raises OSError if the socket failed."""
    frame = _HEADER.pack(len(data)) + data
    try:
        sent = sock.send(frame, socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return False
    if sent < len(frame):  # a Unix socket queues a small frame whole; finish one cut anyway
        _send_within(sock, memoryview(frame)[sent:], SEND_TIMEOUT_S)
    return True


def _send_within(sock: socket.socket, view: memoryview, timeout: float) -> None:
    writable = None  # made only when the socket's buffer is full (nearly never)
    while view:
        try:
            view = view[sock.send(view, socket.MSG_DONTWAIT):]
        except (BlockingIOError, InterruptedError):
            if writable is None:
                writable = select.poll()  # not select.select: a driver's descriptors go past 1024
                writable.register(sock, select.POLLOUT)
            if not writable.poll(timeout * 1000):
                raise TimeoutError(f"the peer took none of a frame for {timeout} s") from None


def _read_exactly(sock: socket.socket, size: int) -> Optional[bytes]:
    chunks = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def read_frame(sock: socket.socket, pending: Optional[bytearray] = None) -> Optional[bytes]:
    """The next frame, blocking until it is whole; None once the peer closed (or died)
    before a whole one.  (The worker's end reads so; the driver uses ``FrameReader``.)

    With ``pending`` (a bytearray kept from call to call for the socket), each read takes
    what has arrived, up to ``_READ_AHEAD`` bytes: a frame that came whole costs one
    ``recv``, not one for its header and one for the rest, and bytes past it wait in
    ``pending`` for the next call.

    Example:
        >>> left, right = socket.socketpair()
        >>> left.sendall(_HEADER.pack(2) + b"ab" + _HEADER.pack(1) + b"c")
        >>> pending = bytearray()
        >>> read_frame(right, pending), pending
        (b'ab', bytearray(b'\\x01\\x00\\x00\\x00c'))
        >>> read_frame(right, pending), pending
        (b'c', bytearray(b''))
        >>> left.close(); read_frame(right, pending) is None
        True
        >>> right.close()
    """
    if pending is None:
        header = _read_exactly(sock, _HEADER.size)
        if header is None:
            return None
        size, = _HEADER.unpack(header)
        return _read_exactly(sock, size) if size else b""
    while True:
        if len(pending) >= _HEADER.size:
            end = _HEADER.size + _HEADER.unpack_from(pending)[0]
            if len(pending) >= end:
                frame = bytes(pending[_HEADER.size:end])
                del pending[:end]
                return frame
            if end - len(pending) > _READ_AHEAD:  # a large frame: its rest is read as it is
                rest = _read_exactly(sock, end - len(pending))
                if rest is None:
                    return None
                frame = bytes(pending[_HEADER.size:]) + rest
                pending.clear()
                return frame
        chunk = sock.recv(_READ_AHEAD)
        if not chunk:
            return None
        if not pending and len(chunk) >= _HEADER.size and _HEADER.unpack_from(chunk)[0] == len(chunk) - _HEADER.size:
            return chunk[_HEADER.size:]  # one whole frame, as a poll nearly always comes: not buffered
        pending += chunk


class FrameReader:
    """Frames from a socket read without blocking: ``read`` takes what has arrived and
    returns the frame it completes, if any.

    Example:
        >>> left, right = socket.socketpair()
        >>> reader = FrameReader()
        >>> left.sendall(_HEADER.pack(5) + b"he")
        >>> reader.read(right) is None
        True
        >>> left.sendall(b"llo")
        >>> reader.read(right)
        b'hello'
        >>> left.close(); right.close()
    """

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def read(self, sock: socket.socket) -> Optional[bytes]:
        """The next whole frame, or None if it has not all arrived; raises ``EOFError``
        once the peer closed (``OSError`` if the socket failed)."""
        buffer = self._buffer
        while True:
            frame = self._frame() if buffer else None
            if frame is not None:
                return frame
            try:
                chunk = sock.recv(1 << 20, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return None
            if not chunk:
                raise EOFError("the peer closed the socket")
            if not buffer and len(chunk) >= _HEADER.size and _HEADER.unpack_from(chunk)[0] == len(chunk) - _HEADER.size:
                return chunk[_HEADER.size:]  # one whole frame, as a reply nearly always comes: not buffered
            buffer += chunk

    @property
    def holds_more(self) -> bool:
        """Bytes past the frames returned: more than one frame came at once."""
        return bool(self._buffer)

    def _frame(self) -> Optional[bytes]:
        buffer = self._buffer
        if len(buffer) < _HEADER.size:
            return None
        end = _HEADER.size + _HEADER.unpack_from(buffer)[0]
        if len(buffer) < end:
            return None
        frame = bytes(buffer[_HEADER.size:end])
        del buffer[:end]
        return frame


class ChannelListener:
    """The driver's end: a listening Unix socket, and the secret each worker slot must send.

    With ``selector`` (a ``selectors`` selector), the listening socket and the connections
    still in their handshake are registered there with ``data=None``: when one is ready,
    call ``accept``.
    """

    def __init__(self, selector: Any = None) -> None:
        self._dir = tempfile.mkdtemp(prefix=_DIR_PREFIX)  # mode 0700
        # Locked while this driver lives: a killed driver's directory is told from a live one's.
        lock = _locked_file(os.path.join(self._dir, "lock"))
        # Removed also when the driver exits without closing it (an error, a Ctrl-C).
        self._remove_dir = weakref.finalize(self, _remove_locked_dir, self._dir, lock)
        remove_abandoned_dirs(os.path.dirname(self._dir))
        self._selector = None
        self._secrets: Dict[bytes, int] = {}
        self._pending: Dict[socket.socket, Tuple[float, bytearray]] = {}  # in handshake: deadline, bytes so far
        self.path = os.path.join(self._dir, "s")
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.socket.bind(self.path)  # e.g. "AF_UNIX path too long" under a long TMPDIR
            self.socket.listen(64)
        except OSError:
            self.close()
            raise
        self.socket.setblocking(False)
        if selector is not None:
            selector.register(self.socket, selectors.EVENT_READ, None)
            self._selector = selector

    def secret_for(self, slot: int) -> bytes:
        """A new secret that identifies ``slot``'s worker when it connects."""
        secret = secrets.token_bytes(_SECRET_BYTES)
        self._secrets[secret] = slot
        return secret

    @property
    def handshaking(self) -> bool:
        """Whether a connection is still in its handshake (``accept`` expires it in time)."""
        return bool(self._pending)

    def forget(self, slot: int) -> None:
        for secret, owner in list(self._secrets.items()):
            if owner == slot:
                del self._secrets[secret]

    def accept(self) -> List[Tuple[int, socket.socket]]:
        """The workers whose handshake completed since the last call, as ``(slot, socket)``
        (blocking sockets: read them with a ``FrameReader``).  Never waits: a connection
        whose secret has not all arrived is looked at again on the next call, and closed
        once ``HANDSHAKE_S`` passed; one that sends anything but a known secret is closed."""
        while True:
            try:
                sock, _ = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                break
            sock.settimeout(None)  # blocking (MSG_DONTWAIT reads never wait), whatever the default timeout
            self._pending[sock] = (time.monotonic() + HANDSHAKE_S, bytearray())
            if self._selector is not None:
                self._selector.register(sock, selectors.EVENT_READ, None)
        accepted = []
        now = time.monotonic()
        for sock, (deadline, got) in list(self._pending.items()):
            wanted = _HEADER.size + _SECRET_BYTES - len(got)
            try:
                chunk = sock.recv(wanted, socket.MSG_DONTWAIT)
                closed = not chunk
            except (BlockingIOError, InterruptedError):
                chunk, closed = b"", False
            except OSError:
                chunk, closed = b"", True
            got += chunk
            if len(got) < _HEADER.size + _SECRET_BYTES and not closed and now < deadline:
                continue
            self._end_handshake(sock)
            slot = self._slot_of(bytes(got)) if not closed else None
            if slot is None:
                sock.close()
            else:
                accepted.append((slot, sock))
        return accepted

    def _end_handshake(self, sock: socket.socket) -> None:
        del self._pending[sock]
        if self._selector is not None:
            self._selector.unregister(sock)

    def _slot_of(self, handshake: bytes) -> Optional[int]:
        if len(handshake) != _HEADER.size + _SECRET_BYTES or _HEADER.unpack_from(handshake)[0] != _SECRET_BYTES:
            return None
        secret = handshake[_HEADER.size:]
        for known, slot in self._secrets.items():
            if hmac.compare_digest(known, secret):
                del self._secrets[known]  # one connection a secret
                return slot
        return None

    def close(self) -> None:
        for sock in list(self._pending):
            self._end_handshake(sock)
            sock.close()
        if self._selector is not None:
            self._selector.unregister(self.socket)
            self._selector = None
        self.socket.close()
        self._remove_dir()


def _locked_file(path: str) -> int:
    """A new file at ``path``, exclusively locked; it appears there already locked."""
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.rename(tmp, path)
    return fd


def _remove_locked_dir(path: str, lock: int) -> None:
    shutil.rmtree(path, ignore_errors=True)
    os.close(lock)


def remove_abandoned_dirs(root: str) -> List[str]:
    """Removes the channel directories under ``root`` that a killed driver left (their lock
    file is free), never a live driver's (locked) or one still being made (no lock file
    yet); returns their paths.  Only this user's directories are looked at."""
    removed = []
    try:
        names = [name for name in os.listdir(root) if name.startswith(_DIR_PREFIX)]
    except OSError:
        return removed
    for name in names:
        path = os.path.join(root, name)
        try:
            if os.stat(path).st_uid != os.getuid():
                continue
            fd = os.open(os.path.join(path, "lock"), os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # its driver lives
        _remove_locked_dir(path, fd)
        removed.append(path)
    return removed


def connect(path: str, secret: bytes) -> socket.socket:
    """The worker's end: connects and identifies itself (raises OSError if it cannot)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(None)  # blocking, whatever socket.setdefaulttimeout says
    try:
        sock.connect(path)
        send_frame(sock, secret)
    except OSError:
        sock.close()
        raise
    return sock


def serve(sock: socket.socket, take_commands: Callable[[bytes], None], next_reply: Callable[[], bytes],
          interrupt: Callable[[bytes], None], on_failure: Callable[[BaseException], None]) -> threading.Thread:
    """The worker's end, on two threads of its own until the driver closes the socket.

    One reads the driver's frames and applies each in order as it arrives: a poll's
    commands (``take_commands``), or an interrupt's.  The other answers each poll with
    ``next_reply()`` once there is something to say.  A callable that raises is handed to
    ``on_failure`` and closes the socket: the driver's next poll, through Ray, hears why.
    """
    replies_due: "queue.SimpleQueue[bool]" = queue.SimpleQueue()
    lock, ended = threading.Lock(), []

    def end() -> None:
        # The second thread to end closes the socket: a close would not wake the other
        # from a recv or send, a shutdown does.
        with lock:
            ended.append(True)
            last = len(ended) == 2
        if last:
            sock.close()

    def fail(exc: BaseException) -> None:
        on_failure(exc)
        _shut(sock)

    def answer() -> None:
        try:
            while replies_due.get():
                try:
                    send_frame(sock, next_reply())
                except OSError:
                    _shut(sock)  # the driver went away
                    return
                except BaseException as exc:  # noqa: BLE001 - told to the driver through Ray
                    fail(exc)
                    return
        finally:
            end()

    def read() -> None:
        pending = bytearray()
        try:
            while True:
                frame = read_frame(sock, pending)
                if frame is None:
                    return
                kind, commands = frame[:1], frame[1:]
                try:
                    if kind == INTERRUPT:
                        interrupt(commands)
                    else:
                        take_commands(commands)
                        replies_due.put(True)
                except BaseException as exc:  # noqa: BLE001 - told to the driver through Ray
                    fail(exc)
                    return
        except OSError:
            return
        finally:
            replies_due.put(False)
            end()

    threading.Thread(target=answer, name="fasttune-channel-reply", daemon=True).start()
    reader = threading.Thread(target=read, name="fasttune-channel", daemon=True)
    reader.start()
    return reader


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def channel_wanted() -> bool:
    """``FASTTUNE_WORKER_CHANNEL=ray`` keeps every poll on Ray's actor calls."""
    return os.environ.get(WORKER_CHANNEL_ENV_VAR, "socket").strip().lower() != "ray"


__all__: List[Any] = ["ChannelListener", "FrameReader", "INTERRUPT", "POLL", "channel_wanted", "connect",
                      "read_frame", "remove_abandoned_dirs", "send_frame", "send_small_frame", "serve"]
