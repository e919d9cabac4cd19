"""Seeded synthetic blackboxes that need no download.

* :func:`learning_curve_table`: the reference workload of fasttune's issue 19 (and
  larger tables with the same formula): ``n_configs`` configurations of ``lr``, ``width``
  and ``dropout``, each with a noisy power-law loss curve over 27 epochs.
* :func:`reference_asha_table`: that table at its reference size, 2,000 configurations
  from seed 0.
* :func:`reference_trial_order`: the configurations a reference run evaluates, in order
  (for ``points_to_evaluate``).
* :func:`branin_blackbox`: a multi-fidelity Branin function with a cost model.

Example:
    >>> blackbox = reference_asha_table()
    >>> blackbox.n_configs, blackbox.max_fidelity, blackbox.metric_names
    (2000, 27, ['loss'])
    >>> first = reference_trial_order(blackbox, n_trials=2, seed=0)
    >>> [config["row"] for config in first]
    [1946, 1236]
    >>> metrics, seconds = blackbox.evaluate(first[0], 27)
    >>> round(metrics["loss"], 6), round(seconds, 6)
    (0.584372, 8.967277)
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Tuple

import numpy as np

from fasttune.search.sample import uniform
from fasttune.simulation._function import FunctionBlackbox
from fasttune.simulation._tabular import TabularBlackbox

__all__ = ["branin_blackbox", "learning_curve_table", "reference_asha_table", "reference_trial_order"]

REFERENCE_N_CONFIGS = 2000
REFERENCE_N_EPOCHS = 27


def learning_curve_table(
    n_configs: int = REFERENCE_N_CONFIGS, seed: int = 0, *, n_epochs: int = REFERENCE_N_EPOCHS, match: str = "exact"
) -> TabularBlackbox:
    """A table of ``n_configs`` synthetic learning curves over ``n_epochs`` epochs.

    Drawn from ``rng = numpy.random.default_rng(seed)`` in this order: ``lr = 10 **
    rng.uniform(-4, -1, N)``, ``width = rng.integers(16, 513, N)``, ``dropout =
    rng.uniform(0, 0.5, N)``, ``noise = rng.normal(0, 1, (N, n_epochs))``.  With ``x =
    log10(lr) + 2.5`` and ``wn = (log2(width) - 4) / 5``::

        a = 0.05 + 0.1*x**2 + 0.4*(dropout - 0.15)**2 + 0.1*(1 - wn)**2
        b = 0.5 + 0.5*wn + 0.2*dropout
        c = 0.2 + 0.6 / (1 + exp(-2*(log10(lr) + 3)))
        loss[i, e-1] = a + b * e**(-c) + 0.005*noise[i, e-1]     for e = 1..n_epochs

    and every epoch of configuration ``i`` takes ``1 + 9*wn`` simulated seconds (exactly:
    the step seconds are stored, the elapsed-time column is their running sum).  Metric
    ``loss``, fidelity ``epoch`` (1..n_epochs), configuration columns ``lr``, ``width``,
    ``dropout``; row ``i`` is configuration ``i``.  Memory: about ``3 * 8 * n_configs *
    n_epochs`` bytes (65 MB for 100,000 configurations).
    """
    if int(n_configs) < 1 or int(n_epochs) < 1:
        raise ValueError(f"n_configs and n_epochs must be >= 1, got {n_configs} and {n_epochs}")
    n = int(n_configs)
    rng = np.random.default_rng(seed)
    lr = 10 ** rng.uniform(-4, -1, n)
    width = rng.integers(16, 513, n)
    dropout = rng.uniform(0, 0.5, n)
    noise = rng.normal(0, 1, (n, n_epochs))
    x = np.log10(lr) + 2.5
    wn = (np.log2(width) - 4) / 5
    a = 0.05 + 0.1 * x**2 + 0.4 * (dropout - 0.15) ** 2 + 0.1 * (1 - wn) ** 2
    b = 0.5 + 0.5 * wn + 0.2 * dropout
    c = 0.2 + 0.6 / (1 + np.exp(-2 * (np.log10(lr) + 3)))
    epochs = np.arange(1, n_epochs + 1)
    loss = a[:, None] + b[:, None] * epochs[None, :] ** (-c[:, None]) + 0.005 * noise
    step_seconds = np.repeat((1 + 9 * wn)[:, None], n_epochs, axis=1)
    return TabularBlackbox.from_arrays(
        {"lr": lr, "width": width, "dropout": dropout},
        epochs,
        {"loss": loss},
        step_seconds=step_seconds,
        fidelity_name="epoch",
        elapsed_name="elapsed_time",
        match=match,
    )


def reference_asha_table(n_configs: int = REFERENCE_N_CONFIGS, seed: int = 0, *, match: str = "exact") -> TabularBlackbox:
    """Issue 19's reference table: :func:`learning_curve_table` with 2,000 configurations
    x 27 epochs from seed 0 (other sizes and seeds give larger or other tables)."""
    return learning_curve_table(n_configs, seed, match=match)


def reference_trial_order(blackbox: TabularBlackbox, n_trials: int = 1000, seed: int = 0) -> List[Dict[str, Any]]:
    """The configurations a reference run evaluates, in order: the rows
    ``numpy.random.default_rng(seed).permutation(blackbox.n_configs)[:n_trials]`` as
    configs (pass them as ``points_to_evaluate``)."""
    if not 0 <= int(n_trials) <= blackbox.n_configs:
        raise ValueError(f"n_trials must be between 0 and the table's {blackbox.n_configs} configurations, got {n_trials}")
    rows = np.random.default_rng(seed).permutation(blackbox.n_configs)[: int(n_trials)]
    return [blackbox.config_of_row(row) for row in rows.tolist()]


BRANIN_MINIMUM = 0.397887357729738


def branin_blackbox(max_epochs: int = 27) -> FunctionBlackbox:
    """The Branin function with a fidelity: metric ``loss`` at ``epoch`` 1..max_epochs.

    With ``z = epoch / max_epochs``, the multi-fidelity Branin of Kandasamy et al. (2017):
    ``loss = (x2 - b*x1**2 + c*x1 - 6)**2 + 10*(1 - t)*cos(x1) + 10`` with ``b = 5.1/(4
    pi**2) - 0.01*(1 - z)``, ``c = 5/pi - 0.1*(1 - z)``, ``t = 1/(8 pi) + 0.05*(1 - z)``;
    at the last epoch it is the usual Branin (minimum 0.397887 at (-pi, 12.275), (pi,
    2.275), (9.42478, 2.475)).  Cost model: each epoch takes ``1 + x2/15`` simulated
    seconds.  Space: ``x1`` uniform in [-5, 10], ``x2`` uniform in [0, 15].

    Example:
        >>> blackbox = branin_blackbox()
        >>> metrics, seconds = blackbox.evaluate({"x1": math.pi, "x2": 2.275}, 27)
        >>> round(metrics["loss"], 6), round(seconds, 4)
        (0.397887, 1.1517)
    """
    if int(max_epochs) < 1:
        raise ValueError(f"max_epochs must be >= 1, got {max_epochs}")
    return FunctionBlackbox(
        _Branin(int(max_epochs)),
        {"x1": uniform(-5, 10), "x2": uniform(0, 15)},
        range(1, int(max_epochs) + 1),
        ["loss"],
        fidelity_name="epoch",
    )


class _Branin:
    """The function of :func:`branin_blackbox` (a class, so the blackbox pickles)."""

    def __init__(self, max_epochs: int) -> None:
        self.max_epochs = max_epochs

    def __call__(self, config: Mapping[str, Any], epoch: int) -> Tuple[Dict[str, float], float]:
        x1, x2 = float(config["x1"]), float(config["x2"])
        gap = 1 - epoch / self.max_epochs
        b = 5.1 / (4 * math.pi**2) - 0.01 * gap
        c = 5 / math.pi - 0.1 * gap
        t = 1 / (8 * math.pi) + 0.05 * gap
        loss = (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10
        return {"loss": loss}, 1 + x2 / 15
