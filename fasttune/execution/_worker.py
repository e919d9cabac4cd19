"""The worker side of the batched protocol: a Ray actor that runs trials one after another.

The commands it takes and the events it answers with are the records of
``fasttune.execution._protocol`` (which also says how they travel).

A reset ends the running segment without an end event and starts the new one at once in
the same process: a class trainable's live instance is offered the new config through
``reset_config`` (and then loads the cloned checkpoint, if any); a function trainable is
called again.

A class trainable (``fasttune.Trainable``) runs through the same report path: each
``step()`` result is one report.  The spec's ``checkpoint_frequency`` and
``checkpoint_at_end`` tell the worker when to call ``save_checkpoint``; with
``reuse_actors`` the live instance is kept for the worker's next trial of the same
trainable and reused through ``reset_config`` when that returns True.

With the spec's ``log_to_file``, what the process prints while a trial runs is copied
into that trial's files (``_output_capture``).  While a trial's code runs, the process's
working directory is the trial's directory (``_working_dir``), the one ``get_trial_dir()``
names; the worker goes back to its own when the segment ends.

``report()`` packs each result at once (so a non-encodable value fails in the user's
call, naming the key) and appends it to the running trial's buffer without a lock:
one producer (the trial thread) appends, consumers take a prefix under the condition.
"""
from __future__ import annotations

import functools
import os
import socket
import sys
import threading
import time
import traceback
from array import array
from collections import deque
from typing import Any, Dict, List, Optional, Tuple

from fasttune._core_shared import MAX_DEPTH
from fasttune.checkpoint import Checkpoint
from fasttune.constants import RAY_CHDIR_TO_TRIAL_DIR
from fasttune.error import TuneError, TuneStopTrial
from fasttune.execution import _channel as channel
from fasttune.execution import _protocol as protocol
from fasttune.execution._stop_criteria import StopCriteria
from fasttune.execution._output_capture import TrialOutput, open_trial_output
from fasttune.execution._working_dir import enter_trial_dir, leave_trial_dir, make_trial_dir
from fasttune.execution._worker_checkpoints import for_experiment as checkpoint_places
from fasttune._decision_points import watch_wire
from fasttune.trainable.function_trainable import wrap_function
from fasttune.trainable.session import Session, TuneContext, set_session
from fasttune.trainable.trainable import (
    Trainable,
    check_step_result,
    is_trainable_class,
    node_ip_address,
)

# A trial that reports faster than the driver drains blocks here; the bound keeps a
# worker's memory small while batches stay large enough to amortise a round trip.
MAX_UNSENT_RESULTS = 8192

# After an event the trial thread goes on from by itself (a trial started, or ended with
# the next one queued), a poll waits up to this long for the thread to block at a
# decision point or run out of work, so one reply carries "paused", "started", results
# and "decide" of a short run segment instead of one round trip each.  (A poll whose
# commands set the thread going lingers from then on; the thread's first event starts
# the linger anew, so a slow end or start still goes with what follows it.)
_LINGER_S = 0.005

# A worker's own RAY_CHDIR_TO_TRIAL_DIR is looked up at each trial unless its environment is fixed.
_LOOKED_UP_EACH_TRIAL = object()
_NO_TIMES = array("d")  # copied by slicing: array("d") costs an audit event each time

_CONTINUE, _STOP, _PAUSE, _RESET = protocol.CONTINUE, protocol.STOP, protocol.PAUSE, protocol.ResetTrial.kind


def _find_unencodable(value: Any, path: str = "") -> Optional[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            found = _find_unencodable(v, f"{path}/{k}" if path else str(k))
            if found is not None:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            found = _find_unencodable(v, f"{path}[{i}]")
            if found is not None:
                return found
        return None
    try:
        protocol.pack(value)
    except (TypeError, OverflowError, ValueError):
        return path or "<result>"
    return None


_PLAIN_VALUES = frozenset({float, int, str, bool, type(None)})  # no keys inside: skipped at once
_TOO_DEEP = object()  # _key_problem's answer for nesting deeper than the driver keeps


def _key_problem(value: Any, depth: int = 0) -> Optional[Tuple[List[Any], Any]]:
    """Where a result cannot be kept (the keys and indices down to it, innermost first)
    and why: a dict key, in dicts and lists at any depth, that is not a string (that key),
    or nesting deeper than the driver keeps (``_TOO_DEEP``).  None when there is no
    problem (the common case: the path is only built on the way back from one)."""
    if depth > MAX_DEPTH:
        return [], _TOO_DEEP
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return [], key
            if type(item) not in _PLAIN_VALUES:
                found = _key_problem(item, depth + 1)
                if found is not None:
                    found[0].append(key)
                    return found
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            if type(item) not in _PLAIN_VALUES:
                found = _key_problem(item, depth + 1)
                if found is not None:
                    found[0].append(index)
                    return found
    return None


def _flat_and_plain(metrics: Dict[str, Any], str: type = str, plain: frozenset = _PLAIN_VALUES,
                    type: type = type) -> bool:  # noqa: A002 - bound as locals: this runs per report
    """Whether ``metrics`` has only string keys and plain values (most results): then
    :func:`_key_problem` need not look further."""
    for key, item in metrics.items():
        if type(key) is not str or type(item) not in plain:
            return False
    return True


def pack_result(metrics: Dict[str, Any], trial_name: str = "") -> bytes:
    """Encode one reported result; a key that is not a string or a value msgpack cannot
    carry is named in the error (with ``trial_name``)."""
    problem = None if _flat_and_plain(metrics) else _key_problem(metrics)
    if problem is not None:
        path, key = problem
        where = "metrics" + "".join(f"[{part!r}]" for part in reversed(path[-8:]))  # the outer keys say where
        if key is _TOO_DEEP:
            raise TypeError(f"Trial {trial_name or '?'} reported a result nested more than {MAX_DEPTH} levels "
                            f"deep, at {where}.")
        raise TypeError(f"Trial {trial_name or '?'} reported a result with the key {key!r} (a "
                        f"{type(key).__name__}) in {where}; result keys must be strings, in nested dicts too: "
                        "convert it first, e.g. str(key).")
    try:
        return protocol.pack(metrics)
    except (TypeError, OverflowError, ValueError) as exc:
        key = _find_unencodable(metrics) or "?"
        bad = metrics
        for part in key.split("/"):
            bad = bad.get(part, bad) if isinstance(bad, dict) else bad
        raise TypeError(
            f"tune.report(): the value of {key!r} ({type(bad).__name__}) reported by trial "
            f"{trial_name or '?'} cannot be sent to the driver. Report numbers, strings, booleans, "
            "None, lists, dicts or numpy values; convert it first, e.g. float(x) or str(x)."
        ) from exc


class _Run:
    """One trial running in this worker: its buffer and its stop rules."""

    def __init__(self, spec: Dict[str, Any]) -> None:
        self.trial_id: str = spec["trial_id"]
        self.spec = spec
        self.packed: List[bytes] = []
        self.times = _NO_TIMES[:]
        self.checkpoints: Dict[int, str] = {}
        self.tokens: Dict[str, str] = {}  # checkpoint name -> its upload's token (in storage), until sent
        self.taken = 0  # results handed to the driver so far in this run
        self.count = 0  # results reported in this run
        self.base_iteration: int = spec.get("iteration", 0)
        self.base_time: float = spec.get("time_total", 0.0)
        self.checkpoint_index: int = spec.get("ckpt_index", 0)
        self.stop = StopCriteria(spec.get("stop"))
        # Whether a result waits for the scheduler (points on an attribute keep state).
        self.at_decision_point = watch_wire(spec.get("decide", "every_result"))
        self.yields = bool(spec.get("yield"))
        self.start_time = 0.0
        self.last_time = 0.0
        self.decision: Optional[str] = None
        self.reset_fields: Optional[Dict[str, Any]] = None
        self.awaiting = False
        self.backpressured = False
        self.interrupt: Optional[str] = None
        self.save_on_pause = True  # a class trainable saves a checkpoint when paused
        self.log_files: Optional[List[Optional[str]]] = None  # [stdout, stderr] names: log_to_file

    def time_total(self, now: float) -> float:
        """The trial's ``time_total_s`` at ``now``, with the driver core's arithmetic (its
        stop criteria and decision points must see the value the driver records)."""
        return self.base_time + (now - self.start_time)

    def stop_reached(self, metrics: Dict[str, Any], now: float) -> bool:
        return self.stop.reached(
            metrics, iteration=self.base_iteration + self.count, since_restore=self.count,
            time_total=self.time_total(now), time_since_restore=now - self.start_time,
            now=now, time_this_iter=now - self.last_time)


class TrialWorker:
    """Runs trials handed to it by the driver; see the module docstring for the protocol.

    ``environment_fixed``: nothing changes this process's environment once it started (a
    Ray actor's), so its ``RAY_CHDIR_TO_TRIAL_DIR`` is read once, not at each trial (a
    worker made in-process, as in tests, reads it at each trial).
    """

    def __init__(self, storage: Any = None, environment_fixed: bool = False) -> None:
        self._own_chdir_setting: Any = (os.environ.get(RAY_CHDIR_TO_TRIAL_DIR) if environment_fixed
                                        else _LOOKED_UP_EACH_TRIAL)
        # Where checkpoints go: the trial directory, or the experiment's storage.
        self._places = checkpoint_places(storage)
        self._cond = threading.Condition()
        self._queue: deque = deque()
        self._out: List[bytes] = []
        self._run: Optional[_Run] = None
        self._poller_waiting = False
        self._linger_until: Optional[float] = None
        self._linger_ahead = False  # the linger was set by a poll's commands, ahead of the thread's event
        self._trainables: Dict[str, Any] = {}
        self._wrapped: Dict[str, Any] = {}
        # (trainable name, live Trainable, its trial's output files or None) kept for reuse
        self._held: Optional[tuple] = None
        self._output: Optional[TrialOutput] = None  # the running trial's, with log_to_file
        self._cwd_back: Optional[str] = None  # where the process goes back to when the running trial ends
        self._storage = storage
        # Its Ray node (in storage only): the node whose cache keeps the checkpoints it uploads.
        self._identity = (os.getpid(), socket.gethostname(), node_ip_address(),
                          _ray_node_id() if storage is not None else "")
        self._channel_failure: Optional[BaseException] = None  # what a poll on the socket raised
        self._thread = threading.Thread(target=self._trial_loop, name="fasttune-trial", daemon=True)
        self._thread.start()

    # ---- driver-facing -------------------------------------------------------------
    def ping(self) -> int:
        return self._identity[0]

    def open_channel(self, path: str, secret: bytes, driver_node: str) -> bool:
        """Carry the driver's polls over its socket from now on (see ``_channel``), if this
        worker runs on the driver's node and can reach it; False: polls stay on Ray."""
        if not driver_node or _ray_node_id() != driver_node:
            return False
        try:
            sock = channel.connect(path, secret)
        except OSError:
            return False  # e.g. a node in a mount namespace of its own
        channel.serve(sock, self._take_commands, self._next_reply, self.interrupt, self._channel_failed)
        return True

    def _channel_failed(self, exc: BaseException) -> None:
        self._channel_failure = exc

    def poll(self, commands: bytes = b"") -> bytes:
        failure, self._channel_failure = self._channel_failure, None
        if failure is not None:
            raise failure  # the driver falls back to this call to hear why the socket closed
        self._take_commands(commands)
        return self._next_reply()

    def _take_commands(self, commands: bytes) -> None:
        """A poll's first half: apply its commands (on the socket, before the next frame is read)."""
        with self._cond:
            if commands:
                self._apply(protocol.decode_commands(commands))
                if self._linger_until is None and self._goes_on_by_itself():
                    # The poll lingers from now, as it will from the thread's next event: it
                    # waits timed at once instead of being woken again to start lingering.
                    self._linger_until = time.monotonic() + _LINGER_S
                    self._linger_ahead = True
                self._cond.notify_all()  # a queued trial or an answered decision may go on
            self._poller_waiting = True

    def _goes_on_by_itself(self) -> bool:
        """Whether the trial thread, as the commands just applied leave it, starts a trial
        or ends one and starts the next without waiting for the driver (when it lingers)."""
        run = self._run
        if run is None:
            return bool(self._queue)
        decision = run.decision
        return (run.awaiting and decision is not None and decision != _CONTINUE
                and (decision == _RESET or bool(self._queue)))

    def _next_reply(self) -> bytes:
        """A poll's second half: wait for something to say, and say it."""
        with self._cond:
            while True:
                has_news = bool(self._out) or self._has_unsent()
                if has_news and (self._linger_until is None or self._thread_waits()):
                    break
                if self._linger_until is None:
                    self._cond.wait()
                    continue
                remaining = self._linger_until - time.monotonic()
                if remaining > 0:
                    # A timed wait: results reported while lingering need not wake it.
                    self._cond.wait(remaining)
                elif has_news:
                    break
                else:
                    self._cond.wait()  # lingered out with nothing to say: wait for news
            self._poller_waiting = False
            self._linger_until = None
            self._linger_ahead = False
            self._seal_results()
            reply, self._out = self._out, []
            run = self._run
            if run is not None and run.backpressured:
                # Only that wait needs this reply; a trial at a decision point would wake for nothing.
                self._cond.notify_all()
        return protocol.reply_bytes(reply)

    def release(self) -> bool:
        """Call ``cleanup()`` on a class trainable instance kept for reuse (the driver
        calls this before it lets the worker go).  False if a trial is running."""
        with self._cond:
            if self._run is not None or self._queue:
                return False
            held, self._held = self._held, None
        if held is not None:
            self._cleanup_held(held)
        return True

    def interrupt(self, commands: bytes) -> None:
        """Apply stop/pause at once, without waiting for the outstanding poll."""
        with self._cond:
            self._apply(protocol.decode_commands(commands))
            self._cond.notify_all()

    # ---- command handling (caller holds the condition) -----------------------------
    def _apply(self, commands: List[Any]) -> None:
        for command in commands:
            if isinstance(command, protocol.StartTrial):
                self._queue.append(command.spec)
            elif isinstance(command, protocol.Answer):
                self._decide(command.trial_id, command.how, command.checkpoint)
            elif isinstance(command, protocol.ResetTrial):
                run = self._run
                if run is not None and run.trial_id == command.trial_id and run.awaiting:
                    run.reset_fields = command.fields
                    run.decision = _RESET
                # Otherwise the trial is no longer at the decision point (an interrupt
                # ended it first): the end event already told the driver.
            else:
                self._load_trainable(command)

    def _load_trainable(self, command: protocol.LoadTrainable) -> None:
        import ray.cloudpickle as cloudpickle  # here, not in _apply: an import statement runs on every poll

        from fasttune.registry import install_env_creators

        # Modules the driver imported from its own paths (a script's helpers, a test
        # module) resolve here too when the worker sees the same files.
        for entry in command.sys_path:
            if entry not in sys.path and os.path.isdir(entry):
                sys.path.append(entry)
        try:
            self._trainables[command.name] = cloudpickle.loads(command.trainable_blob)
            if command.envs_blob:
                install_env_creators(cloudpickle.loads(command.envs_blob))
        except Exception:  # noqa: BLE001 - each trial of it fails, naming the cause
            self._trainables[command.name] = _Unloadable(command.name, traceback.format_exc())
        self._wrapped.pop(command.name, None)

    def _decide(self, trial_id: str, decision: str, checkpoint: bool = True) -> None:
        run = self._run
        if run is not None and run.trial_id == trial_id:
            if decision == _PAUSE and not checkpoint:
                run.save_on_pause = False
            if run.awaiting:
                run.decision = decision
            elif decision != _CONTINUE:
                run.interrupt = decision
            return
        if decision == _CONTINUE:
            return
        for spec in self._queue:
            if spec["trial_id"] == trial_id:
                self._queue.remove(spec)
                self._out.append(protocol.encode_event(protocol.Ended("dropped", trial_id)))
                return

    def _thread_waits(self) -> bool:
        """Whether the trial thread waits for the driver: at a decision point, on
        backpressure, or out of queued trials."""
        run = self._run
        if run is None:
            return not self._queue
        return run.awaiting or run.backpressured

    def _poller_would_return(self) -> bool:
        """Whether a new result lets a waiting poll return: not while it lingers (it wakes
        by itself at the deadline, or when the thread blocks or ends), so a short run
        segment costs the poll thread one wake-up instead of one per result."""
        until = self._linger_until
        return until is None or time.monotonic() >= until

    def _linger(self) -> None:
        if self._linger_until is None or self._linger_ahead:  # from this event, as without one set ahead
            self._linger_until = time.monotonic() + _LINGER_S
            self._linger_ahead = False

    def _has_unsent(self) -> bool:
        run = self._run
        return run is not None and len(run.times) > 0

    def _seal_results(self) -> None:
        run = self._run
        if run is None:
            return
        n = len(run.times)  # times are appended after the packed result: packed has >= n
        if n == 0:
            return
        packed = run.packed[:n]
        times = run.times[:n]
        del run.packed[:n]
        del run.times[:n]
        base = run.taken
        checkpoints = {}
        tokens = {}
        if run.checkpoints:
            for index in [i for i in run.checkpoints if i < base + n]:
                name = checkpoints[index - base] = run.checkpoints.pop(index)
                if name in run.tokens:
                    tokens[index - base] = run.tokens.pop(name)
        run.taken = base + n
        self._out.append(protocol.encode_results(run.trial_id, packed, times.tobytes(), checkpoints, tokens))

    def _emit(self, event: Any) -> None:
        """An event after which the trial thread goes on by itself."""
        with self._cond:
            self._seal_results()
            self._out.append(protocol.encode_event(event))
            self._linger_on()

    def _linger_on(self) -> None:
        """The trial thread goes on by itself after an event (caller holds the condition):
        a poll lingers.  One in a timed linger wakes by itself at its deadline or when the
        thread waits; one waiting untimed (no linger, or lingered out) is woken."""
        wake = self._poller_would_return()
        self._linger()
        if wake:
            self._cond.notify_all()

    # ---- the trial thread ------------------------------------------------------------
    def _trial_loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                spec = self._queue.popleft()
                run = self._run = _Run(spec)
            self._run_trial(run)

    def _run_trial(self, run: _Run) -> None:
        spec = run.spec
        run.start_time = run.last_time = time.time()
        self._emit(protocol.Started(run.trial_id, run.start_time, *self._identity))
        restore = spec.get("restore")
        restore_token = spec.get("restore_token")
        end: Any
        if spec.get("clone_from"):
            try:
                restore, restore_token = self._clone(run, spec["clone_from"])
            except Exception:  # noqa: BLE001 - reported as the trial's error
                with self._cond:
                    self._out.append(protocol.encode_event(
                        protocol.Failed(run.trial_id, traceback.format_exc(), None)))
                    self._run = None
                    if self._queue:
                        self._linger()
                    self._cond.notify_all()
                return
            spec = run.spec = dict(spec, restore=restore, clone_from=None, restore_token=restore_token)
        places = self._places
        if restore:
            places.resuming(restore, restore_token)
        trial_dir = places.trial_dir(spec["trial_dir"]) if spec.get("trial_dir") else None
        context = TuneContext(
            trial_id=run.trial_id,
            trial_name=spec.get("trial_name"),
            trial_dir=trial_dir,
            experiment_name=spec.get("experiment_name"),
            trial_resources=spec.get("resources") or {},
            trial_bundles=spec.get("bundles"),
            storage_path=places.storage_path or spec.get("storage_path"),
            trial_dir_on_demand=bool(spec.get("trial_dir_on_demand")),
        )
        session = Session(
            context,
            functools.partial(self._report, run),  # (metrics, checkpoint) -> _report(run, ...): no frame of its own
            self._places.checkpoint(restore) if restore else None,
        )
        run.log_files = spec.get("log_to_file")
        try:
            if trial_dir:
                if not spec.get("trial_dir_on_demand"):
                    make_trial_dir(trial_dir)
                self._cwd_back = _enter_trial_dir(spec, trial_dir, self._own_chdir_setting)
            if run.log_files:
                self._output = self._open_output(run)
            trainable = self._trainables[spec["trainable"]]
            if isinstance(trainable, _Unloadable):
                raise trainable.error()
            if is_trainable_class(trainable):
                self._run_class(run, spec["trainable"], trainable, session)
            else:
                self._discard_held()
                trainable_cls = self._wrapped.get(spec["trainable"])
                if trainable_cls is None:  # wrapping inspects the signature: once per name
                    trainable_cls = self._wrapped[spec["trainable"]] = wrap_function(trainable)
                trainable_cls(spec.get("config")).run(session)
        except TuneStopTrial as stop:
            how = stop.args[0] if stop.args else _STOP
            if how == _RESET:
                # The same trial goes on at once as a new segment: no end event.
                self._leave_trial()
                if restore:
                    places.restored(restore)
                with self._cond:
                    self._seal_results()
                    self._queue.appendleft(dict(spec, **(run.reset_fields or {})))
                    self._run = None
                    self._linger()
                    self._cond.notify_all()
                return
            end = protocol.Ended("paused" if how == _PAUSE else "stopped", run.trial_id)
        except BaseException as exc:  # noqa: BLE001 - every failure is reported, none is lost
            import ray.cloudpickle as cloudpickle  # only here, not on every trial

            try:
                blob = cloudpickle.dumps(exc)
            except Exception:  # noqa: BLE001 - unpicklable exceptions still report their text
                blob = None
            end = protocol.Failed(run.trial_id, traceback.format_exc(), blob)
        else:
            end = protocol.Ended("done", run.trial_id)
        self._leave_trial()  # before the end event: the driver may read the files once it has it
        if trial_dir:  # after leaving it: in storage, the segment's end removes the node's copy
            try:
                places.segment_ended(spec["trial_dir"], restore,
                                     trial_ended=type(end) is protocol.Ended and end.how in ("done", "stopped"))
            except Exception:  # noqa: BLE001 - the trial's outcome stands; its leftovers only cost space
                traceback.print_exc()
        with self._cond:
            self._seal_results()
            self._out.append(protocol.encode_event(end))
            self._run = None
            if self._queue:  # the next trial starts at once
                self._linger_on()
            else:
                self._cond.notify_all()

    def _open_output(self, run: _Run) -> TrialOutput:
        """Start copying what the process prints into the trial's log files."""
        spec = run.spec
        output = open_trial_output(self._storage, spec.get("trial_dir"), self._places.trial_dir(spec["trial_dir"])
                                   if spec.get("trial_dir") else os.getcwd(), *run.log_files)
        output.start()
        return output

    def _leave_trial(self) -> None:
        """The running trial's code is done: the process goes back to its working
        directory, and the trial's output files are closed."""
        back, self._cwd_back = self._cwd_back, None
        leave_trial_dir(back)
        self._close_output()

    def _close_output(self) -> None:
        output, self._output = self._output, None
        if output is not None:
            try:
                output.close()
            except Exception:  # noqa: BLE001 - the trial's outcome stands; only its log copy is short
                traceback.print_exc()

    def _cleanup_held(self, held: tuple) -> None:
        """``cleanup()`` a kept instance in the directory of the trial it ran (not that of
        the trial running now); with log_to_file, what it prints goes to that trial's files."""
        instance, owner = held[1], held[2]
        owner_dir = owner.spec.get("trial_dir") if owner is not None else None
        if owner_dir is None and (owner is None or not owner.log_files):
            _cleanup_quietly(instance)
            return
        running, self._output = self._output, None
        if running is not None:
            running.stop()
        back = None
        try:
            if owner_dir:
                local = self._places.trial_dir(owner_dir)
                # In storage the node's copy went when its segment ended.
                if not owner.spec.get("trial_dir_on_demand"):
                    make_trial_dir(local)
                back = _enter_trial_dir(owner.spec, local, self._own_chdir_setting)
            if owner.log_files:
                self._output = self._open_output(owner)
        except Exception:  # noqa: BLE001 - its directory or files cannot be opened again: the cleanup still runs
            traceback.print_exc()
        try:
            _cleanup_quietly(instance)
        finally:
            leave_trial_dir(back)
            self._close_output()
            self._output = running
            if running is not None:
                running.start()
            run = self._run
            if owner_dir and (run is None or run.spec.get("trial_dir") != owner_dir):  # not the running one's
                try:
                    self._places.segment_ended(owner_dir, None)  # in storage: what cleanup wrote is sent
                except Exception:  # noqa: BLE001 - only its leftovers cost space
                    traceback.print_exc()

    def _report(self, run: _Run, metrics: Dict[str, Any], checkpoint: Any, step_done: bool = False) -> None:
        """One result: ``checkpoint`` is a Checkpoint to copy in, or a callable that saves
        one and returns its directory name.  ``step_done``: the work behind this result is
        done (a class trainable's step), so it counts even when an interrupt is pending."""
        if run.interrupt is not None and not step_done:
            raise TuneStopTrial(run.interrupt)
        if isinstance(checkpoint, Checkpoint):  # reported with tune.report(checkpoint=...)
            metrics = {**metrics, "should_checkpoint": True}  # the result says so, as in Ray Tune
        packed = pack_result(metrics, run.spec.get("trial_name") or run.trial_id)
        now = time.time()
        if checkpoint is not None:
            run.checkpoints[run.count] = (
                self._persist(run, checkpoint) if isinstance(checkpoint, Checkpoint) else checkpoint(run)
            )
        run.count += 1
        run.packed.append(packed)
        run.times.append(now)
        stop = run.stop_reached(metrics, now) if (run.stop or "done" in metrics) else False
        run.last_time = now
        if stop:
            raise TuneStopTrial(_STOP)
        if step_done and run.interrupt is not None:
            raise TuneStopTrial(run.interrupt)
        iteration = run.base_iteration + run.count
        if run.at_decision_point(iteration, metrics, run.time_total(now)):
            # A class trainable saves a checkpoint when it pauses; a function trainable
            # can resume from here only with the checkpoint it just reported.
            if run.yields and (checkpoint is not None or step_done):
                self._yield_or_await(run, iteration)
            else:
                self._await_decision(run, iteration)
        elif len(run.times) >= MAX_UNSENT_RESULTS:
            with self._cond:
                self._cond.notify_all()
                run.backpressured = True
                self._cond.notify_all()
                while len(run.times) >= MAX_UNSENT_RESULTS and run.interrupt is None:
                    self._cond.wait()
                run.backpressured = False
        elif self._poller_waiting and self._poller_would_return():
            with self._cond:
                self._cond.notify_all()

    def _yield_or_await(self, run: _Run, iteration: int) -> None:
        """Pause at this decision point if a trial is queued behind this one (its
        scheduler would answer PAUSE), so the worker goes on without a round trip."""
        with self._cond:
            if self._queue:
                self._seal_results()
                self._out.append(protocol.encode_event(protocol.Yielded(run.trial_id, iteration)))
                raise TuneStopTrial(_PAUSE)
        self._await_decision(run, iteration, starved=True)

    def _await_decision(self, run: _Run, iteration: int, starved: bool = False) -> None:
        with self._cond:
            self._seal_results()
            self._out.append(protocol.encode_event(protocol.Decide(run.trial_id, iteration, starved)))
            run.awaiting = True
            self._cond.notify_all()
            while run.decision is None:
                self._cond.wait()
            decision, run.decision, run.awaiting = run.decision, None, False
        if decision != _CONTINUE:
            raise TuneStopTrial(decision)

    # ---- class trainables --------------------------------------------------------------
    def _run_class(self, run: _Run, name: str, cls: type, session: Session) -> None:
        spec = run.spec
        frequency = int(spec.get("checkpoint_frequency") or 0)
        at_end = bool(spec.get("checkpoint_at_end"))
        reuse = spec.get("reuse_actors", True)
        session = Session(session.context, _no_report_in_class(cls), session.checkpoint)
        set_session(session)  # tune.get_context() works in setup/step; the instance reads it
        instance: Optional[Trainable] = None
        try:
            instance = self._class_instance(name, cls, spec, session.context)
            instance._iteration = run.base_iteration
            restore = spec.get("restore")
            if restore:
                self._places.load(instance, restore)
            saved_at = run.base_iteration if restore else -1
            save = lambda r: self._save_class(r, instance)  # noqa: E731
            try:
                while True:
                    if run.interrupt is not None:
                        raise TuneStopTrial(run.interrupt)
                    result = check_step_result(instance, instance.step())
                    iteration = run.base_iteration + run.count + 1
                    instance._iteration = iteration
                    wanted = (
                        (frequency and iteration % frequency == 0)
                        or bool(result.get("should_checkpoint"))
                        or (at_end and bool(result.get("done")))
                    )
                    if wanted:
                        saved_at = iteration
                    self._report(run, result, save if wanted else None, step_done=True)
            except TuneStopTrial as stop:
                how = stop.args[0] if stop.args else _STOP
                current = run.base_iteration + run.count
                saves = (how == _PAUSE and run.save_on_pause) or (how == _STOP and at_end)
                if run.count and current != saved_at and saves:
                    # After the last reported result: the checkpoint has that result's state.
                    checkpoint_name = self._save_class(run, instance)
                    self._emit(protocol.CheckpointSaved(run.trial_id, checkpoint_name,
                                                        run.tokens.pop(checkpoint_name, "")))
                raise
        except TuneStopTrial as stop:
            if instance is not None:
                if reuse or (stop.args and stop.args[0] == _RESET):
                    # A reset offers the live instance the new config (reset_config).
                    self._held = (name, instance, run)
                else:
                    _cleanup_quietly(instance)
            raise
        except BaseException:
            if instance is not None:
                _cleanup_quietly(instance)  # its state may be broken: never reused
            raise
        else:  # pragma: no cover - the loop above only ends by raising
            self._held = (name, instance, run)
        finally:
            set_session(None)

    def _class_instance(self, name: str, cls: type, spec: Dict[str, Any], context: TuneContext) -> Trainable:
        config = dict(spec.get("config") or {})
        held, self._held = self._held, None
        if held is not None:
            held_name, instance = held[0], held[1]
            if held_name == name and instance._take_trial(context, config):
                return instance
            self._cleanup_held(held)  # declined, or another trainable: cleaned up as what it was
        return cls(config)

    def _discard_held(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            self._cleanup_held(held)

    def _save_class(self, run: _Run, instance: Trainable) -> str:
        name = f"checkpoint_{run.checkpoint_index:06d}"
        try:
            token = self._places.save(instance, run.spec.get("trial_dir") or os.getcwd(), name)
        except Exception as exc:
            raise TuneError(
                f"{type(instance).__name__}.save_checkpoint() raised {type(exc).__name__}: {exc} "
                f"(saving the checkpoint of iteration {instance.iteration}). Nothing was written "
                "for it and the trial's earlier checkpoints are kept; fix save_checkpoint."
            ) from exc
        run.checkpoint_index += 1
        if token:
            run.tokens[name] = token
        return name

    def _clone(self, run: _Run, source: str) -> Tuple[str, Optional[str]]:
        """Copy another trial's checkpoint into this trial's next checkpoint directory
        (the source may be deleted by its own trial's retention later); its path, and the
        copy's token."""
        trial_dir = run.spec.get("trial_dir") or os.getcwd()
        name = f"checkpoint_{run.checkpoint_index:06d}"
        try:
            token = self._places.clone(source, trial_dir, name, run.spec.get("clone_token"))
        except FileNotFoundError:
            raise TuneError(
                f"Trial {run.trial_id} was to continue from checkpoint {source} (PBT's exploit "
                "or reset_trial), but that directory does not exist. Keep more checkpoints "
                "(CheckpointConfig(num_to_keep=...)) or report one at every perturbation."
            ) from None
        run.checkpoint_index += 1
        self._emit(protocol.Cloned(run.trial_id, name, token or ""))
        return os.path.join(trial_dir, name), token

    def _persist(self, run: _Run, checkpoint: Checkpoint) -> str:
        name = f"checkpoint_{run.checkpoint_index:06d}"
        run.checkpoint_index += 1
        token = self._places.persist(checkpoint, run.spec.get("trial_dir") or os.getcwd(), name)
        if token:
            run.tokens[name] = token
        return name


class TrialWorkerActor:
    """The Ray actor class of the driver's pooled workers: a :class:`TrialWorker` behind
    the few methods the driver calls.  Ray disassembles every method of an actor class it
    exports, which for TrialWorker's cost the driver ~20 ms at each sweep's start.

    Example:
        >>> actor = TrialWorkerActor()
        >>> actor.ping() == os.getpid(), actor.release()
        (True, True)
    """

    def __init__(self, storage: Any = None) -> None:
        self.worker = TrialWorker(storage, environment_fixed=True)  # a Ray actor's process

    def ping(self) -> int:
        return self.worker.ping()

    def open_channel(self, path: str, secret: bytes, driver_node: str) -> bool:
        return self.worker.open_channel(path, secret, driver_node)

    def poll(self, commands: bytes = b"") -> bytes:
        return self.worker.poll(commands)

    def release(self) -> bool:
        return self.worker.release()

    def interrupt(self, commands: bytes) -> None:
        self.worker.interrupt(commands)


class _Unloadable:
    """A trainable (or its registered env creators) this process could not unpickle:
    every trial of it fails with the reason, instead of the worker dying on each try."""

    def __init__(self, name: str, traceback_text: str) -> None:
        self.name = name
        self.traceback_text = traceback_text

    def error(self) -> TuneError:
        return TuneError(
            f"The worker process could not load trainable {self.name!r}:\n{self.traceback_text}"
            "A trainable is pickled by reference to the module that defines it when that "
            "module is importable by the driver: the module must be importable in the worker "
            "processes too (the same files on sys.path, or installed), and its name must not "
            "clash with another module there (such as a test's conftest). Define the trainable "
            "in the script, or make its module importable on every node."
        )


def _ray_node_id() -> str:
    """This process's Ray node id ("" outside Ray)."""
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    except Exception:  # noqa: BLE001 - no node to name: the driver goes by the IP
        return ""


def _enter_trial_dir(spec: Dict[str, Any], local_dir: str, own_setting: Any) -> Optional[str]:
    """Move into the trial's directory on this node unless ``RAY_CHDIR_TO_TRIAL_DIR`` (the
    driver's, carried in the spec, else this process's: ``own_setting``, or looked up now
    if it is ``_LOOKED_UP_EACH_TRIAL``) is 0, or the directory is made only on demand
    (``RunConfig(results_store="experiment")``: trials stay where the worker is, as with 0);
    where to go back to."""
    if spec.get("trial_dir_on_demand"):
        return enter_trial_dir(local_dir, "0")  # it sets TUNE_ORIG_WORKING_DIR all the same
    if "chdir_to_trial_dir" in spec:  # not spec.get(key, os.environ.get(...)), which looks it up all the same
        setting = spec["chdir_to_trial_dir"]
    elif own_setting is _LOOKED_UP_EACH_TRIAL:
        setting = os.environ.get(RAY_CHDIR_TO_TRIAL_DIR)
    else:
        setting = own_setting
    return enter_trial_dir(local_dir, setting)


def _cleanup_quietly(instance: Trainable) -> None:
    try:
        instance.cleanup()
    except Exception:  # noqa: BLE001 - a failing cleanup must not fail the next trial
        traceback.print_exc()


def _no_report_in_class(cls: type) -> Any:
    def sink(metrics: Dict[str, Any], checkpoint: Any) -> None:
        raise TuneError(
            f"tune.report() was called inside the class trainable {cls.__name__}; a class "
            "trainable reports by returning the metrics dict from step()."
        )

    return sink
