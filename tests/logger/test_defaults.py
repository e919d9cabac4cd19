"""The default loggers: added unless the user passed one of that type, or disabled."""
import glob
import os

import pytest

import fasttune as tune
from fasttune.logger import CSVLoggerCallback, JsonLoggerCallback, TBXLoggerCallback
from fasttune.logger import _defaults, tensorboardx as tbx_module
from fasttune.logger._defaults import with_default_loggers
from fasttune_testing import fit


@pytest.fixture(autouse=True)
def _defaults_enabled(monkeypatch):
    monkeypatch.delenv("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", raising=False)


def _types(callbacks):
    return [type(c) for c in callbacks]


def test_csv_json_and_tbx_are_added_after_the_users_callbacks():
    mine = tune.Callback()
    callbacks = with_default_loggers([mine])
    assert callbacks[0] is mine
    assert _types(callbacks[1:]) == [CSVLoggerCallback, JsonLoggerCallback, TBXLoggerCallback]
    assert _types(with_default_loggers(None)) == [CSVLoggerCallback, JsonLoggerCallback, TBXLoggerCallback]


def test_a_logger_of_that_type_the_user_passed_is_not_added_again():
    class MyCSV(CSVLoggerCallback):
        pass

    mine = MyCSV()
    callbacks = with_default_loggers([mine, JsonLoggerCallback()])
    assert _types(callbacks) == [MyCSV, JsonLoggerCallback, TBXLoggerCallback]
    assert callbacks[0] is mine


def test_the_env_var_adds_none(monkeypatch):
    monkeypatch.setenv("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    mine = tune.Callback()
    assert with_default_loggers([mine]) == [mine]
    assert with_default_loggers(None) == []
    monkeypatch.setenv("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "0")
    assert len(with_default_loggers(None)) == 3


def test_tbx_is_a_default_only_when_tensorboardx_is_installed(monkeypatch):
    monkeypatch.setattr(_defaults, "tensorboardx_available", lambda: False)
    assert _types(with_default_loggers(None)) == [CSVLoggerCallback, JsonLoggerCallback]


def test_asking_for_tbx_without_tensorboardx_names_the_install(monkeypatch):
    monkeypatch.setattr(tbx_module, "tensorboardx_available", lambda: False)
    with pytest.raises(ImportError, match=r"pip install tensorboardX"):
        TBXLoggerCallback()


def _two_results(config):
    tune.report({"loss": 2.0})
    tune.report({"loss": 1.0})


def _files(grid):
    (result,) = list(grid)
    names = os.listdir(result.path)
    return {n for n in names if not n.startswith("events.out.tfevents")}, glob.glob(
        os.path.join(result.path, "events.out.tfevents.*"))


def test_sweeps_write_the_default_files_and_the_env_var_leaves_only_result_json(ray_session, storage, monkeypatch):
    names, events = _files(fit(_two_results, storage, name="defaults"))
    assert {"result.json", "progress.csv", "params.json"} <= names and len(events) == 1

    monkeypatch.setenv("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    grid = fit(_two_results, storage, name="disabled")
    names, events = _files(grid)
    assert "result.json" in names and "progress.csv" not in names and not events
    # result.json stays: the grid, restores and ExperimentAnalysis read it.
    assert grid[0].metrics["loss"] == 1.0
    assert tune.ResultGrid.from_path(os.path.join(storage, "disabled"))[0].metrics["loss"] == 1.0


def test_a_users_csv_logger_alone_writes_progress_csv_without_tbx(ray_session, storage, monkeypatch):
    monkeypatch.setenv("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    names, events = _files(fit(_two_results, storage, name="csv_only", callbacks=[CSVLoggerCallback()]))
    assert {"result.json", "progress.csv"} <= names and not events


def test_ray_tune_callbacks_env_var_adds_one_of_each_named_class_after_the_users(monkeypatch):
    monkeypatch.setenv("RAY_TUNE_CALLBACKS", " fasttune.Callback, ,fasttune.logger.CSVLoggerCallback")
    mine = tune.Callback()
    callbacks = with_default_loggers([mine])
    assert callbacks[0] is mine
    assert _types(callbacks[1:]) == [tune.Callback, CSVLoggerCallback, JsonLoggerCallback, TBXLoggerCallback]


def test_ray_tune_callbacks_env_var_counts_when_default_loggers_are_disabled(monkeypatch):
    monkeypatch.setenv("RAY_TUNE_CALLBACKS", "fasttune.logger.JsonLoggerCallback")
    monkeypatch.setenv("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    assert _types(with_default_loggers(None)) == [JsonLoggerCallback]


@pytest.mark.parametrize("path, problem", [
    ("NoDots", "cannot be imported"),
    ("fasttune.NoSuchCallback", "cannot be imported"),
    ("no_such_module_xyz.Callback", "cannot be imported"),
    ("fasttune.Trainable", "is not a subclass of fasttune.Callback"),
])
def test_ray_tune_callbacks_env_var_names_a_path_that_is_not_a_callback_class(monkeypatch, path, problem):
    monkeypatch.setenv("RAY_TUNE_CALLBACKS", path)
    with pytest.raises(ValueError, match=f"RAY_TUNE_CALLBACKS names '{path}', which {problem}"):
        with_default_loggers(None)
