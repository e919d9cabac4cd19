"""Helpers shared by the test modules: driving a TrialWorker in-process, and sweeps.

Importable from every test module because pytest puts ``tests/`` (the root conftest's
folder) on ``sys.path``.
"""
import contextlib
import json
import os
import random
import signal
import time
from array import array

import msgpack
import numpy as np
import ray.cloudpickle as cloudpickle

import fasttune as tune
from fasttune.schedulers import TrialScheduler

END_KINDS = ("done", "stopped", "error", "paused", "dropped")


# ---- the worker protocol, in-process -------------------------------------------------
def commands(*items):
    return msgpack.packb(list(items), use_bin_type=True)


def install(trainable, name):
    return ["trainable", name, cloudpickle.dumps(trainable), b"", []]


def spec(trial_id, trainable, trial_dir=None, **extra):
    out = {"trial_id": trial_id, "trainable": trainable, "config": extra.pop("config", {}),
           "trial_dir": trial_dir, "decide": "never"}
    out.update(extra)
    return out


def run_until(worker, first_commands, answer=None, expected_ends=1):
    """Poll until ``expected_ends`` trials ended; ``answer(event)`` replies to decisions."""
    events, pending, ended = [], first_commands, 0
    while ended < expected_ends:
        reply = msgpack.unpackb(worker.poll(pending), raw=False, strict_map_key=False)
        pending = b""
        replies = []
        for event in reply:
            events.append(event)
            if event[0] in END_KINDS:
                ended += 1
            if event[0] == "decide":
                replies.append(answer(event))
        if replies:
            pending = commands(*replies)
    return events


def results(events, trial_id=None):
    out = []
    for event in events:
        if event[0] == "results" and (trial_id is None or event[1] == trial_id):
            times = array("d")
            times.frombytes(event[3])
            assert len(times) == len(event[2])
            out.extend(event[2])
    return out


# ---- whole sweeps ------------------------------------------------------------------------
@contextlib.contextmanager
def seeded_generators(seed):
    """Seeds Python's and numpy's global generators, which PBT and the search-space domains
    draw from, for the ``with`` block; puts back their states afterwards, for the tests
    that run next."""
    saved = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed)
    try:
        yield
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])


class StandIn:
    """A module as one module under test sees it, for one test: the given attributes
    replace the module's, the rest are its own.  Set it as that module's name for the
    module (``monkeypatch.setattr(_snapshots, "time", StandIn(time, time=lambda: 1.0))``),
    so the module itself, which other threads of the process use meanwhile, is left alone.

    >>> import time
    >>> clock = StandIn(time, monotonic=lambda: 5.0)
    >>> clock.monotonic(), clock.sleep is time.sleep, time.monotonic() != 5.0
    (5.0, True, True)
    """

    def __init__(self, module, **attributes):
        self.__dict__.update(attributes)
        self._module = module

    def __getattr__(self, name):
        return getattr(self._module, name)


class RunnerClock:
    """The TrialRunner's clock (its ``time`` module), frozen: the time budget and the stop's
    grace period run out only when the test moves it, so nothing depends on how fast the
    machine starts trials.  It starts at the real clock's time: the loop's waits, which
    keep the real clock and last at most a second while a suggestion is pending, then
    neither spin nor outlast the steps the test needs."""

    def __init__(self, monkeypatch):
        from fasttune.execution import trial_runner

        self.now = time.monotonic()
        monkeypatch.setattr(trial_runner, "time", self)

    def monotonic(self):
        return self.now

    def time(self):
        return time.time()  # only the budget's clock is frozen: trials' end times are real


def lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def fit(trainable, storage, space=None, name="exp", tune_config=None, **run_kwargs):
    run_kwargs.setdefault("verbose", 0)
    tuner = tune.Tuner(
        trainable,
        param_space=space or {},
        tune_config=tune_config or tune.TuneConfig(),
        run_config=tune.RunConfig(name=name, storage_path=storage, **run_kwargs),
    )
    return tuner.fit()


class KillAtIterationOnce(tune.Callback):
    """SIGKILLs the trial's worker when it reports ``iteration`` the first time."""

    def __init__(self, iteration):
        self.iteration = iteration
        self.killed = []
        self.trials = []

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if result["training_iteration"] == self.iteration and not self.killed:
            self.killed.append(result["pid"])
            os.kill(result["pid"], signal.SIGKILL)

    def on_experiment_end(self, trials, **info):
        self.trials = list(trials)


def assert_history_of_a_kill_at_five(killer, result):
    """A 12-step trial killed once at iteration 5 (``KillAtIterationOnce(5)``) and restarted
    from its iteration-5 checkpoint: each step logged once, 6.. from the new worker."""
    assert len(killer.killed) == 1 and result.error is None
    (trial,) = killer.trials
    assert trial.num_failures == 1
    rows = lines(os.path.join(result.path, "result.json"))
    assert [r["training_iteration"] for r in rows] == list(range(1, 13))
    assert [r["step"] for r in rows] == list(range(1, 13))
    assert [r["restored_from"] for r in rows] == [0] * 5 + [5] * 7
    assert rows[5]["iterations_since_restore"] == 1 and rows[5]["pid"] != rows[4]["pid"]


class PauseOnceAtThree(TrialScheduler):
    """Pauses each trial once, at its third result; decides on every result."""

    def __init__(self):
        self.paused = set()

    def on_trial_result(self, tune_controller, trial, result):
        if result["training_iteration"] == 3 and trial.trial_id not in self.paused:
            self.paused.add(trial.trial_id)
            return self.PAUSE
        return self.CONTINUE


# ---- trainables that checkpoint a step counter ---------------------------------------
def restored_step():
    """The step saved in the checkpoint this trial resumes from, or 0 on a fresh start."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return 0
    with checkpoint.as_directory() as d:
        with open(os.path.join(d, "step")) as f:
            return int(f.read())


def report_with_step_checkpoint(metrics, step):
    """Report ``metrics`` with a checkpoint holding ``step``, from a directory that is
    deleted right after report() returns."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "step"), "w") as f:
            f.write(str(step))
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))


def restored_json(default):
    """The JSON state saved in the checkpoint this trial resumes from, or ``default``."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return default
    with checkpoint.as_directory() as d:
        with open(os.path.join(d, "state.json")) as f:
            return json.load(f)


def report_with_json_checkpoint(metrics, state):
    """Report ``metrics`` with a checkpoint holding ``state`` as JSON."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "state.json"), "w") as f:
            json.dump(state, f)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))


def wait_until(predicate, what, deadline_s=120.0):
    """Poll ``predicate`` until it returns something truthy, and return that (bounded by
    ``deadline_s``): for a state another process or thread reaches, not a pause."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"Timed out waiting for {what}.")
