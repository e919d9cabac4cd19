"""Class trainables (``ray.tune.Trainable``): ``setup`` once, then ``step`` per iteration.

A worker runs a class trainable through the same batched protocol as a function: each
``step()`` result is one reported result (same automatic fields, same in-worker stop
check, same decision points), and the worker saves checkpoints with
``save_checkpoint`` when the trial's ``CheckpointConfig`` asks for them.

This module never imports ray: a Trainable can be built and stepped in plain Python.
"""
from __future__ import annotations

import copy
import os
import pickle
import shutil
import tempfile
from typing import Any, Dict, Optional, Union

from fasttune._atomic import move_directory_into_place
from fasttune.trainable.session import get_session

#: Where the dict a ``save_checkpoint`` returned is kept inside the checkpoint directory.
DICT_CHECKPOINT_FILE = "_dict_checkpoint.pkl"


class Trainable:
    """Subclass this and override ``setup``, ``step`` and, to checkpoint, ``save_checkpoint``
    and ``load_checkpoint``.

    ``step()`` returns a dict of metrics for one training iteration; a result with
    ``done: True`` ends the trial.  ``save_checkpoint(checkpoint_dir)`` writes files into
    ``checkpoint_dir`` and returns ``None``, or returns a dict that fasttune stores for
    you; ``load_checkpoint`` then receives that dict, or else the directory path.

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
    """

    def __init__(self, config: Optional[Dict[str, Any]] = None, logger_creator: Any = None,
                 storage: Any = None) -> None:
        self.config: Dict[str, Any] = dict(config or {})
        self._iteration = 0
        session = get_session()
        context = session.context if session is not None else None
        self._trial_id = getattr(context, "trial_id", None) or "default"
        self._trial_name = getattr(context, "trial_name", None) or "default"
        self._logdir = getattr(context, "trial_dir", None)
        if self._logdir is None:
            self._logdir = tempfile.mkdtemp(prefix=f"{type(self).__name__}_")
        self.setup(copy.deepcopy(self.config))

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

    @classmethod
    def default_resource_request(cls, config: Dict[str, Any]) -> Any:
        """Resources for a trial of this trainable when the experiment gives none:
        a dict such as ``{"cpu": 2}``, a PlacementGroupFactory, or None (1 CPU)."""
        return None

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
        """The trial's directory (results and checkpoints)."""
        return self._logdir

    def get_config(self) -> Dict[str, Any]:
        return self.config

    # ---- direct use (outside a sweep) ------------------------------------------------------
    def train(self) -> Dict[str, Any]:
        """Run one ``step()`` and return its result with ``training_iteration`` and ``done``."""
        result = check_step_result(self, self.step())
        self._iteration += 1
        result = dict(result)
        result.setdefault("done", False)
        result["training_iteration"] = self._iteration
        return result

    def save(self, checkpoint_dir: Optional[str] = None) -> str:
        """Save a checkpoint into ``checkpoint_dir`` (a new temp dir if None); returns it."""
        checkpoint_dir = checkpoint_dir or tempfile.mkdtemp(prefix="checkpoint_")
        os.makedirs(checkpoint_dir, exist_ok=True)
        _save_into(self, checkpoint_dir)
        return checkpoint_dir

    def restore(self, checkpoint_dir: str) -> None:
        """Load a checkpoint written by :meth:`save` (or by a sweep's worker)."""
        self.load_checkpoint(load_checkpoint_payload(checkpoint_dir))

    def stop(self) -> None:
        self.cleanup()


def is_trainable_class(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, Trainable)


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
    if returned is None:
        return
    if not isinstance(returned, dict):
        raise TypeError(
            f"{type(trainable).__name__}.save_checkpoint() must return None (files written "
            f"into checkpoint_dir) or a dict, got {type(returned).__name__}."
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
