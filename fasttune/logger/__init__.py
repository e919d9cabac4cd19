"""Writing what trials report (``ray.tune.logger``).

Example:
    >>> import fasttune as tune
    >>> from fasttune.logger import CSVLoggerCallback, JsonLoggerCallback, LoggerCallback
    >>> run_config = tune.RunConfig(callbacks=[JsonLoggerCallback(), CSVLoggerCallback()])
"""
from fasttune.logger.csv import CSVLoggerCallback
from fasttune.logger.json import JsonLoggerCallback
from fasttune.logger.logger import LoggerCallback, pretty_print
from fasttune.logger.tensorboardx import TBXLoggerCallback

__all__ = ["LoggerCallback", "pretty_print", "JsonLoggerCallback", "CSVLoggerCallback", "TBXLoggerCallback"]
