"""PyTorch Lightning's report-and-checkpoint callback, at Ray Tune's
``ray.tune.integration.pytorch_lightning``.

Pass it to the ``Trainer`` inside a trainable: after every validation (or the hooks chosen) it
reports ``trainer.callback_metrics`` (what the module logged with ``self.log``) and saves the
trainer's checkpoint.  To resume, hand that file to ``fit``::

    import os
    import lightning.pytorch as pl
    import fasttune as tune
    from fasttune.integration.pytorch_lightning import TuneReportCheckpointCallback

    def train(config):
        trainer = pl.Trainer(max_epochs=10, callbacks=[
            TuneReportCheckpointCallback(metrics={"loss": "val_loss"}, on="validation_end")])
        checkpoint = tune.get_checkpoint()
        if checkpoint:
            with checkpoint.as_directory() as directory:
                trainer.fit(Model(config), data, ckpt_path=os.path.join(directory, "checkpoint"))
        else:
            trainer.fit(Model(config), data)

The callbacks subclass ``lightning.pytorch.Callback`` (the ``lightning`` package, whose Trainer
takes only its own callbacks); where only the older ``pytorch_lightning`` package is installed,
its ``Callback``.  Importing this module imports no Lightning: the classes load it on first
use, and without it that use is an ImportError that says what to install.
"""
from __future__ import annotations

from typing import Any

from fasttune._optional import missing_dependency

__all__ = ["TuneCallback", "TuneReportCheckpointCallback", "TuneReportCallback"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        from fasttune.integration import _lightning_callback
    except ImportError as exc:  # neither lightning nor pytorch_lightning (or a broken install: chained)
        raise missing_dependency(f"{__name__}.{name}", "lightning", "lightning") from exc

    return getattr(_lightning_callback, name)


def __dir__() -> list:
    return sorted(list(globals()) + __all__)
