"""``Tuner.get_results``: what ``fit`` returned, or for a restored Tuner, the experiment
as it was left; an error before either."""
import pytest

import fasttune as tune
from fasttune_testing import fit

pytestmark = pytest.mark.ray


def train(config):
    tune.report({"loss": config["x"]})


def test_get_results(ray_session, storage):
    with pytest.raises(RuntimeError, match=r"call Tuner.fit\(\) first"):
        tune.Tuner(train).get_results()
    tuner = tune.Tuner(train, param_space={"x": tune.grid_search([3, 1, 2])},
                       tune_config=tune.TuneConfig(metric="loss", mode="min"),
                       run_config=tune.RunConfig(name="exp", storage_path=storage, verbose=0))
    grid = tuner.fit()
    assert tuner.get_results() is grid
    restored = tune.Tuner.restore(grid.experiment_path, trainable=train)
    results = restored.get_results()
    assert sorted(r.metrics["loss"] for r in results) == [1, 2, 3]
    assert results.get_best_result().config == {"x": 1}  # the restored TuneConfig's metric and mode
