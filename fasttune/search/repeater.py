"""``Repeater``: run each suggested config several times and report the average.

Example:
    >>> from fasttune.search.searcher import Searcher
    >>> from fasttune.search.repeater import Repeater
    >>> class One(Searcher):
    ...     def __init__(self):
    ...         super().__init__(metric="loss", mode="min")
    ...         self.seen = []
    ...     def suggest(self, trial_id):
    ...         return {"lr": 0.1}
    ...     def on_trial_complete(self, trial_id, result=None, error=False):
    ...         self.seen.append((trial_id, result))
    >>> inner = One()
    >>> repeater = Repeater(inner, repeat=2)
    >>> repeater.suggest("a"), repeater.suggest("b")
    ({'lr': 0.1, '__trial_index__': 0}, {'lr': 0.1, '__trial_index__': 1})
    >>> repeater.on_trial_complete("a", {"loss": 1.0})
    >>> repeater.on_trial_complete("b", {"loss": 3.0})
    >>> inner.seen
    [('a', {'loss': 2.0})]
"""
from __future__ import annotations

import copy
import logging
import math
from typing import Any, Dict, List, Optional, Union

from fasttune.search.searcher import Searcher

logger = logging.getLogger(__name__)

TRIAL_INDEX = "__trial_index__"
"""The config key holding a repeated trial's index in its group (0 .. repeat-1)."""

__all__ = ["Repeater", "TRIAL_INDEX"]


class _TrialGroup:
    """The trials that share one suggested config; the first is the one the searcher knows."""

    def __init__(self, primary_trial_id: str, config: Dict, max_trials: int) -> None:
        self.primary_trial_id = primary_trial_id
        self.config = config
        self.max_trials = max_trials
        self.trial_ids: List[str] = [primary_trial_id]
        self.scores: Dict[str, float] = {}
        self.errors: Dict[str, bool] = {}

    def full(self) -> bool:
        return len(self.trial_ids) >= self.max_trials

    def all_reported(self) -> bool:
        return self.full() and len(self.scores) == len(self.trial_ids)


class Repeater(Searcher):
    """Runs every config of the wrapped searcher ``repeat`` times.

    The wrapped searcher sees one trial per group (the first) and, once the
    whole group has completed, ``on_trial_complete`` with the group's mean
    metric (errored trials and trials without the metric are left out of the
    mean; ``nan`` if none has it).  ``num_samples`` counts every trial,
    repeats included: for 3 configs repeated 5 times set ``num_samples=15``.
    Early-stopping schedulers make the repeats unequal; avoid them.

    Args:
        searcher: The searcher whose configs are repeated.
        repeat: How many trials each config runs, an int >= 1.
        set_index: Add ``__trial_index__`` (0 .. repeat-1) to each config,
            e.g. to seed each repeat differently.
    """

    def __init__(self, searcher: Searcher, repeat: int = 1, set_index: bool = True) -> None:
        if not isinstance(searcher, Searcher):
            raise TypeError(f"Repeater wraps a fasttune Searcher, got {type(searcher).__name__}.")
        if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
            raise ValueError(f"repeat must be an int >= 1, got {repeat!r}.")
        self.searcher = searcher
        self.repeat = repeat
        self._set_index = bool(set_index)
        self._groups: List[_TrialGroup] = []
        self._trial_id_to_group: Dict[str, _TrialGroup] = {}
        self._current_group: Optional[_TrialGroup] = None
        super().__init__(metric=searcher.metric, mode=searcher.mode)

    @property
    def metric(self) -> Any:
        return self.searcher.metric

    @property
    def mode(self) -> Any:
        return self.searcher.mode

    def set_search_properties(self, metric: Optional[str], mode: Optional[str], config: Dict, **spec: Any) -> bool:
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id: str) -> Optional[Union[Dict, str]]:
        group = self._current_group
        if group is None or group.full():
            config = self.searcher.suggest(trial_id)
            if config is None or (isinstance(config, str) and config == Searcher.FINISHED):
                return config
            group = _TrialGroup(trial_id, copy.deepcopy(dict(config)), self.repeat)
            self._groups.append(group)
            self._current_group = group
        else:
            group.trial_ids.append(trial_id)
        self._trial_id_to_group[trial_id] = group
        config = copy.deepcopy(group.config)
        if self._set_index:
            config[TRIAL_INDEX] = len(group.trial_ids) - 1
        return config

    def on_trial_result(self, trial_id: str, result: Dict) -> None:
        """Intermediate results are not forwarded: the searcher only hears group averages."""

    def on_trial_complete(self, trial_id: str, result: Optional[Dict] = None, error: bool = False) -> None:
        group = self._trial_id_to_group.get(trial_id)
        if group is None:
            logger.error("Repeater: trial %s was not suggested by this Repeater; its result is ignored.", trial_id)
            return
        metric = self.searcher.metric
        score = float("nan")
        if not error and result and metric in result and result[metric] is not None:
            score = float(result[metric])
        group.scores[trial_id] = score
        group.errors[trial_id] = bool(error)
        if not group.all_reported():
            return
        present = [s for s in group.scores.values() if not math.isnan(s)]
        mean = sum(present) / len(present) if present else float("nan")
        self.searcher.on_trial_complete(
            group.primary_trial_id,
            result={metric: mean},
            error=all(group.errors.values()),
        )

    def get_state(self) -> Dict:
        """The groups so far (not the wrapped searcher's state)."""
        return {
            "repeat": self.repeat,
            "set_index": self._set_index,
            "groups": copy.deepcopy(self._groups),
            "current": None if self._current_group is None else self._groups.index(self._current_group),
        }

    def set_state(self, state: Dict) -> None:
        self.repeat = state["repeat"]
        self._set_index = state["set_index"]
        self._groups = copy.deepcopy(state["groups"])
        self._trial_id_to_group = {tid: g for g in self._groups for tid in g.trial_ids}
        current = state["current"]
        self._current_group = None if current is None else self._groups[current]

    def save(self, checkpoint_path: str) -> None:
        """Saves the wrapped searcher (``SearchGenerator.save_to_dir`` saves the groups too)."""
        self.searcher.save(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        self.searcher.restore(checkpoint_path)
