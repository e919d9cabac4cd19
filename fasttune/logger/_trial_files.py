"""The per-trial files: ``params.json``, ``result.json``, ``progress.csv``, ``error.txt``.

The event core renders each batch of results into ready bytes; this module only appends
them, one unbuffered write per file per batch.  The file system calls run in order on one
writer thread: creating three files per trial costs more than everything else the driver
does for a short trial, and the thread overlaps it with the event loop.  ``flush()`` waits
until everything handed over is in the OS page cache (where it survives the driver being
killed); the runner flushes before each experiment snapshot and at the end.
"""
from __future__ import annotations

import json
import os
import shutil
from collections import OrderedDict
from typing import Any, Dict, Iterable, List, Optional, Tuple

from fasttune._atomic import atomic_write
from fasttune._jsonable import json_default
from fasttune.logger._writer_thread import WriterThread

# Trials with open result files; the least recently written are closed past this bound
# so population-scale sweeps do not run out of file descriptors.
MAX_OPEN_TRIALS = 512

RESULT_FILE = "result.json"
PROGRESS_FILE = "progress.csv"
PARAMS_FILE = "params.json"
ERROR_FILE = "error.txt"


def config_to_json(config: Dict[str, Any]) -> str:
    """The config as the JSON text spliced into every result line of its trial."""
    return json.dumps(config, default=json_default)


class TrialFiles:
    """Appends rendered result batches to each trial's files, on a writer thread.

    ``progress.csv`` is written only with ``write_csv`` (a ``CSVLoggerCallback`` is
    configured); ``result.json`` always, as restores and result readers need it.
    """

    def __init__(self, write_csv: bool = True, storage_sync: Any = None) -> None:
        # With the experiment kept in storage, checkpoints live there (workers upload them).
        self._storage_sync = storage_sync
        self._open: "OrderedDict[str, Tuple[Any, Any]]" = OrderedDict()
        self._writer = WriterThread("trial result files")
        self._submit = self._writer.submit
        self._write_csv = write_csv

    def flush(self) -> None:
        """Return once every file operation handed over so far is done."""
        self._writer.flush()

    # ---- operations, in the order they were asked for -------------------------------
    def init_trial(self, trial_dir: str, config: Dict[str, Any]) -> None:
        self._submit(self._init_trial, trial_dir, config)

    @staticmethod
    def _init_trial(trial_dir: str, config: Dict[str, Any]) -> None:
        os.makedirs(trial_dir, exist_ok=True)
        # Renamed into place: a driver killed mid-write leaves no torn params.json.  Not
        # fsynced, as result.json is not (a fsync per trial would cost more than the rest).
        text = json.dumps(config, indent=2, sort_keys=True, default=json_default)
        atomic_write(os.path.join(trial_dir, PARAMS_FILE), text, durable=False)

    def write(self, trial_dir: str, json_bytes: bytes, csv_bytes: bytes) -> None:
        self._submit(self._write, trial_dir, json_bytes, csv_bytes)

    def _write(self, trial_dir: str, json_bytes: bytes, csv_bytes: bytes) -> None:
        handles = self._open.get(trial_dir)
        if handles is None:
            handles = self._open_trial(trial_dir)
        else:
            self._open.move_to_end(trial_dir)
        if json_bytes:
            handles[0].write(json_bytes)
        if csv_bytes and handles[1] is not None:
            handles[1].write(csv_bytes)

    def _open_trial(self, trial_dir: str) -> Tuple[Any, Any]:
        while len(self._open) >= MAX_OPEN_TRIALS:
            _, (json_f, csv_f) = self._open.popitem(last=False)
            json_f.close()
            if csv_f is not None:
                csv_f.close()
        handles = (
            open(os.path.join(trial_dir, RESULT_FILE), "ab", buffering=0),
            open(os.path.join(trial_dir, PROGRESS_FILE), "ab", buffering=0) if self._write_csv else None,
        )
        self._open[trial_dir] = handles
        return handles

    def close(self, trial_dir: str) -> None:
        self._submit(self._close, trial_dir)

    def _close(self, trial_dir: str) -> None:
        handles = self._open.pop(trial_dir, None)
        if handles is not None:
            handles[0].close()
            if handles[1] is not None:
                handles[1].close()

    def close_all(self) -> None:
        """Flush, close every file and stop the writer thread."""
        self.flush()
        for trial_dir in list(self._open):
            self._close(trial_dir)
        self._writer.close()

    def write_error(self, trial_dir: str, header: str, text: str) -> str:
        path = os.path.join(trial_dir, ERROR_FILE)
        self._submit(self._write_error, trial_dir, path, f"{header}\n{text}\n")
        return path

    @staticmethod
    def _write_error(trial_dir: str, path: str, text: str) -> None:
        os.makedirs(trial_dir, exist_ok=True)
        with open(path, "a") as f:
            f.write(text)

    def remove_checkpoint(self, path: str) -> None:
        """Delete a checkpoint directory that retention dropped (in order with the rest; in
        storage, once a snapshot that no longer names it is there)."""
        if self._storage_sync is not None:
            self._storage_sync.delete_checkpoint_later(path)
        else:
            self._submit(shutil.rmtree, path, True)

    def prune_checkpoints(self, trial_dir: str, keep: Iterable[str], now: bool = False) -> None:
        """Delete the trial's ``checkpoint_*`` directories not named in ``keep``: ones a
        worker wrote but never reported before it died, and half-copied ``.tmp`` ones.
        Only for a trial that no worker will write to again; ``now``: on the caller's
        thread (for a trial no worker holds, before one is given it)."""
        prune = _prune_checkpoints if self._storage_sync is None else self._storage_sync.prune_checkpoints
        if now:
            prune(trial_dir, frozenset(keep))
        else:
            self._submit(prune, trial_dir, frozenset(keep))

    def rewind(self, trial_dir: str, rows: int) -> Optional[list]:
        """Keep only the trial's first ``rows`` results (those logged up to the checkpoint
        a restart resumes from), so each reported result stays in the files exactly once.
        By position, not by iteration: after PBT's exploit a history may repeat or skip
        iterations.  Returns the kept progress.csv header, or None when there is none."""
        self.flush()
        self._close(trial_dir)
        result_path = os.path.join(trial_dir, RESULT_FILE)
        kept_rows = 0
        if os.path.exists(result_path):
            kept = []
            with open(result_path, "rb") as f:
                for line in f:
                    if len(kept) == rows:
                        break
                    try:
                        json.loads(line)
                    except ValueError:
                        break  # a torn last line: nothing after it was complete
                    kept.append(line)
            kept_rows = len(kept)
            # Fsynced (a restart is rare): the rows a restore counts must be the rows on disk.
            atomic_write(result_path, b"".join(kept), durable=True)
        progress_path = os.path.join(trial_dir, PROGRESS_FILE)
        if not os.path.exists(progress_path):
            return None
        with open(progress_path, "rb") as f:
            lines = f.read().split(b"\r\n")
        if not lines or not lines[0]:
            return None
        header = lines[0]
        body = [line for line in lines[1:] if line][:kept_rows]
        # A header-only file is kept: the core writes the header once per trial ever.
        atomic_write(progress_path, b"\r\n".join([header] + body) + b"\r\n", durable=True)
        import csv

        return next(csv.reader([header.decode()]))


def _prune_checkpoints(trial_dir: str, keep: frozenset) -> None:
    try:
        names = os.listdir(trial_dir)
    except FileNotFoundError:
        return
    for name in names:
        if name.startswith("checkpoint_") and name not in keep:
            shutil.rmtree(os.path.join(trial_dir, name), ignore_errors=True)


def set_aside_unknown_trial_dirs(experiment_path: str, known: Iterable[str], folder: str) -> List[str]:
    """Move trial directories the experiment does not know (not in ``known``) into
    ``experiment_path/folder``; returns their names.

    A driver killed after its last snapshot may have made trials that snapshot does not
    hold.  A restored run makes its new trials afresh (with the same ids, and with the
    same configs when the searcher is seeded), so those directories would mix an old
    run's results with the new one's; set aside, they keep what was reported."""
    known = set(known)  # absolute, as trial paths are
    moved: List[str] = []
    for name in sorted(os.listdir(experiment_path)):
        path = os.path.join(experiment_path, name)
        if path in known or name == folder or not os.path.isdir(path):
            continue
        entries = os.listdir(path)
        if not any(e in (PARAMS_FILE, RESULT_FILE, PROGRESS_FILE) or e.startswith("checkpoint_") for e in entries):
            continue  # not a trial directory
        os.makedirs(os.path.join(experiment_path, folder), exist_ok=True)
        os.replace(path, os.path.join(experiment_path, folder, name))
        moved.append(name)
    return moved
