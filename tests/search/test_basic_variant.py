"""BasicVariantGenerator against a fake experiment; plus the two base classes."""
import itertools
import os
import pickle
import sys

import pytest

from fasttune.search.basic_variant import BasicVariantGenerator
from fasttune.search.sample import choice, grid_search, randint, sample_from, uniform
from fasttune.search.search_algorithm import SearchAlgorithm
from fasttune.search.searcher import Searcher

_ids = itertools.count()


class FakeTrial:
    def __init__(self, config, experiment_tag, evaluated_params, trial_id):
        self.config = config
        self.experiment_tag = experiment_tag
        self.evaluated_params = evaluated_params
        self.trial_id = trial_id or f"trial_{next(_ids)}"
        self.passed_trial_id = trial_id


class FakeExperiment:
    """The contract: .spec, .name, .trial_factory(config, experiment_tag, evaluated_params, trial_id)."""

    def __init__(self, config, num_samples=1, name="exp"):
        self.spec = {"config": config, "num_samples": num_samples, "stop": {}, "run": "train"}
        self.name = name
        self.created = 0

    def trial_factory(self, config, experiment_tag, evaluated_params, trial_id):
        self.created += 1
        return FakeTrial(config, experiment_tag, evaluated_params, trial_id)


def drain(search):
    trials = []
    while True:
        trial = search.next_trial()
        if trial is None:
            return trials
        trials.append(trial)


def test_grid_times_num_samples():
    search = BasicVariantGenerator(random_state=0)
    search.add_configurations(FakeExperiment({"a": grid_search([1, 2, 3]), "r": uniform(0, 1)}, num_samples=2))
    assert search.total_samples == 6
    trials = drain(search)
    assert [t.config["a"] for t in trials] == [1, 2, 3, 1, 2, 3]
    assert len({t.config["r"] for t in trials}) == 6
    assert search.is_finished()


def test_trials_carry_tag_and_evaluated_params_and_no_trial_id():
    search = BasicVariantGenerator(random_state=0)
    search.add_configurations(FakeExperiment({"lr": grid_search([0.01, 0.1]), "opt": {"m": choice([0.9])}, "k": 1}))
    first, second = drain(search)
    assert first.experiment_tag == "0_lr=0.0100,m=0.9000"
    assert second.experiment_tag == "1_lr=0.1000,m=0.9000"
    assert first.evaluated_params == {"lr": 0.01, "opt/m": 0.9}
    assert first.config == {"lr": 0.01, "opt": {"m": 0.9}, "k": 1}
    assert first.passed_trial_id is None


def test_constant_space_gets_a_bare_index_tag():
    search = BasicVariantGenerator()
    search.add_configurations(FakeExperiment({"k": 1}, num_samples=2))
    assert [t.experiment_tag for t in drain(search)] == ["0", "1"]


def test_index_counts_across_experiments():
    search = BasicVariantGenerator(random_state=0)
    first, second = FakeExperiment({"a": grid_search([1, 2])}, name="one"), FakeExperiment({"b": grid_search([3])}, name="two")
    search.add_configurations([first, second])
    trials = drain(search)
    assert [t.experiment_tag for t in trials] == ["0_a=1", "1_a=2", "2_b=3"]
    assert (first.created, second.created) == (2, 1)
    assert search.total_samples == 3


def test_finished_as_soon_as_the_last_trial_is_out():
    search = BasicVariantGenerator()
    search.add_configurations(FakeExperiment({"a": grid_search([1, 2])}))
    assert not search.is_finished()
    search.next_trial()
    assert not search.is_finished()
    search.next_trial()
    assert search.is_finished()
    assert search.next_trial() is None


def test_adding_an_experiment_after_finishing_resumes():
    search = BasicVariantGenerator()
    search.add_configurations(FakeExperiment({"a": 1}))
    drain(search)
    assert search.is_finished()
    search.add_configurations(FakeExperiment({"b": 2}))
    assert not search.is_finished()
    assert [t.config for t in drain(search)] == [{"b": 2}]


def test_nothing_added_means_nothing_to_run():
    search = BasicVariantGenerator()
    assert not search.is_finished()
    assert search.next_trial() is None
    assert search.is_finished()


# -- laziness ------------------------------------------------------------------------


def test_fifty_thousand_samples_are_created_one_at_a_time():
    draws = []
    experiment = FakeExperiment({"x": sample_from(lambda: draws.append(1) or len(draws))}, num_samples=50_000)
    search = BasicVariantGenerator(random_state=0)
    search.add_configurations(experiment)
    assert search.total_samples == 50_000
    trials = [search.next_trial() for _ in range(3)]
    assert [t.config["x"] for t in trials] == [1, 2, 3]
    assert experiment.created == 3
    assert len(draws) == 4  # three trials plus the one-variant look-ahead
    assert not search.is_finished()


def test_a_fifty_thousand_point_grid_is_expanded_lazily():
    draws = []
    experiment = FakeExperiment({"g": grid_search(list(range(50_000))), "x": sample_from(lambda: draws.append(1))})
    search = BasicVariantGenerator()
    search.add_configurations(experiment)
    assert search.total_samples == 50_000
    assert [search.next_trial().config["g"] for _ in range(2)] == [0, 1]
    assert len(draws) == 3


def test_unlimited_samples():
    search = BasicVariantGenerator(random_state=0)
    search.add_configurations(FakeExperiment({"r": uniform(0, 1)}, num_samples=-1))
    assert search.total_samples == sys.maxsize
    assert len([search.next_trial() for _ in range(100)]) == 100
    assert not search.is_finished()


# -- points_to_evaluate ----------------------------------------------------------


def test_points_come_first_and_use_up_samples():
    search = BasicVariantGenerator(points_to_evaluate=[{"lr": 0.5}, {"lr": 0.25, "wd": 0.0}], random_state=0)
    search.add_configurations(FakeExperiment({"lr": uniform(0, 0.1), "wd": uniform(0.1, 0.2)}, num_samples=3))
    assert search.total_samples == 3
    first, second, third = drain(search)
    assert first.config["lr"] == 0.5 and 0.1 <= first.config["wd"] <= 0.2
    assert second.config == {"lr": 0.25, "wd": 0.0}
    assert 0 <= third.config["lr"] <= 0.1
    assert first.evaluated_params == {"wd": first.config["wd"]}


def test_points_merge_nested_values_and_keep_remaining_grids():
    search = BasicVariantGenerator(points_to_evaluate=[{"opt": {"lr": 1.0}}])
    search.add_configurations(
        FakeExperiment({"opt": {"lr": uniform(0, 0.1), "m": 0.9}, "g": grid_search([1, 2])}, num_samples=2)
    )
    assert search.total_samples == 4
    configs = [t.config for t in drain(search)]
    assert configs[:2] == [{"opt": {"lr": 1.0, "m": 0.9}, "g": 1}, {"opt": {"lr": 1.0, "m": 0.9}, "g": 2}]
    assert all(c["opt"]["lr"] <= 0.1 for c in configs[2:]) and len(configs) == 4


def test_more_points_than_samples_are_all_evaluated():
    search = BasicVariantGenerator(points_to_evaluate=[{"a": 1}, {"a": 2}])
    search.add_configurations(FakeExperiment({"a": randint(0, 10)}, num_samples=1))
    assert [t.config["a"] for t in drain(search)] == [1, 2]
    assert search.total_samples == 2


def test_point_with_an_unknown_key_fails_when_added():
    search = BasicVariantGenerator(points_to_evaluate=[{"nope": 1}])
    with pytest.raises(ValueError, match="'config/nope', which is not in the param_space"):
        search.add_configurations(FakeExperiment({"a": uniform(0, 1)}))


# -- max_concurrent ---------------------------------------------------------------


def test_max_concurrent_holds_trials_until_one_completes():
    search = BasicVariantGenerator(max_concurrent=2)
    search.add_configurations(FakeExperiment({"a": grid_search([1, 2, 3, 4])}))
    first, second = search.next_trial(), search.next_trial()
    assert search.next_trial() is None and not search.is_finished()
    search.on_trial_complete(first.trial_id, result={"score": 1})
    third = search.next_trial()
    assert third.config["a"] == 3
    assert search.next_trial() is None
    search.on_trial_complete(second.trial_id, error=True)
    assert search.next_trial().config["a"] == 4
    assert search.is_finished()


# -- reproducibility and resume ------------------------------------------------------


def _space():
    return {
        "g": grid_search([1, 2, 3]),
        "r": uniform(0, 1),
        "c": choice(["a", "b", "c"]),
        "d": sample_from(lambda spec: spec.config.r * spec.config.g),
    }


def test_same_seed_same_sweep():
    runs = []
    for _ in range(2):
        search = BasicVariantGenerator(random_state=7)
        search.add_configurations(FakeExperiment(_space(), num_samples=3))
        runs.append([t.config for t in drain(search)])
    assert runs[0] == runs[1] and len(runs[0]) == 9
    other = BasicVariantGenerator(random_state=8)
    other.add_configurations(FakeExperiment(_space(), num_samples=3))
    assert [t.config for t in drain(other)] != runs[0]


@pytest.mark.parametrize("stop_after", [0, 1, 2, 4, 8, 9])
def test_restored_generator_continues_where_it_stopped(tmp_path, stop_after):
    reference = BasicVariantGenerator(points_to_evaluate=[{"r": 0.5}], random_state=3)
    reference.add_configurations(FakeExperiment(_space(), num_samples=3))
    expected = [(t.experiment_tag, t.config) for t in drain(reference)]

    search = BasicVariantGenerator(points_to_evaluate=[{"r": 0.5}], random_state=3)
    search.add_configurations(FakeExperiment(_space(), num_samples=3))
    before = [(t.experiment_tag, t.config) for t in (search.next_trial() for _ in range(stop_after))]
    assert not search.has_checkpoint(str(tmp_path))
    assert search.save_to_dir(str(tmp_path), session_str="s1")
    assert search.has_checkpoint(str(tmp_path))
    assert os.listdir(tmp_path) == ["basic-variant-state-s1.pkl"]

    restored = BasicVariantGenerator()
    restored.restore_from_dir(str(tmp_path))
    after = [(t.experiment_tag, t.config) for t in drain(restored)]
    assert before + after == expected
    assert restored.total_samples == 9


def test_restore_without_checkpoint_is_an_error(tmp_path):
    with pytest.raises(RuntimeError, match="No BasicVariantGenerator checkpoint"):
        BasicVariantGenerator().restore_from_dir(str(tmp_path))


def test_unpicklable_state_is_not_saved(tmp_path, monkeypatch, caplog):
    import fasttune.search.basic_variant as module

    def refuse(state):
        raise pickle.PicklingError("nope")

    monkeypatch.setattr(module, "pack_state", refuse)
    search = BasicVariantGenerator()
    search.add_configurations(FakeExperiment({"a": 1}))
    assert search.save_to_dir(str(tmp_path)) is False
    assert os.listdir(tmp_path) == []
    assert "cannot be resumed" in caplog.text


# -- bad input -----------------------------------------------------------------------


def test_bad_arguments():
    with pytest.raises(TypeError, match="points_to_evaluate must be a list"):
        BasicVariantGenerator(points_to_evaluate={"a": 1})
    with pytest.raises(TypeError, match=r"points_to_evaluate\[0\] must be a dict"):
        BasicVariantGenerator(points_to_evaluate=[1])
    with pytest.raises(ValueError, match="max_concurrent must be an int >= 0"):
        BasicVariantGenerator(max_concurrent=-1)
    with pytest.raises(TypeError, match="random_state must be"):
        BasicVariantGenerator(random_state="x")
    with pytest.raises(TypeError, match="takes Experiment objects"):
        BasicVariantGenerator().add_configurations({"config": {}})
    with pytest.raises(TypeError, match="param_space must be a dict .* got list"):
        BasicVariantGenerator().add_configurations(FakeExperiment([1, 2]))
    with pytest.raises(ValueError, match="num_samples must be"):
        BasicVariantGenerator().add_configurations(FakeExperiment({"a": 1}, num_samples=-5))


def test_a_cycle_fails_when_the_experiment_is_added():
    search = BasicVariantGenerator()
    with pytest.raises(ValueError, match="cycle"):
        search.add_configurations(FakeExperiment({"a": sample_from(lambda spec: spec.config.a)}))


# -- base classes ---------------------------------------------------------------------


def test_search_algorithm_is_abstract_and_takes_metric_once():
    with pytest.raises(TypeError, match="abstract"):
        SearchAlgorithm()
    search = BasicVariantGenerator()
    assert search.metric is None and search.mode is None
    assert search.set_search_properties("loss", "min", {})
    assert (search.metric, search.mode) == ("loss", "min")
    assert not search.set_search_properties("acc", "max", {})
    assert search.metric == "loss"


class _Memory(Searcher):
    def __init__(self):
        super().__init__(metric="loss", mode="min")
        self.seen = []

    def suggest(self, trial_id):
        return {"x": len(self.seen)}

    def on_trial_complete(self, trial_id, result=None, error=False):
        self.seen.append(trial_id)

    def add_evaluated_point(self, parameters, value, error=False, pruned=False, intermediate_values=None):
        self.seen.append((parameters, value, error, pruned))

    def get_state(self):
        return {"seen": self.seen}

    def set_state(self, state):
        self.seen = state["seen"]


def test_searcher_base_defaults_and_checks():
    assert Searcher.FINISHED == "FINISHED"
    assert Searcher.CKPT_FILE_TMPL.format("x") == "searcher-state-x.pkl"
    base = Searcher()
    assert base.metric is None and base.set_search_properties("m", "min", {}) is False
    assert base.set_max_concurrency(4) is False
    with pytest.raises(NotImplementedError):
        base.suggest("t")
    with pytest.raises(ValueError, match="mode must be 'min' or 'max'"):
        Searcher(metric="loss", mode="lowest")
    with pytest.raises(ValueError, match="same length"):
        Searcher(metric=["a"], mode=["min", "max"])


def test_searcher_saves_and_restores_through_its_state(tmp_path):
    searcher = _Memory()
    searcher.on_trial_complete("t1")
    searcher.save_to_dir(str(tmp_path), session_str="now")
    assert os.listdir(tmp_path) == ["searcher-state-now.pkl"]
    fresh = _Memory()
    fresh.restore_from_dir(str(tmp_path))
    assert fresh.seen == ["t1"]
    with pytest.raises(RuntimeError, match="No searcher checkpoint"):
        fresh.restore_from_dir(str(tmp_path / "missing"))


def test_searcher_without_state_skips_saving(tmp_path, caplog):
    class Stateless(Searcher):
        pass

    Stateless().save_to_dir(str(tmp_path))
    assert os.listdir(tmp_path) == []
    assert "does not implement save()" in caplog.text


def test_add_evaluated_trials_feeds_points():
    class Done:
        config, status, last_result = {"x": 1}, "TERMINATED", {"loss": 0.5, "done": True}

    class Errored:
        config, status, last_result = {"x": 2}, "ERROR", {"loss": 9.0}

    class NoMetric:
        config, status, last_result = {"x": 3}, "TERMINATED", {"other": 1}

    searcher = _Memory()
    searcher.add_evaluated_trials([Done(), Errored(), NoMetric()], metric="loss")
    assert searcher.seen == [({"x": 1}, 0.5, False, False), ({"x": 2}, 9.0, True, False)]
    with pytest.raises(NotImplementedError):
        Searcher().add_evaluated_trials([Done()], metric="loss")
