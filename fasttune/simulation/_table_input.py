"""Reading a table of learning curves (a DataFrame, a CSV or Parquet file) into a
:class:`~fasttune.simulation._curve_table.CurveTable`, with errors that name what is wrong.

The table is long: one row per (configuration, fidelity), e.g. columns ``lr, width,
epoch, loss, elapsed_time``.  Every configuration must have exactly one row at each
fidelity the table has; the elapsed-time column is cumulative within a configuration.

Example:
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"lr": [0.1, 0.1, 0.01, 0.01], "epoch": [1, 2, 2, 1],
    ...                       "loss": [0.5, 0.4, 0.8, 0.9], "time": [1.0, 2.0, 6.0, 3.0]})
    >>> table = curve_table_from_frame(frame, ["lr"], "epoch", ["loss"], "time")
    >>> table.configs["lr"].tolist(), table.metrics["loss"].tolist()
    ([0.1, 0.01], [[0.5, 0.4], [0.9, 0.8]])
"""
from __future__ import annotations

import os
from typing import Any, List, Sequence

import numpy as np

from fasttune._optional import import_optional
from fasttune.simulation._curve_table import CurveTable, checked_curve_table, config_at

__all__ = ["curve_table_from_frame", "read_table"]

PARQUET_SUFFIXES = (".parquet", ".pq")


def read_table(table: Any) -> Any:
    """``table`` as a pandas DataFrame: a DataFrame as it is, or a ``.csv`` / ``.parquet``
    file read whole (floats read back exactly as written)."""
    pd = import_optional("pandas", "pandas", "TabularBlackbox")
    if isinstance(table, pd.DataFrame):
        return table
    if not isinstance(table, (str, os.PathLike)):
        raise TypeError(f"table must be a pandas DataFrame or the path of a CSV or Parquet file, got {type(table).__name__}")
    path = os.fspath(table)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no table file at {path}")
    if path.lower().endswith(PARQUET_SUFFIXES):
        import_optional("pyarrow", "storage", "Reading a Parquet table")
        return pd.read_parquet(path)
    if path.lower().endswith(".csv"):
        # A float written by to_csv (repr) must come back bit for bit: before pandas 3.1 that
        # takes the "round_trip" converter; from 3.1 on every converter is that one.
        version = tuple(int(part) for part in pd.__version__.split(".")[:2] if part.isdigit())
        exact = {"float_precision": "round_trip"} if version < (3, 1) else {}
        return pd.read_csv(path, **exact)
    raise ValueError(f"cannot tell the format of {path}: name it *.csv, *.parquet or *.pq")


def curve_table_from_frame(
    frame: Any,
    config_columns: Sequence[str],
    fidelity_column: str,
    metric_columns: Sequence[str],
    elapsed_column: str,
) -> CurveTable:
    """The curves of ``frame``, configurations in the order they first appear."""
    config_columns = list(config_columns)
    metric_columns = list(metric_columns)
    wanted = config_columns + [fidelity_column] + metric_columns + [elapsed_column]
    _check_columns(frame, wanted)
    if len(frame) == 0:
        raise ValueError("the table has no rows")
    for column in config_columns + [fidelity_column]:
        if frame[column].isna().any():
            row = int(np.flatnonzero(frame[column].isna().to_numpy())[0])
            raise ValueError(f"column '{column}' has a missing value (row {row}); configurations and fidelities must be complete")
    # Configuration number of each row, in order of first appearance.
    config_of_row = frame.groupby(config_columns, sort=False).ngroup().to_numpy()
    n_configs = int(config_of_row.max()) + 1
    fidelities = np.unique(frame[fidelity_column].to_numpy())
    position_of_row = np.searchsorted(fidelities, frame[fidelity_column].to_numpy())
    first_row = np.unique(config_of_row, return_index=True)[1]
    configs = {column: frame[column].to_numpy()[first_row] for column in config_columns}

    counts = np.zeros((n_configs, len(fidelities)), dtype=np.int64)
    np.add.at(counts, (config_of_row, position_of_row), 1)
    _check_counts(counts, configs, fidelities, fidelity_column)

    def matrix(column: str) -> np.ndarray:
        try:
            values = frame[column].to_numpy(dtype=float)
        except (TypeError, ValueError):
            raise ValueError(f"column '{column}' must hold numbers (it is {frame[column].dtype})") from None
        out = np.empty((n_configs, len(fidelities)))
        out[config_of_row, position_of_row] = values
        return out

    return checked_curve_table(
        configs,
        fidelities,
        {name: matrix(name) for name in metric_columns},
        matrix(elapsed_column),
        fidelity_name=fidelity_column,
        elapsed_name=elapsed_column,
    )


def _check_columns(frame: Any, wanted: List[str]) -> None:
    missing = [column for column in wanted if column not in frame.columns]
    if missing:
        raise ValueError(f"the table has no column {', '.join(repr(c) for c in missing)}; it has {list(frame.columns)}")
    repeated = sorted({column for column in wanted if wanted.count(column) > 1})
    if repeated:
        raise ValueError(f"column {', '.join(repr(c) for c in repeated)} is given in two roles (configuration, fidelity, metric, elapsed time)")


def _check_counts(counts: np.ndarray, configs: dict, fidelities: np.ndarray, fidelity_column: str) -> None:
    """Exactly one row per (configuration, fidelity)."""
    for wrong, what in ((counts > 1, "has {n} rows"), (counts == 0, "has no row")):
        if wrong.any():
            row, position = (int(i) for i in np.argwhere(wrong)[0])
            message = what.format(n=counts[row, position])
            raise ValueError(
                f"configuration {config_at(configs, row)} {message} at {fidelity_column}={fidelities[position].item()!r}; "
                f"each configuration needs exactly one row at each of the table's {len(fidelities)} {fidelity_column} values"
            )
