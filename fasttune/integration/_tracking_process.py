"""The process in which an experiment-tracking callback (MLflow, Weights & Biases, Aim, Comet) talks to its
service, so that a batch of results costs the driver's event loop one hand-over.

The tracking libraries spend far longer per result than the engine does (an ORM row per metric
in MLflow's SQLite store, about 0.3 ms of Python per ``run.log`` in W&B).  On a thread of the
driver they would still hold its GIL; in a process of their own they use another core and the
loop goes on.  The driver side (:class:`TrackingProcess`) pickles each message on a thread of
its own into the process's stdin; the process (``python -m fasttune.integration._tracking_process``, a
fresh interpreter, so a user's script without a ``__main__`` guard is not run again) builds the
handler the first frame names and calls ``handler.<kind>(*args)`` for each message of the frames
after it (a frame is the list of messages the thread took at once).
At the end it calls ``handler.close()`` and writes the pickled list of failures to its stdout.
"""
from __future__ import annotations

import importlib
import os
import pickle
import subprocess
import sys
from typing import Any, List, Optional

import fasttune
from fasttune.error import TuneError
from fasttune.logger._writer_thread import WriterThread


class TrackingProcess:
    """The driver's end: ``send`` messages in order, ``finish`` at the end of the sweep.

    ``handler`` is ``(module, class name, constructor args)``, built in the process.
    """

    def __init__(self, service: str, handler: tuple, finish_timeout: float) -> None:
        self._service = service
        self._handler = handler
        self._finish_timeout = finish_timeout
        self._thread = WriterThread(service, thread_name=f"fasttune-{service.split()[0].lower()}")
        self._process: Optional[subprocess.Popen] = None
        # Messages not yet taken by the thread, and whether a write of them is due: the thread
        # takes all of them at once, so a fast sweep costs one pickling and one write per wake-up.
        self._pending: List[tuple] = []
        self._write_due = False

    def start(self) -> None:
        """Start the process now (on the thread), so that it imports the tracking library and
        builds its handler while the sweep starts, not when the first message comes."""
        self._thread.submit(self._open)

    def send(self, *message: Any) -> None:
        """Hand ``message`` (``kind, *args``) over; it is pickled and written on the thread."""
        self._raise_thread_failure(self._thread.failure)
        self._pending.append(message)  # before the flag is read: a write taking it is due either way
        if not self._write_due:
            self._write_due = True
            self._thread.submit(self._write)

    def finish(self) -> None:
        """Wait (at most the finish timeout) for the process to handle everything sent, and
        raise a ``TuneError`` naming the first failure, if any.  The thread and the process
        end also when the thread failed (the process closes with what it was sent)."""
        self._thread.wait()
        thread_failure = self._thread.failure
        try:
            self._thread.close()
        except OSError:
            if thread_failure is None:
                raise
            # The thread's own failure, as the writer words it for files: raised below, naming the service.
        process, self._process = self._process, None
        failures = self._close_process(process, thread_failure) if process is not None else []
        self._raise_thread_failure(thread_failure)
        if failures:
            raise TuneError(f"{self._service} failed {len(failures)} time(s); the first: {failures[0]}")

    def _close_process(self, process: subprocess.Popen, thread_failure: Optional[BaseException]) -> List[str]:
        """Ask ``process`` to close and wait for it; the failures it answers.  Past the finish
        timeout it is stopped, and the TuneError says so, and names ``thread_failure`` (the
        thread's, if it failed first) as its cause."""
        try:
            replies, _ = process.communicate(pickle.dumps([("close",)]), timeout=self._finish_timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            message = (f"{self._service} did not finish within {self._finish_timeout} s; it was stopped, and "
                       "what it had not written yet is lost.")
            if thread_failure is not None:
                failure = f"{type(thread_failure).__name__}: {thread_failure}"
                message += f" Before that it stopped taking results ({failure})."
            raise TuneError(message) from thread_failure
        return pickle.loads(replies) if replies else [
            f"the process ended with exit code {process.returncode} before answering"]

    def _write(self) -> None:
        self._write_due = False  # before taking the messages: one sent after this gets a write of its own
        messages, self._pending = self._pending, []
        if not messages:
            return
        self._open()
        self._process.stdin.write(pickle.dumps(messages, protocol=pickle.HIGHEST_PROTOCOL))
        self._process.stdin.flush()

    def _open(self) -> None:
        if self._process is None:
            self._process = self._start()
            self._process.stdin.write(pickle.dumps(self._handler, protocol=pickle.HIGHEST_PROTOCOL))
            self._process.stdin.flush()

    @staticmethod
    def _start() -> subprocess.Popen:
        env = dict(os.environ)
        # The process imports this fasttune, wherever the driver found it.
        source_root = os.path.dirname(os.path.dirname(os.path.abspath(fasttune.__file__)))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [source_root, env.get("PYTHONPATH")]))
        return subprocess.Popen([sys.executable, "-m", "fasttune.integration._tracking_process"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)

    def _raise_thread_failure(self, failure: Optional[BaseException]) -> None:
        if failure is not None:
            raise TuneError(f"{self._service} stopped taking results ({type(failure).__name__}: {failure}).") \
                from failure


def serve(messages: Any, replies: Any) -> None:
    """The process's loop: build the handler, call it for each message, answer the failures."""
    module, name, args = pickle.load(messages)
    handler = getattr(importlib.import_module(module), name)(*args)
    failures: List[str] = []
    closed = False
    while not closed:
        try:
            frame = pickle.load(messages)
        except EOFError:  # the driver is gone: finish what is open
            frame = [("close",)]
        for kind, *args in frame:
            try:
                getattr(handler, kind)(*args)
            except Exception as exc:  # noqa: BLE001 - kept for the driver; the other trials go on
                failures.append(f"{kind}{tuple(args[:1])}: {type(exc).__name__}: {exc}")
            closed = kind == "close"
            if closed:
                break
    pickle.dump(failures, replies)
    replies.flush()


if __name__ == "__main__":
    # The replies keep the pipe that was stdout; what the tracking library prints goes to stderr.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(sys.stdin.buffer, replies)
