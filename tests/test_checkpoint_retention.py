"""The checkpoint retention policy, without Ray: hand-computed cases."""
import math

import pytest

from fasttune.execution._checkpoint_retention import rank_checkpoints, select_checkpoints_to_keep


def _names(entries):
    return [name for name, _ in entries]


def _entries(*scores):
    return [(f"c{i}", {} if s is None else {"acc": s}) for i, s in enumerate(scores, 1)]


def test_best_by_max_and_min_in_the_order_taken():
    entries = _entries(0.5, 0.9, 0.1, 0.7, 0.8)
    assert _names(select_checkpoints_to_keep(entries, 2, "acc", "max")) == ["c2", "c5"]
    # min: best two are 0.1 (c3) and 0.5 (c1); latest c5 is kept on top.
    assert _names(select_checkpoints_to_keep(entries, 2, "acc", "min")) == ["c1", "c3", "c5"]


def test_latest_is_kept_even_when_it_is_the_worst():
    entries = _entries(0.9, 0.8, 0.1)
    assert _names(select_checkpoints_to_keep(entries, 1, "acc", "max")) == ["c1", "c3"]
    assert _names(select_checkpoints_to_keep(entries, 2, "acc", "max")) == ["c1", "c2", "c3"]


def test_missing_attribute_or_nan_ranks_worst():
    entries = _entries(None, 0.2, math.nan, 0.3, 0.1)
    # Scored: c2=0.2, c4=0.3, c5=0.1; c1 and c3 have no usable score.
    assert _names(select_checkpoints_to_keep(entries, 3, "acc", "max")) == ["c2", "c4", "c5"]
    assert _names(select_checkpoints_to_keep(entries, 3, "acc", "min")) == ["c2", "c4", "c5"]
    entries = _entries(0.2, None)  # the latest lacks it: kept anyway, as the latest
    assert _names(select_checkpoints_to_keep(entries, 1, "acc", "max")) == ["c1", "c2"]
    ranked = rank_checkpoints(_entries(None, 0.2, None, 0.3), "acc", "min")
    assert _names(ranked) == ["c2", "c4", "c3", "c1"]


def test_num_to_keep_none_keeps_all():
    entries = _entries(0.1, 0.2, 0.3, None)
    assert select_checkpoints_to_keep(entries, None, "acc", "max") == entries
    assert select_checkpoints_to_keep(entries, None) == entries


def test_without_attribute_the_most_recent_are_kept():
    entries = _entries(0.9, 0.8, 0.7, 0.6)
    assert _names(select_checkpoints_to_keep(entries, 2)) == ["c3", "c4"]
    assert _names(select_checkpoints_to_keep(entries, 1)) == ["c4"]
    assert _names(rank_checkpoints(entries)) == ["c1", "c2", "c3", "c4"]


def test_ties_go_to_the_more_recent():
    entries = _entries(0.5, 0.5, 0.5, 0.1)
    assert _names(select_checkpoints_to_keep(entries, 1, "acc", "max")) == ["c3", "c4"]
    assert _names(select_checkpoints_to_keep(entries, 2, "acc", "max")) == ["c2", "c3", "c4"]
    assert _names(rank_checkpoints(entries, "acc", "max")) == ["c3", "c2", "c1", "c4"]


def test_nested_attribute_and_bad_order():
    entries = [("a", {"m": {"acc": 1}}), ("b", {"m": {"acc": 2}}), ("c", {"m": {"acc": 0}})]
    assert _names(select_checkpoints_to_keep(entries, 1, "m/acc", "max")) == ["b", "c"]
    with pytest.raises(ValueError, match="max"):
        select_checkpoints_to_keep(entries, 1, "m/acc", "best")


def test_retention_applied_after_each_checkpoint_matches_applying_it_once():
    # The runner applies the policy after every new checkpoint; dropping early must not
    # lose one that would be among the best at the end.
    scores = [0.3, 0.9, 0.1, 0.95, 0.2, 0.5, 0.4]
    entries = _entries(*scores)
    kept = []
    for entry in entries:
        kept = select_checkpoints_to_keep(kept + [entry], 2, "acc", "max")
    assert _names(kept) == ["c2", "c4", "c7"]
