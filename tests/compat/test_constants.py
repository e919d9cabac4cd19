"""Ray Tune's module-level constants and small helpers, at Ray Tune's paths with Ray Tune's values
(the installed ``ray.tune`` is the oracle): ``result``, ``constants``, ``registry``, ``context``,
``search``'s message templates, ``logger.pretty_print`` and ``experiment.trial.ExportFormat``."""
import ast
import functools
import re
import string
from pathlib import Path

import numpy as np
import pytest
import ray.tune.constants
import ray.tune.logger
import ray.tune.registry
import ray.tune.result
import ray.tune.search

import fasttune
import fasttune.constants
import fasttune.context
import fasttune.registry
import fasttune.result
import fasttune.search
from fasttune.error import TuneError
from fasttune.experiment import _convert_to_experiment_list
from fasttune.experiment.trial import ExportFormat
from fasttune.logger import pretty_print
from fasttune.trainable import wrap_function

SOURCE = Path(fasttune.__file__).parent


def _upper_case_names(module):
    return sorted(name for name in dir(module) if re.fullmatch(r"[A-Z][A-Z0-9_]*", name))


@pytest.mark.parametrize("name", _upper_case_names(ray.tune.result))
def test_every_result_constant_has_ray_tunes_value(name):
    # Imported ones too (TRAINING_ITERATION, EXPR_*): scripts import them from ray.tune.result.
    assert getattr(fasttune.result, name) == getattr(ray.tune.result, name)


def test_the_trial_files_fasttune_writes_have_ray_tunes_names(tmp_path, ray_session):
    def train(config):
        fasttune.report({"loss": 1.0})
        raise ValueError("stop here")

    fasttune.Tuner(train, run_config=fasttune.RunConfig(storage_path=str(tmp_path), name="exp", verbose=0)).fit()
    (trial_dir,) = (tmp_path / "exp").glob("train_*")
    written = {path.name for path in trial_dir.iterdir()}
    expected = {ray.tune.result.EXPR_PARAM_FILE, ray.tune.result.EXPR_RESULT_FILE,
                ray.tune.result.EXPR_PROGRESS_FILE, ray.tune.result.EXPR_ERROR_FILE}
    assert expected <= written


@pytest.mark.parametrize("kind", ["function", "class"])
def test_each_result_has_the_auto_filled_keys_ray_tune_fills(kind, tmp_path, ray_session):
    # Ray Tune too leaves out the timesteps/episodes totals when a trainable reports no
    # timesteps_this_iter/episodes_this_iter: docs/compatibility.md says what differs when it does.
    def train(config):
        for step in range(2):
            fasttune.report({"loss": float(step)})

    class Train(fasttune.Trainable):
        def step(self):
            return {"loss": 1.0, "done": self.iteration >= 1}

    trainable = train if kind == "function" else Train
    grid = fasttune.Tuner(trainable, param_space={"a": 1},
                          run_config=fasttune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
    metrics = grid[0].metrics
    missing = set(fasttune.result.AUTO_RESULT_KEYS) - set(metrics)
    assert missing == {fasttune.result.TIMESTEPS_TOTAL, fasttune.result.EPISODES_TOTAL, "timesteps_since_restore"}
    assert metrics[fasttune.result.TRAINING_ITERATION] == 2
    assert metrics[fasttune.result.CONFIG_PREFIX] == {"a": 1}


def test_registry_categories_are_ray_tunes_less_rllibs_and_its_pickling_check():
    assert fasttune.registry.TRAINABLE_CLASS == ray.tune.registry.TRAINABLE_CLASS
    assert fasttune.registry.ENV_CREATOR == ray.tune.registry.ENV_CREATOR
    assert fasttune.registry.KNOWN_CATEGORIES == [
        c for c in ray.tune.registry.KNOWN_CATEGORIES if not c.startswith("rllib_") and c != ray.tune.registry.TEST]


class _CallableObject:
    def __call__(self, config):
        pass


def _train(config):
    pass


@pytest.mark.parametrize("trainable", [_train, lambda config: None, functools.partial(_train), _CallableObject(), 3,
                                       None],
                         ids=["function", "lambda", "partial", "callable object", "int", "None"])
def test_is_function_trainable_answers_as_ray_tune_for_objects(trainable):
    assert fasttune.registry.is_function_trainable(trainable) is ray.tune.registry.is_function_trainable(trainable)


def test_is_function_trainable_for_classes_and_registered_names(monkeypatch):
    monkeypatch.setattr(fasttune.registry, "_global_registry", fasttune.registry._Registry())
    assert fasttune.registry.is_function_trainable(wrap_function(_train)) is True
    assert fasttune.registry.is_function_trainable(fasttune.Trainable) is False
    assert fasttune.registry.is_function_trainable(_CallableObject) is False
    fasttune.register_trainable("registered_function", _train)
    assert fasttune.registry.is_function_trainable("registered_function") is True
    with pytest.raises(TuneError, match="Unknown trainable 'not_registered'"):
        fasttune.registry.is_function_trainable("not_registered")


def test_validate_trainable_passes_a_registered_name_and_names_an_unknown_one(monkeypatch):
    monkeypatch.setattr(fasttune.registry, "_global_registry", fasttune.registry._Registry())
    fasttune.register_trainable("known", _train)
    assert fasttune.registry.validate_trainable("known") is None
    with pytest.raises(TuneError, match="Unknown trainable 'unknown'"):
        fasttune.registry.validate_trainable("unknown")


def test_context_module_holds_the_same_objects_as_fasttune():
    assert fasttune.context.TuneContext is fasttune.TuneContext
    assert fasttune.context.get_context is fasttune.get_context


def _fields(template):
    return {field for _, field, _, _ in string.Formatter().parse(template) if field}


@pytest.mark.parametrize("name", ["UNRESOLVED_SEARCH_SPACE", "UNDEFINED_SEARCH_SPACE", "UNDEFINED_METRIC_MODE"])
def test_search_message_templates_take_ray_tunes_fields(name):
    ours, theirs = getattr(fasttune.search, name), getattr(ray.tune.search, name)
    assert _fields(ours) == _fields(theirs)
    message = ours.format(cls="MySearch", par="space", space="space", metric="loss", mode=None)
    assert "MySearch" in message and "{" not in message


RESULTS = [
    {"loss": 0.25, "training_iteration": 3, "config": {"lr": 0.1}, "hist_stats": {"h": [1]}, "gone": None},
    {"info": {"steps": [1, 2], "lrs": [1, 2, 3, 4], "nested": {"x": None}}, "name": "yes", "text": "a b"},
    {"np_float": np.float64(0.5), "np_int": np.int64(7), "array": np.arange(5), "flag": True, "empty": []},
]


@pytest.mark.parametrize("result", RESULTS)
def test_pretty_print_prints_as_ray_tune_does(result):
    assert pretty_print(result) == ray.tune.logger.pretty_print(result)
    assert pretty_print(result, exclude={"loss", "info"}) == ray.tune.logger.pretty_print(result, exclude={"loss", "info"})


def test_pretty_print_is_in_both_logger_modules():
    assert fasttune.logger.logger.pretty_print is pretty_print


def test_export_format_normalises_known_formats_and_names_an_unknown_one():
    formats = [" Checkpoint", "MODEL", "onnx", "h5 "]
    ExportFormat.validate(formats)
    assert formats == ["checkpoint", "model", "onnx", "h5"]
    with pytest.raises(TuneError, match="Unsupported export format 'pt'"):
        ExportFormat.validate(["pt"])


def test_convert_to_experiment_list_takes_one_or_a_list(tmp_path):
    experiment = fasttune.Experiment("exp", _train, storage_path=str(tmp_path))
    assert _convert_to_experiment_list(experiment) == [experiment]
    assert _convert_to_experiment_list([experiment, experiment]) == [experiment, experiment]
    with pytest.raises(TuneError, match="takes an Experiment"):
        _convert_to_experiment_list(3)


def _env_var_names_in_source():
    pattern = re.compile(r"(FASTTUNE|TUNE|RAY_TUNE)_[A-Z0-9_]+|RAY_CHDIR_TO_TRIAL_DIR")  # Ray Train's name
    names = set()
    for path in SOURCE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and pattern.fullmatch(node.value):
                names.add(node.value)
    return names


def test_tune_env_vars_names_every_environment_variable_fasttune_reads():
    assert _env_var_names_in_source() == fasttune.constants.TUNE_ENV_VARS
    assert fasttune.constants.RAY_TUNE_CALLBACKS_ENV_VAR == ray.tune.constants.RAY_TUNE_CALLBACKS_ENV_VAR
