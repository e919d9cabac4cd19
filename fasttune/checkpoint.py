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

from fasttune._atomic import atomic_write

__all__ = ["Checkpoint", "METADATA_FILE"]

#: Hidden file inside the checkpoint directory that holds its metadata.
METADATA_FILE = ".metadata.json"

PathType = Union[str, "os.PathLike[str]"]


class Checkpoint:
    """A checkpoint stored as a local directory.

    The checkpoint never copies on construction: it refers to the directory
    it was given. Two checkpoints are equal when they refer to the same
    (absolute) path. Metadata is a JSON-serialisable dict kept in a hidden
    ``.metadata.json`` file inside the directory.

    Args:
        path: An existing directory.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        NotADirectoryError: ``path`` is a file, not a directory.

    Example:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> Checkpoint(d) == Checkpoint.from_directory(d)
        True
        >>> Checkpoint.from_dict(Checkpoint(d).to_dict()).path == d
        True
    """

    __slots__ = ("_path",)

    def __init__(self, path: PathType) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(
                f"Checkpoint(path) needs a directory path (str or path-like), got "
                f"{type(path).__name__} {path!r}."
            )
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
        return checkpoint

    @classmethod
    def _written_by_worker(cls, path: str) -> "Checkpoint":
        """A checkpoint a worker reported as persisted: no file-system checks (the
        driver records thousands of these per second)."""
        checkpoint = cls.__new__(cls)
        checkpoint._path = path if os.path.isabs(path) else os.path.abspath(path)
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
        """Absolute path of the checkpoint directory."""
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
        self._check_exists()
        if path is None:
            target = tempfile.mkdtemp(prefix="fasttune_checkpoint_")
        else:
            target = os.path.abspath(os.path.expanduser(os.fsdecode(os.fspath(path))))
        if os.path.realpath(target) == os.path.realpath(self._path):
            return target
        real_src = os.path.realpath(self._path) + os.sep
        if os.path.realpath(target).startswith(real_src):
            raise ValueError(
                f"Cannot copy checkpoint {self._path!r} into {target!r}, which lies "
                f"inside it; choose a directory outside the checkpoint."
            )
        shutil.copytree(self._path, target, dirs_exist_ok=True)
        return target

    @contextlib.contextmanager
    def as_directory(self) -> Iterator[str]:
        """Context manager yielding a local directory with the checkpoint's files.

        For a local checkpoint this is the checkpoint's own directory (no copy),
        so treat it as read-only.

        Example:
            >>> import tempfile
            >>> d = tempfile.mkdtemp()
            >>> with Checkpoint(d).as_directory() as p:
            ...     p == d
            True
        """
        self._check_exists()
        yield self._path

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
        self._check_exists()
        meta_path = self._metadata_path()
        if not os.path.exists(meta_path):
            return {}
        with open(meta_path, "r", encoding="utf-8") as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as exc:
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
        self._check_exists()
        try:
            text = json.dumps(dict(metadata), allow_nan=True)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"Checkpoint metadata must be JSON-serialisable (str keys; str, "
                f"number, bool, None, list or dict values): {exc}."
            ) from None
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
        return self._path == other._path

    def __hash__(self) -> int:
        return hash(("Checkpoint", self._path))

    def __getstate__(self) -> Dict[str, str]:
        return {"path": self._path}

    def __setstate__(self, state: Dict[str, str]) -> None:
        # Unpickling does not re-check the directory: results may be loaded
        # on a machine where the files have not been synced yet.
        self._path = state["path"]
