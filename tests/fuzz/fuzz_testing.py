"""What the fuzz tests share: the one list of errors a reader or a trial may raise on bad
input, an in-process executor that carries results from ``report()`` to ``result.json``
without Ray, and the byte mutations applied to experiment files."""
import json
import os
import threading
from typing import Any, Dict, List, Optional

from hypothesis import settings

import fasttune as tune
from fasttune.error import TuneError
from fasttune.execution import _protocol as protocol
from fasttune.execution._worker import TrialWorker
from fasttune.execution._experiment_state import CorruptExperimentState
from fasttune.execution.trial_executor import EVENT_BATCH, EVENT_START
from fasttune.execution.trial_runner import TrialRunner
from fasttune.experiment.experiment import Experiment
from fasttune.logger import CSVLoggerCallback, JsonLoggerCallback
from fasttune.search import BasicVariantGenerator

# Every fuzz test's settings start here: reproducible in CI (derandomized, no example
# database), so a failure found once is found again on the same code.  Each test adds its
# max_examples and a deadline that only catches a hang, never ordinary load.
FUZZ = settings(derandomize=True, database=None, print_blob=True)

# The documented errors for bad input (a damaged file, a value that cannot be stored):
# each names the file, key or trial.  CorruptExperimentState is a TuneError; the
# standard library's JSON and Unicode errors are ValueErrors (the readers are expected
# to wrap them with the file's name, which the tests check through the message).
ALLOWED_ERRORS = (TuneError, CorruptExperimentState, ValueError, TypeError, FileNotFoundError)

# Error types that are never a clear answer, even though some subclass an allowed one.
UNRELATED_ERRORS = (KeyError, IndexError, AttributeError, RecursionError, UnicodeDecodeError, AssertionError,
                    ZeroDivisionError, MemoryError, SystemError)


def is_clear_error(exc: BaseException) -> bool:
    """Whether ``exc`` is one of the documented errors, not an unrelated one that leaked."""
    if isinstance(exc, UNRELATED_ERRORS) or type(exc).__module__.startswith("msgpack"):
        return False
    return isinstance(exc, ALLOWED_ERRORS)


# ---- report() -> result.json in-process ---------------------------------------------------
class InProcessExecutor:
    """A ``TrialExecutor`` with one real ``TrialWorker`` in this process: results travel
    the whole way Ray would carry them (packed in ``report()``, batched in a poll reply,
    decoded, ingested by the core, written by the writer thread) except the Ray hop, so a
    fuzz test can push hundreds of results through in the time one Ray fit takes.

    Trials run one after another; each poll is a direct call that returns once the
    worker has news (it always does: a result, a decision point or the trial's end)."""

    def __init__(self) -> None:
        self._worker = TrialWorker()
        self._trainables: Dict[str, Any] = {}
        self._loaded: set = set()
        self._commands: List[Any] = []
        self._assigned: List[Any] = []

    def register_trainable(self, name: str, trainable: Any) -> None:
        self._trainables[name] = trainable

    def check_feasible(self, trial: Any) -> None:
        return None

    def has_resources_for_trial(self, trial: Any, queue: bool = True) -> bool:
        return not self._assigned

    def start_trial(self, trial: Any, spec: Dict[str, Any], queue: bool = True) -> int:
        import ray.cloudpickle as cloudpickle

        name = spec["trainable"]
        if name not in self._loaded:
            self._commands.append(protocol.LoadTrainable(name, cloudpickle.dumps(self._trainables[name]), b"", []))
            self._loaded.add(name)
        self._commands.append(protocol.StartTrial(dict(spec, reuse_actors=False)))
        self._assigned.append(trial)
        return 0

    def send_decision(self, slot: int, trial_id: str, decision: str) -> None:
        self._commands.append(protocol.Answer(decision, trial_id))

    def reset_trial(self, trial, new_config, new_experiment_tag, fields=None) -> bool:
        return False

    def _interrupt(self, trial: Any, how: str, checkpoint: bool = True) -> bool:
        if trial not in self._assigned:
            return False
        self._worker.interrupt(protocol.encode_commands([protocol.Answer(how, trial.trial_id, checkpoint)]))
        return True

    def stop_trial(self, trial: Any) -> bool:
        return self._interrupt(trial, protocol.STOP)

    def pause_trial(self, trial: Any, should_checkpoint: bool = True) -> bool:
        return self._interrupt(trial, protocol.PAUSE, should_checkpoint)

    def trial_ended(self, slot: int, trial: Any) -> None:
        if trial in self._assigned:
            self._assigned.remove(trial)
        self._commands = [c for c in self._commands if not isinstance(c, protocol.Answer)]

    def adapt_depth(self, slot: int, whole_trials_in_reply: int, starved: int = 0) -> None:
        return None

    def get_next_executor_event(self, next_trial_exists: bool, wake: Optional[threading.Event] = None,
                                timeout: Optional[float] = None, wake_poll_s: Optional[float] = None):
        if next_trial_exists:
            return EVENT_START, -1, None
        if not self._assigned and not self._commands:
            return None
        payload = protocol.encode_commands(self._commands)
        self._commands = []
        return EVENT_BATCH, 0, protocol.decode_events(self._worker.poll(payload))

    def await_resources(self, trial: Any) -> Optional[str]:
        return None

    def worker_died(self, slot: int) -> List[Any]:
        return []

    def cleanup(self) -> None:
        return None


def in_process_runner(trainable: Any, path: str, config: Dict[str, Any], num_samples: int = 1,
                      metric: Optional[str] = None, mode: Optional[str] = None) -> TrialRunner:
    """A runner of ``trainable`` over ``config`` (a search space) into the experiment
    directory ``path``, with the default result files, as ``fit()`` sets one up, on an
    :class:`InProcessExecutor`."""
    experiment = Experiment(os.path.basename(path), trainable, config=config, num_samples=num_samples,
                            storage_path=os.path.dirname(path))
    searcher = BasicVariantGenerator(random_state=0)
    searcher.set_search_properties(metric, mode, experiment.spec["config"])
    searcher.add_configurations([experiment])
    executor = InProcessExecutor()
    executor.register_trainable(experiment.trainable_name, experiment.trainable)
    runner = TrialRunner(search_alg=searcher, trial_executor=executor, experiment_path=experiment.path,
                         callbacks=[CSVLoggerCallback(), JsonLoggerCallback()], metric=metric, mode=mode)
    os.makedirs(experiment.path, exist_ok=True)
    runner.setup_experiments([experiment], num_samples)
    return runner


def run_to_end(runner: TrialRunner) -> TrialRunner:
    """Step ``runner`` until its trials are finished, and end the experiment as ``fit()``
    does (the final snapshot, the loggers' end)."""
    try:
        while not runner.is_finished():
            runner.step()
    finally:
        runner.cleanup()
        runner.checkpoint(force=True)
        runner.end_experiment_callbacks()
    return runner


def run_in_process(trainable: Any, path: str, config: Dict[str, Any], num_samples: int = 1,
                   metric: Optional[str] = None, mode: Optional[str] = None) -> TrialRunner:
    """Run ``trainable`` over ``config`` to the end without Ray (see
    :func:`in_process_runner`); returns the finished runner."""
    return run_to_end(in_process_runner(trainable, path, config, num_samples, metric, mode))


def same(a: Any, b: Any) -> bool:
    """Deep equality that also requires equal types (a tuple is not a list) and takes
    NaN as equal to NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b or (a != a and b != b)
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


# ---- what a reported value becomes on disk ---------------------------------------------------
class _NaN:
    """NaN made comparable: two NaNs read back compare equal in the tests."""

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, _NaN)

    def __repr__(self) -> str:
        return "NaN"


NAN = _NaN()


def comparable(value: Any) -> Any:
    """``value`` as read back from JSON, with NaN made comparable (tuples are lists)."""
    if isinstance(value, float) and value != value:
        return NAN
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [comparable(v) for v in value]
    return value


def as_written(value: Any) -> Any:
    """What ``result.json`` holds for a reported ``value``, as Ray Tune writes it: numpy
    values as their Python values, tuples as lists, bytes (which JSON cannot hold) as
    their ``str``."""
    import numpy as np

    if isinstance(value, np.generic):
        return comparable(value.item())
    if isinstance(value, np.ndarray):
        return comparable(value.tolist())
    if isinstance(value, bytes):
        return str(value)
    if isinstance(value, dict):
        return {k: as_written(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_written(v) for v in value]
    return comparable(value)


def read_result_lines(trial_dir: str) -> List[Dict[str, Any]]:
    """Every line of a trial's ``result.json``, parsed here without fasttune's readers
    (none when the trial reported nothing: the file may not exist then)."""
    if not os.path.exists(os.path.join(trial_dir, "result.json")):
        return []
    with open(os.path.join(trial_dir, "result.json"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]
