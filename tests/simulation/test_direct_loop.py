"""The simulation's direct loop runs a sweep as the runner's loop does: for every sweep it
takes, the same ResultGrid, the same final snapshot (trials, table, the policies' and
callbacks' states, the executor's clock) and the same callback calls, in the same order."""
import time

import numpy as np
import pytest

import fasttune as tune
from fasttune._flatten import flatten_dict
from fasttune.callback import CallbackList
from fasttune.experiment import experiment as experiment_module
from fasttune.execution._experiment_state import load_latest
from fasttune.execution import _trial_events as trial_events
from fasttune.execution._trial_state import TrialState
from fasttune.schedulers import ASHAScheduler, FIFOScheduler, HyperBandScheduler
from fasttune.search import BasicVariantGenerator, Searcher
from fasttune.simulation import AnytimeRecorder, FunctionBlackbox, Simulation, learning_curve_table
from fasttune.simulation import reference_trial_order
from fasttune.simulation import _direct as direct_module
from fasttune.simulation._direct import DirectLoop, ResultDateText, direct_loop_refusal
from fasttune_testing import StandIn


@pytest.fixture(scope="module")
def table():
    return learning_curve_table(300, seed=0)


@pytest.fixture(autouse=True)
def same_trial_ids(monkeypatch):
    """Each experiment draws its trial ids' prefix at random: both loops' sweeps get the same
    one, so that what they save is alike to the byte (sets of trial ids included)."""
    monkeypatch.setattr(experiment_module.secrets, "token_hex", lambda n: "5eed5eed"[:2 * n])


class CallRecorder(tune.Callback):
    """Every hook the direct loop calls, with what a callback can see of it."""

    def __init__(self):
        self.calls = []

    def on_trial_start(self, iteration, trials, trial, **info):
        self.calls.append(("start", iteration, trial.trial_id[-5:], len(trials)))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.calls.append(("result", iteration, trial.trial_id[-5:], result["training_iteration"], result["done"]))

    def on_trial_result_batch(self, iteration, trials, trial, results, times, **info):
        self.calls.append(("batch", iteration, trial.trial_id[-5:], len(results), list(times)))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.calls.append(("complete", iteration, trial.trial_id[-5:], trial.last_result.get("training_iteration")))

    def on_trial_error(self, iteration, trials, trial, **info):
        self.calls.append(("error", iteration, trial.trial_id[-5:]))

    def on_trial_recover(self, iteration, trials, trial, **info):
        self.calls.append(("recover", iteration, trial.trial_id[-5:]))


def run(simulation, storage, *, scheduler, n_trials, seed=0, searcher=None, callbacks=(), space=None, max_failures=0,
        stop=None, **tune_kwargs):
    np.random.seed(seed)  # ASHA draws its brackets from numpy's global state, as Ray Tune
    searcher = searcher or BasicVariantGenerator(
        points_to_evaluate=reference_trial_order(simulation.blackbox, n_trials=n_trials, seed=seed), random_state=seed)
    tuner = tune.Tuner(simulation, param_space=space or simulation.blackbox.search_space,
                       tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=n_trials,
                                                   scheduler=scheduler, search_alg=searcher, **tune_kwargs),
                       run_config=tune.RunConfig(storage_path=str(storage), name="sweep", verbose=0,
                                                 callbacks=list(callbacks), stop=stop,
                                                 failure_config=tune.FailureConfig(max_failures=max_failures)))
    return tuner.fit()


def both(tmp_path, simulation, make_policies, **kwargs):
    """The sweep on each loop (the same Simulation object, so the trainable's name is the
    same): what a user and a restore can see of each, with the run-specific names (the
    trial-id prefix, the storage directory) made the same."""
    seen = {}
    for engine, storage in (("runner", tmp_path / "r"), ("direct", tmp_path / "d")):
        simulation.engine = engine
        recorder, anytime = CallRecorder(), AnytimeRecorder("loss")
        scheduler, searcher = make_policies()
        grid = run(simulation, storage, scheduler=scheduler, searcher=searcher, callbacks=[recorder, anytime], **kwargs)
        state, _ = load_latest(str(storage / "sweep"))
        last_results = grid.get_dataframe().drop(columns=["logdir", "path"])
        frame = last_results.to_csv()
        del state["timestamp"]  # (the wall clock's)
        text = repr(state).replace(str(storage), "STORE")
        errors = [str(result.error) if result.error else None for result in grid]
        seen[engine] = dict(frame=frame, last_results=last_results, state=text, calls=recorder.calls, errors=errors,
                            anytime=[column.tolist() for column in anytime.columns()[:2]])
    simulation.engine = "auto"
    return seen["runner"], seen["direct"]


def assert_alike(runner, direct, state=True):
    """The two loops' sweeps (as ``both`` returns them) left the same grid, snapshot (unless
    ``state`` is False), callback calls and anytime curve."""
    assert direct["frame"] == runner["frame"]
    if state:
        assert direct["state"] == runner["state"]
    assert direct["calls"] == runner["calls"]
    assert direct["anytime"] == runner["anytime"]


def asha(**kwargs):
    return lambda: (ASHAScheduler(time_attr="epoch", max_t=27, grace_period=1, reduction_factor=3, **kwargs), None)


SWEEPS = {
    "asha_4_workers": (dict(num_workers=4), asha()),
    "asha_1_worker": (dict(num_workers=1), asha()),
    "asha_32_workers": (dict(num_workers=32), asha()),
    "asha_decision_overhead": (dict(num_workers=3, decision_overhead_s=0.75), asha()),
    "asha_3_brackets": (dict(num_workers=4), asha(brackets=3)),
    "asha_last_trials_go_on": (dict(num_workers=4), asha(stop_last_trials=False)),
    "asha_on_iterations": (dict(num_workers=4), lambda: (ASHAScheduler(max_t=27, grace_period=2, reduction_factor=2), None)),
    "asha_on_simulated_seconds": (dict(num_workers=4), lambda: (
        ASHAScheduler(time_attr="time_total_s", max_t=150.0, grace_period=10.0, reduction_factor=3), None)),
    "fifo": (dict(num_workers=4), lambda: (FIFOScheduler(), None)),
}
# The same sweeps under time budgets that end them at several points (in simulated seconds).
BUDGETS = {
    "asha_budget_early": ("asha_4_workers", 35.0),
    "asha_budget_mid": ("asha_4_workers", 400.0),
    "asha_budget_overhead": ("asha_decision_overhead", 333.3),
    "asha_budget_1_worker": ("asha_1_worker", 700.0),
    "fifo_budget": ("fifo", 500.0),
}


@pytest.mark.parametrize("name", sorted(SWEEPS))
def test_the_direct_loop_ends_a_sweep_as_the_runners_loop_does(tmp_path, table, name):
    settings, make_policies = SWEEPS[name]
    runner, direct = both(tmp_path, Simulation(table, **settings), make_policies, n_trials=120)
    assert_alike(runner, direct)
    # A sweep that shows nothing would pass the above: this one ran every trial and decided.
    assert sum(1 for call in runner["calls"] if call[0] == "complete") == 120
    assert len({call[3] for call in runner["calls"] if call[0] == "complete"}) > 1 or name == "fifo"


# ... and under stop criteria (RunConfig(stop={...})) on a metric, the fidelity and automatic fields.
STOPS = {
    "asha_stop_loss": ("asha_4_workers", {"loss": 0.9}),
    "asha_stop_epoch": ("asha_decision_overhead", {"epoch": 5}),
    "fifo_stop_iterations": ("fifo", {"training_iteration": 7}),
    "fifo_stop_time": ("fifo", {"time_total_s": 120.0, "time_this_iter_s": 9.5}),
    "asha_stop_timestamp": ("asha_1_worker", {"timestamp": 900}),
}


@pytest.mark.parametrize("name", sorted(STOPS))
def test_stop_criteria_end_trials_on_the_direct_loop_as_on_the_runners(tmp_path, table, name):
    sweep, stop = STOPS[name]
    settings, make_policies = SWEEPS[sweep]
    runner, direct = both(tmp_path, Simulation(table, **settings), make_policies, n_trials=60, stop=stop)
    assert_alike(runner, direct)
    last = runner["last_results"]
    reached = np.zeros(len(last), dtype=bool)
    for key, threshold in stop.items():
        reached |= (last[key] >= threshold).to_numpy()
    assert reached.any()  # the criterion ended some trials


@pytest.mark.parametrize("name", sorted(BUDGETS))
def test_a_time_budget_ends_a_sweep_on_the_direct_loop_as_on_the_runners(tmp_path, table, name):
    sweep, budget = BUDGETS[name]
    settings, make_policies = SWEEPS[sweep]
    runner, direct = both(tmp_path, Simulation(table, **settings), make_policies, n_trials=120, time_budget_s=budget)
    assert_alike(runner, direct)
    completes = sum(1 for call in runner["calls"] if call[0] == "complete")
    assert 4 <= completes < 120  # the budget ended it, with trials begun and not


def test_a_learning_searcher_sees_the_same_results_in_the_same_order(tmp_path, table):
    pytest.importorskip("optuna")  # in the test extra: never skipped in CI
    from fasttune.search.optuna import OptunaSearch

    space = {"row": tune.randint(0, table.n_configs)}
    make = lambda: (ASHAScheduler(time_attr="epoch", max_t=27, grace_period=1, reduction_factor=3),  # noqa: E731
                    OptunaSearch(seed=3))
    simulation = Simulation(table, num_workers=4)
    runner, direct = both(tmp_path, simulation, make, n_trials=40, space=space)
    assert_alike(runner, direct, state=False)  # (Optuna's state holds its own wall-clock times)


class RowsInTurn(Searcher):
    """Suggests the given configs in turn and keeps what it hears: each (flat) result and end."""

    def __init__(self, configs):
        super().__init__()
        self.configs, self.heard = list(configs), []

    def suggest(self, trial_id):
        return self.configs.pop(0) if self.configs else Searcher.FINISHED

    def on_trial_result(self, trial_id, result):
        self.heard.append(("result", trial_id[-5:], dict(result)))

    def on_trial_complete(self, trial_id, result=None, error=False):
        self.heard.append(("complete", trial_id[-5:], dict(result or {}), error))


def test_a_searcher_hears_the_same_flat_results_on_both_loops(tmp_path, table):
    heard = {}
    simulation = Simulation(table, num_workers=3)
    for engine in ("runner", "direct"):
        simulation.engine = engine
        searcher = RowsInTurn(table.config_of_row(row) for row in range(0, 90, 3))
        run(simulation, tmp_path / engine, scheduler=ASHAScheduler(time_attr="epoch", max_t=27, grace_period=1,
                                                                    reduction_factor=3),
            searcher=searcher, n_trials=30, space={"note": "rows in turn"})
        heard[engine] = searcher.heard
    assert heard["direct"] == heard["runner"]
    flat = next(result for kind, _, result, *_ in heard["runner"] if kind == "result")
    assert "config/row" in flat and "config" not in flat  # flattened, as schedulers and searchers see results
    completes = [heard_ for heard_ in heard["runner"] if heard_[0] == "complete"]
    assert len(completes) == 30 and not any(error for *_, error in completes)


@pytest.mark.parametrize("searcher_hears", [False, True])
def test_the_direct_loop_makes_flat_results_only_for_a_policy_that_reads_them(tmp_path, table, monkeypatch,
                                                                            searcher_hears):
    # ASHA alone reads its time and metric, where each result reads as its flat form: no
    # flat copy is made; a searcher that hears results gets them (as the test above).
    flat_configs, flattened = [], []
    flat_config, flatten_result = DirectLoop._flat_config, TrialState.flatten_result
    monkeypatch.setattr(DirectLoop, "_flat_config", lambda loop, config: flat_configs.append(config) or flat_config(
        loop, config))
    monkeypatch.setattr(TrialState, "flatten_result", lambda state, result: flattened.append(result) or
                        flatten_result(state, result))
    checked, reads_as_flattened = [], trial_events.reads_as_flattened  # (the runner's check, made for each result)
    monkeypatch.setattr(trial_events, "reads_as_flattened", lambda result, keys: checked.append(result) or
                        reads_as_flattened(result, keys))
    searcher = RowsInTurn(table.config_of_row(row) for row in range(30)) if searcher_hears else None
    grid = run(Simulation(table, num_workers=3, engine="direct"), tmp_path, n_trials=30, searcher=searcher,
               scheduler=ASHAScheduler(time_attr="epoch", max_t=27, grace_period=1, reduction_factor=3),
               space={"note": "rows in turn"} if searcher_hears else None)
    assert len(grid) == 30 and not grid.errors
    assert len(flat_configs) == (30 if searcher_hears else 0)
    # At its end a trial's last result is judged flattened too (one check a trial, none per
    # result): made for the searcher that hears results, not for ASHA alone.
    assert all(result["done"] for result in checked + flattened)
    assert (len(checked), len(flattened)) == ((0, 30) if searcher_hears else (30, 0))


def failing_blackbox():
    """Configs with ``x`` over 0.8 cannot be evaluated; the others learn at a rate of ``x``."""
    def evaluate(config, epoch):
        if config["x"] > 0.8:
            raise ValueError(f"no curve for x={config['x']}")
        return {"loss": 1.0 / (1.0 + config["x"] * epoch)}, 1.0 + config["x"]

    return FunctionBlackbox(evaluate, {"x": tune.uniform(0.0, 1.0)}, fidelities=list(range(1, 10)),
                            metric_names=["loss"])


@pytest.mark.parametrize("max_failures", [0, 1])
def test_a_config_the_blackbox_cannot_answer_fails_its_trial_on_both_loops_alike(tmp_path, max_failures):
    blackbox = failing_blackbox()
    simulation = Simulation(blackbox, num_workers=3)
    make = lambda: (ASHAScheduler(time_attr="epoch", max_t=9, grace_period=1, reduction_factor=3),  # noqa: E731
                    BasicVariantGenerator(random_state=5))
    runner, direct = both(tmp_path, simulation, make, n_trials=30, max_failures=max_failures)
    assert sum(error is not None for error in runner["errors"]) > 0  # some x over 0.8 among the 30
    assert direct["errors"] == runner["errors"]  # the traceback too
    assert_alike(runner, direct)  # errors and recoveries included
    kinds = {call[0] for call in runner["calls"]}
    assert "error" in kinds and ("recover" in kinds) == (max_failures == 1)


def test_engine_direct_names_why_a_sweep_does_not_qualify(tmp_path, table):
    simulation = Simulation(table, num_workers=2, engine="direct")
    with pytest.raises(ValueError, match="HyperBandScheduler, may pause trials"):
        run(simulation, tmp_path, scheduler=HyperBandScheduler(max_t=27), n_trials=4)


def test_engine_auto_runs_a_sweep_the_direct_loop_refuses_on_the_runners_loop(tmp_path, table, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the direct loop ran")

    monkeypatch.setattr(DirectLoop, "run", refuse)
    grid = run(Simulation(table, num_workers=2), tmp_path, scheduler=HyperBandScheduler(time_attr="epoch", max_t=27),
               n_trials=6)
    assert len(grid) == 6 and not grid.errors


def test_a_bad_engine_is_named():
    with pytest.raises(ValueError, match=r"Simulation\(engine='fast'\) is not one of 'auto', 'runner', 'direct'"):
        Simulation(learning_curve_table(10, seed=0), engine="fast")


@pytest.mark.parametrize("setting, why", [
    (dict(stopper=object()), "it has a stopper"),
    (dict(stop={"accuracy": 0.1}), "its stop criterion 'accuracy' is not a value every result has"),
    (dict(stop={"loss": "0.1"}), "its stop criterion 'loss' has a threshold that is not a number ('0.1')"),
    (dict(fail_fast=True), "fails fast"),
    (dict(server_port=0), "over HTTP"),
    (dict(results_store="experiment"), "writes results to files"),
    (dict(metric="accuracy"), "the metric 'accuracy' is not one the blackbox reports"),
])
def test_each_setting_the_direct_loop_does_not_take_is_named(table, setting, why):
    from fasttune.simulation import SimulatedExecutor

    settings = dict(scheduler=ASHAScheduler(), metric="loss", stopper=None, stop=None, callbacks=CallbackList(),
                    fail_fast=False, server_port=None, results_store="per_trial")
    executor = SimulatedExecutor(table, checkpoint_at=None)
    assert direct_loop_refusal(executor, **settings) is None
    assert why in direct_loop_refusal(executor, **dict(settings, **setting))


def test_a_callback_that_counts_steps_keeps_the_sweep_on_the_runners_loop(table):
    from fasttune.simulation import SimulatedExecutor

    class Steps(tune.Callback):
        def on_step_end(self, iteration, trials, **info):
            pass

    why = direct_loop_refusal(SimulatedExecutor(table, checkpoint_at=None), scheduler=ASHAScheduler(), metric="loss",
                              stopper=None, stop=None, callbacks=CallbackList([Steps()]), fail_fast=False,
                              server_port=None, results_store="per_trial")
    assert why == "a callback counts steps (on_step_end)"


@pytest.mark.parametrize("at, stop", [(1, None), (4, None), (17, None), (40, None), (90, None),
                                      (3, {"loss": 0.9}), (11, {"epoch": 3}), (25, {"time_this_iter_s": 6.0})])
def test_a_sweep_interrupted_on_the_direct_loop_is_saved_and_restored_as_on_the_runners(tmp_path, table, at, stop):
    from ctrl_c_testing import CtrlCAtResult

    simulation = Simulation(table, num_workers=4, decision_overhead_s=0.25)
    seen = {}
    for engine in ("runner", "direct"):
        simulation.engine = engine
        storage = tmp_path / engine[0]
        np.random.seed(0)
        first = run(simulation, storage, scheduler=ASHAScheduler(time_attr="epoch", max_t=27, grace_period=1,
                                                                   reduction_factor=3), n_trials=40,
                    callbacks=[CtrlCAtResult(at)], stop=stop)
        assert sum(result.metrics.get("done", False) is True for result in first) < 40  # it was interrupted
        state, _ = load_latest(str(storage / "sweep"))
        del state["timestamp"]
        interrupted = repr(state).replace(str(storage), "STORE")
        restored = tune.Tuner.restore(str(storage / "sweep"), trainable=simulation).fit()
        seen[engine] = (interrupted, restored.get_dataframe().drop(columns=["logdir", "path"]).to_csv())
        assert len(restored) == 40 and all(result.metrics["done"] for result in restored)
    simulation.engine = "auto"
    assert seen["direct"][0] == seen["runner"][0]  # the snapshot: trials, table, the executor's running trials
    assert seen["direct"][1] == seen["runner"][1]



class ScalarBlackbox(FunctionBlackbox):
    """A blackbox whose curves hold numpy scalars (an object column) and a second metric."""

    def curve(self, config):
        metrics, seconds = super().curve(config)
        loss = np.empty(len(seconds), dtype=object)
        loss[:] = [np.float32(value) for value in metrics["loss"]]
        return {"loss": loss, "accuracy": 1.0 - metrics["loss"]}, seconds


def test_numpy_scalars_and_two_metrics_are_recorded_as_on_the_runners_loop(tmp_path):
    blackbox = ScalarBlackbox(lambda config, epoch: ({"loss": 1.0 / (1.0 + config["x"] * epoch), "accuracy": 0.0},
                                                     1.0 + config["x"]),
                              {"x": tune.uniform(0.1, 1.0)}, fidelities=list(range(1, 10)),
                              metric_names=["loss", "accuracy"])
    make = lambda: (ASHAScheduler(time_attr="epoch", max_t=9, grace_period=1, reduction_factor=3),  # noqa: E731
                    BasicVariantGenerator(random_state=2))
    runner, direct = both(tmp_path, Simulation(blackbox, num_workers=3), make, n_trials=20)
    assert_alike(runner, direct)  # the table's metric columns included
    assert "float32" not in runner["frame"] and "accuracy" in runner["frame"]


@pytest.mark.parametrize("at", [2, 5, 9, 30])
def test_a_callback_raising_inside_a_batch_leaves_the_same_sweep_as_on_the_runners_loop(tmp_path, table, at):
    """FIFO's trials report all 27 epochs in one batch: the callback raises inside one. The
    callbacks after it hear the rest, the policies judge it, and the snapshot and the
    restored sweep are the runner's."""
    from ctrl_c_testing import RaiseAtResult

    simulation = Simulation(table, num_workers=2)
    seen = {}
    for engine in ("runner", "direct"):
        simulation.engine = engine
        storage = tmp_path / engine[0]
        recorder = CallRecorder()
        with pytest.raises(tune.TuneError, match=f"a callback raised at result {at}"):
            run(simulation, storage, scheduler=FIFOScheduler(), n_trials=6, callbacks=[RaiseAtResult(at), recorder])
        state, _ = load_latest(str(storage / "sweep"))
        del state["timestamp"]
        restored = tune.Tuner.restore(str(storage / "sweep"), trainable=simulation).fit()
        seen[engine] = (repr(state).replace(str(storage), "STORE"),
                        recorder.calls, restored.get_dataframe().drop(columns=["logdir", "path"]).to_csv())
    simulation.engine = "auto"
    assert seen["direct"][1] == seen["runner"][1]
    assert seen["direct"][0] == seen["runner"][0]
    assert seen["direct"][2] == seen["runner"][2]
    assert any(call[0] == "batch" for call in seen["runner"][1])  # the batch the callback raised in, heard


def test_a_scheduler_raising_on_a_result_leaves_the_same_sweep_as_on_the_runners_loop(tmp_path, table):
    """ASHA raises while judging the sweep's 40th result: the trial counts only the results
    judged before it, on both loops alike."""
    seen = {}
    simulation = Simulation(table, num_workers=3)
    for engine in ("runner", "direct"):
        simulation.engine = engine
        storage = tmp_path / engine[0]
        scheduler = ASHAScheduler(time_attr="epoch", max_t=27, grace_period=1, reduction_factor=3)
        judge, judged = scheduler.on_trial_result, []

        def raising_at_40(tune_controller, trial, result, judge=judge, judged=judged):
            judged.append(result["training_iteration"])
            if len(judged) == 40:
                raise RuntimeError("the scheduler raised")
            return judge(tune_controller, trial, result)

        scheduler.on_trial_result = raising_at_40  # (on the instance: still an ASHAScheduler)
        with pytest.raises(Exception, match="the scheduler raised"):
            run(simulation, storage, scheduler=scheduler, n_trials=20)
        state, _ = load_latest(str(storage / "sweep"))
        del state["timestamp"]
        seen[engine] = (repr(state).replace(str(storage), "STORE"), judged)
    simulation.engine = "auto"
    assert seen["direct"] == seen["runner"]
    assert seen["runner"][1][-1] not in (1, 2, 4, 10)  # inside a batch (ASHA's start at epochs 1, 2, 4, 10)



def even_steps_blackbox():
    """Every epoch takes 10 simulated seconds exactly, so budgets can end on a reply's time."""
    return FunctionBlackbox(lambda config, epoch: ({"loss": 1.0 / (1.0 + config["x"] * epoch)}, 10.0),
                            {"x": tune.uniform(0.1, 1.0)}, fidelities=list(range(1, 10)), metric_names=["loss"])


@pytest.mark.parametrize("budget", [5.0, 30.0, 90.0, 90.5, 180.0])
def test_a_budget_ending_on_a_replys_time_ends_both_loops_alike(tmp_path, budget):
    """One worker, FIFO: a trial's reply is due at 90 s, the next one's at 180 s; a budget
    ending right there stops the last trial in the step that counts last, on both loops."""
    make = lambda: (FIFOScheduler(), BasicVariantGenerator(random_state=4))  # noqa: E731
    runner, direct = both(tmp_path, Simulation(even_steps_blackbox(), num_workers=1), make, n_trials=5,
                          time_budget_s=budget)
    assert_alike(runner, direct)  # the runner's iteration count included


def test_a_budget_ends_on_a_clock_that_starts_at_an_epoch_time(tmp_path, table):
    """With the clock at 1.7e9 s, (start + 333.3) - start rounds below 333.3: the budget ends
    where the executor's clock stops, at start + budget, on both loops (it once never ended:
    the sweep spun at the deadline)."""
    runner, direct = both(tmp_path, Simulation(table, num_workers=4, start_time=1.7e9), asha(), n_trials=60,
                          time_budget_s=333.3)
    assert_alike(runner, direct)
    completes = [call for call in runner["calls"] if call[0] == "complete"]
    assert 4 <= len(completes) < 60  # the budget ended it



def test_a_stop_criterion_on_a_metric_a_blackbox_of_its_own_reports_keeps_the_runners_loop(table):
    """A blackbox whose own curve() may report anything (here numpy scalars in an object
    column; None or text would make the driver's check fail where the worker's skips it)."""
    from fasttune.simulation import SimulatedExecutor

    scalars = ScalarBlackbox(lambda config, epoch: ({"loss": 0.5, "accuracy": 0.5}, 1.0), {"x": tune.uniform(0, 1)},
                             fidelities=[1, 2], metric_names=["loss", "accuracy"])
    settings = dict(scheduler=FIFOScheduler(), metric="loss", stopper=None, callbacks=CallbackList(),
                    fail_fast=False, server_port=None, results_store="per_trial")
    assert "whose own curve() may report values that are not numbers" in direct_loop_refusal(
        SimulatedExecutor(scalars, checkpoint_at=None), stop={"loss": 0.1}, **settings)
    assert direct_loop_refusal(SimulatedExecutor(scalars, checkpoint_at=None), stop={"epoch": 2}, **settings) is None
    assert direct_loop_refusal(SimulatedExecutor(table, checkpoint_at=None), stop={"loss": 0.1}, **settings) is None
    assert direct_loop_refusal(SimulatedExecutor(failing_blackbox(), checkpoint_at=None), stop={"loss": 0.1},
                               **settings) is None


@pytest.mark.parametrize("zone, around", [
    ("UTC0", 1_700_000_000),
    # A standard offset with seconds in it, and a whole hour from 2 a.m. on the last Sunday of March:
    # minutes that do not start on a UTC minute, and a change that cuts one.
    ("AST-0:19:32BST-1,M3.5.0/2,M10.5.0/3", 1_774_748_428),
    ("AST-0:19:32BST-1,M3.5.0/2,M10.5.0/3", 1_792_893_600),  # ... and its end in October
])
def test_the_date_of_a_result_is_the_one_the_core_writes(monkeypatch, zone, around):
    """The direct loop writes each local minute's text once: every second of two hours
    around a change of UTC offset still reads as time.strftime writes it, asked in either
    order (a trial's results run ahead of the clock)."""
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        seconds = range(around - 3600, around + 3600)
        for order in (seconds, reversed(seconds)):
            dates = ResultDateText()
            for second in order:
                assert dates.of(second) == time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(second)), second
    finally:
        monkeypatch.undo()
        time.tzset()


def test_the_dates_follow_a_change_of_time_zone_in_the_middle_of_a_sweep(monkeypatch):
    seconds = range(1_700_000_000, 1_700_000_600, 7)
    try:
        dates = ResultDateText()
        for zone in ("UTC0", "JST-9", "UTC0"):
            monkeypatch.setenv("TZ", zone)
            time.tzset()
            assert [dates.of(second) for second in seconds] == [
                time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(second)) for second in seconds], zone
    finally:
        monkeypatch.undo()
        time.tzset()


def test_the_date_of_each_minute_is_worked_out_once_however_the_workers_go(monkeypatch):
    """Results are made ahead of the clock, so the workers' dates go back and forth across
    minutes: each minute's text is still worked out once."""
    monkeypatch.setenv("TZ", "UTC0")
    time.tzset()
    calls = []
    localtime = time.localtime
    # Counted as _direct calls it: another thread's localtime (a log line's time) is not counted.
    monkeypatch.setattr(direct_module, "time", StandIn(time, localtime=lambda second: calls.append(second)
                                                       or localtime(second)))
    try:
        dates = ResultDateText()
        seconds = [1_700_000_000 + 7 * k for k in range(100)]
        for second in seconds + seconds[::-1] + seconds:
            assert dates.of(second) == time.strftime("%Y-%m-%d_%H-%M-%S", localtime(second))
        minutes = {second // 60 for second in seconds}
        assert len(calls) == 3 * len(minutes)  # (the second, and the minute's first and last)
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize("config", [
    {"lr": 0.1, "width": 3}, {"a": {"b": 1}, "c": {}}, {1: 2, "a": 3}, {"a": {}}, {"b": 1, "a": 2}, {}])
def test_a_configs_flat_keys_are_flatten_dicts(config):
    """The direct loop makes a config's flat names once per set of keys: the flat config is
    flatten_dict's, in its order, asked once or again, nested or not."""
    loop = DirectLoop.__new__(DirectLoop)
    loop._flat_config_names = {}
    for _ in range(2):
        flat = loop._flat_config(config)
        assert list(flat.items()) == list(flatten_dict(config, "/", "config").items())


def test_a_str_enum_key_equal_to_a_known_str_key_flattens_as_flatten_dict_does():
    import enum

    class Key(str, enum.Enum):
        lr = "lr"

    loop = DirectLoop.__new__(DirectLoop)
    loop._flat_config_names = {}
    loop._flat_config({"lr": 0.1})  # ("lr",) is known now, and Key.lr == "lr"
    config = {Key.lr: 0.2}
    assert list(loop._flat_config(config).items()) == list(flatten_dict(config, "/", "config").items())
