"""What tests of a TrialRunner without Ray share."""
import os

from fasttune.execution.trial_runner import TrialRunner
from fasttune.experiment.experiment import Experiment
from fasttune.search import BasicVariantGenerator


class StubExecutor:
    """The executor calls a runner makes while adding, restoring and snapshotting."""

    def __init__(self):
        self.feasibility_checks = []

    def check_feasible(self, trial):
        self.feasibility_checks.append(dict(trial.resources))

    def start_trial(self, trial, spec, asks_ahead):
        self.started = spec
        return 0


def random_search_runner(path, trainable, space, num_samples, random_state, add=True, executor=None,
                         metric="loss", mode="min", **runner_kwargs):
    """A runner of one experiment at ``path`` (trials stop at iteration 5, retried twice,
    ``metric`` ("loss") minimised unless ``mode`` says) with ``num_samples`` trials drawn at
    random from ``space`` added (none with ``add=False``, as for a restore); ``executor`` (a
    :class:`StubExecutor` by default) and ``runner_kwargs`` go to the ``TrialRunner``."""
    experiment = Experiment(os.path.basename(path), trainable, config=space, num_samples=num_samples,
                            storage_path=os.path.dirname(path), stop={"training_iteration": 5}, max_failures=2)
    search_alg = BasicVariantGenerator(random_state=random_state)
    search_alg.set_search_properties(metric, mode, experiment.spec["config"])
    search_alg.add_configurations([experiment])
    runner = TrialRunner(search_alg=search_alg, trial_executor=executor or StubExecutor(),
                         experiment_path=path, metric=metric, mode=mode, **runner_kwargs)
    runner.setup_experiments([experiment], num_samples)
    for _ in range(num_samples if add else 0):
        runner.add_trial(search_alg.next_trial())
    return runner
