"""Where an experiment lives: a local directory, or a location in storage (S3, GCS, any
``pyarrow.fs`` filesystem) that the readers copy from.

A local path stays a plain path: nothing here imports pyarrow for it, so the readers keep
their fast path.  A URI that ``pyarrow.fs.FileSystem.from_uri`` understands
(``s3://bucket/prefix?endpoint_override=host:port&scheme=http``, ``gs://...``,
``file:///...``), or a path together with an explicit ``pyarrow.fs.FileSystem``, is a
:class:`Location`.  The readers download an experiment's metadata (everything except its
``checkpoint_*`` directories) into a local cache with :func:`local_copy` and read that
with the local readers; a checkpoint is downloaded only when it is opened
(:func:`local_checkpoint`), once per node.

Example:
    >>> is_uri("/tmp/results/exp"), is_uri("s3://bucket/exp")
    (False, True)
    >>> resolve("/tmp/results/exp") is None  # a local path: no Location, no pyarrow
    True
    >>> join_uri("s3://bucket/exp?scheme=http", "trial_0", "checkpoint_000001")
    's3://bucket/exp/trial_0/checkpoint_000001?scheme=http'
"""
from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import re
import shutil
import tempfile
import threading
import time
from typing import Any, Callable, Iterator, List, NamedTuple, Optional
from urllib.parse import urlsplit, urlunsplit

from fasttune._atomic import move_directory_into_place
from fasttune._optional import import_optional
from fasttune.error import TuneError

__all__ = [
    "Location", "ExperimentStorage", "is_uri", "resolve", "join_uri", "local_copy", "local_checkpoint",
    "list_names", "download_directory", "upload_directory", "upload_file", "copy_directory", "delete_directory",
    "forget_local_checkpoint", "cache_root", "in_parallel", "unwritable", "staging_path", "node_scratch", "refresh_local_copy", "parent_uri",
    "NODE_CACHE_BYTES_ENV", "node_cache_bytes", "new_checkpoint_token", "node_cache_scratch", "keep_checkpoint",
    "keep_opened_checkpoint", "open_kept_checkpoint", "forget_kept_checkpoints", "kept_checkpoints",
    "keep_copy_of_kept", "tree_bytes", "NODE_CACHE_ENTRIES_ENV", "node_cache_entries", "remove_dead_scratch",
]

# A checkpoint directory: its files stay in storage until a checkpoint is opened.
_CHECKPOINT_DIR = re.compile(r"^checkpoint_")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_uri(path: Any) -> bool:
    """Whether ``path`` is a URI (``scheme://...``) rather than a local path."""
    return isinstance(path, str) and bool(_URI.match(path))


def join_uri(uri: str, *parts: str) -> str:
    """``uri`` with ``parts`` appended to its path; its query options are kept."""
    split = urlsplit(uri)
    path = "/".join([split.path.rstrip("/"), *parts])
    return urlunsplit((split.scheme, split.netloc, path, split.query, split.fragment))


def parent_uri(uri: str) -> str:
    """``uri`` less the last part of its path; its query options are kept.

    Example:
        >>> parent_uri("s3://bucket/runs/exp?scheme=http")
        's3://bucket/runs?scheme=http'
    """
    split = urlsplit(uri)
    path = posixpath.dirname(split.path.rstrip("/"))
    return urlunsplit((split.scheme, split.netloc, path, split.query, split.fragment))


class Location:
    """A directory in storage: the ``pyarrow.fs`` filesystem, the path on it, and how the
    user named it (the URI, or the path on an explicit filesystem), for messages and for
    the paths of what lies below."""

    __slots__ = ("filesystem", "path", "uri")

    def __init__(self, filesystem: Any, path: str, uri: str) -> None:
        self.filesystem = filesystem
        self.path = path.rstrip("/") or path
        self.uri = uri

    def parent(self) -> "Location":
        """The location of the directory this one is in."""
        uri = parent_uri(self.uri) if is_uri(self.uri) else posixpath.dirname(self.uri.rstrip("/"))
        return Location(self.filesystem, posixpath.dirname(self.path), uri)

    def join(self, *parts: str) -> "Location":
        """The location of ``parts`` below this one."""
        uri = join_uri(self.uri, *parts) if is_uri(self.uri) else posixpath.join(self.uri, *parts)
        return Location(self.filesystem, posixpath.join(self.path, *parts), uri)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Location) and (self.uri, self.path) == (other.uri, other.path)

    def __hash__(self) -> int:
        return hash((self.uri, self.path))

    def __getstate__(self) -> dict:
        return {"filesystem": self.filesystem, "path": self.path, "uri": self.uri}

    def __setstate__(self, state: dict) -> None:
        for name in self.__slots__:
            setattr(self, name, state[name])

    def __repr__(self) -> str:
        return f"Location({self.uri!r})"


def _pyarrow_fs(purpose: str) -> Any:
    return import_optional("pyarrow.fs", "storage", purpose, package="pyarrow")


def resolve(path: Any, storage_filesystem: Any = None) -> Optional[Location]:
    """The :class:`Location` that ``path`` names, or None for a local path (given without a
    filesystem), which the caller reads as it always has.

    Raises:
        TuneError: the URI is not one pyarrow understands, or ``storage_filesystem`` is
            not a ``pyarrow.fs.FileSystem``.
    """
    if storage_filesystem is None and not is_uri(path):
        return None
    fs = _pyarrow_fs(f"Reading {path!r}")
    text = os.fsdecode(os.fspath(path))
    if storage_filesystem is not None:
        if not isinstance(storage_filesystem, fs.FileSystem):
            raise TuneError(
                f"storage_filesystem must be a pyarrow.fs.FileSystem (wrap an fsspec one with "
                f"pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(...))), got "
                f"{type(storage_filesystem).__name__}.")
        if is_uri(text):
            raise TuneError(
                f"{text} is a URI, and storage_filesystem was given too: pass the path on that "
                f"filesystem (bucket/prefix), or the URI alone.")
        return Location(storage_filesystem, text, text)
    try:
        filesystem, fs_path = fs.FileSystem.from_uri(_with_fast_small_writes(text))
    except (ValueError, OSError, TypeError) as exc:
        raise TuneError(
            f"{text} is not a storage location pyarrow.fs understands ({exc}). Pass a local path, "
            f"or a URI such as s3://bucket/prefix (with ?endpoint_override=host:port&scheme=http "
            f"for an S3-compatible server), gs://bucket/prefix or file:///absolute/path.") from None
    return Location(filesystem, fs_path, text)


def _with_fast_small_writes(uri: str) -> str:
    """``uri``, for S3 with ``allow_delayed_open=true`` unless it says otherwise: pyarrow then
    writes a small file with one PUT instead of a three-request multipart upload (checks,
    such as a missing bucket, come when the file is closed instead of opened)."""
    split = urlsplit(uri)
    if split.scheme != "s3" or "allow_delayed_open=" in split.query:
        return uri
    query = "&".join(part for part in (split.query, "allow_delayed_open=true") if part)
    return urlunsplit((split.scheme, split.netloc, split.path, query, split.fragment))


def _unreachable(location: Location, exc: BaseException) -> TuneError:
    return TuneError(
        f"Cannot read {location.uri}: {exc}. Check that the bucket exists, that the credentials "
        f"(e.g. AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or those of the storage_filesystem given) "
        f"may read it, and the endpoint (endpoint_override, scheme) and region.")


def _info(location: Location) -> Any:
    try:
        return location.filesystem.get_file_info(location.path)
    except OSError as exc:
        raise _unreachable(location, exc) from None


def _is_directory(location: Location) -> bool:
    """Whether ``location`` is a directory (False when nothing is there)."""
    fs = _pyarrow_fs(f"Reading {location.uri}")
    return _info(location).type == fs.FileType.Directory


def list_names(location: Location) -> List[str]:
    """The names directly in the directory ``location`` ([] when it does not exist)."""
    fs = _pyarrow_fs(f"Reading {location.uri}")
    if not _is_directory(location):
        return []
    try:
        infos = location.filesystem.get_file_info(fs.FileSelector(location.path, allow_not_found=True))
    except OSError as exc:
        raise _unreachable(location, exc) from None
    return [posixpath.basename(info.path) for info in infos]


def cache_root() -> str:
    """Where this node keeps its copies of what lies in storage (``FASTTUNE_STORAGE_CACHE``,
    else a directory in the temporary directory)."""
    return os.environ.get("FASTTUNE_STORAGE_CACHE") or os.path.join(
        tempfile.gettempdir(), f"fasttune-storage-{os.getuid() if hasattr(os, 'getuid') else 'user'}")


def _cache_dir(kind: str, location: Location) -> str:
    import hashlib  # here, not at the top: ``import fasttune`` stays fast

    key = hashlib.sha256(f"{location.uri}\0{location.path}".encode()).hexdigest()[:24]
    return os.path.join(cache_root(), kind, key)


# Requests in flight at once for many small files: each costs a round trip, and pyarrow
# releases the GIL while it waits.
_PARALLEL_REQUESTS = 16


def in_parallel(function: Callable[[Any], Any], items: List[Any]) -> None:
    """``function(item)`` for each item, up to :data:`_PARALLEL_REQUESTS` at once; the first
    exception is raised once all are done."""
    if len(items) <= 1:
        for item in items:
            function(item)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(_PARALLEL_REQUESTS, len(items))) as pool:
        for future in [pool.submit(function, item) for item in items]:
            future.result()


def _download_files(location: Location, files: List[str], target: str) -> None:
    """Download the files ``files`` (paths relative to ``location``) into ``target``."""
    def download(relative: str) -> None:
        destination = os.path.join(target, *relative.split("/"))
        os.makedirs(os.path.dirname(destination), exist_ok=True)
        with location.filesystem.open_input_stream(posixpath.join(location.path, relative)) as src, \
                open(destination, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)

    try:
        in_parallel(download, files)
    except OSError as exc:
        raise _unreachable(location, exc) from None


def _walk(location: Location) -> List[Any]:
    fs = _pyarrow_fs(f"Reading {location.uri}")
    try:
        return location.filesystem.get_file_info(fs.FileSelector(location.path, recursive=True))
    except OSError as exc:
        raise _unreachable(location, exc) from None


def local_copy(location: Location) -> str:
    """A local copy of the experiment (or trial) directory at ``location`` without its
    checkpoints' files, refreshed from storage on each call; returns its path.

    Each ``checkpoint_*`` directory is copied as an empty directory, so that the readers
    see which checkpoints exist (they point them back into storage).

    The path stays the same from one call to the next (on this node, for every process):
    a symbolic link that a refresh points at the new copy in one step, so a reader that
    opens files through it (lazily, as a Result reads its ``progress.csv``) always finds
    a whole copy, the newest, whoever refreshes it meanwhile.  The copy before the newest
    is kept too (a reader may be half-way through resolving a path into it); older ones
    are removed (where the file system has no locks, only once ten minutes old).

    Raises:
        FileNotFoundError: nothing is at ``location``.
        TuneError: storage cannot be read (missing bucket, credentials, endpoint).
    """
    final = _cache_dir(_READER_COPIES, location)
    _download_copy(location, final, _publish_version)
    return final


# The folder of the readers' copies: a name of its own, as an older fasttune replaces a copy in
# its ``experiments`` folder by renaming a directory onto it, which a link would make fail.
_READER_COPIES = "experiment-copies"
# A version of a reader's copy: ``<key>.v-<token>``, beside the link ``<key>`` that names the newest.
_VERSION_MARK = ".v-"
# The lock file ``<key>.publish``: refreshes of one key switch its link and remove its old versions one at a time.
_PUBLISH_SUFFIX = ".publish"
# A new link before it replaces ``<key>``: ``<key>.link-<token>`` (one a killed refresh left is removed by the next).
_LINK_MARK = ".link-"
# Without locks, a refresh leaves the versions made this recently, whichever: another
# process's refresh may have made one and not yet switched the link to it.
_UNLOCKED_KEEP_S = 600.0


def _publish_version(incoming: str, final: str) -> None:
    """Make the finished copy ``incoming`` the newest version of the reader's copy ``final``
    (see :func:`local_copy`): renamed beside it, ``final`` (a link) switched to it by one
    rename, and versions older than the one it replaced removed (after the lock is let go:
    other refreshes do not wait for that)."""
    parent, key = os.path.split(final)
    token = os.urandom(6).hex()
    version = os.path.join(parent, key + _VERSION_MARK + token)
    gone: List[str] = []
    with _publishing(os.path.join(parent, key + _PUBLISH_SUFFIX)) as locked:
        os.utime(incoming)  # (its age, for an unlocked refresh's pruning: from now)
        os.rename(incoming, version)
        try:
            replaced = os.readlink(final)
        except OSError:  # none yet, or a directory (see _switch_link)
            replaced = None
        _switch_link(os.path.basename(version), final, key + _LINK_MARK + token)
        kept = {os.path.basename(version), replaced}
        young = time.time() - _UNLOCKED_KEEP_S
        for name in os.listdir(parent):
            if not name.startswith((key + _VERSION_MARK, key + _LINK_MARK)) or name in kept:
                continue
            path = os.path.join(parent, name)
            if not locked and _modified_since(path, young):
                continue
            gone.append(_gone_name(path, parent))
    for path in gone:
        _remove_gone(path)


def _switch_link(version: str, final: str, link_name: str) -> None:
    """Point the link ``final`` at its sibling ``version`` in one rename; where the file
    system has no links, the version is moved to ``final`` instead (as a directory, whole,
    but replaced the way refresh_local_copy replaces it)."""
    parent = os.path.dirname(final)
    link = os.path.join(parent, link_name)
    try:
        os.symlink(version, link)  # (relative: the cache may be moved or mounted elsewhere)
    except (OSError, NotImplementedError):
        if os.path.islink(final):
            os.remove(final)
        move_directory_into_place(os.path.join(parent, version), final, durable=False)
        return
    try:
        os.replace(link, final)
    except IsADirectoryError:
        # ``final`` is a directory (made where links once failed): that can only be moved
        # aside first, so for a moment there is no copy at ``final``.
        _remove_gone(_gone_name(final, parent))
        os.replace(link, final)


def _modified_since(path: str, moment: float) -> bool:
    try:
        return os.lstat(path).st_mtime >= moment
    except FileNotFoundError:
        return False


# Refreshes of this process, one at a time (as its threads' locks of one file may not
# exclude each other: NFS emulates flock with POSIX locks, which never stop their process).
_publish_lock = threading.Lock()


@contextlib.contextmanager
def _publishing(lock_path: str) -> Iterator[bool]:
    """Hold this process's refresh lock and the exclusive lock of ``lock_path`` (made if
    missing) while the block runs; it gets whether other processes are locked out (False
    where the file system has no locks: see _UNLOCKED_KEEP_S)."""
    fcntl = _fcntl()
    with _publish_lock:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600) if fcntl is not None else None
        try:
            locked = False
            if fd is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    locked = True
                except OSError:  # no locks on this file system after all
                    pass
            yield locked
        finally:
            if fd is not None:
                os.close(fd)  # the lock goes with it


def _gone_name(path: str, parent: str) -> Optional[str]:
    """Rename ``path`` (a directory or a link) to a ``.gone-`` name in ``parent``, which the
    next sweep removes if this process does not (see _remove_gone); None if it could not be
    (another process removed it first)."""
    gone = os.path.join(parent, f"{_GONE_PREFIX}{new_checkpoint_token()}")
    try:
        os.rename(path, gone)
    except OSError:
        return None
    return gone


def _remove_gone(path: Optional[str]) -> None:
    if path is None:
        return
    if os.path.islink(path):
        os.remove(path)
    else:
        shutil.rmtree(path, ignore_errors=True)


def refresh_local_copy(location: Location, final: str) -> None:
    """Make the local directory ``final`` a copy of the directory at ``location``, less the
    files of its checkpoints (see :func:`local_copy`); what was in ``final`` is replaced,
    whole: for a directory its caller alone reads and writes (the driver's staging copy;
    readers use :func:`local_copy`, which others may refresh meanwhile)."""
    _download_copy(location, final, lambda incoming, target: move_directory_into_place(incoming, target, durable=False))


def _download_copy(location: Location, final: str, put_in_place: Callable[[str, str], None]) -> None:
    """Download the directory at ``location``, less its checkpoints' files, into scratch
    beside ``final``, then hand it to ``put_in_place(incoming, final)``."""
    fs = _pyarrow_fs(f"Reading {location.uri}")
    if not _is_directory(location):
        bucket = location.path.split("/")[0]
        if bucket and bucket != location.path and _info(Location(location.filesystem, bucket, bucket)).type == \
                fs.FileType.NotFound:
            raise TuneError(
                f"Cannot read {location.uri}: its bucket (or top directory) {bucket!r} does not exist. "
                f"Check the bucket's name, the endpoint (endpoint_override, scheme) and the region.")
        raise FileNotFoundError(
            f"Experiment directory {location.uri} does not exist; pass <storage_path>/<experiment name> "
            f"of a finished or interrupted run (check the bucket and the prefix).")
    files: List[str] = []
    checkpoint_dirs = set()
    for info in _walk(location):
        relative = posixpath.relpath(info.path, location.path)
        parts = relative.split("/")
        inside = next((i for i, part in enumerate(parts) if _CHECKPOINT_DIR.match(part)), None)
        if inside is not None:
            checkpoint_dirs.add("/".join(parts[:inside + 1]))
        elif info.type == fs.FileType.File:
            files.append(relative)
    parent = os.path.dirname(final)
    os.makedirs(parent, exist_ok=True)
    # The copy is made in locked scratch beside it, which a reader killed meanwhile leaves
    # behind: the next copy made in this folder removes that (never a live reader's, nor
    # the copy itself, whatever the experiment is named).
    name = os.path.basename(final)
    _remove_dead_scratch_in(parent, [entry for entry in os.listdir(parent) if entry != name])
    with _locked_scratch(parent) as scratch:
        incoming = os.path.join(scratch, "files")
        os.mkdir(incoming)
        _download_files(location, files, incoming)
        for relative in checkpoint_dirs:
            os.makedirs(os.path.join(incoming, *relative.split("/")), exist_ok=True)
        put_in_place(incoming, final)  # (re-reading refreshes: the new copy replaces the old one)


def _files_below(location: Location) -> List[str]:
    """The paths of the files below the directory ``location``, relative to it; one
    listing request (two when it holds no file).

    Raises:
        FileNotFoundError: nothing is at ``location``.
    """
    fs = _pyarrow_fs(f"Reading {location.uri}")
    try:
        infos = location.filesystem.get_file_info(fs.FileSelector(location.path, recursive=True))
    except FileNotFoundError:
        raise FileNotFoundError(f"{location.uri} does not exist in storage.") from None
    except OSError as exc:
        raise _unreachable(location, exc) from None
    if not infos and not _is_directory(location):
        raise FileNotFoundError(f"{location.uri} does not exist in storage.")
    return [posixpath.relpath(info.path, location.path) for info in infos if info.type == fs.FileType.File]


def download_directory(location: Location, target: str) -> None:
    """Download every file below ``location`` into the local directory ``target``.

    Raises:
        FileNotFoundError: nothing is at ``location``.
    """
    files = _files_below(location)
    os.makedirs(target, exist_ok=True)
    _download_files(location, files, target)


def local_checkpoint(location: Location) -> str:
    """A local directory with the files of the checkpoint at ``location``: downloaded on the
    first call on this node, then reused (a checkpoint's files never change).

    Raises:
        FileNotFoundError: no checkpoint is at ``location``.
    """
    final = _cache_dir("checkpoints", location)
    if os.path.isdir(final):
        return final
    with _locked_scratch(os.path.dirname(final)) as scratch:
        incoming = os.path.join(scratch, "files")
        try:
            download_directory(location, incoming)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"Checkpoint {location.uri} does not exist in storage; it may have been deleted "
                f"(e.g. by CheckpointConfig.num_to_keep).") from None
        if not os.path.isdir(final):  # another reader on this node may have finished first
            # What was downloaded, before a trainable can change it: only an unchanged
            # copy is kept for the node (see keep_opened_checkpoint); without the record
            # (times that cannot be set, a full disk) it is not kept, and that is all.
            try:
                _write_manifest(final, _manifest(incoming, date_back=True))
            except OSError:
                _remove_manifest(final)
            move_directory_into_place(incoming, final, durable=False)
    return final


def forget_local_checkpoint(location: Location) -> None:
    """Drop this node's copy of the checkpoint at ``location`` (its files changed)."""
    final = _cache_dir("checkpoints", location)
    shutil.rmtree(final, ignore_errors=True)
    _remove_manifest(final)


def _manifest(directory: str, date_back: bool = False) -> List[List[Any]]:
    """``[relative path, size, mtime_ns, inode, ctime_ns]`` of each file and directory below
    ``directory`` (a directory's size is -1), sorted: what changes when anything below it is
    written, renamed or given back its old times (no one can set a ctime).
    ``date_back``: the files' times are set a second back first, so that a write within
    the file system's clock tick of the download still changes them."""
    import time  # here, not at the top: ``import fasttune`` stays fast

    earlier = time.time_ns() - 1_000_000_000
    entries = []
    for parent, dirs, files in os.walk(directory):
        for name in dirs:
            entries.append([os.path.relpath(os.path.join(parent, name), directory), -1, 0])
        for name in files:
            if date_back:
                os.utime(os.path.join(parent, name), ns=(earlier, earlier))
            info = os.lstat(os.path.join(parent, name))
            entries.append([os.path.relpath(os.path.join(parent, name), directory), info.st_size, info.st_mtime_ns,
                            info.st_ino, info.st_ctime_ns])
    entries.sort()
    return entries


def _manifest_path(final: str) -> str:
    return final + ".downloaded.json"


def _write_manifest(final: str, entries: List[List[Any]]) -> None:
    import json  # here, not at the top: ``import fasttune`` stays fast

    path = _manifest_path(final)
    tmp = f"{path}.{new_checkpoint_token()}.tmp"
    try:
        with open(tmp, "w") as f:
            json.dump(entries, f)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _remove_manifest(final: str) -> None:
    try:
        os.unlink(_manifest_path(final))
    except FileNotFoundError:
        pass


def _unchanged_since_download(final: str) -> bool:
    """Whether the downloaded directory ``final`` holds what its download wrote (False
    when no record of the download is there)."""
    import json  # here, not at the top: ``import fasttune`` stays fast

    try:
        with open(_manifest_path(final)) as f:
            recorded = json.load(f)
        return recorded == _manifest(final)
    except (OSError, ValueError):
        return False


# ---- this node's copies of the checkpoints its workers uploaded -------------------------
# A worker keeps the files of each checkpoint it uploads, so that the trial's next run
# segment on this node resumes from them without a request to storage.  A checkpoint's
# name can be written again (a retried trial rewrites the checkpoints it had not
# reported), so each upload has a token the driver sends back with the checkpoint to
# resume from; a kept copy is used only under its own token.  Each kept copy is a
# directory ``<trial key>.<checkpoint key>.<token>.<bytes>`` in ``cache_root()/checkpoints``,
# renamed into place whole: a name that is there is a whole copy of that upload.

#: This node's bound on the bytes of kept checkpoints (0: none are kept).
NODE_CACHE_BYTES_ENV = "FASTTUNE_NODE_CHECKPOINT_CACHE_BYTES"
_NODE_CACHE_DEFAULT_BYTES = 1 << 30
#: This node's bound on the number of kept checkpoints (0: none are kept).
NODE_CACHE_ENTRIES_ENV = "FASTTUNE_NODE_CHECKPOINT_CACHE_ENTRIES"
_NODE_CACHE_DEFAULT_ENTRIES = 2000
_KEPT_NAME = re.compile(r"^([0-9a-f]{24})\.([0-9a-f]{24})\.([0-9a-f]{1,64})\.(\d+)$")


class KeptCheckpoint(NamedTuple):
    """One checkpoint this node keeps: its directory, whose checkpoint, under which token."""

    path: str
    trial_key: str
    checkpoint_key: str
    token: str
    size: int


def node_cache_bytes() -> int:
    """How many bytes of uploaded checkpoints this node keeps (``FASTTUNE_NODE_CHECKPOINT_CACHE_BYTES``,
    default 1 GiB; 0 keeps none).

    Example:
        >>> saved = os.environ.pop(NODE_CACHE_BYTES_ENV, None)
        >>> node_cache_bytes() == 1 << 30
        True
        >>> os.environ[NODE_CACHE_BYTES_ENV] = "0"; node_cache_bytes()
        0
        >>> _ = os.environ.pop(NODE_CACHE_BYTES_ENV) if saved is None else os.environ.update({NODE_CACHE_BYTES_ENV: saved})
    """
    return _count_from_env(NODE_CACHE_BYTES_ENV, _NODE_CACHE_DEFAULT_BYTES)


def node_cache_entries() -> int:
    """How many uploaded checkpoints this node keeps at most (``FASTTUNE_NODE_CHECKPOINT_CACHE_ENTRIES``,
    default 2000; 0 keeps none): each report with a checkpoint lists them.

    Example:
        >>> saved = os.environ.pop(NODE_CACHE_ENTRIES_ENV, None)
        >>> node_cache_entries()
        2000
        >>> os.environ[NODE_CACHE_ENTRIES_ENV] = "10"; node_cache_entries()
        10
        >>> _ = os.environ.pop(NODE_CACHE_ENTRIES_ENV) if saved is None else os.environ.update({NODE_CACHE_ENTRIES_ENV: saved})
    """
    return _count_from_env(NODE_CACHE_ENTRIES_ENV, _NODE_CACHE_DEFAULT_ENTRIES)


def _count_from_env(name: str, default: int) -> int:
    """The count the environment variable ``name`` sets (negative: 0), else ``default``."""
    text = os.environ.get(name, "").strip()
    try:
        return max(0, int(text)) if text else default
    except ValueError:
        return default


def new_checkpoint_token() -> str:
    """A token naming one upload of a checkpoint (unique: the content of that upload)."""
    import uuid  # here, not at the top: ``import fasttune`` stays fast

    return uuid.uuid4().hex


def _key(location: Location) -> str:
    return os.path.basename(_cache_dir("", location))


def _kept_root() -> str:
    return os.path.join(cache_root(), "checkpoints")


def kept_checkpoints(trial: Optional[Location] = None) -> List[KeptCheckpoint]:
    """The checkpoints this node keeps (see :func:`keep_checkpoint`): all of them, or those
    of the trial directory ``trial``."""
    try:
        kept = _scan_kept_root()
    except FileNotFoundError:
        return []
    if trial is None:
        return kept
    trial_key = _key(trial)
    return [k for k in kept if k.trial_key == trial_key]


@contextlib.contextmanager
def node_cache_scratch(nbytes: int = 0) -> Iterator[Optional[str]]:
    """A new directory (empty but for its lock file) beside this node's kept checkpoints,
    to make a copy of ``nbytes`` in for :func:`keep_checkpoint` inside the ``with`` block
    (removed after it); None when it would not be kept (the bound is 0, or below
    ``nbytes``) or it cannot be made.

    Example:
        >>> saved = os.environ.get("FASTTUNE_STORAGE_CACHE")
        >>> os.environ["FASTTUNE_STORAGE_CACHE"] = tempfile.mkdtemp()
        >>> with node_cache_scratch() as made:
        ...     os.listdir(made), os.path.basename(made).startswith(".scratch-")
        (['.lock'], True)
        >>> os.path.exists(made)
        False
        >>> _ = os.environ.pop("FASTTUNE_STORAGE_CACHE") if saved is None else os.environ.update(FASTTUNE_STORAGE_CACHE=saved)
    """
    bound = node_cache_bytes()
    with contextlib.ExitStack() as stack:
        made = None
        if 0 < bound and nbytes <= bound and node_cache_entries() > 0:
            with contextlib.suppress(OSError):
                made = stack.enter_context(_locked_scratch(_kept_root()))
        yield made


# Scratch in this node's cache (copies being made, copies being removed).  A process
# killed meanwhile (SIGKILL, the OOM killer) leaves its scratch behind, and no age tells
# that from a slow copy still being made; so each scratch directory holds a lock file its
# process locks (flock) for the directory's whole life, and a sweep removes only scratch
# whose lock it can take: the kernel released it when that process died.  A file opened
# read-write, not the directory: NFSv4 refuses flock on a read-only descriptor.  A child
# forked without exec (DataLoader workers) shares the lock: a killed worker's scratch
# stays until they exit.  Only locked scratch carries _SCRATCH_PREFIX, and it gets that
# name once locked.  Before that, from before the directory exists until it is renamed,
# its process holds the lock of a guard file beside it (".unlocked-X.lock" for the
# directory ".unlocked-X"), so a sweep that takes a guard's lock knows the directory's
# maker died, and removes both.  Scratch that cannot be locked (a file system without
# locks: ".unlocked-X" without a guard) and that of fasttune versions without the lock
# (".incoming-", in this same folder; ".unlocked-" without a guard) are never swept.
_SCRATCH_PREFIX = ".scratch-"
_UNLOCKED_PREFIX = ".unlocked-"
_GUARD_SUFFIX = ".lock"
_GONE_PREFIX = ".gone-"
_LOCK_FILE = ".lock"
# This process's locked scratch and guards: NFS emulates flock with POSIX locks, which never
# stop the process holding them (and its closing any descriptor of the file releases them).
_own_scratch: set = set()
# A guard's making and marking as this process's, and a sweep's locking of a guard, are one
# step each for this process's threads: a sweep never takes a guard this process is locking.
_guards_lock = threading.Lock()
_GUARD_TRIES = 8


def _new_guards_lock() -> None:
    global _guards_lock, _publish_lock
    _guards_lock = threading.Lock()  # a child forked while another thread held it
    _publish_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_guards_lock)


@contextlib.contextmanager
def _locked_scratch(parent: str) -> Iterator[str]:
    """A new scratch directory in ``parent`` (empty but for its lock file), locked while
    the block runs and removed after it."""
    os.makedirs(parent, exist_ok=True)
    path, fd = _make_locked_directory(parent)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        if fd is not None:
            os.close(fd)  # the lock goes with it
            _own_scratch.discard(os.path.basename(path))


def _make_locked_directory(parent: str) -> "tuple[str, Optional[int]]":
    """A new directory in ``parent`` and a descriptor holding the exclusive lock of its
    lock file; None, and a name no sweep takes, where the file system has no locks."""
    fcntl = _fcntl()
    guard = _locked_guard(parent, fcntl) if fcntl is not None else None
    if guard is None:
        return tempfile.mkdtemp(prefix=_UNLOCKED_PREFIX, dir=parent), None
    guard_path, guard_fd = guard
    try:
        # Made under the guard's name less its suffix, so that a sweep removes it only
        # once the guard's lock is free: its maker died before locking it.
        path = guard_path[:-len(_GUARD_SUFFIX)]
        locked = os.path.join(parent, _SCRATCH_PREFIX + os.path.basename(path)[len(_UNLOCKED_PREFIX):])
        os.mkdir(path, 0o700)
        fd = None
        try:
            fd = os.open(os.path.join(path, _LOCK_FILE), os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                _own_scratch.add(os.path.basename(locked))
                os.rename(path, locked)
            except OSError:  # no locks on this file system after all: never swept
                _own_scratch.discard(os.path.basename(locked))
                os.close(fd)
                return path, None
            return locked, fd
        except BaseException:
            # Failed or interrupted on the way (a full disk, a Ctrl-C): once its guard goes,
            # no sweep would remove what is left, so nothing is.
            shutil.rmtree(path, ignore_errors=True)
            shutil.rmtree(locked, ignore_errors=True)
            _own_scratch.discard(os.path.basename(locked))
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
            raise
    finally:
        _release_guard(guard_path, guard_fd)


def _locked_guard(parent: str, fcntl: Any) -> "Optional[tuple[str, int]]":
    """A new guard file in ``parent`` (``.unlocked-X.lock``, with no ``.unlocked-X`` beside
    it) and a descriptor holding its exclusive lock; None where the file system has no locks."""
    for _ in range(_GUARD_TRIES):
        with _guards_lock:
            fd, path = tempfile.mkstemp(prefix=_UNLOCKED_PREFIX, suffix=_GUARD_SUFFIX, dir=parent)
            _own_scratch.add(os.path.basename(path))
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # a sweep took it before this process: it removes it
                pass
            except OSError:  # no locks on this file system
                _release_guard(path, fd)
                return None
            else:
                if _names_file(path, fd):
                    return path, fd
            # Swept before it was locked: the sweep removed (or removes) it; another name.
            _own_scratch.discard(os.path.basename(path))
            os.close(fd)
    return None  # a file system whose inodes do not compare (or sweeps without end): unguarded


def _release_guard(path: str, fd: int) -> None:
    """Remove a guard file this process made, then release its lock."""
    with contextlib.suppress(OSError):
        os.unlink(path)
    os.close(fd)
    _own_scratch.discard(os.path.basename(path))


def _names_file(path: str, fd: int) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (not removed, nor made again)."""
    try:
        named, opened = os.stat(path), os.fstat(fd)
    except FileNotFoundError:
        return False
    return (named.st_ino, named.st_dev) == (opened.st_ino, opened.st_dev)


def _fcntl() -> Any:
    try:
        import fcntl  # here, not at the top: ``import fasttune`` stays fast (and Windows has none)
    except ImportError:
        return None
    return fcntl


def remove_dead_scratch(names: Optional[List[str]] = None) -> int:
    """Remove the scratch that killed processes left in this node's cache: each locked
    scratch directory (``.scratch-*``) whose lock can be taken (its process died), each
    guard file (``.unlocked-*.lock``) whose lock can be taken with the directory it guarded
    (its process died before locking that), and what removals left half done (``.gone-*``:
    whoever removes it, it goes); never one a live process holds, nor scratch made without
    a lock (``.unlocked-*`` without a guard, and older fasttune's ``.incoming-*``), which no
    sweep can tell from a copy being made.  ``names``: the scratch names in the cache, when
    the caller has listed it.  Returns how many were removed.

    Example:
        >>> saved = os.environ.get("FASTTUNE_STORAGE_CACHE")
        >>> os.environ["FASTTUNE_STORAGE_CACHE"] = tempfile.mkdtemp()
        >>> os.makedirs(os.path.join(cache_root(), "checkpoints", ".scratch-left-by-a-dead-process"))
        >>> with node_cache_scratch() as made:
        ...     remove_dead_scratch(), os.path.isdir(made)
        (1, True)
        >>> _ = os.environ.pop("FASTTUNE_STORAGE_CACHE") if saved is None else os.environ.update(FASTTUNE_STORAGE_CACHE=saved)
    """
    return _remove_dead_scratch_in(_kept_root(), names)


def _remove_dead_scratch_in(root: str, names: Optional[List[str]] = None) -> int:
    """:func:`remove_dead_scratch` in the folder ``root``: the kept root, or a folder that
    :func:`refresh_local_copy` copies experiments into (``experiments``, a staging one)."""
    fcntl = _fcntl()
    if names is None:
        try:
            names = [name for name in os.listdir(root) if _is_sweepable(name)]
        except OSError:  # no cache yet, or it cannot be listed now
            return 0
    removed = 0
    for name in names:
        path = os.path.join(root, name)
        if not _is_sweepable(name):
            continue
        if name.startswith(_GONE_PREFIX):
            try:
                _remove_gone(path)
            except FileNotFoundError:  # (another sweep's)
                pass
            removed += 1
            continue
        if fcntl is None:
            continue
        if name.startswith(_UNLOCKED_PREFIX):
            if name.endswith(_GUARD_SUFFIX):  # (a directory without a guard is never swept)
                removed += _remove_if_guard_free(path, fcntl)
            continue
        if name in _own_scratch:
            continue
        lock_file = os.path.join(path, _LOCK_FILE)
        try:
            fd = os.open(lock_file, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:  # its process is removing it, or a removal was cut short
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
                removed += 1
            continue
        except OSError:  # cannot be opened now: left for a later sweep
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if not _names_file(lock_file, fd):  # removed and made again meanwhile
                raise FileNotFoundError(lock_file)
        except OSError:  # held: a copy is being made there (or no locks here: left alone)
            os.close(fd)
            continue
        try:
            shutil.rmtree(path, ignore_errors=True)  # locked meanwhile, so that no process takes it up
            removed += 1
        finally:
            os.close(fd)
    return removed


def _is_sweepable(name: str) -> bool:
    """Whether a sweep looks at the entry ``name`` of the folder it sweeps (see :func:`remove_dead_scratch`)."""
    return name.startswith((_SCRATCH_PREFIX, _GONE_PREFIX)) or (
        name.startswith(_UNLOCKED_PREFIX) and name.endswith(_GUARD_SUFFIX))


def _remove_if_guard_free(guard: str, fcntl: Any) -> int:
    """Remove the guard file ``guard`` and the directory it guarded if its lock can be
    taken (the process that made it died before it locked its directory); returns 1 if so."""
    with _guards_lock:
        if os.path.basename(guard) in _own_scratch:
            return 0
        try:
            fd = os.open(guard, os.O_RDWR | os.O_CLOEXEC)
        except OSError:  # gone: its directory was locked meanwhile (or another sweep took it)
            return 0
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if not _names_file(guard, fd):
                raise FileNotFoundError(guard)
        except OSError:  # held: its directory is being made and locked now
            os.close(fd)
            return 0
    try:
        # Removed before the guard, so that a sweep cut short leaves the guard to the next.
        shutil.rmtree(guard[:-len(_GUARD_SUFFIX)], ignore_errors=True)
        with contextlib.suppress(OSError):
            os.unlink(guard)
    finally:
        os.close(fd)
    return 1


def tree_bytes(directory: str) -> int:
    """The bytes of the files below ``directory``."""
    return sum(os.lstat(os.path.join(parent, name)).st_size
               for parent, _, names in os.walk(directory) for name in names)


def _discard(path: str) -> None:
    """Remove a kept copy: renamed first, so that no reader takes it for whole meanwhile."""
    _remove_gone(_gone_name(path, os.path.dirname(path)))


def keep_checkpoint(directory: str, location: Location, token: str) -> bool:
    """Keep the finished local directory ``directory`` (moved, not copied) as this node's
    copy of the checkpoint uploaded to ``location`` under ``token``.  It replaces the
    trial's copy kept before (one per trial), and the least recently used copies go
    while all of them hold more than :func:`node_cache_bytes`, or number more than
    :func:`node_cache_entries` (then down to nine tenths of it, so that a full cache
    is not sorted at each report).  False, and ``directory`` removed, when it is not
    kept: none are (a bound is 0), it is larger than the bound, or the disk is full (the
    upload is what counts, so that is no error).

    Copies of trials that end while no worker runs them (stopped while paused, or ended
    in error: the driver tells no worker) are not dropped at their end: the least
    recently used go first, so these go as the bounds require.

    Example:
        >>> import tempfile
        >>> saved = os.environ.get("FASTTUNE_STORAGE_CACHE")
        >>> os.environ["FASTTUNE_STORAGE_CACHE"] = tempfile.mkdtemp()
        >>> at = Location(None, "bucket/exp/trial_0/checkpoint_000001", "s3://bucket/exp/trial_0/checkpoint_000001")
        >>> with node_cache_scratch() as made:
        ...     os.mkdir(os.path.join(made, "files"))
        ...     _ = open(os.path.join(made, "files", "weights"), "w").write("w1")
        ...     keep_checkpoint(os.path.join(made, "files"), at, "a1")
        True
        >>> copy = open_kept_checkpoint(at, "a1")
        >>> open(os.path.join(copy, "weights")).read(), open_kept_checkpoint(at, "b2") is None
        ('w1', True)
        >>> _ = os.environ.pop("FASTTUNE_STORAGE_CACHE") if saved is None else os.environ.update(FASTTUNE_STORAGE_CACHE=saved)
    """
    bound, max_entries = node_cache_bytes(), node_cache_entries()
    try:
        size = tree_bytes(directory) if bound > 0 else 0
        if bound <= 0 or max_entries <= 0 or size > bound:
            shutil.rmtree(directory, ignore_errors=True)
            return False
        trial_key = _key(location.parent())
        name = f"{trial_key}.{_key(location)}.{token}.{size}"
        target = os.path.join(_kept_root(), name)
        os.makedirs(_kept_root(), exist_ok=True)
        try:
            os.rename(directory, target)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            _move_across_filesystems(directory, target)  # a cache root set apart
    except OSError:  # a full disk, most likely: the copy is not kept
        shutil.rmtree(directory, ignore_errors=True)
        return False
    try:
        os.utime(target)  # used now: a copy of a download or of another kept copy carries older times
    except OSError:  # (it is only evicted sooner)
        pass
    try:
        _bound_kept(trial_key, target, bound, max_entries)
    except OSError:  # the cache cannot be listed now: bounded at the next copy kept
        pass
    return True


def _move_across_filesystems(directory: str, target: str) -> None:
    """Move ``directory`` to ``target`` on another filesystem: copied into scratch beside
    ``target`` first, then renamed, so that ``target`` never names a partial copy."""
    with _locked_scratch(os.path.dirname(target)) as scratch:
        moved = os.path.join(scratch, "files")
        shutil.move(directory, moved)
        os.rename(moved, target)


def _bound_kept(trial_key: str, newest: str, bound: int, max_entries: int) -> None:
    """Drop the copies of trial ``trial_key`` other than ``newest`` (its resume needs that
    one), then the least recently used copies while all hold more than ``bound`` bytes or
    number more than ``max_entries`` (then down to nine tenths of that number); and the
    scratch killed processes left (:func:`remove_dead_scratch`), which the same listing
    shows, so that it never outlives the next copy kept on this node (this process's own,
    the caller's among them, is left alone)."""
    scratch: List[str] = []
    kept = _scan_kept_root(scratch)
    if scratch:
        remove_dead_scratch(scratch)
    for other in kept:
        if other.trial_key == trial_key and other.path != newest:
            _discard(other.path)
    kept = [k for k in kept if k.trial_key != trial_key or k.path == newest]
    total = sum(k.size for k in kept)
    if total <= bound and len(kept) <= max_entries:
        return
    count_goal = max_entries - max_entries // 10 if len(kept) > max_entries else max_entries

    def last_used(entry: KeptCheckpoint) -> float:
        try:
            return os.stat(entry.path).st_mtime
        except OSError:  # removed meanwhile by another worker of this node
            return 0.0

    count = len(kept)
    for entry in sorted((k for k in kept if k.path != newest), key=last_used):
        if total <= bound and count <= count_goal:
            break
        _discard(entry.path)
        total -= entry.size
        count -= 1


def _scan_kept_root(scratch: Optional[List[str]] = None) -> List[KeptCheckpoint]:
    """The kept copies in this node's cache (one listing, no stat); the names of the
    scratch there go into ``scratch`` when given."""
    kept = []
    match = _KEPT_NAME.match
    with os.scandir(_kept_root()) as entries:
        for entry in entries:
            found = match(entry.name)
            if found:
                kept.append(KeptCheckpoint(entry.path, found[1], found[2], found[3], int(found[4])))
            elif scratch is not None and _is_sweepable(entry.name):
                scratch.append(entry.name)
    return kept


def _kept(location: Location, token: str) -> Optional[str]:
    prefix = f"{_key(location.parent())}.{_key(location)}.{token}."
    return next((k.path for k in kept_checkpoints() if os.path.basename(k.path).startswith(prefix)), None)


def open_kept_checkpoint(location: Location, token: Optional[str]) -> Optional[str]:
    """Make :func:`local_checkpoint` of ``location`` answer with this node's kept copy of
    the upload ``token``, without a request to storage; returns that directory, or None
    when this node keeps no copy of that upload (or ``token`` is None): then the first
    open downloads the checkpoint, as whatever this node had under its name may be stale.

    The directory is a copy of the kept one, not links to it: the trainable may write
    into the directory it restored from, and the kept copy must stay what storage holds;
    :func:`forget_local_checkpoint` removes it.
    """
    final = _cache_dir("checkpoints", location)
    forget_local_checkpoint(location)
    kept = _kept(location, token) if token else None
    if kept is None:
        return None
    try:
        with _locked_scratch(os.path.dirname(final)) as scratch:
            incoming = os.path.join(scratch, "files")
            try:
                shutil.copytree(kept, incoming)
            except (shutil.Error, OSError):
                if not os.path.isdir(kept):
                    return None  # evicted meanwhile
                raise
            os.utime(kept)  # recently used: evicted last
            move_directory_into_place(incoming, final, durable=False)
    except OSError:  # a full disk: the trainable downloads it
        return None
    return final


def keep_copy_of_kept(source: Location, source_token: Optional[str], target: Location, token: str) -> bool:
    """Keep this node's copy of the upload ``source_token`` of ``source`` (if it keeps one)
    as its copy of ``target`` under ``token`` too (PBT's exploit copied it there inside
    storage): hard links, so it costs no copy of the bytes (a kept copy is never handed to
    a trainable, see :func:`open_kept_checkpoint`).  False when none is kept."""
    kept = _kept(source, source_token) if source_token else None
    if kept is None:
        return False
    with node_cache_scratch() as made:
        if made is None:
            return False
        copy = os.path.join(made, "files")
        try:
            shutil.copytree(kept, copy, copy_function=os.link)
        except (shutil.Error, OSError):  # evicted meanwhile, or no room
            return False
        return keep_checkpoint(copy, target, token)


def keep_opened_checkpoint(location: Location, token: str) -> bool:
    """Keep this node's downloaded copy of the checkpoint at ``location`` (see
    :func:`local_checkpoint`; the upload ``token`` is what storage held when it was
    opened) as a kept copy, instead of removing it; False, and the copy removed, when it
    was not opened, or changed since its download (the trainable wrote into it)."""
    final = _cache_dir("checkpoints", location)
    if not os.path.isdir(final):
        return False
    if not _unchanged_since_download(final):
        forget_local_checkpoint(location)
        return False
    _remove_manifest(final)
    try:
        with _locked_scratch(_kept_root()) as scratch:
            moved = os.path.join(scratch, "files")
            os.rename(final, moved)
            return keep_checkpoint(moved, location, token)
    except OSError:
        shutil.rmtree(final, ignore_errors=True)
        return False


def forget_kept_checkpoints(trial_location: Location) -> None:
    """Remove this node's kept copies of the checkpoints of the trial at ``trial_location``
    (it ended)."""
    for kept in kept_checkpoints(trial_location):
        _discard(kept.path)


# ---- writing ----------------------------------------------------------------------------
def unwritable(location: Location, exc: BaseException) -> TuneError:
    return TuneError(
        f"Cannot write to {location.uri}: {exc}. Check that the bucket exists, that the credentials "
        f"(e.g. AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or those of the storage_filesystem given) "
        f"may write to it, and the endpoint (endpoint_override, scheme) and region.")


def upload_directory(source: str, location: Location) -> None:
    """Upload the local directory ``source`` to ``location``, one new object per file.

    What was at ``location`` is not cleared first (a request per checkpoint): the runner
    deletes a trial's unreported checkpoints before a restart can write one again.

    Raises:
        FileNotFoundError: ``source`` is no directory (removed while in use, most likely).
    """
    if not os.path.isdir(source):  # os.walk of it finds nothing: it would upload an empty checkpoint
        raise FileNotFoundError(errno.ENOENT, f"Cannot upload to {location.uri}: the local directory "
                                f"{source} is gone (removed while it was in use)", source)
    files = [os.path.join(directory, name) for directory, _, names in os.walk(source) for name in names]
    try:
        if not files:
            location.filesystem.create_dir(location.path, recursive=True)  # an empty checkpoint still exists
        in_parallel(lambda path: upload_file(path, location.join(*os.path.relpath(path, source).split(os.sep))),
                    files)
    except OSError as exc:
        raise unwritable(location, exc) from None


def _output_stream(location: Location) -> Any:
    """A new file at ``location``, its parent directories made first where the filesystem
    has real ones and they are missing; on object stores (S3, GCS) the first try succeeds,
    with no extra request."""
    try:
        return location.filesystem.open_output_stream(location.path)
    except FileNotFoundError:
        location.filesystem.create_dir(posixpath.dirname(location.path), recursive=True)
        return location.filesystem.open_output_stream(location.path)


def upload_file(source: str, location: Location) -> None:
    """Upload the local file ``source`` to ``location`` (one new object, replacing any).

    Raises:
        OSError: as pyarrow raised it (the caller names what it was writing).
    """
    with open(source, "rb") as src, _output_stream(location) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)


def copy_directory(source: Location, target: Location) -> None:
    """Copy every file below ``source`` to ``target`` inside storage (a server-side copy
    where the filesystem offers one, as S3 does); like :func:`upload_directory`, what was
    at ``target`` is not cleared first.

    Raises:
        FileNotFoundError: nothing is at ``source``.
    """
    files = _files_below(source)

    def copy(relative: str) -> None:
        origin, destination = posixpath.join(source.path, relative), posixpath.join(target.path, relative)
        try:
            target.filesystem.copy_file(origin, destination)
        except FileNotFoundError:  # a filesystem with real directories: make them, once
            target.filesystem.create_dir(posixpath.dirname(destination), recursive=True)
            target.filesystem.copy_file(origin, destination)

    try:
        if not files:
            target.filesystem.create_dir(target.path, recursive=True)  # an empty checkpoint still exists
        in_parallel(copy, files)
    except OSError as exc:
        raise unwritable(target, exc) from None


def delete_directory(location: Location) -> None:
    """Delete the directory ``location`` and everything below it (nothing there: no-op)."""
    try:
        location.filesystem.delete_dir_contents(location.path, missing_dir_ok=True)
        location.filesystem.delete_dir(location.path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        if _info(location).type != _pyarrow_fs("").FileType.NotFound:
            raise unwritable(location, exc) from None


def node_scratch(location: Location) -> str:
    """This node's scratch directory for the trials of the experiment at ``location``
    (their working directories; apart from the driver's staging copy)."""
    return _cache_dir("scratch", location)


def staging_path(location: Location) -> str:
    """This node's local directory for the experiment at ``location``: the driver writes
    the experiment's files here first and uploads them (see :class:`ExperimentStorage`)."""
    return os.path.join(_cache_dir("staging", location), posixpath.basename(location.path))


class ExperimentStorage:
    """An experiment kept in storage: its :class:`Location` and the driver's local staging
    copy (``staging``), whose layout is the same.  A path below ``staging`` names the file
    or directory in storage at the same relative place.

    Picklable, so workers get it too: they write checkpoints straight to storage.

    Example:
        >>> at = Location(None, "bucket/exp", "s3://bucket/exp?scheme=http")
        >>> kept = ExperimentStorage(at, "/tmp/staging/exp")
        >>> kept.location_of("/tmp/staging/exp/trial_0/checkpoint_000002").uri
        's3://bucket/exp/trial_0/checkpoint_000002?scheme=http'
        >>> kept.relative("/tmp/staging/exp/trial_0")
        'trial_0'
    """

    __slots__ = ("location", "staging", "sync_artifacts", "sync_artifacts_on_checkpoint")

    def __init__(self, location: Location, staging: str, sync_artifacts: bool = False,
                 sync_artifacts_on_checkpoint: bool = True) -> None:
        self.location = location
        self.staging = staging
        # SyncConfig's: workers also upload the other files a trial writes in its directory.
        self.sync_artifacts = sync_artifacts
        self.sync_artifacts_on_checkpoint = sync_artifacts_on_checkpoint

    def relative(self, local_path: str) -> str:
        """``local_path`` (below ``staging``) relative to it, with ``/`` separators.

        Raises:
            ValueError: ``local_path`` is not below ``staging``.
        """
        relative = os.path.relpath(local_path, self.staging)
        if relative == os.curdir:
            return ""
        if relative == os.pardir or relative.startswith(os.pardir + os.sep):
            raise ValueError(f"{local_path} is not in the experiment's staging directory {self.staging}.")
        return relative.replace(os.sep, "/")

    def location_of(self, local_path: str) -> Location:
        """Where the file or directory ``local_path`` (below ``staging``) lies in storage."""
        relative = self.relative(local_path)
        return self.location.join(*relative.split("/")) if relative else self.location

    def __getstate__(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state: dict) -> None:
        for name in self.__slots__:
            setattr(self, name, state[name])

    def __repr__(self) -> str:
        return f"ExperimentStorage({self.location.uri!r}, staging={self.staging!r})"
