"""The runner's book of persisted checkpoints: which ones each trial keeps, how many
result lines each one counts, which ones another trial is still copying, and deleting
the rest.

Workers persist checkpoints themselves (``checkpoint_NNNNNN`` in the trial directory)
and only report the name; the book records it against the result it was saved with,
applies ``CheckpointConfig`` retention, and deletes what is no longer kept.  A
checkpoint another trial is copying (PBT's exploit) is *pinned*: its own trial's
retention may drop it from the list, but its directory stays until the copy is
confirmed.
"""
from __future__ import annotations

import math
import os
from typing import Any, Dict, Iterator, Mapping, NamedTuple, Optional, Tuple

from fasttune.checkpoint import Checkpoint
from fasttune.execution._checkpoint_retention import select_checkpoints_to_keep


class KeptHistory(NamedTuple):
    """What a trial's own history up to one point leaves it with: its last result, and its
    table row's last and best metric (``metrics``; None where unknown: a checkpoint of an
    older snapshot).  A cut back to that point restores exactly these.

    Example:
        >>> KeptHistory({"loss": 4.0}, (4.0, 3.0)).metrics
        (4.0, 3.0)
    """

    last_result: Dict[str, Any]
    metrics: Optional[Tuple[float, float]] = None


class CheckpointEntry:
    """What the book knows of one kept checkpoint."""

    __slots__ = ("rows", "upload", "metrics", "own_last")

    def __init__(self, rows: int, upload: Optional[Tuple[str, Optional[str]]],
                 metrics: Optional[Tuple[float, float]] = None, own_last: Optional[Dict[str, Any]] = None) -> None:
        # Result lines its trial had logged up to it: a restart from it keeps exactly
        # those (histories need not be monotonic in iteration).
        self.rows = rows
        # In storage: (its upload's token, the node that uploaded it and keeps a copy); a
        # resume sends the token, and prefers a worker on that node.  None: unknown.
        self.upload = upload
        # Its trial's table row's (last, best) metric over those rows; None: unknown (an
        # older snapshot's checkpoint).
        self.metrics = metrics
        # Its trial's own last result then, where that is not the result the checkpoint was
        # saved with (a clone: that one is the donor's); None: it is.
        self.own_last = own_last


class CheckpointBook:
    """Checkpoint bookkeeping for every trial of one runner; ``files`` deletes and
    prunes checkpoint directories (off the event loop).

    ``entries`` holds one :class:`CheckpointEntry` per kept checkpoint path; ``rows``
    (path -> result lines), ``uploads`` (path -> (token, node), those known only) and
    ``histories`` (path -> (metrics, own_last), those known only) are read-only views of it.

    Example:
        >>> class Trial:
        ...     path, checkpoint, checkpoint_results = "/exp/t0", None, []
        >>> class State:
        ...     next_checkpoint_index = 0
        >>> book, trial = CheckpointBook(files=None), Trial()
        >>> _ = book.record(trial, State(), "checkpoint_000000", {"loss": 4.0}, 2, retain=False,
        ...                 metrics=(4.0, 3.0))
        >>> book.rows["/exp/t0/checkpoint_000000"], book.kept_history("/exp/t0/checkpoint_000000", {"loss": 4.0})
        (2, KeptHistory(last_result={'loss': 4.0}, metrics=(4.0, 3.0)))
    """

    def __init__(self, files: Any) -> None:
        self._files = files
        self.entries: Dict[str, CheckpointEntry] = {}
        self._pins: Dict[str, int] = {}  # checkpoint path -> copies in flight
        self._removal_deferred: set = set()  # pinned paths retention already dropped
        self.rows = _RowsView(self.entries)
        self.uploads = _UploadsView(self.entries)
        self.histories = _HistoriesView(self.entries)

    def record(self, trial: Any, state: Any, name: str, result: Dict[str, Any], rows: int,
               token: str = "", node: Optional[str] = None, retain: bool = True,
               metrics: Optional[Tuple[float, float]] = None, own_last: Optional[Dict[str, Any]] = None) -> Checkpoint:
        """Record the checkpoint directory ``name`` that ``trial``'s worker persisted,
        saved with ``result`` after ``rows`` result lines (uploaded under ``token`` from
        the Ray node ``node``, in storage); apply retention unless ``retain`` is false
        (the caller calls :meth:`retain` later).  ``metrics``: the trial's table row's
        (last, best) metric over those rows; ``own_last``: the trial's own last result
        then, where ``result`` is not it (another trial's, for a clone); a cut back to the
        checkpoint restores both (:meth:`kept_history`)."""
        checkpoint = Checkpoint._written_by_worker(os.path.join(trial.path, name))
        try:
            index = int(name.rsplit("_", 1)[-1])
        except ValueError:
            index = len(trial.checkpoints)
        state.next_checkpoint_index = max(state.next_checkpoint_index or 0, index + 1)
        if trial.checkpoint is not None and trial.checkpoint.path == checkpoint.path:
            # The same directory again (a restart rewrote it): it replaces the entry.
            trial.checkpoint_results.pop()
        trial.checkpoint_results.append((checkpoint, dict(result)))
        # A rewrite whose token is unknown: no node's copy holds it.
        self._set(checkpoint.path, CheckpointEntry(rows, (token, node) if token else None, metrics,
                                                   None if own_last is None else dict(own_last)))
        if retain:
            self.retain(trial)
        else:
            trial.checkpoints = [c for c, _ in trial.checkpoint_results]
        return checkpoint

    def retain(self, trial: Any) -> None:
        """Apply ``trial``'s ``CheckpointConfig`` retention: keep the best ``num_to_keep``
        checkpoints and the latest; delete the rest.  A reply's checkpoints are recorded
        with retention deferred to here, once the reply's results are judged and any that
        no policy judged are forgotten (``forget_after``): else the checkpoints of those
        results could have evicted the one the trial then goes on from."""
        config = trial.checkpoint_config
        kept = select_checkpoints_to_keep(
            trial.checkpoint_results,
            getattr(config, "num_to_keep", None),
            getattr(config, "checkpoint_score_attribute", None),
            getattr(config, "checkpoint_score_order", "max") or "max",
        )
        if len(kept) != len(trial.checkpoint_results):
            kept_paths = {c.path for c, _ in kept}
            for checkpoint, _ in trial.checkpoint_results:
                if checkpoint.path not in kept_paths:
                    self._forget(checkpoint.path)
                    self._remove(checkpoint.path)
            trial.checkpoint_results = kept
        trial.checkpoints = [c for c, _ in trial.checkpoint_results]

    def forget_after(self, trial: Any, rows: int) -> None:
        """Forget ``trial``'s checkpoints saved after its first ``rows`` result lines (those
        lines were lost): it resumes from the latest one within them.  Their directories
        stay until a restore prunes what the snapshot does not list."""
        kept = [(c, r) for c, r in trial.checkpoint_results if self.rows.get(c.path, 0) <= rows]
        for checkpoint, _ in trial.checkpoint_results:
            if self.rows.get(checkpoint.path, 0) > rows:
                self._forget(checkpoint.path)
        trial.checkpoint_results = kept
        trial.checkpoints = [c for c, _ in kept]

    def forget_all(self, trial: Any) -> None:
        """Delete every checkpoint of ``trial`` (it restarts from scratch); one another
        trial is copying goes once that copy is done."""
        for checkpoint in trial.checkpoints:
            self._forget(checkpoint.path)
            self._remove(checkpoint.path)
        trial.checkpoint_results, trial.checkpoints = [], []

    def restore_fields(self, restore: Optional[str]) -> Dict[str, Any]:
        """The spec fields that name the upload of the checkpoint ``restore`` a run segment
        resumes from (``restore_token``; ``restore_node``, where a copy of it is kept), so
        that a worker on that node resumes without downloading it; none when unknown (a
        local experiment, an older snapshot): the worker downloads it.

        Example:
            >>> book = CheckpointBook(files=None)
            >>> book.add_restored({"/exp/t0/checkpoint_000001": 4, "/exp/t0/checkpoint_000000": 2},
            ...                   {"/exp/t0/checkpoint_000001": ("a1", "node-2")})
            >>> book.restore_fields("/exp/t0/checkpoint_000001"), book.restore_fields("/exp/t0/checkpoint_000000")
            ({'restore_token': 'a1', 'restore_node': 'node-2'}, {})
        """
        upload = self.uploads.get(restore) if restore else None
        return {} if upload is None else {"restore_token": upload[0], "restore_node": upload[1]}

    def kept_history(self, path: Optional[str], result: Dict[str, Any]) -> KeptHistory:
        """What a cut back to the checkpoint at ``path`` (saved with ``result``) leaves its
        trial with; no checkpoint (``path`` None): an empty history."""
        if path is None:
            return KeptHistory({}, (math.nan, math.nan))
        entry = self.entries.get(path)
        if entry is None:
            return KeptHistory(result)
        return KeptHistory(result if entry.own_last is None else entry.own_last, entry.metrics)

    def add_restored(self, rows: Dict[str, int], uploads: Dict[str, Tuple[str, Optional[str]]],
                     histories: Optional[Dict[str, Tuple[Tuple[float, float], Optional[Dict[str, Any]]]]] = None,
                     ) -> None:
        """Record the checkpoints a restored trial keeps: the result lines each counts, the
        uploads known (path -> (token, node)), and the histories known (path -> (metrics,
        own_last), see :meth:`record`; an older snapshot has none)."""
        histories = histories or {}
        for path, counted in rows.items():
            metrics, own_last = histories.get(path, (None, None))
            self._set(path, CheckpointEntry(counted, uploads.get(path), metrics, own_last))

    def _set(self, path: str, entry: CheckpointEntry) -> None:
        self._forget(path)
        self.entries[path] = entry
        if entry.upload is not None:
            self.uploads.count += 1

    def _forget(self, path: str) -> None:
        """Drop what the book knows of the checkpoint at ``path`` (its rows, its upload)."""
        entry = self.entries.pop(path, None)
        if entry is not None and entry.upload is not None:
            self.uploads.count -= 1

    def _remove(self, path: str) -> None:
        if path in self._pins:
            self._removal_deferred.add(path)  # another trial is still copying it
        else:
            self._files.remove_checkpoint(path)

    # ---- pins: checkpoints another trial is copying ----------------------------------------
    def pin(self, path: str) -> None:
        self._pins[path] = self._pins.get(path, 0) + 1

    def remove_once_copied(self, path: str) -> None:
        """Delete the pinned ``path`` (no trial lists it) when its last copy is done."""
        if path in self._pins:
            self._removal_deferred.add(path)
        else:
            self._files.remove_checkpoint(path)

    def unpin(self, path: str) -> None:
        """One copy of ``path`` is confirmed or abandoned; the last one lets retention's
        deletion happen."""
        if path not in self._pins:
            return
        self._pins[path] -= 1
        if not self._pins[path]:
            del self._pins[path]
            if path in self._removal_deferred:
                self._removal_deferred.discard(path)
                self._files.remove_checkpoint(path)

    def prune_unrecorded(self, trial: Any, now: bool = False) -> None:
        """Delete checkpoint directories of ``trial`` that the book does not list and no
        copy needs (saved but never reported, half-copied), while no worker writes to it:
        once it ended, or (``now``, on the caller's thread) before it restarts."""
        prefix = (trial.path or "") + os.sep
        pinned = [os.path.basename(p) for p in self._pins if p.startswith(prefix)]
        self._files.prune_checkpoints(trial.path, [os.path.basename(c.path) for c in trial.checkpoints] + pinned,
                                      now=now)


class _RowsView(Mapping):
    """Checkpoint path -> the result lines it counts, read from the book's entries."""

    __slots__ = ("_entries",)

    def __init__(self, entries: Dict[str, CheckpointEntry]) -> None:
        self._entries = entries

    def __getitem__(self, path: str) -> int:
        return self._entries[path].rows

    def get(self, path: str, default: Any = None) -> Any:
        entry = self._entries.get(path)
        return default if entry is None else entry.rows

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


class _UploadsView(Mapping):
    """Checkpoint path -> (token, node) of the uploads known, read from the book's entries;
    ``count`` of them kept by the book, so that its truth costs nothing."""

    __slots__ = ("_entries", "count")

    def __init__(self, entries: Dict[str, CheckpointEntry]) -> None:
        self._entries = entries
        self.count = 0

    def __getitem__(self, path: str) -> Tuple[str, Optional[str]]:
        upload = self._entries[path].upload
        if upload is None:
            raise KeyError(path)
        return upload

    def get(self, path: str, default: Any = None) -> Any:
        entry = self._entries.get(path)
        return default if entry is None or entry.upload is None else entry.upload

    def __iter__(self) -> Iterator[str]:
        return (path for path, entry in self._entries.items() if entry.upload is not None)

    def __len__(self) -> int:
        return self.count


class _HistoriesView:
    """Checkpoint path -> (metrics, own_last) of the entries whose history is known (see
    :meth:`CheckpointBook.record`), read from the book's entries (what a snapshot saves)."""

    __slots__ = ("_entries",)

    def __init__(self, entries: Dict[str, CheckpointEntry]) -> None:
        self._entries = entries

    def get(self, path: str, default: Any = None) -> Any:
        entry = self._entries.get(path)
        return default if entry is None or entry.metrics is None else (entry.metrics, entry.own_last)
