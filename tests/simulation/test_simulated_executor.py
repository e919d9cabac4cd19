"""The simulated executor: sweeps of the ordinary Tuner in simulated time, exactly
reproducible, with the same schedulers, stop criteria, budgets and checkpoints as a real run,
and the same decisions as the real executor on the same curves."""
import json
import os
import random

import numpy as np
import pytest

import fasttune as tune
from fasttune.schedulers import ASHAScheduler, PopulationBasedTraining
from fasttune.search import BasicVariantGenerator, uniform
from fasttune.simulation import (
    Blackbox, FunctionBlackbox, Simulation, SimulatedClock, SimulatedExecutor, TabularBlackbox, blackbox_trainable,
    learning_curve_table,
    reference_trial_order,
)
from fasttune_testing import fit

N_TRIALS = 60


@pytest.fixture(scope="module")
def table():
    return learning_curve_table(200, seed=0, n_epochs=9)


def asha():
    return ASHAScheduler(time_attr="epoch", max_t=9, grace_period=1, reduction_factor=3)


def asha_sweep(table, storage, name, *, workers=4, seed=0, n=N_TRIALS, points_from=None, **tune_kwargs):
    points = reference_trial_order(points_from or table, n_trials=n, seed=seed)
    config = tune.TuneConfig(metric="loss", mode="min", num_samples=n, scheduler=asha(),
                             search_alg=BasicVariantGenerator(points_to_evaluate=points, random_state=seed),
                             **tune_kwargs)
    return fit(Simulation(table, num_workers=workers, write_results=True), str(storage), space=table.search_space, name=name,
               tune_config=config)


def histories(grid):
    """Every trial's results as written to its result.json (the sweeps here write them:
    Simulation(write_results=True)), in the trials' order (a trial
    id's prefix is random per experiment, as in Ray Tune), less the config and the id."""
    out = {}
    for number, result in enumerate(grid):
        path = os.path.join(result.path, "result.json")
        rows = []
        if os.path.exists(path):  # a trial the budget stopped before it started has none
            with open(path) as f:
                rows = [json.loads(line) for line in f]
        for row in rows:
            row.pop("config", None)
            row.pop("trial_id", None)
        out[number] = rows
    return out


def expected_curve(table, config, first, last):
    metrics, _ = table.curve(config)
    return metrics["loss"][first - 1:last].tolist()


# ---- the clock ----------------------------------------------------------------------------------
def test_the_clock_moves_only_forward_and_only_when_told():
    clock = SimulatedClock(start=5.0)
    clock.advance_to(3.0)
    assert clock.time() == clock.monotonic() == 5.0
    clock.advance_to(7.25)
    assert clock.time() == 7.25


# ---- a sweep ------------------------------------------------------------------------------------
def test_asha_sweep_replays_the_curves_and_times_of_the_table(table, tmp_path):
    grid = asha_sweep(table, tmp_path, "asha")
    assert len(grid) == N_TRIALS and not grid.errors
    for number, rows in histories(grid).items():
        config = grid[number].config
        epochs = [row["epoch"] for row in rows]
        assert epochs == list(range(1, len(rows) + 1))
        assert len(rows) in (1, 3, 9)  # ASHA's rungs: 1, 3, 9
        assert [row["loss"] for row in rows] == expected_curve(table, config, 1, len(rows))
        _, step_seconds = table.curve(config)
        assert [row["time_this_iter_s"] for row in rows] == pytest.approx(step_seconds[:len(rows)].tolist(), abs=1e-9)
        assert rows[-1]["time_total_s"] == pytest.approx(float(np.sum(step_seconds[:len(rows)])), abs=1e-9)
        assert [row["hostname"] for row in rows] == ["simulated"] * len(rows)


def test_two_runs_with_the_same_seeds_are_identical_to_the_bit(table, tmp_path):
    first = histories(asha_sweep(table, tmp_path / "a", "same"))
    second = histories(asha_sweep(table, tmp_path / "b", "same"))
    assert first == second
    other_seed = histories(asha_sweep(table, tmp_path / "c", "same", seed=1))
    assert other_seed != first


def test_asha_stops_exactly_the_trials_its_rule_says_in_simulated_time_order(table, tmp_path):
    """One virtual worker runs the trials one after another, so ASHA's decisions are those of
    its rule applied to the trials in order: recomputed here from the table alone."""
    grid = asha_sweep(table, tmp_path, "one_worker", workers=1, n=30)
    lengths = {tuple(sorted(r.config.items())): r.metrics["training_iteration"] for r in grid}
    rungs = {1: [], 3: []}
    expected = []
    for config in reference_trial_order(table, n_trials=30, seed=0):
        loss = table.curve(config)[0]["loss"]
        length = 9
        for milestone in (1, 3):
            recorded = rungs[milestone]
            cutoff = np.nanpercentile(recorded, 100 / 3) if recorded else None  # ASHA's cutoff (min mode)
            value = float(loss[milestone - 1])
            recorded.append(value)
            if cutoff is not None and value > cutoff:
                length = milestone
                break
        expected.append(length)
    got = [lengths[tuple(sorted(c.items()))] for c in reference_trial_order(table, n_trials=30, seed=0)]
    assert got == expected
    assert sorted(set(got)) == [1, 3, 9]


def test_time_budget_counts_simulated_seconds_and_cuts_the_sweep_exactly_there(table, tmp_path):
    """The table's curves with whole-second steps, so a result's ``timestamp`` is its exact
    simulated time: the budgeted sweep holds exactly the results of the whole one up to it."""
    whole_seconds = FunctionBlackbox(lambda config, epoch: (table.evaluate(config, epoch)[0], 1.0 + config["row"] % 5),
                                     table.search_space, fidelities=table.fidelities, metric_names=["loss"])
    whole = histories(asha_sweep(whole_seconds, tmp_path / "whole", "budget", points_from=table))
    budget = 60.5  # between two results: none is at the very instant the sweep ends
    cut = histories(asha_sweep(whole_seconds, tmp_path / "cut", "budget", points_from=table, time_budget_s=budget))
    assert max(row["timestamp"] for rows in whole.values() for row in rows) > budget
    assert max(row["timestamp"] for rows in cut.values() for row in rows) <= budget
    up_to_budget = {number: [row for row in rows if row["timestamp"] <= budget] for number, rows in whole.items()}
    assert {number: rows for number, rows in cut.items() if rows} == {
        number: rows for number, rows in up_to_budget.items() if rows}


def test_stop_criteria_see_simulated_fields(table, tmp_path):
    # Seeded: 5 of the table's 200 curves end before 20 s, and an unseeded draw met one now and then.
    config = tune.TuneConfig(metric="loss", mode="min", num_samples=5, search_alg=BasicVariantGenerator(random_state=0))
    grid = fit(Simulation(table, num_workers=2, write_results=True), str(tmp_path), space=table.search_space, name="stop",
               tune_config=config, stop={"time_total_s": 20.0})
    for rows in histories(grid).values():
        totals = [row["time_total_s"] for row in rows]
        assert totals[-1] >= 20.0 and all(t < 20.0 for t in totals[:-1])


def test_pbt_exploits_continue_the_donors_fidelity_with_the_new_config(tmp_path):
    """A function blackbox whose loss is ``lr * 100 + 1 / epoch``: PBT copies the best trial's
    checkpoint (its epoch) into the worst and perturbs lr; the recipient's next epochs are the
    donor's next ones, and its losses those of its new lr."""
    blackbox = FunctionBlackbox(lambda config, epoch: ({"loss": config["lr"] * 100 + 1.0 / epoch}, 1.0),
                                {"lr": uniform(0.001, 0.1)}, fidelities=list(range(1, 13)), metric_names=["loss"])
    random.seed(3)  # PBT's choices draw from the random module, as Ray Tune's do
    pbt = PopulationBasedTraining(time_attr="epoch", perturbation_interval=4,
                                  hyperparam_mutations={"lr": [0.001, 0.01, 0.1]}, quantile_fraction=0.25)
    config = tune.TuneConfig(metric="loss", mode="min", num_samples=4, scheduler=pbt,
                             search_alg=BasicVariantGenerator(random_state=0))
    grid = fit(Simulation(blackbox, num_workers=4, write_results=True), str(tmp_path), space=blackbox.search_space, name="pbt",
               tune_config=config)
    exploited = 0
    for result in grid:
        with open(os.path.join(result.path, "result.json")) as f:
            rows = [json.loads(line) for line in f]
        for previous, row in zip([None] + rows, rows):
            assert row["training_iteration"] == row["epoch"]  # the counter follows the checkpoint's epoch
            assert row["loss"] == row["config"]["lr"] * 100 + 1.0 / row["epoch"]  # the curve of its config now
            if previous is None:
                assert row["epoch"] == 1
            elif row["config"] != previous["config"]:
                exploited += 1
                # it goes on from the donor's latest checkpoint: no later than where it was
                assert row["epoch"] <= previous["epoch"] + 1
            else:
                assert row["epoch"] == previous["epoch"] + 1
    assert exploited > 0


def test_a_config_the_blackbox_cannot_answer_fails_that_trial_only(tmp_path):
    def answer(config, epoch):
        if config["x"] > 0.5:
            raise ValueError(f"no curve for x={config['x']}")
        return {"loss": config["x"] / epoch}, 2.0

    blackbox = FunctionBlackbox(answer, {"x": uniform(0, 1)}, fidelities=[1, 2, 3], metric_names=["loss"])
    points = [{"x": 0.1}, {"x": 0.9}, {"x": 0.2}]
    config = tune.TuneConfig(metric="loss", mode="min", num_samples=3,
                             search_alg=BasicVariantGenerator(points_to_evaluate=points))
    grid = fit(Simulation(blackbox, num_workers=1, write_results=True), str(tmp_path), space=blackbox.search_space, name="bad",
               tune_config=config)
    assert [r.config["x"] for r in grid if r.error is None] == [0.1, 0.2]
    [failed] = [r for r in grid if r.error is not None]
    assert failed.config["x"] == 0.9 and "no curve for x=0.9" in str(failed.error)



def test_configs_no_worker_can_be_sent_fail_their_trials_also_when_nothing_else_runs(tmp_path):
    """The first two trials hold a lock (neither copied nor sent): each fails at once,
    naming the key, while no other trial runs yet; the searcher is asked on, not taken
    for stuck, and the trials after them run."""
    import threading

    space = {"i": tune.grid_search([0, 1, 2, 3]),
             "v": tune.sample_from(lambda spec: threading.Lock() if spec.config.i < 2 else spec.config.i)}
    blackbox = FunctionBlackbox(lambda config, epoch: ({"loss": config["i"] / epoch}, 1.0), space, [1, 2], ["loss"])
    grid = fit(Simulation(blackbox, num_workers=2), str(tmp_path), space=space, name="locks",
               tune_config=tune.TuneConfig(metric="loss", mode="min"))
    by_i = {r.config["i"]: r for r in grid}
    assert sorted(by_i) == [0, 1, 2, 3]
    for i in (0, 1):
        assert "was not started: config['v'] is a lock" in str(by_i[i].error)
    assert [(by_i[i].error, by_i[i].metrics["loss"]) for i in (2, 3)] == [(None, 1.0), (None, 1.5)]
    assert tune.ResultGrid.from_path(grid.experiment_path).num_errors == 2

def test_bad_settings_are_refused_when_made(table):
    with pytest.raises(ValueError, match="num_workers must be a positive int"):
        Simulation(table, num_workers=0)
    with pytest.raises(ValueError, match="checkpoint_at"):
        Simulation(table, checkpoint_at="sometimes")
    with pytest.raises(TypeError, match="needs a fasttune.simulation.Blackbox"):
        SimulatedExecutor({"not": "a blackbox"})
    with pytest.raises(TypeError, match="runs only as a Tuner's trainable"):
        Simulation(table)({"row": 0})


def test_a_tabular_blackbox_from_a_dataframe_runs_as_well(tmp_path):
    import pandas  # the test extra installs it

    frame = pandas.DataFrame({"width": [8, 8, 16, 16], "epoch": [1, 2, 1, 2], "loss": [0.9, 0.5, 0.7, 0.2],
                              "elapsed": [1.0, 2.0, 3.0, 6.0]})
    blackbox = TabularBlackbox(frame, config_columns=["width"], fidelity_column="epoch", metric_columns=["loss"],
                               elapsed_column="elapsed")
    config = tune.TuneConfig(metric="loss", mode="min", num_samples=2,
                             search_alg=BasicVariantGenerator(points_to_evaluate=[blackbox.config_of_row(0),
                                                                                  blackbox.config_of_row(1)]))
    grid = fit(Simulation(blackbox, num_workers=2, write_results=True), str(tmp_path), space=blackbox.search_space, name="df",
               tune_config=config)
    rows = histories(grid)
    got = {r.config["width"]: [(row["loss"], row["time_total_s"]) for row in rows[number]]
           for number, r in enumerate(grid)}
    assert got == {8: [(0.9, 1.0), (0.5, 2.0)], 16: [(0.7, 3.0), (0.2, 6.0)]}


# ---- the same decisions as the real executor ------------------------------------------------------
@pytest.mark.parametrize("scheduler", ["asha", "fifo_stop"])
def test_the_real_executor_and_the_simulator_make_the_same_decisions(table, tmp_path, ray_session, scheduler):
    """One worker each: the real executor runs the blackbox's trainable trial after trial on
    Ray, the simulator in simulated time; every trial's history (its losses, where it was
    stopped) is the same, and so is the best trial."""
    n = 24
    points = reference_trial_order(table, n_trials=n, seed=2)
    run_kwargs = {"stop": {"epoch": 4}} if scheduler == "fifo_stop" else {}

    def tune_config():
        return tune.TuneConfig(metric="loss", mode="min", num_samples=n, max_concurrent_trials=1,
                               scheduler=asha() if scheduler == "asha" else None,
                               search_alg=BasicVariantGenerator(points_to_evaluate=points, random_state=2))

    real = fit(blackbox_trainable(table), str(tmp_path / "real"), space=table.search_space, name="real",
               tune_config=tune_config(), **run_kwargs)
    simulated = fit(Simulation(table, num_workers=1, write_results=True), str(tmp_path / "sim"), space=table.search_space, name="sim",
                    tune_config=tune_config(), **run_kwargs)

    def decisions(grid):
        return [[(row["epoch"], row["loss"]) for row in rows] for rows in histories(grid).values()]

    assert decisions(real) == decisions(simulated)
    assert {len(rows) for rows in decisions(real)} == ({1, 3, 9} if scheduler == "asha" else {4})
    assert real.get_best_result().config == simulated.get_best_result().config


def test_each_decision_costs_the_overhead_set_and_nothing_else(table, tmp_path):
    """ASHA over training_iteration decides at iterations 1 and 3 only (its rungs are its
    decision points): a trial that runs all 9 epochs waited twice."""
    points = reference_trial_order(table, n_trials=12, seed=0)

    def sweep(overhead, name):
        scheduler = ASHAScheduler(time_attr="training_iteration", max_t=9, grace_period=1, reduction_factor=3)
        config = tune.TuneConfig(metric="loss", mode="min", num_samples=12, scheduler=scheduler,
                                 search_alg=BasicVariantGenerator(points_to_evaluate=points))
        return fit(Simulation(table, num_workers=1, decision_overhead_s=overhead, write_results=True), str(tmp_path), name=name,
                   space=table.search_space, tune_config=config)

    plain, slow = histories(sweep(0.0, "plain")), histories(sweep(2.5, "slow"))
    assert [len(rows) for rows in plain.values()] == [len(rows) for rows in slow.values()]
    for number, rows in slow.items():
        decisions_before = [sum(1 for point in (1, 3) if point < row["epoch"]) for row in rows]
        assert [row["time_total_s"] for row in rows] == pytest.approx(
            [row["time_total_s"] + 2.5 * waited for row, waited in zip(plain[number], decisions_before)], abs=1e-9)


def test_checkpoints_every_n_fidelities_name_the_epoch_they_hold(table, tmp_path):
    config = tune.TuneConfig(metric="loss", mode="min", num_samples=2,
                             search_alg=BasicVariantGenerator(points_to_evaluate=reference_trial_order(table, 2, seed=0)))
    grid = fit(Simulation(table, num_workers=2, checkpoint_at=4, write_results=True), str(tmp_path), name="every4",
               space=table.search_space, tune_config=config)
    for rows in histories(grid).values():
        assert [row["epoch"] for row in rows if row["checkpoint_dir_name"]] == [4, 8]
        assert [row["checkpoint_dir_name"] for row in rows if row["checkpoint_dir_name"]] == [
            "checkpoint_000000", "checkpoint_000001"]


# ---- the executor driven directly ---------------------------------------------------------------
def _kinds(records):
    return [type(r).__name__ + (f":{r.how}" if hasattr(r, "how") else "") for r in records]


def _answer_or_fail(config, epoch):
    if config["x"] > 0:
        raise ValueError("no curve there")
    return {"loss": config["x"] * epoch}, 1.0


def test_an_interrupt_keeps_a_failure_or_an_end_that_happened_by_then():
    from types import SimpleNamespace

    blackbox = FunctionBlackbox(_answer_or_fail, {"x": uniform(-1, 1)}, range(1, 5), ["loss"])
    executor = SimulatedExecutor(blackbox, num_workers=2)
    failing = SimpleNamespace(trial_id="failing", config={"x": 0.5})
    executor.start_trial(failing, {"trial_id": "failing", "decide": "never"})
    assert executor.stop_trial(failing)  # stop_all before the runner took the failure
    assert _kinds(executor.get_next_executor_event(False)[2]) == ["Started", "Failed"]

    executor = SimulatedExecutor(blackbox, num_workers=2)
    first, second = SimpleNamespace(trial_id="a", config={"x": -0.5}), SimpleNamespace(trial_id="b", config={"x": -0.2})
    executor.start_trial(first, {"trial_id": "a", "decide": "never"})
    executor.start_trial(second, {"trial_id": "b", "decide": "never"})
    assert _kinds(executor.get_next_executor_event(False)[2]) == ["Started", "Results", "Ended:done"]
    assert executor.clock.now == 4.0
    assert executor.stop_trial(second)  # it finished at the same simulated second
    slot, records = executor.get_next_executor_event(False)[1:]
    assert slot == 1 and _kinds(records) == ["Started", "Results", "Ended:done"] and len(records[1].metrics) == 4


def test_an_interrupt_mid_segment_keeps_the_results_reported_by_then():
    from types import SimpleNamespace

    blackbox = FunctionBlackbox(lambda config, epoch: ({"loss": 1.0 / epoch}, 2.0), {"x": uniform(0, 1)},
                                range(1, 7), ["loss"])
    executor = SimulatedExecutor(blackbox, num_workers=2)
    slow, fast = SimpleNamespace(trial_id="slow", config={"x": 0}), SimpleNamespace(trial_id="fast", config={"x": 0})
    executor.start_trial(slow, {"trial_id": "slow", "decide": "never"})
    executor.start_trial(fast, {"trial_id": "fast", "decide": "never", "stop": {"training_iteration": 2}})
    assert executor.get_next_executor_event(False)[1] == 1 and executor.clock.now == 4.0  # "fast" stopped at 2
    assert executor.pause_trial(slow)
    records = executor.get_next_executor_event(False)[2]
    assert _kinds(records) == ["Started", "Results", "Ended:paused"]
    assert [r["loss"] for r in records[1].metrics] == [1.0, 0.5]  # epochs 1 and 2 ended by t=4; 3 never happened


def _epochs_that_waited(executor, trial, spec):
    """Drive one trial to its end, continuing at each decision: the epochs it waited at,
    and its Results records."""
    executor.start_trial(trial, spec)
    waited, results = [], []
    while True:
        _, slot, records = executor.get_next_executor_event(False)
        results.extend(record for record in records if type(record).__name__ == "Results")
        if type(records[-1]).__name__ != "Decide":
            executor.trial_ended(slot, trial)
            return waited, results
        waited.append(results[-1].metrics[-1]["epoch"])
        executor.send_decision(slot, trial.trial_id, "continue")


@pytest.mark.parametrize("needs", [["loss"], ["accuracy"]])
def test_points_on_the_fidelity_wait_where_their_watch_says_from_any_start(needs):
    """Points where the epoch reaches values (ASHA's and HyperBand's on ``epoch``), which the
    executor works out once per starting epoch: a trial waits where a fresh watch of the
    points would, from the first epoch and from a checkpoint's, and at every result when the
    metric the points need is not in the curve."""
    from types import SimpleNamespace

    from fasttune.schedulers import DecisionPoints

    blackbox = FunctionBlackbox(lambda config, epoch: ({"loss": config["x"] / epoch}, 1.0), {"x": uniform(0, 1)},
                                range(1, 10), ["loss"])
    points = DecisionPoints.reaching("epoch", [1, 3, 9], needs=needs)
    executor = SimulatedExecutor(blackbox, num_workers=1, checkpoint_at=4)

    def expected(first_epoch):
        watch = points.watch()
        return [epoch for epoch in range(first_epoch, 10) if watch(0, {"loss": 0.0, "epoch": epoch}, 0.0)]

    first = SimpleNamespace(trial_id="a", config={"x": 0.5})
    waited, results = _epochs_that_waited(executor, first, {"trial_id": "a", "decide": points.to_wire(),
                                                            "trial_dir": "/exp/a"})
    assert waited == expected(1) == ([1, 3, 9] if needs == ["loss"] else list(range(1, 10)))
    [checkpoint] = [name for record in results for index, name in record.checkpoints.items()
                    if record.metrics[index]["epoch"] == 4]
    for trial_id in ("b", "c"):  # the second from the same epoch reuses the first's work
        resumed = SimpleNamespace(trial_id=trial_id, config={"x": 0.25})
        waited, _ = _epochs_that_waited(executor, resumed, {"trial_id": trial_id, "decide": points.to_wire(),
                                                            "restore": f"/exp/a/{checkpoint}", "iteration": 4})
        # (A segment's watch starts afresh: it waits once for each of 1 and 3, passed already.)
        assert waited == expected(5) == ([5, 6, 9] if needs == ["loss"] else list(range(5, 10)))


class TextLossForTrialZero(Blackbox):
    """Four epochs of a falling loss; configuration ``i=0`` reports its loss as text."""

    def curve(self, config):
        epochs = np.array([1.0, 2.0, 3.0, 4.0])
        loss = np.array(["bad"] * 4, dtype=object) if config["i"] == 0 else config["i"] / epochs
        return {"loss": loss}, np.ones(4)


@pytest.mark.parametrize("engine", ["direct", "runner"])
def test_a_metric_asha_cannot_compare_fails_only_its_trial_in_either_loop(tmp_path, engine):
    space = {"i": tune.grid_search([0, 1, 2])}
    blackbox = TextLossForTrialZero(space, "epoch", [1, 2, 3, 4], ["loss"])
    grid = fit(Simulation(blackbox, num_workers=2, engine=engine), str(tmp_path), space=space,
               tune_config=tune.TuneConfig(metric="loss", mode="min", scheduler=ASHAScheduler(max_t=4, grace_period=1)))
    by_i = {r.config["i"]: r for r in grid}
    assert "AsyncHyperBandScheduler: trial" in str(by_i[0].error) and "'loss' = 'bad' (str)" in str(by_i[0].error)
    assert by_i[0].metrics == {}  # the bad result is not counted
    assert by_i[1].error is None and by_i[2].error is None and grid.num_errors == 1
