"""TrackingProcess, the driver's end of a tracking callback's process, with a handler of the
test's own (a module written to a folder on the process's PYTHONPATH)."""
import os
import threading

import pytest

from fasttune.error import TuneError
from fasttune.integration._tracking_process import TrackingProcess

_NEVER_CLOSING_HANDLER = '''
import threading


class NeverClosing:
    """Takes any message; its close waits for an event nobody sets."""

    def log(self, *args):
        pass

    def close(self):
        threading.Event().wait()
'''


def test_a_thread_failure_before_a_finish_past_its_timeout_is_named_and_chained(tmp_path, monkeypatch):
    """The thread fails on a message it cannot pickle; the process's close then never ends:
    the timeout's TuneError names the thread's failure too, and has it as its cause."""
    (tmp_path / "never_closing.py").write_text(_NEVER_CLOSING_HANDLER)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    tracking = TrackingProcess("Test tracking", ("never_closing", "NeverClosing", ()), finish_timeout=0.2)
    tracking.start()
    tracking.send("log", threading.Lock())
    with pytest.raises(TuneError, match=r"Test tracking did not finish within 0\.2 s; it was stopped, .* Before that "
                                        r"it stopped taking results \(TypeError: cannot pickle") as raised:
        tracking.finish()
    assert isinstance(raised.value.__cause__, TypeError)
