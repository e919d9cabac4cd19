"""XGBoost's report-and-checkpoint callback, at Ray Tune's ``ray.tune.integration.xgboost``.

Pass it to ``xgboost.train`` inside a trainable: every boosting round reports the metrics of
``evals`` as ``"<data name>-<metric>"`` (``"eval-logloss"``), and the booster is checkpointed
every ``frequency`` rounds and at the end.  To resume, continue from ``get_model``::

    import xgboost
    import fasttune as tune
    from fasttune.integration.xgboost import TuneReportCheckpointCallback

    def train(config):
        checkpoint = tune.get_checkpoint()
        booster = TuneReportCheckpointCallback.get_model(checkpoint) if checkpoint else None
        done = booster.num_boosted_rounds() if booster else 0
        xgboost.train(config, dtrain, num_boost_round=100 - done, evals=[(dvalid, "eval")],
                      xgb_model=booster,
                      callbacks=[TuneReportCheckpointCallback(metrics={"loss": "eval-logloss"}, frequency=5)])
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Union

from fasttune._optional import import_optional
from fasttune.integration._boosting import BoostingReportCallback, RemovedReportCallback

_xgboost = import_optional("xgboost", "xgboost", "fasttune.integration.xgboost")

__all__ = ["TuneReportCheckpointCallback", "TuneReportCallback"]


class TuneReportCheckpointCallback(BoostingReportCallback, _xgboost.callback.TrainingCallback):
    """Reports XGBoost's evaluation metrics after every round and checkpoints the booster.

    ``metrics``: None reports every metric of ``evals``; a name or a list of names reports those;
    a dict ``{reported name: xgboost name}`` renames.  ``filename``: the booster's file in the
    checkpoint (``"model.ubj"``).  ``frequency``: checkpoint after every ``frequency``-th round
    (0: none during training).  ``checkpoint_at_end``: checkpoint after the last round too,
    unless the frequency just did.  ``results_postprocessing_fn``: maps the chosen metrics to
    the reported dict (with ``xgboost.cv`` each value is a ``(mean, std)`` pair).
    """

    CHECKPOINT_NAME = "model.ubj"

    def __init__(
        self,
        metrics: Optional[Union[str, List[str], Dict[str, str]]] = None,
        filename: str = CHECKPOINT_NAME,
        frequency: int = 0,
        checkpoint_at_end: bool = True,
        results_postprocessing_fn: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None,
    ) -> None:
        BoostingReportCallback.__init__(self, metrics, filename, frequency, checkpoint_at_end,
                                        results_postprocessing_fn)
        _xgboost.callback.TrainingCallback.__init__(self)
        self._latest: Dict[str, Dict[str, Any]] = {}
        # The round of the last checkpoint, so the one at the end is not written twice.
        self._last_checkpoint_iteration: Optional[int] = None

    @classmethod
    def get_model(cls, checkpoint: Any, filename: str = CHECKPOINT_NAME) -> Any:
        """The ``xgboost.Booster`` saved in ``checkpoint`` under ``filename``."""

        def load(path: str) -> Any:
            booster = _xgboost.Booster()
            booster.load_model(path)
            return booster

        return cls._load_model(checkpoint, filename, load)

    @staticmethod
    def _latest_metrics(evals_log: Dict[str, Dict[str, list]]) -> Dict[str, Dict[str, Any]]:
        """``{data name: {metric: value}}`` of the last round from XGBoost's history of every
        round (with ``xgboost.cv`` a value is a ``(mean, std)`` pair)."""
        return {data: {metric: values[-1] for metric, values in metrics.items()} for data, metrics in evals_log.items()}

    def after_iteration(self, model: Any, epoch: int, evals_log: Dict[str, Dict[str, list]]) -> bool:
        # ``epoch`` counts this train call's rounds from 0, also when it continues a model.
        self._latest = self._latest_metrics(evals_log)
        metrics = self._metrics_to_report(self._latest)
        if self._checkpoint_due(epoch):
            self._last_checkpoint_iteration = epoch
            self._report(metrics, model)
        else:
            self._report(metrics)
        return False  # never asks XGBoost to stop

    def after_training(self, model: Any) -> Any:
        if not self._checkpoint_at_end:
            return model
        # As Ray Tune's: this call's round against the booster's rounds, so when the call continues
        # a model, the last round may be checkpointed twice (by frequency and here).
        if self._last_checkpoint_iteration == model.num_boosted_rounds() - 1:
            return model
        self._report(self._metrics_to_report(self._latest) if self._latest else {}, model)
        return model


class TuneReportCallback(RemovedReportCallback):
    """Removed in Ray Tune: creating one raises; use :class:`TuneReportCheckpointCallback`."""
