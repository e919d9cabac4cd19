"""``Simulation``: what a user hands the ``Tuner`` to run a sweep in simulated time.

Passed as the trainable, it makes ``fit()`` run every trial on a
:class:`~fasttune.simulation.SimulatedExecutor` instead of Ray: the same ``TuneConfig``
(schedulers, searchers, ``num_samples``, ``time_budget_s``), ``RunConfig`` (``stop``,
``name``, ``storage_path``) and ``ResultGrid``, with time counted in the blackbox's seconds.

Example:
    >>> import fasttune as tune
    >>> from fasttune.simulation import Simulation, reference_asha_table
    >>> blackbox = reference_asha_table()
    >>> simulation = Simulation(blackbox, num_workers=4)
    >>> simulation
    Simulation(TabularBlackbox(epoch=1..27, metrics=['loss'], configs=2000, match='exact'), num_workers=4)
"""
from __future__ import annotations

from typing import Any, Dict, Optional

from fasttune.callback import Callback
from fasttune.simulation._blackbox import Blackbox
from fasttune.simulation._direct import DirectLoop, direct_loop_refusal
from fasttune.simulation._executor import CHECKPOINT_AT_DECISIONS, SimulatedExecutor

# checkpoint_at's default: decided by the sweep's scheduler (see Simulation).
CHECKPOINT_AT_AUTO = "auto"
# What runs a sweep (see Simulation's ``engine``).
ENGINE_AUTO, ENGINE_RUNNER, ENGINE_DIRECT = "auto", "runner", "direct"
ENGINES = (ENGINE_AUTO, ENGINE_RUNNER, ENGINE_DIRECT)

__all__ = ["Simulation"]


class Simulation:
    """Runs a Tuner's trials on ``blackbox`` in simulated time, ``num_workers`` at once.

    Args:
        blackbox: the problem (its ``search_space`` is the natural ``param_space``).
        num_workers: virtual workers: how many trials run side by side.
        decision_overhead_s: simulated seconds each scheduler decision costs a trial.
        start_time: the simulated clock's start (seconds since the epoch), fixed so two
            runs are identical to the bit.
        checkpoint_at: where a trial checkpoints (its fidelity): ``"decision_points"``,
            ``None`` or every ``n`` fidelities.  The default, ``"auto"``, is
            ``"decision_points"`` under a scheduler that may resume a trial from a checkpoint
            (its ``resumes_from_checkpoints``: HyperBand, BOHB's, median stopping, PBT, PB2,
            and schedulers of your own unless they say otherwise) and ``None`` under one that
            never does (FIFO, ASHA), where checkpoints would only cost time.  (A restored
            sweep without checkpoints starts the trials that were running over, as a real
            one does.)
        write_results: write each trial's files as a real run does (``params.json``,
            ``result.json``, ``progress.csv`` and the other default loggers' files), so that
            ``fasttune ls``/``plot``, ``ExperimentAnalysis`` and ``ResultGrid``'s whole-history
            queries read them.  Off by default, for speed: the ``ResultGrid`` then holds each
            trial's last result (its history queries, such as ``get_dataframe(filter_metric=...)``,
            see only that), and the experiment directory holds only what restore needs; the
            readers (``ResultGrid.from_path``, ``ExperimentAnalysis``, ``fasttune ls``/``plot``)
            read each trial's last result back from its snapshot.
        engine: what runs the sweep: ``"auto"`` (the default) the direct loop where the
            sweep qualifies, else the runner's loop; ``"runner"`` the runner's loop always;
            ``"direct"`` the direct loop, or a ``ValueError`` at ``fit()`` saying why the
            sweep does not qualify.  The direct loop (``fasttune.simulation._direct``) runs
            sweeps whose trials only go on or stop (FIFO, ASHA; no Stopper, checkpoints
            or files) at a lower cost per trial, with the same results,
            decisions and snapshots.  A restored sweep goes on on the runner's loop.
    """

    def __init__(self, blackbox: Blackbox, num_workers: int = 1, *, decision_overhead_s: float = 0.0,
                 start_time: float = 0.0, checkpoint_at: Any = CHECKPOINT_AT_AUTO,
                 write_results: bool = False, engine: str = ENGINE_AUTO) -> None:
        if engine not in ENGINES:
            raise ValueError(f"Simulation(engine={engine!r}) is not one of {', '.join(map(repr, ENGINES))}.")
        self.blackbox = blackbox
        self.num_workers = num_workers
        self.engine = engine
        self.write_results = bool(write_results)
        self._settings: Dict[str, Any] = dict(num_workers=num_workers, decision_overhead_s=decision_overhead_s,
                                              start_time=start_time, checkpoint_at=checkpoint_at,
                                              write_results=self.write_results)
        self.executor()  # bad settings fail here, not in fit()
        self.__name__ = "simulation"  # the trainable's name in trial names and the registry

    def executor(self, time_budget_s: Optional[float] = None, scheduler: Any = None) -> SimulatedExecutor:
        """A fresh executor for one ``fit()`` (``time_budget_s`` and ``scheduler``: TuneConfig's)."""
        settings = dict(self._settings, checkpoint_at=self.checkpoint_at_under(scheduler))
        return SimulatedExecutor(self.blackbox, time_budget_s=time_budget_s, **settings)

    def checkpoint_at_under(self, scheduler: Any) -> Any:
        """Where trials checkpoint under ``scheduler`` (None: not known yet): the
        ``checkpoint_at`` given, or for ``"auto"`` what the scheduler needs.

        Example:
            >>> from fasttune.schedulers import ASHAScheduler, HyperBandScheduler
            >>> from fasttune.simulation import reference_asha_table
            >>> simulation = Simulation(reference_asha_table())
            >>> simulation.checkpoint_at_under(ASHAScheduler()), simulation.checkpoint_at_under(HyperBandScheduler())
            (None, 'decision_points')
        """
        checkpoint_at = self._settings["checkpoint_at"]
        if checkpoint_at != CHECKPOINT_AT_AUTO:
            return checkpoint_at
        # A scheduler that does not say may pause trials: it gets checkpoints.
        if scheduler is None or getattr(scheduler, "resumes_from_checkpoints", True):
            return CHECKPOINT_AT_DECISIONS
        return None

    def direct_loop(self, runner: Any, executor: SimulatedExecutor, metric: Optional[str], **settings: Any) -> Any:
        """The :class:`~fasttune.simulation._direct.DirectLoop` that runs ``runner``'s sweep,
        or None where the runner's loop runs it (``settings``: the sweep's, as
        ``direct_loop_refusal`` takes them)."""
        if self.engine == ENGINE_RUNNER:
            return None
        why = direct_loop_refusal(executor, metric=metric, **settings)
        if why is None:
            return DirectLoop(runner, executor, metric)
        if self.engine == ENGINE_DIRECT:
            raise ValueError(f"Simulation(engine='direct') cannot run this sweep: {why}. Leave engine at "
                             "'auto' to have the runner's loop run it.")
        return None

    @staticmethod
    def state_callback(executor: SimulatedExecutor) -> Callback:
        """The callback that keeps ``executor``'s state in the experiment's snapshots, so
        that ``Tuner.restore(path, trainable=Simulation(...))`` goes on exactly: the
        runner saves and restores it with the callbacks' states."""
        return _ExecutorState(executor)

    def __call__(self, config: Dict[str, Any]) -> None:
        raise TypeError(
            "A Simulation runs only as a Tuner's trainable, where fit() runs it in simulated time; "
            "it cannot run as a function on a Ray worker.")

    def __repr__(self) -> str:
        return f"Simulation({self.blackbox!r}, num_workers={self.num_workers})"



class _ExecutorState(Callback):
    """A simulated executor's state in the experiment snapshot (it hears no event)."""

    def __init__(self, executor: SimulatedExecutor) -> None:
        self.executor = executor

    def get_state(self) -> Dict[str, Any]:
        return self.executor.get_state()

    def set_state(self, state: Dict[str, Any]) -> None:
        self.executor.set_state(state)
