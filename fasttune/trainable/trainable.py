"""Class trainables (``ray.tune.Trainable``): ``setup`` once, then ``step`` per iteration.

A worker runs a class trainable through the same batched protocol as a function: each
``step()`` result is one reported result (same automatic fields, same in-worker stop
check, same decision points), and the worker saves checkpoints with
``save_checkpoint`` when the trial's ``CheckpointConfig`` asks for them, or when a
``step()`` result carries ``should_checkpoint: True``.

Used directly (a script's unit test, ``fasttune.utils.validate_save_restore``), a
Trainable is driven with ``train()``, ``save()``, ``restore()`` and ``stop()``, and
fills the same automatic fields as Ray Tune's.

This module never imports ray at import time: a Trainable can be built and stepped in
plain Python.
"""
from __future__ import annotations

import copy
import logging
import os
import pickle
import shutil
import socket
import tempfile
import time
from datetime import datetime
from typing import Any, Dict, List, Optional, Union

from fasttune._atomic import move_directory_into_place
from fasttune.checkpoint import Checkpoint
from fasttune.trainable.session import get_session

logger = logging.getLogger(__name__)

#: Where the dict a ``save_checkpoint`` returned is kept inside the checkpoint directory.
DICT_CHECKPOINT_FILE = "_dict_checkpoint.pkl"

#: A ``setup()`` slower than this many seconds is logged, with advice (Ray Tune's value).
SETUP_TIME_THRESHOLD = 10

# The automatic fields that need no finished iteration (Ray Tune's DEBUG_METRICS).
_DEBUG_METRICS = ("trial_id", "experiment_id", "date", "timestamp", "pid", "hostname", "node_ip", "config")


def node_ip_address() -> str:
    """This node's IP address as Ray sees it; 127.0.0.1 outside Ray."""
    try:
        import ray.util

        return ray.util.get_node_ip_address()
    except Exception:  # noqa: BLE001 - outside Ray (a Trainable used in plain Python)
        return "127.0.0.1"


class SavedCheckpoint(str):
    """What :meth:`Trainable.save` returns: the checkpoint directory's path (a ``str``),
    which also carries the metrics of the last result before the save (``.metrics``)
    and the directory as a :class:`~fasttune.Checkpoint` (``.checkpoint``), as Ray
    Tune's ``save()`` result does.  :meth:`Trainable.restore` takes the iteration count
    and total time back from ``.metrics``.

    Example:
        >>> import tempfile
        >>> directory = tempfile.mkdtemp()
        >>> saved = SavedCheckpoint(directory, {"training_iteration": 3})
        >>> saved == directory, saved.metrics["training_iteration"], saved.checkpoint.path == directory
        (True, 3, True)
    """

    metrics: Dict[str, Any]

    def __new__(cls, path: str, metrics: Optional[Dict[str, Any]] = None) -> "SavedCheckpoint":
        saved = super().__new__(cls, path)
        saved.metrics = dict(metrics or {})
        return saved

    @property
    def checkpoint(self) -> Checkpoint:
        return Checkpoint.from_directory(str(self))


class Trainable:
    """Subclass this and override ``setup``, ``step`` and, to checkpoint, ``save_checkpoint``
    and ``load_checkpoint``.

    ``step()`` returns a dict of metrics for one training iteration; a result with
    ``done: True`` ends the trial, and one with ``should_checkpoint: True`` makes
    fasttune save a checkpoint after it.  ``save_checkpoint(checkpoint_dir)`` writes
    files into ``checkpoint_dir`` and returns ``None`` (or ``checkpoint_dir``), or
    returns a dict that fasttune stores for you; ``load_checkpoint`` then receives that
    dict, or else the directory path.

    Example:
        >>> import fasttune as tune
        >>> class Counter(tune.Trainable):
        ...     def setup(self, config):
        ...         self.total = 0
        ...     def step(self):
        ...         self.total += self.config["inc"]
        ...         return {"total": self.total}
        ...     def save_checkpoint(self, checkpoint_dir):
        ...         return {"total": self.total}
        ...     def load_checkpoint(self, checkpoint):
        ...         self.total = checkpoint["total"]
        >>> c = Counter({"inc": 2})
        >>> c.train()["total"], c.iteration
        (2, 1)
        >>> saved = c.save()
        >>> fresh = Counter({"inc": 2})
        >>> fresh.restore(saved)
        >>> fresh.train()["total"], fresh.iteration
        (4, 2)
    """

    # A FunctionTrainable runs its function in the worker; class trainables are stepped.
    _runs_a_function = False

    def __init__(self, config: Optional[Dict[str, Any]] = None, storage: Any = None,
                 logger_creator: Any = None) -> None:
        self._init_bookkeeping(config, storage)
        started = time.time()
        self.setup(copy.deepcopy(self.config))
        took = time.time() - started
        if took > SETUP_TIME_THRESHOLD:
            logger.info(
                "%s.setup took %.3f s. If your trainable is slow to initialize, consider "
                "TuneConfig(reuse_actors=True) and reset_config to reuse instances.",
                type(self).__name__, took,
            )

    def _init_bookkeeping(self, config: Optional[Dict[str, Any]], storage: Any) -> None:
        """Everything ``__init__`` sets before ``setup``: the config, the trial's identity
        (from the running trial's context, when there is one) and the counters."""
        self.config: Dict[str, Any] = dict(config or {})
        self._storage = storage
        session = get_session()
        self._take_identity(session.context if session is not None else None)
        self._local_ip: Optional[str] = None
        self._reset_counters()

    def _take_identity(self, context: Any) -> None:
        """The trial this instance runs, from its context (``None``: used on its own)."""
        self._trial_id = getattr(context, "trial_id", None) or "default"
        self._trial_name = getattr(context, "trial_name", None) or "default"
        # Made on first use (by the worker, unless the trial's directory is made on demand).
        self._logdir: Optional[str] = getattr(context, "trial_dir", None)
        self._logdir_on_demand = bool(getattr(context, "trial_dir_on_demand", False))
        resources = getattr(context, "get_trial_resources", None)
        # The totals (a dict) that also know the trial's bundles (TuneContext's answer).
        self._resources: Dict[str, float] = resources() if resources is not None else {}

    def _take_trial(self, context: Any, config: Dict[str, Any]) -> bool:
        """Run the next trial (``context``, ``config``) in this instance, as the worker reuses
        instances: True when ``reset_config`` accepts it (the counters start again); when it
        declines, the instance is left as it was, to be cleaned up as its old trial."""
        before = (self._trial_id, self._trial_name, self._logdir, self._resources, self._iteration, self.config)
        self._take_identity(context)
        self.config = config  # (reset_config still sees the old trial's counters, as in Ray Tune)
        if self.reset_config(config) is True:
            self._reset_counters()
            return True
        (self._trial_id, self._trial_name, self._logdir, self._resources, self._iteration, self.config) = before
        return False

    def _reset_counters(self) -> None:
        self._iteration = 0
        self._time_total = 0.0
        self._time_since_restore = 0.0
        self._iterations_since_restore = 0
        self._timesteps_total: Optional[float] = None
        self._timesteps_since_restore = 0
        self._episodes_total: Optional[float] = None
        self._last_result: Optional[Dict[str, Any]] = None
        self._restored = False

    # ---- what subclasses override ----------------------------------------------------
    def setup(self, config: Dict[str, Any]) -> None:
        """Called once per instance with a copy of the trial's config."""

    def step(self) -> Dict[str, Any]:
        """Run one training iteration and return its metrics."""
        raise NotImplementedError(
            f"{type(self).__name__} must override step() to run one training iteration "
            "and return a dict of metrics."
        )

    def save_checkpoint(self, checkpoint_dir: str) -> Optional[Dict[str, Any]]:
        """Save state into ``checkpoint_dir``, or return it as a dict (stored for you)."""
        return None

    def load_checkpoint(self, checkpoint: Union[Dict[str, Any], str, None]) -> None:
        """Restore state: the dict ``save_checkpoint`` returned, or else the directory."""

    def reset_config(self, new_config: Dict[str, Any]) -> bool:
        """Take ``new_config`` without a new instance (worker reuse); return True if done.
        The default, False, makes fasttune build a fresh instance instead."""
        return False

    def cleanup(self) -> None:
        """Release what ``setup`` acquired; called when the instance is discarded."""

    def log_result(self, result: Dict[str, Any]) -> None:
        """Called by :meth:`train` with each result (automatic fields filled), in the
        process that runs the trainable; override to log there."""

    def _export_model(self, export_formats: List[str], export_dir: str) -> Dict[str, str]:
        """Override to export the model; return ``{format: path}`` of what was written."""
        return {}

    @classmethod
    def default_resource_request(cls, config: Dict[str, Any]) -> Any:
        """Resources for a trial of this trainable when the experiment gives none:
        a dict such as ``{"cpu": 2}``, a PlacementGroupFactory, or None (1 CPU)."""
        return None

    @classmethod
    def resource_help(cls, config: Dict[str, Any]) -> str:
        """A hint on how to configure this trainable's resources (none by default)."""
        return ""

    # ---- read-only properties -----------------------------------------------------------
    @property
    def iteration(self) -> int:
        """Completed training iterations, counting those before a restore."""
        return self._iteration

    @property
    def training_iteration(self) -> int:
        """Same as :attr:`iteration`."""
        return self._iteration

    @property
    def trial_id(self) -> str:
        return self._trial_id

    @property
    def trial_name(self) -> str:
        return self._trial_name

    @property
    def logdir(self) -> str:
        """The trial's directory (results and checkpoints); outside a sweep, a temporary
        directory made on first use."""
        if self._logdir is None:
            self._logdir = tempfile.mkdtemp(prefix=f"{type(self).__name__}_")
        elif self._logdir_on_demand and not os.path.isdir(self._logdir):
            os.makedirs(self._logdir, exist_ok=True)  # RunConfig(results_store="experiment")
        return self._logdir

    @property
    def trial_resources(self) -> Any:
        """The trial's resources as a PlacementGroupFactory (its bundles), or None outside
        a sweep."""
        if not self._resources:
            return None
        from fasttune._resources import PlacementGroupFactory

        return PlacementGroupFactory(getattr(self._resources, "bundles", None) or [dict(self._resources)])

    def get_config(self) -> Dict[str, Any]:
        return self.config

    def get_current_ip_pid(self) -> tuple:
        """``(node IP, process id)`` of the process running this trainable."""
        if self._local_ip is None:
            self._local_ip = node_ip_address()
        return self._local_ip, os.getpid()

    def is_actor(self) -> bool:
        """Whether this instance lives in a Ray actor (as in a sweep's worker)."""
        try:
            import ray

            return ray.is_initialized() and ray.get_runtime_context().get_actor_id() is not None
        except Exception:  # noqa: BLE001 - no Ray worker in this process
            return False

    def get_state(self) -> Dict[str, Any]:
        """The counters a checkpoint's metadata holds: iteration, totals, last result."""
        return {
            "iteration": self._iteration,
            "timesteps_total": self._timesteps_total,
            "time_total": self._time_total,
            "episodes_total": self._episodes_total,
            "last_result": self._last_result,
        }

    def get_auto_filled_metrics(self, now: Optional[datetime] = None, time_this_iter: Optional[float] = None,
                                timestamp: Optional[int] = None, debug_metrics_only: bool = False) -> Dict[str, Any]:
        """The fields :meth:`train` adds to every result (those a sweep's results carry):
        ``trial_id``, ``date``, ``timestamp``, ``time_this_iter_s``, ``time_total_s``,
        ``pid``, ``hostname``, ``node_ip``, ``config``, ``time_since_restore`` and
        ``iterations_since_restore``.  ``debug_metrics_only``: only those that need no
        finished iteration."""
        now = now or datetime.today()
        ip, pid = self.get_current_ip_pid()
        filled: Dict[str, Any] = {
            "trial_id": self.trial_id,
            "date": now.strftime("%Y-%m-%d_%H-%M-%S"),
            "timestamp": timestamp if timestamp else int(time.mktime(now.timetuple())),
            "time_this_iter_s": time_this_iter,
            "time_total_s": self._time_total,
            "pid": pid,
            "hostname": socket.gethostname(),
            "node_ip": ip,
            "config": self.config,
            "time_since_restore": self._time_since_restore,
            "iterations_since_restore": self._iterations_since_restore,
        }
        if self._timesteps_since_restore:
            filled["timesteps_since_restore"] = self._timesteps_since_restore
        if debug_metrics_only:
            filled = {key: value for key, value in filled.items() if key in _DEBUG_METRICS}
        return filled

    # ---- direct use (outside a sweep) ------------------------------------------------------
    def train(self) -> Dict[str, Any]:
        """Run one ``step()`` and return its result with the automatic fields filled:
        ``done`` (False unless given), ``training_iteration``, times, and those of
        :meth:`get_auto_filled_metrics`."""
        started = time.time()
        result = check_step_result(self, self.step())
        if "__duplicate__" in result:  # a finished function repeats its last result
            return result
        result = dict(result)
        self._iteration += 1
        self._iterations_since_restore += 1
        time_this_iter = result.get("time_this_iter_s")
        if time_this_iter is None:
            time_this_iter = time.time() - started
        self._time_total += time_this_iter
        self._time_since_restore += time_this_iter
        result.setdefault("done", False)
        if result.get("timesteps_this_iter") is not None:
            self._timesteps_total = (self._timesteps_total or 0) + result["timesteps_this_iter"]
            self._timesteps_since_restore += result["timesteps_this_iter"]
        if result.get("episodes_this_iter") is not None:
            self._episodes_total = (self._episodes_total or 0) + result["episodes_this_iter"]
        if self._timesteps_total is not None:
            result.setdefault("timesteps_total", self._timesteps_total)
        if self._episodes_total is not None:
            result.setdefault("episodes_total", self._episodes_total)
        result.setdefault("training_iteration", self._iteration)
        result.update(self.get_auto_filled_metrics(time_this_iter=time_this_iter, timestamp=result.get("timestamp")))
        self.log_result(result)
        self._last_result = result
        return result

    def train_buffered(self, buffer_time_s: float, max_buffer_length: int = 1000) -> List[Dict[str, Any]]:
        """Call :meth:`train` until ``buffer_time_s`` seconds have passed (at least once),
        ``max_buffer_length`` results are collected, or a result is ``done``, asks for a
        checkpoint or repeats a finished function's last one; returns the results."""
        results: List[Dict[str, Any]] = []
        send_at = time.time() + buffer_time_s
        while not results or time.time() < send_at:
            result = self.train()
            results.append(result)
            if (result.get("done") or result.get("should_checkpoint") or result.get("__duplicate__")
                    or len(results) >= max_buffer_length):
                break
        return results

    def save(self, checkpoint_dir: Optional[str] = None) -> SavedCheckpoint:
        """Save a checkpoint into ``checkpoint_dir`` (a new temp dir if None) and return
        its path, which carries the last result's metrics for :meth:`restore`."""
        checkpoint_dir = checkpoint_dir or tempfile.mkdtemp(prefix="checkpoint_")
        os.makedirs(checkpoint_dir, exist_ok=True)
        _save_into(self, checkpoint_dir)
        metrics = dict(self._last_result or {})
        metrics.update(training_iteration=self._iteration, time_total_s=self._time_total)
        if self._timesteps_total is not None:
            metrics["timesteps_total"] = self._timesteps_total
        if self._episodes_total is not None:
            metrics["episodes_total"] = self._episodes_total
        return SavedCheckpoint(checkpoint_dir, metrics)

    def restore(self, checkpoint_path: Any) -> None:
        """Load a checkpoint: what :meth:`save` returned, a directory path, a
        :class:`~fasttune.Checkpoint`, or a result carrying one (``.checkpoint``).

        The iteration count and total time come back from the metrics the checkpoint
        carries (a plain path or Checkpoint carries none: they start from 0, as in Ray
        Tune)."""
        metrics: Dict[str, Any] = {}
        checkpoint = checkpoint_path
        if isinstance(checkpoint, SavedCheckpoint):
            metrics = checkpoint.metrics
        elif not isinstance(checkpoint, (str, os.PathLike)) and hasattr(checkpoint, "checkpoint"):
            metrics = dict(getattr(checkpoint, "metrics", None) or {})  # a Result, say
            checkpoint = checkpoint.checkpoint
        if isinstance(checkpoint, (str, os.PathLike)):
            checkpoint = Checkpoint.from_directory(os.fspath(checkpoint))
        if not isinstance(checkpoint, Checkpoint):
            raise TypeError(
                f"{type(self).__name__}.restore() takes what save() returned, a checkpoint "
                f"directory or a tune.Checkpoint, got {type(checkpoint_path).__name__}."
            )
        self._iteration = metrics.get("training_iteration", 0)
        self._time_total = metrics.get("time_total_s", 0.0)
        self._timesteps_total = metrics.get("timesteps_total")
        self._episodes_total = metrics.get("episodes_total")
        self._time_since_restore = 0.0
        self._iterations_since_restore = 0
        self._timesteps_since_restore = 0
        self._load_from(checkpoint)
        self._restored = True

    def _load_from(self, checkpoint: Checkpoint) -> None:
        with checkpoint.as_directory() as directory:
            self.load_checkpoint(load_checkpoint_payload(directory))

    def export_model(self, export_formats: Union[List[str], str], export_dir: Optional[str] = None) -> Dict[str, str]:
        """Export the model in ``export_formats`` into ``export_dir`` (default: the
        logdir) through ``_export_model``; returns ``{format: path}``."""
        if isinstance(export_formats, str):
            export_formats = [export_formats]
        return self._export_model(export_formats, export_dir or self.logdir)

    def reset(self, new_config: Dict[str, Any], storage: Any = None) -> bool:
        """Take ``new_config`` for a new trial in this instance: True when
        ``reset_config`` accepted it (the counters then start again from 0)."""
        self.config = new_config
        self._storage = storage
        if not self.reset_config(new_config):
            return False
        self._reset_counters()
        return True

    def stop(self) -> None:
        """Release the instance (calls ``cleanup``)."""
        self.cleanup()


def is_trainable_class(obj: Any) -> bool:
    """Whether the worker steps ``obj`` as a class trainable (a FunctionTrainable runs
    its function instead)."""
    return isinstance(obj, type) and issubclass(obj, Trainable) and not obj._runs_a_function


def check_step_result(trainable: Trainable, result: Any) -> Dict[str, Any]:
    if not isinstance(result, dict):
        raise TypeError(
            f"{type(trainable).__name__}.step() must return a dict of metrics, got "
            f"{type(result).__name__}."
        )
    return result


def _save_into(trainable: Trainable, checkpoint_dir: str) -> None:
    """Call ``save_checkpoint(checkpoint_dir)`` and store a returned dict in the directory."""
    returned = trainable.save_checkpoint(checkpoint_dir)
    if returned is None or (isinstance(returned, str) and returned == checkpoint_dir):
        return
    if not isinstance(returned, dict):
        raise TypeError(
            f"{type(trainable).__name__}.save_checkpoint() must return None or checkpoint_dir "
            f"(files written into {checkpoint_dir!r}) or a dict, got {returned!r}."
        )
    with open(os.path.join(checkpoint_dir, DICT_CHECKPOINT_FILE), "wb") as f:
        pickle.dump(returned, f, protocol=pickle.HIGHEST_PROTOCOL)


def load_checkpoint_payload(checkpoint_dir: str) -> Union[Dict[str, Any], str]:
    """What ``load_checkpoint`` receives for ``checkpoint_dir``: the stored dict or the path."""
    dict_file = os.path.join(checkpoint_dir, DICT_CHECKPOINT_FILE)
    if os.path.isfile(dict_file):
        with open(dict_file, "rb") as f:
            return pickle.load(f)
    return checkpoint_dir


def save_to_new_directory(trainable: Trainable, target: str) -> None:
    """Save ``trainable`` into ``target`` atomically: a temp dir renamed only on success,
    so a ``save_checkpoint`` that raises leaves no (partial) ``target`` behind."""
    parent = os.path.dirname(os.path.abspath(target))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=os.path.basename(target) + ".tmp", dir=parent)
    try:
        _save_into(trainable, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # Not fsynced, as a checkpoint the worker copies (execution/_worker.py) is not.
    move_directory_into_place(tmp, target, durable=False)
