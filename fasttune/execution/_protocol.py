"""The worker protocol: the commands the driver sends a ``TrialWorker`` and the events
it answers with, as small typed records, and their msgpack wire form in one place.

The driver keeps one ``poll(commands)`` call outstanding per busy worker; the commands
queued for that worker ride on it (stop/pause also go at once through ``interrupt``).
``poll`` returns as soon as there is something to say: a list of events, in order.  On
the wire a record is a list, its kind first, then its fields in order::

    >>> from fasttune.execution._protocol import Decide, decode_events, encode_event
    >>> import msgpack
    >>> wire = encode_event(Decide("t1", 4, False))
    >>> msgpack.unpackb(wire)
    ['decide', 't1', 4, False]
    >>> decode_events(msgpack.packb([msgpack.unpackb(wire)]))
    [Decide(trial_id='t1', iteration=4, starved=False)]

Commands (driver -> worker):

* ``LoadTrainable``: a trainable (and the registered env creators) the next trials use.
* ``StartTrial``: queue a trial; it starts when the previous one ends.  ``spec`` is the
  dict :func:`trial_spec` makes.  Its config travels as msgpack when msgpack can carry
  it, else as ``fasttune._serialization`` packs it (the objects in it cloudpickled): see
  :func:`wire_config`.
* ``Answer``: ``continue``, ``stop`` or ``pause`` a trial blocked at a decision point;
  ``stop``/``pause`` also end a running or queued trial (``checkpoint=False``: a paused
  class trainable saves no checkpoint, and resumes from its latest one).
* ``ResetTrial``: answer a decision point by going on as a new run segment of the same
  trial, its spec updated by ``fields`` (a new config, a checkpoint to clone: PBT's exploit).

Events (worker -> driver):

* ``Started``: the trial began on this worker (process and node identity).
* ``Results``: reported results, their report times and the checkpoints saved with them
  (result index -> checkpoint directory name), and for an experiment in storage each
  checkpoint's upload token (result index -> token; a worker node keeps a copy of what it
  uploaded, and the spec's ``restore_token`` says which upload a resume needs).
* ``Decide``: the trial waits at a decision point until answered (``starved``: it would
  have yielded, but nothing was queued behind it).
* ``Yielded``: at a decision point, the worker paused the trial without waiting, for the
  trial queued next (its ``Ended("paused")`` follows).
* ``Ended``: ``done``, ``stopped``, ``paused``, or ``dropped`` (ended before it started).
* ``Failed``: the trial raised; the traceback text and the pickled exception (or None).
* ``CheckpointSaved``: a class trainable saved after its last reported result.
* ``Cloned``: the spec's ``clone_from`` checkpoint (another trial's) was copied in.
"""
from __future__ import annotations

import functools
import os
import threading
from typing import Any, Dict, List, NamedTuple, Optional, Tuple, Union

import msgpack

from fasttune._resources import PlacementGroupFactory
from fasttune._serialization import Loader, pack as pack_with_objects
from fasttune.constants import RAY_CHDIR_TO_TRIAL_DIR
from fasttune.error import TuneError

# ---- commands --------------------------------------------------------------------------
CONTINUE, STOP, PAUSE = "continue", "stop", "pause"


class LoadTrainable(NamedTuple):
    name: str
    trainable_blob: bytes
    envs_blob: bytes  # b"": no env creators
    sys_path: List[str]  # the driver's, so modules it imports resolve in the worker too

    kind = "trainable"


class StartTrial(NamedTuple):
    spec: Dict[str, Any]  # made by trial_spec (a ResetTrial's fields update its keys)

    kind = "start"


class Answer(NamedTuple):
    how: str  # CONTINUE, STOP or PAUSE: the wire kind itself
    trial_id: str
    checkpoint: bool = True  # PAUSE: a class trainable saves a checkpoint first


class ResetTrial(NamedTuple):
    trial_id: str
    fields: Dict[str, Any]

    kind = "reset"


# ---- events ----------------------------------------------------------------------------
class Started(NamedTuple):
    trial_id: str
    start_time: float
    pid: int
    hostname: str
    node_ip: str
    node_id: str = ""  # its Ray node, for an experiment in storage (several nodes may share an IP)

    kind = "started"


class Results(NamedTuple):
    trial_id: str
    metrics: List[Dict[str, Any]]
    times: bytes  # float64 report times, native byte order (array('d').tobytes())
    checkpoints: Dict[int, str]  # result index -> checkpoint directory name
    tokens: Dict[int, str] = {}  # result index -> the checkpoint upload's token (in storage)

    kind = "results"


class Decide(NamedTuple):
    trial_id: str
    iteration: int
    starved: bool

    kind = "decide"


class Yielded(NamedTuple):
    trial_id: str
    iteration: int

    kind = "yielded"


class Ended(NamedTuple):
    how: str  # "done", "stopped", "paused" or "dropped": the wire kind itself
    trial_id: str


class Failed(NamedTuple):
    trial_id: str
    traceback_text: str
    exception_blob: Optional[bytes]  # cloudpickled exception; None if it would not pickle

    kind = "error"


class CheckpointSaved(NamedTuple):
    trial_id: str
    name: str
    token: str = ""  # its upload's token ("": a local checkpoint)

    kind = "checkpoint"


class Cloned(NamedTuple):
    trial_id: str
    name: str
    token: str = ""  # the copy's token ("": a local checkpoint)

    kind = "cloned"


ENDED_KINDS = ("done", "stopped", "paused", "dropped")

_EVENTS = {cls.kind: cls for cls in (Started, Results, Decide, Yielded, Failed, CheckpointSaved, Cloned)}
_COMMANDS = {cls.kind: cls for cls in (LoadTrainable, StartTrial, ResetTrial)}


def _encode_default(value: Any) -> Any:
    # numpy scalars and arrays in results and configs; numpy is imported only when needed.
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(type(value).__name__)


_packers = threading.local()


def pack(value: Any) -> bytes:
    """One value packed the way every protocol message is (numpy values as Python ones).

    A packer per thread: a worker's trial thread packs results while its poll threads
    pack replies, and a packer shared between them would interleave their bytes (the
    numpy conversion calls back into Python, where the thread can switch)."""
    packer = getattr(_packers, "packer", None)
    if packer is None:
        packer = _packers.packer = msgpack.Packer(default=_encode_default, use_bin_type=True, autoreset=True)
    return packer.pack(value)


def _pack_strictly(value: Any) -> bytes:
    """``value`` packed with no conversion (a tuple, a numpy value, a dict or list subclass
    raise TypeError); its packer per thread, as :func:`pack`'s."""
    packer = getattr(_packers, "strict", None)
    if packer is None:
        packer = _packers.strict = msgpack.Packer(use_bin_type=True, strict_types=True, autoreset=True)
    try:
        return packer.pack(value)
    except BaseException:
        packer.reset()  # a failed pack leaves what it wrote so far in the buffer
        raise


def _wire(record: Any) -> list:
    if isinstance(record, (Answer, Ended)):  # their kind is their first field
        return list(record)
    return [record.kind, *record]


# ---- configs ----------------------------------------------------------------------------
_EXT_CONFIG = 1  # a config msgpack alone cannot carry, packed with its objects cloudpickled


class ConfigNotCarried(TuneError):
    """A trial's config holds a value that cannot be sent to a worker, neither as msgpack
    nor cloudpickled (a lock, an open file, a generator): ``key`` names where it is."""

    def __init__(self, key: str, value: Any, reason: BaseException) -> None:
        super().__init__(
            f"config{key} is a {type(value).__name__} that cannot be sent to the trial's worker, "
            f"neither as msgpack nor cloudpickled ({type(reason).__name__}: {reason}). "
            "Put data in the config (numbers, strings, lists, dicts, picklable objects) and "
            "create such objects inside the trainable.")
        self.key = key


def wire_config(config: Any) -> Any:
    """``config`` as a ``StartTrial`` or ``ResetTrial`` carries it: itself when msgpack
    carries it, else an extension holding it packed with its objects cloudpickled (a
    function, a class, a date, a tuple, a numpy value, an int of 2**64 or more reach the
    trainable as they are).
    Raises :class:`ConfigNotCarried`, naming the key, when nothing can carry it.

    Example:
        >>> import datetime
        >>> wire_config({"lr": 0.1}) == {"lr": 0.1}
        True
        >>> wire = encode_commands([StartTrial({"config": wire_config({"day": datetime.date(2026, 1, 2)})})])
        >>> decode_commands(wire)[0].spec["config"]
        {'day': datetime.date(2026, 1, 2)}
        >>> wire = encode_commands([StartTrial({"config": wire_config({"shape": (2, 3)})})])
        >>> decode_commands(wire)[0].spec["config"]
        {'shape': (2, 3)}
    """
    try:
        # strict_types and no default: a tuple, a numpy value, a dict or list subclass is
        # not sent as a plain number, array or map, so it reaches the trainable as the type
        # it is, as it does under Ray Tune.
        _pack_strictly(config)
        return config
    except (TypeError, OverflowError, ValueError):
        pass
    try:
        return msgpack.ExtType(_EXT_CONFIG, pack_with_objects(config))
    except Exception as exc:  # noqa: BLE001 - cloudpickle raises many kinds; the key is found below
        found = uncarried_values(config)
        key, value = found[0] if found else ("", config)
        raise ConfigNotCarried(key, value, exc) from exc


def uncarried_values(config: Any, key: str = "") -> List[Any]:
    """``(key, value)`` of each value in ``config`` that cannot be carried to a worker.

    Example:
        >>> import threading
        >>> [key for key, _ in uncarried_values({"a": [1, threading.Lock()], "b": 2})]
        ["['a'][1]"]
    """
    if isinstance(config, dict):
        return [found for k, v in config.items()
                for found in uncarried_values(k, f"{key} key {k!r}") or uncarried_values(v, f"{key}[{k!r}]")]
    if isinstance(config, (list, tuple)):
        return [found for i, v in enumerate(config) for found in uncarried_values(v, f"{key}[{i}]")]
    try:
        pack_with_objects(config)
    except Exception:  # noqa: BLE001 - whatever cloudpickle raises, the value stays here
        return [(key, config)]
    return []


def carried_copy(config: Any) -> Any:
    """``config`` with each value :func:`uncarried_values` finds replaced by a string that
    names its type: what a trial whose config cannot be sent keeps (and snapshots).

    Example:
        >>> import threading
        >>> carried_copy({"a": (1, threading.Lock())})
        {'a': (1, '<lock: cannot be sent>')}
    """
    if isinstance(config, dict):
        return {carried_copy(k): carried_copy(v) for k, v in config.items()}
    if isinstance(config, (list, tuple)):
        copied = [carried_copy(v) for v in config]
        return copied if isinstance(config, list) else tuple(copied)
    return f"<{type(config).__name__}: cannot be sent>" if uncarried_values(config) else config


def _command_ext(code: int, data: bytes) -> Any:
    if code == _EXT_CONFIG:
        return Loader().unpack(data)
    return msgpack.ExtType(code, data)


def _record(message: list, table: Dict[str, Any], what: str) -> Any:
    kind = message[0]
    if kind in ENDED_KINDS and what == "event":
        return Ended(*message)
    if kind in (CONTINUE, STOP, PAUSE) and what == "command":
        return Answer(*message)
    cls = table.get(kind)
    if cls is None:
        raise ValueError(f"unknown worker {what} {kind!r} (a driver and worker of different fasttune versions?)")
    return cls(*message[1:])


def trial_spec(trial: Any, experiment_path: Optional[str], *, decide: Any, yields: bool, iteration: int,
               time_total: float, ckpt_index: int, restore: Optional[str],
               log_to_file: Any = (None, None)) -> Dict[str, Any]:
    """What a worker needs to run one segment of ``trial``: the ``StartTrial`` spec.

    ``decide``: the wire form of the trial's ``DecisionPoints``; ``yields``: the worker may
    pause it at those points for a queued trial without asking; ``iteration`` and
    ``time_total``: where its counters continue from; ``ckpt_index``: the number of its
    next checkpoint directory; ``restore``: the checkpoint to resume from (None: none);
    ``log_to_file``: the experiment's ``(stdout file, stderr file)`` names (None: that
    stream is not captured), which the spec carries only when one is set.
    ``chdir_to_trial_dir``: the driver's ``RAY_CHDIR_TO_TRIAL_DIR``, only when it is set
    (the worker reads its own otherwise): a driver's variable reaches workers of a pool
    started before it was set, as Ray Tune passes it to each trial's actor.
    A reset adds ``clone_from`` (another trial's checkpoint to copy in first), and the
    executor adds ``reuse_actors``.  In storage, ``restore_token`` / ``clone_token`` name the
    upload of the checkpoint to resume from / to clone (a worker node keeps a copy of what
    it uploaded), and ``restore_node`` the Ray node that keeps it (the executor's hint).
    """
    checkpoint_config = trial.checkpoint_config
    experiment_name, storage_path = _experiment_location(experiment_path)
    resources, bundles = _spec_resources(trial)
    spec = {
        "trial_id": trial.trial_id,
        "trainable": trial.trainable_name,
        "config": wire_config(trial.config),
        "trial_dir": trial.path,
        "trial_name": str(trial),
        "experiment_name": experiment_name,
        "storage_path": storage_path,
        "stop": trial.stopping_criterion or None,  # checked in the worker, at each result
        "decide": decide,
        "yield": yields,
        "iteration": iteration,
        "time_total": time_total,
        "ckpt_index": ckpt_index,
        "restore": restore,
        "resources": resources,
        # Several bundles travel as they are (a placement group's head and the rest); one is the totals.
        "bundles": bundles,
        # Class trainables: the worker calls save_checkpoint by this policy.
        "checkpoint_frequency": int(getattr(checkpoint_config, "checkpoint_frequency", 0) or 0),
        "checkpoint_at_end": bool(getattr(checkpoint_config, "checkpoint_at_end", False)),
        "log_to_file": list(log_to_file) if any(log_to_file) else None,
    }
    chdir_setting = os.environ.get(RAY_CHDIR_TO_TRIAL_DIR)
    if chdir_setting is not None:
        spec["chdir_to_trial_dir"] = chdir_setting
    return spec


@functools.lru_cache(maxsize=8)
def _experiment_location(experiment_path: Optional[str]) -> Tuple[str, str]:
    # (name, storage path) of the experiment: the same for every spec of a sweep.
    return os.path.basename(experiment_path or ""), os.path.dirname(experiment_path or "")


# The last PlacementGroupFactory a spec was made for, and its spec fields (resources,
# bundles): the trials of a sweep share one factory, whose properties build them anew.
_last_spec_resources: Tuple[Any, Dict[str, float], Optional[List[Dict[str, float]]]] = (None, {}, None)


def _spec_resources(trial: Any) -> Tuple[Dict[str, float], Optional[List[Dict[str, float]]]]:
    """``(trial.resources, _bundles_if_several(trial))``, made once per factory object (a
    PlacementGroupFactory never changes in place; a subclass is asked each time)."""
    global _last_spec_resources
    pgf = getattr(trial, "placement_group_factory", None)
    last_pgf, resources, bundles = _last_spec_resources
    if pgf is last_pgf and pgf is not None:
        return resources, bundles
    resources, bundles = trial.resources, _bundles_if_several(trial)
    if type(pgf) is PlacementGroupFactory:
        _last_spec_resources = (pgf, resources, bundles)
    return resources, bundles


def _bundles_if_several(trial: Any) -> Optional[List[Dict[str, float]]]:
    factory = getattr(trial, "placement_group_factory", None)
    bundles = getattr(factory, "bundles", None) or []
    return [dict(bundle) for bundle in bundles] if len(bundles) > 1 else None


# ---- encode / decode --------------------------------------------------------------------
def encode_commands(commands: List[Any]) -> bytes:
    """One ``poll``/``interrupt`` payload from command records (b"" for none)."""
    return pack([_wire(c) for c in commands]) if commands else b""


def decode_commands(payload: bytes) -> List[Any]:
    return [_record(m, _COMMANDS, "command")
            for m in msgpack.unpackb(payload, raw=False, strict_map_key=False, ext_hook=_command_ext)]


def encode_event(event: Any) -> bytes:
    """One event, packed; a reply is ``reply_bytes`` of these."""
    return pack(_wire(event))


def encode_results(trial_id: str, packed_results: List[bytes], times: bytes, checkpoints: Dict[int, str],
                   tokens: Optional[Dict[int, str]] = None) -> bytes:
    """A ``Results`` event from results packed one by one as they were reported (so
    ``report()`` finds an unencodable value at once): no result is packed twice.
    ``tokens`` (the checkpoints' upload tokens) travel only when there are some."""
    return (msgpack.Packer().pack_array_header(6 if tokens else 5) + pack(Results.kind) + pack(trial_id)
            + msgpack.Packer().pack_array_header(len(packed_results)) + b"".join(packed_results)
            + pack(times) + pack(checkpoints) + (pack(tokens) if tokens else b""))


def reply_bytes(events: List[bytes]) -> bytes:
    """A ``poll`` reply: the list of packed events."""
    return msgpack.Packer().pack_array_header(len(events)) + b"".join(events)


class MalformedReply(TuneError):
    """A worker's ``poll`` reply that is not a list of well-formed events."""


def decode_events(reply: bytes) -> List[Any]:
    """The event records of a ``poll`` reply, in order; :class:`MalformedReply` when the
    reply is not what a worker of this version sends.

    Example:
        >>> decode_events(pack([["started", "t1", 0.0, 1, "host", "127.0.0.1"], ["bogus", "t1"]]))
        Traceback (most recent call last):
        ...
        fasttune.execution._protocol.MalformedReply: ValueError: unknown worker event 'bogus' ...
    """
    try:
        events = []
        for message in msgpack.unpackb(reply, raw=False, strict_map_key=False):
            # The common kinds straight to their record (a reply holds several per trial);
            # anything else, malformed messages included, through _record.
            kind = message[0] if type(message) is list and message else None
            if kind == "results":
                event = Results(*message[1:])
                _check_results(event)
            elif kind == "started":
                event = Started(*message[1:])
            elif kind == "decide":
                event = Decide(*message[1:])
                _check_decision_point(event)
            elif kind in ENDED_KINDS:
                event = Ended(*message)
            else:
                event = _record(message, _EVENTS, "event")
                if type(event) is Results:
                    _check_results(event)
                elif type(event) is Yielded:
                    _check_decision_point(event)
            if type(event.trial_id) is not str:
                raise TypeError(f"a {type(event).__name__} event names the trial {event.trial_id!r}, not a string id")
            events.append(event)
    except Exception as exc:  # noqa: BLE001 - whatever is wrong with it, the reply is unreadable
        raise MalformedReply(f"{type(exc).__name__}: {exc}") from exc
    return events


_DICT_ONLY = frozenset([dict])


def _check_decision_point(event: Union[Decide, Yielded]) -> None:
    # A decision point's iteration is an int (a bool is not), a Decide's starved a bool
    # (the driver counts starved decisions): what the worker sends, checked like the rest.
    if type(event.iteration) is not int or (type(event) is Decide and type(event.starved) is not bool):
        form = "[iteration (int), starved (bool)]" if type(event) is Decide else "[iteration (int)]"
        raise TypeError(f"the {event.kind} event of trial {event.trial_id!r} does not have the form {form}")


def _check_results(event: Results) -> None:
    # What the driver's handlers take on trust (besides a string trial id, which
    # decode_events checks for every event): a Results event's fields in the shapes they
    # index and count.
    metrics, times, checkpoints, tokens = event.metrics, event.times, event.checkpoints, event.tokens
    if not (type(metrics) is list and type(times) is bytes and len(times) == 8 * len(metrics)
            and type(checkpoints) is dict and _DICT_ONLY.issuperset(map(type, metrics))
            and (not checkpoints or all(type(i) is int and type(name) is str for i, name in checkpoints.items()))
            and type(tokens) is dict
            and (not tokens or all(type(i) is int and type(token) is str for i, token in tokens.items()))):
        raise TypeError(f"the results event of trial {event.trial_id!r} does not have the form "
                        "[metric dicts], float64 times (one per dict), {index: checkpoint name}[, {index: token}]")
