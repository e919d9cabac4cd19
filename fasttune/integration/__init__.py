"""Callbacks that connect training frameworks to fasttune, at Ray Tune's paths.

``fasttune.integration.xgboost`` and ``fasttune.integration.lightgbm`` hold a
``TuneReportCheckpointCallback`` each: passed to the framework's ``train``, it reports the
evaluation metrics of every boosting round with ``fasttune.report`` and saves the booster in a
checkpoint.  ``fasttune.integration.keras`` (for ``model.fit``) and
``fasttune.integration.pytorch_lightning`` (for a Lightning ``Trainer``) do the same per epoch
or on the events chosen, saving the Keras model or the trainer's checkpoint.  The boosting
submodules import their framework when a script imports them, the Keras and Lightning ones when
a script first uses a class; this package imports nothing, so ``import fasttune`` never loads a
framework.
"""
