"""A trial's printed output, copied into files of its directory (``RunConfig(log_to_file=...)``).

While a trial's run segment goes on in a worker, ``sys.stdout`` and ``sys.stderr`` are
tees: what is written goes on to the stream it went to before (which Ray shows as it
shows any worker's output) and into the trial's file.  The swap is process-wide, as in
Ray Tune: a worker runs one trial at a time, so what any thread of the process prints
meanwhile is that trial's.  The files are appended to, so a trial paused and resumed, or
restarted after a failure, keeps what it printed before; they are line-buffered, so
what a trial printed is in the file even if its process dies.

For an experiment kept in storage (S3, ...), the trial's directory on the worker's node is
scratch: the files in it are brought from storage when a run segment starts and sent back
whole when it ends (:class:`StoredTrialOutput`).

>>> import os, tempfile
>>> directory = tempfile.mkdtemp()
>>> with TrialOutput(directory, "stdout", "stderr"):
...     print("to the console and the file")
to the console and the file
>>> open(os.path.join(directory, "stdout")).read()
'to the console and the file\\n'
"""
from __future__ import annotations

import os
import shutil
import sys
from typing import Any, List, Optional, TextIO, Tuple

from fasttune import _storage as storage


def log_file_paths(directory: str, stdout_name: Optional[str],
                   stderr_name: Optional[str]) -> Tuple[Optional[str], Optional[str]]:
    """Where the two streams go: a relative name is inside ``directory``, an absolute one
    is used as it is (None: that stream is not captured).

    >>> log_file_paths("/trial", "stdout", "/var/log/err.txt")
    ('/trial/stdout', '/var/log/err.txt')
    """
    return tuple(None if name is None else os.path.join(directory, name)  # type: ignore[return-value]
                 for name in (stdout_name, stderr_name))


class _Tee:
    """A text stream that writes to ``stream`` and to ``file``; everything else a
    program may ask of a stream (``fileno``, ``isatty``, ``encoding``) is ``stream``'s."""

    def __init__(self, stream: Any, file: TextIO) -> None:
        self._stream = stream
        self._file = file

    def write(self, text: str) -> int:
        try:
            self._stream.write(text)
        except ValueError:  # the console stream was closed: the file still gets it (as Ray Tune's)
            pass
        return self._file.write(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except ValueError:
            pass
        self._file.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class TrialOutput:
    """The files one trial's stdout and stderr are copied to, opened for appending (a
    string name for both opens one file, so the two streams keep their order in it).

    :meth:`start` swaps the tees in, :meth:`stop` puts back exactly the streams it found,
    :meth:`close` stops and closes the files.  A context manager: start, then close.
    """

    def __init__(self, directory: str, stdout_name: Optional[str], stderr_name: Optional[str]) -> None:
        self.paths = log_file_paths(directory, stdout_name, stderr_name)
        self._files: List[TextIO] = []
        self._saved: Optional[Tuple[Any, Any]] = None
        try:
            self._stdout = self._open(self.paths[0])
            self._stderr = self._stdout if self.paths[1] == self.paths[0] else self._open(self.paths[1])
        except BaseException:
            self._close_files()
            raise

    def _open(self, path: Optional[str]) -> Optional[TextIO]:
        if path is None:
            return None
        parent = os.path.dirname(path)
        if parent and not os.path.isdir(parent):  # a name such as "logs/out.txt"
            os.makedirs(parent, exist_ok=True)
        # UTF-8 whatever the node's locale, and never an error for what a trial prints.
        file = open(path, "a", buffering=1, encoding="utf-8", errors="backslashreplace")
        self._files.append(file)
        return file

    def start(self) -> None:
        self._saved = (sys.stdout, sys.stderr)
        if self._stdout is not None:
            sys.stdout = _Tee(sys.stdout, self._stdout)
        if self._stderr is not None:
            sys.stderr = _Tee(sys.stderr, self._stderr)

    def stop(self) -> None:
        if self._saved is None:
            return
        for stream in (sys.stdout, sys.stderr):
            if isinstance(stream, _Tee):
                try:
                    stream.flush()
                except (OSError, ValueError):  # a full disk or a closed console: the output is lost, not the trial
                    pass
        sys.stdout, sys.stderr = self._saved
        self._saved = None

    def close(self) -> None:
        self.stop()
        self._close_files()

    def _close_files(self) -> None:
        files, self._files = self._files, []
        for file in files:
            try:
                file.close()
            except OSError:  # what did not reach the disk is lost; the trial's outcome stands
                pass

    def __enter__(self) -> "TrialOutput":
        self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


class StoredTrialOutput(TrialOutput):
    """A :class:`TrialOutput` in the node's scratch copy of a trial directory kept in
    storage: each file named relative to the trial directory is first filled with what
    storage holds (so it is appended to, as a local one), and uploaded on :meth:`close`.
    A file named by an absolute path stays on the node, as in Ray Tune."""

    def __init__(self, kept: storage.ExperimentStorage, trial_dir: str, scratch_dir: str,
                 stdout_name: Optional[str], stderr_name: Optional[str]) -> None:
        self._stored = [(os.path.join(scratch_dir, name), kept.location_of(os.path.join(trial_dir, name)))
                        for name in dict.fromkeys((stdout_name, stderr_name))  # one name for both: once
                        if name is not None and not os.path.isabs(name)]
        for local, location in self._stored:
            _download_if_stored(location, local)
        self._scratch_dir = scratch_dir
        super().__init__(scratch_dir, stdout_name, stderr_name)

    def close(self) -> None:
        super().close()
        for local, location in self._stored:
            if os.path.exists(local):
                storage.upload_file(local, location)
                os.remove(local)  # scratch: storage has it (a kept instance's cleanup reopens it later)
        try:
            os.rmdir(self._scratch_dir)  # only when nothing else is in it; else its segment's end removes it
        except OSError:
            pass


def _download_if_stored(location: storage.Location, local: str) -> None:
    """``local`` replaced by the file at ``location``, if there is one."""
    try:
        source = location.filesystem.open_input_stream(location.path)
    except FileNotFoundError:
        return
    os.makedirs(os.path.dirname(local), exist_ok=True)
    with source, open(local, "wb") as target:
        shutil.copyfileobj(source, target, 1 << 20)


def open_trial_output(kept: Optional[storage.ExperimentStorage], trial_dir: Optional[str], local_dir: str,
                      stdout_name: Optional[str], stderr_name: Optional[str]) -> TrialOutput:
    """The output files of the trial whose directory is ``trial_dir`` (the driver's path)
    and ``local_dir`` on this node, for an experiment kept at ``kept`` (None: local)."""
    if kept is None or trial_dir is None:
        return TrialOutput(local_dir, stdout_name, stderr_name)
    return StoredTrialOutput(kept, trial_dir, local_dir, stdout_name, stderr_name)


__all__ = ["StoredTrialOutput", "TrialOutput", "log_file_paths", "open_trial_output"]
