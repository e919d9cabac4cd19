"""The experiment-level results store: every trial's results in a few append-only files.

``RunConfig(results_store="experiment")`` is for sweeps of very many small trials: instead
of a directory per trial with ``params.json`` and ``result.json``, the driver appends all
trials' results to ``<experiment>/results/NNNNNN.jsonl`` (a new file past
:data:`SEGMENT_BYTES`, and for each run of the experiment), and a trial gets a directory
only when it needs one (a checkpoint, an ``error.txt``, captured output).

Each line is one JSON value, in the order the driver wrote them:

* a JSON object is one result, exactly the line Ray Tune's ``result.json`` would hold
  (with its ``trial_id`` and ``config``);
* ``["trial", dirname, trial_id, config]`` says that results with that ``trial_id``
  belong to the trial directory ``dirname``, and what its config is from then on (what
  ``params.json`` would hold; written when the trial starts and when its config changes);
* ``["keep", dirname, rows]``: that trial restarted from a checkpoint that counts its
  first ``rows`` results, so the ones it had after those are dropped (as the per-trial
  layout cuts ``result.json``).

Reading this module's way needs no code from the experiment: only JSON is parsed.

Example:
    >>> import os, tempfile
    >>> exp = tempfile.mkdtemp()
    >>> os.mkdir(os.path.join(exp, STORE_DIR))
    >>> with open(os.path.join(exp, STORE_DIR, segment_name(1)), "w") as f:
    ...     _ = f.write(trial_record("t_0", "a", '{"lr": 0.1}').decode())
    ...     _ = f.write('{"loss": 2.0, "trial_id": "a"}\\n{"loss": 1.0, "trial_id": "a"}\\n')
    ...     _ = f.write(keep_record("t_0", 1).decode())
    >>> stored = read_store(exp)
    >>> t = stored["t_0"]
    >>> t.trial_id, t.config, t.rows
    ('a', {'lr': 0.1}, [{'loss': 2.0, 'trial_id': 'a'}])
"""
from __future__ import annotations

import json
import logging
import os
import re
from typing import Any, Dict, List, Optional, Tuple

from fasttune._json_nesting import parse_json

logger = logging.getLogger(__name__)

__all__ = ["STORE_DIR", "SEGMENT_BYTES", "StoredTrial", "has_store", "keep_record", "read_store", "read_store_cached",
           "segment_name", "segment_paths", "stored_trial", "trial_record"]

#: The store's directory inside the experiment directory.
STORE_DIR = "results"
#: A segment past this size is closed and the next one begun: in storage, a changed file is
#: uploaded whole, so the one being written stays small.
SEGMENT_BYTES = 16 * 1024 * 1024
_SEGMENT = re.compile(r"^(\d{6,})\.jsonl$")
#: A restore moves what its snapshot did not count into a folder named so (with the snapshot's number).
SET_ASIDE_PREFIX = "not-in-snapshot-"


def segment_name(index: int) -> str:
    """The file name of segment ``index`` (1, 2, ...)."""
    return f"{index:06d}.jsonl"


def segment_number(name: str) -> Optional[int]:
    """The number of the segment file called ``name`` (None: not a segment's name)."""
    match = _SEGMENT.match(name)
    return int(match.group(1)) if match else None


def trial_dirnames(path: str) -> List[str]:
    """The directory names the trial lines of the segment file at ``path`` name (lines
    that are not whole trial lines are passed over)."""
    names = []
    with open(path, "rb") as f:
        for line in f:
            if line.startswith(b'["trial", '):
                try:
                    trial_line = _trial_line(parse_json(line))
                except ValueError:
                    continue
                if trial_line is not None:
                    names.append(trial_line[0])
    return names


def _trial_line(value: Any) -> Optional[Tuple[str, str, Dict[str, Any]]]:
    """``(dirname, trial_id, config)`` of a parsed trial line, else None."""
    if isinstance(value, list) and len(value) == 4 and value[0] == "trial" and isinstance(value[1], str) \
            and isinstance(value[2], str) and isinstance(value[3], dict):
        return value[1], value[2], value[3]
    return None


def segment_paths(experiment_path: str) -> List[Tuple[int, str]]:
    """``(index, path)`` of each segment of the experiment's store, in order (none when it
    has no store)."""
    directory = os.path.join(experiment_path, STORE_DIR)
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = [(number, os.path.join(directory, name)) for name in names for number in [segment_number(name)]
             if number is not None]
    return sorted(found)


def has_store(experiment_path: str) -> bool:
    """Whether the experiment keeps its results in the experiment-level store."""
    return bool(segment_paths(experiment_path))


def trial_record(dirname: str, trial_id: str, config_json: str) -> bytes:
    """The line that ties ``trial_id``'s results to ``dirname`` and gives its config (as
    JSON text)."""
    return f'["trial", {json.dumps(dirname)}, {json.dumps(trial_id)}, {config_json}]\n'.encode()


def keep_record(dirname: str, rows: int) -> bytes:
    """The line that keeps only the first ``rows`` results the trial has so far."""
    return f'["keep", {json.dumps(dirname)}, {int(rows)}]\n'.encode()


class StoredTrial:
    """One trial as the store has it: its directory name, id, latest config and results."""

    __slots__ = ("dirname", "trial_id", "config", "rows")

    def __init__(self, dirname: str, trial_id: Optional[str], config: Optional[Dict[str, Any]] = None) -> None:
        self.dirname = dirname
        self.trial_id = trial_id
        self.config = config
        self.rows: List[Dict[str, Any]] = []

    def __repr__(self) -> str:
        return f"StoredTrial({self.dirname!r}, {self.trial_id!r}, {len(self.rows)} results)"


def read_store(experiment_path: str) -> Optional[Dict[str, StoredTrial]]:
    """Every trial in the experiment's store, by directory name, in the order they first
    appear; None when the experiment has no store.

    Damage stays where it is: a line that is not what the store writes is logged as a
    warning naming the file and line, and skipped (a line without its newline at the end
    of the newest segment is a write the driver did not finish, skipped quietly).  A
    result whose ``trial_id`` no trial line names is kept under that id.
    """
    segments = segment_paths(experiment_path)
    if not segments:
        return None
    trials: Dict[str, StoredTrial] = {}
    by_id: Dict[str, StoredTrial] = {}
    last = len(segments) - 1
    for position, (_, path) in enumerate(segments):
        with open(path, "rb") as f:
            data = f.read()
        lines = data.split(b"\n")
        torn = lines.pop()  # what follows the last newline: empty, or an unfinished line
        if torn.strip() and position != last:
            _warn_bad(path, len(lines) + 1, "is cut short")
        for lineno, line in enumerate(lines, start=1):
            if line.strip():
                _take_line(line, path, lineno, trials, by_id)
    from fasttune.experiment.trial import is_plain_dirname

    # What readers join to the experiment's path: a crafted ".." (or a result's trial_id
    # standing for its directory) must not lead them out of the experiment.
    for dirname in [name for name in trials if not is_plain_dirname(name)]:
        logger.warning("The results store of %s names the trial directory %r, not one plain name; that trial "
                       "is left out.", experiment_path, dirname)
        del trials[dirname]
    return trials


def _take_line(line: bytes, path: str, lineno: int, trials: Dict[str, StoredTrial],
               by_id: Dict[str, StoredTrial]) -> None:
    try:
        value = parse_json(line)
    except ValueError as exc:
        _warn_bad(path, lineno, "is not valid JSON" if isinstance(exc, json.JSONDecodeError) else f"is {exc}")
        return
    if isinstance(value, dict):
        trial_id = value.get("trial_id")
        if not isinstance(trial_id, str):
            _warn_bad(path, lineno, "is a result without a trial_id")
            return
        trial = by_id.get(trial_id)
        if trial is None:
            trial = by_id[trial_id] = trials.setdefault(trial_id, StoredTrial(trial_id, trial_id))
        trial.rows.append(value)
        return
    trial_line = _trial_line(value)
    if trial_line is not None:
        dirname, trial_id, config = trial_line
        trial = trials.get(dirname)
        if trial is None:
            trial = trials[dirname] = StoredTrial(dirname, trial_id)
        trial.trial_id, trial.config = trial_id, config
        by_id[trial_id] = trial
        return
    if isinstance(value, list) and len(value) == 3 and value[0] == "keep" and isinstance(value[1], str) \
            and type(value[2]) is int and value[2] >= 0:
        trial = trials.get(value[1])
        if trial is not None:
            del trial.rows[value[2]:]
        return
    _warn_bad(path, lineno, "is neither a result nor a record of the store")


_warned: set = set()


def _warn_bad(path: str, lineno: int, problem: str) -> None:
    if (path, lineno) in _warned:
        return
    if len(_warned) >= 10_000:  # a long-lived process reading many damaged stores
        _warned.clear()
    _warned.add((path, lineno))
    logger.warning("%s, line %d, %s; it is skipped (the other lines are read).", path, lineno, problem)


# The store read last, with the sizes and times of its files then: readers that ask for
# one trial after another (Result.from_path, a grid's histories) read it once.
_last_read: Dict[str, Tuple[Any, Optional[Dict[str, StoredTrial]]]] = {}


def read_store_cached(experiment_path: str) -> Optional[Dict[str, StoredTrial]]:
    """:func:`read_store`, read again only when one of the store's files changed."""
    experiment_path = os.path.abspath(experiment_path)
    key = []
    for _, path in segment_paths(experiment_path):
        try:
            info = os.stat(path)
        except FileNotFoundError:
            continue
        key.append((path, info.st_size, info.st_mtime_ns))
    if not key:
        return None
    hit = _last_read.get(experiment_path)
    if hit is not None and hit[0] == key:
        return hit[1]
    trials = read_store(experiment_path)
    _last_read.clear()  # one experiment's worth: a store of 100,000 trials is large
    _last_read[experiment_path] = (key, trials)
    return trials


def stored_trial(trial_dir: str) -> Optional[StoredTrial]:
    """The trial whose directory is ``trial_dir``, as its experiment's store has it (None:
    no store there, or the trial is not in it)."""
    trials = read_store_cached(os.path.dirname(os.path.abspath(trial_dir)))
    return trials.get(os.path.basename(os.path.abspath(trial_dir))) if trials else None
