"""A blackbox that replays recorded learning curves from a table.

The table has configuration columns, a fidelity column, metric columns and a cumulative
elapsed-time column; a step's simulated seconds are the differences of that column.  The
rows are indexed once (configuration tuple -> row), so a lookup is one dict access.

How a search space meets the table is chosen with ``match``:

* ``"exact"`` (the default): the space samples the table's rows.  It holds
  ``row_key: randint(0, n_configs)`` and, for each configuration column, a
  ``sample_from`` that reads that row's value, so a trial's config carries the row number
  and the column values.  A configuration that is not a row of the table is an error.
  The config columns decide the lookup; the row number is how the space draws.  Random
  search (``BasicVariantGenerator``) and ``points_to_evaluate`` take such a space; model-based
  searchers (Optuna, HyperOpt, ...) do not take ``sample_from``: give them ``"nearest"``.
* ``"nearest"``: the space has a domain per column over the table's range (``uniform``
  or ``loguniform`` for floats, ``randint``/``lograndint`` for integers, ``choice`` for
  categoricals), so any searcher can propose anything; a configuration is replayed as its
  nearest table configuration (the distance of :mod:`fasttune.simulation._nearest`).

Example:
    >>> import numpy as np
    >>> blackbox = TabularBlackbox.from_arrays(
    ...     {"lr": [0.1, 0.01]}, [1, 2], {"loss": [[0.5, 0.4], [0.9, 0.8]]},
    ...     elapsed=[[1.0, 2.0], [3.0, 6.0]], fidelity_name="epoch")
    >>> blackbox.evaluate({"lr": 0.01}, 2)
    ({'loss': 0.8}, 3.0)
    >>> blackbox.evaluate({"lr": 0.02}, 2)
    Traceback (most recent call last):
    ...
    ValueError: config {'lr': 0.02} is not a configuration of the table (match='exact'); ...
    >>> nearest = TabularBlackbox.from_arrays(
    ...     {"lr": [0.1, 0.01]}, [1, 2], {"loss": [[0.5, 0.4], [0.9, 0.8]]},
    ...     elapsed=[[1.0, 2.0], [3.0, 6.0]], fidelity_name="epoch", match="nearest")
    >>> nearest.search_space
    {'lr': Float(0.01, 0.1) sampler=Uniform}
    >>> nearest.evaluate({"lr": 0.02}, 2)
    ({'loss': 0.8}, 3.0)
"""
from __future__ import annotations

from operator import itemgetter
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from fasttune.search.sample import choice, lograndint, loguniform, randint, sample_from, uniform
from fasttune.simulation._blackbox import Blackbox
from fasttune.simulation._curve_table import CurveTable, checked_curve_table, config_at
from fasttune.simulation._nearest import NearestConfig
from fasttune.simulation._table_input import curve_table_from_frame, read_table

__all__ = ["TabularBlackbox"]

MATCHES = ("exact", "nearest")


class _RowValue:
    """``sample_from`` body of an exact-match space: the value of one column at the row
    drawn.  A class rather than a lambda so the space pickles."""

    def __init__(self, values: np.ndarray, row_key: str) -> None:
        self.values = values
        self.row_key = row_key

    def __call__(self, spec: Any) -> Any:
        return self.values[spec.config[self.row_key]].item()


class _OneValue:
    """``itemgetter`` of one column that still gives a tuple (the key of a one-column table)."""

    def __init__(self, column: str) -> None:
        self.column = column

    def __call__(self, config: Mapping[str, Any]) -> tuple:
        return (config[self.column],)


class TabularBlackbox(Blackbox):
    """Learning curves from a table (a pandas DataFrame, or a ``.csv``/``.parquet`` file).

    Args:
        table: the DataFrame or file, one row per (configuration, fidelity).
        config_columns: the columns that make up a configuration.
        fidelity_column: the fidelity (``"epoch"``); every configuration must have a row
            at every fidelity value of the table.
        metric_columns: the metrics a step reports.
        elapsed_column: the cumulative simulated seconds at the end of each step.
        match: ``"exact"`` or ``"nearest"`` (see the module docstring).
        log_scale: for ``"nearest"``, column -> whether it is on a log scale (default:
            numeric columns whose values look log-spaced, see ``_nearest``).
        row_key: the key of the row number in an exact-match space's configs.
    """

    # Each row's key of _row_of, by row number (set up by _set_up; a blackbox pickled
    # before it had one looks every row up in _row_of).
    _key_of_row: List[Optional[tuple]] = []

    def __init__(
        self,
        table: Any,
        *,
        config_columns: Sequence[str],
        fidelity_column: str,
        metric_columns: Sequence[str],
        elapsed_column: str,
        match: str = "exact",
        log_scale: Optional[Mapping[str, bool]] = None,
        row_key: str = "row",
    ) -> None:
        curves = curve_table_from_frame(read_table(table), config_columns, fidelity_column, metric_columns, elapsed_column)
        self._set_up(curves, fidelity_column, elapsed_column, match, log_scale, row_key)

    @classmethod
    def from_arrays(
        cls,
        configs: Mapping[str, Any],
        fidelities: Sequence[Any],
        metrics: Mapping[str, Any],
        *,
        elapsed: Optional[Any] = None,
        step_seconds: Optional[Any] = None,
        fidelity_name: str = "epoch",
        elapsed_name: str = "elapsed_time",
        match: str = "exact",
        log_scale: Optional[Mapping[str, bool]] = None,
        row_key: str = "row",
    ) -> "TabularBlackbox":
        """A table given as arrays, one row per configuration: ``configs`` column -> values
        (n), ``metrics`` name -> (n, fidelities), and either ``elapsed`` (cumulative seconds,
        n x fidelities) or ``step_seconds`` (each step's seconds, kept exactly as given;
        the elapsed column is then their running sum).  Needs no pandas."""
        if (elapsed is None) == (step_seconds is None):
            raise ValueError("give exactly one of elapsed (cumulative seconds) or step_seconds")
        if elapsed is None:
            elapsed = np.cumsum(np.asarray(step_seconds, dtype=float), axis=1)
        curves = checked_curve_table(
            dict(configs), fidelities, dict(metrics), elapsed, step_seconds,
            fidelity_name=fidelity_name, elapsed_name=elapsed_name,
        )
        blackbox = cls.__new__(cls)
        blackbox._set_up(curves, fidelity_name, elapsed_name, match, log_scale, row_key)
        return blackbox

    def _set_up(
        self,
        curves: CurveTable,
        fidelity_name: str,
        elapsed_name: str,
        match: str,
        log_scale: Optional[Mapping[str, bool]],
        row_key: str,
    ) -> None:
        if match not in MATCHES:
            raise ValueError(f"match must be one of {MATCHES}, got {match!r}")
        if row_key in curves.configs:
            raise ValueError(f"row_key '{row_key}' is also a configuration column; pass another row_key")
        if log_scale and match != "nearest":
            raise ValueError("log_scale applies to match='nearest' only")
        self.match = match
        self.row_key = row_key
        self.elapsed_name = elapsed_name
        self.config_columns: List[str] = list(curves.configs)
        self.configs: Dict[str, np.ndarray] = curves.configs
        self.metric_table: Dict[str, np.ndarray] = curves.metrics
        self.elapsed: np.ndarray = curves.elapsed
        self.step_seconds: np.ndarray = curves.step_seconds()
        self._row_of = curves.row_of
        # An exact-match config names its row under row_key: its values need only be
        # compared with that row's key, not looked up (a dict probe of one key per row).
        self._key_of_row = [None] * len(curves.row_of)
        for key, row in curves.row_of.items():
            self._key_of_row[row] = key
        # The config's values in column order, read in C: the key of _row_of.
        self._values_of = itemgetter(*self.config_columns) if len(self.config_columns) > 1 else _OneValue(self.config_columns[0])
        self._nearest = NearestConfig(curves.configs, log_scale) if match == "nearest" else None
        space = self._nearest_space() if match == "nearest" else self._row_space()
        super().__init__(space, fidelity_name, curves.fidelities, list(curves.metrics))

    @property
    def n_configs(self) -> int:
        return len(self.elapsed)

    def config_of_row(self, row: int) -> Dict[str, Any]:
        """Configuration ``row`` of the table, as a config dict (with the row number
        under ``row_key`` when ``match="exact"``, as the space's configs have it)."""
        if self.match == "exact" and self._key_of_row:
            # The values of the row's key, equal to config_at's: a sweep of these configs holds
            # one copy of them, and row() finds them in the key as they are (not compared as numbers).
            return {self.row_key: int(row), **dict(zip(self.config_columns, self._key_of_row[row]))}
        config = config_at(self.configs, row)
        return {self.row_key: int(row), **config} if self.match == "exact" else config

    def row(self, config: Mapping[str, Any]) -> int:
        """The table row ``config`` replays: its own (``"exact"``) or the nearest
        (``"nearest"``)."""
        if self._nearest is not None:
            key = self._key(config)
            row = self._row_of.get(key)  # (a table configuration needs no search)
            return self._nearest.nearest_row(config) if row is None else row
        key = self._key(config)
        row = config.get(self.row_key) if type(config) is dict else None
        if type(row) is int and 0 <= row < len(self._key_of_row) and self._key_of_row[row] == key:
            return row  # (the row _row_of gives: its keys are unique)
        row = self._row_of.get(key)
        if row is None:
            shown = {column: config[column] for column in self.config_columns}
            raise ValueError(
                f"config {shown} is not a configuration of the table (match='exact'); sample configs from "
                f"this blackbox's search_space, or use match='nearest'"
            )
        return row

    def curve(self, config: Mapping[str, Any]) -> Tuple[Dict[str, np.ndarray], np.ndarray]:
        row = self.row(config)
        return {name: values[row] for name, values in self.metric_table.items()}, self.step_seconds[row]

    def evaluate(self, config: Mapping[str, Any], fidelity: Any) -> Tuple[Dict[str, float], float]:
        row = self.row(config)
        position = self.fidelity_position(fidelity)
        metrics = {name: float(values[row, position]) for name, values in self.metric_table.items()}
        return metrics, float(self.step_seconds[row, position])

    def to_dataframe(self) -> Any:
        """The table in long form (one row per configuration and fidelity, configurations
        in row order), as :class:`TabularBlackbox` reads it back."""
        from fasttune._optional import import_optional

        pd = import_optional("pandas", "pandas", "TabularBlackbox.to_dataframe")
        n_fidelities = len(self.fidelities)
        columns = {column: np.repeat(values, n_fidelities) for column, values in self.configs.items()}
        columns[self.fidelity_name] = np.tile(self.fidelities, self.n_configs)
        columns.update({name: values.ravel() for name, values in self.metric_table.items()})
        columns[self.elapsed_name] = self.elapsed.ravel()
        return pd.DataFrame(columns)

    def _key(self, config: Mapping[str, Any]) -> tuple:
        try:
            return self._values_of(config)
        except KeyError as exc:
            raise ValueError(
                f"config {dict(config)!r} has no value for the configuration column {exc.args[0]!r} "
                f"(the table's are {self.config_columns})"
            ) from None
        except TypeError:
            raise TypeError(f"config must be a dict of column values, got {type(config).__name__}") from None

    def _row_space(self) -> Dict[str, Any]:
        space: Dict[str, Any] = {self.row_key: randint(0, self.n_configs)}
        for column, values in self.configs.items():
            space[column] = sample_from(_RowValue(values, self.row_key))
        return space

    def _nearest_space(self) -> Dict[str, Any]:
        assert self._nearest is not None
        space: Dict[str, Any] = {}
        for column, values in self.configs.items():
            distinct = list(dict.fromkeys(values.tolist()))
            if column in self._nearest.categorical_columns or len(distinct) == 1:
                space[column] = choice(distinct)
                continue
            log = column in self._nearest.log_columns
            low, high = values.min().item(), values.max().item()
            if values.dtype.kind in "iu":
                space[column] = (lograndint if log else randint)(low, high + 1)
            else:
                space[column] = (loguniform if log else uniform)(low, high)
        return space

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]}, configs={self.n_configs}, match={self.match!r})"
