"""Whole sweeps on the shared local Ray session: what a Ray Tune user observes."""
import csv
import json
import os
import signal
import threading

import numpy as np
import pytest

import fasttune as tune
from fasttune_testing import (
    KillAtIterationOnce,
    PauseOnceAtThree,
    RunnerClock,
    assert_history_of_a_kill_at_five,
    fit as _fit,
    lines as _lines,
    report_with_step_checkpoint,
    restored_step,
)
from fasttune.schedulers import TrialScheduler
from fasttune.search.basic_variant import BasicVariantGenerator

pytestmark = pytest.mark.usefixtures("ray_session")




def quadratic(config):
    for step in range(1, 21):
        tune.report({"loss": (config["x"] - 0.3) ** 2 + 1.0 / step, "step": step})


def test_grid_times_samples_with_files_and_automatic_fields(storage):
    space = {"x": tune.grid_search([0.1, 0.3, 0.9]), "noise": tune.uniform(0, 1)}
    grid = _fit(quadratic, storage, space, tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=2))
    assert len(grid) == 6 and grid.num_errors == 0 and grid.num_terminated == 6
    assert sorted(r.config["x"] for r in grid) == [0.1, 0.1, 0.3, 0.3, 0.9, 0.9]
    best = grid.get_best_result()
    assert best.config["x"] == 0.3 and best.metrics["loss"] == pytest.approx(0.05)
    for result in grid:
        rows = _lines(os.path.join(result.path, "result.json"))
        assert [r["training_iteration"] for r in rows] == list(range(1, 21))
        assert [r["step"] for r in rows] == list(range(1, 21))
        assert all(r["config"] == result.config for r in rows)
        assert len({r["trial_id"] for r in rows}) == 1
        totals = [r["time_total_s"] for r in rows]
        assert totals == sorted(totals)
        for key in ("timestamp", "date", "time_this_iter_s", "hostname", "node_ip", "pid",
                    "iterations_since_restore", "done"):
            assert key in rows[-1]
        assert result.metrics["done"] is True and result.metrics["training_iteration"] == 20
        with open(os.path.join(result.path, "params.json")) as f:
            assert json.load(f) == result.config
        with open(os.path.join(result.path, "progress.csv")) as f:
            table = list(csv.DictReader(f))
        assert [int(r["training_iteration"]) for r in table] == list(range(1, 21))


def deterministic(config):
    rng = np.random.default_rng(config["seed"])
    value = 0.0
    for _ in range(200):
        value += rng.normal(config["drift"], 1.0)
        tune.report({"value": value})


def _histories(grid):
    out = {}
    for result in grid:
        rows = _lines(os.path.join(result.path, "result.json"))
        key = (result.config["seed"], result.config["drift"])
        out[key] = [(r["training_iteration"], r["value"]) for r in rows]
    return out


def test_batched_run_equals_synchronous_run(storage, monkeypatch):
    space = {"seed": tune.grid_search([1, 2, 3]), "drift": tune.grid_search([-0.1, 0.2])}
    config = dict(metric="value", mode="max")
    batched = _fit(deterministic, storage, space, name="batched", tune_config=tune.TuneConfig(**config),
                   stop={"value": 25})
    monkeypatch.setenv("FASTTUNE_SYNCHRONOUS", "1")
    synchronous = _fit(deterministic, storage, space, name="sync", tune_config=tune.TuneConfig(**config),
                       stop={"value": 25})
    assert _histories(batched) == _histories(synchronous)
    assert batched.get_best_result().config == synchronous.get_best_result().config
    assert batched.get_best_result().metrics["value"] == synchronous.get_best_result().metrics["value"]


def endless(config):
    i = 0
    while True:
        i += 1
        tune.report({"score": i * config["k"]})


@pytest.mark.parametrize("stop", [
    {"training_iteration": 7},
    {"score": 14},
    lambda trial_id, result: result["score"] >= 14,
])
def test_no_trial_reports_past_its_stop_criterion(storage, stop):
    grid = _fit(endless, storage, {"k": tune.grid_search([1, 2])}, stop=stop)
    expected = {1: 7 if isinstance(stop, dict) and "training_iteration" in stop else 14, 2: 7}
    for result in grid:
        rows = _lines(os.path.join(result.path, "result.json"))
        assert len(rows) == expected[result.config["k"]]
        assert result.metrics["training_iteration"] == len(rows)
    assert grid.num_errors == 0


class StopAllAfter(tune.Stopper):
    def __init__(self, n):
        self.n, self.seen = n, 0

    def __call__(self, trial_id, result):
        self.seen += 1
        return False

    def stop_all(self):
        return self.seen >= self.n


def test_stopper_can_end_the_whole_experiment(storage):
    grid = _fit(endless, storage, {"k": tune.grid_search([1, 2, 3])}, stop=StopAllAfter(10))
    assert all(r.error is None for r in grid)
    assert sum(r.metrics.get("training_iteration", 0) for r in grid if r.metrics) >= 10


def no_metric(config):
    tune.report({"loss": 1.0})
    tune.report({"los": 2.0})


def test_result_missing_the_metric_is_a_clear_error_and_keeps_earlier_results(storage):
    with pytest.raises(tune.TuneError) as info:
        _fit(no_metric, storage, tune_config=tune.TuneConfig(metric="loss", mode="min"))
    message = str(info.value)
    assert "'loss'" in message and "los" in message and "TuneConfig(metric" in message
    (trial_dir,) = [d for d in os.listdir(os.path.join(storage, "exp")) if d.startswith("no_metric")]
    rows = _lines(os.path.join(storage, "exp", trial_dir, "result.json"))
    assert [r["loss"] for r in rows] == [1.0]


def test_bad_configs_fail_before_running(storage):
    with pytest.raises(ValueError, match="mode"):
        tune.TuneConfig(metric="loss", mode="minimize")
    with pytest.raises(TypeError, match="param_space"):
        tune.Tuner(quadratic, param_space=[1, 2])
    with pytest.raises(ValueError, match="lower must be <= upper"):
        tune.uniform(5, 1)
    with pytest.raises(tune.TuneError, match="no_such_trainable"):
        tune.Tuner("no_such_trainable").fit()
    with pytest.raises(TypeError, match="stop"):
        tune.RunConfig(stop=42)


def unencodable(config):
    tune.report({"ok": np.float64(1.0), "arr": np.zeros(2)})
    tune.report({"bad": object()})


def test_non_encodable_value_errors_the_trial_naming_the_key(storage):
    grid = _fit(unencodable, storage)
    (result,) = list(grid)
    assert isinstance(result.error, TypeError) and "'bad'" in str(result.error)
    rows = _lines(os.path.join(result.path, "result.json"))
    assert rows[0]["ok"] == 1.0 and rows[0]["arr"] == [0.0, 0.0]


def flaky(config):
    tune.report({"i": 0})
    if config["fail"]:
        raise RuntimeError(f"trainable failed on purpose ({config['name']})")
    for i in range(1, 5):
        tune.report({"i": i})


def test_raising_trainable_errors_only_its_trial(storage):
    space = {"fail": tune.grid_search([False, True, False]), "name": "x"}
    grid = _fit(flaky, storage, space)
    assert grid.num_errors == 1 and grid.num_terminated == 2
    (bad,) = [r for r in grid if r.error is not None]
    assert isinstance(bad.error, RuntimeError) and "on purpose" in str(bad.error)
    text = open(os.path.join(bad.path, "error.txt")).read()
    assert "Traceback" in text and "RuntimeError: trainable failed on purpose" in text
    assert [r["i"] for r in _lines(os.path.join(bad.path, "result.json"))] == [0]


def test_fail_fast_stops_the_sweep_and_raise_reraises(storage):
    space = {"fail": tune.grid_search([True] + [False] * 6), "name": "ff"}
    grid = _fit(flaky, storage, space, tune_config=tune.TuneConfig(max_concurrent_trials=1),
                failure_config=tune.FailureConfig(fail_fast=True))
    assert grid.num_errors == 1
    assert all(r.error is None for r in grid if r.config["fail"] is False)
    # Nothing ran after the failure: the failing trial, first, is the only one that reported.
    assert [r.config["fail"] for r in grid if r.metrics] == [True]
    with pytest.raises(RuntimeError, match="on purpose"):
        _fit(flaky, storage, space, name="raise", tune_config=tune.TuneConfig(max_concurrent_trials=1),
             failure_config=tune.FailureConfig(fail_fast="raise"))


def hangs_first_time(config):
    marker = config["marker"]
    if not os.path.exists(marker):
        open(marker, "w").close()
        tune.report({"i": -1, "first": True})
        threading.Event().wait(120)  # killed from outside before this ends
    for i in range(20):
        tune.report({"i": i})


class KillWorkerOnce(tune.Callback):
    def __init__(self):
        self.killed = []

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if result.get("first") and not self.killed:
            self.killed.append(result["pid"])
            os.kill(result["pid"], signal.SIGKILL)


@pytest.mark.parametrize("max_failures", [0, 1])
def test_worker_killed_from_outside(storage, tmp_path, max_failures):
    killer = KillWorkerOnce()
    space = {"marker": str(tmp_path / f"marker{max_failures}")}
    grid = _fit(hangs_first_time, storage, space, callbacks=[killer],
                failure_config=tune.FailureConfig(max_failures=max_failures))
    (result,) = list(grid)
    assert len(killer.killed) == 1
    assert "died" in open(os.path.join(result.path, "error.txt")).read()
    if max_failures == 0:
        assert result.error is not None and "died" in str(result.error)
    else:
        assert result.error is None
        rows = _lines(os.path.join(result.path, "result.json"))
        # The restart had no checkpoint: its history starts over, each iteration once.
        assert [r["training_iteration"] for r in rows] == list(range(1, 21))
        assert [r["i"] for r in rows] == list(range(20))


def whoami(config):
    ctx = tune.get_context()
    tune.report({"pid": os.getpid(), "ctx_trial_id": ctx.get_trial_id(),
                 "dir_exists": os.path.isdir(ctx.get_trial_dir())})


def test_resources_limit_concurrency_and_infeasible_requests_are_errors(storage):
    grid = _fit(tune.with_resources(whoami, {"cpu": 2}), storage, {"i": tune.grid_search([1, 2, 3])})
    assert len({r.metrics["pid"] for r in grid}) == 1  # one 2-CPU worker fits, reused
    for r in grid:
        assert r.metrics["ctx_trial_id"] == r.metrics["trial_id"] and r.metrics["dir_exists"]
    with pytest.raises(tune.TuneError, match="can never start"):
        _fit(tune.with_resources(whoami, {"cpu": 64}), storage, name="huge")


def test_max_concurrent_trials(storage):
    grid = _fit(whoami, storage, {"i": tune.grid_search(list(range(5)))},
                tune_config=tune.TuneConfig(max_concurrent_trials=1))
    assert len({r.metrics["pid"] for r in grid}) == 1 and grid.num_terminated == 5


def with_data(config, data=None):
    tune.report({"total": sum(data) * config["m"]})


def env_user(config):
    from fasttune.registry import get_env_creator

    tune.report({"env": get_env_creator("toy_env")({"size": 3})})


def test_registry_and_with_parameters(storage):
    tune.register_trainable("named_quadratic", quadratic)
    grid = _fit("named_quadratic", storage, {"x": 0.3}, name="named")
    assert grid[0].metrics["training_iteration"] == 20
    grid = _fit(tune.with_parameters(with_data, data=list(range(10))), storage, {"m": 2}, name="params")
    assert grid[0].metrics["total"] == 90
    tune.register_env("toy_env", lambda cfg: cfg["size"] * 2)
    grid = _fit(env_user, storage, name="env")
    assert grid[0].metrics["env"] == 6


def report_config(config):
    tune.report({"a": config["a"], "b": config["b"]})


def test_sample_from_and_seeded_search_is_reproducible(storage):
    space = {"a": tune.randint(0, 1000), "b": tune.sample_from(lambda spec: spec.config.a * 2)}

    def configs(name):
        grid = _fit(report_config, storage, space, name=name,
                    tune_config=tune.TuneConfig(num_samples=5, search_alg=BasicVariantGenerator(random_state=7)))
        return sorted((r.metrics["a"], r.metrics["b"]) for r in grid)

    first = configs("s1")
    assert all(b == 2 * a for a, b in first)
    assert first == configs("s2")


def checkpointing(config):
    for step in range(restored_step(), 6):
        report_with_step_checkpoint({"step": step}, step + 1)


def test_checkpoints_reported_are_persisted_and_latest_is_in_result(storage):
    grid = _fit(checkpointing, storage)
    result = grid[0]
    assert os.path.basename(result.checkpoint.path) == "checkpoint_000005"
    assert open(os.path.join(result.checkpoint.path, "step")).read() == "6"
    assert sorted(d for d in os.listdir(result.path) if d.startswith("checkpoint_")) == [
        f"checkpoint_{i:06d}" for i in range(6)
    ]
    rows = _lines(os.path.join(result.path, "result.json"))
    assert [r["checkpoint_dir_name"] for r in rows] == [f"checkpoint_{i:06d}" for i in range(6)]


class Recorder(tune.Callback):
    def __init__(self):
        self.events = []

    def on_trial_start(self, iteration, trials, trial, **info):
        self.events.append(("start", trial.trial_id))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.events.append(("result", trial.trial_id, result["training_iteration"]))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.events.append(("complete", trial.trial_id))

    def on_experiment_end(self, trials, **info):
        self.events.append(("end", len(trials)))


def test_callbacks_see_every_result_in_order(storage):
    recorder = Recorder()
    grid = _fit(quadratic, storage, {"x": tune.grid_search([0.1, 0.2])}, callbacks=[recorder])
    assert recorder.events[-1] == ("end", 2)
    for r in grid:
        tid = r.metrics["trial_id"]
        mine = [e for e in recorder.events if len(e) > 1 and e[1] == tid]
        assert mine[0] == ("start", tid) and mine[-1] == ("complete", tid)
        assert [e[2] for e in mine if e[0] == "result"] == list(range(1, 21))


class BudgetRunsOutAfterResults(tune.Callback):
    """Moves the runner's frozen clock past the time budget once every trial reported
    ``results`` results."""

    def __init__(self, clock, budget_s, trials, results):
        self.clock, self.budget_s, self.trials, self.results = clock, budget_s, trials, results
        self.seen, self.spent = {}, False

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.seen[trial.trial_id] = result["training_iteration"]
        if not self.spent and len(self.seen) == self.trials and min(self.seen.values()) >= self.results:
            self.spent = True
            self.clock.now += self.budget_s


def test_time_budget_ends_endless_trials(storage, monkeypatch):
    # Without the budget this sweep never ends (pytest-timeout would fail it).  The
    # runner's clock is frozen (RunnerClock) and the budget runs out when both trials
    # have reported 5 results, whatever the machine's speed.
    budget = BudgetRunsOutAfterResults(RunnerClock(monkeypatch), 60.0, trials=2, results=5)
    grid = _fit(endless, storage, {"k": tune.grid_search([1, 2])},
                tune_config=tune.TuneConfig(time_budget_s=60.0), callbacks=[budget])
    assert grid.num_errors == 0 and grid.num_terminated == 2
    for result in grid:
        rows = _lines(os.path.join(result.path, "result.json"))
        assert len(rows) == result.metrics["training_iteration"] >= 5
        assert [row["training_iteration"] for row in rows] == list(range(1, len(rows) + 1))


def test_an_experiments_own_time_budget_ends_its_trials(storage, monkeypatch):
    # tune.run(Experiment(..., time_budget_s=...)) and run_experiments' spec dicts carry the
    # budget on the experiment, as Ray Tune's do (it was stored and never used).
    budget = BudgetRunsOutAfterResults(RunnerClock(monkeypatch), 60.0, trials=2, results=3)
    experiment = tune.Experiment("budgeted", endless, config={"k": tune.grid_search([1, 2])}, storage_path=storage,
                                 time_budget_s=60.0)
    analysis = tune.run(experiment, callbacks=[budget], verbose=0)
    assert sorted(t.status for t in analysis.trials) == ["TERMINATED", "TERMINATED"]
    assert all(t.last_result["training_iteration"] >= 3 for t in analysis.trials)


def one_result(config):
    tune.report({"v": config["v"]})


def test_many_short_trials(storage):
    grid = _fit(one_result, storage, {"v": tune.uniform(0, 1)}, tune_config=tune.TuneConfig(num_samples=300))
    assert len(grid) == 300 and grid.num_terminated == 300
    assert len({r.path for r in grid}) == 300
    assert all(len(_lines(os.path.join(r.path, "result.json"))) == 1 for r in grid)


def test_legacy_run_returns_analysis(storage):
    analysis = tune.run(quadratic, config={"x": tune.grid_search([0.1, 0.3])}, metric="loss", mode="min",
                        storage_path=storage, name="legacy", verbose=0)
    assert analysis.best_config["x"] == 0.3
    with pytest.raises(tune.TuneError, match="did not complete"):
        tune.run(flaky, config={"fail": True, "name": "r"}, storage_path=storage, name="legacy2", verbose=0)


class StopAtThree(TrialScheduler):
    def on_trial_result(self, tune_controller, trial, result):
        return self.STOP if result["training_iteration"] >= 3 else self.CONTINUE


def test_scheduler_declaring_no_decision_points_decides_on_every_result(storage):
    grid = _fit(endless, storage, {"k": tune.grid_search([1, 2])},
                tune_config=tune.TuneConfig(scheduler=StopAtThree()))
    for result in grid:
        assert [r["training_iteration"] for r in _lines(os.path.join(result.path, "result.json"))] == [1, 2, 3]
        assert result.error is None and result.metrics["done"] is True


def test_paused_trial_resumes_from_its_checkpoint(storage):
    scheduler = PauseOnceAtThree()
    grid = _fit(checkpointing, storage, tune_config=tune.TuneConfig(scheduler=scheduler))
    (result,) = list(grid)
    assert len(scheduler.paused) == 1
    rows = _lines(os.path.join(result.path, "result.json"))
    assert [r["training_iteration"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in rows] == [0, 1, 2, 3, 4, 5]
    assert rows[3]["iterations_since_restore"] == 1  # the resumed segment starts over


class StopBetweenDecisionPoints(TrialScheduler):
    """Declares decision points at 50 and 100 but stops at iteration 10."""

    def decision_points(self, trial):
        from fasttune.schedulers import DecisionPoints

        return DecisionPoints.at([50, 100])

    def on_trial_result(self, tune_controller, trial, result):
        return self.STOP if result["training_iteration"] >= 10 else self.CONTINUE


def test_a_decision_between_decision_points_still_ends_the_trial_and_callbacks_see_every_result(storage):
    recorder = Recorder()
    grid = _fit(endless, storage, {"k": 1}, tune_config=tune.TuneConfig(scheduler=StopBetweenDecisionPoints()),
                callbacks=[recorder])
    (result,) = list(grid)
    rows = _lines(os.path.join(result.path, "result.json"))
    # The trial ran ahead of the decision (it was not at a decision point), then stopped
    # at its next decision point at the latest; every reported result is on disk and seen
    # by callbacks.
    assert 10 <= len(rows) <= 50
    seen = [e[2] for e in recorder.events if e[0] == "result"]
    assert seen == [r["training_iteration"] for r in rows]
    assert result.error is None and grid.num_terminated == 1


def checkpoint_every_step(config):
    start = restored_step()
    for step in range(start, 12):
        report_with_step_checkpoint({"step": step + 1, "restored_from": start}, step + 1)
        if step + 1 == 5 and not os.path.exists(config["marker"]):
            open(config["marker"], "w").close()
            # The first run goes no further than its 5th report: killed here, whatever the timing.
            threading.Event().wait(120)


def test_killed_function_trial_restarts_from_its_latest_checkpoint_with_a_full_history(storage, tmp_path):
    killer = KillAtIterationOnce(5)
    grid = _fit(checkpoint_every_step, storage, {"marker": str(tmp_path / "marker")}, callbacks=[killer],
                failure_config=tune.FailureConfig(max_failures=1))
    (result,) = list(grid)
    # Iterations 6.. ran in the restarted worker, from the checkpoint of iteration 5.
    assert_history_of_a_kill_at_five(killer, result)
    assert result.metrics["training_iteration"] == 12
    assert open(os.path.join(result.checkpoint.path, "step")).read() == "12"
    assert "died" in open(os.path.join(result.path, "error.txt")).read()


def scored_checkpoints(config):
    import tempfile

    for step, score in enumerate(config["scores"]):
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "step"), "w") as f:
                f.write(str(step))
            metrics = {"step": step} if score is None else {"step": step, "score": score}
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))


def _on_disk(path):
    return sorted(d for d in os.listdir(path) if d.startswith("checkpoint_"))


@pytest.mark.parametrize(
    "keep, attr, order, scores, expected_disk, expected_best",
    [
        # best two by max, and the latest (worst) kept as the restart point; best_checkpoints
        # lists the best two, worst first, as Ray Tune does (the latest is not among them)
        (2, "score", "max", [0.3, 0.9, 0.1, 0.95, 0.2], [1, 3, 4], [1, 3]),
        (2, "score", "min", [0.3, 0.9, 0.1, 0.95, 0.2], [2, 4], [4, 2]),
        # no attribute: the most recent two, oldest first
        (2, None, "max", [0.3, 0.9, 0.1, 0.95, 0.2], [3, 4], [3, 4]),
        # a result without the attribute ranks worst
        (2, "score", "max", [0.5, None, 0.4, 0.1], [0, 2, 3], [2, 0]),
        # None keeps all, listed worst first
        (None, "score", "max", [0.2, 0.1, 0.3], [0, 1, 2], [1, 0, 2]),
    ],
)
def test_checkpoint_retention_keeps_the_best_and_the_latest(storage, keep, attr, order, scores, expected_disk, expected_best):
    grid = _fit(scored_checkpoints, storage, {"scores": scores},
                checkpoint_config=tune.CheckpointConfig(num_to_keep=keep, checkpoint_score_attribute=attr,
                                                        checkpoint_score_order=order))
    (result,) = list(grid)
    assert result.error is None
    assert _on_disk(result.path) == [f"checkpoint_{i:06d}" for i in expected_disk]
    assert os.path.basename(result.checkpoint.path) == f"checkpoint_{len(scores) - 1:06d}"
    assert [m["step"] for _, m in result.best_checkpoints] == expected_best
    for checkpoint, metrics in result.best_checkpoints:
        assert open(os.path.join(checkpoint.path, "step")).read() == str(metrics["step"])
        assert metrics.get("score") == scores[metrics["step"]]


class PauseOnceAtTwo(TrialScheduler):
    def __init__(self):
        self.paused = set()

    def on_trial_result(self, tune_controller, trial, result):
        if result["training_iteration"] == 2 and trial.trial_id not in self.paused:
            self.paused.add(trial.trial_id)
            return self.PAUSE
        return self.CONTINUE


def _blob(size):
    return np.random.default_rng(1234).bytes(size)


def carries_blob(config):
    import hashlib
    import tempfile

    size = config["size"]
    checkpoint = tune.get_checkpoint()
    restored = None
    if checkpoint:
        with checkpoint.as_directory() as d:
            with open(os.path.join(d, "blob.bin"), "rb") as f:
                data = f.read()
            start = int(open(os.path.join(d, "step")).read())
        restored = hashlib.sha256(data).hexdigest()
    else:
        data, start = _blob(size), 0
    for step in range(start, 4):
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "blob.bin"), "wb") as f:
                f.write(data)
            with open(os.path.join(d, "step"), "w") as f:
                f.write(str(step + 1))
            tune.report({"step": step + 1, "restored_sha": restored, "restored_size": len(data) if restored else None},
                        checkpoint=tune.Checkpoint.from_directory(d))


@pytest.mark.parametrize("size", [1024, 50 * 1024 * 1024], ids=["1KB", "50MB"])
def test_checkpoint_is_restored_byte_identical_after_pause(tmp_path, size):
    import hashlib

    scheduler = PauseOnceAtTwo()
    grid = _fit(carries_blob, str(tmp_path / "results"), {"size": size},
                tune_config=tune.TuneConfig(scheduler=scheduler),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1))
    (result,) = list(grid)
    assert result.error is None and len(scheduler.paused) == 1
    rows = _lines(os.path.join(result.path, "result.json"))
    assert [r["training_iteration"] for r in rows] == [1, 2, 3, 4]
    expected = hashlib.sha256(_blob(size)).hexdigest()
    assert [r["restored_sha"] for r in rows] == [None, None, expected, expected]
    assert rows[2]["restored_size"] == size
    assert _on_disk(result.path) == ["checkpoint_000003"]  # num_to_keep=1 removed the rest
    with open(os.path.join(result.checkpoint.path, "blob.bin"), "rb") as f:
        assert f.read() == _blob(size)


@pytest.mark.parametrize("config", [dict(checkpoint_frequency=2), dict(checkpoint_at_end=True)])
def test_periodic_checkpoints_for_a_function_trainable_are_a_clear_error(storage, config):
    with pytest.raises(ValueError, match="needs a class Trainable") as info:
        _fit(checkpointing, storage, checkpoint_config=tune.CheckpointConfig(**config))
    assert "tune.report()" in str(info.value)
    assert not os.path.exists(os.path.join(storage, "exp"))  # nothing ran


def raises_once_then_recovers(config):
    start = restored_step()
    for step in range(start, 10):
        report_with_step_checkpoint({"step": step, "restored_from": start}, step + 1)
        marker = os.path.join(config["dir"], f"failed_at_{step}")
        if step in config["fail_at"] and not os.path.exists(marker):
            open(marker, "w").close()
            raise RuntimeError(f"transient failure at step {step}")


@pytest.mark.parametrize("max_failures,fail_at", [(1, [4]), (-1, [2, 5, 7])])
def test_a_raising_trainable_recovers_from_its_latest_checkpoint(storage, tmp_path, max_failures, fail_at):
    grid = _fit(raises_once_then_recovers, storage, {"dir": str(tmp_path), "fail_at": fail_at},
                failure_config=tune.FailureConfig(max_failures=max_failures))
    (result,) = list(grid)
    assert result.error is None
    rows = _lines(os.path.join(result.path, "result.json"))
    assert [r["training_iteration"] for r in rows] == list(range(1, 11))
    assert [r["step"] for r in rows] == list(range(10))
    # Each restart resumed right after the checkpoint of the failing step.
    assert sorted({r["restored_from"] for r in rows}) == [0] + [s + 1 for s in fail_at]
    errors = open(os.path.join(result.path, "error.txt")).read()
    assert errors.count("RuntimeError: transient failure") == len(fail_at)


def test_a_trainable_that_keeps_failing_ends_as_error_after_max_failures(storage, tmp_path):
    grid = _fit(flaky, storage, {"fail": True, "name": "always"}, failure_config=tune.FailureConfig(max_failures=2))
    (result,) = list(grid)
    assert isinstance(result.error, RuntimeError)
    assert open(os.path.join(result.path, "error.txt")).read().count("Failure #") == 3


def dies_leaving_unreported_checkpoints(config):
    from fasttune_testing import report_with_step_checkpoint

    for step in (1, 2):
        report_with_step_checkpoint({"step": step}, step)
    trial_dir = tune.get_context().get_trial_dir()
    # What a worker killed at the wrong moment leaves: a checkpoint it persisted but
    # never got to report, and one it was half-way copying.
    os.makedirs(os.path.join(trial_dir, "checkpoint_000002", "data"))
    os.makedirs(os.path.join(trial_dir, "checkpoint_000003.tmp"))
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_trial_whose_worker_died_for_good_keeps_only_its_reported_checkpoints(storage):
    # A decision at every result: each report() returns only once the driver has it.
    grid = _fit(dies_leaving_unreported_checkpoints, storage,
                tune_config=tune.TuneConfig(scheduler=TrialScheduler()))
    (result,) = list(grid)
    assert result.error is not None and "died" in str(result.error)
    assert [r["step"] for r in _lines(os.path.join(result.path, "result.json"))] == [1, 2]
    on_disk = sorted(d for d in os.listdir(result.path) if d.startswith("checkpoint_"))
    assert on_disk == ["checkpoint_000000", "checkpoint_000001"]
    assert os.path.basename(result.checkpoint.path) == "checkpoint_000001"


class DoneFlags(tune.Callback):
    def __init__(self):
        self.flags = []

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.flags.append((result["training_iteration"], result["done"]))


def counts_to_ten(config):
    for i in range(10):
        tune.report({"i": i})


def test_the_result_a_scheduler_stops_a_trial_on_is_marked_done_everywhere(storage):
    flags = DoneFlags()
    grid = _fit(counts_to_ten, storage, tune_config=tune.TuneConfig(scheduler=StopAtThree()),
                callbacks=[flags])
    (result,) = list(grid)
    assert result.metrics["training_iteration"] == 3 and result.metrics["done"] is True
    assert flags.flags == [(1, False), (2, False), (3, True)]
    rows = _lines(os.path.join(result.path, "result.json"))
    assert [(r["training_iteration"], r["done"]) for r in rows] == [(1, False), (2, False), (3, True)]
    with open(os.path.join(result.path, "progress.csv"), newline="") as f:
        assert [row["done"] for row in csv.DictReader(f)] == ["False", "False", "True"]


def fails_before_reporting(config):
    raise ValueError("no result from me")


def test_a_trial_without_results_has_empty_metrics_in_fit_and_from_path(tmp_path):
    """As Ray Tune: scripts index ``result.metrics`` without checking that the trial reported."""
    grid = tune.Tuner(fails_before_reporting, run_config=tune.RunConfig(
        name="none", storage_path=str(tmp_path), verbose=0)).fit()
    read = tune.ResultGrid.from_path(os.path.join(str(tmp_path), "none"))
    for result in (grid[0], read[0]):
        assert result.metrics == {} and result.metrics.get("loss") is None
    assert isinstance(grid[0].error, ValueError) and isinstance(read[0].error, tune.TuneError)


class CtrlCAtFirstResult(tune.Callback):
    """Presses Ctrl-C once, in the driver, when the first result arrives."""

    def __init__(self):
        self.pressed = False

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if not self.pressed:
            self.pressed = True
            os.kill(os.getpid(), signal.SIGINT)


def reports_forever(config):
    while True:
        tune.report({"x": config["x"]})


def test_num_terminated_after_a_ctrl_c_leaves_out_the_trials_that_had_not_finished(tmp_path):
    """As Ray Tune: TERMINATED trials only; the interrupted sweep's trials were RUNNING or PENDING.
    The grid read back from the directory counts by the snapshot's statuses too, also for the
    trials whose files hold results."""
    grid = tune.Tuner(reports_forever, param_space={"x": tune.grid_search([1, 2, 3])},
                      run_config=tune.RunConfig(name="ctrl_c", storage_path=str(tmp_path), verbose=0,
                                                callbacks=[CtrlCAtFirstResult()])).fit()
    assert len(grid) == 3 and grid.num_errors == 0 and grid.num_terminated == 0
    read = tune.ResultGrid.from_path(os.path.join(str(tmp_path), "ctrl_c"))
    assert any(result.metrics for result in read)  # read from its files
    assert len(read) == 3 and read.num_errors == 0 and read.num_terminated == 0


def report_x_three_times(config):
    for i in range(3):
        tune.report({"x": config["x"], "i": i})


def rows_of(result):
    return [(row["x"], row["i"]) for row in _lines(os.path.join(result.path, "result.json"))]


def test_trials_whose_dirname_creator_repeats_a_name_get_their_own_directories(storage):
    def run():
        return _fit(report_x_three_times, storage, {"x": tune.grid_search([1, 2, 3])},
                    tune_config=tune.TuneConfig(trial_dirname_creator=lambda trial: "same"))

    first = run()
    assert [os.path.basename(r.path) for r in first] == ["same", "same_2", "same_3"]
    assert [rows_of(r) for r in first] == [[(x, 0), (x, 1), (x, 2)] for x in (1, 2, 3)]
    # A second sweep under the same name does not write into the first one's directories.
    second = run()
    assert [os.path.basename(r.path) for r in second] == ["same_4", "same_5", "same_6"]
    assert [rows_of(r) for r in first] == [[(x, 0), (x, 1), (x, 2)] for x in (1, 2, 3)]


def test_default_dirnames_cut_before_the_trial_id_still_differ(storage):
    name = "t" * 125  # the trial id would start past the 130 characters a default name keeps
    tune.register_trainable(name, report_x_three_times)
    grid = _fit(name, storage, {"x": tune.grid_search([1, 2])})
    dirnames = [os.path.basename(r.path) for r in grid]
    assert dirnames[0] == dirnames[1][:-2] and dirnames[1].endswith("_2")
    assert [rows_of(r) for r in grid] == [[(x, 0), (x, 1), (x, 2)] for x in (1, 2)]
