"""TensorBoard event records that are not per-result scalars, encoded without
tensorboardX: the file-version header and the hparams plugin's three summaries.

Importing tensorboardX costs ~0.3 s of CPU, which a short sweep would pay in every
driver process just to log hparams at trial end; these few protobuf messages are
simple enough to write in protobuf's wire format directly.  The event core writes them
(``tb_file_version_record``, ``tb_hparams_records``: in C when compiled, a trial's end
being a writer thread's largest piece of Python work); ``fasttune._core_shared`` holds
their specification in Python.  The tests read them back with TensorBoard.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable

from fasttune import _corelib as core
from fasttune._core_shared import pb_bytes_field, pb_double_field, pb_varint_field


def event_record(wall_time: float, step: int = 0, summary: bytes = b"", file_version: str = "") -> bytes:
    """One framed Event record (wall_time, step, a serialized Summary or file_version)."""
    event = pb_double_field(1, wall_time)
    if step:
        event += pb_varint_field(2, step)
    if file_version:
        event += pb_bytes_field(3, file_version.encode())
    if summary:
        event += pb_bytes_field(5, summary)
    return core.tfrecord(event)


def file_version_record(wall_time: float) -> bytes:
    """The Event every event file starts with.

    Example:
        >>> file_version_record(100.0) == event_record(100.0, file_version="brain.Event:2")
        True
    """
    return core.tb_file_version_record(wall_time)


def hparams_records(hparams: Dict[str, Any], metric_tags: Iterable[str], wall_time: float) -> bytes:
    """The hparams plugin's experiment, session start and session end summaries as
    framed Event records: ``hparams`` (str, bool, int, float, list, callable; None
    left out) and the scalar tags that are its metrics.

    Example:
        >>> records = hparams_records({"lr": 0.1, "opt": "adam"}, ["ray/tune/loss"], 100.0)
        >>> records.count(b"_hparams_/")
        3
    """
    return core.tb_hparams_records(hparams, metric_tags, wall_time)
