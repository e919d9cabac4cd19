import os
import pathlib

import pytest

from fasttune.config import CheckpointConfig, FailureConfig, RunConfig
from fasttune.error import TuneError


# -- CheckpointConfig ------------------------------------------------------------------

def test_checkpoint_config_defaults():
    c = CheckpointConfig()
    assert c.num_to_keep is None
    assert c.checkpoint_score_attribute is None
    assert c.checkpoint_score_order == "max"
    assert c.checkpoint_frequency == 0
    assert c.checkpoint_at_end is None


@pytest.mark.parametrize("n", [0, -1, 1.5, "2", True])
def test_num_to_keep_invalid(n):
    with pytest.raises(ValueError, match=r"num_to_keep=.*None.*>= 1"):
        CheckpointConfig(num_to_keep=n)


def test_num_to_keep_valid():
    assert CheckpointConfig(num_to_keep=1).num_to_keep == 1


def test_score_order():
    assert CheckpointConfig(checkpoint_score_order="min").checkpoint_score_order == "min"
    with pytest.raises(ValueError, match=r"checkpoint_score_order='best'.*'max' or 'min'"):
        CheckpointConfig(checkpoint_score_order="best")


def test_score_attribute_must_be_str():
    with pytest.raises(TypeError, match="checkpoint_score_attribute"):
        CheckpointConfig(checkpoint_score_attribute=5)


@pytest.mark.parametrize("freq", [-1, 2.5, None])
def test_frequency_invalid(freq):
    with pytest.raises(ValueError, match=r"checkpoint_frequency=.*>= 0"):
        CheckpointConfig(checkpoint_frequency=freq)


def test_checkpoint_at_end_must_be_bool():
    assert CheckpointConfig(checkpoint_at_end=True).checkpoint_at_end is True
    with pytest.raises(TypeError, match="checkpoint_at_end"):
        CheckpointConfig(checkpoint_at_end="yes")


# -- FailureConfig ---------------------------------------------------------------------

def test_failure_config_defaults():
    f = FailureConfig()
    assert f.max_failures == 0 and f.fail_fast is False


def test_max_failures_unlimited_and_positive():
    assert FailureConfig(max_failures=-1).max_failures == -1
    assert FailureConfig(max_failures=3).max_failures == 3


@pytest.mark.parametrize("n", [-2, 1.0, "3"])
def test_max_failures_invalid(n):
    with pytest.raises(ValueError, match=r"max_failures=.*-1 to retry without limit"):
        FailureConfig(max_failures=n)


@pytest.mark.parametrize("value", ["raise", "RAISE", "Raise"])
def test_fail_fast_raise_normalised(value):
    assert FailureConfig(fail_fast=value).fail_fast == "raise"


@pytest.mark.parametrize("value", ["yes", "", 1, None])
def test_fail_fast_invalid(value):
    with pytest.raises(ValueError, match=r"fail_fast=.*True, False or the string 'raise'"):
        FailureConfig(fail_fast=value)


def test_fail_fast_excludes_retries():
    with pytest.raises(ValueError, match="max_failures=0"):
        FailureConfig(fail_fast=True, max_failures=2)
    assert FailureConfig(fail_fast=True).fail_fast is True


# -- RunConfig -------------------------------------------------------------------------

def test_run_config_default_storage(monkeypatch, tmp_path):
    monkeypatch.delenv("FASTTUNE_STORAGE_PATH", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    rc = RunConfig()
    assert rc.storage_path == os.path.join(str(tmp_path), "fasttune_results")
    assert isinstance(rc.failure_config, FailureConfig)
    assert isinstance(rc.checkpoint_config, CheckpointConfig)
    assert rc.name is None and rc.stop is None and rc.callbacks is None
    assert rc.verbose is None and rc.log_to_file is False


def test_run_config_storage_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("FASTTUNE_STORAGE_PATH", str(tmp_path / "env_results"))
    assert RunConfig().storage_path == str(tmp_path / "env_results")
    # An explicit path wins over the environment.
    assert RunConfig(storage_path=str(tmp_path / "x")).storage_path == str(tmp_path / "x")


def test_run_config_storage_expanduser_and_abspath(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert RunConfig(storage_path="~/runs").storage_path == str(tmp_path / "home" / "runs")
    monkeypatch.chdir(tmp_path)
    assert RunConfig(storage_path="rel/dir").storage_path == str(tmp_path / "rel" / "dir")
    assert RunConfig(storage_path=pathlib.Path("p")).storage_path == str(tmp_path / "p")


def test_run_config_storage_rejects_bad_values():
    with pytest.raises(TuneError, match="not a storage location pyarrow.fs understands"):
        RunConfig(storage_path="nosuchscheme://bucket/x")
    with pytest.raises(TuneError, match="must be a pyarrow.fs.FileSystem"):
        RunConfig(storage_path="bucket/x", storage_filesystem=object())
    with pytest.raises(ValueError, match="needs a storage_path"):
        from pyarrow import fs

        RunConfig(storage_filesystem=fs.LocalFileSystem())
    with pytest.raises(TypeError, match="storage_path must be None, a str"):
        RunConfig(storage_path=5)


@pytest.mark.parametrize("name", ["", "a/b", ".."])
def test_run_config_bad_name(name):
    with pytest.raises(ValueError, match="path separators"):
        RunConfig(name=name)


def test_stop_accepts_dict_function_and_stopper():
    rc = RunConfig(stop={"training_iteration": 5})
    assert rc.stop == {"training_iteration": 5}

    def fn(trial_id, result):
        return result["loss"] < 0.1

    assert RunConfig(stop=fn).stop is fn

    class MyStopper:
        def __call__(self, trial_id, result):
            return False

        def stop_all(self):
            return True

    s = MyStopper()
    assert RunConfig(stop=s).stop is s


@pytest.mark.parametrize("stop", [5, "loss", [("loss", 1)]])
def test_stop_wrong_type_names_three_forms(stop):
    with pytest.raises(TypeError) as info:
        RunConfig(stop=stop)
    msg = str(info.value)
    assert "dict" in msg and "(trial_id, result) -> bool" in msg and "stop_all()" in msg


def test_stop_dict_keys_must_be_str():
    with pytest.raises(TypeError, match="stop dict keys"):
        RunConfig(stop={1: 2})


def test_callbacks():
    cb = object()
    assert RunConfig(callbacks=(cb,)).callbacks == [cb]
    with pytest.raises(TypeError, match=r"callbacks=\[cb\]"):
        RunConfig(callbacks=cb)


@pytest.mark.parametrize("verbose", [0, 1, 2, 3])
def test_verbose_valid(verbose):
    assert RunConfig(verbose=verbose).verbose == verbose


def test_verbose_as_ray_tune_takes_it_a_bool_or_a_verbosity_enum():
    import enum

    class Verbosity(enum.IntEnum):  # Ray Tune's ray.tune.utils.log.Verbosity, by value
        V0_MINIMAL = 0
        V3_TRIAL_DETAILS = 3

    assert RunConfig(verbose=False).verbose == 0 and type(RunConfig(verbose=False).verbose) is int
    assert RunConfig(verbose=True).verbose == 1
    assert RunConfig(verbose=Verbosity.V3_TRIAL_DETAILS).verbose == 3


@pytest.mark.parametrize("verbose", [-1, 4, "2", 1.0])
def test_verbose_invalid(verbose):
    with pytest.raises(ValueError, match=r"verbose=.*0 \(silent\) to 3"):
        RunConfig(verbose=verbose)


def test_sub_configs_kept_and_type_checked():
    fc, cc = FailureConfig(max_failures=2), CheckpointConfig(num_to_keep=1)
    rc = RunConfig(failure_config=fc, checkpoint_config=cc)
    assert rc.failure_config is fc and rc.checkpoint_config is cc
    with pytest.raises(TypeError, match="failure_config must be a FailureConfig"):
        RunConfig(failure_config={"max_failures": 2})
    with pytest.raises(TypeError, match="checkpoint_config must be a CheckpointConfig"):
        RunConfig(checkpoint_config={"num_to_keep": 1})


def test_log_to_file_forms():
    assert RunConfig(log_to_file=True).log_to_file is True
    assert RunConfig(log_to_file="out.log").log_to_file == "out.log"
    assert RunConfig(log_to_file=["o.log", "e.log"]).log_to_file == ("o.log", "e.log")
    for bad in (1, "", ("only-one",)):
        with pytest.raises(ValueError, match="log_to_file"):
            RunConfig(log_to_file=bad)


def test_run_config_fields_are_in_ray_tunes_order(tmp_path):
    failure, checkpoint = FailureConfig(max_failures=1), CheckpointConfig(num_to_keep=2)
    # name, storage_path, storage_filesystem, failure_config, checkpoint_config, sync_config,
    # verbose, stop, callbacks, progress_reporter, log_to_file
    rc = RunConfig("n", str(tmp_path), None, failure, checkpoint, None, 1, {"loss": 0.1}, [], None, True)
    assert (rc.name, rc.storage_path, rc.storage_filesystem) == ("n", str(tmp_path), None)
    assert rc.failure_config is failure and rc.checkpoint_config is checkpoint
    assert (rc.verbose, rc.stop, rc.callbacks, rc.log_to_file) == (1, {"loss": 0.1}, [], True)


def test_run_config_local_dir_is_refused_pointing_to_storage_path():
    assert RunConfig().local_dir is None
    with pytest.raises(DeprecationWarning, match=r"RunConfig\(local_dir='/tmp/r'\).*RunConfig\(storage_path=\.\.\.\)"):
        RunConfig(local_dir="/tmp/r")
