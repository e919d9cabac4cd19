"""A HyperBand sweep interrupted right after the scheduler paused a trial at its milestone
(or stopped one at its last), then restored: no trial runs on before its bracket's
decision, and every trial ends where the same sweep never interrupted ends it."""
import os

import pytest

import fasttune as tune
from fasttune._serialization import dump_file, load_file
from fasttune.execution import _experiment_state as state
from fasttune.schedulers import HyperBandScheduler, hyperband
from fasttune.simulation import Simulation
from fasttune_testing import lines
from interrupt_testing import LogAndInterrupt, read_log

import test_restart_errored as restart_errored
from test_hyperband import QUALITY, expected_finals
from test_schedulers_e2e import hb_function

pytestmark = pytest.mark.usefixtures("ray_session")

# max_t=9, eta=3: trial i (q = QUALITY[i]) is in bracket 0 (i < 3, milestone 9), bracket 1
# (3 <= i < 8, milestones 3, 9) or bracket 2 (milestones 1, 3, 9).
BRACKETS = [(range(0, 3), [9]), (range(3, 8), [3, 9]), (range(8, 17), [1, 3, 9])]


def bracket_of(q):
    index = QUALITY.index(q)
    return next((members, milestones) for members, milestones in BRACKETS if index in members)


def early_reports(logged):
    """The results logged past a milestone ``m`` of a trial's bracket before every trial
    of that bracket that gets to ``m`` (in the uninterrupted sweep) had reported ``m``."""
    finals = {QUALITY[i]: final for i, final in expected_finals().items()}
    seen = set()
    early = []
    for q, it in logged:
        members, milestones = bracket_of(q)
        for m in milestones:
            waiting = [QUALITY[i] for i in members if finals[QUALITY[i]] >= m and (QUALITY[i], m) not in seen]
            if it > m and waiting:
                early.append((q, it, m, waiting))
        seen.add((q, it))
    return early


@pytest.mark.parametrize("interrupt_in,at", [
    (1, 3),  # the first of bracket 1 at its first milestone: HyperBand pauses it there
    (0, 9),  # the first of bracket 0 at max_t: HyperBand stops it there
], ids=["paused-at-milestone", "stopped-at-max_t"])
def test_a_restored_hyperband_sweep_decides_as_the_uninterrupted_one(storage, tmp_path, interrupt_in, at):
    log = str(tmp_path / "results.log")
    members = [QUALITY[i] for i in BRACKETS[interrupt_in][0]]
    # Raised at the first result of a trial of that bracket at iteration ``at``: HyperBand
    # has decided on it already (its PAUSE or STOP is on its way).
    interrupt = LogAndInterrupt(log, lambda result: result["config"]["q"] in members
                                and result["training_iteration"] == at)
    tuner = tune.Tuner(
        hb_function, param_space={"q": tune.grid_search(QUALITY)},
        tune_config=tune.TuneConfig(metric="score", mode="max",
                                    scheduler=HyperBandScheduler(max_t=9, reduction_factor=3)),
        run_config=tune.RunConfig(name="hb", storage_path=storage, verbose=0, callbacks=[interrupt]))
    with pytest.raises(tune.TuneError, match="interrupted right after a decision"):
        tuner.fit()
    path = os.path.join(storage, "hb")
    with open(log) as f:
        interrupted_q = float(f.read().split()[-2])
    # The snapshot has that trial RUNNING: the scheduler's PAUSE or STOP had not reached its worker.
    assert {t.config["q"]: t.status for t in state.read_trials(path)}[interrupted_q] == "RUNNING"

    grid = tune.Tuner.restore(path, trainable=hb_function).fit()

    assert grid.num_errors == 0 and grid.num_terminated == len(QUALITY)
    # Synchronous HyperBand with deterministic trainables decides the same in any order of
    # results: these are the uninterrupted sweep's final iterations (test_schedulers_e2e).
    expected = {QUALITY[i]: final for i, final in expected_finals().items()}
    assert {r.config["q"]: r.metrics["training_iteration"] for r in grid} == expected
    for result in grid:
        rows = lines(os.path.join(result.path, "result.json"))
        assert [row["training_iteration"] for row in rows] == list(range(1, expected[result.config["q"]] + 1))
    logged = read_log(log)
    assert early_reports(logged) == []
    # The trial whose decision was on its way reported each iteration once, none past its end.
    assert [it for q, it in logged if q == interrupted_q] == list(range(1, expected[interrupted_q] + 1))


def older_state(state):
    """``state`` as a fasttune that kept neither where trials left nor where it stopped them saved it."""
    return {key: value for key, value in state.items() if key not in ("left_at", "left_at_known", "dropped_on")}


@pytest.mark.parametrize("failing_q", [11, 12], ids=["its-bracket", "a-new-bracket"])
def test_a_state_saved_before_it_kept_trials_left_or_stopped_on_their_result_restores(tmp_path, monkeypatch, failing_q):
    path = str(tmp_path / "hyperband.state")
    HyperBandScheduler(metric="loss", mode="min").save(path)
    dump_file(path, older_state(load_file(path)))
    scheduler = HyperBandScheduler(metric="loss", mode="min")
    scheduler.restore(path)
    scheduler.save(path)
    assert (load_file(path)["left_at"], load_file(path)["dropped_on"]) == ({}, {})

    # A sweep whose errored trial (it fails as it resumes after its first milestone) is
    # in such a state: resumed from its checkpoint, it is judged again, not stopped there.
    save_state = hyperband.save_state
    monkeypatch.setattr(hyperband, "save_state", lambda path, state: save_state(path, older_state(state)))
    cut = restart_errored.simulated(tmp_path, "cut", HyperBandScheduler(time_attr="epoch", max_t=9, reduction_factor=3),
                                    failing_q=failing_q, fails_at_start=2)
    monkeypatch.undo()
    assert cut.num_errors == 1
    simulation = Simulation(restart_errored.Linear(restart_errored.QUALITY), num_workers=3, write_results=True)
    grid = tune.Tuner.restore(str(tmp_path / "cut"), trainable=simulation, resume_errored=True).fit()
    assert grid.num_errors == 0
    assert restart_errored.simulated_finals(grid)[failing_q] == 9
