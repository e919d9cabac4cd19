"""The background thread through which the experiment-tracking callbacks (MLflow, Weights &
Biases) talk to their service, so that a batch of results costs the event loop one hand-over.

The tracking libraries spend far longer per result than the engine does (a database row per
metric, a message to the W&B service): on the loop they would slow a fast sweep several times.
"""
from __future__ import annotations

from fasttune.error import TuneError
from fasttune.logger._writer_thread import WriterThread


class TrackingThread(WriterThread):
    """A :class:`WriterThread` whose failure reads as the tracking service's, not a file's.

    Example:
        >>> sent = []
        >>> thread = TrackingThread("Example tracking")
        >>> thread.submit(sent.append, {"loss": 0.5})
        >>> thread.close(); sent
        [{'loss': 0.5}]
    """

    def __init__(self, service: str) -> None:
        super().__init__(service, thread_name=f"fasttune-{service.split()[0].lower()}")
        self._service = service

    def check(self) -> None:
        if self.failure is not None and not self._reported:
            self._reported = True
            failure = self.failure
            raise TuneError(f"{self._service} failed ({type(failure).__name__}: {failure}); the results after "
                            "it may be missing from the tracking service.") from failure
