"""HyperBandScheduler driven by the simulated runner: bracket shapes, assignment, pausing
until the bracket is at its milestone, halving, resuming, persistence and errors."""
import pytest

from fasttune.schedulers import DecisionPoints, HyperBandScheduler, TrialScheduler

from simulated_runner import SimulatedRunner

CONTINUE, PAUSE, STOP = TrialScheduler.CONTINUE, TrialScheduler.PAUSE, TrialScheduler.STOP


def make(**kwargs):
    kwargs.setdefault("metric", "score")
    kwargs.setdefault("mode", "max")
    return HyperBandScheduler(**kwargs)


def test_bracket_shapes_for_max_t_81_eta_3_are_hyperbands_table():
    # s_max + 1 = round(log(81) / log(3)) + 1 = 5 brackets; n_s = ceil(5 / (s + 1) * 3**s),
    # r_s = 81 // 3**s, each halving keeps ceil(n / 3) and triples the milestone.
    assert make(max_t=81, reduction_factor=3).bracket_shapes() == [
        (5, 81, [81]),
        (8, 27, [27, 81]),
        (15, 9, [9, 27, 81]),
        (34, 3, [3, 9, 27, 81]),
        (81, 1, [1, 3, 9, 27, 81]),
    ]
    # max_t that is no power of eta: budgets are floored and capped at max_t.
    assert make(max_t=100, reduction_factor=3).bracket_shapes() == [
        (5, 100, [100]),
        (8, 33, [33, 99]),
        (15, 11, [11, 33, 99]),
        (34, 3, [3, 9, 27, 81]),
        (81, 1, [1, 3, 9, 27, 81]),
    ]
    assert make(max_t=9, reduction_factor=3).bracket_shapes() == [(3, 9, [9]), (5, 3, [3, 9]), (9, 1, [1, 3, 9])]
    # A bracket whose budget floors to 0 is skipped: max_t=2, eta=3 has one bracket.
    assert make(max_t=2, reduction_factor=3).bracket_shapes() == [(2, 2, [2])]


def test_trials_fill_brackets_in_order_then_a_new_band_starts():
    scheduler = make(max_t=81, reduction_factor=3)
    sim = SimulatedRunner(scheduler, metric="score", mode="max")
    trials = [sim.add_trial({"i": i}) for i in range(5 + 8 + 15 + 34 + 81 + 2)]
    assert [len(b) for b in scheduler.brackets()] == [5, 8, 15, 34, 81, 2]
    assert scheduler.bracket_of(trials[0]) == (0, 0, 81)
    assert scheduler.bracket_of(trials[5]) == (0, 1, 27)
    assert scheduler.bracket_of(trials[142]) == (0, 4, 1)
    assert scheduler.bracket_of(trials[143]) == (1, 0, 81)
    assert scheduler.decision_points(trials[20]) == DecisionPoints.at([9, 27, 81])
    assert scheduler.decision_points(trials[142]) == DecisionPoints.at([1, 3, 9, 27, 81])
    # Skipped brackets (budget 0) are not counted as brackets.
    tiny = make(max_t=2, reduction_factor=3)
    sim = SimulatedRunner(tiny, metric="score", mode="max")
    for _ in range(5):
        sim.add_trial({})
    assert [len(b) for b in tiny.brackets()] == [2, 2, 1]


QUALITY = [(i * 7) % 17 for i in range(17)]  # a permutation of 0..16


def expected_finals():
    """Hand-computed for max_t=9, eta=3: bracket 0 = trials 0-2 (run to 9); bracket 1 =
    trials 3-7 (at 3 keep 2, they run to 9); bracket 2 = trials 8-16 (at 1 keep 3, at 3
    keep 1, it runs to 9)."""
    finals = {i: 9 for i in range(3)}
    b1 = sorted(range(3, 8), key=lambda i: QUALITY[i])
    finals.update({i: 3 for i in b1[:3]})
    finals.update({i: 9 for i in b1[3:]})
    b2 = sorted(range(8, 17), key=lambda i: QUALITY[i])
    finals.update({i: 1 for i in b2[:6]})
    finals.update({i: 3 for i in b2[6:8]})
    finals[b2[8]] = 9
    return finals


@pytest.mark.parametrize("time_attr", ["training_iteration", "time_total_s"])
@pytest.mark.parametrize("max_concurrent", [1, 2, 5])
def test_a_band_ends_as_computed_by_hand_and_kept_trials_resume_where_they_paused(max_concurrent, time_attr):
    # One second an iteration: time_total_s gives the same band, through points on the attribute.
    scheduler = make(max_t=9, reduction_factor=3, time_attr=time_attr)
    sim = SimulatedRunner(scheduler, curve=lambda config, it: config["q"] + 0.001 * it,
                          configs=[{"i": i, "q": q} for i, q in enumerate(QUALITY)],
                          metric="score", mode="max", max_concurrent=max_concurrent, max_iterations=100).run()
    assert sim.violations == []
    assert sim.final_iterations("i") == expected_finals()
    assert set(sim.statuses().values()) == {"TERMINATED"}
    for trial in sim.trials:  # resumed from their checkpoints: no iteration twice
        assert sim.history[trial.trial_id] == list(range(1, trial.iteration + 1))
    pauses = [d for d in sim.decisions if d[2] == PAUSE]
    # Every pause ends in a resume or in a stop by the scheduler.
    assert len(sim.starts) == 17 + len(pauses) - len(sim.stop_calls)
    assert sim.stop_calls  # paused trials that were dropped were stopped by the scheduler
    assert scheduler.num_stopped == 3 + 6 + 2


@pytest.mark.parametrize("slots", [1, 2, 4])
def test_a_concurrency_limit_counting_paused_trials_never_stalls_the_sweep(slots):
    # TuneConfig(max_concurrent_trials=...): the runner asks for no trial while that many
    # hold workers, and the search algorithm declines while that many are live (paused
    # ones too), so brackets halve the trials they have (as in Ray Tune).
    sim = SimulatedRunner(make(max_t=9, reduction_factor=3), curve=lambda config, it: config["q"],
                          configs=[{"q": q} for q in QUALITY * 2], metric="score", mode="max",
                          max_concurrent=slots, max_concurrent_trials=True).run()
    assert sim.violations == []
    assert set(sim.statuses().values()) == {"TERMINATED"}
    assert set(sim.final_iterations().values()) <= {1, 3, 9}
    for trial in sim.trials:
        assert sim.history[trial.trial_id] == list(range(1, trial.iteration + 1))


def test_pause_until_the_bracket_is_at_its_milestone_then_halve_by_hand():
    scheduler = make(max_t=9, reduction_factor=3)
    sim = SimulatedRunner(scheduler, metric="score", mode="max")
    first = [sim.add_trial({"b": 0}) for _ in range(3)]  # bracket s=0
    a, b, c, d, e = [sim.add_trial({"b": 1}) for _ in range(5)]  # bracket s=1: milestone 3
    for trial in first:
        sim.start(trial)
    assert scheduler.choose_trial_to_run(sim) is a  # PENDING first, in order
    values = {a: 5.0, b: 1.0, c: 4.0, d: 2.0, e: 3.0}
    for trial in (a, b, c, d):
        assert sim.feed(trial, 1, 0.0) == CONTINUE
        assert sim.feed(trial, 2, 0.0) == CONTINUE
        assert sim.feed(trial, 3, values[trial]) == PAUSE  # e is still at 0
    for trial in (a, b, c):
        trial.set_status("PAUSED")  # their pause completed; d's is still on the way
    sim.start(e)
    assert scheduler.choose_trial_to_run(sim) is None  # nobody may resume yet
    assert sim.feed(e, 3, values[e]) == STOP  # the bracket halves: keep a and c
    assert sim.stop_calls == [b.trial_id, d.trial_id]  # d while its pause was on the way
    assert b.status == d.status == "TERMINATED"
    assert scheduler.choose_trial_to_run(sim) is a
    sim.held.add(a.trial_id)  # handed to a worker, not started yet: not again
    assert scheduler.choose_trial_to_run(sim) is c
    sim.held.clear()
    sim.start(a)
    assert scheduler.choose_trial_to_run(sim) is c
    sim.start(c)
    assert scheduler.choose_trial_to_run(sim) is None
    assert sim.feed(a, 4, 9.0) == CONTINUE
    assert sim.feed(a, 9, 9.0) == STOP  # its bracket's last milestone
    assert sim.feed(c, 9, 0.0) == STOP


def test_a_kept_trial_whose_pause_is_still_on_the_way_resumes_once_paused():
    scheduler = make(max_t=9, reduction_factor=3)
    sim = SimulatedRunner(scheduler, metric="score", mode="max")
    for _ in range(3):
        sim.start(sim.add_trial({}))
    trials = [sim.add_trial({}) for _ in range(5)]
    for trial, value in zip(trials, (5.0, 4.0, 1.0, 2.0, 3.0)):
        decision = sim.feed(trial, 3, value)
    assert decision == STOP  # the last (3.0) is dropped; 5.0 and 4.0 are kept
    kept = trials[:2]
    assert all(t.status == "RUNNING" for t in kept)  # their pauses are on the way
    assert scheduler.choose_trial_to_run(sim) is None
    kept[1].set_status("PAUSED")
    assert scheduler.choose_trial_to_run(sim) is kept[1]
    kept[0].set_status("PAUSED")
    assert scheduler.choose_trial_to_run(sim) is kept[0]


def test_a_trial_ending_early_releases_its_bracket():
    scheduler = make(max_t=9, reduction_factor=3)
    sim = SimulatedRunner(scheduler, metric="score", mode="max")
    for _ in range(3):
        sim.start(sim.add_trial({}))
    a, b, c, d, e = [sim.add_trial({}) for _ in range(5)]
    for trial, value in ((a, 1.0), (b, 2.0), (c, 3.0), (d, 4.0)):
        assert sim.feed(trial, 3, value) == PAUSE
        trial.set_status("PAUSED")
    sim.start(e)
    sim.feed(e, 1, 100.0)
    e.set_status("ERROR")
    scheduler.on_trial_error(sim, e)  # the bracket halves among the four: keep 2
    assert sim.stop_calls == [a.trial_id, b.trial_id]
    assert scheduler.choose_trial_to_run(sim) is c
    # A trial completing on its own counts the same way.
    sim.start(c)
    sim.start(d)
    assert sim.feed(c, 9, 1.0) == STOP
    sim.complete(d)
    assert scheduler.brackets()[1] == []


def test_a_bracket_with_room_waits_for_trials_unless_none_come():
    scheduler = make(max_t=9, reduction_factor=3)
    sim = SimulatedRunner(scheduler, configs=[{}] * 10, metric="score", mode="max")  # more to come
    first = [sim.add_trial({}) for _ in range(3)]  # bracket s=0
    for trial in first:
        sim.start(trial)
    x = sim.add_trial({})  # bracket s=1 (room for 5), alone so far
    assert sim.feed(x, 3, 1.0) == PAUSE  # not halved against itself: the others start from 0
    x.set_status("PAUSED")
    assert scheduler.choose_trial_to_run(sim) is None  # asks the runner for a trial
    y = sim.add_trial(sim._queue.pop(0))
    assert scheduler.bracket_of(y)[1] == 1 and scheduler.choose_trial_to_run(sim) is y
    assert sim.feed(y, 3, 2.0) == PAUSE
    y.set_status("PAUSED")
    assert scheduler.choose_trial_to_run(sim) is None  # asks again ...
    assert scheduler.choose_trial_to_run(sim) is x  # ... none came: halve the two it has
    assert sim.stop_calls == []  # ceil(5 / 3) = 2 kept
    z = sim.add_trial(sim._queue.pop(0))  # joins the halved bracket: catches up to 9
    assert sim.feed(z, 3, 0.0) == CONTINUE

    # With nothing running, asking for a trial could stall the runner if none came: the
    # bracket halves with what it has at once.
    scheduler = make(max_t=9, reduction_factor=3)
    sim = SimulatedRunner(scheduler, configs=[{}] * 10, metric="score", mode="max")
    for _ in range(3):
        sim.complete(sim.add_trial({}))
    x = sim.add_trial({})
    assert sim.feed(x, 3, 1.0) == PAUSE
    x.set_status("PAUSED")
    assert scheduler.choose_trial_to_run(sim) is x


def test_stop_last_trials_false_lets_the_survivors_run_on():
    scheduler = make(max_t=9, reduction_factor=3, stop_last_trials=False)
    sim = SimulatedRunner(scheduler, curve=lambda config, it: config["q"],
                          configs=[{"i": i, "q": q} for i, q in enumerate(QUALITY)],
                          metric="score", mode="max", max_concurrent=3, max_iterations=12).run()
    expected = {i: (12 if v == 9 else v) for i, v in expected_finals().items()}
    assert sim.final_iterations("i") == expected
    assert sim.violations == []


def _sweep(scheduler, swap_at=None, swap=None):
    sim = SimulatedRunner(scheduler, curve=lambda config, it: config["q"] * (1 + it % 3),
                          configs=[{"q": (i * 11) % 29} for i in range(40)],
                          metric="score", mode="max", max_concurrent=3)
    while not sim.finished():
        sim.tick()
        if sim.ticks == swap_at:
            sim.scheduler = swap(sim.scheduler)
    return sim


def test_save_and_restore_continue_with_identical_decisions(tmp_path):
    reference = _sweep(make(max_t=9, reduction_factor=3))
    path = str(tmp_path / "hb.pkl")

    def swap(old):
        old.save(path)
        fresh = make(max_t=9, reduction_factor=3)
        fresh.restore(path)  # knows trials by id only; finds them through the controller
        assert fresh.debug_string() == old.debug_string()
        return fresh

    resumed = _sweep(make(max_t=9, reduction_factor=3), swap_at=12, swap=swap)
    assert resumed.decisions == reference.decisions
    assert resumed.final_iterations() == reference.final_iterations()
    assert resumed.stop_calls == reference.stop_calls and resumed.stop_calls


def test_a_restored_trial_whose_pause_or_stop_was_on_its_way_is_paused_or_stopped_again(tmp_path):
    # At the snapshot such a trial was RUNNING (its worker had not ended it yet): the
    # restore hands it over PENDING, and the runner tells the restored scheduler of it.
    scheduler = make(max_t=9, reduction_factor=3)
    sim = SimulatedRunner(scheduler, metric="score", mode="max")
    done, running, _ = [sim.add_trial({}) for _ in range(3)]  # bracket s=0: milestone 9 = max_t
    paused, going, redone, fresh, _ = [sim.add_trial({}) for _ in range(5)]  # bracket s=1: milestone 3
    assert sim.feed(done, 9, 1.0) == STOP
    assert sim.feed(running, 5, 1.0) == CONTINUE
    assert sim.feed(paused, 3, 1.0) == PAUSE
    assert sim.feed(going, 2, 1.0) == CONTINUE
    assert sim.feed(redone, 3, 1.0) == PAUSE
    path = str(tmp_path / "hb.pkl")
    scheduler.save(path)
    sim.scheduler = make(max_t=9, reduction_factor=3)
    sim.scheduler.restore(path)
    for trial in (done, running, paused, going, redone):
        trial.set_status("PENDING")
    done.last_result = dict(done.last_result, done=True)  # as the runner marks the result a STOP ended it on
    redone.last_result = {}  # restored to start over (ResumeConfig restart)
    for trial in sim.trials:
        sim.scheduler.on_trial_add(sim, trial)
    assert sim.stop_calls == [done.trial_id] and done.status == "TERMINATED"
    assert sim.pause_calls == [paused.trial_id] and paused.status == "PAUSED"
    assert [t.status for t in (running, going, redone, fresh)] == ["PENDING"] * 4
    assert sim.scheduler.choose_trial_to_run(sim) is running


def test_a_trial_restored_to_start_over_has_reached_nothing_and_ranks_last_in_its_bracket(tmp_path):
    # Restored with ResumeConfig(unfinished="restart"), the best trial of a bracket runs from
    # scratch: its bracket waits for it to reach the milestone again rather than halving on
    # what its earlier run reported (which would keep it and stop a trial that finished).
    scheduler = make(max_t=9, reduction_factor=3)
    sim = SimulatedRunner(scheduler, metric="score", mode="max")
    for _ in range(3):
        sim.add_trial({})  # bracket s=0
    best, second, third, fourth, last = [sim.add_trial({}) for _ in range(5)]  # s=1: milestone 3, keeps 2
    for trial, score in ((best, 5.0), (second, 4.0), (third, 3.0), (fourth, 2.0)):
        assert sim.feed(trial, 3, score) == PAUSE
    path = str(tmp_path / "hb.pkl")
    scheduler.save(path)
    sim.scheduler = make(max_t=9, reduction_factor=3)
    sim.scheduler.restore(path)
    for trial in (best, second, third, fourth):
        trial.set_status("PAUSED")
    best.set_status("PENDING")
    best.last_result = {}
    for trial in sim.trials:
        sim.scheduler.on_trial_add(sim, trial)
    assert sim.feed(last, 3, 1.0) == PAUSE  # the bracket waits for the restarted trial
    assert sim.stop_calls == []
    assert sim.feed(best, 1, 0.5) == CONTINUE
    assert sim.feed(best, 3, 0.5) == STOP  # ranked on its new run: worst of the five
    assert sim.stop_calls == [last.trial_id, fourth.trial_id]  # worst first


def test_time_attr_other_than_iterations_decides_where_it_reaches_the_milestones_and_must_be_reported():
    scheduler = make(time_attr="time_total_s", max_t=9, reduction_factor=3)
    sim = SimulatedRunner(scheduler, metric="score", mode="max")
    trial = sim.add_trial({})
    # Its bracket's one milestone is max_t (the same trial's at() with training_iteration).
    assert scheduler.decision_points(trial) == DecisionPoints.reaching("time_total_s", [9], needs=["score"])
    sim.start(trial)
    with pytest.raises(ValueError, match="without 'steps'"):
        make(time_attr="steps").on_trial_result(sim, trial, {"score": 1.0})


def test_debug_string_and_metric_requirement():
    scheduler = make(max_t=9, reduction_factor=3)
    sim = SimulatedRunner(scheduler, metric="score", mode="max")
    for _ in range(4):
        sim.add_trial({})
    text = scheduler.debug_string()
    assert "\n" not in text and "total_brackets=2" in text and "s=1 n=5/5 milestone=3 live=1" in text
    with pytest.raises(ValueError, match="set metric and mode in TuneConfig"):
        SimulatedRunner(HyperBandScheduler(), metric=None).add_trial({})


@pytest.mark.parametrize("kwargs,error,words", [
    (dict(max_t=0), ValueError, "max_t"),
    (dict(max_t=None), TypeError, "max_t"),
    (dict(reduction_factor=1), ValueError, "reduction_factor"),
    (dict(mode="best"), ValueError, "mode"),
    (dict(time_attr=None), TypeError, "time_attr"),
    (dict(stop_last_trials=1), TypeError, "stop_last_trials"),
])
def test_bad_arguments_are_clear_errors(kwargs, error, words):
    with pytest.raises(error) as info:
        HyperBandScheduler(**kwargs)
    assert words in str(info.value) and "HyperBandScheduler" in str(info.value)


def test_state_counts_the_brackets_over_all_bands():
    scheduler = make(max_t=9, reduction_factor=3)
    sim = SimulatedRunner(scheduler, metric="score", mode="max")
    for _ in range(10):
        sim.add_trial({})
    # The counts Ray Tune 2.60's HyperBandScheduler.state() gives for the same additions.
    assert scheduler.state() == {"num_brackets": 3, "num_stopped": 0}
    for _ in range(8):
        sim.add_trial({})
    assert scheduler.state() == {"num_brackets": 4, "num_stopped": 0}
