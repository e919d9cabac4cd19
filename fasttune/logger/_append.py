"""Appending a record to an unbuffered file: all of its bytes, or none and an error.

An unbuffered ``write`` may store only part of what it was given (the disk filled up,
the file reached ``RLIMIT_FSIZE``); ignoring its return value leaves a torn record in
the middle of the file once later writes succeed.  :func:`append_whole` writes the
rest until the system refuses, then cuts the file back to where the record began.

Example:
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "rows")
    >>> with open(path, "ab", buffering=0) as f:
    ...     append_whole(f, b"one\\n", path)
    ...     append_whole(f, b"two\\n", path)
    >>> open(path, "rb").read()
    b'one\\ntwo\\n'
"""
from __future__ import annotations

import errno
from typing import Any

__all__ = ["append_whole"]


def append_whole(handle: Any, data: bytes, path: str) -> None:
    """Append every byte of ``data`` to ``handle`` (a file opened ``"ab", buffering=0``).

    Raises:
        OSError: with the errno of the write that failed (ENOSPC, EDQUOT, EFBIG...) and
            ``path`` as its file name.  The file is first cut back to its length before
            the call, so it holds no part of ``data`` (unless that cut fails too, when
            the torn tail is left for readers to ignore: it ends without a newline).
    """
    view = memoryview(data)
    total = len(view)
    done = 0
    try:
        done = handle.write(view) or 0
        while done < total:  # a short write: the next one stores more or says why not
            written = handle.write(view[done:])
            if not written:
                raise OSError(errno.EIO, "the file system stored nothing of a write")
            done += written
    except OSError as exc:
        if done:
            try:
                handle.truncate(handle.tell() - done)
            except OSError:
                pass  # the torn tail stays; readers stop at a line without its newline
        raise OSError(exc.errno, exc.strerror, path) from exc
