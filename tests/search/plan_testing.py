"""What the sampling plan's tests share: a stand-in experiment, the seeds, and a value
with its types spelled out."""
import numpy as np

SEEDS = {
    "int": lambda: 0,
    "generator": lambda: np.random.default_rng(1),
    "random_state": lambda: np.random.RandomState(2),
    "global": lambda: None,
}


class FakeTrial:
    def __init__(self, config, tag, evaluated_params):
        self.config, self.trial_id, self.evaluated_params = config, tag, evaluated_params


class FakeExperiment:
    """The parts of fasttune.Experiment the generator uses."""

    name = "plan"

    def __init__(self, space, num_samples):
        self.spec = {"config": space, "num_samples": num_samples}

    def trial_factory(self, config, experiment_tag, evaluated_params, trial_id):
        return FakeTrial(config, experiment_tag, evaluated_params)


def typed(value):
    """The value with the type of every part, so that 1 == 1.0 == np.float64(1) tell apart."""
    if isinstance(value, dict):
        return (dict, [(type(key), key, typed(item)) for key, item in value.items()])
    if isinstance(value, (list, tuple)):
        return (type(value), [typed(item) for item in value])
    return (type(value), value)


def drawn_trials(generator, count=None):
    """``(tag, typed config, typed evaluated params)`` of the generator's next trials (all
    of them without ``count``)."""
    out = []
    while count is None or len(out) < count:
        trial = generator.next_trial()
        if trial is None:
            break
        out.append((trial.trial_id, typed(trial.config), typed(trial.evaluated_params)))
    return out
