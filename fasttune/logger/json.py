"""``JsonLoggerCallback``: each trial's ``result.json`` and ``params.json``."""
from __future__ import annotations

from fasttune.logger.logger import LoggerCallback

__all__ = ["JsonLoggerCallback"]


class JsonLoggerCallback(LoggerCallback):
    """Logs each result as one JSON object per line in the trial's ``result.json``
    (with the trial's ``config``), and the config in ``params.json``.

    fasttune's core renders a batch's JSON lines as bytes while it completes the
    results, and the runner's writer thread appends them: there is no Python work
    per result, and this callback overrides no hook.  ``result.json`` is written
    even without it (``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1``), since restores,
    ``ResultGrid.from_path`` and ``ExperimentAnalysis`` read it.  Unlike Ray Tune's,
    it writes no ``params.pkl``.

    Example:
        >>> import fasttune as tune
        >>> from fasttune.logger import JsonLoggerCallback
        >>> run_config = tune.RunConfig(callbacks=[JsonLoggerCallback()])
    """

    _SAVED_FILE_TEMPLATES = ["result.json", "params.json"]
