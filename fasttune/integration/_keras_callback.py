"""The Keras callback classes of ``fasttune.integration.keras``; this module imports Keras, so
that module imports it only when a script first uses a class."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Union

import keras

from fasttune.integration._reporting import (MetricsArg, RemovedReportCallback, as_number, check_filename,
                                             check_frequency, checkpoint_due, checkpoint_file, choose_metrics,
                                             metric_renames, report)

PUBLIC_MODULE = "fasttune.integration.keras"

# Keras's callback events (its ``on_<event>`` methods) that can report or checkpoint.
EVENTS = (
    "epoch_begin", "epoch_end",
    "train_batch_begin", "train_batch_end", "test_batch_begin", "test_batch_end",
    "predict_batch_begin", "predict_batch_end",
    "train_begin", "train_end", "test_begin", "test_end", "predict_begin", "predict_end",
)
_EPOCH_EVENTS = ("epoch_begin", "epoch_end")
_EPOCH_KEY = "epoch"  # the checkpoint metadata: epochs finished when the model was saved


def _events(on: Union[str, List[str]], argument: str) -> List[str]:
    events = [on] if isinstance(on, str) else list(on)
    unknown = [event for event in events if event not in EVENTS]
    if unknown:
        raise ValueError(f"{argument} has unknown Keras events {unknown}; choose from {list(EVENTS)}")
    return events


class TuneReportCheckpointCallback(keras.callbacks.Callback):
    """Reports Keras's logs on the chosen events and checkpoints the model.

    ``checkpoint_on``, ``report_metrics_on``: a Keras event (its callback method less ``on_``:
    ``"epoch_end"``, ``"train_batch_end"``, ...) or a list of them.  An event of
    ``checkpoint_on`` reports with a checkpoint when one is due, whether or not it is in
    ``report_metrics_on``.  ``metrics``: None reports every entry of Keras's logs (``"loss"``,
    ``"val_loss"``, compiled metrics); a name or a list of names reports those; a dict
    ``{reported name: Keras name}`` renames; a name Keras did not log is a ``KeyError``.
    ``frequency`` (fasttune's): checkpoint on every ``frequency``-th ``checkpoint_on`` event
    (0: never); epoch events are counted by Keras's epoch number, which goes on from
    ``initial_epoch`` in a resumed ``fit``, other events from the callback's first.
    ``filename`` (fasttune's): the file ``model.save`` writes in the checkpoint.

    Resume with :meth:`get_model` and :meth:`get_initial_epoch`.
    """

    __module__ = PUBLIC_MODULE
    CHECKPOINT_NAME = "model.keras"

    def __init__(
        self,
        checkpoint_on: Union[str, List[str]] = "epoch_end",
        report_metrics_on: Union[str, List[str]] = "epoch_end",
        metrics: MetricsArg = None,
        frequency: int = 1,
        filename: str = CHECKPOINT_NAME,
    ) -> None:
        super().__init__()
        self._checkpoint_on = _events(checkpoint_on, "checkpoint_on")
        self._report_metrics_on = _events(report_metrics_on, "report_metrics_on")
        self._metrics = metric_renames(metrics)
        check_frequency(frequency, "no checkpoints")
        check_filename(filename)
        self._frequency = frequency
        self._filename = filename
        self._events_seen: Dict[str, int] = {}
        self._epoch = 0  # Keras's number of the epoch under way (from 0; initial_epoch when resumed)

    @classmethod
    def get_model(cls, checkpoint: Any, filename: str = CHECKPOINT_NAME) -> Any:
        """The model saved in ``checkpoint`` (compiled, with its optimizer's state)."""
        return checkpoint_file(checkpoint, filename, keras.models.load_model, "get_model")

    @staticmethod
    def get_initial_epoch(checkpoint: Any) -> int:
        """The epochs the model in ``checkpoint`` had finished: ``fit``'s ``initial_epoch`` to go on."""
        metadata = checkpoint.get_metadata()
        if _EPOCH_KEY not in metadata:
            raise ValueError(f"checkpoint {checkpoint.path} was not written by {PUBLIC_MODULE}'s callback "
                             f"(its metadata {metadata} has no {_EPOCH_KEY!r})")
        return metadata[_EPOCH_KEY]

    def _handle(self, event: str, logs: Optional[Dict[str, Any]]) -> None:
        checkpoint = False
        if event in self._checkpoint_on:
            if event in _EPOCH_EVENTS:
                count = self._epoch + 1
            else:
                count = self._events_seen[event] = self._events_seen.get(event, 0) + 1
            checkpoint = checkpoint_due(self._frequency, count)
        if not checkpoint and event not in self._report_metrics_on:
            return
        available = {name: as_number(value) for name, value in (logs or {}).items()}
        metrics = choose_metrics(self._metrics, available, f" at {event}")
        if not checkpoint:
            report(metrics)
            return
        epochs_finished = self._epoch + 1 if event in ("epoch_end", "train_end") else self._epoch
        report(metrics, lambda directory: self.model.save(f"{directory}/{self._filename}"),
               metadata={_EPOCH_KEY: epochs_finished})

    def on_epoch_begin(self, epoch: int, logs: Optional[Dict[str, Any]] = None) -> None:
        self._epoch = epoch
        self._handle("epoch_begin", logs)

    def on_epoch_end(self, epoch: int, logs: Optional[Dict[str, Any]] = None) -> None:
        self._epoch = epoch
        self._handle("epoch_end", logs)


def _batch_or_phase_hook(event: str) -> Any:
    if event.endswith(("_begin", "_end")) and "batch" in event:
        def hook(self: TuneReportCheckpointCallback, batch: int, logs: Optional[Dict[str, Any]] = None) -> None:
            self._handle(event, logs)
    else:
        def hook(self: TuneReportCheckpointCallback, logs: Optional[Dict[str, Any]] = None) -> None:
            self._handle(event, logs)
    hook.__name__ = hook.__qualname__ = f"on_{event}"
    return hook


for _event in EVENTS:
    if _event not in _EPOCH_EVENTS:
        setattr(TuneReportCheckpointCallback, f"on_{_event}", _batch_or_phase_hook(_event))


class TuneReportCallback(RemovedReportCallback):
    """Removed in Ray Tune: creating one raises; use :class:`TuneReportCheckpointCallback`."""

    __module__ = PUBLIC_MODULE
    ONLY_REPORTING = "with checkpoint_on=[] it only reports"
