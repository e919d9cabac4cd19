"""What tests of a TrialRunner without Ray share."""


class StubExecutor:
    """The executor calls a runner makes while adding, restoring and snapshotting."""

    def __init__(self):
        self.feasibility_checks = []

    def check_feasible(self, trial):
        self.feasibility_checks.append(dict(trial.resources))

    def start_trial(self, trial, spec, asks_ahead):
        self.started = spec
        return 0
