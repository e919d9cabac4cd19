"""Learning curves as arrays, one row per configuration, and the checks they must pass.

A :class:`CurveTable` is what a :class:`~fasttune.simulation.TabularBlackbox` holds
whichever way it was built (a DataFrame, a file, arrays): ``configs[column][i]`` is
configuration ``i``'s value, ``metrics[name][i, j]`` its metric at ``fidelities[j]``,
``elapsed[i, j]`` the cumulative seconds at the end of that step.

Example:
    >>> import numpy as np
    >>> table = checked_curve_table({"lr": np.array([0.1, 0.01])}, np.array([1, 2]),
    ...     {"loss": np.array([[0.5, 0.4], [0.9, 0.8]])}, np.array([[1.0, 2.0], [3.0, 6.0]]))
    >>> table.step_seconds().tolist()
    [[1.0, 1.0], [3.0, 3.0]]
"""
from __future__ import annotations

from typing import Any, Dict, NamedTuple, Optional

import numpy as np

__all__ = ["CurveTable", "checked_curve_table", "config_at"]


class CurveTable(NamedTuple):
    configs: Dict[str, np.ndarray]
    fidelities: np.ndarray
    metrics: Dict[str, np.ndarray]
    elapsed: np.ndarray
    # Configuration tuple (values in column order) -> its row: the table's index.
    row_of: Dict[tuple, int]
    # Given when the steps are the source (a synthetic table); otherwise np.diff(elapsed).
    given_step_seconds: Optional[np.ndarray] = None

    @property
    def n_configs(self) -> int:
        return len(self.elapsed)

    def step_seconds(self) -> np.ndarray:
        if self.given_step_seconds is not None:
            return self.given_step_seconds
        return np.diff(self.elapsed, axis=1, prepend=0.0)


def config_at(configs: Dict[str, np.ndarray], row: int) -> Dict[str, Any]:
    """Configuration ``row`` as a dict of Python scalars."""
    return {column: values[row].item() if hasattr(values[row], "item") else values[row] for column, values in configs.items()}


def checked_curve_table(
    configs: Dict[str, Any],
    fidelities: Any,
    metrics: Dict[str, Any],
    elapsed: Any,
    step_seconds: Optional[Any] = None,
    *,
    fidelity_name: str = "fidelity",
    elapsed_name: str = "elapsed time",
) -> CurveTable:
    """A :class:`CurveTable` of the arrays given, or a ``ValueError`` saying which
    configuration, fidelity or column is wrong: shapes that disagree, a configuration
    listed twice, an elapsed time that is negative, missing or goes down."""
    if not configs:
        raise ValueError("a table needs at least one configuration column")
    config_arrays = {column: np.asarray(values) for column, values in configs.items()}
    fidelity_values = np.asarray(fidelities)
    n_fidelities = fidelity_values.size
    if fidelity_values.ndim != 1 or n_fidelities == 0 or not np.all(np.diff(fidelity_values) > 0):
        raise ValueError(f"the {fidelity_name} values must be a non-empty, strictly increasing sequence")
    n_configs = len(next(iter(config_arrays.values())))
    for column, values in config_arrays.items():
        if values.shape != (n_configs,):
            raise ValueError(f"configuration column '{column}' has shape {values.shape}; expected ({n_configs},)")
    metric_arrays = {name: _matrix(values, name, n_configs, n_fidelities) for name, values in metrics.items()}
    elapsed_array = _matrix(elapsed, elapsed_name, n_configs, n_fidelities)
    row_of = _index_unique_configs(config_arrays, n_configs)
    if step_seconds is not None:
        step_array = _matrix(step_seconds, "step seconds", n_configs, n_fidelities)
        _check_steps(step_array, config_arrays, fidelity_values, "step seconds", fidelity_name, cumulative=False)
    else:
        step_array = None
        steps = np.diff(elapsed_array, axis=1, prepend=0.0)
        _check_steps(steps, config_arrays, fidelity_values, elapsed_name, fidelity_name, cumulative=True)
    return CurveTable(config_arrays, fidelity_values, metric_arrays, elapsed_array, row_of, step_array)


def _matrix(values: Any, name: str, n_configs: int, n_fidelities: int) -> np.ndarray:
    try:
        matrix = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"column '{name}' must hold numbers") from None
    if matrix.shape != (n_configs, n_fidelities):
        raise ValueError(f"'{name}' has shape {matrix.shape}; expected ({n_configs}, {n_fidelities}) (configurations x fidelities)")
    return matrix


def _index_unique_configs(configs: Dict[str, np.ndarray], n_configs: int) -> Dict[tuple, int]:
    row_of = {key: row for row, key in enumerate(zip(*(values.tolist() for values in configs.values())))}
    if len(row_of) < n_configs:
        seen: Dict[tuple, int] = {}
        for row, key in enumerate(zip(*(values.tolist() for values in configs.values()))):
            if key in seen:
                raise ValueError(f"configuration {dict(zip(configs, key))} is listed twice (rows {seen[key]} and {row})")
            seen[key] = row
    return row_of


def _check_steps(
    steps: np.ndarray,
    configs: Dict[str, np.ndarray],
    fidelities: np.ndarray,
    name: str,
    fidelity_name: str,
    *,
    cumulative: bool,
) -> None:
    """Every step takes zero or more seconds: a cumulative time never goes down."""
    bad = ~(steps >= 0)  # (NaN is bad too)
    if bad.any():
        row, position = (int(i) for i in np.argwhere(bad)[0])
        fidelity = fidelities[position].item()
        detail = (
            "is missing (NaN)"
            if np.isnan(steps[row, position])
            else ("goes down from the step before" if cumulative and position > 0 else "is negative")
        )
        rule = "elapsed time is cumulative and never decreases" if cumulative else "a step takes zero or more seconds"
        raise ValueError(f"'{name}' {detail} for configuration {config_at(configs, row)} at {fidelity_name}={fidelity!r}: {rule}")

