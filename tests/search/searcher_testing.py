"""Small Searchers and a fake Experiment shared by the searcher tests (not a test module)."""
import random

import fasttune as tune
from fasttune.search.sample import Float
from fasttune.search.searcher import Searcher


class LocalSearch(Searcher):
    """Seeded random search that narrows around the best config seen so far.

    Takes its space (``uniform`` domains) from ``set_search_properties``.
    """

    def __init__(self, seed=0, n_random=6, sigma=2.0, decay=0.92, metric=None, mode=None):
        super().__init__(metric=metric, mode=mode)
        self.rng = random.Random(seed)
        self.n_random, self.sigma, self.decay = n_random, sigma, decay
        self.space = None
        self.best = None  # (value, config)
        self.suggested = {}
        self.completed = []

    def set_search_properties(self, metric, mode, config, **spec):
        if self.space is not None:
            return False
        self._metric = self._metric or metric
        self._mode = self._mode or mode
        self.space = {k: (d.lower, d.upper) for k, d in config.items() if isinstance(d, Float)}
        return True

    def suggest(self, trial_id):
        if len(self.suggested) < self.n_random or self.best is None:
            config = {k: self.rng.uniform(lo, hi) for k, (lo, hi) in self.space.items()}
        else:
            center = self.best[1]
            config = {
                k: min(hi, max(lo, self.rng.gauss(center[k], self.sigma))) for k, (lo, hi) in self.space.items()
            }
            self.sigma *= self.decay
        self.suggested[trial_id] = config
        return dict(config)

    def on_trial_complete(self, trial_id, result=None, error=False):
        self.completed.append((trial_id, result, error))
        if error or not result or self.metric not in result:
            return
        value = result[self.metric] if self.mode == "min" else -result[self.metric]
        if self.best is None or value < self.best[0]:
            self.best = (value, self.suggested[trial_id])


    def get_state(self):
        return {"rng": self.rng.getstate(), "sigma": self.sigma, "best": self.best,
                "suggested": dict(self.suggested), "space": self.space}

    def set_state(self, state):
        self.rng.setstate(state["rng"])
        self.sigma, self.best = state["sigma"], state["best"]
        self.suggested, self.space = dict(state["suggested"]), state["space"]


class ListSearcher(Searcher):
    """Suggests the given configs in order, then FINISHED; records what it hears."""

    def __init__(self, configs, metric="loss", mode="min"):
        super().__init__(metric=metric, mode=mode)
        self.configs = list(configs)
        self.position = 0
        self.suggest_ids = []
        self.results = []
        self.completed = []
        self.live = set()
        self.max_live = 0

    def suggest(self, trial_id):
        self.suggest_ids.append(trial_id)
        if self.position >= len(self.configs):
            return Searcher.FINISHED
        config = self.configs[self.position]
        self.position += 1
        self.live.add(trial_id)
        self.max_live = max(self.max_live, len(self.live))
        return dict(config)

    def on_trial_result(self, trial_id, result):
        self.results.append((trial_id, result))

    def on_trial_complete(self, trial_id, result=None, error=False):
        self.live.discard(trial_id)
        self.completed.append((trial_id, result, error))

    def get_state(self):
        return {"position": self.position}

    def set_state(self, state):
        self.position = state["position"]


class FakeTrial:
    def __init__(self, config, experiment_tag, evaluated_params, trial_id):
        self.config, self.experiment_tag = config, experiment_tag
        self.evaluated_params, self.trial_id = evaluated_params, trial_id


class FakeExperiment:
    """The parts of fasttune.Experiment that SearchGenerator uses."""

    name = "fake"

    def __init__(self, config=None, num_samples=1):
        self.spec = {"config": config or {}, "num_samples": num_samples}

    def trial_factory(self, config, experiment_tag="", evaluated_params=None, trial_id=None):
        return FakeTrial(config, experiment_tag, evaluated_params, trial_id)


def quadratic(config):
    """The 2-D quadratic the searchers' end-to-end tests minimise: optimum (1, -2), with
    an optional ``scale`` from the config."""
    x, y = config["x"], config["y"]
    tune.report({"loss": config.get("scale", 1.0) * ((x - 1.0) ** 2 + (y + 2.0) ** 2)})


def run_suggestions(search, n, objective=lambda c: 0.0):
    """``n`` suggest/complete rounds of a searcher outside any sweep; returns the configs."""
    configs = []
    for i in range(n):
        config = search.suggest(f"t{i}")
        configs.append(config)
        search.on_trial_complete(f"t{i}", {"loss": objective(config)})
    return configs
