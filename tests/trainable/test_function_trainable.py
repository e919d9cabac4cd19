"""Function trainables, the trial session, and tune.with_parameters / with_resources."""
import threading

import pytest

import fasttune as tune
from fasttune.checkpoint import Checkpoint
from fasttune.error import TuneError
from fasttune.execution.placement_groups import PlacementGroupFactory
from fasttune.trainable import FunctionTrainable, TuneContext, wrap_function
from fasttune.trainable.session import Session, get_session


class Sink:
    def __init__(self):
        self.reports = []

    def __call__(self, metrics, checkpoint):
        self.reports.append((metrics, checkpoint))


def run_trainable(fn, config=None, checkpoint=None, context=None):
    sink = Sink()
    context = context or TuneContext(trial_id="t_00001", trial_name="train_t_00001")
    trainable = wrap_function(fn)(config)
    returned = trainable.run(Session(context, sink, checkpoint))
    return returned, sink.reports


# ---- wrap_function --------------------------------------------------------------------


def test_wrap_function_naming():
    def my_train(config):
        pass

    cls = wrap_function(my_train)
    assert issubclass(cls, FunctionTrainable)
    assert cls.__name__ == cls._name == "my_train"
    assert cls.__module__ == __name__
    assert wrap_function(my_train, name="renamed")._name == "renamed"
    assert wrap_function(lambda config: None).__name__ == "<lambda>"
    assert wrap_function(cls) is cls


@pytest.mark.parametrize(
    "fn",
    [lambda: None, lambda config, data: None],
    ids=["zero", "two"],
)
def test_wrap_function_signature_check(fn):
    with pytest.raises(ValueError, match="with_parameters"):
        wrap_function(fn)


def test_wrap_function_accepts_optional_extras():
    def train(config, data=None, *args, verbose=False, **kwargs):
        return data

    assert wrap_function(train)({"a": 1}).run(Session(TuneContext(), Sink())) is None


def test_wrap_function_rejects_non_callable():
    with pytest.raises(TypeError, match="config dict"):
        wrap_function({"not": "callable"})


def test_wrap_function_rejects_required_keyword_only_argument():
    def train(config, *, data):
        pass

    with pytest.raises(ValueError, match="with_parameters"):
        wrap_function(train)


# ---- running a FunctionTrainable with a session ---------------------------------------


def test_run_reports_go_to_the_session_sink(tmp_path):
    ckpt = Checkpoint.from_directory(str(tmp_path))

    def train(config):
        for step in range(3):
            tune.report({"step": step, "lr": config["lr"]}, checkpoint=ckpt if step == 2 else None)
        return "finished"

    returned, reports = run_trainable(train, {"lr": 0.1})
    assert returned == "finished"
    assert reports == [
        ({"step": 0, "lr": 0.1}, None),
        ({"step": 1, "lr": 0.1}, None),
        ({"step": 2, "lr": 0.1}, ckpt),
    ]
    assert get_session() is None


def test_trainable_copies_config():
    config = {"lr": 0.1}
    trainable = wrap_function(lambda c: c.update(lr=5))(config)
    trainable.run(Session(TuneContext(), Sink()))
    assert config == {"lr": 0.1}
    assert wrap_function(lambda c: None)(None).config == {}


def test_session_cleared_after_trainable_raises():
    def train(config):
        tune.report({"x": 1})
        raise RuntimeError("boom")

    sink = Sink()
    with pytest.raises(RuntimeError, match="boom"):
        wrap_function(train)({}).run(Session(TuneContext(), sink))
    assert sink.reports == [({"x": 1}, None)]
    assert get_session() is None
    with pytest.raises(TuneError, match="called outside a fasttune trial"):
        tune.report({"x": 2})


def test_report_outside_a_session_raises():
    with pytest.raises(TuneError, match=r"tune\.report\(\) was called outside"):
        tune.report({"loss": 1.0})
    with pytest.raises(TuneError, match=r"tune\.get_checkpoint\(\)"):
        tune.get_checkpoint()


@pytest.mark.parametrize("bad", [1.0, [("loss", 1.0)], None])
def test_report_non_dict_raises_type_error(bad):
    def train(config):
        tune.report(bad)

    with pytest.raises(TypeError, match="dict of metrics"):
        run_trainable(train)


def test_report_rejects_non_checkpoint(tmp_path):
    def train(config):
        tune.report({"x": 1}, checkpoint=str(tmp_path))

    with pytest.raises(TypeError, match="Checkpoint.from_directory"):
        run_trainable(train)


def test_get_checkpoint_and_context_inside_a_trial(tmp_path):
    ckpt = Checkpoint.from_directory(str(tmp_path))
    context = TuneContext(trial_id="abc_00003", trial_name="n", trial_resources={"CPU": 2.0})
    seen = {}

    def train(config):
        seen["checkpoint"] = tune.get_checkpoint()
        seen["context"] = tune.get_context()

    run_trainable(train, checkpoint=ckpt, context=context)
    assert seen["checkpoint"] is ckpt
    assert seen["context"] is context
    assert seen["context"].get_trial_id() == "abc_00003"
    assert seen["context"].get_trial_resources() == {"CPU": 2.0}

    fresh = {}
    run_trainable(lambda config: fresh.setdefault("c", tune.get_checkpoint()))
    assert fresh["c"] is None


def test_get_context_outside_is_empty():
    ctx = tune.get_context()
    assert isinstance(ctx, TuneContext)
    assert ctx.get_trial_id() is None and ctx.get_trial_name() is None
    assert ctx.get_trial_dir() is None and ctx.get_experiment_name() is None
    assert ctx.get_trial_resources() == {}
    assert (ctx.get_world_rank(), ctx.get_local_rank(), ctx.get_world_size()) == (0, 0, 1)


def test_session_is_per_thread():
    other_thread = {}

    def train(config):
        t = threading.Thread(target=lambda: other_thread.setdefault("s", get_session()))
        t.start()
        t.join()
        tune.report({"ok": 1})

    _, reports = run_trainable(train)
    assert reports == [({"ok": 1}, None)]
    assert other_thread["s"] is None


# ---- with_parameters / with_resources --------------------------------------------------


@pytest.fixture
def no_ray(monkeypatch):
    import ray

    monkeypatch.setattr(ray, "is_initialized", lambda: False)


def test_with_parameters_binds_arguments(no_ray):
    data = list(range(1000))

    def train(config, data=None, scale=1):
        tune.report({"n": len(data) * scale, "same": data is data_ref})

    data_ref = data
    wrapped = tune.with_parameters(train, data=data, scale=2)
    assert wrapped.__name__ == "train"
    cls = wrap_function(wrapped)  # one-argument signature, so accepted
    _, reports = run_trainable(cls, {})
    assert reports == [({"n": 2000, "same": True}, None)]


def test_with_parameters_makes_two_arg_function_wrappable(no_ray):
    def train(config, data):
        return config["k"] + data

    with pytest.raises(ValueError, match="must take exactly one required argument"):
        wrap_function(train)
    cls = wrap_function(tune.with_parameters(train, data=10))
    assert cls.__name__ == "train"
    assert cls({"k": 1}).run(Session(TuneContext(), Sink())) == 11


def test_with_parameters_uses_object_store_when_ray_is_up(monkeypatch):
    import ray

    puts = []
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray, "put", lambda v: puts.append(v) or ("ref", len(puts) - 1))
    monkeypatch.setattr(ray, "get", lambda refs: [puts[i] for _, i in refs])
    wrapped = tune.with_parameters(lambda config, data, n: (data, n), data=[1, 2], n=3)
    assert puts == [[1, 2], 3]
    assert wrapped({}) == ([1, 2], 3)


def test_with_parameters_rejects_non_callable():
    with pytest.raises(TypeError, match="with_parameters needs a function, got int"):
        tune.with_parameters(42, data=1)


def test_with_resources_sets_resources():
    def train(config):
        return config["x"]

    heavy = tune.with_resources(train, {"cpu": 2, "gpu": 1})
    assert heavy._resources == {"cpu": 2, "gpu": 1}
    assert heavy({"x": 7}) == 7
    cls = wrap_function(heavy)
    assert cls.__name__ == "train"
    assert cls.default_resource_request({}) == {"cpu": 2, "gpu": 1}
    assert wrap_function(train).default_resource_request({}) is None

    pgf = PlacementGroupFactory([{"CPU": 1}, {"GPU": 1}])
    assert tune.with_resources(train, pgf)._resources is pgf
    fn = lambda config: {"cpu": config["n"]}  # noqa: E731
    assert tune.with_resources(train, fn)._resources is fn


@pytest.mark.parametrize("bad, exc", [({"cpu": -1}, ValueError), ({"gpu": "one"}, ValueError), (3, TypeError)])
def test_with_resources_validates_at_wrap_time(bad, exc):
    with pytest.raises(exc):
        tune.with_resources(lambda config: None, bad)


def test_with_resources_around_with_parameters(no_ray):
    def train(config, data):
        return data

    wrapped = tune.with_resources(tune.with_parameters(train, data="d"), {"cpu": 2})
    cls = wrap_function(wrapped)
    assert cls.default_resource_request({}) == {"cpu": 2}
    assert cls({}).run(Session(TuneContext(), Sink())) == "d"


def test_with_parameters_around_with_resources(no_ray):
    def train(config, data):
        return data

    wrapped = tune.with_parameters(tune.with_resources(train, {"cpu": 2}), data="d")
    assert wrapped._resources == {"cpu": 2}
    assert wrapped({}) == "d"


def test_tune_context_gives_a_one_worker_groups_ranks_and_no_metadata():
    context = TuneContext(trial_id="t")
    assert (context.get_node_rank(), context.get_local_world_size(), context.get_metadata()) == (0, 1, {})
