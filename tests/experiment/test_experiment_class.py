"""``tune.Experiment``'s members as Ray Tune scripts use them."""
import functools
import os

import pytest

import fasttune as tune
from fasttune.error import TuneError
from fasttune.registry import get_trainable_cls
from fasttune.stopper import MaximumIterationStopper


def train(config):
    tune.report({"score": config.get("x", 0)})


def test_from_json_builds_the_experiment_of_a_spec(tmp_path):
    spec = {"run": train, "config": {"x": 1}, "num_samples": 2, "stop": {"score": 5}, "time_budget_s": 60,
            "storage_path": str(tmp_path), "checkpoint_config": {"num_to_keep": 2}, "env": "CartPole"}
    experiment = tune.Experiment.from_json("from_spec", spec)
    assert experiment.name == "from_spec" and experiment.spec["config"] == {"x": 1, "env": "CartPole"}
    assert experiment.checkpoint_config == tune.CheckpointConfig(num_to_keep=2)
    assert experiment.public_spec == {"num_samples": 2, "stop": {"score": 5}, "time_budget_s": 60}
    assert "run" in spec and "env" in spec  # the spec given is left as it is
    with pytest.raises(TuneError, match="needs a 'run' entry"):
        tune.Experiment.from_json("no_run", {"config": {}})
    with pytest.raises(TuneError, match="spec of experiment 'bad' is not valid.*no_such_key"):
        tune.Experiment.from_json("bad", {"run": train, "no_such_key": 1})


def test_trainable_names_as_ray_tune_gives_them():
    def named(config):
        pass

    assert tune.Experiment.get_trainable_name("registered") == "registered"
    assert tune.Experiment.get_trainable_name(named) == "named"
    assert tune.Experiment.get_trainable_name(lambda config: None) == "lambda"
    assert tune.Experiment.get_trainable_name(functools.partial(named)) == "named"
    with pytest.raises(TuneError, match="got int"):
        tune.Experiment.get_trainable_name(3)
    name = tune.Experiment.register_if_needed(named)
    assert get_trainable_cls(name) is named
    assert tune.Experiment.register_if_needed("already_a_name") == "already_a_name"


def test_paths_stopper_and_identifier(tmp_path):
    stopper = MaximumIterationStopper(3)
    experiment = tune.Experiment("paths", train, storage_path=str(tmp_path), stop=stopper)
    assert experiment.local_path == experiment.path == os.path.join(str(tmp_path), "paths")
    assert experiment.remote_path is None
    assert experiment.stopper is stopper and experiment.run_identifier == experiment.trainable_name
    assert tune.Experiment("dict_stop", train, stop={"score": 1}).stopper is None
    for deprecated in ("local_dir", "checkpoint_dir"):
        with pytest.raises(DeprecationWarning, match="use Experiment.local_path"):
            getattr(experiment, deprecated)


def test_refused_arguments():
    with pytest.raises(DeprecationWarning, match=r"Experiment\(local_dir='/old'\).*storage_path"):
        tune.Experiment("old", train, local_dir="/old")
    with pytest.raises(TypeError, match=r"Experiment\(restore=...\) is not supported"):
        tune.Experiment("restore", train, restore="/a/checkpoint")
    with pytest.raises(TypeError, match=r"does not support: \['unknown'\]"):
        tune.Experiment("unknown", train, unknown=1)
    assert tune.Experiment("fine", train, restore=None, export_formats=[]).name == "fine"


def test_trials_of_fixed_resources_share_one_factory_and_per_config_requests_get_their_own(tmp_path):
    fixed = tune.Experiment("fixed", train, resources_per_trial={"cpu": 2}, storage_path=str(tmp_path))
    first, second = fixed.resources_for({"x": 1}), fixed.resources_for({"x": 2})
    assert first is second and first.bundles == [{"CPU": 2.0}]
    by_config = tune.Experiment("by_config", train, resources_per_trial=lambda config: {"cpu": config["x"]},
                                storage_path=str(tmp_path))
    assert [by_config.resources_for({"x": x}).bundles for x in (1, 3)] == [[{"CPU": 1.0}], [{"CPU": 3.0}]]
    del fixed._fixed_factory  # an Experiment pickled before it kept one
    assert fixed.resources_for({"x": 1}).bundles == [{"CPU": 2.0}]


def test_trial_factory_gives_each_trial_every_setting_of_the_experiment(tmp_path):
    checkpoint_config = tune.CheckpointConfig(num_to_keep=3)
    experiment = tune.Experiment(
        "settings", train, config={"x": 1}, stop={"score": 5}, resources_per_trial={"cpu": 2}, storage_path=str(tmp_path),
        checkpoint_config=checkpoint_config, max_failures=4, trial_name_creator=lambda trial: f"named_{trial.trial_id}",
        trial_dirname_creator=lambda trial: f"dir_{trial.trial_id}")
    trial = experiment.trial_factory({"x": 7}, "0_x=7", {"x": 7})
    assert (trial.trainable_name, trial.config, trial.experiment_path, trial.evaluated_params, trial.experiment_tag) == (
        experiment.trainable_name, {"x": 7}, experiment.path, {"x": 7}, "0_x=7")
    assert trial.trial_id.endswith("_00000") and trial.placement_group_factory.required_resources == {"CPU": 2}
    assert (trial.stopping_criterion, trial.max_failures, trial.checkpoint_config) == ({"score": 5}, 4, checkpoint_config)
    assert (str(trial), trial.storage_dirname) == (f"named_{trial.trial_id}", f"dir_{trial.trial_id}")
    assert experiment.trial_factory({"x": 7}, trial_id="given").trial_id == "given"
