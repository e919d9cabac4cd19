"""The book of pending resets: ``reset_trial`` (PBT's exploit) asked for a trial to go on
with a new config, maybe from another trial's checkpoint, and the runner carries it out
at the next moment the trial's worker can take it.

A reset waits in the trial's :class:`~fasttune.execution._trial_state.TrialState`: at the
decision point the trial waits at in the batch being handled (``reset_at_decision``: done
in place on its worker), or when the trial next starts (``reset_on_start``).  Once sent,
a reset that copies another trial's checkpoint stays in ``cloning`` until the worker
confirms the copy; until then the source checkpoint is pinned in the checkpoint book.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional

from fasttune.execution._protocol import wire_config
from fasttune.execution._trial_state import PendingReset, TrialState


class ResetBook:
    def __init__(self, checkpoints: Any, table: Any) -> None:
        self._checkpoints = checkpoints
        self._table = table

    def make(self, trial: Any, new_config: Dict[str, Any], new_experiment_tag: str, checkpoint: Any,
             checkpoint_result: Optional[Dict[str, Any]]) -> PendingReset:
        """The reset ``reset_trial`` asks for; another trial's checkpoint is pinned now.
        A config no worker can be sent is refused here (ConfigNotCarried names the key)."""
        wire_config(new_config)
        source = checkpoint.path if checkpoint is not None else None
        own = {c.path for c in trial.checkpoints}
        foreign = source is not None and source not in own
        if foreign:
            self._checkpoints.pin(source)
        if checkpoint_result is None and source in own:
            checkpoint_result = next(r for c, r in trial.checkpoint_results if c.path == source)
        return PendingReset(new_config, new_experiment_tag, source, dict(checkpoint_result or {}), foreign)

    def hold(self, state: TrialState, reset: PendingReset, at_decision_point: bool) -> None:
        """Keep ``reset`` until it can be carried out; it replaces an earlier one not
        carried out yet."""
        for previous in (state.reset_at_decision, state.reset_on_start):
            if previous is not None:
                self.release(previous)
        state.reset_at_decision = reset if at_decision_point else None
        state.reset_on_start = None if at_decision_point else reset

    def redo_unconfirmed_copy(self, state: TrialState) -> None:
        """The trial's run segment ended (failed, or was handed back or paused by a late
        interrupt) before its worker confirmed copying another trial's checkpoint: the
        reset is carried out again when the trial next starts, or it would go on with the
        new config from its own checkpoint.  A newer reset held meanwhile replaces it."""
        reset, state.cloning = state.cloning, None
        if reset is None:
            return
        if state.reset_on_start is None:
            state.reset_on_start = reset
        else:
            self.release(reset)

    def release(self, reset: Optional[PendingReset]) -> None:
        """``reset`` is done with (carried out and confirmed, or dropped): unpin its source."""
        if reset is not None and reset.foreign:
            self._checkpoints.unpin(reset.source)

    def drop(self, state: TrialState) -> None:
        """The trial ended: resets it did not take are dropped."""
        for reset in (state.reset_at_decision, state.reset_on_start, state.cloning):
            self.release(reset)
        state.reset_at_decision = state.reset_on_start = state.cloning = None

    def spec_fields(self, trial: Any, state: TrialState, reset: PendingReset,
                    rewind: Callable[[Any, int, float, int, Any], None],
                    decision_points: Callable[[Any], Any]) -> Dict[str, Any]:
        """The spec fields of the run segment that carries ``reset`` out.  The trial takes
        the new config now: until then it ran (and may have ended) with the old one."""
        table, row = self._table, trial._row
        trial.config = reset.config  # the runner renders it for results and params.json
        trial.experiment_tag = reset.tag
        iteration = int(reset.result.get("training_iteration", trial.iteration))
        time_total = float(reset.result.get("time_total_s", table.get_time_total(row)))
        fields: Dict[str, Any] = {"config": wire_config(reset.config), "iteration": iteration, "time_total": time_total,
                                  "restore": None, "clone_from": None, "restore_token": None,
                                  "clone_token": None}
        if reset.source is None:
            iteration, time_total = trial.iteration, table.get_time_total(row)
            fields.update(iteration=iteration, time_total=time_total)
        elif reset.foreign:
            index = state.next_index(trial)
            state.next_checkpoint_index = index + 1
            state.cloning = reset
            fields.update(clone_from=reset.source, ckpt_index=index)
            upload = self._checkpoints.uploads.get(reset.source)
            if upload is not None:  # a copy of it kept on the donor's node: cloned there, no download
                fields.update(clone_token=upload[0], restore_node=upload[1])
        else:
            fields["restore"] = reset.source
            fields.update(self._checkpoints.restore_fields(reset.source))
            fields["ckpt_index"] = state.next_index(trial)
            rows = self._checkpoints.rows.get(reset.source, trial.results_seen)
            if trial.results_seen > rows:  # its own older checkpoint: the later history goes
                rewind(trial, iteration, time_total, rows, self._checkpoints.kept_history(reset.source, reset.result))
        table.set_iteration(row, iteration)
        table.set_time_total(row, time_total)
        # Asked again: the new config and iteration may move the scheduler's points.
        fields["decide"] = decision_points(trial)
        return fields
