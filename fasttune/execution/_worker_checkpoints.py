"""Where a worker puts the checkpoints its trials make, and where it finds the ones they
resume from: the trial directory on a shared local disk (:class:`LocalCheckpoints`), or
the experiment's storage (:class:`StoredCheckpoints`).

The driver names every checkpoint by its path in the experiment directory it writes
(for an experiment in storage, the driver's staging copy): ``<trial dir>/checkpoint_N``.
A worker in storage mode maps that path to the same place in storage, so the driver and
the worker agree on names while no node assumes another node's disk.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from typing import Dict, Optional

from fasttune import _storage as storage
from fasttune._atomic import move_directory_into_place
from fasttune.checkpoint import Checkpoint, checkpoint_in_storage
from fasttune.trainable.trainable import Trainable, load_checkpoint_payload, save_to_new_directory


# Files the driver writes into a trial's directory: never uploaded as a trial's artifacts.
_DRIVER_FILES = frozenset({"params.json", "params.pkl", "result.json", "progress.csv", "error.txt"})


def for_experiment(kept: Optional[storage.ExperimentStorage]) -> "LocalCheckpoints":
    """The checkpoint places of a worker of the experiment kept at ``kept`` (None: local)."""
    return LocalCheckpoints() if kept is None else StoredCheckpoints(kept)


class LocalCheckpoints:
    """Checkpoints in the trial directory, a path every node shares (one machine, or a
    mounted filesystem)."""

    #: ``tune.get_context().get_storage_path()`` when it is not the driver's (None: it is).
    storage_path: Optional[str] = None

    def trial_dir(self, trial_dir: str) -> str:
        """The directory this node gives the trial (``tune.get_context().get_trial_dir()``)."""
        return trial_dir

    def persist(self, checkpoint: Checkpoint, trial_dir: str, name: str) -> Optional[str]:
        """Copy what ``report()`` was given into ``<trial_dir>/<name>``; never moved, as the
        user may reuse or read the directory afterwards (Ray Tune copies it to storage too).
        Returns the upload's token in storage (None here: a local checkpoint has none)."""
        target = os.path.join(trial_dir, name)
        tmp = target + ".tmp"  # a checkpoint directory is always whole
        if not os.path.isdir(trial_dir):  # made on demand with RunConfig(results_store="experiment")
            os.makedirs(trial_dir, exist_ok=True)
        try:
            if checkpoint.filesystem is not None:
                shutil.rmtree(tmp, ignore_errors=True)
                storage.download_directory(checkpoint._storage, tmp)
            else:
                source = os.path.abspath(checkpoint.path)
                if source == os.path.abspath(target):
                    return
                try:
                    _copy_tree(source, tmp)
                except FileExistsError:  # left by a worker that died mid-copy
                    shutil.rmtree(tmp, ignore_errors=True)
                    _copy_tree(source, tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)  # a failed copy (a full disk) leaves nothing behind
            raise
        # A restart may rewrite a checkpoint it had saved before: it is replaced.  Not
        # fsynced here: the driver syncs the experiment's file system before a snapshot
        # names the checkpoint (one sync for all of them).
        move_directory_into_place(tmp, target, durable=False)
        return None

    def save(self, instance: Trainable, trial_dir: str, name: str) -> Optional[str]:
        """A class trainable's ``save_checkpoint`` into ``<trial_dir>/<name>``; returns the
        upload's token, as :meth:`persist` does."""
        save_to_new_directory(instance, os.path.join(trial_dir, name))
        return None

    def clone(self, source: str, trial_dir: str, name: str, source_token: Optional[str] = None) -> Optional[str]:
        """Copy another trial's checkpoint ``source`` (uploaded under ``source_token``) into
        ``<trial_dir>/<name>``; returns the copy's token, as :meth:`persist` does.

        Raises:
            FileNotFoundError: ``source`` does not exist (any more).
        """
        if not os.path.isdir(source):
            raise FileNotFoundError(source)
        return self.persist(Checkpoint._at(source), trial_dir, name)

    def checkpoint(self, path: str) -> Checkpoint:
        """The checkpoint at ``path`` a trial resumes from: one ``stat`` for the driver's
        absolute path of a directory that exists, else ``Checkpoint``'s own checks."""
        if os.path.isabs(path) and os.path.normpath(path) == path and os.path.isdir(path):
            return Checkpoint._at(path)
        return Checkpoint(path)

    def load(self, instance: Trainable, path: str) -> None:
        """A class trainable's ``load_checkpoint`` from the checkpoint at ``path``."""
        instance.load_checkpoint(load_checkpoint_payload(path))

    def resuming(self, restore: str, token: Optional[str]) -> None:
        """The trial is about to resume from the checkpoint at ``restore``, uploaded under
        ``token`` (None: unknown)."""

    def segment_ended(self, trial_dir: str, restored_from: Optional[str], trial_ended: bool = False) -> None:
        """A run segment of the trial ended (the local directory stays: it is the trial's);
        ``trial_ended``: the trial itself did (done or stopped), so it never resumes here."""

    def restored(self, restored_from: str) -> None:
        """The trial no longer needs the checkpoint it resumed from on this node."""


class StoredCheckpoints(LocalCheckpoints):
    """Checkpoints in the experiment's storage: uploaded from this node before ``report()``
    returns, copied inside storage for PBT's exploit, downloaded on this node to resume.
    The trial's local directory on this node is a scratch space, removed when a segment
    ends, so nothing piles up on worker nodes."""

    def __init__(self, kept: storage.ExperimentStorage) -> None:
        self._kept = kept
        self._scratch = storage.node_scratch(kept.location)
        storage.remove_dead_scratch()  # at worker start, off the hot path: what killed workers left
        self._artifacts_sent: Dict[str, Dict[str, tuple]] = {}  # trial dir -> file -> (size, mtime) uploaded
        # Checkpoint path -> the token of the upload a running segment resumes from, while
        # this node keeps no copy of it: what it downloads is kept once it is done, unless
        # the trial uploads a newer checkpoint first (the one its next resume needs).
        self._downloading: Dict[str, str] = {}
        location = kept.location
        self.storage_path = (storage.parent_uri(location.uri) if storage.is_uri(location.uri)
                             else os.path.dirname(location.path))

    def trial_dir(self, trial_dir: str) -> str:
        return os.path.join(self._scratch, *self._kept.relative(trial_dir).split("/"))

    def persist(self, checkpoint: Checkpoint, trial_dir: str, name: str) -> Optional[str]:
        target = self._kept.location_of(os.path.join(trial_dir, name))
        token = storage.new_checkpoint_token()
        if checkpoint.filesystem is not None:
            storage.copy_directory(checkpoint._storage, target)
        else:
            self._upload_and_keep(checkpoint.path, target, token)
        if self._kept.sync_artifacts and self._kept.sync_artifacts_on_checkpoint:
            self._upload_artifacts(trial_dir)
        return token

    def _upload_and_keep(self, source: str, target: storage.Location, token: str) -> None:
        """Upload the user's directory ``source`` to ``target``, and keep a copy of it on
        this node (the user may change or delete theirs once ``report()`` returns): the
        copy is made first and uploaded, so that what is kept is what storage holds even
        if the user writes meanwhile.  A full disk only skips the copy."""
        try:
            nbytes = storage.tree_bytes(source)
        except OSError:  # the user's directory changed meanwhile: not kept, not copied
            nbytes = -1
        with storage.node_cache_scratch(nbytes) if nbytes >= 0 else contextlib.nullcontext() as made:
            copy = os.path.join(made, "files") if made is not None else None  # None: not kept, not copied
            if copy is not None:
                try:
                    _copy_tree(source, copy)
                except OSError:  # a full disk, most likely: uploaded from the user's directory
                    shutil.rmtree(copy, ignore_errors=True)
                    copy = None
                    storage.remove_dead_scratch()  # what killed processes left may be what fills it
            storage.upload_directory(copy or source, target)
            self._newer_than_download(target)
            if copy is not None:
                storage.keep_checkpoint(copy, target, token)

    def _upload_artifacts(self, trial_dir: str) -> None:
        """Upload the files the trial wrote in its directory on this node that changed since
        the last upload (``SyncConfig(sync_artifacts=True)``); the driver's own files and
        checkpoints are left alone."""
        local = self.trial_dir(trial_dir)
        sent = self._artifacts_sent.setdefault(trial_dir, {})
        changed = []
        for directory, subdirs, files in os.walk(local):
            subdirs[:] = [d for d in subdirs if not d.startswith((".", "checkpoint_"))]
            for name in files:
                if directory == local and name in _DRIVER_FILES:
                    continue
                path = os.path.join(directory, name)
                try:
                    info = os.stat(path)
                except FileNotFoundError:  # the trial removed it meanwhile
                    continue
                if sent.get(path) != (info.st_size, info.st_mtime_ns):
                    changed.append((path, (info.st_size, info.st_mtime_ns)))
        target = self._kept.location_of(trial_dir)

        def upload(item: tuple) -> None:
            path, stat_key = item
            try:
                storage.upload_file(path, target.join(*os.path.relpath(path, local).split(os.sep)))
            except FileNotFoundError:
                if os.path.exists(path):
                    raise
                return  # the trial removed it meanwhile
            sent[path] = stat_key

        storage.in_parallel(upload, changed)

    def save(self, instance: Trainable, trial_dir: str, name: str) -> Optional[str]:
        local = self.trial_dir(trial_dir)
        os.makedirs(local, exist_ok=True)
        scratch = tempfile.mkdtemp(prefix=f".{name}-", dir=local)
        token = storage.new_checkpoint_token()
        try:
            save_to_new_directory(instance, os.path.join(scratch, name))
            target = self._kept.location_of(os.path.join(trial_dir, name))
            storage.upload_directory(os.path.join(scratch, name), target)
            # The directory saved into is this node's copy: moved, not copied.
            self._newer_than_download(target)
            storage.keep_checkpoint(os.path.join(scratch, name), target, token)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return token

    def clone(self, source: str, trial_dir: str, name: str, source_token: Optional[str] = None) -> Optional[str]:
        origin, target = self._kept.location_of(source), self._kept.location_of(os.path.join(trial_dir, name))
        storage.copy_directory(origin, target)
        token = storage.new_checkpoint_token()
        # This node's copy of the donor's checkpoint, if it keeps one, is the clone's too;
        # else the clone is kept once the segment resuming from it opens it (see resuming).
        self._newer_than_download(target)
        storage.keep_copy_of_kept(origin, source_token, target, token)
        return token

    def checkpoint(self, path: str) -> Checkpoint:
        return checkpoint_in_storage(Checkpoint._at(path), self._kept.staging, self._kept.location)

    def load(self, instance: Trainable, path: str) -> None:
        with self.checkpoint(path).as_directory() as local:
            instance.load_checkpoint(load_checkpoint_payload(local))

    def _newer_than_download(self, uploaded: storage.Location) -> None:
        """The trial uploaded ``uploaded``: the checkpoint its segment resumed from is no
        longer the one to keep."""
        if self._downloading:
            trial = uploaded.parent()
            for path in [p for p in self._downloading if self._kept.location_of(p).parent() == trial]:
                del self._downloading[path]

    def resuming(self, restore: str, token: Optional[str]) -> None:
        # This node's copy of that very upload, if it keeps one; else the trainable's
        # first open downloads it, and that download is kept under the token afterwards.
        try:
            kept = storage.open_kept_checkpoint(self._kept.location_of(restore), token)
        except OSError:  # the node's cache cannot be read: the trainable downloads it
            kept = None
        if kept is None and token:
            self._downloading[restore] = token
        else:
            self._downloading.pop(restore, None)

    def segment_ended(self, trial_dir: str, restored_from: Optional[str], trial_ended: bool = False) -> None:
        if self._kept.sync_artifacts:
            self._upload_artifacts(trial_dir)
        self._artifacts_sent.pop(trial_dir, None)
        shutil.rmtree(self.trial_dir(trial_dir), ignore_errors=True)
        if restored_from:
            self.restored(restored_from)
        if trial_ended:
            storage.forget_kept_checkpoints(self._kept.location_of(trial_dir))

    def restored(self, restored_from: str) -> None:
        location = self._kept.location_of(restored_from)
        token = self._downloading.pop(restored_from, None)
        if token is None or not storage.keep_opened_checkpoint(location, token):
            storage.forget_local_checkpoint(location)  # if the trainable opened it


def _copy_tree(source: str, target: str) -> None:
    """Copy ``source`` to the new directory ``target``: file contents and permission bits,
    following symbolic links (what ``shutil.copytree`` copies, less timestamps and extended
    attributes, which Ray Tune's copy to storage does not keep either), at a fraction of
    its per-file cost."""
    os.mkdir(target)
    with os.scandir(source) as entries:
        for entry in entries:
            destination = os.path.join(target, entry.name)
            if entry.is_dir():
                _copy_tree(entry.path, destination)
            else:
                _copy_file(entry.path, destination)


def _copy_file(source: str, target: str) -> None:
    """Contents and permission bits of ``source`` into the new file ``target``, through
    two descriptors (no name lookups beyond the two opens, unlike copyfile + copymode)."""
    fd_in = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
    try:
        info = os.fstat(fd_in)
        fd_out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            offset = 0
            try:
                while offset < info.st_size:
                    sent = os.sendfile(fd_out, fd_in, offset, info.st_size - offset)
                    if sent == 0:
                        break
                    offset += sent
            except OSError:  # no sendfile between these two: copied through memory below
                pass
            # What sendfile did not copy: all of it without sendfile, bytes the file grew
            # by, or a file whose size reads 0 (as /proc's do).
            os.lseek(fd_in, offset, os.SEEK_SET)
            while True:
                chunk = os.read(fd_in, 1 << 20)
                if not chunk:
                    break
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd_out, view):]
            os.fchmod(fd_out, stat.S_IMODE(info.st_mode))
        finally:
            os.close(fd_out)
    finally:
        os.close(fd_in)


__all__ = ["LocalCheckpoints", "StoredCheckpoints", "for_experiment"]
