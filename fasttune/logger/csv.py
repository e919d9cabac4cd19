"""``CSVLoggerCallback``: each trial's ``progress.csv``."""
from __future__ import annotations

from fasttune.logger.logger import LoggerCallback

__all__ = ["CSVLoggerCallback"]


class CSVLoggerCallback(LoggerCallback):
    """Logs each result as a row of the trial's ``progress.csv``, nested keys
    flattened (``a/b``); the columns are those of the trial's first result.

    fasttune's core renders a batch's rows as bytes while it completes the results,
    and the runner's writer thread appends them: there is no Python work per
    result.  Without a ``CSVLoggerCallback`` among the callbacks (it is a default
    unless ``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1``) no ``progress.csv`` is written
    (``Result.metrics_dataframe`` is read from ``result.json``, as it is anyway).

    Example:
        >>> import fasttune as tune
        >>> from fasttune.logger import CSVLoggerCallback
        >>> run_config = tune.RunConfig(callbacks=[CSVLoggerCallback()])
    """

    _SAVED_FILE_TEMPLATES = ["progress.csv"]
