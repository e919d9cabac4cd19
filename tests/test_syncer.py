"""tune.SyncConfig (``ray.tune.syncer``): Ray Tune's fields and defaults, clear errors for
bad values, kept by RunConfig and restored from tuner.msgpack as a SyncConfig."""
import pytest

import fasttune as tune
from fasttune.impl._tuner_spec import load_tuner_spec, save_tuner_spec
from fasttune.syncer import SyncConfig


def test_the_fields_and_defaults_are_ray_tunes():
    config = SyncConfig()
    assert (config.sync_period, config.sync_timeout, config.sync_artifacts,
            config.sync_artifacts_on_checkpoint) == (300, 1800, False, True)
    assert tune.SyncConfig is SyncConfig
    assert tune.RunConfig().sync_config == SyncConfig()


@pytest.mark.parametrize("kwargs, error, words", [
    ({"sync_period": -1}, ValueError, "sync_period=-1"),
    ({"sync_period": "5m"}, ValueError, "sync_period='5m'"),
    ({"sync_period": True}, ValueError, "sync_period=True"),
    ({"sync_timeout": 0}, ValueError, "sync_timeout=0"),
    ({"sync_timeout": float("inf")}, ValueError, "sync_timeout=inf"),
    ({"sync_artifacts": 1}, TypeError, "sync_artifacts must be True or False"),
    ({"sync_artifacts_on_checkpoint": None}, TypeError, "sync_artifacts_on_checkpoint must be True or False"),
])
def test_a_bad_value_is_a_clear_error(kwargs, error, words):
    with pytest.raises(error, match=words.replace("(", r"\(").replace("[", r"\[")):
        SyncConfig(**kwargs)


def test_run_config_keeps_it_and_refuses_anything_else():
    config = SyncConfig(sync_period=0, sync_artifacts=True)
    assert tune.RunConfig(sync_config=config).sync_config is config
    with pytest.raises(TypeError, match="sync_config must be a tune.SyncConfig"):
        tune.RunConfig(sync_config={"sync_period": 60})


def test_tune_run_refuses_a_sync_config_of_another_type(tmp_path):
    with pytest.raises(TypeError, match=r"tune.run\(sync_config=...\) needs a tune.SyncConfig"):
        tune.run(lambda config: None, storage_path=str(tmp_path), sync_config={"sync_period": 1})


def test_it_travels_through_tuner_msgpack_as_a_sync_config_not_a_pickle(tmp_path):
    run_config = tune.RunConfig(name="exp", storage_path=str(tmp_path),
                                sync_config=SyncConfig(sync_period=30, sync_artifacts=True))
    assert save_tuner_spec(str(tmp_path / "exp"), "train", {}, tune.TuneConfig(), run_config)
    saved = load_tuner_spec(str(tmp_path / "exp"))
    assert saved.run_config["sync_config"] == SyncConfig(sync_period=30, sync_artifacts=True)
    assert not [name for name in saved.unpickled if "sync_config" in name]
