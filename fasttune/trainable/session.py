"""The per-trial session a trainable talks to: ``report``, ``get_checkpoint``, ``get_context``.

A session lives in the worker process while one trial runs.  It is the place where a
reported result starts its way to ``result.json``: ``report()`` hands the metrics to the
session's sink (the worker's buffer), which encodes them at once and usually returns
without waiting for the driver.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

from fasttune.checkpoint import Checkpoint
from fasttune.error import TuneError

_local = threading.local()


class _TrialResources(dict):
    """A trial's resources, ``{"CPU": 2.0, ...}`` (the totals), that also answers what Ray
    Tune's ``get_trial_resources()`` (a PlacementGroupFactory) is asked for: scripts written
    for Ray Tune read ``required_resources``, ``bundles``, ``head_bundle`` or ``head_cpus``.

    Example:
        >>> resources = _TrialResources({"CPU": 3.0}, [{"CPU": 1.0}, {"CPU": 2.0}])
        >>> resources == {"CPU": 3.0}, resources.required_resources, resources.head_cpus
        (True, {'CPU': 3.0}, 1.0)
        >>> resources.bundles
        [{'CPU': 1.0}, {'CPU': 2.0}]
    """

    def __init__(self, totals: Dict[str, float], bundles: Optional[List[Dict[str, float]]] = None) -> None:
        super().__init__(totals)
        self._bundles = [dict(b) for b in bundles] if bundles else [dict(totals)]

    @property
    def required_resources(self) -> Dict[str, float]:
        return dict(self)

    @property
    def bundles(self) -> List[Dict[str, float]]:
        return [dict(b) for b in self._bundles]

    @property
    def head_bundle(self) -> Dict[str, float]:
        return dict(self._bundles[0])

    @property
    def head_cpus(self) -> float:
        return self._bundles[0].get("CPU", 0.0)


@dataclass
class TuneContext:
    """What a running trial may know about itself (``tune.get_context()``).

    Example:
        >>> import fasttune as tune
        >>> def train(config):
        ...     ctx = tune.get_context()
        ...     tune.report({"trial": ctx.get_trial_id() is not None})
    """

    trial_id: Optional[str] = None
    trial_name: Optional[str] = None
    trial_dir: Optional[str] = None
    experiment_name: Optional[str] = None
    trial_resources: Dict[str, float] = field(default_factory=dict)
    storage_path: Optional[str] = None
    trial_bundles: Optional[List[Dict[str, float]]] = None  # when the trial has several bundles
    # RunConfig(results_store="experiment") makes a trial's directory only when something needs it.
    trial_dir_on_demand: bool = False

    def get_trial_id(self) -> Optional[str]:
        return self.trial_id

    def get_trial_name(self) -> Optional[str]:
        return self.trial_name

    def get_trial_dir(self) -> Optional[str]:
        if self.trial_dir_on_demand and self.trial_dir and not os.path.isdir(self.trial_dir):
            os.makedirs(self.trial_dir, exist_ok=True)  # asked for: the trial will write there
        return self.trial_dir

    def get_experiment_name(self) -> Optional[str]:
        return self.experiment_name

    def get_trial_resources(self) -> Dict[str, float]:
        """The resources the trial runs with now (they change under a ResourceChangingScheduler)."""
        return _TrialResources(self.trial_resources, self.trial_bundles)

    def get_storage_path(self) -> Optional[str]:
        return self.storage_path

    def get_world_rank(self) -> int:
        return 0

    def get_local_rank(self) -> int:
        return 0

    def get_world_size(self) -> int:
        return 1

    # A Tune trial is one worker process on one node: Ray Train's distributed ranks and
    # sizes are those of a group of one.
    def get_node_rank(self) -> int:
        return 0

    def get_local_world_size(self) -> int:
        return 1

    def get_metadata(self) -> Dict[str, Any]:
        """Ray Train's ``Trainer(metadata=...)``; a Tune trial has none, so an empty dict."""
        return {}


class Session:
    """Connects one running trial to whatever collects its results."""

    def __init__(
        self,
        context: TuneContext,
        sink: Callable[[Dict[str, Any], Optional[Checkpoint]], None],
        checkpoint: Optional[Checkpoint] = None,
    ) -> None:
        self.context = context
        self._sink = sink
        self.checkpoint = checkpoint

    def report(self, metrics: Dict[str, Any], checkpoint: Optional[Checkpoint] = None) -> None:
        if not isinstance(metrics, dict):
            raise TypeError(
                f"tune.report() takes a dict of metrics, got {type(metrics).__name__}; "
                "call it as tune.report({'loss': loss})."
            )
        if checkpoint is not None and not isinstance(checkpoint, Checkpoint):
            raise TypeError(
                f"tune.report(checkpoint=...) takes a fasttune.Checkpoint, got "
                f"{type(checkpoint).__name__}; wrap a directory with "
                "tune.Checkpoint.from_directory(path)."
            )
        self._sink(metrics, checkpoint)


def set_session(session: Optional[Session]) -> None:
    _local.session = session


def get_session() -> Optional[Session]:
    return getattr(_local, "session", None)


def _require_session(what: str) -> Session:
    session = get_session()
    if session is None:
        raise TuneError(
            f"{what} was called outside a fasttune trial. Call it inside the function "
            "you pass to tune.Tuner(...), which fasttune runs in a worker."
        )
    return session


def report(metrics: Dict[str, Any], *, checkpoint: Optional[Checkpoint] = None) -> None:
    """Report one result (one training iteration) of the running trial.

    Returns at once unless the scheduler must decide at this iteration, the worker's
    buffer is full, or the trial's stop criterion is met (then the trial ends here).
    A checkpoint is copied into the trial directory before ``report`` returns, so the
    caller may delete its directory right after.

    Example:
        >>> import fasttune as tune
        >>> def train(config):
        ...     for step in range(3):
        ...         tune.report({"loss": config["lr"] / (step + 1)})
    """
    _require_session("tune.report()").report(metrics, checkpoint)


def get_checkpoint() -> Optional[Checkpoint]:
    """The checkpoint this trial should resume from, or None on a fresh start."""
    return _require_session("tune.get_checkpoint()").checkpoint


def get_context() -> TuneContext:
    """The running trial's context; outside a trial, an empty context."""
    session = get_session()
    return session.context if session is not None else TuneContext()
