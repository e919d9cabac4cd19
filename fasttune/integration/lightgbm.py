"""LightGBM's report-and-checkpoint callback, at Ray Tune's ``ray.tune.integration.lightgbm``.

Pass it to ``lightgbm.train`` inside a trainable: every boosting round reports the metrics of
``valid_sets`` as ``"<data name>-<metric>"`` (``"eval-binary_logloss"``; with ``lightgbm.cv``
``"valid-binary_logloss-mean"`` and ``"-stdv"``), and the booster is checkpointed every
``frequency`` rounds and after the last round.  To resume, continue from ``get_model``::

    import lightgbm
    import fasttune as tune
    from fasttune.integration.lightgbm import TuneReportCheckpointCallback

    def train(config):
        checkpoint = tune.get_checkpoint()
        booster = TuneReportCheckpointCallback.get_model(checkpoint) if checkpoint else None
        done = booster.current_iteration() if booster else 0
        lightgbm.train(config, train_set, num_boost_round=100 - done, valid_sets=[valid_set],
                       valid_names=["eval"], init_model=booster,
                       callbacks=[TuneReportCheckpointCallback(metrics={"loss": "eval-binary_logloss"})])
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Union

from fasttune._optional import import_optional
from fasttune.integration._boosting import BoostingReportCallback, RemovedReportCallback

_lightgbm = import_optional("lightgbm", "lightgbm", "fasttune.integration.lightgbm")

__all__ = ["TuneReportCheckpointCallback", "TuneReportCallback"]


class TuneReportCheckpointCallback(BoostingReportCallback):
    """Reports LightGBM's evaluation metrics after every round and checkpoints the booster.

    ``metrics``: None reports every metric of ``valid_sets``; a name or a list of names reports
    those; a dict ``{reported name: lightgbm name}`` renames.  ``filename``: the booster's file in
    the checkpoint (``"model.txt"``).  ``frequency``: checkpoint after every ``frequency``-th round
    (0: none during training).  ``checkpoint_at_end``: checkpoint after the last planned round
    (a run that early stopping ends has none).  ``results_postprocessing_fn``: maps the chosen
    metrics to the reported dict.
    """

    CHECKPOINT_NAME = "model.txt"

    def __init__(
        self,
        metrics: Optional[Union[str, List[str], Dict[str, str]]] = None,
        filename: str = CHECKPOINT_NAME,
        frequency: int = 0,
        checkpoint_at_end: bool = True,
        results_postprocessing_fn: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None,
    ) -> None:
        super().__init__(metrics, filename, frequency, checkpoint_at_end, results_postprocessing_fn)

    @classmethod
    def get_model(cls, checkpoint: Any, filename: str = CHECKPOINT_NAME) -> Any:
        """The ``lightgbm.Booster`` saved in ``checkpoint`` under ``filename``."""
        return cls._load_model(checkpoint, filename, lambda path: _lightgbm.Booster(model_file=path))

    @staticmethod
    def _latest_metrics(env: Any) -> Dict[str, Dict[str, Any]]:
        """``{data name: {metric: value}}`` from the round's evaluation list: ``(data, metric,
        value, higher is better)``, or with ``lightgbm.cv`` a mean and a fifth item, the stdv."""
        latest: Dict[str, Dict[str, Any]] = {}
        for entry in env.evaluation_result_list:
            data_name, metric, value = entry[:3]
            by_metric = latest.setdefault(data_name, {})
            if len(entry) > 4:
                by_metric[metric + "-mean"] = value
                by_metric[metric + "-stdv"] = entry[4]
            else:
                by_metric[metric] = value
        return latest

    def __call__(self, env: Any) -> None:
        # ``env.iteration`` counts the rounds of a model it continues too; ``end_iteration`` is
        # one past the last planned round.
        metrics = self._metrics_to_report(self._latest_metrics(env))
        at_end = self._checkpoint_at_end and env.iteration == env.end_iteration - 1
        if at_end or self._checkpoint_due(env.iteration):
            self._report(metrics, env.model)
        else:
            self._report(metrics)


class TuneReportCallback(RemovedReportCallback):
    """Removed in Ray Tune: creating one raises; use :class:`TuneReportCheckpointCallback`."""
