"""The driver's side of an experiment kept in storage (S3, GCS, any ``pyarrow.fs``
filesystem): its files go to a local staging copy first and are uploaded in batches.

The driver writes the experiment exactly as it would locally, into
``ExperimentStorage.staging``.  :class:`StorageSync` uploads what changed there every
``SyncConfig.sync_period`` seconds on a thread of its own, and once more at the end:

* trial files (``params.json``, ``result.json``, ``progress.csv``, ``error.txt``) and
  ``tuner.msgpack`` first, whole, when their size or modification time changed: S3 has no
  append, and a finished trial's files are never sent again;
* then the newest snapshot, under its own new name (snapshots are numbered), so a reader
  never sees a torn one; once it is there, older ones go, all but the one before it;
* then the checkpoint deletions retention decided before both snapshots kept in storage
  were written: a checkpoint stays there while a snapshot there may still name it (the
  last sync, once its snapshot is up, carries out all of retention's deletions).

Checkpoints themselves never pass through here: each worker uploads its own.  After a
resume downloads the experiment, the files as downloaded are noted as storage's
(``IN_STORAGE``): they are not sent back, so what workers wrote to storage since (their
``stdout``/``stderr``, synced artifacts) is not overwritten by the older copy.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from typing import Any, Dict, Iterable, List, Optional, Tuple

from fasttune import _storage as storage
from fasttune._atomic import atomic_write
from fasttune.error import TuneError
from fasttune.execution import _experiment_state as _state

logger = logging.getLogger(__name__)

_CHECKPOINT_PREFIX = "checkpoint_"
#: In the staging copy: the files a resume downloaded, with their (size, mtime_ns) then.
IN_STORAGE = ".in_storage.json"


class StorageSync:
    """Uploads the staging copy of one experiment to its storage (see the module docstring)."""

    def __init__(self, kept: storage.ExperimentStorage, sync_config: Any = None) -> None:
        self.storage = kept
        self._period = float(getattr(sync_config, "sync_period", 300))
        self._timeout = float(getattr(sync_config, "sync_timeout", 1800))
        self._lock = threading.Lock()
        # relative path -> (size, mtime_ns) that storage has: sent, or downloaded by a resume.
        self._uploaded: Dict[str, Tuple[int, int]] = _read_in_storage(kept.staging)
        # The snapshots in storage, oldest first, each with the deletions decided before it
        # was written (0 for one an earlier run left).
        self._snapshots_sent: List[Tuple[str, int]] = []
        self._sync_lock = threading.Lock()  # one sync at a time
        #: The newest snapshot number in storage when the run started (a fresh run's go after it).
        self.newest_stored_seq = 0
        self._decisions = 0  # checkpoint deletions decided so far
        self._deletions: List[Tuple[int, str]] = []  # (decision number, local checkpoint path)
        # Files no snapshot from a number on names (record segments): (that number, name).
        self._retired: List[Tuple[int, str]] = []
        # The newest snapshot: a hard link to it (its file may be rotated out locally before
        # it is uploaded), its name, and the deletions decided before it was written.
        self._snapshot: Optional[Tuple[str, str, int]] = None
        self._thread: Optional[threading.Thread] = None
        self._last = time.monotonic()
        self._warned: Optional[str] = None
        self.syncs = 0  # completed syncs, for tests and the bench
        self.seconds = 0.0  # time spent in them

    # ---- what the runner tells ------------------------------------------------------------
    def delete_checkpoint_later(self, local_path: str) -> None:
        """Delete the checkpoint ``local_path`` names in storage once a snapshot written
        after now is uploaded (the snapshot there may still name it until then)."""
        with self._lock:
            self._decisions += 1
            self._deletions.append((self._decisions, local_path))

    def retire_file(self, name: str, retired_at: int) -> None:
        """No snapshot from number ``retired_at`` on names the experiment file ``name`` (a
        record segment): remove it, here and in storage, once every snapshot storage keeps
        is one of those (until then a reader of storage may still need it)."""
        with self._lock:
            self._retired.append((retired_at, name))

    def snapshot_written(self, path: str) -> None:
        """The runner wrote the snapshot ``path``; start a sync if one is due."""
        name = os.path.basename(path)
        link = os.path.join(os.path.dirname(path), f".upload-{name}")
        _remove_quietly(link)  # left by a driver killed before it could upload that one
        try:
            os.link(path, link)
        except OSError:  # a filesystem without hard links: a copy does as well
            shutil.copyfile(path, link)
        with self._lock:
            previous, self._snapshot = self._snapshot, (link, name, self._decisions)
        if previous is not None:
            _remove_quietly(previous[0])  # a sync reading it keeps its open file
        if time.monotonic() - self._last >= self._period and not self._busy():
            self._last = time.monotonic()
            self._thread = threading.Thread(target=self._sync_in_background, name="fasttune-storage-sync",
                                            daemon=True)
            self._thread.start()

    def prune_checkpoints(self, local_trial_dir: str, keep: Iterable[str]) -> None:
        """Delete the trial's checkpoints in storage that are not in ``keep`` and not already
        waiting for deletion (ones a worker uploaded but never reported)."""
        keep = set(keep)
        with self._lock:
            keep.update(os.path.basename(path) for _, path in self._deletions
                        if os.path.dirname(path) == local_trial_dir)
        trial = self.storage.location_of(local_trial_dir)
        try:
            for name in storage.list_names(trial):
                if name.startswith(_CHECKPOINT_PREFIX) and name not in keep:
                    storage.delete_directory(trial.join(name))
        except (OSError, TuneError) as exc:  # what is left over only takes space
            logger.warning("Could not delete unreported checkpoints of %s (%s); they stay there, unused.",
                           trial.uri, exc)

    # ---- syncing ---------------------------------------------------------------------------
    def check_writable(self) -> None:
        """Upload what is staged now (the experiment's settings), before any trial starts.

        Raises:
            TuneError: storage cannot be written, naming the URI and what to check.
        """
        try:
            self.sync()
            # Snapshots an earlier run left (this experiment restored, or a fresh run under
            # its name) go as this run's are added; this run's are numbered after them.
            names = storage.list_names(self.storage.location)
            stored = [name for name in names if _state.is_snapshot_name(name)]
            self._snapshots_sent = [(name, 0) for name in sorted(stored, key=_state.snapshot_seq)]
            self.newest_stored_seq = max((_state.snapshot_seq(name) for name in stored), default=0)
            # A fresh run under a stored name: its staging copy holds none of the earlier run's
            # record segments, and no snapshot of this run names them, so they go once storage
            # keeps only this run's snapshots.  (A restored run's staging copy holds them, so
            # they are in _uploaded: downloaded by prepare_staging, or, where the staging copy
            # was newer, uploaded by the sync above; it names those it restored from and
            # retires the rest itself.  A later-numbered one is left: this run may write a
            # segment of that number.)
            for name in names:
                seq = _state.segment_seq(name)
                if seq is not None and seq <= self.newest_stored_seq and name not in self._uploaded:
                    self.retire_file(name, self.newest_stored_seq + 1)
        except TuneError:
            raise
        except OSError as exc:
            raise storage.unwritable(self.storage.location, exc) from None

    def finish(self) -> None:
        """The last sync, after the last snapshot: everything staged reaches storage.

        Raises:
            TuneError: it failed or took longer than ``sync_timeout``; the experiment is
                whole in the staging directory, which the message names.
        """
        self.wait(self._timeout)
        if self._busy():
            raise TuneError(
                f"Uploading the experiment to {self.storage.location.uri} took longer than "
                f"SyncConfig(sync_timeout={self._timeout:g}). Every result is in the local staging directory "
                f"{self.storage.staging}; Tuner.restore({self.storage.location.uri!r}, ...) from this machine "
                "uploads it and goes on.")
        failure: List[BaseException] = []

        def last_sync() -> None:
            try:
                self.sync(final=True)
            except BaseException as exc:  # noqa: BLE001 - reported to the caller below
                failure.append(exc)

        final = threading.Thread(target=last_sync, name="fasttune-storage-sync", daemon=True)
        final.start()
        final.join(self._timeout)
        if not final.is_alive() and not failure and self._snapshot is not None:
            _remove_quietly(self._snapshot[0])  # the link the last snapshot was uploaded from
        if final.is_alive() or failure:
            why = (f"it took longer than SyncConfig(sync_timeout={self._timeout:g})" if final.is_alive()
                   else f"{type(failure[0]).__name__}: {failure[0]}")
            raise TuneError(
                f"The experiment's last upload to {self.storage.location.uri} failed ({why}). Every result "
                f"is in the local staging directory {self.storage.staging}; Tuner.restore("
                f"{self.storage.location.uri!r}, ...) from this machine uploads it and goes on.")

    def wait(self, timeout: Optional[float] = None) -> None:
        """Return once the sync running on its thread (if any) is over, or after ``timeout``."""
        running = self._thread
        if running is not None:
            running.join(timeout)

    def _busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _sync_in_background(self) -> None:
        while True:
            with self._lock:
                before = self._snapshot
            try:
                self.sync()
            except Exception as exc:  # noqa: BLE001 - retried at the next period; finish() raises
                message = f"{type(exc).__name__}: {exc}"
                if message != self._warned:
                    self._warned = message
                    logger.warning("Uploading the experiment to %s failed (%s); it is retried in %gs, and its "
                                   "files are kept in %s meanwhile.", self.storage.location.uri, message,
                                   self._period, self.storage.staging)
                return
            with self._lock:
                # A snapshot written while this sync ran goes now if its period is up (a
                # quiet loop may write none for a while).
                if self._snapshot == before or time.monotonic() - self._last < self._period:
                    return
            self._last = time.monotonic()

    def sync(self, final: bool = False) -> None:
        """Upload what changed in the staging copy, then the newest snapshot, then carry
        out the checkpoint deletions the snapshots in storage allow (on the caller's
        thread); ``final``: the sweep's last sync."""
        with self._sync_lock:
            started = time.monotonic()
            with self._lock:
                snapshot = self._snapshot
            staging = self.storage.staging
            # Trial files after the snapshot was chosen: each is at least as new as the
            # snapshot that counts its rows.
            changed = [(relative, stat) for relative, stat in _staged_files(staging)
                       if self._uploaded.get(relative) != stat]
            storage.in_parallel(self._upload_noting, changed)
            if snapshot is not None and self._upload_snapshot(*snapshot):
                # During the run, neither snapshot kept in storage names what was dropped before
                # both were written; the last sync leaves retention's outcome (the snapshot
                # before the last one is then only a fallback for a damaged last one).
                allowed = snapshot[2] if final else min(mark for _, mark in self._snapshots_sent)
                with self._lock:
                    due = [item for item in self._deletions if item[0] <= allowed]
                storage.in_parallel(lambda item: storage.delete_directory(self.storage.location_of(item[1])), due)
                with self._lock:  # only now: a deletion that failed is tried again at the next sync
                    done = set(due)
                    self._deletions = [item for item in self._deletions if item not in done]
                self._remove_retired(min(_state.snapshot_seq(name) for name, _ in self._snapshots_sent))
            self.syncs += 1
            self.seconds += time.monotonic() - started

    def _remove_retired(self, oldest_stored_seq: int) -> None:
        """Remove the retired files that neither storage's snapshots nor the staging copy's
        (which are newer) name any more, in storage and here."""
        with self._lock:
            due = [item for item in self._retired if item[0] <= oldest_stored_seq]
        for item in due:
            name = item[1]
            target = self.storage.location.join(name)
            try:
                target.filesystem.delete_file(target.path)
            except FileNotFoundError:
                pass  # (never uploaded: retired before a sync)
            except OSError as exc:  # what is left over only takes space: tried again at the next sync
                logger.warning("Could not delete %s, which no snapshot names any more (%s); trying again later.",
                               target.uri, exc)
                continue
            _remove_quietly(os.path.join(self.storage.staging, name))
            self._uploaded.pop(name, None)
            with self._lock:  # only now: a removal that failed is tried again at the next sync
                self._retired.remove(item)

    def _upload_noting(self, item: Tuple[str, Tuple[int, int]]) -> None:
        relative, stat = item
        self._upload(relative)
        self._uploaded[relative] = stat  # a dict item assignment: one at a time under the GIL

    def _upload(self, relative: str) -> None:
        parts = relative.split("/")
        storage.upload_file(os.path.join(self.storage.staging, *parts), self.storage.location.join(*parts))

    def _upload_snapshot(self, link: str, name: str, mark: int) -> bool:
        """Upload the snapshot ``name`` (from its hard link ``link``) as a new object, then
        drop the ones uploaded before it but the last; False when a newer one replaced it
        before it could be read (that one goes next)."""
        if any(sent == name for sent, _ in self._snapshots_sent):
            return True
        try:
            storage.upload_file(link, self.storage.location.join(name))
        except FileNotFoundError:
            if os.path.exists(link):
                raise
            return False
        self._snapshots_sent.append((name, mark))
        while len(self._snapshots_sent) > _state.KEEP:
            target = self.storage.location.join(self._snapshots_sent.pop(0)[0])
            target.filesystem.delete_file(target.path)
        return True


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _staged_files(staging: str) -> List[Tuple[str, Tuple[int, int]]]:
    """``(relative path, (size, mtime_ns))`` of each file to sync below ``staging``: all but
    snapshots (sent on their own), checkpoint directories (workers send those) and
    temporary files of atomic writes."""
    found: List[Tuple[str, Tuple[int, int]]] = []
    for directory, subdirs, files in os.walk(staging):
        subdirs[:] = [d for d in subdirs if not d.startswith(_CHECKPOINT_PREFIX)]
        relative_dir = os.path.relpath(directory, staging)
        prefix = "" if relative_dir == os.curdir else relative_dir.replace(os.sep, "/") + "/"
        for name in files:
            if name.startswith(".") or (not prefix and _state.is_snapshot_name(name)):
                continue
            try:
                info = os.stat(os.path.join(directory, name))
            except FileNotFoundError:
                continue
            found.append((prefix + name, (info.st_size, info.st_mtime_ns)))
    return found


def prepare_staging(kept: storage.ExperimentStorage, resume: bool) -> None:
    """Make the staging copy ready for a run: empty for a fresh one; for a resume, the
    experiment as storage has it, unless the staging copy already holds a snapshot at
    least as new (this machine's driver was interrupted before its last upload).

    Raises:
        TuneError: storage cannot be read.
    """
    if not resume:
        shutil.rmtree(kept.staging, ignore_errors=True)
        return
    stored = [name for name in storage.list_names(kept.location) if _state.is_snapshot_name(name)]
    newest_stored = max((int(_state.snapshot_seq(name)) for name in stored), default=0)
    if os.path.isdir(kept.staging) and _state.latest_seq(kept.staging) >= newest_stored:
        return
    if not stored and not storage.list_names(kept.location):
        return  # nothing anywhere: the caller says what it expected
    storage.refresh_local_copy(kept.location, kept.staging)
    atomic_write(os.path.join(kept.staging, IN_STORAGE), json.dumps(dict(_staged_files(kept.staging))), durable=False)


def _read_in_storage(staging: str) -> Dict[str, Tuple[int, int]]:
    """What a resume downloaded into ``staging`` (none when it downloaded nothing)."""
    try:
        with open(os.path.join(staging, IN_STORAGE)) as f:
            return {relative: (int(stat[0]), int(stat[1])) for relative, stat in json.load(f).items()}
    except (FileNotFoundError, ValueError, TypeError, IndexError, AttributeError):
        return {}  # a damaged note only costs uploading those files again


__all__ = ["StorageSync", "prepare_staging"]
