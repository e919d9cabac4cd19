"""TuneControllerView: the runner as schedulers see it.

The runner and the schedulers' test double must both provide every member of the view,
with signatures that accept the calls schedulers make.
"""
import inspect

import pytest

from fasttune.execution.trial_runner import TrialRunner
from fasttune.schedulers import FIFOScheduler
from fasttune.schedulers.trial_scheduler import TuneControllerView
from simulated_runner import SimulatedRunner

PROPERTIES = ["table", "metric", "search_alg", "is_stopping", "experiment_path"]
METHODS = [
    "get_trials", "get_trial", "get_live_trials", "cluster_resources", "first_trial_with_status", "is_trial_held",
    "stop_trial", "pause_trial", "reset_trial",
]


def test_the_view_has_exactly_its_documented_members():
    members = sorted(name for name in vars(TuneControllerView) if not name.startswith("_"))
    assert members == sorted(PROPERTIES + METHODS)
    for name in members:
        assert inspect.getdoc(getattr(TuneControllerView, name)), name


@pytest.mark.parametrize("make", [TrialRunner, lambda: SimulatedRunner(FIFOScheduler())],
                         ids=["TrialRunner", "SimulatedRunner"])
def test_the_runner_and_the_test_double_provide_the_whole_view(make):
    controller = make()
    for name in PROPERTIES:
        getattr(controller, name)  # readable
    for name in METHODS:
        wanted = inspect.signature(getattr(TuneControllerView, name))
        params = list(wanted.parameters.values())[1:]  # without self
        args = [object() for p in params if p.default is inspect.Parameter.empty]
        kwargs = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
        inspect.signature(getattr(controller, name)).bind(*args, **kwargs)  # raises if it cannot take the call
