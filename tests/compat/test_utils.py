"""fasttune.utils, at ray.tune.utils's paths: the helpers and the mock trainable that Ray
Tune's examples and tutorials import, working with fasttune's trainables."""
import json
import os
import tempfile
import threading

import pytest

import fasttune as tune
from fasttune.error import TuneError
from fasttune.utils import (
    UtilMonitor,
    _detect_config_single,
    date_str,
    deep_update,
    diagnose_serialization,
    flatten_dict,
    merge_dicts,
    unflattened_lookup,
    validate_save_restore,
    wait_for_gpu,
    warn_if_slow,
)
from fasttune.utils.log import Verbosity
from fasttune.utils.mock_trainable import MOCK_ERROR_KEY, MOCK_TRAINABLE_NAME, MyTrainableClass, register_mock_trainable
from fasttune.utils.util import validate_warmstart


def test_validate_save_restore_passes_for_class_and_function_trainables(ray_session):
    # Defined here so the actors get them by value (they cannot import this test module).
    class Resumable(tune.Trainable):
        def setup(self, config):
            self.position = 0

        def step(self):
            self.position += self.config["speed"]
            return {"position": self.position}

        def save_checkpoint(self, checkpoint_dir):
            return {"position": self.position}

        def load_checkpoint(self, checkpoint):
            self.position = checkpoint["position"]

    def train(config):
        start = 0
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as directory, open(os.path.join(directory, "s")) as f:
                start = int(f.read())
        for step in range(start, 10):
            with tempfile.TemporaryDirectory() as directory:
                with open(os.path.join(directory, "s"), "w") as f:
                    f.write(str(step + 1))
                tune.report({"step": step}, checkpoint=tune.Checkpoint.from_directory(directory))

    assert validate_save_restore(Resumable, config={"speed": 2}) is True
    assert validate_save_restore(MyTrainableClass, config={"width": 2}) is True
    assert validate_save_restore(train) is True


def test_validate_save_restore_catches_a_trainable_that_does_not_resume(ray_session):
    class Forgetful(tune.Trainable):
        def step(self):
            return {"training_iteration": 1}  # always reports iteration 1

    with pytest.raises(AssertionError, match="not 4"):
        validate_save_restore(Forgetful)


def test_validate_save_restore_needs_ray(monkeypatch):
    import ray

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    with pytest.raises(TuneError, match="call ray.init"):
        validate_save_restore(MyTrainableClass)


def test_mock_trainable_curve_checkpoint_and_errors():
    import math

    trainable = MyTrainableClass({"width": 4, "height": 3})
    rewards = [trainable.train()["episode_reward_mean"] for _ in range(3)]
    assert rewards == [3 * math.tanh(t / 4) for t in (1, 2, 3)]
    saved = trainable.save()
    with open(os.path.join(saved, "checkpoint")) as f:
        assert json.load(f) == {"timestep": 3}
    failing = MyTrainableClass({MOCK_ERROR_KEY: True})
    failing.train()  # the first step always succeeds
    with pytest.raises(RuntimeError, match="Failing on purpose"):
        failing.train()
    failing.restore(saved)
    assert failing.train()["episode_reward_mean"] == math.tanh(4)  # restored: no longer fails
    register_mock_trainable()
    from fasttune.registry import get_trainable_cls

    assert get_trainable_cls(MOCK_TRAINABLE_NAME) is MyTrainableClass


def test_mock_trainable_in_a_sweep(ray_session, storage):
    grid = tune.Tuner(
        MyTrainableClass,
        param_space={"width": tune.grid_search([1, 10])},
        tune_config=tune.TuneConfig(metric="episode_reward_mean", mode="max"),
        run_config=tune.RunConfig(name="mock", storage_path=storage, stop={"training_iteration": 2}, verbose=0),
    ).fit()
    assert grid.get_best_result().config["width"] == 1
    assert sorted(r.metrics["training_iteration"] for r in grid) == [2, 2]


def test_dict_helpers_behave_as_ray_tunes():
    from ray.tune import utils as ray_utils

    nested = {"a": {"b": 1, "c": [2, {"d": 3}], "e": {}}, "f": 4}
    for flatten_list in (False, True):
        ours = flatten_dict(nested, flatten_list=flatten_list)
        assert list(ours.items()) == list(ray_utils.flatten_dict(nested, flatten_list=flatten_list).items())
    with pytest.raises(ValueError, match="holds the delimiter"):
        flatten_dict({"a/b": 1}, prevent_delimiter=True)
    assert merge_dicts({"a": {"x": 1}}, {"a": {"y": 2}}) == ray_utils.merge_dicts({"a": {"x": 1}}, {"a": {"y": 2}})
    assert deep_update({"a": {"x": 1}}, {"a": {"x": 2}}) == {"a": {"x": 2}}
    with pytest.raises(KeyError, match="Unknown config parameter 'b'"):
        deep_update({"a": 1}, {"b": 2})
    assert deep_update({"a": {"x": 1}}, {"a": {"y": 2}}, allow_new_subkey_list=["a"]) == {"a": {"x": 1, "y": 2}}
    assert deep_update({"m": {"type": "A", "k": 1}}, {"m": {"type": "B"}}, True,
                       override_all_if_type_changes=["m"]) == {"m": {"type": "B"}}
    assert deep_update({"m": {"k": 1}}, {"m": {"j": 2}}, True, override_all_key_list=["m"]) == {"m": {"j": 2}}
    assert unflattened_lookup("a/c/1/d", nested) == 3 and unflattened_lookup("a/zz", nested, default=0) == 0
    with pytest.raises(KeyError):
        unflattened_lookup("a/zz", nested)
    assert len(date_str()) == len("2024-01-31_13-05-09")


def test_small_helpers():
    assert _detect_config_single(lambda config: None) is True
    assert _detect_config_single(lambda: None) is False
    with warn_if_slow("nothing", threshold=3600) as timer:
        pass
    assert timer.too_slow is False
    monitor = UtilMonitor(start=False)
    assert monitor.get_data() == {}  # not started: no readings
    assert tune.RunConfig(verbose=Verbosity.V2_TRIAL_NORM).verbose == 2 and int(Verbosity.V0_MINIMAL) == 0
    validate_warmstart(["a"], [{"a": 1}], [0.5])
    with pytest.raises(TypeError, match="must be a dict or a list"):
        validate_warmstart(["a"], [3], None)
    with pytest.raises(ValueError, match="has 2 values for the 1 parameters"):
        validate_warmstart(["a"], [[1, 2]], None)


def test_diagnose_serialization_names_the_culprit(capsys):
    lock = threading.Lock()

    def uses_a_lock(config):
        with lock:
            pass

    assert diagnose_serialization(lambda config: config) is True
    assert diagnose_serialization(uses_a_lock) == {"lock"}
    assert "FAILED" in capsys.readouterr().out


def test_wait_for_gpu_without_gputil_says_what_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "GPUtil", None)  # as where it is not installed
    with pytest.raises(ImportError, match="pip install gputil"):
        wait_for_gpu(0)
