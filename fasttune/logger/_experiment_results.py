"""The writer of the experiment-level results store (``RunConfig(results_store="experiment")``).

:class:`ExperimentResultFiles` takes the place of the per-trial :class:`TrialFiles`: the
same calls from the runner, on the same writer thread, but each writer batch becomes
one append to the store's current segment (format in :mod:`fasttune._results_store`), so
a sweep of 100,000 one-result trials makes a handful of files instead of 100,000
directories.  Error files and checkpoints still go into the trial's directory, which is
then made.

Example:
    >>> import os, tempfile
    >>> from fasttune._results_store import read_store
    >>> exp = tempfile.mkdtemp()
    >>> files = ExperimentResultFiles(exp)
    >>> trial_dir = os.path.join(exp, "t_0")
    >>> files.init_trial(trial_dir, {"lr": 0.1}, trial_id="a")
    >>> files.write(trial_dir, b'{"loss": 1.0, "trial_id": "a"}\\n', b"")
    >>> files.close_all()
    >>> read_store(exp)["t_0"].rows, os.path.exists(trial_dir)
    ([{'loss': 1.0, 'trial_id': 'a'}], False)
"""
from __future__ import annotations

import logging
import os
import shutil
from typing import Any, Dict, List, Optional

from fasttune import _results_store as store
from fasttune.logger._append import append_whole
from fasttune.logger._trial_files import TrialFiles, config_to_json

logger = logging.getLogger(__name__)


class ExperimentResultFiles(TrialFiles):
    """All trials' results, configs and restarts appended to the experiment's store."""

    makes_trial_dirs = False

    def __init__(self, experiment_path: str, storage_sync: Any = None) -> None:
        super().__init__(write_csv=False, storage_sync=storage_sync)
        self._directory = os.path.join(experiment_path, store.STORE_DIR)
        # The writer thread's own: the bytes its batch staged, in call order, and the trials
        # with results among them (told when they cannot be written).
        self._pending: List[bytes] = []
        self._pending_trials: List[str] = []
        self._segment: Any = None  # the open segment, once written to
        self._index = 0  # the segment written last (0: none yet in this run)
        self._size = 0  # its length
        self._row_counts: Optional[Dict[str, int]] = None  # after a failed write, read back once

    # ---- the runner's calls ----------------------------------------------------------------
    def init_trial(self, trial_dir: str, config: Dict[str, Any], trial_id: Optional[str] = None) -> None:
        self._submit(self._stage_trial, os.path.basename(trial_dir), trial_id or os.path.basename(trial_dir), config)

    def write(self, trial_dir: str, json_bytes: bytes, csv_bytes: bytes) -> None:
        if json_bytes:
            self._submit(self._stage_results, trial_dir, json_bytes, b"")

    def close(self, trial_dir: str) -> None:
        pass  # no file is held open per trial

    def rewind(self, trial_dir: str, rows: int) -> None:
        """Drop the trial's results after its first ``rows`` (a ``keep`` line); no CSV
        header to give back."""
        self._submit(self._stage_keep, os.path.basename(trial_dir), rows)
        return None

    def keep_whole_rows(self, trial_dir: str) -> int:
        """How many of the trial's results the store holds (after a write failed, each
        append is whole or absent, so nothing needs cutting)."""
        self.wait()
        if self._row_counts is None:
            stored = store.read_store(os.path.dirname(self._directory)) or {}
            self._row_counts = {name: len(t.rows) for name, t in stored.items()}
        return self._row_counts.get(os.path.basename(trial_dir), 0)

    def has_params(self, trial_dir: str) -> bool:
        # A restarted trial's config line is written again: a lost write cannot drop it.
        return False

    def position(self) -> List[int]:
        """Where the store ends (segment, length), for a snapshot: call after ``flush()``."""
        return [self._index, self._size]

    def restore_position(self, position: Optional[List[int]], aside: str) -> None:
        """Cut the store back to ``position`` (what a snapshot counted), moving what came
        after it into the folder ``aside`` of the experiment; later writes begin a new
        segment.  ``None``: the snapshot predates any store (nothing to keep)."""
        index, size = (int(position[0]), int(position[1])) if position else (0, 0)
        experiment_path = os.path.dirname(self._directory)
        set_aside = os.path.join(experiment_path, aside, store.STORE_DIR)
        highest = 0
        for each, path in store.segment_paths(experiment_path):
            highest = max(highest, each)
            if each < index:
                continue
            length = os.path.getsize(path)
            if each == index and length <= size:
                continue
            os.makedirs(set_aside, exist_ok=True)
            if each == index:
                with open(path, "r+b") as f:
                    f.seek(size)
                    with open(os.path.join(set_aside, os.path.basename(path)), "wb") as tail:
                        shutil.copyfileobj(f, tail)
                    f.truncate(size)
                    os.fsync(f.fileno())
            else:
                os.replace(path, os.path.join(set_aside, os.path.basename(path)))
                self._forget_in_storage(path)
        # Never a name used before (storage may still hold a file under it); until the next
        # write, the store ends where the newest kept segment does.
        self._index = highest
        newest = os.path.join(self._directory, store.segment_name(highest))
        self._size = os.path.getsize(newest) if highest and os.path.exists(newest) else 0

    def _forget_in_storage(self, local_path: str) -> None:
        if self._storage_sync is None:
            return
        location = self._storage_sync.storage.location_of(local_path)
        try:
            location.filesystem.delete_file(location.path)
        except (FileNotFoundError, OSError) as exc:
            logger.warning("Could not delete %s, which the restored snapshot does not count (%s); readers of the "
                           "storage may show its results until it is gone.", location.uri, exc)

    def close_all(self) -> None:
        try:
            super().close_all()
        finally:
            if self._segment is not None:
                self._segment.close()
                self._segment = None

    # ---- on the writer thread ----------------------------------------------------------------
    def _stage_trial(self, dirname: str, trial_id: str, config: Dict[str, Any]) -> None:
        self._pending.append(store.trial_record(dirname, trial_id, config_to_json(config)))

    def _stage_results(self, trial_dir: str, json_bytes: bytes, csv_bytes: bytes) -> None:
        self._pending.append(json_bytes)
        self._pending_trials.append(trial_dir)

    def _stage_keep(self, dirname: str, rows: int) -> None:
        self._pending.append(store.keep_record(dirname, rows))

    def _commit(self) -> None:
        """One append of everything the batch staged (a full disk leaves none of it, and
        no later batch is written, so no trial's history gets a hole)."""
        if not self._pending:
            return
        data, trials = b"".join(self._pending), self._pending_trials
        self._pending, self._pending_trials = [], []
        if self._results_failed:
            self.unwritten_trial_dirs.update(trials)
            return
        try:
            if self._segment is None:
                self._open_next_segment()
            append_whole(self._segment, data, self._segment.name)
        except BaseException:
            self._results_failed = True
            self.unwritten_trial_dirs.update(trials)
            raise
        self._size += len(data)
        if self._size >= store.SEGMENT_BYTES:
            self._segment.close()
            self._segment = None

    def _open_next_segment(self) -> None:
        if self._index == 0:  # a fresh run after an earlier one under this name: after its segments
            self._index = max((i for i, _ in store.segment_paths(os.path.dirname(self._directory))), default=0)
        os.makedirs(self._directory, exist_ok=True)
        path = os.path.join(self._directory, store.segment_name(self._index + 1))
        self._segment = open(path, "ab", buffering=0)
        self._index += 1
        self._size = 0
