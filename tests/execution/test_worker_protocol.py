"""The worker side of the batched protocol, driven in-process (no Ray needed)."""
import os
import time

import msgpack
import numpy as np
import pytest
import ray.cloudpickle as cloudpickle

import fasttune as tune
from fasttune.execution import _worker, _worker_checkpoints
from fasttune.execution._worker import TrialWorker
from fasttune_testing import StandIn, commands as _commands, install, results as _results, run_until as _run_until
from fasttune_testing import spec


def _install(fn, name="fn"):
    return install(fn, name)


def _spec(trial_id, trial_dir=None, **extra):
    return spec(trial_id, "fn", trial_dir, **extra)


def test_results_arrive_in_order_then_done():
    def fn(config):
        for i in range(50):
            tune.report({"i": i, "x": config["x"]})

    worker = TrialWorker()
    events = _run_until(worker, _commands(_install(fn), ["start", _spec("t1", config={"x": 3})]))
    assert events[0][0] == "started" and events[0][1] == "t1"
    assert [r["i"] for r in _results(events)] == list(range(50))
    assert all(r["x"] == 3 for r in _results(events))
    assert events[-1] == ["done", "t1"]


def test_stop_dict_is_enforced_in_the_worker():
    def fn(config):
        for i in range(1000):
            tune.report({"i": i})

    worker = TrialWorker()
    spec = _spec("t1", stop={"training_iteration": 7})
    events = _run_until(worker, _commands(_install(fn), ["start", spec]))
    assert [r["i"] for r in _results(events)] == list(range(7))
    assert events[-1] == ["stopped", "t1"]


def test_stop_on_user_metric_and_on_done():
    def fn(config):
        for i in range(100):
            tune.report({"score": i, "done": i == config["last"]})

    worker = TrialWorker()
    events = _run_until(worker, _commands(_install(fn), ["start", _spec("a", stop={"score": 4}, config={"last": 50})]))
    assert [r["score"] for r in _results(events)] == [0, 1, 2, 3, 4]
    events = _run_until(worker, _commands(["start", _spec("b", config={"last": 2})]))
    assert [r["score"] for r in _results(events, "b")] == [0, 1, 2]
    assert events[-1] == ["stopped", "b"]


def test_decision_points_block_until_the_driver_answers():
    def fn(config):
        for i in range(10):
            tune.report({"i": i})

    worker = TrialWorker()
    seen = []

    def answer(event):
        seen.append(event[2])
        return ["stop" if event[2] == 6 else "continue", event[1]]

    spec = _spec("t1", decide=["at", [2, 4, 6, 8]])
    events = _run_until(worker, _commands(_install(fn), ["start", spec]), answer=answer)
    assert seen == [2, 4, 6]
    assert [r["i"] for r in _results(events)] == list(range(6))
    assert events[-1] == ["stopped", "t1"]
    # Every decision comes right after the result it is about: nothing ran ahead.
    order = [e[0] for e in events if e[0] in ("results", "decide")]
    assert order.count("decide") == 3


def _continue_at_every_decision(n_results, spec):
    """Run a trial that reports ``n_results`` times, answering each decision with
    "continue"; returns the iterations it waited at, and the events."""
    def fn(config):
        for i in range(n_results):
            tune.report({"i": i})

    seen = []

    def answer(event):
        seen.append(event[2])
        return ["continue", event[1]]

    events = _run_until(TrialWorker(), _commands(_install(fn), ["start", spec]), answer=answer)
    return seen, events


@pytest.mark.parametrize("wire", [["every", 4, 6, 18], ["at", [6, 10, 14, 18]]])
def test_a_bounded_progression_blocks_exactly_where_its_list_does(wire):
    seen, events = _continue_at_every_decision(25, _spec("t1", decide=wire))
    assert seen == [6, 10, 14, 18]
    assert [r["i"] for r in _results(events)] == list(range(25))
    assert events[-1] == ["done", "t1"]


def test_a_progression_counts_from_the_iteration_a_trial_resumes_at():
    # Resumed at iteration 100: its results are iterations 101..112.
    seen, _ = _continue_at_every_decision(12, _spec("t1", decide=["every", 4, 104, None], iteration=100))
    assert seen == [104, 108, 112]


@pytest.mark.parametrize("n", [1, 3, 4])
@pytest.mark.parametrize("first", [1, 2, 6])
@pytest.mark.parametrize("last", [None, 1, 5, 18, 19])
def test_the_decision_set_of_a_progression_is_its_list(n, first, last):
    from fasttune.schedulers import DecisionPoints

    points = DecisionPoints.every(n, start=first, until=last)
    expected = [i for i in range(first, 60, n) if last is None or i <= last]
    members = DecisionPoints(points.to_wire())  # as the worker reads it from the spec
    assert [i for i in range(1, 60) if i in members] == expected  # iterations count from 1
    if last is not None:
        assert points == DecisionPoints.at(expected)


def test_points_on_a_reported_attribute_block_where_it_first_reaches_each_value():
    """ASHA with ``time_attr="epoch"``: the trial waits at the results whose epoch reaches a
    rung (once per rung passed, also when epochs jump), and at a result without the metric
    the scheduler judges by (it reaches nothing there); the others go on unasked."""
    epochs = [1, 2, 3, 4, 8, 20, 21, 22, 23]
    seen = []

    def fn(config):
        for number, epoch in enumerate(epochs):
            metrics = {"epoch": np.int64(epoch), "n": number}
            if number != 1:
                metrics["loss"] = 1.0 / epoch
            tune.report(metrics)

    def answer(event):
        seen.append(event[2])
        return ["continue", event[1]]

    spec = _spec("t1", decide=["reach", "epoch", [1.0, 3.0, 9.0, 27.0], ["loss"]])
    events = _run_until(TrialWorker(), _commands(_install(fn), ["start", spec]), answer=answer)
    # Iterations (1-based) of the results that waited: epoch 1; the one without loss;
    # epoch 3; epoch 20 passes 9 (and 27 is still ahead); 21, 22 ... pass nothing more.
    assert seen == [1, 2, 3, 6]
    assert [r["n"] for r in _results(events)] == list(range(len(epochs)))
    assert events[-1] == ["done", "t1"]


def test_points_every_interval_of_an_attribute_block_where_it_has_grown_by_it():
    """PBT's perturbation rule on a reported attribute: wait once it is at least ``start``
    and has grown by ``interval`` since the last wait (or since ``since``)."""
    steps = [0.5, 1.0, 2.5, 2.9, 3.4, 5.0, 5.1, 7.6]

    def fn(config):
        for step in steps:
            tune.report({"step": step, "score": step})

    seen = []

    def answer(event):
        seen.append(event[2])
        return ["continue", event[1]]

    spec = _spec("t1", decide=["reach_every", "step", 2.0, 1.0, 0.0, ["score"]])
    events = _run_until(TrialWorker(), _commands(_install(fn), ["start", spec]), answer=answer)
    # 2.5 (grown 2.5 since 0), 5.0 (2.5 since 2.5), 7.6 (2.6 since 5.0)
    assert seen == [3, 6, 8]
    assert events[-1] == ["done", "t1"]


def test_points_on_an_attribute_wait_once_per_value_a_jump_passes():
    from fasttune.schedulers import DecisionPoints

    points = DecisionPoints.reaching("time_total_s", [5, 15, 45])
    assert points == DecisionPoints(points.to_wire()) and points != DecisionPoints.at([5, 15, 45])
    watch = points.watch()
    waited = [total for total in (1.0, 4.9, 50.0, 51.0, 52.0, 53.0, 60.0) if watch(0, {}, total)]
    assert waited == [50.0, 51.0, 52.0]  # three values passed at once: judged one per result
    # A new segment (a resume) starts at none passed: its first result waits once more.
    assert DecisionPoints(points.to_wire()).watch()(0, {}, 20.0)
    # Iteration forms keep their test; an attribute form read as iterations means every one.
    assert [i for i in range(1, 8) if DecisionPoints.at([2, 5]).watch()(i, {}, 0.0)] == [2, 5]
    assert all(i in points for i in range(1, 5))
    # training_iteration, and a nested reported value, are read as the scheduler reads them.
    by_iteration = DecisionPoints.reaching("training_iteration", [2]).watch()
    assert [i for i in range(1, 5) if by_iteration(i, {}, 0.0)] == [2]
    nested = DecisionPoints.reaching("progress/epoch", [2]).watch()
    assert [e for e in range(1, 5) if nested(0, {"progress": {"epoch": e}}, 0.0)] == [2]


def test_every_result_decisions_give_one_result_per_round_trip():
    def fn(config):
        for i in range(5):
            tune.report({"i": i})

    worker = TrialWorker()
    events = _run_until(worker, _commands(_install(fn), ["start", _spec("t1", decide="every_result")]),
                        answer=lambda e: ["continue", e[1]])
    batches = [len(e[2]) for e in events if e[0] == "results"]
    assert batches == [1, 1, 1, 1, 1]


def test_non_encodable_value_names_the_key_and_numpy_encodes():
    class Opaque:
        pass

    def fn(config):
        tune.report({"np_float": np.float32(1.5), "np_int": np.int64(3), "arr": np.arange(3)})
        tune.report({"nested": {"bad": Opaque()}})

    worker = TrialWorker()
    events = _run_until(worker, _commands(_install(fn), ["start", _spec("t1")]))
    results = _results(events)
    assert results == [{"np_float": 1.5, "np_int": 3, "arr": [0, 1, 2]}]
    assert events[-1][0] == "error"
    assert "'nested/bad'" in events[-1][2] and "Opaque" in events[-1][2]


def test_raising_trainable_reports_traceback_and_exception():
    def fn(config):
        tune.report({"i": 0})
        raise ValueError("boom at step 1")

    worker = TrialWorker()
    events = _run_until(worker, _commands(_install(fn), ["start", _spec("t1")]))
    assert _results(events) == [{"i": 0}]
    kind, trial_id, text, blob = events[-1]
    assert kind == "error" and "ValueError: boom at step 1" in text
    assert isinstance(cloudpickle.loads(blob), ValueError)


def _checkpoint_marks(events, trial_id=None):
    """{index of the result among the trial's results: its checkpoint's name}, however its
    results were cut into batches (a batch marks its checkpoints by the index in it)."""
    marks, offset = {}, 0
    for event in events:
        if event[0] == "results" and (trial_id is None or event[1] == trial_id):
            for index, name in event[4].items():
                marks[offset + index] = name
            offset += len(event[2])
    return marks


def test_checkpoint_is_persisted_before_report_returns(tmp_path):
    source = tmp_path / "user_ckpt"
    trial_dir = tmp_path / "trial"

    def fn(config):
        import shutil

        os.makedirs(config["src"], exist_ok=True)
        with open(os.path.join(config["src"], "w.txt"), "w") as f:
            f.write("weights-1")
        tune.report({"i": 0}, checkpoint=tune.Checkpoint.from_directory(config["src"]))
        shutil.rmtree(config["src"])  # the user may delete it right after report()
        tune.report({"i": 1})

    worker = TrialWorker()
    spec = _spec("t1", trial_dir=str(trial_dir), config={"src": str(source)}, ckpt_index=3)
    events = _run_until(worker, _commands(_install(fn), ["start", spec]))
    assert events[-1] == ["done", "t1"]
    assert _checkpoint_marks(events) == {0: "checkpoint_000003"}
    assert (trial_dir / "checkpoint_000003" / "w.txt").read_text() == "weights-1"
    assert not source.exists()


def test_a_reported_checkpoint_is_copied_whole_and_the_users_directory_is_left_alone(tmp_path):
    source = tmp_path / "user_ckpt"
    trial_dir = tmp_path / "trial"
    trial_dir.mkdir()
    (trial_dir / "checkpoint_000000.tmp").mkdir()  # a copy a killed worker left half done

    def fn(config):
        src = config["src"]
        os.makedirs(os.path.join(src, "nested", "deeper"))
        with open(os.path.join(src, "nested", "deeper", "w.txt"), "w") as f:
            f.write("weights-1")
        with open(os.path.join(src, "run.sh"), "w") as f:
            f.write("#!/bin/sh\n")
        os.chmod(os.path.join(src, "run.sh"), 0o750)
        tune.report({"i": 0}, checkpoint=tune.Checkpoint.from_directory(src))
        # The same directory, reused: the saved checkpoint does not change with it.
        with open(os.path.join(src, "nested", "deeper", "w.txt"), "w") as f:
            f.write("weights-2")
        tune.report({"i": 1}, checkpoint=tune.Checkpoint.from_directory(src))

    worker = TrialWorker()
    spec = _spec("t1", trial_dir=str(trial_dir), config={"src": str(source)})
    events = _run_until(worker, _commands(_install(fn), ["start", spec]))
    assert events[-1] == ["done", "t1"]
    assert (trial_dir / "checkpoint_000000" / "nested" / "deeper" / "w.txt").read_text() == "weights-1"
    assert (trial_dir / "checkpoint_000001" / "nested" / "deeper" / "w.txt").read_text() == "weights-2"
    assert os.stat(trial_dir / "checkpoint_000000" / "run.sh").st_mode & 0o777 == 0o750
    assert (source / "nested" / "deeper" / "w.txt").read_text() == "weights-2"
    assert sorted(p.name for p in trial_dir.iterdir()) == ["checkpoint_000000", "checkpoint_000001"]


def test_a_restart_that_saves_under_an_existing_checkpoint_name_replaces_it(tmp_path):
    trial_dir = tmp_path / "trial"
    (trial_dir / "checkpoint_000002").mkdir(parents=True)
    (trial_dir / "checkpoint_000002" / "stale.txt").write_text("from the killed run")

    def fn(config):
        src = os.path.join(config["dir"], "src")
        os.makedirs(src)
        with open(os.path.join(src, "w.txt"), "w") as f:
            f.write("new")
        tune.report({"i": 0}, checkpoint=tune.Checkpoint.from_directory(src))

    worker = TrialWorker()
    spec = _spec("t1", trial_dir=str(trial_dir), config={"dir": str(tmp_path)}, ckpt_index=2)
    _run_until(worker, _commands(_install(fn), ["start", spec]))
    assert sorted(p.name for p in (trial_dir / "checkpoint_000002").iterdir()) == ["w.txt"]


def test_restore_checkpoint_is_visible_to_the_trainable(tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "state").write_text("41")

    def fn(config):
        checkpoint = tune.get_checkpoint()
        with checkpoint.as_directory() as d:
            tune.report({"state": int(open(os.path.join(d, "state")).read()) + 1})

    worker = TrialWorker()
    events = _run_until(worker, _commands(_install(fn), ["start", _spec("t1", restore=str(ckpt))]))
    assert _results(events) == [{"state": 42}]


def test_backpressure_bounds_unsent_results(monkeypatch):
    monkeypatch.setattr(_worker, "MAX_UNSENT_RESULTS", 16)

    def fn(config):
        for i in range(500):
            tune.report({"i": i})

    worker = TrialWorker()
    events = _run_until(worker, _commands(_install(fn), ["start", _spec("t1")]))
    sizes = [len(e[2]) for e in events if e[0] == "results"]
    assert max(sizes) <= 16
    assert [r["i"] for r in _results(events)] == list(range(500))


def test_queued_trials_run_in_order_and_a_stopped_queued_trial_is_dropped():
    def fn(config):
        tune.report({"who": config["who"]})

    worker = TrialWorker()
    events = _run_until(
        worker,
        _commands(_install(fn), ["start", _spec("a", config={"who": "a"})],
                  ["start", _spec("b", config={"who": "b"})], ["stop", "b"],
                  ["start", _spec("c", config={"who": "c"})]),
        expected_ends=3,
    )
    assert ["dropped", "b"] in events
    assert [r["who"] for r in _results(events)] == ["a", "c"]
    started = [e[1] for e in events if e[0] == "started"]
    assert started == ["a", "c"]


def test_interrupt_stops_a_running_trial_at_its_next_report():
    import threading

    gate = threading.Event()

    def fn(config):
        tune.report({"i": 0})
        config["gate"].wait(30)
        for i in range(1, 1000):
            tune.report({"i": i})

    worker = TrialWorker()
    worker._trainables["fn"] = fn
    worker._queue.append(_spec("t1", config={"gate": gate}))
    with worker._cond:
        worker._cond.notify_all()
    first = msgpack.unpackb(worker.poll(b""), raw=False, strict_map_key=False)
    assert first[0][0] == "started"
    worker.interrupt(_commands(["stop", "t1"]))
    gate.set()
    events = first + _run_until(worker, b"")
    assert events[-1] == ["stopped", "t1"]
    assert [r["i"] for r in _results(events)] == [0]


def test_report_outside_a_trial_is_a_clear_error():
    with pytest.raises(tune.TuneError, match="outside a fasttune trial"):
        tune.report({"x": 1})


def test_report_needs_a_dict():
    def fn(config):
        tune.report(3.0)

    worker = TrialWorker()
    events = _run_until(worker, _commands(_install(fn), ["start", _spec("t1")]))
    assert events[-1][0] == "error" and "takes a dict of metrics" in events[-1][2]


def test_a_lingering_poll_returns_the_whole_segment_at_its_decision_point(monkeypatch):
    """After a start the poll lingers until the trial blocks at its decision point; the
    results reported meanwhile do not wake it one by one, and a linger far longer than
    the segment still ends as soon as the trial waits for the driver."""
    monkeypatch.setattr(_worker, "_LINGER_S", 3600.0)

    def fn(config):
        for i in range(40):
            tune.report({"i": i})

    worker = TrialWorker()
    notified = []
    real_notify_all = worker._cond.notify_all

    def counting_notify_all():
        notified.append(1)
        real_notify_all()

    worker._cond.notify_all = counting_notify_all
    reply = msgpack.unpackb(worker.poll(_commands(_install(fn), ["start", _spec("t1", decide=["at", [20, 40]])])),
                            raw=False, strict_map_key=False)
    assert [e[0] for e in reply] == ["started", "results", "decide"]
    assert [r["i"] for r in _results(reply)] == list(range(20)) and reply[-1] == ["decide", "t1", 20, False]
    # A handful of wake-ups for the segment (commands applied, started, decide), not one
    # per reported result.
    assert len(notified) < 10
    events = reply + _run_until(worker, _commands(["continue", "t1"]), answer=lambda e: ["continue", e[1]])
    assert [r["i"] for r in _results(events)] == list(range(40))
    assert events[-1] == ["done", "t1"]


# ---- yielding at decision points (schedulers that pause for waiting trials) ----------
def _checkpointing(config):
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with open(os.path.join(checkpoint.path, "step")) as f:
            start = int(f.read())
    scratch = config["scratch"]
    for step in range(start + 1, 9):
        if step % 4 == 0:
            d = os.path.join(scratch, f"{tune.get_context().get_trial_id()}-{step}")
            os.makedirs(d)
            with open(os.path.join(d, "step"), "w") as f:
                f.write(str(step))
            tune.report({"step": step}, checkpoint=tune.Checkpoint.from_directory(d))
        else:
            tune.report({"step": step})


def _yield_specs(tmp_path, **extra):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    return [_spec(t, str(tmp_path / t), config={"scratch": str(scratch)}, decide=["every", 4], **extra)
            for t in ("a", "b")]


def test_a_trial_yields_at_a_decision_point_to_the_trial_queued_behind_it(tmp_path):
    a, b = _yield_specs(tmp_path, **{"yield": True})

    def never(event):  # a yielding trial asks nothing: the queued one runs at once
        raise AssertionError(f"unexpected decision request {event}")

    worker = TrialWorker()
    events = _run_until(worker, _commands(_install(_checkpointing), ["start", a], ["start", b]),
                        answer=lambda e: ["continue", e[1]] if e[1] == "b" else never(e), expected_ends=2)
    kinds = [(e[0], e[1]) for e in events if e[0] != "results"]
    # "a" hands its worker over at its first decision point, with its checkpoint; "b" has
    # nobody behind it, so it waits for the driver there (and says it found no one queued).
    assert kinds[:4] == [("started", "a"), ("yielded", "a"), ("paused", "a"), ("started", "b")]
    assert [e for e in events if e[0] == "yielded"] == [["yielded", "a", 4]]
    decides = [e for e in events if e[0] == "decide"]
    assert decides[0] == ["decide", "b", 4, True]
    assert [r["step"] for r in _results(events, "a")] == [1, 2, 3, 4]
    assert [r["step"] for r in _results(events, "b")] == list(range(1, 9))
    # The checkpoint of the yielded result was persisted before the trial ended.
    assert os.listdir(tmp_path / "a") == ["checkpoint_000000"]
    assert _checkpoint_marks(events, "a") == {3: "checkpoint_000000"}  # its 4th result's


def test_no_yield_without_a_queued_trial_a_checkpoint_or_the_spec_flag(tmp_path):
    a, b = _yield_specs(tmp_path)  # no "yield" flag: both wait at every decision point
    answers = []

    def answer(event):
        answers.append(event)
        return ["continue", event[1]]

    worker = TrialWorker()
    _run_until(worker, _commands(_install(_checkpointing), ["start", a], ["start", b]), answer=answer, expected_ends=2)
    assert [(e[1], e[2], e[3]) for e in answers] == [("a", 4, False), ("a", 8, False), ("b", 4, False), ("b", 8, False)]

    def no_checkpoint(config):
        for i in range(8):
            tune.report({"i": i})

    answers.clear()
    worker = TrialWorker()
    specs = [_spec(t, str(tmp_path / f"n{t}"), decide=["every", 4], **{"yield": True}) for t in ("a", "b")]
    _run_until(worker, _commands(_install(no_checkpoint), ["start", specs[0]], ["start", specs[1]]),
               answer=answer, expected_ends=2)
    # Nothing to resume "a" from at iteration 4: it waits, though "b" is queued.
    assert [(e[1], e[2]) for e in answers] == [("a", 4), ("a", 8), ("b", 4), ("b", 8)]


def test_copy_tree_keeps_contents_permissions_and_follows_links(tmp_path):
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    payload = os.urandom(3_000_000)
    (source / "big.bin").write_bytes(payload)
    (source / "empty").write_bytes(b"")
    (source / "sub" / "run.sh").write_text("echo hi")
    os.chmod(source / "sub" / "run.sh", 0o751)
    os.symlink(source / "big.bin", source / "link")
    target = tmp_path / "dst"
    _worker_checkpoints._copy_tree(str(source), str(target))
    assert (target / "big.bin").read_bytes() == payload and (target / "link").read_bytes() == payload
    assert not os.path.islink(target / "link")
    assert (target / "empty").read_bytes() == b""
    assert (target / "sub" / "run.sh").read_text() == "echo hi"
    assert os.stat(target / "sub" / "run.sh").st_mode & 0o7777 == 0o751
    with pytest.raises(FileExistsError):
        _worker_checkpoints._copy_tree(str(source), str(target))  # never merges into an existing copy


def test_a_trainable_the_worker_cannot_unpickle_fails_its_trials_with_the_reason(tmp_path):
    # Pickled by reference to a module the worker process cannot import.
    blob = cloudpickle.dumps(os.path.join).replace(b"posixpath", b"nomodulex")
    worker = TrialWorker()
    events = _run_until(worker, _commands(["trainable", "fn", blob, b"", []], ["start", _spec("t1")],
                                          ["start", _spec("t2")]), expected_ends=2)
    errors = [e for e in events if e[0] == "error"]
    assert [e[1] for e in errors] == ["t1", "t2"]  # the worker lives on: each trial fails
    assert "could not load trainable 'fn'" in errors[0][2] and "nomodulex" in errors[0][2]
    assert "importable" in errors[0][2]


def test_the_pooled_workers_actor_class_carries_a_trial_with_only_the_methods_the_driver_calls():
    # Ray disassembles every method of an actor class it exports, on the driver at each
    # sweep's start: the class the pool exports has only those the driver calls.
    from fasttune.execution import ray_trial_executor

    exported = ray_trial_executor._remote_worker_class().__ray_metadata__
    assert sorted(name for name in exported.method_meta.methods if not name.startswith("__ray")) == [
        "__init__", "interrupt", "open_channel", "ping", "poll", "release"]

    def fn(config):
        for i in range(3):
            tune.report({"i": i})

    actor = exported.modified_class()
    events = _run_until(actor, _commands(_install(fn), ["start", _spec("t1")]))
    assert [r["i"] for r in _results(events)] == [0, 1, 2] and events[-1] == ["done", "t1"]
    assert actor.ping() == os.getpid() and actor.release()


def test_each_trial_on_an_attribute_form_starts_with_no_value_passed():
    """A worker reuses an iteration form's test from trial to trial; a test on an attribute
    keeps what its segment passed, so every trial gets a fresh one."""
    def fn(config):
        for epoch in range(1, 6):
            tune.report({"epoch": epoch})

    worker, seen = TrialWorker(), []

    def answer(event):
        seen.append((event[1], event[2]))
        return ["continue", event[1]]

    wire = ["reach", "epoch", [1.0, 3.0], []]
    _run_until(worker, _commands(_install(fn), ["start", _spec("a", decide=wire)]), answer=answer)
    _run_until(worker, _commands(["start", _spec("b", decide=list(wire))]), answer=answer)
    _run_until(worker, _commands(["start", _spec("c", decide=["at", [2]])]), answer=answer)
    _run_until(worker, _commands(["start", _spec("d", decide=["at", [4]])]), answer=answer)
    assert seen == [("a", 1), ("a", 3), ("b", 1), ("b", 3), ("c", 2), ("d", 4)]


def _worker_watching_wakes(watch, watch_waits=None):
    """A TrialWorker whose condition calls ``watch(worker)`` at each notify_all, and
    ``watch_waits(worker)`` at each wait (the same lock and waiters): who wakes whom, when."""
    import threading

    watched = []

    class WatchedCondition(threading.Condition):
        def notify_all(self):
            if watched:
                watch(watched[0])
            super().notify_all()

        def wait(self, timeout=None):
            if watched and watch_waits is not None:
                watch_waits(watched[0])
            return super().wait(timeout)

    worker = TrialWorker()
    worker._cond.__class__ = WatchedCondition
    watched.append(worker)
    return worker


def test_a_reply_does_not_wake_a_trial_waiting_at_its_decision_point():
    """The trial thread waits for the driver's answer; the poll's reply (its Decide) must
    not wake it for nothing (each wake is a thread switch and a GIL handoff)."""
    import threading

    needless_wakes = []

    def watch(worker):
        # Another thread holds the lock while the trial waits at its decision point: a
        # notify wakes it, and for nothing while no decision has come.
        run = worker._run
        if threading.current_thread().name != "fasttune-trial" and run is not None and run.awaiting \
                and run.decision is None:
            needless_wakes.append(run.trial_id)

    def fn(config):
        tune.report({"i": 0})

    worker = _worker_watching_wakes(watch)
    stop = lambda event: ["stop", event[1]]  # noqa: E731
    for n in range(3):
        commands = [_install(fn)] if n == 0 else []
        events = _run_until(worker, _commands(*commands, ["start", _spec(f"t{n}", decide=["at", [1]])]), answer=stop)
        assert [e[0] for e in events if e[0] != "results"] == ["started", "decide", "stopped"]
    assert needless_wakes == []


def test_a_poll_that_ends_one_trial_and_starts_the_next_is_woken_once(monkeypatch):
    """Commands that stop the trial at its decision point and start the next one leave the
    thread going on by itself: the poll lingers from then on, so the trial's end does not
    wake it only for it to linger (one wake, at the next decision point, per such poll)."""
    import threading

    monkeypatch.setattr(_worker, "_LINGER_S", 3600.0)  # a loaded machine cannot run the linger out
    wakes = []

    def watch(worker):  # the trial thread wakes the waiting poll
        if threading.current_thread().name == "fasttune-trial" and worker._poller_waiting:
            wakes.append(worker._run.trial_id if worker._run is not None else None)

    def fn(config):
        tune.report({"i": 0})

    worker = _worker_watching_wakes(watch)
    events = msgpack.unpackb(worker.poll(_commands(_install(fn), ["start", _spec("t0", decide=["at", [1]])])), raw=False)
    while events[-1][0] != "decide":
        events += msgpack.unpackb(worker.poll(b""), raw=False)
    for n in range(1, 4):
        del wakes[:]
        reply = msgpack.unpackb(worker.poll(_commands(["stop", f"t{n - 1}"], ["start", _spec(f"t{n}", decide=["at", [1]])])),
                                raw=False)
        assert [e[0] for e in reply if e[0] != "results"] == ["stopped", "started", "decide"]
        assert wakes == [f"t{n}"]  # its decision point only
    reply = msgpack.unpackb(worker.poll(_commands(["stop", "t3"])), raw=False)
    assert [e[0] for e in reply] == ["stopped"]


def test_a_trial_end_slower_than_the_linger_still_goes_with_the_next_trials_start_and_decision(monkeypatch):
    """A poll set lingering by its commands lingers anew from the thread's first event: a
    trial whose end takes longer than the linger (a checkpoint's upload, say) still sends
    its end with the next trial's start and decision, in one reply, as without it."""
    import threading

    now = [1000.0]
    # The worker's clock moves only here (the process's own goes on).
    monkeypatch.setattr(_worker, "time", StandIn(time, monotonic=lambda: now[0]))
    monkeypatch.setattr(_worker, "_LINGER_S", 5.0)
    ended, poll_looked = [], threading.Event()  # the poll looked at the end before the next trial starts

    def watch_waits(worker):
        if threading.current_thread().name != "fasttune-trial" and ended:
            poll_looked.set()  # it waits on after the end (it would have replied with the end alone)

    def fn(config):
        tune.report({"i": 0})

    worker = _worker_watching_wakes(lambda worker: None, watch_waits)
    leave, emit = worker._leave_trial, worker._emit

    lingers = []  # the poll's linger as each trial's end began (the worker's clock reaches it)

    def slow_leave():  # the trial's end takes 10 s by the worker's clock
        lingers.append(worker._linger_until)
        now[0] += 10.0
        ended.append(True)
        leave()

    def emit_once_looked(event):
        if type(event) is _worker.protocol.Started and event.trial_id == "t1":
            assert poll_looked.wait(30)
        emit(event)

    worker._leave_trial, worker._emit = slow_leave, emit_once_looked
    events = msgpack.unpackb(worker.poll(_commands(_install(fn), ["start", _spec("t0", decide=["at", [1]])])), raw=False)
    while events[-1][0] != "decide":
        events += msgpack.unpackb(worker.poll(b""), raw=False)
    reply = msgpack.unpackb(worker.poll(_commands(["stop", "t0"], ["start", _spec("t1", decide=["at", [1]])])), raw=False)
    poll_looked.set()  # a reply with the end alone came back: let the next trial go on
    assert [e[0] for e in reply if e[0] != "results"] == ["stopped", "started", "decide"]
    assert lingers == [1005.0]  # set ahead by the poll's commands, on the worker's clock
    reply = msgpack.unpackb(worker.poll(_commands(["stop", "t1"])), raw=False)
    assert [e[0] for e in reply] == ["stopped"]  # (its thread waits for no decision after the test)
