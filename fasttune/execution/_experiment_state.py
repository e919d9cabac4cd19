"""Experiment snapshots on disk: ``experiment_state-<seq>.msgpack`` and ``tuner.msgpack``.

A snapshot file is a fixed header followed by one msgpack document::

    magic b"FTSTATE\\0" | format u16 | reserved u16 | payload length u64 | crc32 u32 | payload

The header lets a reader tell a truncated or damaged file (length or checksum wrong)
from a snapshot written by a newer fasttune (format too high), so the first falls back
to the previous snapshot with a warning and the second is refused.  Files are written
atomically (temporary file, fsync, rename, fsync of the directory); the newest
:data:`KEEP` are kept.

Data is stored as msgpack through :mod:`fasttune._serialization`: values msgpack cannot
carry (a class in a config, a searcher object) are cloudpickled in place.  Reading never
unpickles unless the caller asks: :func:`load_latest` and :func:`read_trials` use a
``DataOnlyLoader`` (each pickled object stays a ``PickledObject`` placeholder), and only
a restore passes a ``Loader``, which unpickles and records the type of each object it
loaded, so the restore can say what it loaded as code.

Example:
    >>> import datetime, tempfile
    >>> d = tempfile.mkdtemp()
    >>> path = write_snapshot(d, {"format": 1, "when": datetime.date(2026, 1, 2), "dirnames": ["trial_a"]},
    ...                       [as_bin(pack(("a", 1)))], seq=1)
    >>> state, found = load_latest(d)
    >>> DataOnlyLoader().unpack(state["trials"][0]), found == path
    (('a', 1), True)
    >>> state["when"]  # read, not unpickled
    <pickled object, not loaded (... bytes; refers to datetime.date)>
"""
from __future__ import annotations

import contextlib
import gc
import glob
import logging
import os
import re
import struct
import zlib
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, NamedTuple, Optional, Set, Tuple, Union

import msgpack

from fasttune._atomic import atomic_write
from fasttune._resources import PlacementGroupFactory
from fasttune._serialization import DataOnlyLoader, Loader, PickleNotingPacker, bin_header, pack, pack_noting_pickles
from fasttune.error import TuneError

logger = logging.getLogger(__name__)

# The newest format this reader reads, and what a file is stamped with: 1 unless it needs
# more, so that an earlier fasttune still reads what it can.  2: a checkpoint entry of a
# trial record may carry its upload (token, node) after its result, which a reader of
# format 1 would take for damage.  3: it may also end with the trial's history at that
# checkpoint (see trial_record), which readers of 1 and 2 would misread.  4: finished
# trials' records may be in record segments (see write_segment) instead of the snapshot.
FORMAT_VERSION = 4
UPLOADS_FORMAT = 2
HISTORIES_FORMAT = 3
SEGMENTS_FORMAT = 4
KEEP = 2
SNAPSHOT_GLOB = "experiment_state-*.msgpack"
SEGMENT_GLOB = "experiment_records-*.msgpack"
TUNER_FILE = "tuner.msgpack"

_MAGIC = b"FTSTATE\x00"
_HEADER = struct.Struct("<8sHHQI")
_NAME = re.compile(r"experiment_state-(\d+)\.msgpack$")
_SEGMENT_NAME = re.compile(r"experiment_records-(\d+)\.msgpack")
# The most segments a snapshot may name (a writer names at most 17): a crafted list cannot
# make a reader read files without end.
_MAX_NAMED_SEGMENTS = 1024
NIL = b"\xc0"  # a packed None: the place of a record (or a directory name) that is in a segment


class CorruptExperimentState(TuneError):
    """A snapshot file is truncated, damaged, crafted or not a fasttune snapshot."""


class NewerExperimentState(TuneError):
    """A snapshot was written by a newer fasttune than this one."""


# ---- files ------------------------------------------------------------------------------
def write_file(path: str, payload: Union[bytes, Iterable[bytes]], version: int = 1) -> int:
    """Write ``payload`` behind the snapshot header (stamped with format ``version``),
    atomically and durably; returns its checksum.  A payload given in parts (an iterable
    that can be read twice: once for the checksum, once to write) is never joined, so a
    large snapshot costs no second copy of itself."""
    parts = (payload,) if isinstance(payload, (bytes, bytearray, memoryview)) else payload
    length = crc = 0
    for part in parts:
        length += len(part)
        crc = zlib.crc32(part, crc)
    header = _HEADER.pack(_MAGIC, version, 0, length, crc)
    atomic_write(path, _Concatenated((header,), parts), durable=True)
    return crc


class _Concatenated:
    """The byte strings of several iterables, one after another, each time it is read."""

    def __init__(self, *parts: Iterable[bytes]) -> None:
        self._parts = parts

    def __iter__(self) -> Iterator[bytes]:
        for part in self._parts:
            yield from part


class _Blocks:
    """``pieces`` joined into blocks of :data:`_PIECES_PER_BLOCK` as they are read: a
    hundred thousand trial records are written in a few dozen writes, and the most held
    at once is one block (about a megabyte), not a copy of them all."""

    def __init__(self, pieces: List[bytes]) -> None:
        self._pieces = pieces

    def __iter__(self) -> Iterator[bytes]:
        pieces = self._pieces
        for start in range(0, len(pieces), _PIECES_PER_BLOCK):
            yield b"".join(pieces[start:start + _PIECES_PER_BLOCK])


# Trial records are ~200-300 bytes: blocks of about a megabyte.
_PIECES_PER_BLOCK = 4096


def read_file(path: str) -> bytes:
    """The payload of a file :func:`write_file` wrote, checked against its header."""
    return _read_checked(path)[0]


def _read_checked(path: str) -> Tuple[bytes, int]:
    """:func:`read_file`'s payload, and its checksum."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < _HEADER.size:
        raise CorruptExperimentState(
            f"{path} is truncated: {len(data)} bytes, shorter than the {_HEADER.size}-byte header.")
    magic, version, _, length, crc = _HEADER.unpack_from(data)
    if magic != _MAGIC:
        raise CorruptExperimentState(f"{path} is not a fasttune experiment state file (it starts with {magic!r}).")
    if version > FORMAT_VERSION:
        raise NewerExperimentState(
            f"{path} was written by a newer fasttune (state format {version}; this version reads "
            f"up to {FORMAT_VERSION}). Upgrade fasttune to restore this experiment.")
    payload = data[_HEADER.size:]
    if len(payload) != length:
        raise CorruptExperimentState(
            f"{path} is truncated or damaged: its header says {length} bytes of state, it holds {len(payload)}.")
    if zlib.crc32(payload) != crc:
        raise CorruptExperimentState(f"{path} is damaged: its checksum does not match its contents.")
    return payload, crc


def is_snapshot_name(name: str) -> bool:
    """Whether the file name ``name`` is a snapshot's."""
    return _NAME.fullmatch(name) is not None


def snapshot_seq(name: str) -> int:
    """The sequence number in the snapshot file name ``name``."""
    return int(_NAME.fullmatch(name).group(1))


def segment_seq(name: str) -> Optional[int]:
    """The number in the record segment file name ``name`` (None: not a segment's name)."""
    found = _SEGMENT_NAME.fullmatch(name)
    return int(found.group(1)) if found else None


def snapshot_paths(experiment_path: str) -> List[str]:
    """The experiment's snapshot files, newest first."""
    found = []
    for path in glob.glob(os.path.join(glob.escape(experiment_path), SNAPSHOT_GLOB)):
        match = _NAME.search(path)
        if match:
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found, reverse=True)]


def latest_seq(experiment_path: str) -> int:
    """The sequence number of the newest snapshot file (0: none)."""
    paths = snapshot_paths(experiment_path)
    return int(_NAME.search(paths[0]).group(1)) if paths else 0


def write_snapshot(experiment_path: str, state: Dict[str, Any], records: List[bytes], seq: int,
                   version: int = 1, rotate: bool = True) -> str:
    """Write ``state`` plus ``state["trials"] = records`` as snapshot number ``seq`` (format
    ``version``: the newest format a record needs, as :data:`UPLOADS_FORMAT`), and (``rotate``)
    drop all but the newest :data:`KEEP`; a caller that knows which those are removes the
    others itself (:func:`remove_snapshot`), without listing the directory.  A record may be
    :data:`NIL` (as its ``state["dirnames"]`` entry is None) where it is in one of the
    segments ``state["segments"]`` lists (see :func:`write_segment`).

    ``records`` are each trial's record as :func:`trial_record` made it (a msgpack bin
    holding the packed record): a finished trial's record does not change, so the runner
    packs it once and splices the bytes into every later snapshot (an array header
    followed by the records is a msgpack array), and a restore hands those bytes back
    (:func:`load_latest` leaves them undecoded: see :func:`decode_trial`).
    """
    os.makedirs(experiment_path, exist_ok=True)
    path = os.path.join(experiment_path, f"experiment_state-{seq:010d}.msgpack")
    # A msgpack map is its header and then each key and value packed: packed one entry
    # at a time, with "trials" last (the records as they are, behind an array header),
    # no part of the snapshot is ever copied into one whole.
    head: List[bytes] = [_map_header(len(state) + 1)]
    for key, value in state.items():
        head.append(pack(key))
        _append_packed(head, value)
    head += [pack("trials"), b"\xdd" + struct.pack(">I", len(records))]
    write_file(path, _Concatenated(head, _Blocks(records)), version)
    for old in snapshot_paths(experiment_path)[KEEP:] if rotate else ():
        remove_snapshot(old)
    return path


def write_segment(experiment_path: str, seq: int, rows: List[int], dirnames: List[str],
                  records: List[bytes]) -> List[Any]:
    """Write the records of finished trials (their ``rows``, directory names and packed
    ``records``) as the record segment file of snapshot ``seq``, and return its entry for
    the ``"segments"`` of the snapshots that use it: ``[file name, number of records,
    checksum]``.  A finished trial's record never changes, so a sweep of many trials writes
    each once in a segment, and each snapshot only names the segments (format
    :data:`SEGMENTS_FORMAT`) instead of holding every record again.

    Example:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> entry = write_segment(d, 1, [0], ["t_0"], [as_bin(pack(("a", 1)))])
        >>> path = write_snapshot(d, {"format": 4, "dirnames": [None], "segments": [entry]}, [NIL], seq=1, version=4)
        >>> state, _ = load_latest(d)
        >>> DataOnlyLoader().unpack(state["trials"][0]), state["dirnames"]
        (('a', 1), ['t_0'])
    """
    os.makedirs(experiment_path, exist_ok=True)
    name = f"experiment_records-{seq:010d}.msgpack"
    head = [b"\x93", pack(rows), pack(dirnames), b"\xdd" + struct.pack(">I", len(records))]
    crc = write_file(os.path.join(experiment_path, name), _Concatenated(head, _Blocks(records)), SEGMENTS_FORMAT)
    return [name, len(rows), crc]


def segment_paths(experiment_path: str) -> List[str]:
    """The record segment files in the experiment directory."""
    return glob.glob(os.path.join(glob.escape(experiment_path), SEGMENT_GLOB))


def _fill_from_segments(experiment_path: str, state: Dict[str, Any]) -> None:
    """Put the records and directory names of the segments ``state["segments"]`` names in
    the places ``state["trials"]`` keeps for them (nil): a later segment's record of a row
    replaces an earlier one's, and one the snapshot holds itself (a trial that changed
    again once in a segment) stays.  ``state["segment_rows"]`` (in memory only) then flags
    the rows whose record came from a segment, for a restore to keep using them.

    Raises:
        CorruptExperimentState: a segment is missing, damaged, not the one the snapshot
            names, or does not fill exactly the places kept for it.
    """
    entries, records, dirnames = state["segments"], state.get("trials"), state.get("dirnames")
    if not (isinstance(entries, list) and isinstance(records, list) and isinstance(dirnames, list)
            and len(records) == len(dirnames) and len(entries) <= _MAX_NAMED_SEGMENTS):
        raise CorruptExperimentState("its segments, records and directory names do not fit together")
    if len({entry[0] if isinstance(entry, list) and entry else None for entry in entries}) != len(entries):
        raise CorruptExperimentState("it names a record segment twice")
    open_places = bytearray(record is None for record in records)
    for entry in entries:
        if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], str)
                and _SEGMENT_NAME.fullmatch(entry[0]) and isinstance(entry[1], int) and isinstance(entry[2], int)):
            raise CorruptExperimentState(f"it names a record segment as {entry!r}")
        name, count, crc = entry  # (a plain name: never a path out of the experiment directory)
        try:
            payload, found_crc = _read_checked(os.path.join(experiment_path, name))
        except FileNotFoundError:
            raise CorruptExperimentState(f"its record segment {name} is missing") from None
        except OSError as exc:
            raise CorruptExperimentState(f"its record segment {name} cannot be read ({exc})") from None
        if found_crc != crc:
            raise CorruptExperimentState(f"its record segment {name} is not the one it was written with")
        try:
            # (Plain msgpack: a segment holds no extension entries, so nothing in one is unpickled.)
            rows, names, segment_records = msgpack.unpackb(payload, raw=False, ext_hook=_no_extensions)
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise CorruptExperimentState(f"its record segment {name} cannot be read ({exc})") from None
        if not (isinstance(rows, list) and isinstance(names, list) and isinstance(segment_records, list)
                and len(rows) == len(names) == len(segment_records) == count):
            raise CorruptExperimentState(f"its record segment {name} does not hold {count} records")
        for row, dirname, record in zip(rows, names, segment_records):
            if not (type(row) is int and 0 <= row < len(records) and isinstance(dirname, str)
                    and isinstance(record, bytes)):
                raise CorruptExperimentState(f"its record segment {name} holds a record that is not one")
            if open_places[row]:
                records[row], dirnames[row] = record, dirname
    missing = [row for row, record in enumerate(records) if record is None]
    if missing:
        raise CorruptExperimentState(f"{len(missing)} trials' records are in no segment it names (row {missing[0]})")
    state["segment_rows"] = open_places


def _no_extensions(code: int, data: bytes) -> Any:
    raise ValueError(f"a record segment holds an extension entry (type {code})")


def remove_snapshot(path: str) -> None:
    """Remove the snapshot (or record segment) file ``path`` (gone already: nothing to do)."""
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _map_header(n: int) -> bytes:
    if n < 16:
        return bytes([0x80 | n])
    return b"\xde" + struct.pack(">H", n) if n < 65536 else b"\xdf" + struct.pack(">I", n)


def _append_packed(parts: List[bytes], value: Any) -> None:
    """Append ``value`` packed to ``parts``, the bytes it holds as they are: the TrialTable
    (a bin object) and the files of a searcher's saved state (a map of names to bin
    objects, megabytes for a searcher that keeps its points) are never copied into a
    packer's buffer and out again."""
    if type(value) is bytes:
        parts += [bin_header(len(value)), value]
    elif type(value) is dict and value and all(type(v) is bytes for v in value.values()):
        parts.append(_map_header(len(value)))
        for name, data in value.items():
            parts += [pack(name), bin_header(len(data)), data]
    else:
        parts.append(pack(value))


def load_latest(experiment_path: str, loader: Optional[Loader] = None) -> Tuple[Dict[str, Any], str]:
    """The newest readable snapshot and its path, decoded by ``loader``: by default a
    ``DataOnlyLoader``, which never unpickles (a restore passes a ``Loader``).

    A truncated, damaged or crafted newest snapshot falls back to the one before, with a
    warning.  ``loader.source`` is set to the snapshot read, for later messages.

    Raises:
        TuneError: ``experiment_path`` holds no snapshot (it is not an experiment).
        CorruptExperimentState: none of its snapshots can be read.
        NewerExperimentState: the newest snapshot comes from a newer fasttune.
    """
    loader = loader if loader is not None else DataOnlyLoader()
    for listing in range(1, _LISTINGS + 1):
        paths = snapshot_paths(experiment_path)
        if not paths:
            raise TuneError(
                f"{experiment_path} is not a fasttune experiment directory: it has no "
                f"{SNAPSHOT_GLOB} file. Pass the directory <storage_path>/<experiment name> that a "
                "Tuner wrote (Tuner.can_restore(path) checks a path first).")
        try:
            return _load_newest_readable(experiment_path, paths, loader, last_listing=listing == _LISTINGS)
        except _Vanished:
            continue  # a running sweep rotated them out meanwhile: its newer ones are there
    raise AssertionError("unreachable: the last listing raises no _Vanished")


# Listings of the snapshots load_latest reads through before one whose files all stay.
_LISTINGS = 3


class _Vanished(Exception):
    """A snapshot or segment listed a moment ago is gone (rotated out by a running sweep)."""


def _load_newest_readable(experiment_path: str, paths: List[str], loader: Loader,
                          last_listing: bool) -> Tuple[Dict[str, Any], str]:
    problems = []
    vanished = False
    for path in paths:
        try:
            state = loader.unpack(read_file(path))
            if isinstance(state, dict):
                if state.get("segments") is not None:
                    _fill_from_segments(experiment_path, state)
                if "dirnames" in state:  # (a snapshot without them is for its readers to refuse)
                    _check_dirnames(state["dirnames"])
        except NewerExperimentState:
            raise
        except (FileNotFoundError, CorruptExperimentState, ValueError, msgpack.UnpackException) as exc:
            problems.append(f"{os.path.basename(path)}: {exc}")
            if not os.path.exists(path):
                # Rotated out while read (its segments go after it): not damage.
                vanished = True
                continue
            logger.warning("Experiment state %s cannot be read (%s); trying the previous snapshot.", path, exc)
            continue
        if not isinstance(state, dict) or "trials" not in state:
            problems.append(f"{os.path.basename(path)}: not an experiment snapshot")
            continue
        if problems:
            logger.warning("Restoring %s from the older snapshot %s.", experiment_path, path)
        loader.source = path
        return state, path
    if vanished and not last_listing:
        raise _Vanished()
    raise CorruptExperimentState(
        f"None of the experiment snapshots in {experiment_path} can be read ({'; '.join(problems)}); "
        "the experiment cannot be restored. ResultGrid.from_path(path) still reads the trials' result files.")


def _check_dirnames(dirnames: Any) -> None:
    """Every reader and a restore join a trial's directory name to the experiment's path:
    one that is not a plain name (a crafted snapshot's "../outside") makes the snapshot
    unreadable, as other damage does (load_latest then tries the one before), and so do
    names that are not a list (a map's keys or a string's characters would be taken as
    names unchecked)."""
    from fasttune.experiment.trial import is_plain_dirname

    if type(dirnames) is not list:
        raise CorruptExperimentState(f"its trial directory names are a {type(dirnames).__name__}, not a list")
    for row, dirname in enumerate(dirnames):
        if not is_plain_dirname(dirname):
            raise CorruptExperimentState(f"row {row} names the trial directory {dirname!r}, not one plain name")


def has_snapshot(experiment_path: str) -> bool:
    return bool(snapshot_paths(experiment_path))


# ---- trial records ------------------------------------------------------------------------
class KeySets:
    """Result dicts as ``[key-set index, values]``: the trials of a sweep report the same
    keys, so each key tuple is stored once per snapshot instead of once per trial."""

    def __init__(self, keys: Optional[List[List[str]]] = None) -> None:
        self.keys: List[List[str]] = [list(k) for k in keys or []]
        self._index: Dict[tuple, int] = {tuple(k): i for i, k in enumerate(self.keys)}

    def encode(self, result: Optional[Dict[str, Any]]) -> Optional[list]:
        if not result:
            return None
        keys = tuple(result)
        index = self._index.get(keys)
        if index is None:
            index = self._index[keys] = len(self.keys)
            self.keys.append(list(keys))
        return [index, list(result.values())]

    def decode(self, encoded: Optional[list]) -> Dict[str, Any]:
        if not encoded:
            return {}
        return dict(zip(self.keys[encoded[0]], encoded[1]))


class TrialRecord(NamedTuple):
    """A trial's record as :func:`trial_record` packs it, field by field (status,
    iteration, failures, metrics and time live in the TrialTable snapshot beside it, row =
    position; its directory's name in the snapshot's "dirnames" list)."""

    trial_id: str
    config: Any
    experiment_tag: str
    custom_name: Optional[str]
    resources: list  # [bundles, strategy]
    evaluated_params: Any  # None: the same as config
    results_seen: int
    last_result: Optional[list]  # KeySets-encoded
    checkpoints: list  # [name, rows counted, encoded result or None, *upload, history?] each
    next_checkpoint_index: int
    error_msg: Optional[str]
    start_time: Any
    end_time: Any


# The fields of a trial record, in order.
RECORD_FIELDS = TrialRecord._fields


def unpack_record(record: bytes, loader: Loader) -> TrialRecord:
    """The fields of the packed ``record`` (without its bin header, see :func:`unbin`).

    Raises:
        ValueError, TypeError, msgpack.UnpackException: it is not a trial record.
    """
    fields = loader.unpack(record)
    if type(fields) is not list or len(fields) != len(RECORD_FIELDS):
        raise ValueError(f"a trial record has {len(RECORD_FIELDS)} fields, not {_count_of(fields)}")
    return TrialRecord._make(fields)


def _count_of(fields: Any) -> str:
    return str(len(fields)) if isinstance(fields, (list, tuple)) else f"a {type(fields).__name__}"


def trial_record(trial: Any, keysets: KeySets, checkpoint_rows: Dict[str, int],
                 next_checkpoint_index: int, packer: Optional[PickleNotingPacker] = None,
                 uploads: Optional[Dict[str, Tuple[str, Optional[str]]]] = None,
                 histories: Optional[Mapping[str, Any]] = None) -> Tuple[bytes, List[str]]:
    """One trial's record, packed (by ``packer`` when given), and the type names of the
    objects in it that had to be cloudpickled.  A checkpoint saved with the trial's last
    result stores ``None`` for its result instead of a second copy; one in storage whose
    upload ``uploads`` names (path -> token, node) stores them after it, so that a restored
    experiment's first resume can use a node's kept copy too.  One whose history
    ``histories`` knows (path -> (metrics, own_last), see ``CheckpointBook.record``) ends
    with ``[last metric, best metric]``, and the trial's own last result then where the
    checkpoint's is not it, so that a restored trial's cut back to it is as exact."""
    last = trial.last_result
    checkpoint_results = trial.checkpoint_results
    if checkpoint_results:
        # Looked up once per record: the book's views answer len() and get() in Python.
        rows_of, upload_of, encode = checkpoint_rows.get, (uploads or {}).get, keysets.encode
        history_of = (histories or {}).get
        checkpoints = []
        for checkpoint, result in checkpoint_results:
            path = checkpoint.path
            saved = [os.path.basename(path), rows_of(path, 0), None if result == last else encode(result),
                     *upload_of(path, ())]
            history = history_of(path)
            if history is not None:
                (last_metric, best_metric), own_last = history
                saved.append([last_metric, best_metric] if own_last is None
                             else [last_metric, best_metric, encode(own_last)])
            checkpoints.append(saved)
    else:
        checkpoints = []
    config = trial.config
    evaluated = trial.evaluated_params
    packed, pickled = (pack_noting_pickles if packer is None else packer.pack)([
        trial.trial_id, config, trial.experiment_tag, trial.custom_trial_name,
        _packed_resources(trial.placement_group_factory), None if evaluated == config else evaluated,
        trial.results_seen, keysets.encode(last), checkpoints, next_checkpoint_index, trial.error_msg,
        trial.start_time, trial.end_time,
    ])
    return as_bin(packed), pickled


# The last PlacementGroupFactory a record packed, and its [bundles, strategy]: the trials
# of a sweep share one factory, and its ``bundles`` property copies each bundle.
_last_resources: Tuple[Any, list] = (None, [])


def _packed_resources(pgf: Any) -> list:
    """``[pgf.bundles, pgf.strategy]``, made once per factory object (a
    PlacementGroupFactory never changes in place; a subclass is asked each time)."""
    global _last_resources
    last = _last_resources
    if last[0] is pgf:
        return last[1]
    packed = [pgf.bundles, pgf.strategy]
    if type(pgf) is PlacementGroupFactory:
        _last_resources = (pgf, packed)
    return packed


def as_bin(data: bytes) -> bytes:
    """``data`` as one msgpack bin object."""
    return bin_header(len(data)) + data


_TEMPLATE = "trial template"  # the cache's entry for the Trial the others are made like
_LAST_RESOURCES = "last resources"  # ... and for the last (request, PlacementGroupFactory)

# What decode_trial sets from the record; a lazily restored trial decodes them on first use.
DECODED_FIELDS = (
    "trial_id", "config", "evaluated_params", "experiment_tag", "placement_group_factory", "stopping_criterion",
    "last_result", "checkpoints", "checkpoint_results", "results_seen", "start_time", "end_time", "error_msg",
    "error_file", "error", "_dirname", "_custom_name", "_path",
)


def _template(cache: Dict[Any, Any], experiment_path: str, trainable_name: Optional[str], trial_kwargs: Dict[str, Any]) -> Any:
    template = cache.get(_TEMPLATE)
    if template is None:
        from fasttune.experiment.trial import Trial

        template = cache[_TEMPLATE] = Trial(trainable_name or "", experiment_path=experiment_path, **trial_kwargs)
    return template


def decode_trial(record: bytes, row: int, dirname: str, table: Any, keysets: KeySets, experiment_path: str,
                 cache: Dict[Any, Any], loader: Loader, trainable_name: Optional[str] = None,
                 uploads: Optional[Dict[str, Tuple[str, Optional[str]]]] = None,
                 histories: Optional[Dict[str, Tuple[Tuple[float, float], Optional[Dict[str, Any]]]]] = None,
                 **trial_kwargs: Any) -> Tuple[Any, Dict[str, int], int]:
    """The :class:`~fasttune.experiment.trial.Trial` of the packed ``record`` (row ``row``
    of ``table``, directory ``dirname``), the result rows each of its checkpoints counts, and its next checkpoint
    index; the uploads its checkpoints name (see :func:`trial_record`) go into ``uploads``,
    their histories (path -> (metrics, own_last); none in an older record) into ``histories``.
    ``cache`` holds what the trials of one restore share: a PlacementGroupFactory
    per resource request, and a template Trial with the experiment-wide settings."""
    from fasttune.checkpoint import Checkpoint
    from fasttune.execution.placement_groups import PlacementGroupFactory
    from fasttune.experiment.trial import Trial, failure_text

    try:
        (trial_id, config, tag, custom_name, resources, evaluated, results_seen, last,
         checkpoints, next_index, error_msg, start_time, end_time) = unpack_record(record, loader)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise CorruptExperimentState(
            f"{loader.source or experiment_path}: the record of trial {dirname} cannot be read ({exc}).") from None
    previous = cache.get(_LAST_RESOURCES)
    if previous is not None and previous[0] == resources:
        pgf = previous[1]
    else:
        key = repr(resources)
        pgf = cache.get(key)
        if pgf is None:
            pgf = cache[key] = PlacementGroupFactory(resources[0], resources[1])
        cache[_LAST_RESOURCES] = (resources, pgf)
    template = _template(cache, experiment_path, trainable_name, trial_kwargs)
    trial = Trial._like(template, trial_id, config, dict(config) if evaluated is None else evaluated, tag, dirname,
                        pgf)
    trial._custom_name = custom_name
    trial._table, trial._row = table, row
    trial.results_seen, trial.start_time, trial.end_time = results_seen, start_time, end_time
    trial.last_result = last_result = keysets.decode(last)
    rows = {}
    prefix = trial.path + os.sep  # absolute: the experiment path is
    at = Checkpoint._at
    for name, counted, result, *rest in checkpoints:  # an older record names no upload, no history
        checkpoint = at(prefix + name)
        trial.checkpoint_results.append((checkpoint, keysets.decode(result) if result else last_result))
        rows[checkpoint.path] = counted
        if len(rest) >= 2 and uploads is not None:  # [token, node] (then maybe the history)
            uploads[checkpoint.path] = (rest[0], rest[1])
        if len(rest) % 2 and histories is not None:  # the history ends it
            history = rest[-1]
            histories[checkpoint.path] = ((history[0], history[1]),
                                          keysets.decode(history[2]) if len(history) > 2 else None)
    trial.checkpoints = [c for c, _ in trial.checkpoint_results]
    if error_msg:
        trial.error_msg = error_msg
        trial.error_file = prefix + "error.txt"
        trial.error = TuneError(failure_text(str(trial), error_msg))
    return trial, rows, next_index


def lazy_trial(record: bytes, row: int, dirname: str, source: "RecordSource") -> Any:
    """Like :func:`decode_trial`'s trial, for one that stays finished: only its id is read
    now; the rest of ``record`` (:func:`as_bin` bytes) is decoded the first time any of it
    is used (see :class:`RecordSource`).  A restore of 100,000 finished trials then costs
    microseconds and a few hundred bytes per trial."""
    from fasttune.experiment.trial import Trial

    return Trial.lazily_decoded({"trial_id": _record_trial_id(unbin(record), source.loader), "_row": row,
                                 "_dirname": dirname, "_record": record, "_source": source})


class RecordSource:
    """What the compact trials of one experiment share: the settings every trial of it
    has and the TrialTable holding their rows (answered without decoding), and what
    decodes a trial's packed record when anything else of it is read (:meth:`expand`).

    A finished trial is compact when its record is kept (the snapshot writer does that
    once it has packed it, a restore for the finished trials it reads): its ``__dict__``
    holds only its id, table row, directory name and record.
    """

    def __init__(self, template: Any, keysets: KeySets, experiment_path: str, loader: Loader, table: Any) -> None:
        # Read without decoding: the experiment's settings, less the per-trial fields (and
        # the stopping criterion, a dict each trial has its own copy of once decoded).
        self.shared = {k: v for k, v in template.__dict__.items()
                       if k not in DECODED_FIELDS and k not in ("_table", "_row")}
        self.shared["_path"] = None  # computed again when asked for
        self.shared["_table"] = table
        # What holds_settings_of compares, made once (shared does not change after this).
        self._settings = {k: v for k, v in self.shared.items() if k != "_path"}.items()
        self.keysets = keysets
        self.experiment_path = experiment_path
        self.loader = loader
        self.cache: Dict[Any, Any] = {_TEMPLATE: template}

    @classmethod
    def for_restore(cls, cache: Dict[Any, Any], keysets: KeySets, experiment_path: str, loader: Loader, table: Any,
                    trainable_name: Optional[str] = None, **trial_kwargs: Any) -> "RecordSource":
        """The source of a restore's finished trials (rows of ``table``), sharing ``cache``
        with its :func:`decode_trial` calls (the template Trial with the experiment's settings)."""
        source = cls(_template(cache, experiment_path, trainable_name, trial_kwargs), keysets, experiment_path, loader,
                     table)
        source.cache = cache
        return source

    @classmethod
    def like(cls, trial: Any, keysets: KeySets, experiment_path: str) -> "RecordSource":
        """A source for trials with ``trial``'s experiment settings."""
        from fasttune.experiment.trial import Trial

        template = Trial.__new__(Trial)
        template.__dict__ = {k: v for k, v in trial.__dict__.items() if k not in DECODED_FIELDS}
        # What decode_trial does not set from a record: a trial's error, when it has none.
        template.__dict__.update(stopping_criterion=trial.stopping_criterion, error=None, error_msg=None,
                                 error_file=None)
        return cls(template, keysets, experiment_path, DataOnlyLoader(), trial._table)

    def holds_settings_of(self, trial: Any) -> bool:
        """Whether ``trial``'s experiment settings are the ones this source answers with."""
        state = trial.__dict__
        # Each setting is in the trial's attributes with an equal value (compared in C,
        # identity first: the trials of a sweep hold the very same objects).
        return self._settings <= state.items() and (
            state.get("stopping_criterion") == self.cache[_TEMPLATE].stopping_criterion)

    def result_parts(self, trial: Any) -> Optional[Tuple[Dict[str, Any], Dict[str, Any], Optional[str]]]:
        """The config, last result and path of the compact ``trial``, decoded without making
        a whole Trial of it (and without setting anything on it): all that the Result of a
        trial needs that has no checkpoint, no error and nothing set on it since it became
        compact (None for any other, which :meth:`expand` then decodes).  Reading the
        results of a 100,000-trial sweep this way costs half as much as decoding each trial."""
        if not trial._is_only_compact():
            return None  # (an error kept beside the record, or an attribute set since)
        state = trial.__dict__
        try:
            record = unpack_record(unbin(state["_record"]), self.loader)
            if record.checkpoints or record.error_msg:
                return None
            last_result = self.keysets.decode(record.last_result)
        except (ValueError, TypeError, LookupError, msgpack.UnpackException):
            return None  # (expand says what is wrong with it, as for any read of the trial)
        experiment_path = self.shared.get("experiment_path")
        # (The path a decoded trial has: Trial._like's.)
        path = None if experiment_path is None else experiment_path + os.sep + state["_dirname"]
        return record.config, last_result, path

    def expand(self, trial: Any) -> None:
        """Make the compact ``trial`` whole: decode its record; what was set on the trial
        since it became compact stays as it was set."""
        state = trial.__dict__
        # Decoded before the record is let go: a record that fails to decode stays, and
        # says so again on the next read, instead of leaving a trial with no attributes.
        full = decode_trial(unbin(state["_record"]), state["_row"], state["_dirname"], self.shared["_table"],
                            self.keysets, self.experiment_path, self.cache, self.loader)[0]
        del state["_record"], state["_source"]
        for name, value in full.__dict__.items():
            state.setdefault(name, value)


def unbin(data: bytes) -> bytes:
    """The bytes :func:`as_bin` wrapped."""
    kind = data[0]
    start = 2 if kind == 0xC4 else 3 if kind == 0xC5 else 5
    return data[start:]


def _record_trial_id(record: bytes, loader: Loader) -> str:
    # A record is an array of RECORD_FIELDS whose first element is the id, a short string.
    if len(record) > 2 and record[0] == 0x90 | len(RECORD_FIELDS) and 0xA0 <= record[1] <= 0xBF:
        return record[2:2 + (record[1] & 0x1F)].decode("utf-8")
    return loader.unpack(record)[0]


def read_trials(experiment_path: str) -> List[Any]:
    """The trials of the experiment's latest snapshot, as Trial objects (no Ray needed).

    Nothing is unpickled: an object a trial's config holds as a pickle is a
    ``PickledObject`` placeholder here (``Tuner.restore`` loads it).

    A trial whose record cannot be read (damaged, crafted, a config that is not a dict)
    is left out with a warning naming the file and the trial, as one whose directory name
    is a file of the experiment (a snapshot's own name, say).

    Raises:
        CorruptExperimentState: the snapshot read is not consistent (the message names
            the file).
    """
    loader = DataOnlyLoader()
    path, table, keysets, records, dirnames, trainable_name = _rows_of_latest(experiment_path, loader)
    cache: Dict[Any, Any] = {}
    trials = []
    files = _names_of_files(experiment_path)
    with collector_paused():
        for row, (record, dirname) in enumerate(zip(records, dirnames)):
            if dirname in files:
                _leave_out(path, dirname, "its directory name is a file of the experiment")
                continue
            try:
                trial = decode_trial(record, row, dirname, table, keysets, experiment_path, cache, loader,
                                     trainable_name)[0]
                if not isinstance(trial.config, dict):
                    raise ValueError(f"its config is a {type(trial.config).__name__}, not a dict")
            except Exception as exc:  # noqa: BLE001 - a damaged record, whatever decoding it raised
                # decode_trial's own error names the file and the trial already: its cause says the rest.
                cause = exc.__context__ if isinstance(exc, CorruptExperimentState) and exc.__context__ else exc
                _leave_out(path, dirname, f"its record cannot be read ({cause})")
                continue
            trials.append(trial)
    return trials


def _names_of_files(experiment_path: str) -> Set[str]:
    """What in the experiment directory is not a directory (its snapshots, ``tuner.pkl``):
    a snapshot that names one of them as a trial's directory is crafted, and no reader
    shows that file as a trial."""
    try:
        with os.scandir(experiment_path) as entries:
            return {entry.name for entry in entries if not entry.is_dir()}
    except OSError:  # (gone, or not readable: there is no file to mistake for a trial)
        return set()


def _leave_out(path: str, dirname: str, problem: str) -> None:
    """Warn that the reader of snapshot ``path`` leaves out trial ``dirname`` (``problem``
    says why): one bad record must not hide the other trials."""
    logger.warning("Experiment state %s: trial %s is left out: %s.", path, dirname, problem)


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for the block: decoding 100,000 records makes
    millions of small objects, none cyclic, and the collector's passes over them were
    about 40% of a reader's time.

    The switch is process-wide: every thread runs without the collector meanwhile, and
    the block's end turns it back on when it was on before, undoing a ``gc.disable()``
    another thread made in between (a block inside another leaves it off)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class TrialSummary(NamedTuple):
    """What a reader shows of a trial from its snapshot record alone: no Trial is built,
    and nothing is unpickled (a pickled value is a ``PickledObject`` placeholder)."""

    trial_id: str
    status: str
    config: Dict[str, Any]
    last_result: Dict[str, Any]  # {} when it reported nothing
    error: Optional[str]  # the message of ``Trial.error`` for a failed trial, else None


class SnapshotSummaries(NamedTuple):
    """What :func:`read_trial_summaries` read, by trial directory name."""

    trials: Dict[str, TrialSummary]  # the trials whose records were decoded
    statuses: Dict[str, str]  # every trial's status, decoded or not (the table has them)


def read_trial_summaries(experiment_path: str,
                         wanted: Optional[Callable[[str], bool]] = None) -> SnapshotSummaries:
    """The trials of the latest snapshot by directory name, as :class:`TrialSummary`: for
    readers of a trial that has no result files (a simulated sweep writes none), whose last
    result the snapshot keeps.  Only the records of the directory names ``wanted`` accepts
    (default: all) are decoded, each data-only into its fields: at 100,000 trials a
    fraction of :func:`read_trials`' cost; every trial's status comes with them.  A trial
    whose record cannot be read, or whose directory name is a file of the experiment, is
    left out with a warning, as in :func:`read_trials`.

    Raises:
        TuneError: ``experiment_path`` holds no snapshot.
        CorruptExperimentState: no snapshot can be read, or the one read is not consistent
            (the message names the file).
    """
    loader = DataOnlyLoader()
    path, table, keysets, records, dirnames, trainable_name = _rows_of_latest(experiment_path, loader)
    with collector_paused():
        return _summaries(path, table, keysets, records, dirnames, trainable_name or "", loader, wanted)


def summaries_of(trials: List[Any]) -> SnapshotSummaries:
    """What :func:`read_trial_summaries` reads, made from the trials :func:`read_trials`
    read: a reader that needs both decodes each record once."""
    summaries, statuses = {}, {}
    with collector_paused():  # (100,000 tuples beside 100,000 trials: nothing cyclic)
        for trial in trials:
            dirname, status = trial.storage_dirname, trial.status
            error = str(trial.error) if trial.error_msg else None  # decode_trial's failure text
            # (The config copied: the grid's Results and the analysis' trials do not share one.)
            summaries[dirname] = TrialSummary(str(trial.trial_id), status, dict(trial.config), trial.last_result, error)
            statuses[dirname] = status
    return SnapshotSummaries(summaries, statuses)


def _rows_of_latest(experiment_path: str, loader: Loader) -> Tuple[str, Any, KeySets, List[Any], List[Any], Any]:
    """What the readers of the latest snapshot (``read_trials``, ``read_trial_summaries``)
    decode its rows from: its path, TrialTable, KeySets, records, directory names and
    trainable name.

    Raises:
        CorruptExperimentState: the snapshot read is not consistent (the message names the file).
    """
    from fasttune import _corelib as core

    state, path = load_latest(experiment_path, loader)
    try:
        table = core.TrialTable.from_snapshot(state["table"])
        keysets = KeySets(state["keysets"])
        records, dirnames = list(state["trials"]), list(state["dirnames"])
        trainable_name = state.get("trainable_name")
    except Exception as exc:  # noqa: BLE001 - damaged bytes fail in many ways; all mean the same here
        raise CorruptExperimentState(f"{path} is not a consistent experiment snapshot ({exc}).") from None
    if not len(table) == len(records) == len(dirnames):
        raise CorruptExperimentState(f"{path} is inconsistent: its table has {len(table)} rows for {len(records)} "
                                     f"trials and {len(dirnames)} trial directories.")
    return path, table, keysets, records, dirnames, trainable_name


def _summaries(path: str, table: Any, keysets: KeySets, records: List[bytes], dirnames: List[str],
               trainable_name: str, loader: Loader,
               wanted: Optional[Callable[[str], bool]]) -> SnapshotSummaries:
    from fasttune import _corelib as core
    from fasttune.experiment.trial import failure_text, trial_name

    status_names = core.STATUS_NAMES
    files = _names_of_files(os.path.dirname(path))
    summaries, statuses = {}, {}
    for row, (record, dirname) in enumerate(zip(records, dirnames)):
        if dirname in files:
            _leave_out(path, dirname, "its directory name is a file of the experiment")
            continue
        status = statuses[dirname] = status_names[table.get_status(row)]
        if wanted is not None and not wanted(dirname):
            continue
        try:
            fields = unpack_record(record, loader)
            if not isinstance(fields.config, dict):
                raise ValueError(f"its config is a {type(fields.config).__name__}, not a dict")
            last_result = keysets.decode(fields.last_result)
        except Exception as exc:  # noqa: BLE001 - a damaged record, whatever decoding it raised
            _leave_out(path, dirname, f"its record cannot be read ({exc})")
            continue
        # Trial.error's message, as decode_trial makes it.
        error = (failure_text(trial_name(trainable_name, fields.trial_id, fields.custom_name), fields.error_msg)
                 if fields.error_msg else None)
        summaries[dirname] = TrialSummary(str(fields.trial_id), status, fields.config, last_result, error)
    return SnapshotSummaries(summaries, statuses)
