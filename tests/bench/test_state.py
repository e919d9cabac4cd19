"""The snapshot series' fasttune side builds its experiment through the runner's own
books (no Ray, no sweep): a small one snapshots and restores to the same statuses."""
from bench.bench_state import _fasttune_repeat


def test_the_snapshot_series_builds_snapshots_and_restores_a_small_experiment(tmp_path):
    out = _fasttune_repeat(40, str(tmp_path), warm_count=1)
    assert out["restore_ok"] is True
    assert out["bytes"] > 0 and len(out["warm_s"]) == 1
