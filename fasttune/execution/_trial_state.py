"""The runner's record of one trial: what the event loop keeps about it beside the
``Trial`` itself and its row of the core's ``TrialTable`` (status, iteration, worker
slot, metrics), in one record rather than in dicts keyed by trial.
"""
from __future__ import annotations

from itertools import repeat
from typing import Any, Dict, Optional, Tuple

import numpy as np

from fasttune._flatten import flatten_dict
from fasttune.logger._trial_files import config_to_json

_STR_ONLY = frozenset((str,))
# Types whose instances are never a dict, not even to isinstance (built-in types: an
# instance cannot pose as another class); any other type is asked isinstance of each value.
_NEVER_DICT = frozenset((str, int, float, bool, type(None), list, tuple, bytes,
                         np.float64, np.float32, np.int64, np.int32, np.bool_))
# The config JSON of result rows no file keeps (see TrialState.take_config).
_UNRENDERED_CONFIG = "{}"


def stay_when_flattened(keys: Optional[Tuple[Any, ...]]) -> bool:
    """Whether each of ``keys`` (None: unknown keys) names a top-level entry that
    flattening leaves under the same key, where the entry holds no dict and no other key
    flattens onto it: each a non-empty ``str`` without "/".

    Example:
        >>> stay_when_flattened(("training_iteration", "score")), stay_when_flattened(("config/x",))
        (True, False)
    """
    if keys is None:
        return False
    for key in keys:
        if type(key) is not str or not key or "/" in key:
            return False
    return True


def reads_as_flattened(result: Dict[str, Any], keys: Optional[Tuple[Any, ...]]) -> bool:
    """Whether ``result`` reads as its flattened form (``flatten_dict``) at each of ``keys``
    (None: unknown keys): keys that :func:`stay_when_flattened`, whose values are no dicts
    (or missing), in a result whose keys are all ``str`` (flattening turns others into
    ``str``, which could replace a value) and none empty (an empty key's dict is flattened
    without a prefix).

    Example:
        >>> result = {"score": 1.0, "training_iteration": 2, "config": {"x": 0.5}}
        >>> reads_as_flattened(result, ("training_iteration", "score"))
        True
        >>> reads_as_flattened(result, ("config/x",)), reads_as_flattened({"score": {"a": 1}}, ("score",))
        (False, False)
        >>> reads_as_flattened({"score": 1.0, "": {"score": 9.0}}, ("score",))  # flattened, score is 9.0
        False
    """
    if not stay_when_flattened(keys) or "" in result or not _STR_ONLY.issuperset(map(type, result)):
        return False
    for key in keys:
        if isinstance(result.get(key), dict):
            return False
    return True  # (a key it lacks, its flattened form lacks too)


class PendingReset:
    """A ``reset_trial`` not carried out yet: the trial goes on with ``config`` from the
    checkpoint at ``source`` (None: its own state, no checkpoint)."""

    __slots__ = ("config", "tag", "source", "result", "foreign")

    def __init__(self, config: Dict[str, Any], tag: str, source: Optional[str], result: Dict[str, Any],
                 foreign: bool) -> None:
        self.config = config
        self.tag = tag
        self.source = source
        self.result = result  # what was reported with that checkpoint
        self.foreign = foreign  # another trial's checkpoint: copied in first (and pinned)


class TrialState:
    """What the runner keeps about one trial between events."""

    __slots__ = ("config_json", "config_source", "decision", "at_decision_point", "reset_at_decision", "reset_on_start",
                 "cloning", "rewind_on_start", "prune_on_start", "queueable", "next_checkpoint_index",
                 "flat_config_source", "flat_config", "decision_in_flight", "node")

    def __init__(self, queueable: bool = True) -> None:
        self.config_json: Optional[str] = None  # the config as result rows carry it; set at first start
        self.config_source: Optional[Dict[str, Any]] = None  # the config object config_json renders
        # A STOP or PAUSE taken on results between decision points, answered at the next.
        self.decision: Optional[str] = None
        # A STOP or PAUSE (and the iteration it was taken at) whose end the runner has not
        # seen yet: a snapshot keeps it, and a restore carries it out (see _snapshots).
        self.decision_in_flight: Optional[Tuple[str, Any]] = None
        # Waiting at a decision point in the batch being handled: a reset applies in place.
        self.at_decision_point = False
        self.reset_at_decision: Optional[PendingReset] = None  # carried out when answering
        self.reset_on_start: Optional[PendingReset] = None  # carried out when it next starts
        self.cloning: Optional[PendingReset] = None  # its worker is copying another trial's checkpoint
        self.rewind_on_start = False  # restored: its files are rewound when it next starts
        # Failed and to be retried: checkpoints its dead run saved but never reported go before
        # the next run writes under those names (workers upload without clearing first).
        self.prune_on_start = False
        self.queueable = queueable  # may wait in a busy worker's queue of next trials
        self.node: Optional[str] = None  # the Ray node its latest run segment runs on
        self.next_checkpoint_index: Optional[int] = None  # None: as many as it has
        self.flat_config_source: Optional[Dict[str, Any]] = None  # the config flat_config flattens
        self.flat_config: Dict[str, Any] = {}  # its "config/..." keys, as flatten_dict makes them

    def flatten_result(self, result: Dict[str, Any]) -> Dict[str, Any]:
        """``flatten_dict(result)`` (what schedulers and searchers judge), with the config's
        part flattened once per config object: a result is its flat metrics plus the config
        the runner put last, and flattening the config again at every result is most of
        the cost.  A config is known by identity, as for result rows (``take_config``): it
        changes by being replaced (``set_config``, a reset), never in place."""
        config = result.get("config")
        if type(config) is not dict or not config or next(reversed(result)) != "config":
            return flatten_dict(result)
        flat = result.copy()
        del flat["config"]
        # (the set of types is asked first: a third of the cost of isinstance on each value)
        if not flat or not _STR_ONLY.issuperset(map(type, flat)) or (
                not _NEVER_DICT.issuperset(map(type, flat.values())) and any(map(isinstance, flat.values(), repeat(dict)))):
            return flatten_dict(result)  # other nested values, or keys to make str: the general way
        if config is not self.flat_config_source:
            self.flat_config = flatten_dict(config, "/", "config")
            self.flat_config_source = config
        flat.update(self.flat_config)
        return flat

    def take_config(self, config: Dict[str, Any], render: bool = True) -> bool:
        """Render ``config`` for the trial's result rows unless it is the object rendered
        last (a scheduler's ``trial.set_config`` or a reset gives a new one); whether it was.
        ``render=False``: no file keeps the rows (a simulated sweep's default), so they
        carry an empty config rather than one rendered for nothing."""
        if config is self.config_source:
            return False
        self.config_json = config_to_json(config) if render else _UNRENDERED_CONFIG
        self.config_source = config
        return True

    def next_index(self, trial: Any) -> int:
        """The number the trial's next checkpoint directory gets (unique after deletions)."""
        index = self.next_checkpoint_index
        return len(trial.checkpoints) if index is None else index


class TrialStates(dict):
    """The records of all trials by trial id; a trial restored finished, which nothing
    changes again, gets its record only if something asks for it."""

    def __missing__(self, trial_id: str) -> TrialState:
        state = self[trial_id] = TrialState()
        return state
