"""Blackboxes for simulated tuning: problems whose learning curves are known in advance
(a recorded table, a surrogate or a formula), so a simulator can replay a trial's reports
and the time each step would have taken instead of training anything.

* :class:`Blackbox`: the base (``search_space``, ``fidelity_name``, ``max_fidelity``,
  ``metric_names``, ``evaluate(config, fidelity)``, ``curve(config)``).
* :class:`TabularBlackbox`: recorded curves from a DataFrame, CSV or Parquet file.
* :class:`FunctionBlackbox`: a function ``f(config, fidelity) -> (metrics, seconds)``.
* :class:`Simulation`: hand it to the ``Tuner`` as the trainable and ``fit()`` runs the
  sweep in simulated time on a :class:`SimulatedExecutor` (virtual workers, in-process).
* :func:`blackbox_trainable`: the same problem as a function trainable for a real run.
* Anytime curves for benchmarks: :class:`AnytimeRecorder` (a callback),
  :func:`anytime_curve` (best-so-far against simulated time or compute) and
  :func:`aggregate_curves` (quantiles over seeds on a common grid).
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
from fasttune.simulation._anytime import (
    AggregateCurve,
    AnytimeCurve,
    AnytimeRecorder,
    aggregate_curves,
    anytime_curve,
)
from fasttune.simulation._blackbox import Blackbox
from fasttune.simulation._executor import SimulatedClock, SimulatedExecutor
from fasttune.simulation._function import FunctionBlackbox
from fasttune.simulation._real_trainable import blackbox_trainable
from fasttune.simulation._synthetic import (
    branin_blackbox,
    learning_curve_table,
    reference_asha_table,
    reference_trial_order,
)
from fasttune.simulation._simulation import Simulation
from fasttune.simulation._tabular import TabularBlackbox

__all__ = [
    "AggregateCurve",
    "AnytimeCurve",
    "AnytimeRecorder",
    "Blackbox",
    "FunctionBlackbox",
    "SimulatedClock",
    "SimulatedExecutor",
    "Simulation",
    "TabularBlackbox",
    "aggregate_curves",
    "anytime_curve",
    "blackbox_trainable",
    "branin_blackbox",
    "learning_curve_table",
    "reference_asha_table",
    "reference_trial_order",
]
