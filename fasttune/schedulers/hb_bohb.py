"""``HyperBandForBOHB``: HyperBand as BOHB runs it (``ray.tune.schedulers.HyperBandForBOHB``).

Use it with :class:`fasttune.search.bohb.TuneBOHB`.  It is
:class:`~fasttune.schedulers.HyperBandScheduler` with three changes:

* A band fills its brackets largest first: the bracket with the most trials and the
  smallest budget (``s = S - 1``) comes first, then ``s = S - 2``, ..., ``s = 0``.
* Every result a trial reports at one of its bracket's milestones carries
  ``result["hyperband_info"]["budget"]`` (the milestone), so that TuneBOHB fits its model
  for that budget; a result the trial pauses on also carries
  ``hyperband_info["paused"] = True`` (TuneBOHB's ``max_concurrent`` does not count
  paused trials).  Every other result carries an empty ``hyperband_info``.
* A trial at its bracket's last milestone pauses until its bracket-mates are there too,
  and then they are all stopped (HyperBandScheduler stops it at once): so TuneBOHB sees
  the results at the largest budget.  As in Ray Tune, the result that completes a round
  reaches the searcher only when its trial goes on (a stopped trial's last result does
  not reach searchers).

Example:
    >>> from fasttune.schedulers import HyperBandForBOHB
    >>> bohb = HyperBandForBOHB(metric="loss", mode="min", max_t=9, reduction_factor=3)
    >>> bohb.bracket_shapes()  # by s; a band fills them from the last to the first
    [(3, 9, [9]), (5, 3, [3, 9]), (9, 1, [1, 3, 9])]
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict

from fasttune.schedulers.hyperband import HyperBandScheduler
from fasttune.schedulers.trial_scheduler import TrialScheduler

if TYPE_CHECKING:  # pragma: no cover
    from fasttune.experiment.trial import Trial
    from fasttune.schedulers._controller import TuneControllerView


class HyperBandForBOHB(HyperBandScheduler):
    """HyperBand for BOHB: brackets largest first, results tagged with their budget.

    Takes :class:`~fasttune.schedulers.HyperBandScheduler`'s arguments (``time_attr``,
    ``metric``, ``mode``, ``max_t``, ``reduction_factor``, ``stop_last_trials``).

    Example:
        >>> import fasttune as tune
        >>> from fasttune.schedulers import HyperBandForBOHB
        >>> from fasttune.search.bohb import TuneBOHB
        >>> config = tune.TuneConfig(metric="loss", mode="min", search_alg=TuneBOHB(seed=0),
        ...                          scheduler=HyperBandForBOHB(max_t=27))
    """

    def on_trial_result(self, tune_controller: "TuneControllerView", trial: "Trial", result: Dict[str, Any]) -> str:
        info: Dict[str, Any] = {}
        result["hyperband_info"] = info
        if trial.trial_id not in self._bracket_of:
            self.on_trial_add(tune_controller, trial)
        bracket = self._bracket_of[trial.trial_id]
        milestone = bracket.milestone
        judged = trial.trial_id in bracket.live and not (bracket.halves == 0 and not bracket.stop_last_trials)
        decision = super().on_trial_result(tune_controller, trial, result)
        time = result.get(self._time_attr)
        if judged and time is not None and time >= milestone:
            info["budget"] = milestone
        if decision == TrialScheduler.PAUSE:
            info["paused"] = True
        return decision

    def debug_string(self) -> str:
        return super().debug_string().replace("Using HyperBand:", "Using HyperBandForBOHB:", 1)

    def _bracket_s(self, position: int) -> int:
        return self._s_max_1 - 1 - position  # largest bracket first

    def _at_last_milestone(self, tune_controller: "TuneControllerView", bracket: Any, trial_id: str) -> str:
        if bracket.at_milestone():
            return self._process(tune_controller, bracket, trial_id)  # stops them all
        return TrialScheduler.PAUSE


__all__ = ["HyperBandForBOHB"]
