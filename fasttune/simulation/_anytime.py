"""Anytime curves: the best metric found so far against simulated time or compute spent.

What a benchmarker plots to compare tuning algorithms.  An :class:`AnytimeRecorder`
passed in ``RunConfig(callbacks=[...])`` keeps, for every result of a sweep, the time it
was reported (the experiment's clock: simulated seconds under a :class:`Simulation`), its
step's seconds (``time_this_iter_s``) and the metrics it was told to keep, in a few numpy
arrays (8 bytes per result and column).  From it:

* :func:`anytime_curve` gives one run's :class:`AnytimeCurve`: best-so-far against
  ``"time"`` (seconds since the experiment started) or ``"compute"`` (the seconds all
  trials' steps took, summed, in the order the results were reported);
* :func:`aggregate_curves` reads several runs' curves (one per seed) on a common grid and
  gives quantiles over them, as an :class:`AggregateCurve`.

A curve is a step function: the best value found holds from the point it was reported
until the next improvement; before the first result it is NaN.

Example: three trials of a Branin blackbox on two virtual workers.  Each epoch of the
first takes 2 s, of the second 1 s, of the third (which starts when the second ends, at 3 s)
1.2 s; the first's loss rises with its epochs, so it only counts at 2 s:
    >>> import fasttune as tune
    >>> from fasttune.search import BasicVariantGenerator
    >>> from fasttune.simulation import Simulation, branin_blackbox
    >>> blackbox = branin_blackbox(max_epochs=3)
    >>> points = [{"x1": 0.0, "x2": 15.0}, {"x1": 3.0, "x2": 0.0}, {"x1": 9.0, "x2": 3.0}]
    >>> recorder = AnytimeRecorder("loss")
    >>> grid = tune.Tuner(
    ...     Simulation(blackbox, num_workers=2), param_space=blackbox.search_space,
    ...     tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=3,
    ...                                 search_alg=BasicVariantGenerator(points_to_evaluate=points)),
    ...     run_config=tune.RunConfig(storage_path=".", callbacks=[recorder], verbose=0)).fit()
    >>> curve = anytime_curve(recorder, "loss", "min")
    >>> curve.x.round(6).tolist(), curve.best.round(3).tolist()
    ([1.0, 2.0, 3.0, 4.2, 5.4, 6.6], [7.215, 6.701, 6.197, 2.195, 2.092, 1.991])
    >>> curve.at([0.5, 4.0, 100.0]).round(3).tolist()
    [nan, 6.197, 1.991]
    >>> compute = anytime_curve(recorder, "loss", "min", against="compute")
    >>> compute.x.round(6).tolist()  # 2 s of the first trial's were spent by t=2 too
    [1.0, 2.0, 5.0, 8.2, 9.4, 12.6]
"""
from __future__ import annotations

import math
from array import array
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from fasttune.callback import Callback

__all__ = ["AggregateCurve", "AnytimeCurve", "AnytimeRecorder", "aggregate_curves", "anytime_curve"]

AGAINST = ("time", "compute")
MODES = ("min", "max")


class AnytimeRecorder(Callback):
    """Keeps every result's report time, step seconds and ``metrics`` for anytime curves.

    Args:
        metrics: the metric (or metrics) to keep: top-level keys of the results.  A result
            without one records NaN for it (never an improvement).
        start_time: the experiment clock's value when the sweep started: the
            ``Simulation``'s ``start_time`` (0 by default), so that ``"time"`` counts the
            seconds since the start.

    Results are recorded as the runner logs them (the ``on_trial_result_batch`` hook), so
    the curve sees exactly the results the trials' files hold, with their exact report
    times, and needs no files (``result.json`` may be off).  Use one recorder per run.
    """

    def __init__(self, metrics: Union[str, Sequence[str]], start_time: float = 0.0) -> None:
        names = [metrics] if isinstance(metrics, str) else list(metrics)
        if not names or not all(isinstance(name, str) and name for name in names):
            raise ValueError(f"metrics must be a metric name or a non-empty list of them, got {metrics!r}")
        if len(set(names)) != len(names):
            raise ValueError(f"metrics has duplicates: {names}")
        self.metrics: List[str] = names
        self.start_time = float(start_time)
        self._times = array("d")
        self._step_seconds = array("d")
        self._values: Dict[str, array] = {name: array("d") for name in names}

    def on_trial_result_batch(self, iteration: int, trials: List[Any], trial: Any, results: List[Dict[str, Any]],
                              times: List[float], **info: Any) -> None:
        self._times.extend(times)
        self._step_seconds.extend(result["time_this_iter_s"] for result in results)
        nan = math.nan
        for name, values in self._values.items():
            values.extend(_number(result.get(name, nan)) for result in results)

    def get_state(self) -> Dict[str, Any]:
        """The results recorded so far (plain bytes), kept in the experiment's snapshots:
        a restored sweep's recorder goes on from them, so its curve covers the whole run."""
        return {"metrics": list(self.metrics), "times": self._times.tobytes(),
                "step_seconds": self._step_seconds.tobytes(),
                "values": [self._values[name].tobytes() for name in self.metrics]}

    def set_state(self, state: Dict[str, Any]) -> None:
        if list(state["metrics"]) != self.metrics:
            raise ValueError(f"this AnytimeRecorder keeps {self.metrics}, the restored one kept "
                             f"{list(state['metrics'])}: pass one that keeps the same metrics")
        self._times, self._step_seconds = array("d", state["times"]), array("d", state["step_seconds"])
        self._values = {name: array("d", data) for name, data in zip(self.metrics, state["values"])}

    @property
    def num_results(self) -> int:
        """How many results were recorded."""
        return len(self._times)

    def columns(self) -> Tuple[np.ndarray, np.ndarray, Dict[str, np.ndarray]]:
        """``(times, step_seconds, {metric: values})`` in the order results were reported
        (stable for equal times); times count from ``start_time``."""
        times = np.frombuffer(self._times, dtype=np.float64) if self._times else np.empty(0)
        order = np.argsort(times, kind="stable")
        step_seconds = np.frombuffer(self._step_seconds, dtype=np.float64) if self._step_seconds else np.empty(0)
        values = {name: (np.frombuffer(column, dtype=np.float64) if column else np.empty(0))[order]
                  for name, column in self._values.items()}
        return times[order] - self.start_time, step_seconds[order], values

    def __repr__(self) -> str:
        return f"AnytimeRecorder(metrics={self.metrics}, results={self.num_results})"


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan  # a value that is no number never improves the best


class AnytimeCurve:
    """One run's best-so-far: ``best[i]`` from ``x[i]`` on, until ``x[i + 1]``.

    ``x`` (seconds of simulated time or of compute, strictly increasing) holds only the
    points where the best improved; ``best`` is strictly better at each.
    """

    __slots__ = ("x", "best", "metric", "mode", "against")

    def __init__(self, x: np.ndarray, best: np.ndarray, metric: str, mode: str, against: str) -> None:
        self.x = x
        self.best = best
        self.metric = metric
        self.mode = mode
        self.against = against

    @property
    def final(self) -> float:
        """The best value the run found."""
        return float(self.best[-1])

    def at(self, points: Any) -> np.ndarray:
        """The best-so-far at each of ``points`` (NaN before the first result)."""
        points = np.asarray(points, dtype=np.float64)
        index = np.searchsorted(self.x, points, side="right") - 1
        return np.where(index >= 0, self.best[np.maximum(index, 0)], np.nan)

    def __len__(self) -> int:
        return len(self.x)

    def __repr__(self) -> str:
        return (f"AnytimeCurve({self.metric!r}, mode={self.mode!r}, against={self.against!r}, "
                f"improvements={len(self.x)}, final={self.final!r})")


def anytime_curve(recorder: AnytimeRecorder, metric: str, mode: str = "min", against: str = "time") -> AnytimeCurve:
    """The best ``metric`` found so far against ``against``: ``"time"`` (seconds since the
    experiment's start at which each result was reported) or ``"compute"`` (the step
    seconds of every result reported up to it, summed).

    ``mode`` is ``"min"`` or ``"max"``.  A result without the metric, NaN or a value that
    is no number never improves the best.  Raises ``ValueError`` when the recorder does not
    keep ``metric`` or no result reported it.
    """
    if not isinstance(recorder, AnytimeRecorder):
        raise TypeError(f"anytime_curve needs an AnytimeRecorder that ran in the sweep "
                        f"(RunConfig(callbacks=[recorder])), got {type(recorder).__name__}")
    if mode not in MODES:
        raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
    if against not in AGAINST:
        raise ValueError(f"against must be 'time' or 'compute', got {against!r}")
    if metric not in recorder.metrics:
        raise ValueError(f"the recorder keeps no metric {metric!r}; it keeps {recorder.metrics} "
                         f"(AnytimeRecorder({metric!r}) records it)")
    times, step_seconds, values = recorder.columns()
    value = values[metric]
    axis = times if against == "time" else np.cumsum(step_seconds)
    # Minimise in both modes: max mode negates; a missing value is the worst there is.
    signed = np.where(np.isnan(value), np.inf, value if mode == "min" else -value)
    running = np.minimum.accumulate(signed) if len(signed) else signed
    if not len(running) or running[-1] == np.inf:
        raise ValueError(f"no result reported the metric {metric!r} as a number "
                         f"({recorder.num_results} results recorded)")
    # Of results at the same point the last holds the best after all of them.
    last_at_point = np.append(axis[1:] != axis[:-1], True)
    axis, running = axis[last_at_point], running[last_at_point]
    improved = np.isfinite(running) & np.append(True, running[1:] < running[:-1])
    best = running[improved]
    return AnytimeCurve(axis[improved], best if mode == "min" else -best, metric, mode, against)


class AggregateCurve:
    """Quantiles over several runs' best-so-far on a common grid: ``values[k]`` is the
    ``quantiles[k]`` quantile at each grid point (NaN where a run had no result yet)."""

    __slots__ = ("grid", "quantiles", "values", "num_runs", "metric", "mode", "against")

    def __init__(self, grid: np.ndarray, quantiles: Tuple[float, ...], values: np.ndarray, num_runs: int,
                 metric: str, mode: str, against: str) -> None:
        self.grid = grid
        self.quantiles = quantiles
        self.values = values
        self.num_runs = num_runs
        self.metric = metric
        self.mode = mode
        self.against = against

    def quantile(self, q: float) -> np.ndarray:
        """The values of quantile ``q`` (one of :attr:`quantiles`) on the grid."""
        try:
            return self.values[self.quantiles.index(q)]
        except ValueError:
            raise ValueError(f"quantile {q!r} was not computed; the aggregate has {list(self.quantiles)}") from None

    @property
    def median(self) -> np.ndarray:
        return self.quantile(0.5)

    def __repr__(self) -> str:
        return (f"AggregateCurve({self.metric!r}, mode={self.mode!r}, against={self.against!r}, runs={self.num_runs}, "
                f"grid={len(self.grid)} points, quantiles={list(self.quantiles)})")


def aggregate_curves(curves: Sequence[AnytimeCurve], grid: Union[int, Sequence[float], np.ndarray] = 100,
                     quantiles: Sequence[float] = (0.25, 0.5, 0.75)) -> AggregateCurve:
    """Reads every curve (one per seed, same metric, mode and axis) at the points of
    ``grid`` and gives the ``quantiles`` over them at each point.

    ``grid``: the points (increasing), or a number of points spread evenly from 0 to the
    last improvement of any curve.  A point where some run had no result yet is NaN.

    Example:
        >>> a = AnytimeCurve(np.array([1.0, 3.0]), np.array([5.0, 2.0]), "loss", "min", "time")
        >>> b = AnytimeCurve(np.array([2.0]), np.array([4.0]), "loss", "min", "time")
        >>> c = AnytimeCurve(np.array([0.5, 2.5]), np.array([6.0, 1.0]), "loss", "min", "time")
        >>> aggregate = aggregate_curves([a, b, c], [0.0, 1.5, 2.0, 4.0], quantiles=(0.0, 0.5, 1.0))
        >>> aggregate.median.tolist()
        [nan, nan, 5.0, 2.0]
        >>> aggregate.quantile(0.0).tolist(), aggregate.quantile(1.0).tolist()
        ([nan, nan, 4.0, 1.0], [nan, nan, 6.0, 4.0])
    """
    curves = list(curves)
    if not curves:
        raise ValueError("aggregate_curves needs at least one curve")
    for curve in curves:
        if not isinstance(curve, AnytimeCurve):
            raise TypeError(f"aggregate_curves takes AnytimeCurves (from anytime_curve), got {type(curve).__name__}")
    kinds = {(curve.metric, curve.mode, curve.against) for curve in curves}
    if len(kinds) > 1:
        raise ValueError(f"the curves differ in (metric, mode, against): {sorted(kinds)}; aggregate like with like")
    quantiles = tuple(float(q) for q in quantiles)
    if not quantiles or not all(0.0 <= q <= 1.0 for q in quantiles):
        raise ValueError(f"quantiles must be numbers in [0, 1], got {list(quantiles)}")
    if isinstance(grid, (int, np.integer)) and not isinstance(grid, bool):
        if grid < 2:
            raise ValueError(f"a grid needs at least 2 points, got {grid}")
        grid = np.linspace(0.0, max(float(curve.x[-1]) for curve in curves), int(grid))
    points = np.asarray(grid, dtype=np.float64)
    if points.ndim != 1 or not len(points) or np.any(np.diff(points) < 0):
        raise ValueError("grid must be a number of points or an increasing sequence of points")
    at_points = np.empty((len(curves), len(points)))
    for row, curve in enumerate(curves):
        at_points[row] = curve.at(points)
    started = ~np.isnan(at_points).any(axis=0)
    values = np.full((len(quantiles), len(points)), np.nan)
    if started.any():
        values[:, started] = np.quantile(at_points[:, started], quantiles, axis=0)
    metric, mode, against = kinds.pop()
    return AggregateCurve(points, quantiles, values, len(curves), metric, mode, against)
