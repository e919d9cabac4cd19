"""TensorBoard event records that are not per-result scalars, encoded without
tensorboardX: the file-version header and the hparams plugin's three summaries.

Importing tensorboardX costs ~0.3 s of CPU, which a short sweep would pay in every
driver process just to log hparams at trial end; these few protobuf messages are
simple enough to write in protobuf's wire format directly (the field numbers are
those of TensorBoard's ``event.proto``, ``summary.proto`` and the hparams plugin's
``api.proto`` / ``plugin_data.proto``).  The tests read them back with TensorBoard.
"""
from __future__ import annotations

import functools
import struct
from typing import Any, Dict, Iterable, List, Tuple

from fasttune import _corelib as core

_HPARAMS_PLUGIN = b"hparams"
# HParamInfo.type (api.proto DataType) and SessionEndInfo.status (Status).
_DATA_TYPE_STRING, _DATA_TYPE_BOOL, _DATA_TYPE_FLOAT64 = 1, 2, 3
_STATUS_SUCCESS = 1


# A trial's hparams are encoded when it ends: the one-byte varints (all tags and most
# lengths) are looked up, and what depends only on the names and types is made once.
_ONE_BYTE = [bytes((n,)) for n in range(0x80)]


def _varint(n: int) -> bytes:
    if n < 0x80:
        return _ONE_BYTE[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field: a string, bytes or an embedded message."""
    size = len(payload)
    return b"".join((_ONE_BYTE[number << 3 | 2], _ONE_BYTE[size] if size < 0x80 else _varint(size), payload))


def _varint_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _double_field(number: int, value: float) -> bytes:
    return _varint(number << 3 | 1) + struct.pack("<d", value)


def event_record(wall_time: float, step: int = 0, summary: bytes = b"", file_version: str = "") -> bytes:
    """One framed Event record (wall_time, step, a serialized Summary or file_version)."""
    event = _double_field(1, wall_time)
    if step:
        event += _varint_field(2, step)
    if file_version:
        event += _field(3, file_version.encode())
    if summary:
        event += _field(5, summary)
    return core.tfrecord(event)


def file_version_record(wall_time: float) -> bytes:
    """The Event every event file starts with."""
    return event_record(wall_time, file_version="brain.Event:2")


def _plugin_summary(tag: str, content: bytes) -> bytes:
    """A Summary with one Value: ``tag`` and hparams plugin data ``content``."""
    plugin_data = _field(1, _HPARAMS_PLUGIN) + _field(2, content)
    value = _field(1, tag.encode()) + _field(9, _field(1, plugin_data))  # metadata.plugin_data
    return _field(1, value)


def _hparam(name: str, value: Any) -> Tuple[bytes, bytes]:
    """(HParamInfo, SessionStartInfo map entry or b"") for one hyperparameter."""
    if isinstance(value, str) or callable(value):
        text = value if isinstance(value, str) else getattr(value, "__name__", str(value))
        data_type, as_value = _DATA_TYPE_STRING, _field(3, text.encode())
    elif isinstance(value, bool):
        data_type, as_value = _DATA_TYPE_BOOL, _varint_field(4, int(value))
    elif isinstance(value, (int, float)):
        data_type, as_value = _DATA_TYPE_FLOAT64, _double_field(2, float(value))
    else:  # a list: named, without a value (as tensorboardX does)
        return _hparam_info(name, 0), b""
    name_field = _field(1, name.encode())
    return _hparam_info(name, data_type), _field(1, name_field + _field(2, as_value))


@functools.lru_cache(maxsize=4096)
def _hparam_info(name: str, data_type: int) -> bytes:
    """The HParamInfo field of a hyperparameter (``data_type`` 0: none given)."""
    info = _field(1, name.encode())
    if data_type:
        info += _varint_field(4, data_type)
    return _field(4, info)


@functools.lru_cache(maxsize=256)
def _experiment_field(infos: Tuple[bytes, ...], metric_tags: Tuple[str, ...]) -> bytes:
    """The Event's summary field of the hparams experiment summary (the same for every
    trial with these hyperparameter names and metrics: made once)."""
    metrics = b"".join(_field(5, _field(1, _field(2, tag.encode()))) for tag in metric_tags)
    return _field(5, _plugin_summary("_hparams_/experiment", _field(2, b"".join(infos) + metrics)))


_SESSION_END_FIELD = _field(5, _plugin_summary("_hparams_/session_end_info",
                                                _field(4, _varint_field(1, _STATUS_SUCCESS))))


def hparams_records(hparams: Dict[str, Any], metric_tags: Iterable[str], wall_time: float) -> bytes:
    """The hparams plugin's experiment, session start and session end summaries as
    framed Event records: ``hparams`` (str, bool, int, float, list, callable; None
    left out) and the scalar tags that are its metrics.

    Example:
        >>> records = hparams_records({"lr": 0.1, "opt": "adam"}, ["ray/tune/loss"], 100.0)
        >>> records.count(b"_hparams_/")
        3
    """
    infos: List[bytes] = []
    entries: List[bytes] = []
    for name, value in hparams.items():
        if value is None:
            continue
        info, entry = _hparam(name, value)
        infos.append(info)
        entries.append(entry)
    session_start = _plugin_summary("_hparams_/session_start_info", _field(3, b"".join(entries)))
    wall_time_field = _double_field(1, wall_time)  # each Event: its wall_time, then its summary
    return b"".join((core.tfrecord(wall_time_field + _experiment_field(tuple(infos), tuple(metric_tags))),
                     core.tfrecord(wall_time_field + _field(5, session_start)),
                     core.tfrecord(wall_time_field + _SESSION_END_FIELD)))
