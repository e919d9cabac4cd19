"""Run one Tune script on Ray Tune and on fasttune, and reduce each run to what it decided.

A *script* is a function ``script(tune, run_config)`` that builds a ``Tuner`` with the
module it is given (``ray.tune`` or ``fasttune``; both have their ``schedulers`` and
``search`` subpackages imported) and returns ``tuner.fit()``'s ``ResultGrid``.  It passes
``run_config`` on as the Tuner's ``RunConfig`` keywords (storage, name, ``verbose=0`` and a
callback that records the run); it may add its own (``stop``, ``checkpoint_config``).
Trainables are defined inside the script, so that they report through the engine's own
``tune.report``, and depend on nothing but their config and iteration.

:func:`run_script` returns a :class:`Run`: the trials in creation order and, in the order
the driver received them, every result as ``(trial index, training_iteration)``.  With one
trial at a time that order is the sequence of decisions, so two engines that agree on it
stopped, paused and resumed the same trials at the same iterations.
"""
from __future__ import annotations

import importlib
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Tuple

ENGINES = ("ray.tune", "fasttune")

# Ray Tune's trial ids are "<5 hex digits>_<creation index, 5 digits>"; the hex part is random.
TRIAL_ID = re.compile(r"^[0-9a-f]{5}_(\d{5})$")


def import_engine(name: str) -> Any:
    """``ray.tune`` or ``fasttune``, with the subpackages the scripts use imported."""
    module = importlib.import_module(name)
    for sub in ("schedulers", "search", "error"):
        importlib.import_module(f"{name}.{sub}")
    return module


@dataclass(frozen=True)
class TrialOutcome:
    """What one trial did, in terms both engines share."""
    config: Dict[str, Any]
    iterations: Tuple[int, ...]  # training_iteration of each result, in arrival order
    status: str  # at the end of the run: TERMINATED or ERROR
    experiment_tag: str


@dataclass
class Run:
    trials: List[TrialOutcome]
    results: List[Tuple[int, int]]  # (trial index, training_iteration), in arrival order
    names: List[Dict[str, str]]  # per trial: trainable_name, str(trial), trial_id, dirname
    grid: Any  # the engine's ResultGrid
    trial_index: Dict[str, int] = field(default_factory=dict)  # trial_id -> creation index

    def segments(self) -> List[List[Tuple[int, ...]]]:
        """Per trial, its results split where another trial's came between: the iterations of
        each stretch it ran for (a pause, then a resume, starts a new one)."""
        out: List[List[Tuple[int, ...]]] = [[] for _ in self.trials]
        previous = None
        for index, iteration in self.results:
            if index != previous:
                out[index].append(())
            out[index][-1] += (iteration,)
            previous = index
        return out

    def index_of(self, result: Any) -> int:
        """Creation index of the trial a ``Result`` of :attr:`grid` belongs to."""
        return self.trial_index[result.metrics["trial_id"]]


def _recorder(tune: Any) -> Any:
    """A callback of ``tune``'s own ``Callback`` class that records results and final states."""

    class Recorder(tune.Callback):
        def __init__(self) -> None:
            self.results: List[Tuple[str, int]] = []
            self.trials: List[Any] = []

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self.results.append((trial.trial_id, result["training_iteration"]))

        def on_experiment_end(self, trials, **info):
            self.trials = list(trials)

    return Recorder()


def run_script(tune: Any, script: Callable[..., Any], storage_path: str, name: str = "oracle") -> Run:
    """Run ``script`` with ``tune`` and return its :class:`Run`."""
    # Ray Tune's workers cannot import a test module (fasttune's get the driver's sys.path):
    # its trainables travel by value.
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[script.__module__])
    recorder = _recorder(tune)
    grid = script(tune, dict(storage_path=storage_path, name=name, verbose=0, callbacks=[recorder]))
    index = {t.trial_id: i for i, t in enumerate(recorder.trials)}
    per_trial: Dict[str, List[int]] = {t.trial_id: [] for t in recorder.trials}
    for trial_id, iteration in recorder.results:
        per_trial[trial_id].append(iteration)
    trials = [TrialOutcome(config=dict(t.config), iterations=tuple(per_trial[t.trial_id]), status=t.status,
                           experiment_tag=t.experiment_tag) for t in recorder.trials]
    names = [dict(trainable_name=t.trainable_name, str=str(t), trial_id=t.trial_id,
                  dirname=os.path.basename(t.path)) for t in recorder.trials]
    return Run(trials=trials, results=[(index[tid], it) for tid, it in recorder.results], names=names,
               grid=grid, trial_index=index)


def run_on_both(engines: Dict[str, Any], script: Callable[..., Any], tmp_path: Any) -> Tuple[Run, Run]:
    """``script`` run on Ray Tune, then on fasttune, each in its own directory under ``tmp_path``."""
    runs = []
    for name in ENGINES:
        storage = os.path.join(str(tmp_path), name)
        os.makedirs(storage, exist_ok=True)
        runs.append(run_script(engines[name], script, storage))
    return runs[0], runs[1]
