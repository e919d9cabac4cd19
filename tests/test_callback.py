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
    with pytest.raises(KeyError):
        CallbackList([]).wants("on_nothing")
