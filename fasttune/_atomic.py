"""Replacing a file or a directory atomically: a reader sees the old one or the new one, never a torn one.

Every writer states whether the new bytes must also survive a power loss
(``durable=True``: the file and its directory are fsynced, about a millisecond or
more each on a local disk) or only the writing process being killed
(``durable=False``: the bytes are in the OS page cache once the rename is done).
The experiment snapshot is durable, and so are the searcher's and scheduler's state
files.  The per-trial files (``params.json``, results, checkpoints a worker persists)
are written often, by several processes, so fsyncing each would cost more than
everything else the driver does for a short trial: they become durable together, by
:func:`sync_filesystem`, which the runner calls before every snapshot, so a snapshot
never names a file whose bytes could still be lost.

Inside :func:`scratch_writes` durable writes skip their fsyncs: for scratch files that
are read back at once and then deleted, such as the searcher's and scheduler's state
that the runner copies into each snapshot (the snapshot itself is written durably,
outside it).  It holds for the current thread (or asyncio task) only, so a writer
thread's durable writes keep theirs; a user's own ``save()`` call outside it fsyncs.

Example:
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "state.json")
    >>> atomic_write(path, '{"step": 1}', durable=False)
    >>> open(path).read()
    '{"step": 1}'
    >>> atomic_write(path, b'{"step": 2}', durable=True)
    >>> open(path).read(), os.listdir(os.path.dirname(path))
    ('{"step": 2}', ['state.json'])
"""
from __future__ import annotations

import contextlib
import contextvars
import ctypes
import functools
import itertools
import os
import secrets
import shutil
from typing import Any, Iterable, Iterator, Optional, Union

__all__ = ["POSIX_PATHS", "atomic_write", "temporary_path", "fsync_directory", "move_directory_into_place", "sync_filesystem", "scratch_writes"]

# Temporary names count from a random start, drawn again in a forked child.
_tmp_start = [secrets.randbits(32)]
_tmp_counter = itertools.count()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _tmp_start.__setitem__(0, secrets.randbits(32)))

# True inside scratch_writes(): the files written are read back and deleted at once.
_SCRATCH = contextvars.ContextVar("fasttune_scratch_writes", default=False)


@contextlib.contextmanager
def scratch_writes() -> Iterator[None]:
    """Within it, :func:`atomic_write`, :func:`fsync_directory` and
    :func:`move_directory_into_place` make no fsync, whatever durability the caller asks
    for: what is written is scratch, read back at once and deleted (see the module
    docstring).  For the current thread or asyncio task only.

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "state.bin")
        >>> with scratch_writes():
        ...     atomic_write(path, b"state", durable=True)  # renamed into place, not fsynced
        >>> open(path, "rb").read()
        b'state'
    """
    token = _SCRATCH.set(True)
    try:
        yield
    finally:
        _SCRATCH.reset(token)


def temporary_path(path: str) -> str:
    """Where a new version of ``path`` is written before it is renamed over it: beside it
    (the rename stays on one file system), hidden, and named apart from other writes."""
    # Eight hex digits, unique among this process's writes (a counter from a random start
    # made once per process) and unlikely to meet another's: one file per trial is written
    # this way, so not a random call each.
    return _temporary_name(path, (_tmp_start[0] + next(_tmp_counter)) & 0xFFFFFFFF)


#: Paths are joined with one "/" and nothing else separates them: a file's path in a
#: directory can be made without os.path's general code.
POSIX_PATHS = os.path.sep == "/" and os.path.altsep is None


def _temporary_name(path: str, tag: int) -> str:
    """``path``'s temporary name with ``tag``: ``.<name>.<tag>.tmp`` in its directory."""
    if POSIX_PATHS:
        # What os.path.split and join give, without them (a trial's params.json is written
        # this way): a directory that ends in one "/" is kept as it is.
        cut = path.rfind("/") + 1
        if cut > 1 and path[cut - 2] != "/":
            return f"{path[:cut]}.{path[cut:]}.{tag:08x}.tmp"
    directory, name = os.path.split(path)
    return os.path.join(directory or ".", f".{name}.{tag:08x}.tmp")


def atomic_write(
    path: str, data: Union[bytes, bytearray, memoryview, str, Iterable[bytes]], *, durable: bool,
    mode: Optional[int] = None,
) -> None:
    """Replace ``path`` with ``data`` (``str`` is written as UTF-8; a list, tuple or other
    iterable of byte strings is written one after another, so a header and a large
    payload need not be joined first).

    The bytes go to a new temporary file beside ``path`` (same directory, so the
    rename stays on one file system), which is then renamed over ``path``.  With
    ``durable`` the file is fsynced before the rename and the directory after it.
    ``mode`` is the new file's permission bits, as ``os.open`` takes them (the umask
    applies; the default 0o666 gives what ``open()`` gives); they are set when the
    file is created, never by a later chmod, so a secret is never readable by others.
    On any failure the temporary file is removed and the exception propagates;
    ``path`` keeps what it held.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    chunks = (data,) if isinstance(data, (bytes, bytearray, memoryview)) else data
    durable = durable and not _SCRATCH.get()
    directory = os.path.dirname(path) or "."
    tmp = temporary_path(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if mode is None else mode)
    try:
        try:
            for chunk in chunks:
                view = memoryview(chunk)
                while view:  # os.write may store less than it was given
                    view = view[os.write(fd, view):]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if durable:
        fsync_directory(directory)


def sync_filesystem(path: str) -> None:
    """Make every write so far to the file system holding ``path`` durable, whoever made
    it (this process's files and those of worker processes alike).

    One ``syncfs`` call on Linux: a single journal commit for all files written since
    the last one, which costs far less than fsyncing each of them; elsewhere ``sync``.

    Raises:
        OSError: the file system reports that written data could not be stored.

    Example:
        >>> import tempfile
        >>> sync_filesystem(tempfile.gettempdir())
    """
    syncfs = _syncfs()
    if syncfs is None:  # pragma: no cover - not Linux
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        if syncfs(fd) != 0:
            error = ctypes.get_errno()
            raise OSError(error, os.strerror(error), path)
    finally:
        os.close(fd)


@functools.lru_cache(maxsize=1)
def _syncfs() -> Any:
    """libc's ``syncfs`` (None where there is none)."""
    try:
        function = ctypes.CDLL(None, use_errno=True).syncfs
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return None
    function.argtypes = [ctypes.c_int]
    function.restype = ctypes.c_int
    return function


def fsync_directory(path: str) -> None:
    """Make the entries of directory ``path`` (a rename into it) durable.

    Best effort: some file systems refuse to open or fsync a directory, and then
    there is nothing more to do.  Nothing is done inside :func:`scratch_writes`.
    """
    if _SCRATCH.get():
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - file-system dependent
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - file-system dependent
        pass
    finally:
        os.close(fd)


def move_directory_into_place(source: str, target: str, *, durable: bool) -> None:
    """Rename the finished directory ``source`` to ``target``, replacing what ``target`` holds.

    Writers fill ``source`` (a temporary name beside ``target``) and call this only
    once it is complete, so ``target`` is always whole.  An existing ``target`` is
    deleted first when the rename cannot replace it (a rename replaces only an empty
    directory).  With ``durable`` every file and directory under ``source`` is fsynced
    before the rename, and the parent directory after it.

    Example:
        >>> import os, tempfile
        >>> parent = tempfile.mkdtemp()
        >>> os.makedirs(os.path.join(parent, "ckpt.tmp"))
        >>> _ = open(os.path.join(parent, "ckpt.tmp", "weights"), "w").write("new")
        >>> os.makedirs(os.path.join(parent, "ckpt"))
        >>> _ = open(os.path.join(parent, "ckpt", "weights"), "w").write("old")
        >>> move_directory_into_place(os.path.join(parent, "ckpt.tmp"), os.path.join(parent, "ckpt"), durable=False)
        >>> os.listdir(parent), open(os.path.join(parent, "ckpt", "weights")).read()
        (['ckpt'], 'new')
    """
    durable = durable and not _SCRATCH.get()
    if durable:
        _fsync_tree(source)
    try:
        os.rename(source, target)
    except OSError:  # target exists and is not empty (e.g. a restart rewrites a checkpoint)
        shutil.rmtree(target, ignore_errors=True)
        os.rename(source, target)
    if durable:
        fsync_directory(os.path.dirname(os.path.abspath(target)))


def _fsync_tree(root: str) -> None:
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            if os.path.islink(path):
                continue
            with open(path, "rb") as f:
                os.fsync(f.fileno())
        fsync_directory(directory)
