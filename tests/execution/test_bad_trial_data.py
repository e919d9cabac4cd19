"""One trial's bad data fails that trial, never the experiment: a config no worker can be
sent, a result with a non-string key, a malformed worker reply, and a trial that raises
something that is not an ``Exception`` (``SystemExit``, ``KeyboardInterrupt``).

The sweeps are real (Ray workers, trial files); a searcher or a grid hands out the
configs in a fixed order, so which trial gets which value is known.
"""
import datetime
import fractions
import http.client
import json
import os
import threading
import time

import pytest

import fasttune as tune
from fasttune.schedulers import DecisionPoints, TrialScheduler
from fasttune.search import Searcher
from fasttune.web_server import SERVER_FILE, TuneClient
from fasttune_testing import fit, lines, wait_until

pytestmark = pytest.mark.usefixtures("ray_session")

_DEADLINE_S = 120.0


class LiveHandle:
    """A value that copies (as a handle to a live resource does) but cannot be pickled."""

    def __deepcopy__(self, memo):
        return self

    def __reduce__(self):
        raise TypeError("a live handle cannot be pickled")


def _values():
    """One value per trial: what msgpack cannot carry but cloudpickle can, then one
    nothing can carry."""
    return [lambda x: x * 2, datetime.date(2026, 1, 2), fractions.Fraction, 2 ** 70, LiveHandle()]


class InOrder(Searcher):
    """Suggests ``{"i": i, "v": _values()[i]}`` for each i in turn."""

    def __init__(self):
        super().__init__()
        self.suggested = 0

    def suggest(self, trial_id):
        values = _values()
        if self.suggested == len(values):
            return Searcher.FINISHED
        self.suggested += 1
        return {"i": self.suggested - 1, "v": values[self.suggested - 1]}

    def on_trial_complete(self, trial_id, result=None, error=False):
        pass


def uses_the_value(config):
    """Reports what it made of ``config["v"]``: each kind of value is used, not just held."""
    v, i = config["v"], config["i"]
    used = [lambda: v(3), lambda: v.isoformat(), lambda: str(v(6, 4)), lambda: str(v - 2 ** 70 + 5)][i]()
    tune.report({"used": used})


def test_a_config_msgpack_cannot_carry_reaches_the_trainable_and_one_nothing_can_carry_fails_its_trial(storage):
    grid = fit(uses_the_value, storage, tune_config=tune.TuneConfig(search_alg=InOrder(), num_samples=5))
    by_i = {r.config["i"]: r for r in grid}
    assert sorted(by_i) == [0, 1, 2, 3, 4]
    # Functions, dates, classes and huge ints go cloudpickled, and work in the trainable.
    assert [by_i[i].metrics["used"] for i in range(4)] == [6, "2026-01-02", "3/2", "5"]
    assert all(by_i[i].error is None for i in range(4))

    bad = by_i[4]
    assert isinstance(bad.error, tune.TuneError)
    assert "config['v'] is a LiveHandle" in str(bad.error) and "a live handle cannot be pickled" in str(bad.error)
    with open(os.path.join(bad.path, "error.txt")) as f:
        assert "config['v'] is a LiveHandle" in f.read()
    # It keeps its config with a placeholder for the value (its snapshot could pack it).
    assert bad.config == {"i": 4, "v": "<LiveHandle: cannot be sent>"}
    with open(os.path.join(bad.path, "params.json")) as f:
        assert json.load(f) == bad.config
    assert not os.path.exists(os.path.join(bad.path, "result.json"))



class SuggestsALockAt(Searcher):
    """Suggests ``{"i": i, "v": i + 1}`` for i in 0, 1, 2, with a lock as ``v`` at ``lock_at``."""

    def __init__(self, lock_at):
        super().__init__()
        self.suggested = 0
        self.lock_at = lock_at

    def suggest(self, trial_id):
        if self.suggested == 3:
            return Searcher.FINISHED
        self.suggested += 1
        return {"i": self.suggested - 1,
                "v": threading.Lock() if self.suggested - 1 == self.lock_at else self.suggested}

    def on_trial_complete(self, trial_id, result=None, error=False):
        pass


def reports_its_value(config):
    tune.report({"v": config["v"]})


@pytest.mark.parametrize("source,lock_at", [("searcher", 1), ("sample_from", 1), ("searcher", 0), ("sample_from", 0)],
                         ids=["searcher", "sample_from", "searcher_first", "sample_from_first"])
def test_a_config_value_that_can_be_neither_copied_nor_sent_fails_only_its_trial(storage, source, lock_at):
    """A lock can be neither deep-copied (the config's copy per trial) nor pickled: the
    trial holding it fails naming the key; the sweep goes on, also when it is the first
    trial (nothing runs then: the searcher is asked for the next, not taken for stuck)."""
    if source == "searcher":
        grid = fit(reports_its_value, storage,
                   tune_config=tune.TuneConfig(search_alg=SuggestsALockAt(lock_at), num_samples=3))
    else:
        space = {"i": tune.grid_search([0, 1, 2]),
                 "v": tune.sample_from(lambda spec: threading.Lock() if spec.config.i == lock_at else spec.config.i + 1)}
        grid = fit(reports_its_value, storage, space=space)
    by_i = {r.config["i"]: r for r in grid}
    assert sorted(by_i) == [0, 1, 2]
    fine = [i for i in range(3) if i != lock_at]
    assert [by_i[i].metrics["v"] for i in fine] == [i + 1 for i in fine]
    assert all(by_i[i].error is None for i in fine)
    assert isinstance(by_i[lock_at].error, tune.TuneError) and "config['v'] is a lock" in str(by_i[lock_at].error)


def reports_the_day(config):
    for _ in range(4):
        day = config["day"]
        tune.report({"day": day.isoformat() if isinstance(day, datetime.date) else day})


class ResetToADateAtTwo(TrialScheduler):
    """At iteration 2, the trial goes on with ``day`` a date (what msgpack cannot carry)."""

    def __init__(self, then):
        self.then = then

    def decision_points(self, trial):
        return DecisionPoints.at([2])

    def on_trial_result(self, tune_controller, trial, result):
        if result["training_iteration"] == 2:
            tune_controller.reset_trial(trial, {"day": datetime.date(2026, 3, 4)}, "dated")
            return self.then
        return self.CONTINUE


@pytest.mark.parametrize("then", [TrialScheduler.CONTINUE, TrialScheduler.PAUSE], ids=["in_place", "on_resume"])
def test_a_reset_config_msgpack_cannot_carry_reaches_the_trainable(storage, then):
    grid = fit(reports_the_day, storage, {"day": "none"},
               tune_config=tune.TuneConfig(scheduler=ResetToADateAtTwo(then)))
    (result,) = grid
    assert result.error is None and result.config == {"day": datetime.date(2026, 3, 4)}
    days = [r["day"] for r in lines(os.path.join(result.path, "result.json"))]
    # The function starts over with the new config after the reset: 4 more reports.
    assert days == ["none"] * 2 + ["2026-03-04"] * 4


# ---- through the TuneServer ---------------------------------------------------------------
def held_open(config):
    """Reports ``config["x"]`` as text; the first trial waits for the ``hold`` file."""
    tune.report({"x": str(config["x"])})
    while config.get("hold") and not os.path.exists(config["hold"]):
        time.sleep(0.01)


def test_the_server_refuses_a_config_no_worker_can_be_sent_and_carries_a_huge_int(storage, tmp_path):
    hold = str(tmp_path / "hold")
    outcome = {}

    def sweep():
        try:
            outcome["analysis"] = tune.run(held_open, name="srv", storage_path=storage, config={"x": 1, "hold": hold},
                                           server_port=0, verbose=0, resources_per_trial={"cpu": 0.5})
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=sweep, daemon=True)
    thread.start()
    path = os.path.join(storage, "srv")
    wait_until(lambda: os.path.exists(os.path.join(path, SERVER_FILE)) or not thread.is_alive(), "the server")
    client = TuneClient(experiment_path=path)
    wait_until(lambda: [t for t in client.get_all_trials()["trials"] if t["result"]], "the first result")

    # A lone surrogate is valid JSON but no UTF-8 string: msgpack cannot carry it.
    conn = http.client.HTTPConnection(client.tune_address, client.port_forward, timeout=30)
    conn.request("POST", "/trials", body=b'{"spec": {"config": {"x": 2, "s": "\\ud800"}}}',
                 headers={"Authorization": f"Bearer {client._token}"})
    response = conn.getresponse()
    status, body = response.status, json.loads(response.read())
    conn.close()
    assert status == 400 and "config['s'] is a str" in body["error"]
    assert len(client.get_all_trials()["trials"]) == 1  # refused before a trial was made

    added = client.add_trial("huge", {"config": {"x": 2 ** 64}})["trial"]
    open(hold, "w").close()
    thread.join(_DEADLINE_S)
    assert not thread.is_alive() and "error" not in outcome, outcome.get("error")
    by_id = {t.trial_id: t for t in outcome["analysis"].trials}
    assert sorted(t.status for t in by_id.values()) == ["TERMINATED", "TERMINATED"]
    assert [r["x"] for r in lines(os.path.join(by_id[added["id"]].path, "result.json"))] == [str(2 ** 64)]


# ---- results: keys must be strings; a reply the driver cannot read --------------------------
def reports_a_bad_key(config):
    bad = {"tuple": {(1, 2): 0.5}, "int": {"a": {1: 2.0}}, "bytes_in_list": {"l": [{b"k": 1}]}}
    tune.report(bad.get(config["kind"], {"score": 1.0}))


def test_a_result_key_that_is_not_a_string_fails_its_trial_naming_key_and_trial(storage):
    grid = fit(reports_a_bad_key, storage, {"kind": tune.grid_search(["tuple", "int", "bytes_in_list", "ok"])})
    by_kind = {r.config["kind"]: r for r in grid}
    assert by_kind["ok"].error is None and by_kind["ok"].metrics["score"] == 1.0
    expected = {"tuple": "the key (1, 2) (a tuple)", "int": "the key 1 (a int)",
                "bytes_in_list": "the key b'k' (a bytes)"}
    where = {"tuple": "in metrics;", "int": "in metrics['a'];", "bytes_in_list": "in metrics['l'][0];"}
    for kind, what in expected.items():
        result = by_kind[kind]
        trial_name = os.path.basename(result.path).split("_kind=")[0].rsplit("_", 1)[0]
        message = str(result.error)
        assert isinstance(result.error, TypeError) and what in message and where[kind] in message
        assert message.startswith(f"Trial {trial_name} reported a result with the key")
        assert not os.path.exists(os.path.join(result.path, "result.json"))  # nothing was kept of it


def _worker_and_run():
    """The TrialWorker running this trial and its record of the run, through the report
    sink of the trial's session: a test's way past what ``report()`` checks."""
    from fasttune.trainable.session import get_session

    sink = get_session()._sink  # functools.partial(worker._report, run)
    return sink.func.__self__, sink.args[0]


def sends_what_report_refuses(config):
    """``malformed``: a result with a tuple key goes out as if reported; ``unknown``: an
    event of a kind no driver knows.  Then it waits, until the driver ends its worker."""
    import msgpack

    if config["kind"] == "ok":
        tune.report({"score": 1.0})
        return
    worker, run = _worker_and_run()
    with worker._cond:
        if config["kind"] == "malformed":
            run.packed.append(msgpack.packb({(1, 2): 0.5}))
            run.times.append(time.time())
        else:
            worker._out.append(msgpack.packb(["bogus", run.trial_id]))
        worker._linger_until = None  # the poll replies now, with what was sent since it began
        worker._cond.notify_all()
    threading.Event().wait(_DEADLINE_S)


class LingeringSender:
    """``sends_what_report_refuses``, loaded into its worker (unpickled, before a trial
    starts) with polls that linger an hour: no poll replies before the trial's thread is
    done or has sent its bad reply, however long the machine keeps the thread waiting."""

    def __call__(self, config):
        return sends_what_report_refuses(config)

    def __reduce__(self):
        return _lingering_sender, ()


def _lingering_sender():
    from fasttune.execution import _worker

    _worker._LINGER_S = 3600.0  # (this worker's process only: it runs this trainable alone)
    return LingeringSender()


def test_a_reply_the_driver_cannot_read_fails_only_the_trial_of_that_worker(storage):
    space = {"kind": tune.grid_search(["malformed", "ok", "unknown", "ok"])}
    grid = fit(sends_what_report_refuses, storage, space)
    results = sorted(grid, key=lambda r: os.path.basename(r.path))
    assert [r.config["kind"] for r in results] == ["malformed", "ok", "unknown", "ok"]
    for result in results[1::2]:
        assert result.error is None and result.metrics["score"] == 1.0
    malformed, unknown = results[0], results[2]
    for result, why in ((malformed, "unhashable type: 'list'"), (unknown, "unknown worker event 'bogus'")):
        assert isinstance(result.error, tune.TuneError)
        assert "sent a reply the driver cannot read, so it was ended" in str(result.error) and why in str(result.error)
        with open(os.path.join(result.path, "error.txt")) as f:
            assert why in f.read()


def forgets_the_metric_once(config):
    """Reports ``score`` four times; trial ``x=0`` reports ``other`` instead at the second."""
    for i in range(1, 5):
        tune.report({"other": 1.0} if config["x"] == 0 and i == 2 else {"score": float(config["x"] + i)})


def test_a_result_without_the_metric_ends_the_run_with_its_trial_failed_and_the_rest_left_to_restore(
        storage, monkeypatch):
    """As in Ray Tune, a result without ``TuneConfig(metric=...)`` ends the run (strict metric
    checking).  The trial that reported it is ERROR with that message (error.txt too); the
    others are left as they were, so a restore with the check turned off runs them all."""
    space = {"x": tune.grid_search([0, 1, 2, 3])}
    with pytest.raises(tune.TuneError, match="without the metric 'score'"):
        fit(forgets_the_metric_once, storage, space, tune_config=tune.TuneConfig(metric="score", mode="max"))
    path = os.path.join(storage, "exp")
    read = {r.config["x"]: r for r in tune.ResultGrid.from_path(path)}
    assert "without the metric 'score'" in str(read[0].error)
    with open(os.path.join(read[0].path, "error.txt")) as f:
        assert "without the metric 'score'" in f.read()
    assert [r["score"] for r in lines(os.path.join(read[0].path, "result.json"))] == [1.0]

    monkeypatch.setenv("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    grid = tune.Tuner.restore(path, trainable=forgets_the_metric_once).fit()
    by_x = {r.config["x"]: r for r in grid}
    assert sorted(by_x) == [0, 1, 2, 3]
    assert "without the metric 'score'" in str(by_x[0].error)  # (not restarted: restart_errored is not set)
    assert [(by_x[x].error, by_x[x].metrics["score"], by_x[x].metrics["training_iteration"]) for x in (1, 2, 3)] == [
        (None, 5.0, 4), (None, 6.0, 4), (None, 7.0, 4)]


def reports_text_once(config):
    """Reports ``score`` four times; trial ``x=0`` reports it as text at the second."""
    for i in range(1, 5):
        tune.report({"score": "high" if config["x"] == 0 and i == 2 else float(config["x"] + i)})


@pytest.mark.parametrize("scheduler", ["asha", "median", "hyperband", "pbt"])
def test_a_metric_a_scheduler_cannot_compare_fails_only_its_trial(storage, scheduler):
    """A scheduler compares the metric across trials: a trial reporting it as text fails,
    with an error naming the key and the value; the other trials run to their end."""
    from fasttune.schedulers import ASHAScheduler, HyperBandScheduler, MedianStoppingRule, PopulationBasedTraining

    made = {"asha": lambda: ASHAScheduler(max_t=4, grace_period=4),
            "median": lambda: MedianStoppingRule(grace_period=4),
            "hyperband": lambda: HyperBandScheduler(max_t=4),
            # (a quantile of one trial of three: no trial is ranked low enough to exploit)
            "pbt": lambda: PopulationBasedTraining(time_attr="training_iteration", perturbation_interval=2,
                                                   quantile_fraction=0.01, hyperparam_mutations={"x": [1, 2]})}[scheduler]()
    grid = fit(reports_text_once, storage, {"x": tune.grid_search([0, 1, 2])},
               tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=made))
    by_x = {r.config["x"]: r for r in grid}
    assert isinstance(by_x[0].error, tune.TuneError)
    named = "'score' of trial" if scheduler == "pbt" else "reported 'score' = 'high' (str)"
    assert named in str(by_x[0].error) and "'high'" in str(by_x[0].error)
    with open(os.path.join(by_x[0].path, "error.txt")) as f:
        assert named in f.read()
    assert by_x[1].error is None and by_x[2].error is None
    if scheduler != "hyperband":  # (its halving may stop one of them early)
        assert [by_x[x].metrics["training_iteration"] for x in (1, 2)] == [4, 4]
    read = {r.config["x"]: r for r in tune.ResultGrid.from_path(grid.experiment_path)}
    assert named in str(read[0].error) and read[1].error is None


def stops_at_two_reporting_text_once(config):
    """Reports ``score`` until its stop criterion (iteration 2); trial ``x=0`` reports it as text there."""
    for i in range(1, 5):
        tune.report({"score": "high" if config["x"] == 0 and i == 2 else float(config["x"] + i)})


class DoneAtTwoWithTextOnce(tune.Trainable):
    """Says it is done at its second step; trial ``x=0`` reports ``score`` as text there."""

    def step(self):
        i = self.iteration + 1
        score = "high" if self.config["x"] == 0 and i == 2 else float(self.config["x"] + i)
        return {"score": score, "done": i == 2}


@pytest.mark.parametrize("scheduler", ["asha", "median", "pbt"])
@pytest.mark.parametrize("how", ["stop_dict", "done"])
def test_a_metric_a_scheduler_cannot_compare_in_a_final_result_fails_only_its_trial(storage, scheduler, how):
    """The scheduler hears a trial's final result (at its stop criterion, or where it says it
    is done) only once the trial is over; text there fails the trial where the scheduler
    compares it (ASHA, median stopping record the final value), as anywhere else.  PBT
    compares only at a perturbation, which never comes here: as in Ray Tune, all finish."""
    from fasttune.schedulers import ASHAScheduler, MedianStoppingRule, PopulationBasedTraining

    made = {"asha": lambda: ASHAScheduler(max_t=4, grace_period=4),
            "median": lambda: MedianStoppingRule(grace_period=4),
            "pbt": lambda: PopulationBasedTraining(time_attr="training_iteration", perturbation_interval=4,
                                                   hyperparam_mutations={"x": [1, 2]})}[scheduler]()
    trainable, stop = ((stops_at_two_reporting_text_once, {"training_iteration": 2}) if how == "stop_dict"
                       else (DoneAtTwoWithTextOnce, None))
    grid = fit(trainable, storage, {"x": tune.grid_search([0, 1, 2])}, stop=stop,
               tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=made))
    by_x = {r.config["x"]: r for r in grid}
    if scheduler == "pbt":
        assert [(r.error, r.metrics["training_iteration"]) for r in grid] == [(None, 2)] * 3
        assert by_x[0].metrics["score"] == "high" and grid.num_terminated == 3
        return
    named = "reported 'score' = 'high' (str)"
    assert isinstance(by_x[0].error, tune.TuneError) and named in str(by_x[0].error)
    with open(os.path.join(by_x[0].path, "error.txt")) as f:
        assert named in f.read()
    assert [(by_x[x].error, by_x[x].metrics["training_iteration"]) for x in (1, 2)] == [(None, 2), (None, 2)]
    assert grid.num_errors == 1 and grid.num_terminated == 2
    read = {r.config["x"]: r for r in tune.ResultGrid.from_path(grid.experiment_path)}
    assert named in str(read[0].error) and read[0]._status == "ERROR" and read[1].error is None


def test_the_other_replies_of_the_poll_that_brought_a_malformed_one_are_handled(tmp_path):
    import ray

    from fasttune.execution import _protocol as protocol
    from fasttune.execution.ray_trial_executor import RayTrialExecutor
    from fasttune.execution.trial_executor import EVENT_BATCH, EVENT_ERROR
    from fasttune.experiment import Trial

    executor = RayTrialExecutor(reuse_actors=False, prefetch=False)
    executor.register_trainable("sender", LingeringSender())
    trials = {kind: Trial("sender", config={"kind": kind}, experiment_path=str(tmp_path))
              for kind in ("malformed", "ok")}
    slots = {}
    try:
        for kind, trial in trials.items():
            spec = protocol.trial_spec(trial, str(tmp_path), decide="never", yields=False, iteration=0, time_total=0.0,
                                       ckpt_index=0, restore=None)
            slots[kind] = executor.start_trial(trial, spec)
        executor._dispatch()  # sends both polls, without looking for replies
        # Both first replies are in before the executor looks: one poll collects the two
        # (each holds its trial's start and what it sent: see LingeringSender).
        polls = list(executor._by_future)
        assert len(polls) == 2 and len(ray.wait(polls, num_returns=2, timeout=_DEADLINE_S)[0]) == 2
        events = [executor.get_next_executor_event(False) for _ in range(2)]
        by_slot = {slot: (kind, payload) for kind, slot, payload in events}
        kind, error = by_slot[slots["malformed"]]
        assert kind == EVENT_ERROR and isinstance(error, protocol.MalformedReply)
        assert "unhashable type: 'list'" in str(error)
        kind, records = by_slot[slots["ok"]]
        assert kind == EVENT_BATCH and isinstance(records[0], protocol.Started)
        assert records[0].trial_id == trials["ok"].trial_id
        assert executor.worker_died(slots["malformed"]) == [trials["malformed"]]
    finally:
        executor.cleanup()


# ---- what a trial raises that is not an Exception -------------------------------------------
class NotAnException(BaseException):
    pass


def raises_a_base_exception(config):
    import sys

    kind = config["kind"]
    if kind == "exit":
        sys.exit(0)
    if kind == "interrupt":
        raise KeyboardInterrupt()
    if kind == "generator_exit":
        raise GeneratorExit()
    if kind == "subclass":
        raise NotAnException("own")
    tune.report({"score": 1.0})


def test_a_trial_raising_a_base_exception_fails_only_that_trial(storage):
    kinds = ["exit", "interrupt", "generator_exit", "subclass", "ok"]
    grid = fit(raises_a_base_exception, storage, {"kind": tune.grid_search(kinds)})
    by_kind = {r.config["kind"]: r for r in grid}
    assert by_kind["ok"].error is None and by_kind["ok"].metrics["score"] == 1.0
    raised = {"exit": "SystemExit(0)", "interrupt": "KeyboardInterrupt()", "generator_exit": "GeneratorExit()",
              "subclass": "NotAnException('own')"}
    for kind, what in raised.items():
        error = by_kind[kind].error
        assert isinstance(error, tune.TuneError) and f"raised {what}, which is not an Exception" in str(error)
        assert type(error.__cause__).__name__ == what.split("(")[0]


_RAISING_DRIVER = """
import json, sys

import ray

import fasttune as tune


def trainable(config):
    if config["kind"] == "exit":
        sys.exit(0)
    raise KeyboardInterrupt()


address, storage, kind = json.loads(sys.argv[1])
ray.init(address=address, log_to_driver=False, configure_logging=False)
tune.Tuner(trainable, param_space={"kind": kind},
           run_config=tune.RunConfig(name=kind, storage_path=storage, verbose=0,
                                     failure_config=tune.FailureConfig(fail_fast="raise"))).fit()
print("fit returned")
"""


@pytest.mark.parametrize("kind, raised", [("exit", "SystemExit(0)"), ("interrupt", "KeyboardInterrupt()")])
def test_with_fail_fast_raise_the_driver_fails_with_a_tune_error_saying_what_the_trial_raised(
        ray_session, storage, tmp_path, kind, raised):
    import subprocess
    import sys

    from restore_testing import wait_until_other_jobs_have_no_live_actors

    script = tmp_path / "driver.py"
    script.write_text(_RAISING_DRIVER)
    args = json.dumps([ray_session.get_runtime_context().gcs_address, storage, kind])
    proc = subprocess.run([sys.executable, str(script), args], env=dict(os.environ), capture_output=True, text=True,
                          timeout=_DEADLINE_S, start_new_session=True)
    wait_until_other_jobs_have_no_live_actors(ray_session)
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-3000:])
    assert "fasttune.error.TuneError: Trial trainable_" in proc.stderr, proc.stderr[-3000:]
    assert f"raised {raised}, which is not an Exception" in proc.stderr
    assert "fit returned" not in proc.stdout
