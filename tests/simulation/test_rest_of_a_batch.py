"""A worker reply holds several results; when something raises while the runner handles
one of them, the rest of that reply:

* after a callback's error: the stopper, scheduler and searcher judge it and the callbacks
  hear it, in order (it is counted and logged, so it is never reported again);
* after a second Ctrl-C in a callback: judged, but no callback runs (exit at once);
* after an error inside a policy (a Ctrl-C there): not counted, from the result being
  judged on, so a restore reports them again and the policies judge them then.  With
  HyperBand raising (or a Ctrl-C) at any one of this sweep's 74 results, before or after
  it decided, the restored sweep has the uninterrupted one's results and decisions, but
  at 9 of those points (34 to 40, 48, 49) one trial's last result differs in ``done``:
  after the restore that trial is stopped while paused at that result, not on it.  The
  case no cut can mend: a policy that had changed its state on that result and then
  raised hears it twice after the restore (HyperBand remembers a trial it stopped on it
  and stops it there again; another policy may decide otherwise).

The 10th result of the sweep is the first of a reply of three (epochs 1 to 3, up to
HyperBand's milestone 3; see test_simulation_restore)."""
import json
import os

import pytest

import fasttune as tune
from fasttune.execution import _experiment_state as state
from fasttune.logger._trial_files import TrialFiles
from fasttune.schedulers import HyperBandScheduler
from fasttune.simulation import Simulation
from fasttune_testing import fit
from test_simulation_restore import HeardHyperBand, histories, hyperband, simulation, table, tune_config  # noqa: F401

AT = 10


class Heard(tune.Callback):
    """Keeps what it hears, by trial directory: each result's epoch, and "checkpoint"."""

    def __init__(self):
        self.heard = {}

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.heard.setdefault(trial.path, []).append(result["epoch"])

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        self.heard.setdefault(trial.path, []).append("checkpoint")


class RaiseAt(tune.Callback):
    """Raises ``error`` at the sweep's ``AT``-th result; keeps that result's trial directory."""

    def __init__(self, error):
        self.error, self.seen, self.raised_on = error, 0, None

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.seen += 1
        if self.seen == AT:
            self.raised_on = trial.path
            raise self.error


def logged(path):
    with open(os.path.join(path, "result.json")) as f:
        return [json.loads(line)["epoch"] for line in f]


@pytest.mark.parametrize("raising_first", [False, True])
def test_after_a_callbacks_error_the_callbacks_hear_the_rest_of_the_batch_in_order(table, tmp_path, raising_first):
    heard, raising, scheduler = Heard(), RaiseAt(RuntimeError("a callback failed")), HeardHyperBand()
    with pytest.raises(tune.TuneError, match="a callback failed"):
        fit(simulation(table), str(tmp_path), name="cut", space=table.search_space,
            tune_config=tune_config(table, scheduler), callbacks=[raising, heard] if raising_first else [heard, raising])
    path = raising.raised_on
    assert logged(path) == [1, 2, 3]  # it raised on the first result of the reply
    assert scheduler.heard[path] == [1, 2, 3]
    # The result it raised on (after it raised, when it came first), then the two after it
    # and the checkpoint saved with the last.
    assert heard.heard[path] == [1, 2, 3, "checkpoint"]


class RaiseAtAndThenAtEachEnd(tune.Callback):
    """Raises at the sweep's ``at``-th result, and then at each trial's end."""

    def __init__(self, at):
        self.at, self.seen, self.raised_on = at, 0, None

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.seen += 1
        if self.seen == self.at:
            self.raised_on = trial.path
            raise RuntimeError("a callback failed")

    def on_trial_complete(self, iteration, trials, trial, **info):
        if self.raised_on is not None:
            raise RuntimeError("it fails at each end too")


# Results where the rest of the batch brings HyperBand's halving, which stops other
# trials: the raising callback's on_trial_complete raises too, before the callbacks after
# it hear the result it raised on (results of a reply of three at epochs 1 to 3).
@pytest.mark.parametrize("at", [42, 43])
def test_a_callback_raising_again_as_the_rest_of_the_batch_is_judged_leaves_the_others_hearing_it_all(
        table, tmp_path, at):
    heard, raising = Heard(), RaiseAtAndThenAtEachEnd(at)
    with pytest.raises(tune.TuneError, match="a callback failed"):
        fit(simulation(table), str(tmp_path), name="cut", space=table.search_space,
            tune_config=tune_config(table, hyperband()), callbacks=[raising, heard])
    path = raising.raised_on
    assert logged(path) == [1, 2, 3]
    assert [epoch for epoch in heard.heard[path] if epoch != "checkpoint"] == [1, 2, 3]


class HeardSaves(Heard):
    """Keeps "save" for ``on_trial_save`` too."""

    def on_trial_save(self, iteration, trials, trial, **info):
        self.heard.setdefault(trial.path, []).append("save")


class RaiseAtFirstCheckpoint(tune.Callback):
    """Raises at the sweep's first checkpoint saved with a result at epoch 3 (a milestone:
    it comes with the result, not after the trial's end)."""

    def __init__(self):
        self.raised_on = None

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        if self.raised_on is None and trial.last_result["epoch"] == 3:
            self.raised_on = trial.path
            raise RuntimeError("a callback failed")


def test_after_a_callbacks_error_on_a_checkpoint_the_callbacks_after_it_hear_it_and_all_hear_it_saved(table, tmp_path):
    heard, raising = HeardSaves(), RaiseAtFirstCheckpoint()
    with pytest.raises(tune.TuneError, match="a callback failed"):
        fit(simulation(table), str(tmp_path), name="cut", space=table.search_space,
            tune_config=tune_config(table, hyperband()), callbacks=[raising, heard])
    # The checkpoint came with the reply's last result.
    assert heard.heard[raising.raised_on] == logged(raising.raised_on) + ["checkpoint", "save"]


@pytest.fixture
def no_default_loggers(monkeypatch):
    # A second Ctrl-C leaves the loggers' writer threads running (it waits for no callback):
    # none here, so none outlives the test (test_callback counts them).
    monkeypatch.setenv("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")


@pytest.mark.usefixtures("no_default_loggers")
def test_after_a_second_ctrl_c_in_a_callback_no_callback_hears_the_rest(table, tmp_path):
    heard, raising, scheduler = Heard(), RaiseAt(KeyboardInterrupt()), HeardHyperBand()
    with pytest.raises(KeyboardInterrupt):
        fit(simulation(table), str(tmp_path), name="cut", space=table.search_space,
            tune_config=tune_config(table, scheduler), callbacks=[heard, raising])
    path = raising.raised_on
    assert scheduler.heard[path] == [1, 2, 3]  # judged, for the snapshot
    assert heard.heard[path] == [1]


class CtrlCInHyperBand(HyperBandScheduler):
    """HyperBand that raises ``error`` as it judges the sweep's ``at``-th result, once (a
    marker file: the restore unpickles the scheduler as it was at the start): before it
    decides, or with ``after_deciding`` once it has (its state changed, as a subclass
    raising after ``super()``, or a Ctrl-C there)."""

    def __init__(self, marker, at=AT, error=KeyboardInterrupt, after_deciding=False):
        super().__init__(time_attr="epoch", max_t=9, reduction_factor=3)
        self.marker, self.at, self.error, self.seen, self.raised_on = marker, at, error, 0, None
        self.after_deciding = after_deciding

    def on_trial_result(self, tune_controller, trial, result):
        self.seen += 1
        raising = self.seen == self.at and not os.path.exists(self.marker)
        if raising and not self.after_deciding:
            self._raise(trial)
        decision = super().on_trial_result(tune_controller, trial, result)
        if raising:
            self._raise(trial)
        return decision

    def _raise(self, trial):
        open(self.marker, "w").close()
        self.raised_on = trial.path
        raise self.error


@pytest.mark.usefixtures("no_default_loggers")
def test_a_ctrl_c_inside_a_policy_leaves_the_rest_of_the_batch_to_be_judged_after_the_restore(table, tmp_path):
    scheduler = CtrlCInHyperBand(str(tmp_path / "pressed"), at=AT + 1)
    with pytest.raises(KeyboardInterrupt):
        fit(simulation(table), str(tmp_path), name="cut", space=table.search_space,
            tune_config=tune_config(table, scheduler))
    # Counted up to the result before the one it was judging (epoch 2): epochs 2 and 3
    # (and the checkpoint at 3) go.
    assert logged(scheduler.raised_on) == [1]
    restored = tune.Tuner.restore(os.path.join(tmp_path, "cut"), trainable=simulation(table)).fit()
    whole = fit(simulation(table), str(tmp_path), name="whole", space=table.search_space,
                tune_config=tune_config(table, hyperband()))
    # The same results and decisions; only the simulated clock differs after the restore
    # (that trial ran epochs 1 to 3 again: it had no checkpoint before epoch 3).
    assert decided(restored) == decided(whole)
    assert histories(restored) != histories(whole)


def decided(grid):
    """By config: each result's (epoch, training_iteration, loss, done), and the trial's end."""
    return {row: ([(epoch, it, loss, done) for epoch, it, loss, _, _, _, done in rows], end)
            for row, (rows, end) in histories(grid).items()}


@pytest.fixture(scope="module")
def uninterrupted(table, tmp_path_factory):
    return decided(fit(simulation(table), str(tmp_path_factory.mktemp("whole")), name="whole",
                       space=table.search_space, tune_config=tune_config(table, hyperband())))


# Interrupt points (of the sweep's 74 results) where a restore went on past the result
# being judged, so that no policy judged it (a checkpoint came with it, or a milestone),
# or marked a trial's end at another result; each a result of another kind of reply.
@pytest.mark.usefixtures("no_default_loggers")
@pytest.mark.parametrize("at", [9, 12, 41, 44, 45, 46, 50, 54, 56, 62])
def test_after_a_ctrl_c_inside_a_policy_the_restored_sweep_decides_as_the_uninterrupted_one(
        table, tmp_path, uninterrupted, at):
    scheduler = CtrlCInHyperBand(str(tmp_path / "pressed"), at=at)
    with pytest.raises(KeyboardInterrupt):
        fit(simulation(table), str(tmp_path), name="cut", space=table.search_space,
            tune_config=tune_config(table, scheduler))
    restored = tune.Tuner.restore(os.path.join(tmp_path, "cut"), trainable=simulation(table)).fit()
    assert decided(restored) == uninterrupted


# Interrupt points where HyperBand had stopped the trial on the result it judged (at its
# bracket's last milestone: 9, 21, 33, 62; dropped by the halving that result set off: 44,
# 50) when it raised: the restore reports that result again and HyperBand stops the trial
# on it again (it is no errored trial, to be judged anew in another bracket).
@pytest.mark.usefixtures("no_default_loggers")
@pytest.mark.parametrize("at", [9, 21, 33, 44, 50, 62])
def test_after_a_ctrl_c_in_a_policy_after_it_decided_the_restored_sweep_decides_as_the_uninterrupted_one(
        table, tmp_path, uninterrupted, at):
    scheduler = CtrlCInHyperBand(str(tmp_path / "pressed"), at=at, after_deciding=True)
    with pytest.raises(KeyboardInterrupt):
        fit(simulation(table), str(tmp_path), name="cut", space=table.search_space,
            tune_config=tune_config(table, scheduler))
    restored = tune.Tuner.restore(os.path.join(tmp_path, "cut"), trainable=simulation(table)).fit()
    assert decided(restored) == uninterrupted


def test_the_cut_keeps_a_checkpoint_that_the_cut_results_checkpoints_would_have_evicted(table, tmp_path):
    # A checkpoint at each epoch, one kept: the reply of epochs 1 to 3 is cut at epoch 2 (a
    # policy error); retention counted once the cut is made keeps epoch 1's checkpoint.
    scheduler = CtrlCInHyperBand(str(tmp_path / "pressed"), at=AT + 1, error=RuntimeError("policy failed"))
    with pytest.raises(RuntimeError, match="policy failed"):
        fit(Simulation(table, num_workers=3, write_results=True, checkpoint_at=1), str(tmp_path), name="cut",
            space=table.search_space, tune_config=tune_config(table, scheduler),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1))
    trial = next(t for t in state.read_trials(str(tmp_path / "cut")) if t.path == scheduler.raised_on)
    assert logged(scheduler.raised_on) == [1]
    assert [c.path for c in trial.checkpoints] == [os.path.join(scheduler.raised_on, "checkpoint_000000")]


def test_the_cut_and_retention_apply_also_when_writing_the_cut_batch_raises(table, tmp_path, monkeypatch):
    # As above, and the write of that batch raises too (e.g. a Ctrl-C while waiting for
    # the writer thread): the snapshot on the way out still counts epoch 1 only, and one
    # checkpoint (the three of the reply would be kept, the last result epoch 3).
    marker = tmp_path / "pressed"
    write = TrialFiles.write

    def failing_write(files, trial_dir, json_bytes, csv_bytes):
        if marker.exists() and not (tmp_path / "write failed").exists():
            (tmp_path / "write failed").touch()
            raise OSError("disk full")
        write(files, trial_dir, json_bytes, csv_bytes)

    monkeypatch.setattr(TrialFiles, "write", failing_write)
    scheduler = CtrlCInHyperBand(str(marker), at=AT + 1, error=RuntimeError("policy failed"))
    with pytest.raises(OSError, match="disk full"):
        fit(Simulation(table, num_workers=3, write_results=True, checkpoint_at=1), str(tmp_path), name="cut",
            space=table.search_space, tune_config=tune_config(table, scheduler),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1))
    trial = next(t for t in state.read_trials(str(tmp_path / "cut")) if t.path == scheduler.raised_on)
    assert trial.last_result["epoch"] == 1
    assert [c.path for c in trial.checkpoints] == [os.path.join(scheduler.raised_on, "checkpoint_000000")]


class CtrlCBeforeHalving(HyperBandScheduler):
    """HyperBand that raises KeyboardInterrupt once a result brought a bracket to its
    milestone, before it halves (once: a marker file)."""

    def __init__(self, marker):
        super().__init__(time_attr="epoch", max_t=9, reduction_factor=3)
        self.marker = marker

    def _process(self, tune_controller, bracket, current, force=False):
        if bracket.at_milestone() and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            raise KeyboardInterrupt
        return super()._process(tune_controller, bracket, current, force)


@pytest.mark.usefixtures("no_default_loggers")
def test_a_ctrl_c_between_a_brackets_update_and_its_halving_restores_to_the_uninterrupted_sweep(
        table, tmp_path, uninterrupted):
    # The snapshot's bracket has the result the runner did not count: the restored
    # scheduler goes by the trial's counted results, so the trial runs to the milestone
    # again (not paused there, with its bracket never halving: the restore stalled).
    with pytest.raises(KeyboardInterrupt):
        fit(simulation(table), str(tmp_path), name="cut", space=table.search_space,
            tune_config=tune_config(table, CtrlCBeforeHalving(str(tmp_path / "pressed"))))
    restored = tune.Tuner.restore(os.path.join(tmp_path, "cut"), trainable=simulation(table)).fit()
    assert decided(restored) == uninterrupted


class RaiseAtKthEnd(tune.Callback):
    """Raises at the sweep's ``k``-th on_trial_complete, once (a marker file outlives the restore)."""

    def __init__(self, marker, k):
        self.marker, self.k, self.ended = marker, k, 0

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.ended += 1
        if self.ended == self.k and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            raise RuntimeError("on_trial_complete fails")


# Trial ends (of the sweep's) that come while HyperBand's halving stops a dropped trial:
# the halving is applied whole (trials kept, the judged trial's stop) before the callback's
# error reaches the snapshot, so the restored sweep resumes the kept trials.
@pytest.mark.usefixtures("no_default_loggers")
@pytest.mark.parametrize("k", [4, 5, 7, 8])
def test_a_callback_raising_as_a_halving_stops_a_trial_restores_to_the_uninterrupted_sweep(
        table, tmp_path, uninterrupted, k):
    with pytest.raises(tune.TuneError, match="on_trial_complete fails"):
        fit(simulation(table), str(tmp_path), name="cut", space=table.search_space,
            tune_config=tune_config(table, hyperband()), callbacks=[RaiseAtKthEnd(str(tmp_path / "raised"), k)])
    restored = tune.Tuner.restore(os.path.join(tmp_path, "cut"), trainable=simulation(table)).fit()
    assert decided(restored) == uninterrupted
