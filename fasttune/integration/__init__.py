"""Callbacks that connect training frameworks to fasttune, at Ray Tune's paths.

``fasttune.integration.xgboost`` and ``fasttune.integration.lightgbm`` hold a
``TuneReportCheckpointCallback`` each: passed to the framework's ``train``, it reports the
evaluation metrics of every boosting round with ``fasttune.report`` and saves the booster in a
checkpoint.  Each submodule imports its framework when a script imports it; this package imports
nothing, so ``import fasttune`` never loads a framework.
"""
