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
from typing import Any, Dict, List, Optional, Tuple

from fasttune import _results_store as store
from fasttune._storage import list_names
from fasttune.error import TuneError
from fasttune.logger._append import append_whole
from fasttune.logger._trial_files import TrialFiles, config_to_json

logger = logging.getLogger(__name__)


class ExperimentResultFiles(TrialFiles):
    """All trials' results, configs and restarts appended to the experiment's store."""

    makes_trial_dirs = False

    def __init__(self, experiment_path: str, storage_sync: Any = None) -> None:
        super().__init__(write_csv=False, storage_sync=storage_sync)
        self._directory = os.path.join(experiment_path, store.STORE_DIR)
        # The writer thread's own: what its batch staged, in call order: each line's bytes,
        # and the trial directory for results (told when they cannot be written) or the
        # ``(dirname, rows)`` of a keep line (a lost one still drops rows).
        self._pending: List[Tuple[bytes, Optional[str], Optional[tuple]]] = []
        self._segment: Any = None  # the open segment, once written to
        # The segment written last: none yet in this run, so the next one is numbered after
        # every segment there is (in storage too: a fresh run's staging copy starts empty).
        self._index = self._size = 0  # and its length
        self._end_after_every_segment()
        self._row_counts: Optional[Dict[str, int]] = None  # after a failed write, read back once
        # The writer's own: keep lines a failed write lost (the rows they dropped are still in
        # the store, so the counts after a failure must drop them too).
        self._lost_keeps: List[tuple] = []

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
        name = os.path.basename(trial_dir)
        count = self._row_counts.get(name, 0)
        for dirname, rows in self._lost_keeps:  # every result after a lost keep was lost too
            if dirname == name:
                count = min(count, rows)
        return count

    def has_params(self, trial_dir: str) -> bool:
        # A restarted trial's config line is written again: a lost write cannot drop it.
        return False

    def position(self) -> List[int]:
        """Where the store ends (segment, length), for a snapshot: call after ``flush()``."""
        return [self._index, self._size]

    def restore_position(self, position: Optional[List[int]], aside: str) -> List[str]:
        """Cut the store back to ``position`` (what a snapshot counted), moving what came
        after it into the folder ``aside`` of the experiment; later writes begin a new
        segment.  ``None``: the snapshot predates any store (nothing to keep).  Returns the
        directory names of the trials the part cut off names: the snapshot may not know
        them, and their directories (an ``error.txt``, captured output) must not pass to the
        trials made again under those names."""
        index, size = (int(position[0]), int(position[1])) if position else (0, 0)
        experiment_path = os.path.dirname(self._directory)
        set_aside = os.path.join(experiment_path, aside, store.STORE_DIR)
        cut_off: List[str] = []
        for each, path in store.segment_paths(experiment_path):
            if each < index:
                continue
            length = os.path.getsize(path)
            if each == index and length <= size:
                continue
            os.makedirs(set_aside, exist_ok=True)
            kept_as = os.path.join(set_aside, os.path.basename(path))
            if each == index:
                with open(path, "r+b") as f:
                    f.seek(size)
                    with open(kept_as, "wb") as tail:
                        shutil.copyfileobj(f, tail)
                    f.truncate(size)
                    os.fsync(f.fileno())
            else:
                os.replace(path, kept_as)
                self._forget_in_storage(path)
            cut_off.extend(store.trial_dirnames(kept_as))
        self._end_after_every_segment()
        return cut_off

    def _end_after_every_segment(self) -> None:
        """Until the next write, the store ends where its newest segment here does (what a
        snapshot taken before then records); that write begins a segment numbered after
        every one there has been, set aside by a restore or in storage, so no name is used twice."""
        highest = self._highest_segment_anywhere()
        newest = os.path.join(self._directory, store.segment_name(highest))
        self._index = highest
        self._size = os.path.getsize(newest) if highest and os.path.exists(newest) else 0

    def _highest_segment_anywhere(self) -> int:
        """The highest segment number the experiment has used: here, set aside by a restore,
        or in storage."""
        experiment_path = os.path.dirname(self._directory)
        numbers = [i for i, _ in store.segment_paths(experiment_path)]
        try:
            folders = [n for n in os.listdir(experiment_path) if n.startswith(store.SET_ASIDE_PREFIX)]
        except FileNotFoundError:
            folders = []
        for folder in folders:
            numbers.extend(i for i, _ in store.segment_paths(os.path.join(experiment_path, folder)))
        if self._storage_sync is not None:
            kept = self._storage_sync.storage
            try:
                names = list_names(kept.location.join(store.STORE_DIR))
            except (OSError, TuneError) as exc:
                logger.warning("Could not list the results store in %s (%s); this run's segments are numbered "
                               "after the local ones only.", kept.location.uri, exc)
                names = []
            numbers.extend(store.segment_number(name) or 0 for name in names)
        return max(numbers, default=0)

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
        """As :meth:`TrialFiles.close_all`, then close the store's segment.  When both
        fail, the write failure is the one raised and the segment's close is logged: a
        close (which may report a lost write, as on NFS) must not hide why writing stopped."""
        try:
            super().close_all()
        except BaseException:
            try:
                self._close_segment()
            except OSError:
                logger.exception("Closing the results store's segment failed too, after the error raised.")
            raise
        self._close_segment()

    def _close_segment(self) -> None:
        segment, self._segment = self._segment, None
        if segment is not None:
            segment.close()

    # ---- on the writer thread ----------------------------------------------------------------
    def _stage_trial(self, dirname: str, trial_id: str, config: Dict[str, Any]) -> None:
        self._pending.append((store.trial_record(dirname, trial_id, config_to_json(config)), None, None))

    def _stage_results(self, trial_dir: str, json_bytes: bytes, csv_bytes: bytes) -> None:
        self._pending.append((json_bytes, trial_dir, None))

    def _stage_keep(self, dirname: str, rows: int) -> None:
        self._pending.append((store.keep_record(dirname, rows), None, (dirname, rows)))

    def _commit(self) -> None:
        """One append of everything the batch staged.  When it does not fit, as many of
        its staged pieces as fit go in whole, in order, and no later piece or batch is
        written, so no trial's history gets a hole.  The failure is raised even when every
        piece then fit: the storage is at its limit."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        if self._results_failed:
            self._lose(pending)
            return
        written = 0
        try:
            if self._segment is None:
                self._open_next_segment()
            data = b"".join([piece for piece, _, _ in pending])
            try:
                append_whole(self._segment, data, self._segment.name)
                written = len(pending)
                self._size += len(data)
            except OSError:
                # Cut back whole: the pieces that fit go in one by one, the first that does
                # not raises.  Not after a torn tail the cut could not remove: a piece
                # would join it into one line.
                if os.fstat(self._segment.fileno()).st_size != self._size:
                    raise
                for piece, _, _ in pending:
                    append_whole(self._segment, piece, self._segment.name)
                    written += 1
                    self._size += len(piece)
                raise
        except BaseException:
            self._results_failed = True
            self._lose(pending[written:])
            raise
        if self._size >= store.SEGMENT_BYTES:
            self._segment.close()
            self._segment = None

    def _lose(self, pending: List[Tuple[bytes, Optional[str], Optional[tuple]]]) -> None:
        """Staged pieces that will never be written: their trials lost results, their keep
        lines still count."""
        for _, trial_dir, keep in pending:
            if trial_dir is not None:
                self.unwritten_trial_dirs.add(trial_dir)
            if keep is not None:
                self._lost_keeps.append(keep)

    def _open_next_segment(self) -> None:
        os.makedirs(self._directory, exist_ok=True)
        path = os.path.join(self._directory, store.segment_name(self._index + 1))
        self._segment = open(path, "ab", buffering=0)
        self._index += 1
        self._size = 0
