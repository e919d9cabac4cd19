"""Experiment snapshots from the runner's side: when one is due, what goes into it, and
how a restore turns the latest one back into trials.

The file format (header, msgpack payload, trial records) lives in
``fasttune.execution._experiment_state``; this module decides what to save.  A snapshot
holds the TrialTable, one packed record per trial, and the saved state of the searcher,
scheduler, stopper and callbacks.  Records of finished trials no longer change, so they
are packed once and kept: a snapshot of 100,000 trials packs only the live ones.  Once
enough of them have piled up, they go into a record segment file, written once, which
every later snapshot names instead of holding them again (``_state.write_segment``): the
snapshot stays the size of what changes (issue 15's uploads; a sweep of a million trials).
"""
from __future__ import annotations

import collections
import logging
import os
import tempfile
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from fasttune import _corelib as core
from fasttune._atomic import scratch_writes
from fasttune._serialization import PickleNotingPacker, unpickled_in
from fasttune.error import TuneError
from fasttune.execution import _experiment_state as _state
from fasttune.execution._trial_state import PendingReset, TrialState
from fasttune.experiment.trial import Trial
from fasttune._results_store import SET_ASIDE_PREFIX
from fasttune.logger._trial_files import set_aside_unknown_trial_dirs
from fasttune.schedulers.trial_scheduler import TrialScheduler, overrides
from fasttune.search.search_algorithm import SearchAlgorithm

logger = logging.getLogger(__name__)

# Under checkpoint_period="auto" snapshots come at most this often (and further apart
# when one costs more than 1/20 of this).
_MIN_SNAPSHOT_PERIOD_S = 2.0
# Finished trials' records go into a new segment once at least this many wait (and an
# eighth of those in segments already: their number grows with the log of the trials');
# a smaller experiment's snapshots hold every record, readable by older fasttune versions.
SEGMENT_MIN_RECORDS = 2000
_SEGMENT_GROWTH = 8
# Past this many segments, the next one holds all their records (a restore reads a few files).
_MAX_SEGMENTS = 16


# The attributes a Trial has (a compact trial's record and source give them all back).
_COMPACTABLE = frozenset(Trial("", trial_id="-").__dict__) | frozenset(_state.DECODED_FIELDS)
_MAX_SOURCES = 8


def _is_idle(state: TrialState) -> bool:
    """Whether ``state`` holds nothing a fresh TrialState would not (but its rendered config)."""
    return (state.decision is None and not state.at_decision_point and state.reset_at_decision is None and state.reset_on_start is None
            and state.cloning is None and not state.rewind_on_start and not state.prune_on_start
            and state.queueable and state.next_checkpoint_index is None)


class Policies(NamedTuple):
    """The objects whose state a snapshot saves beside the trials."""

    searcher: Any
    scheduler: Any
    stopper: Any  # None: no stopper
    callbacks: Any  # a CallbackList


class SnapshotWriter:
    """Writes the snapshots of one experiment directory, keeping snapshot time under
    ~5% of wall time with ``period="auto"`` (else every ``period`` seconds)."""

    def __init__(self, experiment_path: str, period: Any) -> None:
        self.experiment_path = experiment_path
        self._period = period
        self._last = 0.0
        self.cost = 0.0  # seconds the last snapshot took
        self.seq = 0
        # The experiment's snapshots, oldest first, once the first one this writer made has
        # listed the directory (None until then): each later one drops the oldest itself.
        self._own_snapshots: Optional[List[str]] = None
        self.keysets = _state.KeySets()
        self._packer = PickleNotingPacker()  # the event loop's: records are packed on it only
        # By row: the packed record of each finished trial (None: packed at each snapshot),
        # its directory name, and which pickled objects a record holds.
        self.records: List[Optional[bytes]] = []
        self.dirnames: List[Optional[str]] = []
        self.pickled_in_records: Dict[int, List[str]] = {}
        # What the compact finished trials decode their records with, one per set of
        # experiment settings (a sweep has one; a runner of several experiments, a few).
        self.sources: List[_state.RecordSource] = []
        self._unsaved_policies: set = set()  # kinds whose state could not be saved (warned once)
        # The checkpoint book's uploads (path -> token, node) and histories (path -> (metrics,
        # own_last)), which records carry.
        self.checkpoint_uploads: Dict[str, Any] = {}
        self.checkpoint_histories: Any = {}
        # The newest format a record has needed (an upload, a checkpoint's history): every
        # later snapshot has it, so that an older fasttune refuses what it would misread.
        self._format = 1
        # Record segments: by row, whether its kept record is in one (1), the rows whose
        # kept record is not yet, the entries the next snapshot names, how many records
        # they hold, and segment files no longer named (with the first snapshot that does
        # not name them), removed once no kept snapshot may.
        self.in_segment = bytearray()
        self._unsegmented: List[int] = []
        self._segments: List[List[Any]] = []
        self._segmented_count = 0
        self._retired: List[Tuple[str, int]] = []
        #: Who removes retired segment files instead (``StorageSync.retire_file``: storage may
        #: hold older snapshots that name them).
        self.hand_retired: Optional[Callable[[str, int], None]] = None

    def raise_format(self, version: int) -> None:
        """From now on, snapshots have at least format ``version`` (see ``_state.FORMAT_VERSION``)."""
        self._format = max(self._format, version)

    def add_row(self) -> None:
        self.records.append(None)
        self.dirnames.append(None)
        self.in_segment.append(0)

    def forget_record(self, row: int) -> None:
        """Pack row ``row``'s record again at the next snapshot (its trial changed after
        it had ended): the snapshot holds it again (its segment's record is out of date)."""
        self.records[row] = None
        self.in_segment[row] = 0

    def due(self, pending_suggestion: Any = None) -> bool:
        """Whether the period has passed; not while the searcher is making a suggestion
        (saving it would wait for that: the next step saves)."""
        period = self._period
        if period == "auto":
            period = max(_MIN_SNAPSHOT_PERIOD_S, 20.0 * self.cost)
        if time.monotonic() - self._last < float(period):
            return False
        return pending_suggestion is None or pending_suggestion.is_set()

    def write(self, trials: List[Trial], states: Dict[str, TrialState], checkpoint_rows: Dict[str, int],
              table: Any, policies: Policies, *, experiment: Any, elapsed_s: float, iteration: int,
              started: float, results_position: Any = None) -> str:
        """One snapshot of ``trials`` and ``policies`` (``started``: when the caller began
        it, so its cost counts what the caller did first); a RUNNING trial's STOP or PAUSE
        not carried out yet (``TrialState.decision_in_flight``) is saved with it."""
        records, in_segment = self.records, self.in_segment
        packed = []
        resets = {}
        pending_decisions = {}
        for row, trial in enumerate(trials):
            if in_segment[row]:
                packed.append(_state.NIL)
                continue
            record = records[row]
            if record is None:  # a live trial (or one just ended)
                record = self._pack(row, trial, states, checkpoint_rows, table)
                trial_state = states.get(trial.trial_id)
                reset = _pending_reset(trial, trial_state, self.experiment_path)
                if reset is not None:
                    resets[trial.trial_id] = reset
                decision = trial_state.decision_in_flight if trial_state is not None else None
                if decision is not None and trial.status == Trial.RUNNING:
                    pending_decisions[trial.trial_id] = list(decision)
            packed.append(record)
        if not self.seq:
            # An earlier run under the same name left snapshots: this run's come after
            # them (the newest is the one a restore reads; older ones are rotated out).
            self.seq = _state.latest_seq(self.experiment_path)
        self.seq += 1
        first = self._own_snapshots is None
        self._cut_segment(packed)
        if first:
            # Segments an earlier run left (or one killed before its snapshot named it): this
            # run's snapshots name none of them.
            named = {entry[0] for entry in self._segments}
            self._retired += [(os.path.basename(path), self.seq) for path in _state.segment_paths(self.experiment_path)
                              if os.path.basename(path) not in named]
        dirnames = self.dirnames
        if self._segments:
            dirnames = [None if segmented else name for segmented, name in zip(in_segment, dirnames)]
        state = {
            "format": max(self._format, _state.SEGMENTS_FORMAT) if self._segments else self._format,
            "timestamp": time.time(),
            "trainable_name": experiment.trainable_name if experiment is not None else None,
            "trial_ids": list(experiment.trial_id_state) if experiment is not None else None,
            "elapsed_s": elapsed_s,
            "iteration": iteration,
            "table": table.snapshot(),
            "keysets": self.keysets.keys,
            "dirnames": dirnames,  # beside the records too: a restore reads them all at once
            # What a restore will unpickle from trial records, told before it decodes any.
            "pickled_in_records": self.pickled_in_records,
            "searcher": self._policy_state(policies.searcher, "searcher"),
            "scheduler": self._policy_state(policies.scheduler, "scheduler"),
            "stopper": policies.stopper.get_state() if policies.stopper is not None else None,
            "callbacks": policies.callbacks.get_state(),
            # Where the experiment-level results store ends (None: per-trial files).
            "results_store": results_position,
            "pending_resets": resets,
            # Saved RUNNING, these trials were to stop or pause: a restore carries that out.
            "pending_decisions": pending_decisions,
        }
        if self._segments:
            state["segments"] = list(self._segments)  # (where the nil records and directory names are)
        own = self._own_snapshots
        path = _state.write_snapshot(self.experiment_path, state, packed, self.seq, state["format"], rotate=own is None)
        if own is None:
            # Listed once: from now on the only older snapshots are those this writer made.
            own = self._own_snapshots = _state.snapshot_paths(self.experiment_path)[::-1]
        else:
            own.append(path)
            while len(own) > _state.KEEP:
                _state.remove_snapshot(own[0])  # (taken off the list once gone: a failed removal is tried again)
                own.pop(0)
        if self._retired:
            self._remove_retired(min(_state.snapshot_seq(os.path.basename(kept)) for kept in own))
        self._last = time.monotonic()
        self.cost = self._last - started
        return path

    def _cut_segment(self, packed: List[bytes]) -> None:
        """Write the kept records not in a segment yet as a new one, if enough wait (see
        SEGMENT_MIN_RECORDS), and leave their places in ``packed`` nil; past _MAX_SEGMENTS,
        the new one holds the records of all the others too, which are retired."""
        records, in_segment = self.records, self.in_segment
        rows = [row for row in dict.fromkeys(self._unsegmented) if records[row] is not None and not in_segment[row]]
        self._unsegmented = rows
        if len(rows) < max(SEGMENT_MIN_RECORDS, self._segmented_count // _SEGMENT_GROWTH):
            return
        merging = len(self._segments) >= _MAX_SEGMENTS
        if merging:
            rows = sorted(rows + [row for row, segmented in enumerate(in_segment) if segmented])
        entry = _state.write_segment(self.experiment_path, self.seq, rows, [self.dirnames[row] for row in rows],
                                     [records[row] for row in rows])
        # (Taken on together, so that a Ctrl-C here never leaves a flagged row in no segment named.)
        if merging:
            self._segments, self._segmented_count, self._retired = [entry], len(rows), self._retired + [
                (name, self.seq) for name, _, _ in self._segments]
        else:
            self._segments, self._segmented_count = self._segments + [entry], self._segmented_count + len(rows)
        nil = _state.NIL
        for row in rows:
            in_segment[row] = 1
            packed[row] = nil
        self._unsegmented = []

    def _remove_retired(self, oldest_kept_seq: int) -> None:
        """Remove the retired segment files no kept snapshot names (each snapshot from the
        one that retired it on names none of them); with storage, hand them to its sync."""
        due = [item for item in self._retired if item[1] <= oldest_kept_seq]
        if not due:
            return
        self._retired = [item for item in self._retired if item[1] > oldest_kept_seq]
        for name, retired_at in due:
            if self.hand_retired is not None:
                self.hand_retired(name, retired_at)
            else:
                _state.remove_snapshot(os.path.join(self.experiment_path, name))

    def trial_finished(self, trial: Trial, states: Dict[str, TrialState], checkpoint_rows: Dict[str, int],
                       table: Any) -> None:
        """Pack the record of ``trial``, which has just ended, now rather than at the next
        snapshot (which then only splices it in): the runner calls this as it closes a
        finished trial, so no snapshot ever packs many records at once, and the trial is
        compact from then on.  A trial a worker still holds is left to the next snapshot."""
        row = trial._row
        if self.records[row] is None:
            self._pack(row, trial, states, checkpoint_rows, table)

    def _pack(self, row: int, trial: Trial, states: Dict[str, TrialState], checkpoint_rows: Dict[str, int],
              table: Any) -> bytes:
        """Row ``row``'s record; kept for good (and the trial made compact) once it has ended."""
        state = states[trial.trial_id]
        self.dirnames[row] = trial.storage_dirname
        status = trial.status  # (read from the table: once)
        # A TERMINATED trial's uploads are left out: a node drops its copies when the trial
        # ends on it, and only a restore that resumes finished trials could use one (it
        # downloads instead).  PBT never clones a finished trial's checkpoint.
        uploads = self.checkpoint_uploads if status != Trial.TERMINATED else None
        if uploads and self._format < _state.UPLOADS_FORMAT:
            # Format 2 only once a record carries an upload: older versions refuse it.
            upload_of = uploads.get
            if any(upload_of(checkpoint.path) is not None for checkpoint, _ in trial.checkpoint_results):
                self.raise_format(_state.UPLOADS_FORMAT)
        if self._format < _state.HISTORIES_FORMAT and trial.checkpoints:
            history_of = self.checkpoint_histories.get
            if any(history_of(checkpoint.path) is not None for checkpoint, _ in trial.checkpoint_results):
                self.raise_format(_state.HISTORIES_FORMAT)
        record, pickled = _state.trial_record(trial, self.keysets, checkpoint_rows, state.next_index(trial),
                                              self._packer, uploads, self.checkpoint_histories)
        if pickled:
            self.pickled_in_records[row] = pickled
        else:
            self.pickled_in_records.pop(row, None)
        if (status == Trial.TERMINATED or status == Trial.ERROR) and table.get_worker_slot(row) < 0:  # finished
            # Kept for good: no worker holds it, so no event can change it again
            # (a restore only starts a new runner).
            self.records[row] = record
            self._unsegmented.append(row)
            if _is_idle(state) and not trial.checkpoints:
                # Made again, the same, if anything asks (as for a trial restored finished).
                del states[trial.trial_id]
            if not pickled:
                self._compact(trial, record)
        return record

    def _compact(self, trial: Trial, record: bytes) -> None:
        """Let the finished ``trial`` keep only its identity and ``record`` (it decodes
        the rest when asked): a sweep of 100,000 short trials keeps no config, result or
        path objects of those that ended.  A trial whose objects a decode would not give
        back as they are (an attribute set on it by hand; a checkpoint outside its
        directory) stays whole."""
        state = trial.__dict__
        if not _COMPACTABLE.issuperset(state) or trial.experiment_path != self.experiment_path:
            return
        checkpoints = trial.checkpoints
        if checkpoints:
            prefix = trial.path + os.sep
            if any(checkpoint.path != prefix + os.path.basename(checkpoint.path) for checkpoint in checkpoints):
                return
        for source in self.sources:
            if source.holds_settings_of(trial):
                break
        else:
            if len(self.sources) >= _MAX_SOURCES:
                return
            source = _state.RecordSource.like(trial, self.keysets, self.experiment_path)
            self.sources.append(source)
        trial._compact(record, source)

    def _policy_state(self, policy: Any, kind: str) -> Any:
        """The policy's saved state for the snapshot; one that cannot be saved (it does
        not pickle, say) leaves it out with one warning, and the sweep goes on."""
        try:
            return policy_state(policy, kind)
        except Exception as exc:  # noqa: BLE001 - user and library objects fail in many ways
            if kind not in self._unsaved_policies:
                self._unsaved_policies.add(kind)
                logger.warning(
                    "The %s %s cannot save its state (%s: %s); experiment snapshots go on without it, so a "
                    "restored experiment starts this %s afresh.", kind, type(policy).__name__,
                    type(exc).__name__, exc, kind)
            return None


def policy_state(policy: Any, kind: str) -> Any:
    """A searcher's ``save_to_dir`` files or a scheduler's ``save`` bytes (None: it keeps
    no state), read back so they go into the one atomic snapshot.  The files are scratch
    (the snapshot is what is made durable): written without fsyncs."""
    with scratch_writes():
        return _saved_bytes(policy, kind)


def _saved_bytes(policy: Any, kind: str) -> Any:
    if kind == "scheduler":
        if not overrides(policy, TrialScheduler, "save"):
            return None
        with tempfile.TemporaryDirectory(prefix="fasttune-state-") as tmp:
            path = os.path.join(tmp, "scheduler.pkl")
            policy.save(path)
            with open(path, "rb") as f:
                return f.read()
    if not overrides(policy, SearchAlgorithm, "save_to_dir"):
        return None
    with tempfile.TemporaryDirectory(prefix="fasttune-state-") as tmp:
        if policy.save_to_dir(tmp, session_str="snapshot") is False:  # a keyword, as Ray Tune passes it
            return None
        files = {}
        for name in os.listdir(tmp):
            with open(os.path.join(tmp, name), "rb") as f:
                files[name] = f.read()
        return files or None


def restore_policy_state(policy: Any, kind: str, saved: Any) -> None:
    with tempfile.TemporaryDirectory(prefix="fasttune-state-") as tmp:
        try:
            if kind == "scheduler":
                path = os.path.join(tmp, "scheduler.pkl")
                with open(path, "wb") as f:
                    f.write(saved)
                policy.restore(path)
            else:
                for name, data in saved.items():
                    with open(os.path.join(tmp, name), "wb") as f:
                        f.write(data)
                policy.restore_from_dir(tmp)
        except Exception as exc:
            raise TuneError(
                f"The {kind} {type(policy).__name__} could not take back its saved state "
                f"({type(exc).__name__}: {exc}); restore with the same {kind} the experiment ran with."
            ) from exc


class RestoredExperiment:
    """What :func:`restore` read back: the runner adopts these as they are."""

    def __init__(self) -> None:
        self.table: Any = None
        self.trials: List[Trial] = []  # by row
        self.by_id: Dict[str, Trial] = {}
        self.states: Dict[str, TrialState] = {}  # of the trials that may still change
        self.unassigned: Dict[str, Trial] = {}  # PENDING trials, in row order
        self.ended: List[Trial] = []  # unfinished trials the restore itself ended
        self.held: List[Trial] = []  # live trials a worker held at the snapshot, by row
        self.restarted: set = set()  # ids of the trials restored to start over
        # STOP or PAUSE by trial id: restored PENDING, the runner stops or pauses them as the
        # interrupted run was about to (that decision had not reached their worker).
        self.decisions: Dict[str, str] = {}
        self.elapsed_s = 0.0
        self.iteration = 0
        self.pickled: List[str] = []  # what was unpickled, for the caller to tell


def restore(writer: SnapshotWriter, experiment: Any, resume_config: Any, policies: Policies,
            checkpoints: Any, files: Any) -> RestoredExperiment:
    """Read the latest snapshot of ``writer.experiment_path`` back: trials as
    ``resume_config`` says, the policies' saved state, the writer's record caches, and
    what ``checkpoints`` (the runner's CheckpointBook) knows of each kept checkpoint;
    ``files`` (the runner's TrialFiles) prunes checkpoints the snapshot does not list."""
    experiment_path = writer.experiment_path
    loader = _state.Loader()
    state, path = _state.load_latest(experiment_path, loader)
    # Unpickled with the state itself (a pending exploit's config, a callback's state), before
    # any trial record is decoded with the same loader.
    in_state = collections.Counter(loader.unpickled)
    try:
        table = core.TrialTable.from_snapshot(state["table"])
    except ValueError as exc:
        raise TuneError(f"The TrialTable in {path} cannot be read ({exc}); the experiment cannot be restored.") from exc
    records = state["trials"]
    if not len(table) == len(records) == len(state["dirnames"]):
        raise TuneError(f"{path} is inconsistent: its table has {len(table)} rows for {len(records)} trials "
                        f"and {len(state['dirnames'])} trial directories; the experiment cannot be restored.")
    files_of_experiment = _state._names_of_files(experiment_path)
    for row, dirname in enumerate(state["dirnames"]):
        # (A file: not a broken link where a trial's directory was, which a restore may remake.)
        if dirname in files_of_experiment and os.path.isfile(os.path.join(experiment_path, dirname)):
            # A crafted snapshot: the readers leave that trial out, a restore must not drop it.
            raise _state.CorruptExperimentState(
                f"{path}: row {row} names the trial directory {dirname!r}, which is a file of the experiment; "
                "the experiment cannot be restored.")
    restored = RestoredExperiment()
    restored.table = table
    writer.keysets = _state.KeySets(state["keysets"])
    writer.seq = _state.latest_seq(experiment_path)
    if state.get("trial_ids"):
        experiment.set_trial_id_state(*state["trial_ids"])
    restored.elapsed_s = float(state.get("elapsed_s") or 0.0)
    restored.iteration = int(state.get("iteration") or 0)
    pickled = _restore_policies(state, policies)
    writer.records = [None] * len(records)
    writer.sources = []
    writer.dirnames = list(state["dirnames"])
    saved_format = state.get("format")
    if isinstance(saved_format, int):
        writer.raise_format(saved_format)  # the finished trials' records are written again as they are
    held = np.flatnonzero(table.column("worker_slot") >= 0).tolist()
    for row in held:
        table.set_worker_slot(row, -1)  # no worker of the interrupted run holds a trial now
    cache: Dict[Any, Any] = {}  # what the restored trials share (see _state.decode_trial)
    pending_resets = state.get("pending_resets") or {}
    # The checkpoints pending exploits copy are pinned first: restoring their donors (pruning
    # what a donor does not list, or forgetting all of a restarted one's) must leave them.
    copied = _pin_reset_sources(pending_resets, checkpoints, experiment_path)
    decisions = state.get("pending_decisions") or {}  # (none in a snapshot of an older fasttune)
    for row, record in enumerate(records):
        _restore_trial(restored, writer, row, record, experiment, resume_config, loader, cache, checkpoints, files,
                       decisions)
    _keep_segments(writer, state)
    pausing = _restore_pending_resets(pending_resets, restored, checkpoints, experiment_path, copied)
    restored.held = [trial for trial in (restored.trials[row] for row in held)
                     if not trial.is_finished() and trial.trial_id not in pausing]
    folder = f"{SET_ASIDE_PREFIX}{writer.seq:010d}"
    cut_off = files.restore_position(state.get("results_store"), folder)
    for trial_id, decision in restored.decisions.items():
        if decision == TrialScheduler.STOP:
            # It ends with the results the snapshot counted: the killed run's later rows go.
            trial = restored.by_id[trial_id]
            files.rewind(trial.path, trial.results_seen)
    moved = set_aside_unknown_trial_dirs(
        experiment_path, [os.path.join(experiment_path, name) for name in writer.dirnames], folder, also=cut_off)
    for name in moved:
        # In storage the directory stays where it was: its checkpoints go, so that a trial made
        # again under that name never mixes its files with theirs (locally: nothing left there).
        files.prune_checkpoints(os.path.join(experiment_path, name), [], now=True)
    if moved:
        logger.warning(
            "%d trial directories in %s are not in its latest snapshot (the interrupted run made them "
            "after it); they are moved to %s, and the searcher makes those trials again.",
            len(moved), experiment_path, os.path.join(experiment_path, folder))
    writer.pickled_in_records = dict(state.get("pickled_in_records") or {})
    in_records = collections.Counter(name for names in writer.pickled_in_records.values() for name in names)
    restored.pickled = [f"{count} {name} object(s) in trial records" for name, count in sorted(in_records.items())] + [
        f"{count} {name} object(s) in the snapshot's state" for name, count in sorted(in_state.items())] + pickled
    counts = table.counts()
    logger.info(
        "Restored %d trials from %s: %d to run, %d paused, %d terminated, %d errored.",
        len(records), path, counts[core.PENDING], counts[core.PAUSED], counts[core.TERMINATED], counts[core.ERROR])
    return restored


def _keep_segments(writer: SnapshotWriter, state: Dict[str, Any]) -> None:
    """Let the restored run's snapshots name the segments of the one it restored, for each
    record it kept as it was there (one the restore changed is held by the snapshot again);
    the records not in a segment go into this run's own."""
    segment_rows = state.get("segment_rows")
    writer.in_segment = bytearray(len(writer.records))
    if segment_rows:
        writer._segments = [list(entry) for entry in state["segments"]]
        for row, record in enumerate(writer.records):
            if segment_rows[row] and record is not None:
                writer.in_segment[row] = 1
        writer._segmented_count = sum(writer.in_segment)
    writer._unsegmented = [row for row, record in enumerate(writer.records)
                           if record is not None and not writer.in_segment[row]]


def _pending_reset(trial: Trial, state: Optional[TrialState], experiment_path: str) -> Optional[List[Any]]:
    """The reset (PBT's exploit) ``trial`` has not taken yet, as plain data: the one to
    carry out when it next starts (a copy not confirmed yet is redone), and whether the
    trial is being paused for it (RUNNING with a reset to take when it starts: its pause
    is on the way).  The checkpoint's path is kept relative to the experiment, which may
    move."""
    if state is None:
        return None
    reset = state.reset_on_start or state.reset_at_decision or state.cloning
    if reset is None:
        return None
    source, relative = reset.source, False
    if source is not None and source.startswith(experiment_path + os.sep):
        source, relative = os.path.relpath(source, experiment_path), True
    pausing = trial.status == Trial.RUNNING and state.reset_on_start is not None
    return [reset.config, reset.tag, source, relative, reset.result, reset.foreign, pausing]


def _reset_source(saved_reset: List[Any], experiment_path: str) -> Optional[str]:
    source, relative = saved_reset[2], saved_reset[3]
    return os.path.join(experiment_path, source) if relative and source else source


def _pin_reset_sources(saved: Dict[str, List[Any]], checkpoints: Any, experiment_path: str) -> Dict[str, str]:
    """Pin each other trial's checkpoint a pending reset copies (as ``reset_trial`` pinned
    it); returns them by the id of the trial that copies it."""
    copied = {}
    for trial_id, saved_reset in saved.items():
        source = _reset_source(saved_reset, experiment_path)
        if saved_reset[5] and source:  # foreign: another trial's
            checkpoints.pin(source)
            copied[trial_id] = source
    return copied


def _restore_pending_resets(saved: Dict[str, List[Any]], restored: "RestoredExperiment", checkpoints: Any,
                            experiment_path: str, copied: Dict[str, str]) -> List[str]:
    """Give the live trials back the resets they had not taken: each is carried out when
    its trial next starts, as it would have been without the interrupt.  A trial that was
    being paused for its reset is PAUSED, as it was about to be: their ids are returned.
    A trial restored to start over (or not live) drops its reset, and the pin of what it
    would have copied; a copied checkpoint its donor no longer lists is deleted once copied."""
    paused = []
    donors = {trial.path: trial for trial in restored.trials} if copied else {}
    for trial_id, (config, tag, _, _, result, foreign, pausing) in saved.items():
        source = _reset_source(saved[trial_id], experiment_path)
        state = restored.states.get(trial_id)
        trial = restored.by_id.get(trial_id)
        dropped = state is None or trial is None or trial.is_finished() or trial_id in restored.restarted
        if trial_id in copied:
            donor = donors.get(os.path.dirname(source))
            if donor is None or source not in {c.path for c in donor.checkpoints}:
                checkpoints.remove_once_copied(source)  # retention had dropped it: it goes after the copy
            if dropped:
                checkpoints.unpin(source)  # no copy will be made
        if dropped:
            continue
        state.reset_on_start = PendingReset(config, tag, source, dict(result), foreign)
        if pausing and restored.unassigned.pop(trial_id, None) is not None:
            trial.set_status(Trial.PAUSED)
            paused.append(trial_id)
    return paused


def _restore_policies(state: Dict[str, Any], policies: Policies) -> List[str]:
    pickled = []
    for kind, policy in (("searcher", policies.searcher), ("scheduler", policies.scheduler)):
        saved = state.get(kind)
        if not saved:
            continue
        blobs = saved.values() if isinstance(saved, dict) else [saved]
        names = sorted({name for blob in blobs for name in unpickled_in(blob)})
        restore_policy_state(policy, kind, saved)
        if names:
            pickled.append(f"in the {kind}'s state ({type(policy).__name__}): {', '.join(names)}")
    if state.get("stopper") is not None and policies.stopper is not None:
        policies.stopper.set_state(state["stopper"])
    if state.get("callbacks"):
        policies.callbacks.set_state(state["callbacks"])
    return pickled


def _restore_trial(restored: RestoredExperiment, writer: SnapshotWriter, row: int, record: bytes, experiment: Any,
                   resume_config: Any, loader: Any, cache: Dict[Any, Any], checkpoints: Any, files: Any,
                   decisions: Dict[str, List[Any]]) -> None:
    """Restore row ``row`` as ``resume_config`` says for its status.  A RUNNING trial whose
    STOP was on its way is finished, as in Ray Tune (which ends it as it decides)."""
    table = restored.table
    status = core.STATUS_NAMES[table.get_status(row)]
    if status == Trial.TERMINATED:
        how = resume_config.finished
    elif status == Trial.ERROR:
        how = resume_config.errored
    else:
        how = resume_config.unfinished
    skip, restart = type(how).SKIP, type(how).RESTART
    args = (record, row, writer.dirnames[row], table, writer.keysets, writer.experiment_path, cache, loader)
    kwargs = dict(trainable_name=experiment.trainable_name, stopping_criterion=experiment.stopping_criterion,
                  max_failures=experiment.max_failures, checkpoint_config=experiment.checkpoint_config)
    if how == skip and status in (Trial.TERMINATED, Trial.ERROR):
        # It stays as it is: decoded when first used, and its record goes into the next
        # snapshot unchanged.
        if not writer.sources:
            writer.sources.append(_state.RecordSource.for_restore(cache, writer.keysets, writer.experiment_path,
                                                                   loader, table, **kwargs))
        record = writer.records[row] = _state.as_bin(record)
        trial = _state.lazy_trial(record, row, writer.dirnames[row], writer.sources[0])
        restored.trials.append(trial)
        restored.by_id[trial.trial_id] = trial
        return
    uploads: Dict[str, Any] = {}
    histories: Dict[str, Any] = {}
    trial, checkpoint_rows, next_index = _state.decode_trial(*args, uploads=uploads, histories=histories, **kwargs)
    decision = decisions.get(trial.trial_id, (None,))[0] if status == Trial.RUNNING else None
    if decision == TrialScheduler.STOP:
        how = resume_config.finished
        carried_out = how == skip
    else:
        carried_out = decision is not None and how == type(how).RESUME
    if carried_out:
        # Resumed only to be stopped (its end heard, as the finished trials' was) or paused now.
        restored.decisions[trial.trial_id] = decision
        how = type(how).RESUME
    trial_state = restored.states[trial.trial_id] = TrialState()
    checkpoints.add_restored(checkpoint_rows, uploads, histories)
    trial_state.next_checkpoint_index = next_index
    if how == skip:
        trial.set_status(Trial.TERMINATED)
        restored.ended.append(trial)
    else:
        if how == restart:
            restored.restarted.add(trial.trial_id)
            checkpoints.forget_all(trial)
            table.set_iteration(row, 0)
            table.set_time_total(row, 0.0)
            trial.last_result = {}
        trial.error = trial.error_msg = trial.error_file = None
        if status != Trial.PAUSED or how == restart:
            if status != Trial.PENDING:
                trial.set_status(Trial.PENDING)
            restored.unassigned[trial.trial_id] = trial
        trial.end_time = None
        # The interrupted run may have gone on with it after the snapshot: its files are
        # rewound when it next starts (to the rows its checkpoint counts), and checkpoints
        # the snapshot does not list go now, before any worker writes.
        trial_state.rewind_on_start = True
        checkpoints.prune_unrecorded(trial, now=True)  # not what a pending exploit copies (pinned)
        if trial.start_time is not None and files.has_params(trial.path):
            trial_state.take_config(trial.config)  # its params.json is written
    restored.trials.append(trial)
    restored.by_id[trial.trial_id] = trial
