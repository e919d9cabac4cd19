"""Which of a trial's persisted checkpoints to keep (``CheckpointConfig.num_to_keep``).

Pure policy, no Ray and no file system: the runner calls it after each new checkpoint
and deletes what it drops through its file writer.

Rules (Ray Tune's behaviour):

* Entries are ``(checkpoint, metrics)`` pairs in the order they were taken; ``metrics``
  is the result the checkpoint was reported with.
* With ``attr`` the best ``num_to_keep`` by ``metrics[attr]`` are kept (``order`` "max"
  or "min"); a result lacking the attribute (or with a NaN score) ranks worst; ties go to
  the more recent checkpoint.  Without ``attr`` the most recent ``num_to_keep`` are kept.
* The latest checkpoint (the one a restart restores from) is always kept, even when it is
  not among the best; so at most ``num_to_keep + 1`` survive.
* ``num_to_keep=None`` keeps everything.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple, TypeVar

from fasttune._flatten import lookup_nested

T = TypeVar("T")
Entry = Tuple[T, Dict[str, Any]]


def _score(metrics: Dict[str, Any], attr: str) -> Optional[float]:
    value = lookup_nested(metrics, attr)  # "a/b" addresses nested results, as flattened result keys do
    try:
        score = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(score) else score


def _rank_key(index: int, metrics: Dict[str, Any], attr: Optional[str], order: str) -> tuple:
    """Bigger is better: (has a score, signed score, recency)."""
    if attr is None:
        return (1, 0.0, index)
    score = _score(metrics, attr)
    if score is None:
        return (0, 0.0, index)
    return (1, score if order == "max" else -score, index)


def rank_checkpoints(entries: Sequence[Entry], attr: Optional[str] = None, order: str = "max") -> List[Entry]:
    """``entries`` best first by ``attr`` (missing ranks worst, ties to the more recent);
    without ``attr``, in the order they were taken."""
    if attr is None:
        return list(entries)
    ranked = sorted(range(len(entries)), key=lambda i: _rank_key(i, entries[i][1], attr, order), reverse=True)
    return [entries[i] for i in ranked]


def best_checkpoints(entries: Sequence[Entry], num_to_keep: Optional[int], attr: Optional[str] = None,
                     order: str = "max") -> List[Entry]:
    """``Result.best_checkpoints`` as Ray Tune lists them: the ``num_to_keep`` best, worst
    first (so ``[-1]`` is the best), the latest among them only if it ranks there; without
    ``attr``, the most recent ``num_to_keep`` in the order they were taken.

    Example:
        >>> entries = [("c1", {"acc": 0.9}), ("c2", {"acc": 0.5}), ("c3", {"acc": 0.1})]
        >>> [c for c, _ in best_checkpoints(entries, 2, "acc", "max")]
        ['c2', 'c1']
    """
    ranked = rank_checkpoints(entries, attr, order)
    if attr is not None:
        ranked.reverse()
    return ranked if num_to_keep is None else ranked[len(ranked) - min(num_to_keep, len(ranked)):]


def select_checkpoints_to_keep(
    entries: Sequence[Entry],
    num_to_keep: Optional[int],
    attr: Optional[str] = None,
    order: str = "max",
) -> List[Entry]:
    """The entries to keep, in the order they were taken (see the module doc).

    Example:
        >>> entries = [("c1", {"acc": 0.9}), ("c2", {"acc": 0.5}), ("c3", {"acc": 0.1})]
        >>> [c for c, _ in select_checkpoints_to_keep(entries, 1, "acc", "max")]
        ['c1', 'c3']
    """
    if order not in ("max", "min"):
        raise ValueError(f"checkpoint_score_order must be 'max' or 'min', got {order!r}.")
    if num_to_keep is None or len(entries) <= num_to_keep:
        return list(entries)
    keys = [_rank_key(i, entries[i][1], attr, order) for i in range(len(entries))]
    best = sorted(range(len(entries)), key=keys.__getitem__, reverse=True)[:num_to_keep]
    keep = set(best)
    keep.add(len(entries) - 1)
    return [entries[i] for i in range(len(entries)) if i in keep]
