"""Trainables used directly, as Ray Tune's unit tests and validate_save_restore use them:
``t = cls(config); t.train(); saved = t.save(); t.restore(saved); t.stop()``, for class
trainables and for functions made into one by ``wrap_function``."""
import json
import os
import pickle
import tempfile

import pytest

import fasttune as tune
from fasttune.error import TuneError
from fasttune.trainable import FunctionTrainable, Trainable, wrap_function
from fasttune.trainable.function_trainable import NULL_MARKER, TEMP_MARKER
from fasttune.trainable.trainable import SETUP_TIME_THRESHOLD, SavedCheckpoint, is_trainable_class


# ---- a function trainable ----------------------------------------------------------------

EVENTS = []


def counting_function(config):
    """Reports steps start..config["steps"]-1, each with a checkpoint holding its step."""
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            with open(os.path.join(directory, "step.json")) as f:
                start = json.load(f)["step"] + 1
    EVENTS.append(("start", start, config.get("tag")))
    try:
        for step in range(start, config["steps"]):
            # The directory is gone once report() returns: the trainable keeps a copy.
            with tempfile.TemporaryDirectory() as directory:
                with open(os.path.join(directory, "step.json"), "w") as f:
                    json.dump({"step": step}, f)
                tune.report({"step": step, "tag": config.get("tag")},
                            checkpoint=tune.Checkpoint.from_directory(directory))
    finally:
        EVENTS.append(("exit", config.get("tag")))


@pytest.fixture(autouse=True)
def _clear_events():
    EVENTS.clear()


def test_function_trainable_is_a_trainable_that_trains_one_report_at_a_time():
    cls = wrap_function(counting_function)
    assert issubclass(cls, Trainable) and issubclass(cls, FunctionTrainable)
    assert not is_trainable_class(cls)  # a sweep runs its function, it does not step it
    trainable = cls({"steps": 3, "tag": "a"})
    assert EVENTS == []  # nothing runs before the first train()
    first = trainable.train()
    assert (first["step"], first["training_iteration"], first["done"], first["should_checkpoint"]) == (0, 1, False, True)
    assert {"time_this_iter_s", "time_total_s", "timestamp", "date", "pid", "hostname", "node_ip",
            "trial_id", "config", "time_since_restore", "iterations_since_restore"} <= set(first)
    assert first["config"] == {"steps": 3, "tag": "a"} and first["pid"] == os.getpid()
    assert EVENTS == [("start", 0, "a")]  # waits in its report until the next train()
    assert [trainable.train()["step"] for _ in range(2)] == [1, 2]
    end = trainable.train()
    assert end["done"] is True and end["step"] == 2 and trainable.iteration == 3
    assert EVENTS == [("start", 0, "a"), ("exit", "a")]
    with pytest.raises(TuneError, match="already finished"):
        trainable.train()
    trainable.stop()


def test_function_trainable_save_and_restore_resume_the_function():
    cls = wrap_function(counting_function)
    trainable = cls({"steps": 5})
    for _ in range(3):
        trainable.train()
    saved = trainable.save()
    assert isinstance(saved, str) and os.path.isfile(os.path.join(saved, "step.json"))
    assert saved.metrics["training_iteration"] == 3
    trainable.stop()
    assert EVENTS[-1] == ("exit", None)  # stop() ends the function in the report it waits in

    restored = cls({"steps": 5})
    restored.restore(saved)
    result = restored.train()
    assert (result["step"], result["training_iteration"]) == (3, 4)
    restored.stop()


def test_function_trainable_restore_while_running_starts_the_function_again():
    trainable = wrap_function(counting_function)({"steps": 10})
    trainable.train()
    saved = trainable.save()
    trainable.train()
    trainable.train()
    trainable.restore(saved)
    assert trainable.train()["step"] == 1 and trainable.iteration == 2
    assert [e for e in EVENTS if e[0] == "start"] == [("start", 0, None), ("start", 1, None)]
    trainable.stop()


def test_function_trainable_save_without_a_reported_checkpoint_is_an_error():
    def no_checkpoints(config):
        tune.report({"x": 1})

    trainable = wrap_function(no_checkpoints)({})
    assert trainable.train()["x"] == 1
    assert "should_checkpoint" not in trainable._last_result
    with pytest.raises(TuneError, match="has no checkpoint to save"):
        trainable.save()
    trainable.stop()


def test_function_trainable_error_is_raised_by_train():
    def fails_second(config):
        tune.report({"x": 1})
        raise RuntimeError("second step fails")

    trainable = wrap_function(fails_second)({})
    trainable.train()
    with pytest.raises(RuntimeError, match="second step fails"):
        trainable.train()
    trainable.stop()


def test_function_trainable_reset_runs_the_function_with_the_new_config():
    trainable = wrap_function(counting_function)({"steps": 4, "tag": "old"})
    trainable.train()
    trainable.train()
    assert trainable.reset({"steps": 4, "tag": "new"}) is True
    assert trainable.iteration == 0 and trainable.config["tag"] == "new"
    result = trainable.train()
    assert (result["step"], result["tag"], result["training_iteration"]) == (0, "new", 1)
    assert EVENTS == [("start", 0, "old"), ("exit", "old"), ("start", 0, "new")]
    trainable.stop()


def test_function_trainable_members():
    trainable = wrap_function(counting_function)({"steps": 1})
    assert trainable.execute(lambda t: t.config["steps"]) == 1
    assert trainable.save_checkpoint() is None  # nothing reported yet
    assert trainable.get_config() == {"steps": 1}
    assert (NULL_MARKER, TEMP_MARKER) == (".null_marker", ".temp_marker")
    trainable.stop()  # never started: nothing to end
    assert EVENTS == []


# ---- class trainables ------------------------------------------------------------------


class Counter(Trainable):
    def setup(self, config):
        self.total = 0
        self.logged = []

    def step(self):
        self.total += self.config.get("inc", 1)
        return {"total": self.total, "done": self.total >= self.config.get("until", 10 ** 9),
                "should_checkpoint": self.total in self.config.get("checkpoint_at", ())}

    def save_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "total"), "w") as f:
            f.write(str(self.total))
        return checkpoint_dir  # Ray Tune accepts the directory itself back

    def load_checkpoint(self, checkpoint):
        with open(os.path.join(checkpoint, "total")) as f:
            self.total = int(f.read())

    def log_result(self, result):
        self.logged.append(result["training_iteration"])

    def reset_config(self, new_config):
        self.total = 0
        return True

    def _export_model(self, export_formats, export_dir):
        return {fmt: os.path.join(export_dir, fmt) for fmt in export_formats}


def test_restore_takes_the_iteration_from_what_save_returned():
    counter = Counter({"inc": 2})
    for _ in range(3):
        counter.train()
    saved = counter.save()
    assert isinstance(saved, SavedCheckpoint) and saved.metrics["training_iteration"] == 3
    assert pickle.loads(pickle.dumps(saved)).metrics == saved.metrics  # travels to another actor
    fresh = Counter({"inc": 2})
    fresh.restore(saved)
    result = fresh.train()
    assert (result["total"], result["training_iteration"], result["iterations_since_restore"]) == (8, 4, 1)
    assert fresh.get_state()["iteration"] == 4 and fresh.get_state()["last_result"] is fresh._last_result

    # A plain path or a Checkpoint carries no metrics: the count starts from 0, as in Ray Tune.
    for given in (str(saved), tune.Checkpoint.from_directory(str(saved))):
        other = Counter({"inc": 2})
        other.restore(checkpoint_path=given)
        assert other.total == 6 and other.iteration == 0


def test_restore_refuses_what_it_cannot_load(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Counter({}).restore(str(tmp_path / "missing"))
    gone = tmp_path / "gone"
    gone.mkdir()
    checkpoint = tune.Checkpoint.from_directory(str(gone))
    gone.rmdir()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Counter({}).restore(checkpoint)
    with pytest.raises(TypeError, match="restore\\(\\) takes what save\\(\\) returned"):
        Counter({}).restore(42)


def test_save_checkpoint_returning_another_path_is_an_error(tmp_path):
    class ReturnsFile(Counter):
        def save_checkpoint(self, checkpoint_dir):
            return os.path.join(checkpoint_dir, "total")

    with pytest.raises(TypeError, match="must return None or checkpoint_dir"):
        ReturnsFile({}).save(str(tmp_path / "c"))


def test_train_fills_the_automatic_fields_and_logs_the_result():
    counter = Counter({"inc": 1})
    result = counter.train()
    assert result["done"] is False and result["training_iteration"] == 1
    assert result["trial_id"] == "default" and result["config"] == {"inc": 1}
    assert counter.logged == [1]
    assert counter.get_current_ip_pid()[1] == os.getpid()
    debug = counter.get_auto_filled_metrics(debug_metrics_only=True)
    assert set(debug) == {"trial_id", "date", "timestamp", "pid", "hostname", "node_ip", "config"}
    assert counter.get_auto_filled_metrics(timestamp=123)["timestamp"] == 123


def test_train_counts_timesteps_and_episodes():
    class Steps(Trainable):
        def step(self):
            return {"timesteps_this_iter": 10, "episodes_this_iter": 2, "time_this_iter_s": 1.5}

    steps = Steps({})
    steps.train()
    result = steps.train()
    assert (result["timesteps_total"], result["episodes_total"], result["time_total_s"]) == (20, 4, 3.0)
    assert result["timesteps_since_restore"] == 20


def test_train_buffered_stops_at_length_done_and_checkpoint():
    assert [r["total"] for r in Counter({}).train_buffered(buffer_time_s=3600, max_buffer_length=3)] == [1, 2, 3]
    assert [r["total"] for r in Counter({"until": 2}).train_buffered(3600)] == [1, 2]
    assert [r["total"] for r in Counter({"checkpoint_at": (3,)}).train_buffered(3600)] == [1, 2, 3]
    assert len(Counter({}).train_buffered(buffer_time_s=0)) == 1  # at least one result


def test_reset_export_and_resources():
    counter = Counter({"inc": 1})
    counter.train()
    assert counter.reset({"inc": 5}) is True
    assert counter.iteration == 0 and counter.config == {"inc": 5} and counter.train()["total"] == 5
    plain = Trainable({"a": 1}, None)  # storage is the second positional parameter, as in Ray Tune
    assert plain.reset({"b": 2}) is False and plain.config == {"b": 2}
    assert counter.export_model("onnx") == {"onnx": os.path.join(counter.logdir, "onnx")}
    assert counter.export_model(["a", "b"], "/x") == {"a": "/x/a", "b": "/x/b"}
    assert Trainable.resource_help({}) == ""
    assert counter.trial_resources is None and counter.is_actor() is False
    assert SETUP_TIME_THRESHOLD == 10


def test_trainable_in_a_ray_actor_knows_it(ray_session):
    class InActor(Trainable):  # defined here: pickled by value, as the actor cannot import this module
        def step(self):
            return {}

    ray = ray_session
    actor = ray.remote(num_cpus=0)(InActor).remote(config={"inc": 1})
    assert ray.get(actor.is_actor.remote()) is True
    ip, pid = ray.get(actor.get_current_ip_pid.remote())
    assert pid != os.getpid() and ip == ray.util.get_node_ip_address()
    ray.kill(actor)
