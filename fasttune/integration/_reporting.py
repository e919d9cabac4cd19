"""What every framework callback shares: choosing and renaming the framework's metrics,
deciding when a checkpoint is due, and reporting the metrics with a checkpoint written by
the framework.

The framework modules (``xgboost``, ``lightgbm``, ``keras``, ``pytorch_lightning``) only
translate their framework's hooks into these calls; the engine knows nothing of them, as they
only call ``fasttune.report``.

Example:
    >>> renames = metric_renames({"loss": "val_loss"})
    >>> choose_metrics(renames, {"val_loss": 0.5, "loss": 0.7}, "")
    {'loss': 0.5}
    >>> [checkpoint_due(2, count) for count in range(1, 5)]
    [False, True, False, True]
"""
from __future__ import annotations

import os
import tempfile
from typing import Any, Callable, Dict, List, Mapping, Optional, Union

MetricsArg = Optional[Union[str, List[str], Dict[str, str]]]


def metric_renames(metrics: MetricsArg) -> Optional[Dict[str, str]]:
    """``{reported name: framework metric name}`` for the ``metrics`` argument of a callback:
    None or empty (every metric), a framework metric name or a list of them (reported under the
    same names), or a dict ``{reported name: framework metric name}``."""
    if isinstance(metrics, str):
        metrics = [metrics]
    if metrics is not None and not isinstance(metrics, (list, tuple, dict)):
        raise TypeError(
            f"metrics must be None, a metric name, a list of names or a dict "
            f"{{reported name: framework metric name}}, got {type(metrics).__name__}"
        )
    if not metrics:
        return None
    return dict(metrics) if isinstance(metrics, dict) else {name: name for name in metrics}


def choose_metrics(renames: Optional[Dict[str, str]], available: Mapping[str, Any], naming: str) -> Dict[str, Any]:
    """The reported dict: every metric of ``available`` when ``renames`` is None, else the
    renamed ones; a metric the framework did not log is a ``KeyError`` that lists those it did
    (``naming`` adds how the framework names them)."""
    if renames is None:
        return dict(available)
    chosen = {}
    for reported, framework_name in renames.items():
        if framework_name not in available:
            raise KeyError(
                f"metric {framework_name!r} was not evaluated this round; the framework "
                f"evaluated {sorted(available)}{naming}"
            )
        chosen[reported] = available[framework_name]
    return chosen


def check_frequency(frequency: Any, none_means: str) -> None:
    """A checkpoint frequency is an int >= 0 (0 means ``none_means``)."""
    if isinstance(frequency, bool) or not isinstance(frequency, int) or frequency < 0:
        raise ValueError(f"frequency must be an int >= 0 (0: {none_means}), got {frequency!r}")


def check_filename(filename: Any) -> None:
    if not isinstance(filename, str) or not filename:
        raise ValueError(f"filename must be a non-empty file name, got {filename!r}")


def checkpoint_due(frequency: int, count: int) -> bool:
    """Whether the ``count``-th event (counted from 1) ends with a checkpoint."""
    return frequency > 0 and count % frequency == 0


def report(metrics: Dict[str, Any], save: Optional[Callable[[str], None]] = None,
           metadata: Optional[Dict[str, Any]] = None) -> None:
    """``fasttune.report(metrics)``; with ``save``, a checkpoint of what ``save(directory)``
    writes into a fresh directory (and ``metadata``, when given)."""
    from fasttune.checkpoint import Checkpoint
    from fasttune.trainable.session import report as report_result

    if save is None:
        report_result(metrics)
        return
    # report() copies the checkpoint into the trial directory before it returns.
    with tempfile.TemporaryDirectory() as directory:
        save(directory)
        checkpoint = Checkpoint.from_directory(directory)
        if metadata:
            checkpoint.set_metadata(metadata)
        report_result(metrics, checkpoint=checkpoint)


def checkpoint_file(checkpoint: Any, filename: str, load: Callable[[str], Any], what: str) -> Any:
    """``load(path)`` of the file ``filename`` in ``checkpoint``'s directory (``what`` names
    the method that takes the checkpoint, for the error)."""
    if not hasattr(checkpoint, "as_directory"):
        raise TypeError(f"{what} takes a Checkpoint (result.checkpoint, tune.get_checkpoint()), "
                        f"got {type(checkpoint).__name__}")
    with checkpoint.as_directory() as directory:
        path = os.path.join(directory, filename)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"checkpoint {directory} has no {filename!r} (it holds {sorted(os.listdir(directory))}); "
                "pass the filename the callback saved with"
            )
        return load(path)


def as_number(value: Any) -> Any:
    """A framework's scalar (a tensor or NumPy scalar) as a Python number; anything else as is."""
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return item()
        except (ValueError, RuntimeError):  # not a one-element value
            return value
    return value


class RemovedReportCallback:
    """``TuneReportCallback``: removed in Ray Tune, which raises when it is created; so does fasttune.

    ``ONLY_REPORTING`` says how the module's ``TuneReportCheckpointCallback`` only reports."""

    ONLY_REPORTING = "with frequency=0 and checkpoint_at_end=False it only reports"

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        raise DeprecationWarning(
            f"`TuneReportCallback` is deprecated (as in Ray Tune). "
            f"Use `{cls.__module__}.TuneReportCheckpointCallback`; {cls.ONLY_REPORTING}."
        )
