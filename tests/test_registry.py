"""The trainable / environment registry."""
import pytest

import fasttune
from fasttune import registry
from fasttune.error import TuneError


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch):
    reg = registry._Registry()
    monkeypatch.setattr(registry, "_global_registry", reg)
    return reg


def train(config):
    pass


def make_env(env_config):
    return ("env", env_config)


def test_register_and_get_trainable():
    fasttune.register_trainable("my_train", train)
    assert registry.get_trainable_cls("my_train") is train
    fasttune.register_trainable("my_train", make_env)  # re-registering replaces
    assert registry.get_trainable_cls("my_train") is make_env


def test_register_class_trainable():
    class MyTrainable:
        pass

    registry.register_trainable("cls", MyTrainable)
    assert registry.get_trainable_cls("cls") is MyTrainable


def test_register_and_get_env():
    fasttune.register_env("CartPoleish", make_env)
    assert registry.get_env_creator("CartPoleish")({"a": 1}) == ("env", {"a": 1})
    assert registry.env_creators() == {"CartPoleish": make_env}
    with pytest.raises(TuneError, match="Unknown trainable 'CartPoleish'"):
        registry.get_trainable_cls("CartPoleish")  # categories are separate


def test_unknown_trainable_lists_registered_and_fix():
    registry.register_trainable("beta", train)
    registry.register_trainable("alpha", train)
    with pytest.raises(TuneError) as info:
        registry.get_trainable_cls("gamma")
    msg = str(info.value)
    assert "'gamma'" in msg
    assert "tune.register_trainable('gamma', fn)" in msg
    assert "['alpha', 'beta']" in msg


def test_unknown_with_nothing_registered_says_none():
    with pytest.raises(TuneError, match="Registered: none"):
        registry.get_trainable_cls("x")


def test_unknown_env_names_the_fix():
    registry.register_env("known", make_env)
    with pytest.raises(TuneError) as info:
        registry.get_env_creator("missing")
    msg = str(info.value)
    assert "environment 'missing'" in msg
    assert "tune.register_env('missing', creator)" in msg
    assert "['known']" in msg


@pytest.mark.parametrize("name", ["", None, 3])
@pytest.mark.parametrize("register", [registry.register_trainable, registry.register_env])
def test_bad_names_raise_type_error(register, name):
    with pytest.raises(TypeError, match="non-empty string name"):
        register(name, train)


@pytest.mark.parametrize("register", [registry.register_trainable, registry.register_env])
def test_non_callable_raises_type_error(register):
    with pytest.raises(TypeError, match="'x'"):
        register("x", {"not": "callable"})
    assert not registry._global_registry.contains(
        registry.TRAINABLE_CLASS, "x"
    ) and not registry._global_registry.contains(registry.ENV_CREATOR, "x")


def test_unknown_category_refused(fresh_registry):
    with pytest.raises(TuneError, match="category"):
        fresh_registry.register("datasets", "x", train)


def test_install_env_creators():
    registry.register_env("old", make_env)
    other = lambda cfg: cfg  # noqa: E731
    registry.install_env_creators({"new": other, "old": other})
    assert registry.get_env_creator("new") is other
    assert registry.get_env_creator("old") is other
    registry.install_env_creators(None)
    registry.install_env_creators({})
    assert set(registry.env_creators()) == {"new", "old"}


def test_install_env_creators_round_trip_from_driver_snapshot(monkeypatch):
    registry.register_env("e1", make_env)
    snapshot = registry.env_creators()
    monkeypatch.setattr(registry, "_global_registry", registry._Registry())  # "the worker"
    with pytest.raises(TuneError, match="Unknown environment 'e1'"):
        registry.get_env_creator("e1")
    registry.install_env_creators(snapshot)
    assert registry.get_env_creator("e1") is make_env


def test_items_is_a_copy(fresh_registry):
    registry.register_env("e", make_env)
    registry.env_creators()["injected"] = make_env
    assert not fresh_registry.contains(registry.ENV_CREATOR, "injected")


def test_get_trainable_cls_takes_ray_tunes_parameter_name():
    def my_trainable_for_the_name(config):
        pass

    fasttune.register_trainable("by_keyword", my_trainable_for_the_name)
    assert registry.get_trainable_cls(trainable_name="by_keyword") is my_trainable_for_the_name
