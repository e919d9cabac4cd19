"""The callbacks a sweep gets unasked, as Ray Tune adds them (``_create_default_callbacks``): those
that ``RAY_TUNE_CALLBACKS`` names, and the default loggers."""
from __future__ import annotations

import importlib
import logging
import os
from typing import Any, List, Optional

from fasttune.callback import Callback
from fasttune.constants import RAY_TUNE_CALLBACKS_ENV_VAR
from fasttune.logger.csv import CSVLoggerCallback
from fasttune.logger.json import JsonLoggerCallback
from fasttune.logger.tensorboardx import TBXLoggerCallback, tensorboardx_available

logger = logging.getLogger(__name__)

DISABLE_ENV = "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"


def with_default_loggers(callbacks: Optional[List[Any]]) -> List[Any]:
    """``callbacks``, then those of :func:`callbacks_from_env`, then a ``CSVLoggerCallback``,
    a ``JsonLoggerCallback`` and, when tensorboardX is installed, a ``TBXLoggerCallback`` -- each only when no
    callback is an instance of that class (a subclass counts).  With
    ``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1`` none is added.

    Example:
        >>> from fasttune.logger import CSVLoggerCallback
        >>> mine = CSVLoggerCallback()
        >>> loggers = with_default_loggers([mine])
        >>> loggers[0] is mine, sum(isinstance(c, CSVLoggerCallback) for c in loggers)
        (True, 1)
    """
    callbacks = list(callbacks or []) + callbacks_from_env()
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


def callbacks_from_env() -> List[Callback]:
    """One instance of each ``module.Class`` that ``RAY_TUNE_CALLBACKS`` names (comma-separated),
    made with no arguments: callbacks every experiment gets, as in Ray Tune.

    Example:
        >>> import os
        >>> os.environ["RAY_TUNE_CALLBACKS"] = "fasttune.logger.CSVLoggerCallback"
        >>> [type(c).__name__ for c in callbacks_from_env()]
        ['CSVLoggerCallback']
        >>> del os.environ["RAY_TUNE_CALLBACKS"]
    """
    callbacks: List[Callback] = []
    for path in os.environ.get(RAY_TUNE_CALLBACKS_ENV_VAR, "").split(","):
        path = path.strip()
        if not path:
            continue
        module_name, _, class_name = path.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError, ValueError) as exc:
            raise ValueError(f"{RAY_TUNE_CALLBACKS_ENV_VAR} names {path!r}, which cannot be imported "
                             f"(a module.Class path is needed): {exc}") from exc
        if not (isinstance(cls, type) and issubclass(cls, Callback)):
            raise ValueError(f"{RAY_TUNE_CALLBACKS_ENV_VAR} names {path!r}, which is not a subclass of "
                             f"fasttune.Callback.")
        callbacks.append(cls())
    return callbacks
