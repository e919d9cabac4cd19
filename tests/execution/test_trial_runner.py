"""TrialRunner pieces that need no Ray: the Event pair a step waits on."""
import threading

from fasttune.execution.trial_runner import _EitherEvent


def test_either_event_is_set_by_either_and_wakes_a_waiter():
    suggestion, request = threading.Event(), threading.Event()
    wake = _EitherEvent(suggestion, request)
    assert not wake.is_set() and wake.wait(0) is False

    setter = threading.Thread(target=request.set)  # the one it does not block on
    setter.start()
    assert wake.wait(60) is True
    setter.join()
    assert wake.is_set()

    request.clear()
    suggestion.set()
    assert wake.is_set() and wake.wait(60) is True
