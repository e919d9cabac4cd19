"""What the XGBoost and LightGBM callbacks share: choosing and renaming the metrics of a
boosting round, deciding when to checkpoint, and reporting a booster as a checkpoint.

The framework modules only translate their framework's hooks (XGBoost's ``after_iteration``,
LightGBM's callable) into :meth:`BoostingReportCallback._round_done` calls.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Dict, Mapping, Optional

from fasttune._flatten import flatten_dict
from fasttune.integration._reporting import (  # noqa: F401  (RemovedReportCallback: for the framework modules)
    MetricsArg, RemovedReportCallback, check_filename, check_frequency, checkpoint_due, checkpoint_file,
    choose_metrics, metric_renames, report)

PostprocessingFn = Optional[Callable[[Dict[str, Any]], Dict[str, Any]]]


class BoostingReportCallback:
    """Reports each boosting round's evaluation metrics and checkpoints the booster.

    ``metrics``: None (every metric), a framework metric name or a list of them (reported under
    the same names), or a dict ``{reported name: framework metric name}``.  Framework metric names
    are ``"<data name>-<metric>"`` (``"eval-logloss"``).  ``frequency``: checkpoint after every
    ``frequency``-th round (0: never during training).  ``checkpoint_at_end``: also after the
    last round.  ``results_postprocessing_fn``: maps the chosen metrics to what is reported.

    Example:
        >>> callback = BoostingReportCallback(metrics={"loss": "eval-logloss"}, filename="m", frequency=2)
        >>> callback._metrics_to_report({"train": {"logloss": 0.4}, "eval": {"logloss": 0.5}})
        {'loss': 0.5}
        >>> [callback._checkpoint_due(iteration) for iteration in range(4)]
        [False, True, False, True]
    """

    def __init__(
        self,
        metrics: MetricsArg,
        filename: str,
        frequency: int,
        checkpoint_at_end: bool = True,
        results_postprocessing_fn: PostprocessingFn = None,
    ) -> None:
        check_frequency(frequency, "no checkpoints during training")
        check_filename(filename)
        if results_postprocessing_fn is not None and not callable(results_postprocessing_fn):
            raise TypeError(
                f"results_postprocessing_fn must be callable, got {type(results_postprocessing_fn).__name__}"
            )
        self._metrics = metric_renames(metrics)
        self._filename = filename
        self._frequency = frequency
        self._checkpoint_at_end = checkpoint_at_end
        self._results_postprocessing_fn = results_postprocessing_fn

    def _metrics_to_report(self, latest: Mapping[str, Mapping[str, Any]]) -> Dict[str, Any]:
        """The reported dict from ``{data name: {metric: value}}`` of the round just done."""
        available = flatten_dict(dict(latest), delimiter="-")
        chosen = choose_metrics(self._metrics, available, " (names are '<data name>-<metric>')")
        if self._results_postprocessing_fn is not None:
            chosen = self._results_postprocessing_fn(chosen)
        return chosen

    def _checkpoint_due(self, iteration: int) -> bool:
        """Whether the round ``iteration`` (counted from 0) ends with a checkpoint by frequency."""
        return checkpoint_due(self._frequency, iteration + 1)

    def _report(self, metrics: Dict[str, Any], model: Any = None) -> None:
        """``fasttune.report(metrics)``, with ``model`` saved as the checkpoint when given."""
        report(metrics, None if model is None else lambda directory: model.save_model(
            os.path.join(directory, self._filename)))

    @staticmethod
    def _load_model(checkpoint: Any, filename: str, load: Callable[[str], Any]) -> Any:
        """``load(path)`` of the file ``filename`` in ``checkpoint``'s directory."""
        return checkpoint_file(checkpoint, filename, load, "get_model")
