"""The Lightning callback classes of ``fasttune.integration.pytorch_lightning``; this module
imports Lightning, so that module imports it only when a script first uses a class."""
from __future__ import annotations

import inspect
import os
import warnings
from typing import Any, Dict, List, Union

try:  # the unified package that users have now; its Trainer takes only its own callbacks
    from lightning.pytorch import Callback
except ModuleNotFoundError:
    from pytorch_lightning import Callback

from fasttune.integration._reporting import (MetricsArg, as_number, check_filename, check_frequency,
                                             checkpoint_due, choose_metrics, metric_renames, report)

PUBLIC_MODULE = "fasttune.integration.pytorch_lightning"

# Lightning's callback hooks, less ``on_``: the events a callback can report on.
EVENTS = sorted(name[len("on_"):] for name, _ in inspect.getmembers(Callback, inspect.isfunction)
                if name.startswith("on_"))


class TuneCallback(Callback):
    """A Lightning callback that calls ``_handle(trainer)`` on the events ``on``: a hook name
    less ``on_`` (``"validation_end"``, ``"train_batch_end"``, ...) or a list of them."""

    __module__ = PUBLIC_MODULE

    def __init__(self, on: Union[str, List[str]] = "validation_end") -> None:
        events = [on] if isinstance(on, str) else list(on)
        unknown = [event for event in events if event not in EVENTS]
        if unknown:
            raise ValueError(f"on has unknown Lightning hooks {unknown}; choose from {EVENTS}")
        self._on = events

    def _handle(self, trainer: Any) -> None:
        raise NotImplementedError


def _hook(event: str) -> Any:
    # Lightning passes the module positionally; the keyword is Ray Tune's signature.
    def hook(self: TuneCallback, trainer: Any, *args: Any, pl_module: Any = None, **kwargs: Any) -> None:
        if event in self._on:
            self._handle(trainer)

    hook.__name__ = hook.__qualname__ = f"on_{event}"
    return hook


for _event in EVENTS:
    setattr(TuneCallback, f"on_{_event}", _hook(_event))


class TuneReportCheckpointCallback(TuneCallback):
    """Reports ``trainer.callback_metrics`` on the events ``on`` and checkpoints the trainer.

    ``metrics``: None reports every metric the module logged (``self.log``); a name or a list of
    names reports those; a dict ``{reported name: logged name}`` renames; a name not logged by
    then is a ``KeyError``.  ``filename``: the file ``trainer.save_checkpoint`` writes in the
    checkpoint.  ``save_checkpoints``: False only reports.  ``on``: the hooks that report (less
    ``on_``; ``"validation_end"``: after each validation, sanity checks left out).
    ``frequency`` (fasttune's): checkpoint on every ``frequency``-th of those events (0: never),
    counted over the whole training: the count is in the checkpoint, so ``trainer.fit(...,
    ckpt_path=...)`` goes on counting.
    """

    __module__ = PUBLIC_MODULE
    CHECKPOINT_NAME = "checkpoint"

    def __init__(
        self,
        metrics: MetricsArg = None,
        filename: str = CHECKPOINT_NAME,
        save_checkpoints: bool = True,
        on: Union[str, List[str]] = "validation_end",
        frequency: int = 1,
    ) -> None:
        super().__init__(on=on)
        self._metrics = metric_renames(metrics)
        check_filename(filename)
        check_frequency(frequency, "no checkpoints")
        self._filename = filename
        self._save_checkpoints = save_checkpoints
        self._frequency = frequency
        self._events_seen = 0
        self._saving = False  # on="save_checkpoint" would otherwise save from inside its own save

    def state_dict(self) -> Dict[str, Any]:
        return {"events_seen": self._events_seen}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self._events_seen = state_dict["events_seen"]

    def _handle(self, trainer: Any) -> None:
        if trainer.sanity_checking or self._saving:
            return
        available = {name: as_number(value) for name, value in trainer.callback_metrics.items()}
        metrics = choose_metrics(self._metrics, available, " in trainer.callback_metrics")
        if not metrics:  # nothing logged yet
            return
        self._events_seen += 1
        if self._save_checkpoints and checkpoint_due(self._frequency, self._events_seen):
            self._saving = True
            try:
                report(metrics, lambda directory: trainer.save_checkpoint(os.path.join(directory, self._filename)))
            finally:
                self._saving = False
        else:
            report(metrics)


class TuneReportCallback(TuneReportCheckpointCallback):
    """Deprecated in Ray Tune (it warns): :class:`TuneReportCheckpointCallback` with
    ``save_checkpoints=False``."""

    __module__ = PUBLIC_MODULE

    def __init__(self, metrics: MetricsArg = None, on: Union[str, List[str]] = "validation_end") -> None:
        # A UserWarning, as Ray Tune's: a DeprecationWarning would be hidden in scripts.
        warnings.warn(f"{PUBLIC_MODULE}.TuneReportCallback is deprecated (as in Ray Tune); use "
                      f"TuneReportCheckpointCallback(save_checkpoints=False)", stacklevel=2)
        super().__init__(metrics=metrics, save_checkpoints=False, on=on)
