"""Class trainables (fasttune.Trainable) on the worker protocol, driven in-process (no Ray)."""
import os
import pickle

import pytest
import ray.cloudpickle as cloudpickle

import fasttune as tune
from fasttune.execution._worker import TrialWorker
from fasttune_testing import commands as _commands, install, results as _results, run_until as _run_until, spec
from fasttune.trainable.trainable import DICT_CHECKPOINT_FILE

CLEANED = []  # (trial_id, total) of instances whose cleanup() ran


def _install(cls, name="cls"):
    return install(cls, name)


def _spec(trial_id, trial_dir=None, **extra):
    return spec(trial_id, "cls", trial_dir, **extra)


def _checkpoint_marks(events):
    """{result index: checkpoint dir} as attached to results, plus late checkpoints."""
    marks, late, offset = {}, [], 0
    for event in events:
        if event[0] == "results":
            for index, name in event[4].items():
                marks[offset + index] = name
            offset += len(event[2])
        elif event[0] == "checkpoint":
            late.append((offset, event[2]))
    return marks, late


class Counter(tune.Trainable):
    """Adds config["inc"] per step; checkpoints its total as a dict."""

    def setup(self, config):
        self.total = config.get("start", 0)
        self.setups = getattr(self, "setups", 0) + 1
        self.resets = 0
        self.loaded = None

    def step(self):
        self.total += self.config["inc"]
        return {"total": self.total, "iteration_seen": self.iteration, "setups": self.setups,
                "resets": self.resets, "loaded": self.loaded, "trial": self.trial_id,
                "done": self.total >= self.config.get("until", 10 ** 9)}

    def save_checkpoint(self, checkpoint_dir):
        return {"total": self.total}

    def load_checkpoint(self, checkpoint):
        self.loaded = type(checkpoint).__name__
        self.total = checkpoint["total"]

    def cleanup(self):
        CLEANED.append((self.trial_id, self.total))


class Resettable(Counter):
    def reset_config(self, new_config):
        self.total = new_config.get("start", 0)
        self.resets += 1
        return True


class FileCounter(Counter):
    """Saves into files (save_checkpoint returns None): load_checkpoint gets the directory."""

    def save_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "total"), "w") as f:
            f.write(str(self.total))

    def load_checkpoint(self, checkpoint):
        self.loaded = type(checkpoint).__name__
        with open(os.path.join(checkpoint, "total")) as f:
            self.total = int(f.read())


class FailsSecondSave(Counter):
    def save_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "partial"), "w") as f:
            f.write(str(self.total))
        if self.iteration >= 4:
            raise OSError("disk full on purpose")
        return {"total": self.total}


def test_steps_are_reported_in_order_and_done_ends_the_trial():
    worker = TrialWorker()
    events = _run_until(worker, _commands(_install(Counter), ["start", _spec("t1", config={"inc": 2, "until": 10})]))
    results = _results(events)
    assert [r["total"] for r in results] == [2, 4, 6, 8, 10]
    assert [r["iteration_seen"] for r in results] == [0, 1, 2, 3, 4]  # iteration before the step
    assert all(r["trial"] == "t1" and r["setups"] == 1 for r in results)
    assert events[0][0] == "started" and events[-1] == ["stopped", "t1"]


def test_stop_dict_and_decisions_apply_to_steps():
    worker = TrialWorker()
    events = _run_until(worker, _commands(_install(Counter), ["start", _spec("t1", config={"inc": 1},
                                                                              stop={"training_iteration": 4})]))
    assert [r["total"] for r in _results(events)] == [1, 2, 3, 4]
    seen = []

    def answer(event):
        seen.append(event[2])
        return ["stop" if event[2] == 3 else "continue", event[1]]

    events = _run_until(worker, _commands(["start", _spec("t2", config={"inc": 1}, decide=["every", 1])]),
                        answer=answer)
    assert seen == [1, 2, 3] and [r["total"] for r in _results(events, "t2")] == [1, 2, 3]
    assert events[-1] == ["stopped", "t2"]


def test_checkpoint_frequency_saves_dicts_and_restore_continues_the_iteration(tmp_path):
    trial_dir = tmp_path / "trial"
    worker = TrialWorker()
    spec = _spec("t1", str(trial_dir), config={"inc": 1}, stop={"training_iteration": 7}, checkpoint_frequency=3)
    events = _run_until(worker, _commands(_install(Counter), ["start", spec]))
    marks, late = _checkpoint_marks(events)
    assert marks == {2: "checkpoint_000000", 5: "checkpoint_000001"} and late == []
    with open(trial_dir / "checkpoint_000001" / DICT_CHECKPOINT_FILE, "rb") as f:
        assert pickle.load(f) == {"total": 6}

    spec = _spec("t1", str(trial_dir), config={"inc": 1}, stop={"training_iteration": 9},
                 restore=str(trial_dir / "checkpoint_000001"), iteration=6, ckpt_index=2)
    events = _run_until(TrialWorker(), _commands(_install(Counter), ["start", spec]))
    results = _results(events)
    assert [r["total"] for r in results] == [7, 8, 9]
    assert [r["iteration_seen"] for r in results] == [6, 7, 8]
    assert results[0]["loaded"] == "dict" and results[0]["setups"] == 1


def test_checkpoint_at_end_after_done_and_after_a_stop_dict(tmp_path):
    worker = TrialWorker()
    spec = _spec("a", str(tmp_path / "a"), config={"inc": 1, "until": 5}, checkpoint_at_end=True)
    events = _run_until(worker, _commands(_install(Counter), ["start", spec]))
    marks, late = _checkpoint_marks(events)
    assert marks == {4: "checkpoint_000000"} and late == []  # on the done result itself

    spec = _spec("b", str(tmp_path / "b"), config={"inc": 1}, stop={"total": 4}, checkpoint_at_end=True,
                 checkpoint_frequency=2)
    events = _run_until(worker, _commands(["start", spec]))
    marks, late = _checkpoint_marks(events)
    assert marks == {1: "checkpoint_000000", 3: "checkpoint_000001"} and late == []  # 4 was saved already

    spec = _spec("c", str(tmp_path / "c"), config={"inc": 1}, stop={"total": 3}, checkpoint_at_end=True)
    events = _run_until(worker, _commands(["start", spec]))
    marks, late = _checkpoint_marks(events)
    assert marks == {} and late == [(3, "checkpoint_000000")]  # after the last result, before the end
    assert [e[0] for e in events][-2:] == ["checkpoint", "stopped"]
    with open(tmp_path / "c" / "checkpoint_000000" / DICT_CHECKPOINT_FILE, "rb") as f:
        assert pickle.load(f) == {"total": 3}


def test_pause_at_a_decision_point_saves_then_ends_paused_and_resumes_from_files(tmp_path):
    trial_dir = tmp_path / "trial"
    worker = TrialWorker()
    spec = _spec("t1", str(trial_dir), config={"inc": 10}, decide=["at", [3]])
    events = _run_until(worker, _commands(_install(FileCounter), ["start", spec]),
                        answer=lambda e: ["pause", e[1]])
    assert [r["total"] for r in _results(events)] == [10, 20, 30]
    assert [e[0] for e in events][-2:] == ["checkpoint", "paused"]
    assert (trial_dir / "checkpoint_000000" / "total").read_text() == "30"

    spec = _spec("t1", str(trial_dir), config={"inc": 10}, stop={"training_iteration": 5},
                 restore=str(trial_dir / "checkpoint_000000"), iteration=3, ckpt_index=1)
    events = _run_until(worker, _commands(["start", spec]))
    results = _results(events)
    assert [r["total"] for r in results] == [40, 50]
    assert results[0]["loaded"] == "str" and [r["iteration_seen"] for r in results] == [3, 4]


def test_a_pause_without_checkpoint_saves_nothing_and_ends_paused(tmp_path):
    # TrialRunner.pause_trial(trial, should_checkpoint=False), as Ray Tune's: the trial
    # resumes from its latest checkpoint, so the worker saves none when pausing it.
    trial_dir = tmp_path / "trial"
    worker = TrialWorker()
    spec = _spec("t1", str(trial_dir), config={"inc": 10}, decide=["at", [3]])
    events = _run_until(worker, _commands(_install(FileCounter), ["start", spec]),
                        answer=lambda e: ["pause", e[1], False])
    assert [r["total"] for r in _results(events)] == [10, 20, 30]
    assert [e[0] for e in events][-2:] == ["decide", "paused"]
    assert not trial_dir.exists() or not any(p.name.startswith("checkpoint_") for p in trial_dir.iterdir())


def test_failing_save_checkpoint_is_a_clear_error_and_keeps_the_previous_checkpoint(tmp_path):
    trial_dir = tmp_path / "trial"
    worker = TrialWorker()
    spec = _spec("t1", str(trial_dir), config={"inc": 1}, checkpoint_frequency=2)
    events = _run_until(worker, _commands(_install(FailsSecondSave), ["start", spec]))
    kind, _, text, blob = events[-1]
    assert kind == "error"
    assert "FailsSecondSave.save_checkpoint() raised OSError: disk full on purpose" in text
    assert isinstance(cloudpickle.loads(blob), tune.TuneError)
    marks, _ = _checkpoint_marks(events)
    assert marks == {1: "checkpoint_000000"}
    assert [r["total"] for r in _results(events)] == [1, 2, 3]  # iteration 4 was never reported
    assert sorted(os.listdir(trial_dir)) == ["checkpoint_000000"]  # no partial directory left
    with open(trial_dir / "checkpoint_000000" / DICT_CHECKPOINT_FILE, "rb") as f:
        assert pickle.load(f) == {"total": 2}


def test_reset_config_reuses_the_live_instance():
    CLEANED.clear()
    worker = TrialWorker()
    events = _run_until(
        worker,
        _commands(_install(Resettable), ["start", _spec("a", config={"inc": 1, "until": 2})],
                  ["start", _spec("b", config={"inc": 5, "until": 10, "start": 100})]),
        expected_ends=2,
    )
    a, b = _results(events, "a"), _results(events, "b")
    assert [r["total"] for r in a] == [1, 2]
    assert [r["total"] for r in b] == [105]  # reset_config took the new config, done at once
    assert b[0]["setups"] == 1 and b[0]["resets"] == 1 and b[0]["trial"] == "b"
    assert b[0]["iteration_seen"] == 0
    assert CLEANED == []  # still alive, kept for the next trial
    assert worker.release() is True
    assert CLEANED == [("b", 105)]


def test_without_reset_config_a_fresh_instance_is_built_and_the_old_one_cleaned_up():
    CLEANED.clear()
    worker = TrialWorker()
    events = _run_until(
        worker,
        _commands(_install(Counter), ["start", _spec("a", config={"inc": 1, "until": 2})],
                  ["start", _spec("b", config={"inc": 5, "until": 5})]),
        expected_ends=2,
    )
    b = _results(events, "b")
    assert [r["total"] for r in b] == [5] and b[0]["resets"] == 0 and b[0]["trial"] == "b"
    assert CLEANED == [("a", 2)]
    events = _run_until(worker, _commands(["start", _spec("c", config={"inc": 1, "until": 1}, reuse_actors=False)]))
    assert CLEANED == [("a", 2), ("b", 5), ("c", 1)]  # no reuse: cleaned up when it ends


def test_an_erroring_step_cleans_up_and_bad_results_name_the_class():
    class Boom(Counter):
        def step(self):
            raise ValueError("step failed on purpose")

    class NotADict(Counter):
        def step(self):
            return 3.0

    class Reports(Counter):
        def step(self):
            tune.report({"x": 1})

    CLEANED.clear()
    worker = TrialWorker()
    events = _run_until(worker, _commands(_install(Boom), ["start", _spec("a", config={"inc": 1})]))
    assert events[-1][0] == "error" and "step failed on purpose" in events[-1][2]
    assert CLEANED == [("a", 0)]
    events = _run_until(worker, _commands(_install(NotADict, "nd"), ["start", dict(_spec("b"), trainable="nd")]))
    assert events[-1][0] == "error" and "NotADict.step() must return a dict" in events[-1][2]
    events = _run_until(worker, _commands(_install(Reports, "rp"), ["start", dict(_spec("c"), trainable="rp")]))
    assert events[-1][0] == "error" and "inside the class trainable Reports" in events[-1][2]


def test_trainable_used_directly():
    c = Counter({"inc": 3})
    assert c.config == {"inc": 3} and c.iteration == 0 and c.trial_id == "default"
    assert os.path.isdir(c.logdir)
    result = c.train()
    assert result["total"] == 3 and result["training_iteration"] == 1 and c.training_iteration == 1
    path = c.save()
    c.train()
    c.restore(path)
    assert c.total == 3 and c.loaded == "dict"
    assert tune.Trainable.default_resource_request({}) is None
    assert tune.Trainable({}).reset_config({"x": 1}) is False
    with pytest.raises(NotImplementedError, match="must override step"):
        tune.Trainable({}).step()
    from fasttune.trainable import Trainable

    assert Trainable is tune.Trainable and "Trainable" in tune.__all__
