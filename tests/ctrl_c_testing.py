"""What the simulated sweeps' restore tests share: Ctrl-C pressed, or a callback raising, at a chosen result."""
import os
import signal

import fasttune as tune


class CtrlCAtResult(tune.Callback):
    """Presses Ctrl-C once, when the sweep's ``at``-th result arrives (its count is kept
    in the snapshot, so the restored sweep does not press it again)."""

    def __init__(self, at):
        self.at = at
        self.seen = 0

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.seen += 1
        if self.seen == self.at:
            os.kill(os.getpid(), signal.SIGINT)

    def get_state(self):
        return {"seen": self.seen}

    def set_state(self, state):
        self.seen = state["seen"]


class RaiseAtResult(tune.Callback):
    """Raises at the sweep's ``at``-th result, as a failing callback does, and keeps the
    trial directory and epoch of that result (``raised_on``); its count is in the snapshot."""

    def __init__(self, at):
        self.at = at
        self.seen = 0
        self.raised_on = None

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.seen += 1
        if self.seen == self.at:
            self.raised_on = (trial.path, result["epoch"])
            raise RuntimeError(f"a callback raised at result {self.at}")

    def get_state(self):
        return {"seen": self.seen}

    def set_state(self, state):
        self.seen = state["seen"]
