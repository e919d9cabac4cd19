"""Blackboxes for simulated tuning: problems whose learning curves are known in advance
(a recorded table, a surrogate or a formula), so a simulator can replay a trial's reports
and the time each step would have taken instead of training anything.

* :class:`Blackbox`: the base (``search_space``, ``fidelity_name``, ``max_fidelity``,
  ``metric_names``, ``evaluate(config, fidelity)``, ``curve(config)``).
* :class:`TabularBlackbox`: recorded curves from a DataFrame, CSV or Parquet file.
* :class:`FunctionBlackbox`: a function ``f(config, fidelity) -> (metrics, seconds)``.
* Built-in synthetic problems: :func:`learning_curve_table`, :func:`reference_asha_table`,
  :func:`reference_trial_order`, :func:`branin_blackbox`.

Not imported by ``import fasttune``.

Example:
    >>> from fasttune.simulation import reference_asha_table
    >>> blackbox = reference_asha_table()
    >>> metrics, step_seconds = blackbox.curve(blackbox.config_of_row(0))
    >>> metrics["loss"].shape, step_seconds.shape
    ((27,), (27,))
"""
from fasttune.simulation._blackbox import Blackbox
from fasttune.simulation._function import FunctionBlackbox
from fasttune.simulation._synthetic import (
    branin_blackbox,
    learning_curve_table,
    reference_asha_table,
    reference_trial_order,
)
from fasttune.simulation._tabular import TabularBlackbox

__all__ = [
    "Blackbox",
    "FunctionBlackbox",
    "TabularBlackbox",
    "branin_blackbox",
    "learning_curve_table",
    "reference_asha_table",
    "reference_trial_order",
]
