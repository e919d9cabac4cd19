"""Reading back what W&B wrote in offline mode: the run's ``.wandb`` transaction log.

wandb 0.31 ships no reader of its own (``wandb sync`` only uploads), so this reads the documented
format: a 7-byte header (``:W&B``, magic 0xBEE1, version 0), then LevelDB-log records in 32 KiB
blocks (a 7-byte header each: CRC-32C, length, type FULL/FIRST/MIDDLE/LAST) whose payloads are
``wandb_internal_pb2.Record`` protobufs.
"""
import glob
import json
import os
import struct

from wandb.proto import wandb_internal_pb2

_BLOCK = 32 * 1024
_HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def records(path):
    """The Records of a ``.wandb`` file, in order."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:7] == _HEADER, f"{path} is not a W&B transaction log"
    out, pending, pos = [], b"", 7
    while pos + 7 <= len(data):
        if _BLOCK - pos % _BLOCK < 7:  # the block's tail is padding
            pos += _BLOCK - pos % _BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:
            pos += _BLOCK - pos % _BLOCK
            continue
        payload = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == _FULL:
            pending = payload
        elif kind == _FIRST:
            pending = payload
            continue
        elif kind == _MIDDLE:
            pending += payload
            continue
        else:
            assert kind == _LAST, kind
            pending += payload
        record = wandb_internal_pb2.Record()
        record.ParseFromString(pending)
        out.append(record)
        pending = b""
    return out


class OfflineRun:
    """What one offline run holds: its run record, config, logged rows, exit code, artifacts."""

    def __init__(self, run_dir):
        (path,) = glob.glob(os.path.join(run_dir, "run-*.wandb"))
        self.records = records(path)
        runs = [r.run for r in self.records if r.WhichOneof("record_type") == "run"]
        self.run = runs[0]
        self.config = {item.key: json.loads(item.value_json) for item in self.run.config.update}
        for record in self.records:
            if record.WhichOneof("record_type") == "config":
                for item in record.config.update:
                    self.config[item.key] = json.loads(item.value_json)
        self.rows = [{_key(item): json.loads(item.value_json) for item in r.history.item}
                     for r in self.records if r.WhichOneof("record_type") == "history"]
        exits = [r.exit.exit_code for r in self.records if r.WhichOneof("record_type") == "exit"]
        self.exit_code = exits[-1] if exits else None
        self.artifacts = [r.artifact for r in self.records if r.WhichOneof("record_type") == "artifact"]


def _key(item):
    return item.key or "/".join(item.nested_key)


def offline_runs(folder):
    """The offline runs under ``folder`` (a ``wandb`` directory's parent), by run id."""
    runs = {}
    for run_dir in glob.glob(os.path.join(folder, "wandb", "offline-run-*")):
        run = OfflineRun(run_dir)
        runs[run.run.run_id] = run
    return runs
