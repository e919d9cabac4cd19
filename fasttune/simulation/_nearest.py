"""Nearest table configuration to any configuration: the distance ``match="nearest"`` uses.

Each numeric column is scaled to [0, 1] over the table's range, on a log scale where the
column is declared log, or, by default, where its values look log-spaced: all positive, the
largest at least 100 times the smallest (two decades or more), and crowded at the low end
(the median in the lowest quarter of the range, as for a log-uniform draw or a grid such as
1e-4, 1e-3, 1e-2; a uniform draw in [0, 0.5] spans decades too, but its median is mid-range).  A categorical column
(strings, booleans, anything not numeric) counts 0 where the values are equal and 1 where
they differ.  The distance is the Euclidean norm of these per-column differences; of
equally near configurations the one earliest in the table wins.

Example:
    >>> import numpy as np
    >>> matcher = NearestConfig({"lr": np.array([1e-4, 1e-3, 1e-1]), "opt": np.array(["sgd", "adam", "sgd"])})
    >>> matcher.log_columns
    ['lr']
    >>> matcher.nearest_row({"lr": 2e-3, "opt": "sgd"})  # lr is log-nearer 1e-3, but opt differs there
    0
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

import numpy as np

__all__ = ["NearestConfig", "is_numeric_column", "looks_log_spaced"]


def is_numeric_column(values: np.ndarray) -> bool:
    return values.dtype.kind in "iuf"


def looks_log_spaced(values: np.ndarray) -> bool:
    """All positive, spanning two decades or more, the median in the lowest quarter."""
    low, high = values.min(), values.max()
    return bool(low > 0 and high >= 100 * low and np.median(values) - low < 0.25 * (high - low))


class NearestConfig:
    """Maps a configuration to the row of the nearest one in ``configs`` (column -> values).

    ``log_scale`` (column -> bool) overrides the automatic choice for numeric columns.
    """

    def __init__(self, configs: Mapping[str, np.ndarray], log_scale: Optional[Mapping[str, bool]] = None) -> None:
        log_scale = dict(log_scale or {})
        unknown = sorted(set(log_scale) - set(configs))
        if unknown:
            raise ValueError(f"log_scale names {unknown}, which are not configuration columns ({list(configs)})")
        self.numeric_columns: List[str] = [c for c, v in configs.items() if is_numeric_column(v)]
        self.categorical_columns: List[str] = [c for c in configs if c not in self.numeric_columns]
        for column in log_scale:
            if column in self.categorical_columns:
                raise ValueError(f"log_scale names '{column}', a categorical column")
        self.log_columns: List[str] = []
        offsets, spans, coordinates = [], [], []
        for column in self.numeric_columns:
            values = configs[column].astype(float)
            log = log_scale.get(column, looks_log_spaced(values))
            if log:
                if not values.min() > 0:
                    raise ValueError(f"column '{column}' cannot be on a log scale: it has values <= 0")
                self.log_columns.append(column)
                values = np.log(values)
            low, span = values.min(), values.max() - values.min()
            offsets.append(low)
            spans.append(span if span > 0 else 1.0)  # (a constant column adds nothing)
            coordinates.append((values - low) / spans[-1])
        self._offsets = np.asarray(offsets)
        self._spans = np.asarray(spans)
        self._is_log = np.asarray([c in self.log_columns for c in self.numeric_columns], dtype=bool)
        n_rows = len(next(iter(configs.values())))
        self._coordinates = np.column_stack(coordinates) if coordinates else np.zeros((n_rows, 0))
        self._categories = {column: configs[column] for column in self.categorical_columns}

    def coordinates(self, config: Mapping[str, Any]) -> np.ndarray:
        """The numeric columns of ``config``, scaled as the table's are."""
        try:
            values = np.asarray([float(config[column]) for column in self.numeric_columns])
        except KeyError as exc:
            raise ValueError(f"config {dict(config)!r} has no value for the column {exc.args[0]!r}") from None
        if np.any(values[self._is_log] <= 0):
            raise ValueError(f"config {dict(config)!r} has a value <= 0 in a log-scale column ({self.log_columns})")
        values = np.where(self._is_log, np.log(np.where(self._is_log, values, 1.0)), values)
        return (values - self._offsets) / self._spans

    def distances(self, config: Mapping[str, Any]) -> np.ndarray:
        """The distance from ``config`` to every table configuration."""
        squared = np.square(self._coordinates - self.coordinates(config)).sum(axis=1)
        for column, values in self._categories.items():
            if column not in config:
                raise ValueError(f"config {dict(config)!r} has no value for the column {column!r}")
            squared += values != config[column]
        return np.sqrt(squared)

    def nearest_row(self, config: Mapping[str, Any]) -> int:
        return int(np.argmin(self.distances(config)))
