"""An experiment directory as the command line sees it: its trials, their statuses and
every result each reported, read from the files alone (no Ray, and no unpickling).

The experiment may still be running: the newest snapshot gives each trial's status, a
trial directory made after it is read from its files, and a half-written last line of
``result.json`` is skipped.  An experiment run with ``RunConfig(results_store="experiment")``
is read from its store (``fasttune/_results_store.py``) the same way, and a trial with
neither (a simulated sweep writes no files) has one row: the last result its snapshot
record keeps.  Damage stays with the trial it is in: a bad line in the
middle of a trial's ``result.json`` (or a bad ``params.json``) is logged as a warning
naming the file and line, and that trial shows the results before the line.  Objects the
snapshot holds as pickles are shown as placeholders, never unpickled.

Example:
    >>> import json, os, tempfile
    >>> exp = tempfile.mkdtemp()
    >>> os.mkdir(os.path.join(exp, "t0"))
    >>> with open(os.path.join(exp, "t0", "params.json"), "w") as f:
    ...     json.dump({"lr": 0.1}, f)
    >>> with open(os.path.join(exp, "t0", "result.json"), "w") as f:
    ...     _ = f.write('{"loss": 1.0, "training_iteration": 1, "trial_id": "a_0"}\\n{"lo')
    >>> experiment = read_experiment(exp)
    >>> [(t.trial_id, t.status, len(t.rows)) for t in experiment.trials]
    [('a_0', 'RUNNING', 1)]
"""
from __future__ import annotations

import logging
import math
import os
from typing import Any, Dict, List, Optional, Tuple

from fasttune import _storage as storage
from fasttune._flatten import flatten_dict, lookup_flattened
from fasttune._results_store import STORE_DIR, has_store, read_store_cached, stored_trial
from fasttune.error import TuneError
from fasttune.result import (
    ERROR_FILE,
    MAX_JSON_NESTING,
    PARAMS_FILE,
    RESULT_FILE,
    local_copy_to_read,
    may_be_store_trial,
    nested_deeper_than,
    read_json_lines,
    read_params,
)
from fasttune.result_grid import as_number as numeric  # a real number (not a bool) as float, else None

logger = logging.getLogger(__name__)

POLICY_LOG = "pbt_global.txt"
_TERMINAL = ("TERMINATED", "ERROR")


class TrialData:
    """One trial: its id, status, directory, config and every result it reported.

    Example:
        >>> t = TrialData("a_0", "RUNNING", "/e/a_0", {"lr": 0.1}, [{"loss": 2}, {"loss": 1}])
        >>> t.last_result, t.best("loss", "min")
        ({'loss': 1}, 1)
    """

    def __init__(self, trial_id: str, status: str, path: str, config: Dict[str, Any],
                 rows: Optional[List[Dict[str, Any]]] = None) -> None:
        self.trial_id = trial_id
        self.status = status
        self.path = path
        self.config = config
        self.rows: List[Dict[str, Any]] = rows or []

    @property
    def last_result(self) -> Dict[str, Any]:
        return self.rows[-1] if self.rows else {}

    def metric_values(self, metric: str, x: Optional[str] = None) -> Tuple[List[float], List[float]]:
        """``(x values, metric values)`` of the results that hold both as numbers (NaN
        included); ``x=None`` pairs each value with its position."""
        xs: List[float] = []
        ys: List[float] = []
        for position, row in enumerate(self.rows):
            y = numeric(lookup_flattened(row, metric))
            at = float(position) if x is None else numeric(lookup_flattened(row, x))
            if y is not None and at is not None:
                xs.append(at)
                ys.append(y)
        return xs, ys

    def best(self, metric: str, mode: str) -> Any:
        """The best value of ``metric`` over the trial's results, as reported (NaN ignored;
        the first of equal values); None when it never reported a number."""
        best, best_number = None, None
        for row in self.rows:
            value = lookup_flattened(row, metric)
            number = numeric(value)
            if number is None or math.isnan(number):
                continue
            if best_number is None or (number > best_number if mode == "max" else number < best_number):
                best, best_number = value, number
        return best


class ExperimentData:
    """The trials of one experiment directory, and the metric and mode its Tuner used."""

    def __init__(self, path: str, trials: List[TrialData], metric: Optional[str], mode: Optional[str]) -> None:
        self.path = path
        self.trials = trials
        self.metric = metric
        self.mode = mode

    def resolve_metric(self, metric: Optional[str], mode: Optional[str]) -> Tuple[str, str]:
        """The metric and mode to rank by: the ones given, else the Tuner's.

        Raises:
            TuneError: no metric or mode is known, the mode is not min/max, or no trial
                reported the metric as a number.
        """
        metric = metric or self.metric
        if not metric:
            raise TuneError(
                f"No metric to rank the trials of {self.path} by: its Tuner set no "
                "TuneConfig(metric=...); pass --metric NAME (and --mode min|max).")
        if mode is None:
            mode = self.mode if metric == self.metric else None
        if mode not in ("min", "max"):
            raise TuneError(f"No mode for metric {metric!r}: pass --mode min or --mode max.")
        if not any(trial.metric_values(metric)[1] for trial in self.trials):
            numeric_keys = sorted({k for t in self.trials for k, v in flatten_dict(t.last_result).items()
                                   if numeric(v) is not None})
            raise TuneError(
                f"Unknown metric {metric!r}: no trial of {self.path} reported it as a number. "
                f"Metrics reported: {', '.join(numeric_keys) or '(none yet)'}.")
        return metric, mode


def _tuner_metric_mode(experiment_path: str) -> Tuple[Optional[str], Optional[str]]:
    """``TuneConfig.metric`` and ``mode`` from ``tuner.msgpack``, decoding only those two
    plain fields (the file also holds pickled objects, which are never loaded here)."""
    import msgpack

    from fasttune.execution._experiment_state import TUNER_FILE, read_file

    path = os.path.join(experiment_path, TUNER_FILE)
    if not os.path.isfile(path):
        return None, None
    try:
        fields = msgpack.unpackb(read_file(path), raw=False, strict_map_key=False)["fields"]
        found = []
        for name in ("tune_config.metric", "tune_config.mode"):
            value = msgpack.unpackb(fields[name], raw=False) if name in fields else None
            found.append(value if isinstance(value, str) else None)
        return found[0], found[1]
    except (TuneError, ValueError, KeyError, TypeError, msgpack.UnpackException) as exc:
        logger.warning("%s cannot be read (%s); pass --metric and --mode.", path, exc)
        return None, None


def _snapshot_trials(experiment_path: str) -> Dict[str, Any]:
    """The newest snapshot's trials by directory, as ``TrialSummary`` (id, status, config,
    last result); {} when there is none or it cannot be read (a warning says so: the
    statuses then come from the files)."""
    from fasttune.execution._experiment_state import has_snapshot, read_trial_summaries

    if not has_snapshot(experiment_path):
        return {}
    try:
        trials = {os.path.join(experiment_path, name): trial
                  for name, trial in read_trial_summaries(experiment_path).trials.items()}
    except Exception as exc:  # noqa: BLE001 - a damaged snapshot must not hide the result files
        logger.warning("The experiment state of %s cannot be read (%s); trial statuses are guessed "
                       "from their files.", experiment_path, exc)
        return {}
    for trial_dir, trial in trials.items():
        # The table flattens configs recursively: one nested beyond what any reader takes is left out.
        if nested_deeper_than(trial.config, MAX_JSON_NESTING):
            logger.warning("The config of trial %s in the experiment state of %s is nested more than %d levels "
                           "deep; it is not shown.", trial_dir, experiment_path, MAX_JSON_NESTING)
            trials[trial_dir] = trial._replace(config={})
    return trials


def _status(snapshot_status: Optional[str], trial_dir: Optional[str], rows: List[Dict[str, Any]]) -> str:
    """The snapshot's status, unless the files show the trial has moved on since
    (``trial_dir`` None: the trial has no directory)."""
    if snapshot_status in _TERMINAL:
        return snapshot_status
    if trial_dir is not None and os.path.isfile(os.path.join(trial_dir, ERROR_FILE)):
        return "ERROR"
    if rows and rows[-1].get("done") is True:
        return "TERMINATED"
    if snapshot_status:
        return snapshot_status
    return "RUNNING" if rows else "PENDING"


def _read_params(trial_dir: str) -> Dict[str, Any]:
    try:
        return read_params(os.path.join(trial_dir, PARAMS_FILE), on_bad_line="warn") or {}
    except OSError as exc:
        logger.warning("%s cannot be read (%s); the trial is shown without its config.", exc.filename, exc)
        return {}


def _is_trial_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, PARAMS_FILE)) or os.path.isfile(os.path.join(path, RESULT_FILE))


def read_experiment(path: str, storage_filesystem: Any = None) -> ExperimentData:
    """Read the experiment at ``path`` (``<storage_path>/<name>``), or the single trial
    when ``path`` is a trial directory (of an experiment with a results store too, whose
    trials' rows are in the store: ``RunConfig(results_store="experiment")``).  In storage (a URI, or a path on
    ``storage_filesystem``) it reads a local copy of the files, less the checkpoints.

    Raises:
        TuneError: ``path`` does not exist, or is neither an experiment nor a trial
            directory (nor a trial its experiment's results store names), or storage
            cannot be read.
    """
    from fasttune.execution._experiment_state import has_snapshot

    location = storage.resolve(path, storage_filesystem)
    shown = path  # what errors name: the path or URI given, not a local copy of it
    if location is not None:
        shown = location.uri
        try:
            path = local_copy_to_read(location)[0]
        except FileNotFoundError:
            raise TuneError(f"{location.uri} does not exist; pass an experiment directory (<storage_path>/<name>) "
                            "or one trial's directory (check the bucket and the prefix).") from None
    given = os.path.abspath(os.path.expanduser(path))
    parent = os.path.dirname(given)
    exists = os.path.exists(given)
    if exists and not os.path.isdir(given):
        raise TuneError(f"{shown} is a file; pass an experiment directory (<storage_path>/<name>) "
                        "or one trial's directory.")
    only: Optional[str] = None
    experiment_path = given
    # One trial: its own files, or its rows in its experiment's store (a trial of
    # RunConfig(results_store="experiment") has a directory only for checkpoints, error.txt).
    if exists and _is_trial_dir(given) and not has_snapshot(given):
        only, experiment_path = given, parent
    elif may_be_store_trial(os.listdir(given) if exists else [], parent_has_store=has_store(parent)):
        if stored_trial(given) is None:
            raise TuneError(
                f"{shown} is in an experiment whose results store ({os.path.join(parent, STORE_DIR)}) "
                f"names no trial {os.path.basename(given)!r}: the store may be damaged (its bad lines are logged as "
                "warnings), or the name is wrong. Pass the experiment directory, or the directory of one of its "
                "trials.")
        only, experiment_path = given, parent
    elif not exists:
        raise TuneError(f"{shown} does not exist; pass an experiment directory (<storage_path>/<name>) "
                        "or one trial's directory.")
    names = sorted(os.listdir(experiment_path))
    existing = set(names) if only is None else {os.path.basename(only)} if os.path.isdir(only) else set()
    trial_dirs = [os.path.join(experiment_path, n) for n in names if _is_trial_dir(os.path.join(experiment_path, n))]
    if only is not None:
        trial_dirs = [only]
    # RunConfig(results_store="experiment"): trials in the store, whose directory may not exist.
    stored = read_store_cached(experiment_path) or {}
    if only is None:
        trial_dirs = sorted(set(trial_dirs) | {os.path.join(experiment_path, name) for name in stored})
    if not trial_dirs and not has_snapshot(experiment_path):
        raise TuneError(
            f"{shown} is not a fasttune experiment: it has no experiment_state-*.msgpack and no trial "
            "directories (with params.json or result.json). Pass <storage_path>/<experiment name>.")
    snapshot = _snapshot_trials(experiment_path)
    trials = []
    for trial_dir in trial_dirs:
        known = snapshot.get(trial_dir)
        name = os.path.basename(trial_dir)
        exists = name in existing  # most trials of a store have no directory: no system call for them
        result_path = os.path.join(trial_dir, RESULT_FILE)
        in_store = stored.get(name) if not (exists and os.path.isfile(result_path)) else None
        if in_store is not None:
            rows = in_store.rows
        else:
            rows = read_json_lines(result_path, on_bad_line="warn") if os.path.isfile(result_path) else []
        if not rows and known is not None and known.last_result:
            rows = [known.last_result]  # what the snapshot keeps of a trial whose files hold no result
        last = rows[-1] if rows else {}
        trial_id = last.get("trial_id") or (known.trial_id if known is not None else os.path.basename(trial_dir))
        config = last.get("config")
        if not isinstance(config, dict) and in_store is not None and in_store.config is not None:
            config = in_store.config
        if not isinstance(config, dict):
            config = known.config if known is not None else _read_params(trial_dir)
        status = _status(known.status if known is not None else None, trial_dir if exists else None, rows)
        trials.append(TrialData(str(trial_id), status, trial_dir, config, rows))
    if only is None:
        # Trials the snapshot holds without result files: not started yet, or of a sweep that
        # writes none (a simulated one); their one row is the last result the snapshot keeps.
        listed = set(trial_dirs)
        for trial_dir, known in snapshot.items():
            if trial_dir not in listed:
                rows = [known.last_result] if known.last_result else []
                trials.append(TrialData(known.trial_id, known.status, trial_dir, known.config, rows))
    metric, mode = _tuner_metric_mode(experiment_path)
    return ExperimentData(experiment_path, trials, metric, mode)
