"""``ResultGrid``: every trial's ``Result`` from one sweep, with best-trial lookup.

Example:
    >>> from fasttune.result import Result
    >>> from fasttune.result_grid import ResultGrid
    >>> grid = ResultGrid(
    ...     [Result({"acc": 0.7}, None, None, "/tmp/e/t0"),
    ...      Result({"acc": 0.9}, None, None, "/tmp/e/t1")],
    ...     experiment_path="/tmp/e",
    ... )
    >>> grid.get_best_result(metric="acc", mode="max").metrics
    {'acc': 0.9}
"""

from __future__ import annotations

import logging
import math
import numbers
import operator
import os
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Set, Union

from fasttune import _storage as storage
from fasttune._flatten import flatten_dict, lookup_flattened
from fasttune._results_store import read_store_cached
from fasttune.error import TuneError
from fasttune.result import (  # noqa: F401 - point_into_storage is re-exported
    PARAMS_FILE,
    Result,
    import_pandas,
    local_filesystem,
    metrics_with_config,
    point_into_storage,
    trial_rows,
)

__all__ = ["ResultGrid", "point_into_storage", "local_filesystem"]

logger = logging.getLogger(__name__)

_MODES = ("min", "max")
_SCOPES = ("last", "avg", "last-5-avg", "last-10-avg", "all")


def _snapshot_summaries(experiment_path: str, wanted: Callable[[str], bool]) -> Any:
    """``read_trial_summaries`` of the experiment's newest snapshot for the directory names
    ``wanted`` accepts; none when it has none, or (with a warning) when none can be read: a
    damaged snapshot must not hide the trials' files."""
    from fasttune.execution._experiment_state import SnapshotSummaries, has_snapshot, read_trial_summaries

    if not has_snapshot(experiment_path):
        return SnapshotSummaries({}, {})
    try:
        return read_trial_summaries(experiment_path, wanted)
    except (TuneError, OSError) as exc:
        logger.warning("The experiment state of %s cannot be read (%s); the trials are read from their files "
                       "alone, and trials without result files are left out.", experiment_path, exc)
        return SnapshotSummaries({}, {})


def as_number(value: Any) -> Optional[float]:
    """``value`` as a float when it is a real number (not a bool), else None."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    return None


def _metric_value(row: Optional[Dict[str, Any]], metric: str) -> Optional[float]:
    """Numeric value of ``metric`` in ``row``; nested keys may be joined with "/"."""
    return as_number(lookup_flattened(row, metric))


def _is_better(score: float, best: Optional[float], mode: str) -> bool:
    """Strictly better; NaN ranks below every number (and ties keep the first)."""
    if best is None:
        return True
    if math.isnan(score):
        return False
    if math.isnan(best):
        return True
    return score > best if mode == "max" else score < best


class ResultGrid:
    """The results of a sweep: one :class:`~fasttune.result.Result` per trial.

    Args:
        experiment_analysis: The trials' results, in trial order; or, as in Ray Tune, an
            :class:`~fasttune.ExperimentAnalysis`, whose results, path and default
            metric and mode the grid then has.
        experiment_path: The experiment directory (needed with a list of results).
        default_metric: Metric used by :meth:`get_best_result` when none is
            passed (normally ``TuneConfig.metric``).
        default_mode: Mode used likewise (normally ``TuneConfig.mode``).

    Example:
        >>> from fasttune.result import Result
        >>> from fasttune.error import TuneError
        >>> grid = ResultGrid(
        ...     [Result({"loss": 1.0}, None, None, "/e/a"),
        ...      Result(None, None, TuneError("boom"), "/e/b")],
        ...     "/e", default_metric="loss", default_mode="min")
        >>> len(grid), grid.num_terminated, grid.num_errors
        (2, 1, 1)
        >>> grid.get_best_result().path
        '/e/a'
    """

    def __init__(
        self,
        experiment_analysis: Union[Sequence[Result], Any],
        experiment_path: Optional[Union[str, "os.PathLike[str]"]] = None,
        default_metric: Optional[str] = None,
        default_mode: Optional[str] = None,
    ) -> None:
        filesystem = None
        grid = getattr(experiment_analysis, "result_grid", None)
        if isinstance(grid, ResultGrid):
            # As Ray Tune: the grid of an ExperimentAnalysis, with its path and its default metric and mode.
            results, filesystem = list(grid), grid._filesystem
            experiment_path = experiment_path if experiment_path is not None else experiment_analysis.experiment_path
            default_metric = default_metric or experiment_analysis.default_metric
            default_mode = default_mode or experiment_analysis.default_mode
        else:
            results = list(experiment_analysis)
            if experiment_path is None:
                raise TypeError("ResultGrid(results, experiment_path) needs the experiment's path with its results "
                                "(or give an ExperimentAnalysis, which knows it).")
        for i, r in enumerate(results):
            if not isinstance(r, Result):
                raise TypeError(
                    f"ResultGrid results must all be fasttune Result objects; item {i} "
                    f"is {type(r).__name__}."
                )
        if default_mode is not None and default_mode not in _MODES:
            raise ValueError(
                f"ResultGrid default_mode={default_mode!r} is not valid; use one of "
                f"{list(_MODES)} or None."
            )
        self._results = results
        self._experiment_path = os.fsdecode(os.fspath(experiment_path))
        self._default_metric = default_metric
        self._default_mode = default_mode
        self._filesystem = filesystem  # the storage filesystem experiment_path is on; None: local
        self._history_cache: Dict[int, List[Dict[str, Any]]] = {}

    # -- construction ---------------------------------------------------------------

    @classmethod
    def _of_sequence(cls, results: Sequence[Result], experiment_path: str, default_metric: Optional[str] = None,
                     default_mode: Optional[str] = None) -> "ResultGrid":
        """A grid over ``results`` as given (a sequence that makes its Results when read,
        such as ``fit()``'s), not copied into a list."""
        grid = cls([], experiment_path, default_metric=default_metric, default_mode=default_mode)
        grid._results = results
        return grid

    @classmethod
    def from_path(
        cls,
        experiment_path: Union[str, "os.PathLike[str]"],
        default_metric: Optional[str] = None,
        default_mode: Optional[str] = None,
        storage_filesystem: Any = None,
    ) -> "ResultGrid":
        """Build a grid from an experiment directory on disk or in storage.

        Every direct subdirectory holding a ``params.json`` is a trial; its
        Result comes from :meth:`Result.from_path`.  So is every trial of the
        experiment's results store (``RunConfig(results_store="experiment")``),
        whose directory may not exist.  So is every trial of the experiment's newest
        snapshot with neither (a simulated sweep writes no files per trial): its metrics
        are its last result as the snapshot keeps it, with its config, status and error
        from there too; no history is kept for it, so its ``metrics_dataframe`` is None
        (as in ``fit()``'s grid) and the whole-history scopes see that one result.  A
        trial whose files hold no result gets its last result from the snapshot too.
        Trials are ordered by directory name. Nothing is unpickled: a pickled value in a
        snapshot is a placeholder, and a snapshot that cannot be read is a warning (the
        trials' files are read all the same).

        One trial's damaged files do not hide the others: a bad line in the middle of
        its ``result.json`` is logged as a warning naming the file and line, and that
        trial shows the results before the line (its metrics are the last of them, as
        a restore would keep them); a bad ``params.json`` is logged, and its config is
        then the one in its results, if any.

        ``experiment_path`` may be a URI that ``pyarrow.fs`` understands
        (``s3://bucket/prefix/exp?endpoint_override=...``, ``gs://...``), or a path on
        ``storage_filesystem`` (a ``pyarrow.fs.FileSystem``); needs
        ``pip install "fasttune[storage]"``. The experiment's files, less its
        checkpoints, are then copied into a local cache (each Result's ``path``), and
        the checkpoints point into storage: they are downloaded when opened.

        Example:
            >>> import json, os, tempfile
            >>> exp = tempfile.mkdtemp()
            >>> os.mkdir(os.path.join(exp, "trial_0"))
            >>> with open(os.path.join(exp, "trial_0", "params.json"), "w") as f:
            ...     json.dump({"lr": 0.1}, f)
            >>> grid = ResultGrid.from_path(exp)
            >>> len(grid), grid[0].config
            (1, {'lr': 0.1})
        """
        location = storage.resolve(experiment_path, storage_filesystem)
        if location is not None:
            local = storage.local_copy(location)
            return cls.from_local_copy(local, location, default_metric, default_mode)
        exp = os.path.abspath(os.path.expanduser(os.fsdecode(os.fspath(experiment_path))))
        return cls._from_directory(exp, default_metric, default_mode)

    @classmethod
    def _from_directory(cls, exp: str, default_metric: Optional[str], default_mode: Optional[str],
                        snapshot: Any = None) -> "ResultGrid":
        """:meth:`from_path`'s grid of the local experiment directory ``exp`` (absolute).
        ``snapshot``: its newest snapshot's trials as ``SnapshotSummaries``, where the caller
        has read them already (else they are read here)."""
        if not os.path.isdir(exp):
            raise FileNotFoundError(
                f"Experiment directory {exp!r} does not exist; pass "
                f"<storage_path>/<experiment name> of a finished or interrupted run."
            )
        results = {}
        names = set(os.listdir(exp))
        for name in names:
            trial_dir = os.path.join(exp, name)
            if os.path.isfile(os.path.join(trial_dir, PARAMS_FILE)):
                results[name] = Result.from_path(trial_dir, on_bad_line="warn")
        # RunConfig(results_store="experiment"): the trials in the store (read once); most
        # have no directory.
        stored = read_store_cached(exp) or {}
        from_store = {}
        for name, trial in stored.items():
            if name not in results:
                trial_dir = os.path.join(exp, name)
                results[name] = Result._from_rows(trial_dir, trial.config, trial.rows,
                                                  directory_exists=name in names and os.path.isdir(trial_dir))
                from_store[name] = trial.rows
        # A trial with neither (a simulated sweep writes no files): its last result from the
        # newest snapshot's record; a trial whose files hold no result gets it there too.
        from fasttune.execution._experiment_state import collector_paused

        with collector_paused():  # (100,000 Results and their metrics: nothing cyclic)
            from_snapshot = cls._add_snapshot_trials(exp, names, results, snapshot)
        order = sorted(results)
        grid = cls([results[name] for name in order], exp, default_metric=default_metric, default_mode=default_mode)
        history = {**from_store, **from_snapshot}  # the snapshot's row where the store had none
        grid._history_cache.update((index, history[name]) for index, name in enumerate(order) if name in history)
        return grid

    @staticmethod
    def _add_snapshot_trials(exp: str, names: Set[str], results: Dict[str, Result],
                             snapshot: Any = None) -> Dict[str, List[Dict[str, Any]]]:
        """Add to ``results`` (by directory name) the trials of the newest snapshot of
        ``exp`` (``snapshot`` if given) that have none, give those whose files hold no
        result the last result the snapshot keeps, and every trial the snapshot knows its
        status there; returns the one row of history of each trial given one.  ``names``:
        what the experiment directory holds."""
        from_snapshot = {}
        with_results = {name for name, result in results.items() if result.metrics}
        if snapshot is None:
            snapshot = _snapshot_summaries(exp, lambda name: name not in with_results)
        for name, result in results.items():
            # As Ray Tune's grid: the status the experiment state gives (a trial a killed sweep
            # was running is not TERMINATED, however far its files go).
            result._status = snapshot.statuses.get(name)
        for name, summary in snapshot.trials.items():
            if name in with_results:
                continue  # its files (or the store) hold its results
            if name in results and not summary.last_result:
                continue  # the snapshot knows no more than its files
            result = results.get(name)
            if result is None and name not in names:  # the common case: no directory to read
                results[name] = result = Result(metrics_with_config(summary.last_result, summary.config), None, None,
                                                os.path.join(exp, name), _config=summary.config)
            else:
                if result is None:  # a directory without params.json (a checkpoint, error.txt)
                    results[name] = result = Result._from_rows(os.path.join(exp, name), summary.config, [])
                result.metrics = metrics_with_config(summary.last_result, result.config or summary.config)
            if result.metrics:
                from_snapshot[name] = [result.metrics]
            if result.error is None and summary.error is not None and summary.status == "ERROR":
                result.error = TuneError(summary.error)
            result._status = summary.status
        return from_snapshot

    @classmethod
    def from_local_copy(cls, local: str, location: "storage.Location", default_metric: Optional[str] = None,
                        default_mode: Optional[str] = None, snapshot: Any = None) -> "ResultGrid":
        """The grid of the experiment at ``location`` in storage, read from ``local``, its
        local copy: each Result's path is in the copy, its checkpoints point into storage.
        ``snapshot``: as for :meth:`_from_directory`."""
        grid = cls._from_directory(local, default_metric, default_mode, snapshot)
        grid = cls([point_into_storage(r, local, location) for r in grid], location.uri,
                   default_metric=default_metric, default_mode=default_mode)
        grid._filesystem = location.filesystem
        return grid

    # -- container --------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._results)

    def __getitem__(self, i: int) -> Result:
        try:
            index = operator.index(i)
        except TypeError:
            raise TypeError(
                f"ResultGrid indices must be integers, got {type(i).__name__}; iterate "
                f"the grid or use list(grid) for slicing."
            ) from None
        try:
            return self._results[index]
        except IndexError:
            raise IndexError(
                f"ResultGrid index {index} is out of range for {len(self)} results."
            ) from None

    def __iter__(self) -> Iterator[Result]:
        return iter(self._results)

    @property
    def experiment_path(self) -> str:
        """The experiment directory (for a grid read from storage: its URI, or its path on
        the filesystem given)."""
        return self._experiment_path

    @property
    def filesystem(self) -> Any:
        """The ``pyarrow.fs`` filesystem :attr:`experiment_path` is on (the storage's for a
        grid read from storage, else the local one).  Needs pyarrow."""
        if self._filesystem is None and storage.is_uri(self._experiment_path):
            self._filesystem = storage.resolve(self._experiment_path).filesystem
        return self._filesystem if self._filesystem is not None else local_filesystem("ResultGrid.filesystem")

    @property
    def errors(self) -> List[BaseException]:
        """The errors of the trials that failed, in trial order."""
        return [r.error for r in self._results if r.error is not None]

    @property
    def num_errors(self) -> int:
        """How many trials failed."""
        return sum(1 for r in self._results if r.error is not None)

    @property
    def num_terminated(self) -> int:
        """How many trials finished (TERMINATED, so without an error), as Ray Tune counts
        them: a sweep stopped early (Ctrl-C) leaves its RUNNING and PENDING trials out.
        For results read from files, whose status is not known, those without an error."""
        return sum(1 for r in self._results
                   if (r._status == "TERMINATED" if r._status is not None else r.error is None))

    # -- analysis ----------------------------------------------------------------------

    def _history(self, index: int) -> List[Dict[str, Any]]:
        """Every result the trial reported, read from its ``result.json`` (or the results
        store) once; its last result when it has neither."""
        if index not in self._history_cache:
            result = self._results[index]
            self._history_cache[index] = trial_rows(result.path, on_bad_line="warn",
                                                    missing=[result.metrics] if result.metrics else [])
        return self._history_cache[index]

    def _score(self, index: int, metric: str, mode: str, scope: str) -> Optional[float]:
        if scope == "last":
            return _metric_value(self._results[index].metrics, metric)
        values = [
            v
            for v in (_metric_value(row, metric) for row in self._history(index))
            if v is not None
        ]
        if not values:
            return None
        if scope == "all":
            usable = [v for v in values if not math.isnan(v)] or values
            return max(usable) if mode == "max" else min(usable)
        window = {"avg": len(values), "last-5-avg": 5, "last-10-avg": 10}[scope]
        tail = values[-window:]
        return sum(tail) / len(tail)

    @staticmethod
    def _check_mode(mode: Optional[str], where: str) -> None:
        if mode is not None and mode not in _MODES:
            raise ValueError(f"{where}={mode!r} is not valid; use one of {list(_MODES)}.")

    def get_best_result(
        self,
        metric: Optional[str] = None,
        mode: Optional[str] = None,
        scope: str = "last",
        filter_nan_and_inf: bool = True,
    ) -> Result:
        """Return the result of the best trial.

        Args:
            metric: Metric to rank by; defaults to ``TuneConfig.metric``.
                Nested metrics may be named with "/" (``"val/loss"``).
            mode: ``"min"`` or ``"max"``; defaults to ``TuneConfig.mode``.
            scope: Which of each trial's reported values to rank by:
                ``"last"`` (its last result), ``"avg"`` (mean of all
                values), ``"last-5-avg"`` / ``"last-10-avg"`` (mean of the last
                5 / 10 values) or ``"all"`` (its best value, per ``mode``,
                ignoring NaN). Every scope but ``"last"`` reads the trial's
                ``result.json``.
            filter_nan_and_inf: Skip trials whose score is NaN or infinite.
                When ``False`` they compete; NaN ranks below every number.

        As in Ray Tune, a grid holding a single trial returns it directly.

        Raises:
            ValueError: No metric or mode was given and the grid has no
                default, or ``mode``/``scope`` is not a valid choice.
            RuntimeError: No trial has a usable value of the metric.

        Example:
            >>> from fasttune.result import Result
            >>> g = ResultGrid([Result({"l": 2.0}, None, None, "/x/a"),
            ...                 Result({"l": float("nan")}, None, None, "/x/b")], "/x")
            >>> g.get_best_result("l", "min").metrics
            {'l': 2.0}
        """
        self._check_mode(mode, "get_best_result mode")
        if scope not in _SCOPES:
            raise ValueError(
                f"get_best_result scope={scope!r} is not valid; use one of "
                f"{list(_SCOPES)}."
            )
        if len(self._results) == 1:
            return self._results[0]

        metric = metric or self._default_metric
        mode = mode or self._default_mode
        if not metric:
            raise ValueError(
                "No metric to rank trials by: pass get_best_result(metric=..., "
                "mode=...) or set TuneConfig(metric=..., mode=...) on the Tuner."
            )
        if not mode:
            raise ValueError(
                f"No mode for metric {metric!r}: pass get_best_result(metric=..., "
                f"mode='min' or 'max') or set TuneConfig(metric=..., mode=...) on the "
                f"Tuner."
            )

        best_index: Optional[int] = None
        best_score: Optional[float] = None
        for i in range(len(self._results)):
            score = self._score(i, metric, mode, scope)
            if score is None:
                continue
            if filter_nan_and_inf and not math.isfinite(score):
                continue
            if _is_better(score, best_score, mode):
                best_index, best_score = i, score

        if best_index is None:
            msg = (
                f"No best trial found for metric {metric!r} (mode={mode!r}, "
                f"scope={scope!r}): no trial reported it"
            )
            if filter_nan_and_inf:
                msg += (
                    ", or all its values are NaN or infinite; pass "
                    "filter_nan_and_inf=False to rank those values too."
                )
            else:
                msg += "."
            raise RuntimeError(msg)
        return self._results[best_index]

    def get_dataframe(
        self,
        filter_metric: Optional[str] = None,
        filter_mode: Optional[str] = None,
    ) -> Any:
        """Return a pandas DataFrame with one row per trial.

        Without filters each row is the trial's last result; with
        ``filter_metric`` and ``filter_mode`` it is the trial's best result
        for that metric over its whole history (a trial that never reported
        the metric gives its last result; one without results is left out). Nested values are flattened with "/"
        (``config/lr``); the columns ``logdir`` and ``path`` hold the trial
        directory. Requires pandas.

        Example:
            >>> from fasttune.result import Result
            >>> g = ResultGrid([Result({"l": 1, "config": {"lr": 0.1}}, None, None, "/x/a")], "/x")
            >>> sorted(g.get_dataframe().columns)
            ['config/lr', 'l', 'logdir', 'path']
        """
        if (filter_metric is None) != (filter_mode is None):
            raise ValueError(
                "get_dataframe needs filter_metric and filter_mode together (e.g. "
                "filter_metric='loss', filter_mode='min'), or neither."
            )
        self._check_mode(filter_mode, "get_dataframe filter_mode")
        pd = import_pandas("ResultGrid.get_dataframe")

        rows = []
        for i, result in enumerate(self._results):
            if filter_metric is not None:
                best_row, best_value = None, None
                for row in self._history(i):
                    value = _metric_value(row, filter_metric)
                    if value is not None and _is_better(value, best_value, filter_mode):
                        best_row, best_value = row, value
                if best_row is None and not result.metrics:
                    continue  # no results at all
                # Never reported the metric: its last result, as Ray Tune gives it.
                source: Dict[str, Any] = best_row if best_row is not None else result.metrics
            else:
                source = result.metrics or {}
            flat = dict(flatten_dict(source))  # a copy: the row gets more keys below
            if "config" not in source and result.config:
                flat.update({f"config/{k}": v for k, v in flatten_dict(result.config).items()})
            flat["logdir"] = result.path
            flat["path"] = result.path
            rows.append(flat)
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        header = (
            f"ResultGrid(experiment_path={self._experiment_path!r}, "
            f"num_results={len(self)}, num_errors={self.num_errors})"
        )
        if not self._results:
            return header + "[]"
        body = ",\n".join(
            "  " + repr(r).replace("\n", "\n  ") for r in self._results
        )
        return f"{header}[\n{body}\n]"
