"""``Checkpoint``: a handle on a directory of files saved by a trial.

Example:
    >>> import os, tempfile
    >>> from fasttune.checkpoint import Checkpoint
    >>> d = tempfile.mkdtemp()
    >>> with open(os.path.join(d, "model.txt"), "w") as f:
    ...     _ = f.write("weights")
    >>> ckpt = Checkpoint.from_directory(d)
    >>> ckpt.set_metadata({"epoch": 3})
    >>> ckpt.get_metadata()
    {'epoch': 3}
    >>> with ckpt.as_directory() as path:
    ...     open(os.path.join(path, "model.txt")).read()
    'weights'
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from typing import Any, Dict, Iterator, Optional, Union

from fasttune import _storage as storage
from fasttune._atomic import atomic_write
from fasttune._json_nesting import MAX_JSON_NESTING, nested_deeper_than, parse_json

__all__ = ["Checkpoint", "METADATA_FILE", "checkpoint_in_storage"]

#: Hidden file inside the checkpoint directory that holds its metadata.
METADATA_FILE = ".metadata.json"

PathType = Union[str, "os.PathLike[str]"]


class Checkpoint:
    """A checkpoint: a local directory, or a directory in storage.

    The checkpoint never copies on construction: it refers to the directory
    it was given. Two checkpoints are equal when they refer to the same
    (absolute) path. Metadata is a JSON-serialisable dict kept in a hidden
    ``.metadata.json`` file inside the directory.

    A checkpoint in storage (``path`` a URI such as ``s3://bucket/exp/trial/checkpoint_000003``,
    or a path on the ``pyarrow.fs`` ``filesystem`` given) is downloaded when it is opened
    (:meth:`as_directory`, :meth:`to_directory`, :meth:`get_metadata`), once per node.

    Args:
        path: An existing directory, or a location in storage.
        filesystem: The ``pyarrow.fs.FileSystem`` that ``path`` is on (None: a local
            directory, or the filesystem the URI names).

    Raises:
        FileNotFoundError: the local ``path`` does not exist.
        NotADirectoryError: the local ``path`` is a file, not a directory.

    Example:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> Checkpoint(d) == Checkpoint.from_directory(d)
        True
        >>> Checkpoint.from_dict(Checkpoint(d).to_dict()).path == d
        True
    """

    __slots__ = ("_path", "_storage")

    def __init__(self, path: PathType, filesystem: Any = None) -> None:
        self._storage: Optional[storage.Location] = None
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(
                f"Checkpoint(path) needs a directory path (str or path-like), got "
                f"{type(path).__name__} {path!r}."
            )
        location = storage.resolve(path, filesystem)
        if location is not None:
            self._path, self._storage = location.uri, location
            return
        path = os.path.abspath(os.path.expanduser(os.fsdecode(os.fspath(path))))
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"Checkpoint directory {path!r} does not exist; save the checkpoint "
                f"files into a directory first, then pass that directory."
            )
        if not os.path.isdir(path):
            raise NotADirectoryError(
                f"Checkpoint path {path!r} is a file; a Checkpoint must be a "
                f"directory. Put the file into a directory and pass the directory."
            )
        self._path = path

    @classmethod
    def _at(cls, absolute_path: str) -> "Checkpoint":
        """A checkpoint known to be at ``absolute_path`` (a restore makes many)."""
        checkpoint = cls.__new__(cls)
        checkpoint._path = absolute_path
        checkpoint._storage = None
        return checkpoint

    @classmethod
    def _written_by_worker(cls, path: str) -> "Checkpoint":
        """A checkpoint a worker reported as persisted: no file-system checks (the
        driver records thousands of these per second)."""
        checkpoint = cls.__new__(cls)
        checkpoint._path = path if os.path.isabs(path) else os.path.abspath(path)
        checkpoint._storage = None
        return checkpoint

    # -- construction -----------------------------------------------------------

    @classmethod
    def from_directory(cls, path: PathType) -> "Checkpoint":
        """Create a checkpoint that refers to the existing directory ``path``.

        Example:
            >>> import tempfile
            >>> d = tempfile.mkdtemp()
            >>> Checkpoint.from_directory(d).path == d
            True
        """
        return cls(path)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Checkpoint":
        """Rebuild a checkpoint from :meth:`to_dict`'s output.

        Example:
            >>> import tempfile
            >>> d = tempfile.mkdtemp()
            >>> Checkpoint.from_dict({"path": d}) == Checkpoint(d)
            True
        """
        if not isinstance(data, Mapping) or "path" not in data:
            raise ValueError(
                f"Checkpoint.from_dict expects a dict like {{'path': '/some/dir'}} as "
                f"made by Checkpoint.to_dict(), got {data!r}."
            )
        return cls(data["path"])

    def to_dict(self) -> Dict[str, str]:
        """Return ``{"path": ...}``: plain data, safe for msgpack or JSON.

        Example:
            >>> import tempfile
            >>> d = tempfile.mkdtemp()
            >>> Checkpoint(d).to_dict() == {"path": d}
            True
        """
        return {"path": self._path}

    # -- access -------------------------------------------------------------------

    @property
    def path(self) -> str:
        """Absolute path of the checkpoint directory; for a checkpoint in storage, its URI
        (or its path on :attr:`filesystem`)."""
        return self._path

    @property
    def filesystem(self) -> Any:
        """The ``pyarrow.fs.FileSystem`` of a checkpoint in storage; None for a local one."""
        return self._storage.filesystem if self._storage is not None else None

    def _local_directory(self) -> str:
        """A local directory with the checkpoint's files: its own, or this node's copy of
        the one in storage."""
        if self._storage is not None:
            return storage.local_checkpoint(self._storage)
        self._check_exists()
        return self._path

    def __fspath__(self) -> str:
        return self._path

    def _check_exists(self) -> None:
        if not os.path.isdir(self._path):
            raise FileNotFoundError(
                f"Checkpoint directory {self._path!r} no longer exists; it may have "
                f"been deleted (e.g. by CheckpointConfig.num_to_keep)."
            )

    def to_directory(self, path: Optional[PathType] = None) -> str:
        """Copy the checkpoint's files into ``path`` and return that path.

        Args:
            path: Target directory; created if missing, existing files with the
                same names are overwritten. ``None`` copies into a fresh
                temporary directory.

        Returns:
            The absolute target directory.

        Example:
            >>> import os, tempfile
            >>> src = tempfile.mkdtemp()
            >>> open(os.path.join(src, "w.bin"), "wb").close()
            >>> out = Checkpoint(src).to_directory()
            >>> os.listdir(out)
            ['w.bin']
        """
        source = self._local_directory()
        if path is None:
            target = tempfile.mkdtemp(prefix="fasttune_checkpoint_")
        else:
            target = os.path.abspath(os.path.expanduser(os.fsdecode(os.fspath(path))))
        if os.path.realpath(target) == os.path.realpath(source):
            return target
        real_src = os.path.realpath(source) + os.sep
        if os.path.realpath(target).startswith(real_src):
            raise ValueError(
                f"Cannot copy checkpoint {self._path!r} into {target!r}, which lies "
                f"inside it; choose a directory outside the checkpoint."
            )
        shutil.copytree(source, target, dirs_exist_ok=True)
        return target

    @contextlib.contextmanager
    def as_directory(self) -> Iterator[str]:
        """Context manager yielding a local directory with the checkpoint's files.

        For a local checkpoint this is the checkpoint's own directory (no copy),
        so treat it as read-only. A checkpoint in storage is downloaded into this
        node's cache the first time, and that copy is reused afterwards.

        Example:
            >>> import tempfile
            >>> d = tempfile.mkdtemp()
            >>> with Checkpoint(d).as_directory() as p:
            ...     p == d
            True
        """
        yield self._local_directory()

    # -- metadata -----------------------------------------------------------------

    def _metadata_path(self) -> str:
        return os.path.join(self._path, METADATA_FILE)

    def get_metadata(self) -> Dict[str, Any]:
        """Return the checkpoint's metadata dict (``{}`` when none was set).

        Example:
            >>> import tempfile
            >>> Checkpoint(tempfile.mkdtemp()).get_metadata()
            {}
        """
        if self._storage is not None:
            # Read from storage itself: another process may have set it since this node's copy.
            location = self._storage.join(METADATA_FILE)
            meta_path = location.uri
            try:
                with location.filesystem.open_input_stream(location.path) as f:
                    text = f.read().decode("utf-8")
            except FileNotFoundError:
                return {}
        else:
            meta_path = os.path.join(self._local_directory(), METADATA_FILE)
            if not os.path.exists(meta_path):
                return {}
            with open(meta_path, "r", encoding="utf-8") as f:
                text = f.read()
        try:
            data = parse_json(text)
        except ValueError as exc:
            raise ValueError(
                f"Checkpoint metadata file {meta_path!r} is not valid JSON ({exc}); "
                f"fix or delete it, then call set_metadata() again."
            ) from None
        if not isinstance(data, dict):
            raise ValueError(
                f"Checkpoint metadata file {meta_path!r} holds a "
                f"{type(data).__name__}, not a JSON object; fix or delete it."
            )
        return data

    def set_metadata(self, metadata: Dict[str, Any]) -> None:
        """Replace the checkpoint's metadata with ``metadata`` (a JSON-able dict).

        Example:
            >>> import tempfile
            >>> c = Checkpoint(tempfile.mkdtemp())
            >>> c.set_metadata({"step": 1})
            >>> c.get_metadata()
            {'step': 1}
        """
        if not isinstance(metadata, Mapping):
            raise TypeError(
                f"Checkpoint metadata must be a dict, got {type(metadata).__name__} "
                f"{metadata!r}."
            )
        if self._storage is None:
            self._check_exists()
        if nested_deeper_than(dict(metadata), MAX_JSON_NESTING):  # get_metadata would refuse to read it
            raise ValueError(f"Checkpoint metadata may nest at most {MAX_JSON_NESTING} levels deep.")
        try:
            text = json.dumps(dict(metadata), allow_nan=True)
        except (TypeError, ValueError, RecursionError) as exc:
            raise TypeError(
                f"Checkpoint metadata must be JSON-serialisable (str keys; str, "
                f"number, bool, None, list or dict values): {exc}."
            ) from None
        if self._storage is not None:
            location = self._storage.join(METADATA_FILE)
            with location.filesystem.open_output_stream(location.path) as f:
                f.write(text.encode("utf-8"))
            storage.forget_local_checkpoint(self._storage)  # this node's copy is stale now
            return
        # Mode 0600 as the file has always had (it was made with mkstemp).  Not fsynced,
        # as the checkpoint's other files are not.
        atomic_write(self._metadata_path(), text, durable=False, mode=0o600)

    def update_metadata(self, metadata: Dict[str, Any]) -> None:
        """Merge ``metadata`` into the existing metadata (top-level keys).

        Example:
            >>> import tempfile
            >>> c = Checkpoint(tempfile.mkdtemp())
            >>> c.set_metadata({"a": 1})
            >>> c.update_metadata({"b": 2})
            >>> c.get_metadata() == {"a": 1, "b": 2}
            True
        """
        if not isinstance(metadata, Mapping):
            raise TypeError(
                f"Checkpoint metadata must be a dict, got {type(metadata).__name__} "
                f"{metadata!r}."
            )
        merged = self.get_metadata()
        merged.update(metadata)
        self.set_metadata(merged)

    # -- dunder -------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"Checkpoint(path={self._path!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Checkpoint):
            return NotImplemented
        return self._path == other._path and self._storage == other._storage

    def __hash__(self) -> int:
        return hash(("Checkpoint", self._path))

    def __getstate__(self) -> Dict[str, Any]:
        if self._storage is not None:
            return {"path": self._path, "storage": self._storage}
        return {"path": self._path}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        # Unpickling does not re-check the directory: results may be loaded
        # on a machine where the files have not been synced yet.
        self._path = state["path"]
        self._storage = state.get("storage")


def checkpoint_in_storage(checkpoint: Checkpoint, local_root: str, location: "storage.Location") -> Checkpoint:
    """The checkpoint in storage that ``checkpoint``, in ``local_root`` (the local copy of
    the directory at ``location``), stands for; ``checkpoint`` itself when it lies elsewhere.

    Example:
        >>> import os, tempfile
        >>> root = tempfile.mkdtemp()
        >>> os.makedirs(os.path.join(root, "t0", "checkpoint_000001"))
        >>> local = Checkpoint(os.path.join(root, "t0", "checkpoint_000001"))
        >>> at = storage.Location(None, "bucket/exp", "s3://bucket/exp?scheme=http")
        >>> checkpoint_in_storage(local, root, at).path
        's3://bucket/exp/t0/checkpoint_000001?scheme=http'
    """
    relative = os.path.relpath(checkpoint.path, local_root)
    if relative.startswith(os.pardir) or os.path.isabs(relative) or checkpoint.filesystem is not None:
        return checkpoint
    stored = Checkpoint.__new__(Checkpoint)
    stored._storage = location.join(*relative.split(os.sep))
    stored._path = stored._storage.uri
    return stored
