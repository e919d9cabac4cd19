"""Keras's report-and-checkpoint callback, at Ray Tune's ``ray.tune.integration.keras``.

Pass it to ``model.fit`` inside a trainable: at the end of every epoch (or the Keras events
chosen) it reports Keras's logs (``"loss"``, ``"val_loss"``, compiled metrics) and saves the
model in a checkpoint.  To resume, load the model and go on from its epoch::

    import fasttune as tune
    from fasttune.integration.keras import TuneReportCheckpointCallback

    def train(config):
        checkpoint = tune.get_checkpoint()
        if checkpoint:
            model = TuneReportCheckpointCallback.get_model(checkpoint)
            initial_epoch = TuneReportCheckpointCallback.get_initial_epoch(checkpoint)
        else:
            model, initial_epoch = build_and_compile(config), 0
        model.fit(x, y, validation_data=(x_valid, y_valid), epochs=20, initial_epoch=initial_epoch,
                  callbacks=[TuneReportCheckpointCallback(metrics={"loss": "val_loss"}, frequency=5)])

This is Keras 3 (``keras.callbacks.Callback``; with TensorFlow installed ``tf.keras`` is the same
Keras), any backend.  Importing this module imports no Keras: the classes load it on first use,
and without Keras that use is an ImportError that says what to install.
"""
from __future__ import annotations

from typing import Any

from fasttune._optional import import_optional

__all__ = ["TuneReportCheckpointCallback", "TuneReportCallback"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import_optional("keras", "keras", f"{__name__}.{name}",
                    advice="If Keras is installed, its backend is not: install it or set KERAS_BACKEND.")
    from fasttune.integration import _keras_callback

    return getattr(_keras_callback, name)


def __dir__() -> list:
    return sorted(list(globals()) + __all__)
