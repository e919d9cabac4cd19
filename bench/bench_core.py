"""Micro-benchmarks of the event core: compiled ``fasttune._core`` against its
pure-Python twin, side by side in one run.

    pytest bench/bench_core.py --benchmark-enable

Each group holds the two implementations of one operation; pytest-benchmark's
table gives every statistic's ratio to the faster of the two in parentheses,
so the twin's "Median" ratio is the compiled speed-up.
"""
import random

import pytest

import fasttune._core as compiled
import fasttune._core_fallback as twin

IMPLEMENTATIONS = [pytest.param(compiled, id="compiled"), pytest.param(twin, id="python")]


@pytest.mark.parametrize("core", IMPLEMENTATIONS)
@pytest.mark.benchmark(group="TrialTable: 2,000 adds, then run/record/terminate each")
def test_table_add_and_transitions(benchmark, core):
    def run():
        table = core.TrialTable("min")
        rows = [table.add() for _ in range(2000)]
        for row in rows:
            table.set_status(row, core.RUNNING)
            table.record_result(row, 1, 1.5, 0.25)
            table.set_status(row, core.TERMINATED)
        return table.counts()

    assert benchmark(run) == (0, 0, 0, 2000, 0)


@pytest.mark.parametrize("core", IMPLEMENTATIONS)
@pytest.mark.benchmark(group="TrialTable: rows(RUNNING) and counts() of 50,000 rows")
def test_table_rows_query(benchmark, core):
    table = core.TrialTable("min")
    for row in range(50_000):
        table.add()
        if row % 50 == 0:
            table.set_status(row, core.RUNNING)

    def run():
        return len(table.rows(core.RUNNING)), table.counts()

    assert benchmark(run) == (1000, (49_000, 1000, 0, 0, 0))


@pytest.mark.parametrize("core", IMPLEMENTATIONS)
@pytest.mark.benchmark(group="EventSelector: 1,000 pushes and pops over 64 workers")
def test_selector_push_pop(benchmark, core):
    order = list(range(64))
    random.Random(0).shuffle(order)

    def run():
        selector = core.EventSelector()
        served = 0
        for _ in range(16):
            for slot in order[:62]:
                selector.push(slot, core.EVENT_BATCH)
            selector.push(-1, core.EVENT_START)
            while selector.pop(True) is not None:
                served += 1
        return served

    assert benchmark(run) == 16 * 63


def small_results(n, seed=0):
    """A training loop's typical reports: a few floats and counters each."""
    rng = random.Random(seed)
    metrics = [{"loss": rng.random(), "accuracy": rng.random(), "epoch": i // 10,
                "lr": 0.01, "grad_norm": rng.random() * 10, "step": i * 100}
               for i in range(n)]
    times = [1.7e9 + i * 0.0123 + rng.random() * 1e-3 for i in range(n)]
    return metrics, times


@pytest.mark.parametrize("core", IMPLEMENTATIONS)
@pytest.mark.benchmark(group="ResultBuffer.ingest: batch of 1,000 small results")
def test_ingest_batch(benchmark, core):
    table = core.TrialTable("min")
    row = table.add()
    buf = core.ResultBuffer(table, "loss")
    buf.open_trial(row, "train_fn_a1b2c_00000", '{"lr": 0.01, "layers": 2}',
                   {"training_iteration": 10 ** 9}, start_time=1.7e9 - 1.0,
                   hostname="worker-node-1", node_ip="10.0.0.12", pid=31337)
    metrics, times = small_results(1000)

    out = benchmark(buf.ingest, row, metrics, times)
    assert len(out.results) == 1000 and out.error is None
