"""CallbackList: dispatch only to overridden hooks, in order."""
import pytest

from fasttune.callback import Callback, CallbackList, _HOOKS


class Recorder(Callback):
    def __init__(self, name, log):
        self.name, self.log = name, log


class OnResult(Recorder):
    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.log.append((self.name, "on_trial_result", iteration, trial, result, info))


class OnComplete(Recorder):
    def on_trial_complete(self, iteration, trials, trial, **info):
        self.log.append((self.name, "on_trial_complete", trial))


class OnResultSubclass(OnResult):
    """Inherits an override: still counts as overriding."""


def test_hook_list_covers_the_callback_api():
    assert "setup" in _HOOKS and "on_trial_result" in _HOOKS and "on_experiment_end" in _HOOKS
    assert all(h == "setup" or h.startswith("on_") for h in _HOOKS)


def test_wants_only_overridden_hooks():
    log = []
    callbacks = CallbackList([OnResult("a", log), OnComplete("b", log)])
    assert callbacks.wants("on_trial_result")
    assert callbacks.wants("on_trial_complete")
    assert not any(callbacks.wants(h) for h in _HOOKS if h not in ("on_trial_result", "on_trial_complete"))
    assert not CallbackList().wants("on_trial_result")
    assert not CallbackList([Callback()]).wants("on_step_begin")
    assert CallbackList([OnResultSubclass("c", log)]).wants("on_trial_result")


def test_call_dispatches_in_order_to_overriding_callbacks_only():
    log = []
    callbacks = CallbackList(
        [OnResult("first", log), OnComplete("c", log), Callback(), OnResultSubclass("second", log)]
    )
    assert len(callbacks) == 4
    callbacks.call("on_trial_result", iteration=3, trials=[], trial="t1", result={"x": 1}, extra=2)
    assert log == [
        ("first", "on_trial_result", 3, "t1", {"x": 1}, {"extra": 2}),
        ("second", "on_trial_result", 3, "t1", {"x": 1}, {"extra": 2}),
    ]
    log.clear()
    callbacks.call("on_trial_complete", iteration=4, trials=[], trial="t2")
    assert log == [("c", "on_trial_complete", "t2")]
    log.clear()
    callbacks.call("on_step_begin", iteration=5, trials=[])  # nobody overrides it
    assert log == []


def test_base_callback_hooks_are_noops():
    cb = Callback()
    assert cb.setup() is None
    assert cb.on_trial_result(iteration=1, trials=[], trial=None, result={}) is None
    assert cb.on_experiment_end(trials=[]) is None


@pytest.mark.parametrize("bad", [object(), lambda **kw: None, OnResult])
def test_non_callback_raises_type_error(bad):
    with pytest.raises(TypeError, match="fasttune.Callback instances"):
        CallbackList([Callback(), bad])


def test_unknown_hook_is_an_error():
    with pytest.raises(KeyError, match="on_nothing"):
        CallbackList([]).wants("on_nothing")


# ---- the hooks over real sweeps -------------------------------------------------------------
import json  # noqa: E402
import os  # noqa: E402

import fasttune as tune  # noqa: E402
from fasttune import TuneError  # noqa: E402
from fasttune_testing import report_with_step_checkpoint, restored_step  # noqa: E402


class RecordingCallback(Callback):
    """Appends every hook call, as plain data, to a JSON-lines file: the callback is
    saved with the Tuner, so a restored run's copy records to the same file."""

    def __init__(self, path):
        self.path = path

    def _log(self, hook, iteration=None, trials=None, trial=None, **detail):
        entry = {"hook": hook, "iteration": iteration}
        if trial is not None:
            entry["kind"] = trial.config["kind"]
            entry["status"] = trial.status
            entry["in_trials"] = any(t is trial for t in trials)
        entry.update(detail)
        with open(self.path, "a") as f:
            f.write(json.dumps(entry) + "\n")

    def setup(self, stop=None, num_samples=None, total_num_samples=None, **info):
        self._log("setup", num_samples=num_samples, total_num_samples=total_num_samples)

    def on_step_begin(self, iteration, trials, **info):
        self._log("on_step_begin", iteration)

    def on_step_end(self, iteration, trials, **info):
        self._log("on_step_end", iteration)

    def on_trial_start(self, iteration, trials, trial, **info):
        self._log("on_trial_start", iteration, trials, trial)

    def on_trial_restore(self, iteration, trials, trial, **info):
        self._log("on_trial_restore", iteration, trials, trial, restores_from=os.path.basename(trial.checkpoint.path))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._log("on_trial_result", iteration, trials, trial, step=result["training_iteration"], loss=result["loss"])

    def on_trial_result_batch(self, iteration, trials, trial, results, times, **info):
        self._log("on_trial_result_batch", iteration, trials, trial, steps=[r["training_iteration"] for r in results],
                  times_match=len(times) == len(results) and all(isinstance(t, float) for t in times))

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        self._log("on_checkpoint", iteration, trials, trial, name=os.path.basename(checkpoint.path),
                  in_trial_dir=os.path.dirname(checkpoint.path) == trial.path)

    def on_trial_save(self, iteration, trials, trial, **info):
        self._log("on_trial_save", iteration, trials, trial, name=os.path.basename(trial.checkpoint.path))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._log("on_trial_complete", iteration, trials, trial)

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._log("on_trial_recover", iteration, trials, trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._log("on_trial_error", iteration, trials, trial)

    def on_experiment_end(self, trials, **info):
        self._log("on_experiment_end", statuses=sorted([t.config["kind"], t.status] for t in trials))


def _three_kinds(config):
    """'ckpt' completes, with a checkpoint at step 2; 'recover' fails once at step 3 and
    restarts from that checkpoint; 'error' fails at step 3 until healed."""
    kind = config["kind"]
    for i in range(restored_step() + 1, 4):
        if i == 3 and kind == "recover" and not os.path.exists(config["failed_once"]):
            open(config["failed_once"], "w").close()
            raise RuntimeError("fails once")
        if i == 3 and kind == "error" and not os.path.exists(config["healed"]):
            raise RuntimeError("broken until healed")
        if i == 2:
            report_with_step_checkpoint({"loss": float(i)}, i)
        else:
            tune.report({"loss": float(i)})


def _read(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def _trial_hooks(log, kind):
    """(hook, detail) of one trial's calls, batches left out (their bounds vary)."""
    out = []
    for entry in log:
        if entry.get("kind") != kind or entry["hook"] == "on_trial_result_batch":
            continue
        detail = entry.get("step", entry.get("name", entry.get("restores_from")))
        out.append((entry["hook"], detail) if detail is not None else (entry["hook"],))
    return out


def _batched_steps(log, kind):
    return [s for e in log if e["hook"] == "on_trial_result_batch" and e["kind"] == kind for s in e["steps"]]


def _check_loop_structure(log):
    """setup first and on_experiment_end last; steps alternate begin/end; every trial hook
    runs inside a step, with that step's iteration, and knows its trial is in ``trials``."""
    assert log[0]["hook"] == "setup" and log[-1]["hook"] == "on_experiment_end"
    in_step, begun = False, None
    for entry in log[1:-1]:
        if entry["hook"] == "on_step_begin":
            assert not in_step
            in_step, begun = True, entry["iteration"]
        elif entry["hook"] == "on_step_end":
            assert in_step and entry["iteration"] == begun + 1
            in_step = False
        else:
            assert in_step and entry["iteration"] == begun and entry["in_trials"], entry
    assert not in_step


CKPT = "checkpoint_000000"


def test_every_hook_fires_in_order_with_the_right_arguments(ray_session, tmp_path):
    log_path = str(tmp_path / "hooks.jsonl")
    space = {"kind": tune.grid_search(["ckpt", "recover", "error"]),
             "failed_once": str(tmp_path / "failed_once"), "healed": str(tmp_path / "healed")}
    tune.Tuner(_three_kinds, param_space=space,
               run_config=tune.RunConfig(name="hooks", storage_path=str(tmp_path), verbose=0,
                                         callbacks=[RecordingCallback(log_path)],
                                         failure_config=tune.FailureConfig(max_failures=1))).fit()
    log = _read(log_path)
    _check_loop_structure(log)
    assert log[0] == {"hook": "setup", "iteration": None, "num_samples": 1, "total_num_samples": 3}
    assert log[-1]["statuses"] == [["ckpt", "TERMINATED"], ["error", "ERROR"], ["recover", "TERMINATED"]]
    head = [("on_trial_start",), ("on_trial_result", 1), ("on_trial_result", 2),
            ("on_checkpoint", CKPT), ("on_trial_save", CKPT)]
    assert _trial_hooks(log, "ckpt") == head + [("on_trial_result", 3), ("on_trial_complete",)]
    assert _trial_hooks(log, "recover") == head + [("on_trial_recover",), ("on_trial_restore", CKPT),
                                                   ("on_trial_result", 3), ("on_trial_complete",)]
    assert _trial_hooks(log, "error") == head + [("on_trial_recover",), ("on_trial_restore", CKPT),
                                                 ("on_trial_error",)]
    assert [e["status"] for e in log if e["hook"] == "on_trial_complete"] == ["TERMINATED"] * 2
    assert [e["status"] for e in log if e["hook"] == "on_trial_error"] == ["ERROR"]
    assert all(e["in_trial_dir"] for e in log if e["hook"] == "on_checkpoint")
    # Batches: every logged result once, in order, after its per-result hook.
    assert _batched_steps(log, "ckpt") == _batched_steps(log, "recover") == [1, 2, 3]
    assert _batched_steps(log, "error") == [1, 2]
    assert all(e["times_match"] for e in log if e["hook"] == "on_trial_result_batch")
    for i, entry in enumerate(log):
        if entry["hook"] == "on_trial_result_batch":
            earlier = [(e["kind"], e["step"]) for e in log[:i] if e["hook"] == "on_trial_result"]
            assert all((entry["kind"], s) in earlier for s in entry["steps"])

    # The restore: only the errored trial runs again, from its checkpoint.
    os.remove(log_path)
    (tmp_path / "healed").write_text("yes")
    tune.Tuner.restore(str(tmp_path / "hooks"), trainable=_three_kinds, resume_errored=True).fit()
    log = _read(log_path)
    _check_loop_structure(log)
    assert log[0]["hook"] == "setup"
    assert log[-1]["statuses"] == [["ckpt", "TERMINATED"], ["error", "TERMINATED"], ["recover", "TERMINATED"]]
    assert _trial_hooks(log, "error") == [("on_trial_restore", CKPT), ("on_trial_result", 3), ("on_trial_complete",)]
    assert _trial_hooks(log, "ckpt") == _trial_hooks(log, "recover") == []
    assert _batched_steps(log, "error") == [3]


class RaisingCallback(Callback):
    def on_trial_result(self, iteration, trials, trial, result, **info):
        raise ValueError("boom")


def _reports_twice(config):
    tune.report({"loss": 1.0})
    tune.report({"loss": 2.0})


def test_a_callback_that_raises_stops_the_sweep_with_an_error_naming_it(ray_session, tmp_path):
    with pytest.raises(TuneError, match=r"RaisingCallback\.on_trial_result raised ValueError: boom") as info:
        tune.Tuner(_reports_twice, run_config=tune.RunConfig(
            name="raising", storage_path=str(tmp_path), verbose=0, callbacks=[RaisingCallback()])).fit()
    assert isinstance(info.value.__cause__, ValueError)
    assert "fix the callback" in str(info.value)


class RaisingAtTheEndToo(Callback):
    def on_experiment_end(self, trials, **info):
        raise RuntimeError("failed at the end as well")


class EndHeard(Callback):
    def __init__(self):
        self.ended_with = None

    def on_experiment_end(self, trials, **info):
        self.ended_with = sorted(t.status for t in trials)


def _reports_four_times(config):
    for step in range(4):
        tune.report({"loss": float(step)})


def test_when_a_callback_raises_the_sweep_ends_as_in_ray_tune_before_fit_raises(ray_session, tmp_path):
    """The end-of-experiment callbacks run (Ray Tune's cleanup calls them on an error too),
    so a logger's files are whole and its thread gone by the time fit() raises: nothing
    writes into the experiment afterwards."""
    import threading

    ended = EndHeard()
    with pytest.raises(TuneError, match="RaisingCallback"):
        tune.Tuner(_reports_four_times, param_space={"x": tune.grid_search([1, 2, 3])}, run_config=tune.RunConfig(
            name="raising", storage_path=str(tmp_path), verbose=0,
            callbacks=[RaisingAtTheEndToo(), ended, RaisingCallback()])).fit()
    # The first callback's on_experiment_end raised too (logged): the others still ended.
    assert ended.ended_with is not None and len(ended.ended_with) == 3
    assert not [t.name for t in threading.enumerate() if t.name == "fasttune-tbx"]
    experiment = tmp_path / "raising"
    # The trials that started have their event file, its first record written (off the loop).
    events = list(experiment.glob("*/events.out.tfevents.*"))
    assert events and all(b"brain.Event:2" in p.read_bytes() for p in events)


class CtrlCAgain(Callback):
    def on_trial_result(self, iteration, trials, trial, result, **info):
        raise KeyboardInterrupt  # as a second Ctrl-C lands


def test_a_second_ctrl_c_does_not_wait_for_the_callbacks_and_the_sweep_stays_restorable(ray_session, tmp_path):
    ended = EndHeard()
    with pytest.raises(KeyboardInterrupt):
        tune.Tuner(_reports_four_times, run_config=tune.RunConfig(
            name="again", storage_path=str(tmp_path), verbose=0, callbacks=[ended, CtrlCAgain()])).fit()
    assert ended.ended_with is None  # as in Ray Tune: its cleanup runs on an Exception only
    assert tune.Tuner.can_restore(str(tmp_path / "again"))


def test_set_state_matches_by_position_and_lets_stateless_extras_differ():
    class Stateful(Callback):
        def get_state(self):
            return {"n": 1}

        def set_state(self, state):
            self.state = state

    first = Stateful()
    CallbackList([first, Callback()]).set_state([{"n": 2}])  # a callback added since: it starts afresh
    assert first.state == {"n": 2}
    CallbackList([Stateful()]).set_state([{"n": 3}, None, None])  # default loggers gone: fine
    with pytest.raises(ValueError, match="cannot be matched up"):
        CallbackList([Callback()]).set_state([None, {"n": 4}])


def test_the_list_has_each_hook_and_calls_the_callbacks_that_override_it():
    log = []
    callbacks = CallbackList([OnResult("a", log), OnComplete("b", log), OnResult("c", log)])
    callbacks.on_trial_result(iteration=3, trials=["t"], trial="t", result={"loss": 1.0})
    callbacks.on_trial_complete(iteration=4, trials=["t"], trial="t")
    callbacks.on_step_begin(iteration=5, trials=["t"])  # nobody overrides it: nothing happens
    assert log == [("a", "on_trial_result", 3, "t", {"loss": 1.0}, {}),
                   ("c", "on_trial_result", 3, "t", {"loss": 1.0}, {}),
                   ("b", "on_trial_complete", "t")]
    assert all(callable(getattr(CallbackList, hook)) for hook in _HOOKS)
    assert callbacks[1].name == "b"


def test_a_hook_called_on_the_list_that_raises_names_the_callback():
    class Broken(Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            raise KeyError("missing")

    with pytest.raises(TuneError, match=r"Broken.on_trial_start raised KeyError"):
        CallbackList([Broken()]).on_trial_start(iteration=0, trials=[], trial="t")
