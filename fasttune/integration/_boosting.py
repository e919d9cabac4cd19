"""What the XGBoost and LightGBM callbacks share: choosing and renaming the metrics of a
boosting round, deciding when to checkpoint, and reporting a booster as a checkpoint.

The framework modules only translate their framework's hooks (XGBoost's ``after_iteration``,
LightGBM's callable) into :meth:`BoostingReportCallback._round_done` calls.
"""
from __future__ import annotations

import os
import tempfile
from typing import Any, Callable, Dict, List, Mapping, Optional, Union

from fasttune._flatten import flatten_dict

MetricsArg = Optional[Union[str, List[str], Dict[str, str]]]
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
        if isinstance(metrics, str):
            metrics = [metrics]
        if metrics is not None and not isinstance(metrics, (list, tuple, dict)):
            raise TypeError(
                f"metrics must be None, a metric name, a list of names or a dict "
                f"{{reported name: framework metric name}}, got {type(metrics).__name__}"
            )
        if isinstance(frequency, bool) or not isinstance(frequency, int) or frequency < 0:
            raise ValueError(f"frequency must be an int >= 0 (0: no checkpoints during training), got {frequency!r}")
        if not isinstance(filename, str) or not filename:
            raise ValueError(f"filename must be a non-empty file name, got {filename!r}")
        if results_postprocessing_fn is not None and not callable(results_postprocessing_fn):
            raise TypeError(
                f"results_postprocessing_fn must be callable, got {type(results_postprocessing_fn).__name__}"
            )
        self._metrics = metrics
        self._filename = filename
        self._frequency = frequency
        self._checkpoint_at_end = checkpoint_at_end
        self._results_postprocessing_fn = results_postprocessing_fn

    def _metrics_to_report(self, latest: Mapping[str, Mapping[str, Any]]) -> Dict[str, Any]:
        """The reported dict from ``{data name: {metric: value}}`` of the round just done."""
        available = flatten_dict(dict(latest), delimiter="-")
        if not self._metrics:
            chosen = dict(available)
        else:
            renames = self._metrics if isinstance(self._metrics, dict) else {name: name for name in self._metrics}
            chosen = {}
            for reported, framework_name in renames.items():
                if framework_name not in available:
                    raise KeyError(
                        f"metric {framework_name!r} was not evaluated this round; the framework "
                        f"evaluated {sorted(available)} (names are '<data name>-<metric>')"
                    )
                chosen[reported] = available[framework_name]
        if self._results_postprocessing_fn is not None:
            chosen = self._results_postprocessing_fn(chosen)
        return chosen

    def _checkpoint_due(self, iteration: int) -> bool:
        """Whether the round ``iteration`` (counted from 0) ends with a checkpoint by frequency."""
        return self._frequency > 0 and (iteration + 1) % self._frequency == 0

    def _report(self, metrics: Dict[str, Any], model: Any = None) -> None:
        """``fasttune.report(metrics)``, with ``model`` saved as the checkpoint when given."""
        from fasttune.checkpoint import Checkpoint
        from fasttune.trainable.session import report

        if model is None:
            report(metrics)
            return
        # report() copies the checkpoint into the trial directory before it returns.
        with tempfile.TemporaryDirectory() as directory:
            model.save_model(os.path.join(directory, self._filename))
            report(metrics, checkpoint=Checkpoint.from_directory(directory))

    @staticmethod
    def _load_model(checkpoint: Any, filename: str, load: Callable[[str], Any]) -> Any:
        """``load(path)`` of the file ``filename`` in ``checkpoint``'s directory."""
        if not hasattr(checkpoint, "as_directory"):
            raise TypeError(f"get_model takes a Checkpoint (result.checkpoint, tune.get_checkpoint()), "
                            f"got {type(checkpoint).__name__}")
        with checkpoint.as_directory() as directory:
            path = os.path.join(directory, filename)
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f"checkpoint {directory} has no {filename!r} (it holds {sorted(os.listdir(directory))}); "
                    "pass the filename the callback saved with"
                )
            return load(path)


class RemovedReportCallback:
    """``TuneReportCallback``: removed in Ray Tune, which raises when it is created; so does fasttune."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        raise DeprecationWarning(
            f"`TuneReportCallback` is deprecated (as in Ray Tune). "
            f"Use `{cls.__module__}.TuneReportCheckpointCallback`; "
            "with frequency=0 and checkpoint_at_end=False it only reports."
        )
