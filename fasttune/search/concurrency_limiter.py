"""``ConcurrencyLimiter``: at most ``max_concurrent`` suggested trials alive at once.

Example:
    >>> from fasttune.search.searcher import Searcher
    >>> from fasttune.search.concurrency_limiter import ConcurrencyLimiter
    >>> class Count(Searcher):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.n = 0
    ...     def suggest(self, trial_id):
    ...         self.n += 1
    ...         return {"x": self.n}
    ...     def on_trial_complete(self, trial_id, result=None, error=False):
    ...         pass
    >>> limiter = ConcurrencyLimiter(Count(), max_concurrent=2)
    >>> limiter.suggest("a"), limiter.suggest("b"), limiter.suggest("c")
    ({'x': 1}, {'x': 2}, None)
    >>> limiter.on_trial_complete("a", {"loss": 1.0})
    >>> limiter.suggest("c")
    {'x': 3}
"""
from __future__ import annotations

import copy
import logging
from typing import Any, Dict, List, Optional, Union

from fasttune.search.searcher import Searcher

logger = logging.getLogger(__name__)

__all__ = ["ConcurrencyLimiter"]


class ConcurrencyLimiter(Searcher):
    """Wraps a searcher so that no more than ``max_concurrent`` of its trials are live.

    A trial is live from the suggestion that created it until its
    ``on_trial_complete``.  At the limit, ``suggest`` returns ``None`` ("not
    now") without asking the wrapped searcher.  If the wrapped searcher limits
    concurrency itself (its ``set_max_concurrency`` returns ``True``), the
    limiter only passes calls through.

    Args:
        searcher: The searcher to limit.
        max_concurrent: The most live trials, an int >= 1.
        batch: Hold back completions until every live trial of the batch has
            completed, then report them all to the wrapped searcher; no new
            suggestion is made before that.
    """

    def __init__(self, searcher: Searcher, max_concurrent: int, batch: bool = False) -> None:
        if not isinstance(searcher, Searcher):
            raise TypeError(
                f"ConcurrencyLimiter wraps a fasttune Searcher, got {type(searcher).__name__}; a "
                "SearchAlgorithm such as BasicVariantGenerator takes max_concurrent itself."
            )
        if isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int) or max_concurrent < 1:
            raise ValueError(f"max_concurrent must be an int >= 1, got {max_concurrent!r}.")
        self.searcher = searcher
        self.max_concurrent = max_concurrent
        self.batch = bool(batch)
        self.live_trials: set = set()
        self.num_unfinished_live_trials = 0
        self.cached_results: Dict[str, tuple] = {}
        self._limit_concurrency = True
        self._hand_limit_to_searcher()
        super().__init__(metric=searcher.metric, mode=searcher.mode)

    def _hand_limit_to_searcher(self) -> None:
        self._limit_concurrency = not self.searcher.set_max_concurrency(self.max_concurrent)

    @property
    def metric(self) -> Any:
        return self.searcher.metric

    @property
    def mode(self) -> Any:
        return self.searcher.mode

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        """Changes the limit; returns ``True`` (this searcher limits concurrency)."""
        if isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int) or max_concurrent < 1:
            raise ValueError(f"max_concurrent must be an int >= 1, got {max_concurrent!r}.")
        self.max_concurrent = max_concurrent
        return True

    def set_search_properties(self, metric: Optional[str], mode: Optional[str], config: Dict, **spec: Any) -> bool:
        self._hand_limit_to_searcher()
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id: str) -> Optional[Union[Dict, str]]:
        if not self._limit_concurrency:
            return self.searcher.suggest(trial_id)
        if trial_id in self.live_trials:
            raise ValueError(f"Trial id {trial_id!r} was already suggested; trial ids must be unique.")
        if len(self.live_trials) >= self.max_concurrent:
            logger.debug("No suggestion for %s: %d/%d trials live.", trial_id, len(self.live_trials), self.max_concurrent)
            return None
        suggestion = self.searcher.suggest(trial_id)
        if suggestion is not None and not (isinstance(suggestion, str) and suggestion == Searcher.FINISHED):
            self.live_trials.add(trial_id)
            self.num_unfinished_live_trials += 1
        return suggestion

    def on_trial_result(self, trial_id: str, result: Dict) -> None:
        self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: Optional[Dict] = None, error: bool = False) -> None:
        if not self._limit_concurrency:
            self.searcher.on_trial_complete(trial_id, result=result, error=error)
            return
        if trial_id not in self.live_trials:
            return  # not ours, or already reported
        if not self.batch:
            self.searcher.on_trial_complete(trial_id, result=result, error=error)
            self.live_trials.discard(trial_id)
            self.num_unfinished_live_trials -= 1
            return
        if trial_id in self.cached_results:
            return
        self.cached_results[trial_id] = (result, error)
        self.num_unfinished_live_trials -= 1
        if self.num_unfinished_live_trials > 0:
            return
        cached, self.cached_results = self.cached_results, {}
        for done_id, (done_result, done_error) in cached.items():
            self.searcher.on_trial_complete(done_id, result=done_result, error=done_error)
            self.live_trials.discard(done_id)
        self.num_unfinished_live_trials = 0

    def on_pause(self, trial_id: str) -> None:
        """Passes a scheduler's pause of ``trial_id`` on to the wrapped searcher, when it
        listens for pauses (as BOHB's does); a paused trial keeps its place in the limit."""
        hook = getattr(self.searcher, "on_pause", None)
        if hook is not None:
            hook(trial_id)

    def on_unpause(self, trial_id: str) -> None:
        """Passes the trial's resumption on to the wrapped searcher, like :meth:`on_pause`."""
        hook = getattr(self.searcher, "on_unpause", None)
        if hook is not None:
            hook(trial_id)

    def add_evaluated_point(
        self,
        parameters: Dict,
        value: float,
        error: bool = False,
        pruned: bool = False,
        intermediate_values: Optional[List[float]] = None,
    ) -> None:
        self.searcher.add_evaluated_point(parameters, value, error, pruned, intermediate_values)

    def get_state(self) -> Dict:
        """The limiter's own bookkeeping (not the wrapped searcher's)."""
        state = {k: v for k, v in self.__dict__.items() if k != "searcher"}
        return copy.deepcopy(state)

    def set_state(self, state: Dict) -> None:
        self.__dict__.update(copy.deepcopy(state))

    def save(self, checkpoint_path: str) -> None:
        """Saves the wrapped searcher (``SearchGenerator.save_to_dir`` saves the limiter too)."""
        self.searcher.save(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        self.searcher.restore(checkpoint_path)
