"""The default loggers a sweep gets, as Ray Tune adds them (``_create_default_callbacks``)."""
from __future__ import annotations

import logging
import os
from typing import Any, List, Optional

from fasttune.logger.csv import CSVLoggerCallback
from fasttune.logger.json import JsonLoggerCallback
from fasttune.logger.tensorboardx import TBXLoggerCallback, tensorboardx_available

logger = logging.getLogger(__name__)

DISABLE_ENV = "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"


def with_default_loggers(callbacks: Optional[List[Any]]) -> List[Any]:
    """``callbacks`` followed by a ``CSVLoggerCallback``, a ``JsonLoggerCallback`` and,
    when tensorboardX is installed, a ``TBXLoggerCallback`` -- each only when no
    callback is an instance of that class (a subclass counts).  With
    ``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1`` none is added.

    Example:
        >>> from fasttune.logger import CSVLoggerCallback
        >>> mine = CSVLoggerCallback()
        >>> loggers = with_default_loggers([mine])
        >>> loggers[0] is mine, sum(isinstance(c, CSVLoggerCallback) for c in loggers)
        (True, 1)
    """
    callbacks = list(callbacks or [])
    if os.environ.get(DISABLE_ENV, "0") == "1":
        return callbacks
    if not any(isinstance(c, CSVLoggerCallback) for c in callbacks):
        callbacks.append(CSVLoggerCallback())
    if not any(isinstance(c, JsonLoggerCallback) for c in callbacks):
        callbacks.append(JsonLoggerCallback())
    if not any(isinstance(c, TBXLoggerCallback) for c in callbacks):
        if tensorboardx_available():
            callbacks.append(TBXLoggerCallback())
        else:
            logger.debug("tensorboardX is not installed: no TensorBoard files (pip install tensorboardX).")
    return callbacks
