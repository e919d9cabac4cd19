"""A direct socket between the driver and its pooled workers on the driver's own node.

A Ray actor call costs ~0.4 ms of CPU on each side; a poll that answers one decision
(ASHA's first rung, a one-result trial's end) is mostly that cost.  A worker on the
driver's node therefore carries its polls over a Unix socket instead: the same msgpack
command and reply bytes as ``TrialWorker.poll``, framed by a 4-byte length, one poll in
flight at a time.  Ray still creates, interrupts, releases and kills the actor, and still
reports its death (a socket that closes sends the worker back to Ray's poll, which raises
the actor's error).  Workers on other nodes keep Ray's calls.

The socket lives in a directory only the driver's user can enter, and a worker proves it
is the one the driver created by sending first the secret it was handed through Ray.

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

import hmac
import os
import secrets
import shutil
import socket
import struct
import tempfile
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

from fasttune.constants import WORKER_CHANNEL_ENV_VAR

_HEADER = struct.Struct("<I")
_HANDSHAKE_S = 2.0  # a connecting worker sends its secret at once; a silent peer is dropped


def send_frame(sock: socket.socket, data: bytes) -> None:
    """One length-prefixed frame, written whole."""
    sock.sendall(_HEADER.pack(len(data)) + data)


def _read_exactly(sock: socket.socket, size: int) -> Optional[bytes]:
    chunks = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def read_frame(sock: socket.socket) -> Optional[bytes]:
    """The next frame, or None once the peer closed (or died) before a whole one."""
    header = _read_exactly(sock, _HEADER.size)
    if header is None:
        return None
    size, = _HEADER.unpack(header)
    return _read_exactly(sock, size) if size else b""


class ChannelListener:
    """The driver's end: a listening Unix socket, and the secret each worker slot must send."""

    def __init__(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="fasttune-channel-")  # mode 0700
        self.path = os.path.join(self._dir, "s")
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.socket.bind(self.path)
        self.socket.listen(64)
        self.socket.setblocking(False)
        self._secrets: Dict[bytes, int] = {}

    def secret_for(self, slot: int) -> bytes:
        """A new secret that identifies ``slot``'s worker when it connects."""
        secret = secrets.token_bytes(32)
        self._secrets[secret] = slot
        return secret

    def forget(self, slot: int) -> None:
        for secret, owner in list(self._secrets.items()):
            if owner == slot:
                del self._secrets[secret]

    def accept(self) -> List[Tuple[int, socket.socket]]:
        """The workers that connected since the last call, as ``(slot, socket)``; a peer
        that does not send a known secret is closed."""
        accepted = []
        while True:
            try:
                sock, _ = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return accepted
            sock.setblocking(True)
            sock.settimeout(_HANDSHAKE_S)
            try:
                secret = read_frame(sock)
            except OSError:
                secret = None
            slot = self._slot_of(secret)
            if slot is None:
                sock.close()
                continue
            sock.settimeout(None)
            accepted.append((slot, sock))

    def _slot_of(self, secret: Optional[bytes]) -> Optional[int]:
        if secret is None:
            return None
        for known, slot in self._secrets.items():
            if hmac.compare_digest(known, secret):
                del self._secrets[known]  # one connection a secret
                return slot
        return None

    def close(self) -> None:
        try:
            self.socket.close()
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)


def connect(path: str, secret: bytes) -> socket.socket:
    """The worker's end: connects and identifies itself (raises OSError if it cannot)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
        send_frame(sock, secret)
    except OSError:
        sock.close()
        raise
    return sock


def serve(sock: socket.socket, poll: Callable[[bytes], bytes]) -> threading.Thread:
    """Answers each command frame with ``poll(commands)``'s reply, on a thread of its own,
    until the driver closes the socket (or ``poll`` raises: the socket closes, and the
    driver's next poll, through Ray, is the one that hears why)."""

    def run() -> None:
        try:
            while True:
                commands = read_frame(sock)
                if commands is None:
                    return
                send_frame(sock, poll(commands))
        except OSError:
            return  # the driver went away
        finally:
            sock.close()

    thread = threading.Thread(target=run, name="fasttune-channel", daemon=True)
    thread.start()
    return thread


def channel_wanted() -> bool:
    """``FASTTUNE_WORKER_CHANNEL=ray`` keeps every poll on Ray's actor calls."""
    return os.environ.get(WORKER_CHANNEL_ENV_VAR, "socket").strip().lower() != "ray"


__all__: List[Any] = ["ChannelListener", "channel_wanted", "connect", "read_frame", "send_frame", "serve"]
