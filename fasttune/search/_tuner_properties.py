"""What a searcher that already has a space of its own takes from the Tuner: the metric and
mode it lacks (Ray Tune's searchers leave them unset)."""
from __future__ import annotations

from typing import Optional

from fasttune.result import DEFAULT_METRIC
from fasttune.search.searcher import Searcher

__all__ = ["take_missing_metric_and_mode"]


def take_missing_metric_and_mode(searcher: Searcher, metric: Optional[str], mode: Optional[str]) -> None:
    """Sets ``searcher``'s mode, and its metric when it has none or only the anonymous one
    (``"_metric"``), from the Tuner's; a mode without any metric means the anonymous metric.

    Example:
        >>> from fasttune.search.searcher import Searcher
        >>> searcher = Searcher(mode="max")
        >>> take_missing_metric_and_mode(searcher, "loss", "min")
        >>> searcher.metric, searcher.mode
        ('loss', 'max')
    """
    searcher._mode = searcher._mode or mode
    if searcher._metric in (None, DEFAULT_METRIC) and metric:
        searcher._metric = metric
    elif searcher._metric is None and searcher._mode:
        searcher._metric = DEFAULT_METRIC
