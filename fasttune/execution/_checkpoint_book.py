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

import os
from typing import Any, Dict, Optional, Tuple

from fasttune.checkpoint import Checkpoint
from fasttune.execution._checkpoint_retention import select_checkpoints_to_keep


class CheckpointBook:
    """Checkpoint bookkeeping for every trial of one runner; ``files`` deletes and
    prunes checkpoint directories (off the event loop)."""

    def __init__(self, files: Any) -> None:
        self._files = files
        # Result lines a trial had logged up to each kept checkpoint: a restart from it
        # keeps exactly those (histories need not be monotonic in iteration).
        self.rows: Dict[str, int] = {}
        self._pins: Dict[str, int] = {}  # checkpoint path -> copies in flight
        self._removal_deferred: set = set()  # pinned paths retention already dropped
        # In storage: checkpoint path -> (its upload's token, the node that uploaded it and
        # keeps a copy); a resume sends the token, and prefers a worker on that node.
        self.uploads: Dict[str, Tuple[str, Optional[str]]] = {}

    def record(self, trial: Any, state: Any, name: str, result: Dict[str, Any], rows: int,
               token: str = "", node: Optional[str] = None) -> Checkpoint:
        """Record the checkpoint directory ``name`` that ``trial``'s worker persisted,
        saved with ``result`` after ``rows`` result lines (uploaded under ``token`` from
        the Ray node ``node``, in storage); apply retention."""
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
        self.rows[checkpoint.path] = rows
        if token:
            self.uploads[checkpoint.path] = (token, node)
        else:
            self.uploads.pop(checkpoint.path, None)  # a rewrite whose token is unknown: none holds
        self._retain(trial)
        return checkpoint

    def _retain(self, trial: Any) -> None:
        """Keep the best ``num_to_keep`` checkpoints and the latest; delete the rest."""
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
            >>> book.uploads["/exp/t0/checkpoint_000001"] = ("a1", "node-2")
            >>> book.restore_fields("/exp/t0/checkpoint_000001"), book.restore_fields("/exp/t0/checkpoint_000000")
            ({'restore_token': 'a1', 'restore_node': 'node-2'}, {})
        """
        upload = self.uploads.get(restore) if restore else None
        return {} if upload is None else {"restore_token": upload[0], "restore_node": upload[1]}

    def _forget(self, path: str) -> None:
        """Drop what the book knows of the checkpoint at ``path`` (its rows, its upload)."""
        self.rows.pop(path, None)
        self.uploads.pop(path, None)

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
