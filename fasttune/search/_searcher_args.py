"""Argument checks shared by the searchers that wrap an optimisation library, and how such a
searcher, built with a space of its own, takes the metric and mode it lacks from ``TuneConfig``.

Example:
    >>> from fasttune.search._searcher_args import check_metric_and_mode
    >>> check_metric_and_mode("MySearch", "loss", "best")
    Traceback (most recent call last):
    ...
    ValueError: MySearch takes mode 'min' or 'max', got 'best'.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

from fasttune.result import DEFAULT_METRIC

__all__ = ["check_metric_and_mode", "check_points_to_evaluate", "take_metric_and_mode"]


def check_metric_and_mode(owner: str, metric: Any, mode: Any) -> None:
    """``mode`` is None, ``"min"`` or ``"max"``; ``metric`` is None or one result key."""
    if mode is not None and mode not in ("min", "max"):
        raise ValueError(f"{owner} takes mode 'min' or 'max', got {mode!r}.")
    if metric is not None and not isinstance(metric, str):
        raise TypeError(f"{owner} optimises one metric (a str), got {metric!r}.")


def check_points_to_evaluate(points_to_evaluate: Any) -> None:
    """None, or a list of config dicts."""
    if points_to_evaluate is not None and (
        not isinstance(points_to_evaluate, (list, tuple))
        or not all(isinstance(p, Mapping) for p in points_to_evaluate)
    ):
        raise TypeError(f"points_to_evaluate must be a list of config dicts, got {points_to_evaluate!r}.")


def take_metric_and_mode(searcher: Any, metric: Optional[str], mode: Optional[str]) -> None:
    """A searcher that keeps its own space takes ``TuneConfig``'s metric and mode where it has
    none (Ray Tune's leave them unset); a mode alone means the anonymous metric.

    Example:
        >>> from fasttune.search.searcher import Searcher
        >>> searcher = Searcher(mode="max")
        >>> take_metric_and_mode(searcher, "loss", "min")
        >>> searcher.metric, searcher.mode
        ('loss', 'max')
    """
    searcher._mode = searcher._mode or mode
    if searcher._metric in (None, DEFAULT_METRIC) and metric:
        searcher._metric = metric
    elif searcher._metric is None and searcher._mode:
        searcher._metric = DEFAULT_METRIC
