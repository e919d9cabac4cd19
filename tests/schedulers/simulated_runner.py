"""A simulated ``tune_controller`` for driving schedulers without Ray.

It holds a real ``TrialTable`` and real ``Trial`` objects, and implements the view of
the runner schedulers get (:class:`fasttune.schedulers.trial_scheduler.TuneControllerView`:
``table``, ``metric``, ``search_alg``, ``is_stopping``, ``experiment_path``,
``get_trials``, ``get_trial``, ``get_live_trials``, ``cluster_resources``,
``first_trial_with_status``, ``is_trial_held``,
``stop_trial``, ``pause_trial``, ``reset_trial``).  Trials are
deterministic curves ``curve(config, iteration) -> metric`` on a virtual clock
(``dt(config)`` seconds per iteration); every iteration is checkpointed, so a paused
trial resumes where it paused.

The loop mirrors the runner: each tick, trials start as ``choose_trial_to_run`` allows;
when it returns None the search algorithm (``search_alg``: the queue of ``configs``)
adds a trial, so with free slots or not (resources are the limit: the new trial waits
PENDING), except with ``max_concurrent_trials`` (the runner does not ask while that many
trials hold workers, and the search algorithm declines while that many are live, paused
ones included, as BasicVariantGenerator(max_concurrent=...)).  Nothing running and
nothing to start is the runner's stall error.  Then every RUNNING trial reports one
result, in row order.  A STOP or PAUSE decision takes effect at the end of the tick, as the
runner's happens when the worker's end event arrives; ``stop_trial``/``pause_trial``
calls from a scheduler take effect at once.  Non-CONTINUE decisions at iterations the
scheduler did not declare as decision points are recorded in ``violations``.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence

from fasttune import _corelib as core
from fasttune.experiment import Trial
from fasttune.schedulers import DecisionPoints, TrialScheduler

Curve = Callable[[Dict[str, Any], int], float]


class SimulatedRunner:
    def __init__(
        self,
        scheduler: TrialScheduler,
        curve: Optional[Curve] = None,
        configs: Sequence[Dict[str, Any]] = (),
        metric: Optional[str] = None,
        mode: Optional[str] = None,
        max_concurrent: int = 1,
        max_iterations: int = 1000,
        dt: Callable[[Dict[str, Any]], float] = lambda config: 1.0,
        max_concurrent_trials: bool = False,
    ) -> None:
        self.scheduler = scheduler
        self.curve = curve
        self.metric_key = metric or scheduler.metric or "metric"
        self._metric = metric
        self._table = core.TrialTable(mode)
        self.max_concurrent = max_concurrent
        self.max_iterations = max_iterations
        self.dt = dt
        self.max_concurrent_trials = max_concurrent_trials
        self.search_alg = _Queue(self)
        self.trials: List[Trial] = []
        self._by_id: Dict[str, Trial] = {}
        self._queue = [dict(c) for c in configs]
        self.checkpoint: Dict[str, int] = {}  # trial id -> iteration it resumes from
        self.history: Dict[str, List[int]] = {}  # iterations each trial reported, in order
        self.decisions: List[tuple] = []  # (trial id, iteration, decision)
        self.stop_calls: List[str] = []
        self.pause_calls: List[str] = []
        self.violations: List[tuple] = []
        self.starts: List[str] = []
        self.held: set = set()  # trials a test declares handed to a worker, not started yet
        self.resets: List[tuple] = []  # (trial id, new config, new tag) of reset_trial calls
        self.is_stopping = False
        self.experiment_path: Optional[str] = None  # no files
        self._points: Dict[str, Any] = {}
        self._ending: Dict[str, str] = {}
        self.ticks = 0

    # ---- the controller interface schedulers use --------------------------------------
    @property
    def table(self) -> Any:
        return self._table

    @property
    def metric(self) -> Optional[str]:
        return self._metric

    def get_trials(self) -> List[Trial]:
        return self.trials

    def get_trial(self, trial_id: str) -> Optional[Trial]:
        return self._by_id.get(trial_id)

    def is_trial_held(self, trial: Trial) -> bool:
        return trial.trial_id in self.held

    def get_live_trials(self) -> List[Trial]:
        return [t for t in self.trials if not t.is_finished()]

    def cluster_resources(self) -> Dict[str, float]:
        # One CPU per trial that may run at once: what the simulated cluster holds.
        return {"CPU": float(self.max_concurrent)}

    def first_trial_with_status(self, status: str) -> Optional[Trial]:
        rows = [row for row in self._table.rows(getattr(core, status)) if not self.is_trial_held(self.trials[row])]
        return self.trials[min(rows)] if rows else None

    def stop_trial(self, trial: Trial) -> None:
        self.stop_calls.append(trial.trial_id)
        self._end(trial, "stop")

    def pause_trial(self, trial: Trial) -> None:
        self.pause_calls.append(trial.trial_id)
        if trial.status in (Trial.RUNNING, Trial.PENDING):
            trial.set_status(Trial.PAUSED)

    def reset_trial(self, trial: Trial, new_config: Dict[str, Any], new_experiment_tag: str,
                    checkpoint: Any = None, checkpoint_result: Optional[Dict[str, Any]] = None) -> None:
        """The config and tag change at once (the runner's change when the trial goes on)."""
        self.resets.append((trial.trial_id, new_config, new_experiment_tag))
        trial.config = new_config
        trial.experiment_tag = new_experiment_tag

    # ---- building and driving ----------------------------------------------------------
    def add_trial(self, config: Optional[Dict[str, Any]] = None, trial_id: Optional[str] = None) -> Trial:
        index = len(self.trials)
        trial = Trial("sim", config=dict(config or {}), trial_id=trial_id or f"t{index:04d}")
        trial._attach(self._table, self._table.add())
        self.trials.append(trial)
        self._by_id[trial.trial_id] = trial
        self.history[trial.trial_id] = []
        self.scheduler.on_trial_add(self, trial)
        return trial

    def start(self, trial: Trial) -> None:
        assert trial.status in (Trial.PENDING, Trial.PAUSED), (trial, trial.status)
        self.starts.append(trial.trial_id)
        wire = self.scheduler.decision_points(trial).to_wire()
        # As a worker reads the spec: one watch per run segment, fed every result.
        self._points[trial.trial_id] = (wire, DecisionPoints(wire).watch())
        resume = self.checkpoint.get(trial.trial_id, 0)
        self._table.set_iteration(trial._row, resume)
        trial.set_status(Trial.RUNNING)

    def result(self, trial: Trial, iteration: int, value: Any, **extra: Any) -> Dict[str, Any]:
        config = trial.config
        result = {"training_iteration": iteration, "time_total_s": iteration * self.dt(config),
                  "trial_id": trial.trial_id, "done": False}
        if value is not None:
            result[self.metric_key] = value
        result.update(extra)
        return result

    def feed(self, trial: Trial, iteration: int, value: Any, **extra: Any) -> str:
        """One result straight to the scheduler (starting the trial if needed); the
        decision is returned and recorded, not applied."""
        if trial.status in (Trial.PENDING, Trial.PAUSED):
            self.start(trial)
        result = self.result(trial, iteration, value, **extra)
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        self._table.record_result(trial._row, iteration, result["time_total_s"],
                                  float(value) if numeric else float("nan"))
        self.history[trial.trial_id].append(iteration)
        trial.last_result = result
        wire, watch = self._points.get(trial.trial_id, ("every_result", None))
        at_point = watch is None or watch(iteration, result, result["time_total_s"])
        decision = self.scheduler.on_trial_result(self, trial, result)
        self.decisions.append((trial.trial_id, iteration, decision))
        if decision not in (TrialScheduler.CONTINUE, TrialScheduler.NOOP) and not at_point:
            self.violations.append((trial.trial_id, iteration, decision, wire))
        return decision

    def complete(self, trial: Trial) -> None:
        """The trainable returned: TERMINATED, and the scheduler is told."""
        self._end(trial, "stop")

    def tick(self) -> None:
        self._fill()
        running = [self.trials[row] for row in sorted(self._table.rows(core.RUNNING))]
        for trial in running:
            if trial.status != Trial.RUNNING or trial.trial_id in self._ending:
                continue
            iteration = trial.iteration + 1
            value = self.curve(trial.config, iteration)
            decision = self.feed(trial, iteration, value)
            self.checkpoint[trial.trial_id] = iteration
            if decision == TrialScheduler.STOP or iteration >= self.max_iterations:
                self._ending[trial.trial_id] = "stop"  # stopped, or the trainable returned
            elif decision == TrialScheduler.PAUSE:
                self._ending[trial.trial_id] = "pause"
        ending, self._ending = self._ending, {}
        for trial_id, how in ending.items():
            trial = self._by_id[trial_id]
            if trial.status != Trial.RUNNING:
                continue  # the scheduler already ended it
            if how == "pause":
                trial.set_status(Trial.PAUSED)
            else:
                self._end(trial, "stop")
        self.ticks += 1

    def run(self, max_ticks: int = 100000) -> "SimulatedRunner":
        while not self.finished():
            if self.ticks >= max_ticks:
                raise AssertionError(f"the simulation did not finish in {max_ticks} ticks")
            self.tick()
        return self

    def finished(self) -> bool:
        counts = self._table.counts()
        return not self._queue and counts[core.PENDING] + counts[core.RUNNING] + counts[core.PAUSED] == 0

    # ---- views ---------------------------------------------------------------------------
    def final_iterations(self, key: Optional[str] = None) -> Dict[Any, int]:
        return {(t.config[key] if key else t.trial_id): t.iteration for t in self.trials}

    def statuses(self, key: Optional[str] = None) -> Dict[Any, str]:
        return {(t.config[key] if key else t.trial_id): t.status for t in self.trials}

    # ---- internals -------------------------------------------------------------------------
    def _fill(self) -> None:
        while True:
            running = self._table.count(core.RUNNING)
            if self.max_concurrent_trials and running >= self.max_concurrent:
                return
            trial = self.scheduler.choose_trial_to_run(self)
            if trial is None and not self.search_alg.is_finished():
                config = self.search_alg.next_config()
                if config is not None:
                    self.add_trial(config)
                    trial = self.scheduler.choose_trial_to_run(self)
            if trial is None and not running and not self.finished():
                raise AssertionError(
                    "stalled (the runner raises here): nothing runs and nothing starts; "
                    + str({t.trial_id: t.status for t in self.trials}))
            if trial is None or running >= self.max_concurrent:
                return
            self.start(trial)

    def _end(self, trial: Trial, how: str) -> None:
        if trial.is_finished():
            return
        trial.set_status(Trial.TERMINATED)
        result = self.result(trial, trial.iteration, None) if not trial.last_result else dict(trial.last_result)
        result["done"] = True
        self.scheduler.on_trial_complete(self, trial, result)


class _Queue:
    """The search algorithm: hands out the runner's configs in order."""

    def __init__(self, runner: SimulatedRunner) -> None:
        self.runner = runner

    def is_finished(self) -> bool:
        return not self.runner._queue

    def next_config(self) -> Optional[Dict[str, Any]]:
        runner = self.runner
        if runner.max_concurrent_trials and len(runner.get_live_trials()) >= runner.max_concurrent:
            return None  # declines, as BasicVariantGenerator(max_concurrent=...)
        return runner._queue.pop(0) if runner._queue else None
