"""HyperBandForBOHB driven by the simulated runner: brackets largest first, every result at a
milestone tagged with its budget (and ``paused`` when the trial pauses), trials at the last
milestone paused until the bracket is there, persistence and the registry."""
import pytest

from fasttune.schedulers import HyperBandForBOHB, HyperBandScheduler, TrialScheduler, create_scheduler

from simulated_runner import SimulatedRunner

CONTINUE, PAUSE, STOP = TrialScheduler.CONTINUE, TrialScheduler.PAUSE, TrialScheduler.STOP
QUALITY = [(i * 7) % 17 for i in range(17)]  # a permutation of 0..16


class Recording(HyperBandForBOHB):
    """Keeps each result's ``hyperband_info`` and the decision taken on it."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.tags = []  # (trial id, iteration, hyperband_info, decision)

    def on_trial_result(self, tune_controller, trial, result):
        decision = super().on_trial_result(tune_controller, trial, result)
        self.tags.append((trial.trial_id, result["training_iteration"], dict(result["hyperband_info"]), decision))
        return decision


def make(cls=HyperBandForBOHB, **kwargs):
    kwargs.setdefault("metric", "score")
    kwargs.setdefault("mode", "max")
    return cls(**kwargs)


def sweep(scheduler, n=17, workers=20):
    sim = SimulatedRunner(scheduler, curve=lambda config, it: QUALITY[config["i"]],
                          configs=[{"i": i} for i in range(n)], metric="score", mode="max",
                          max_concurrent=workers)
    return sim


def test_a_band_fills_its_brackets_largest_first():
    scheduler = make(max_t=9, reduction_factor=3)
    assert scheduler.bracket_shapes() == [(3, 9, [9]), (5, 3, [3, 9]), (9, 1, [1, 3, 9])]
    sim = SimulatedRunner(scheduler, metric="score", mode="max")
    trials = [sim.add_trial({"i": i}) for i in range(9 + 5 + 3 + 2)]
    assert [len(b) for b in scheduler.brackets()] == [9, 5, 3, 2]
    assert scheduler.bracket_of(trials[0]) == (0, 2, 1)
    assert scheduler.bracket_of(trials[8]) == (0, 2, 1)
    assert scheduler.bracket_of(trials[9]) == (0, 1, 3)
    assert scheduler.bracket_of(trials[14]) == (0, 0, 9)
    assert scheduler.bracket_of(trials[17]) == (1, 2, 1)  # the next band starts largest first too
    # HyperBandScheduler's order, for contrast: smallest bracket first.
    plain = make(HyperBandScheduler, max_t=9, reduction_factor=3)
    sim = SimulatedRunner(plain, metric="score", mode="max")
    for i in range(9):
        sim.add_trial({"i": i})
    assert [len(b) for b in plain.brackets()] == [3, 5, 1]
    # Brackets whose budget floors to 0 are skipped, as in Ray Tune: max_t=2, eta=3 has one.
    tiny = make(max_t=2, reduction_factor=3)
    sim = SimulatedRunner(tiny, metric="score", mode="max")
    for _ in range(5):
        sim.add_trial({})
    assert [len(b) for b in tiny.brackets()] == [2, 2, 1]
    assert tiny.state() == {"num_brackets": 3, "num_stopped": 0}


def test_one_band_halves_each_bracket_and_tags_every_milestone_result():
    scheduler = make(Recording, max_t=9, reduction_factor=3)
    sim = sweep(scheduler).run()
    assert sim.violations == []
    by_config = sim.final_iterations("i")
    # Bracket s=2 (i = 0..8, budget 1): the best 3 go on to 3, the best of those to 9.
    # QUALITY[0..8] = 0, 7, 14, 4, 11, 1, 8, 15, 5: best three i=7, 2, 4; best i=7.
    assert {i: by_config[i] for i in range(9)} == {0: 1, 1: 1, 2: 3, 3: 1, 4: 3, 5: 1, 6: 1, 7: 9, 8: 1}
    # Bracket s=1 (i = 9..13, budget 3; QUALITY 12, 2, 9, 16, 6): the best 2, i=9 and 12, go on to 9.
    assert {i: by_config[i] for i in range(9, 14)} == {9: 9, 10: 3, 11: 3, 12: 9, 13: 3}
    # Bracket s=0 (i = 14..16, budget 9): all three run to 9.
    assert {i: by_config[i] for i in range(14, 17)} == {14: 9, 15: 9, 16: 9}
    assert set(sim.statuses().values()) == {"TERMINATED"}
    assert scheduler.state() == {"num_brackets": 3, "num_stopped": 6 + 2 + 3}

    milestones = {**{f"t{i:04d}": [1, 3, 9] for i in range(9)}, **{f"t{i:04d}": [3, 9] for i in range(9, 14)},
                  **{f"t{i:04d}": [9] for i in range(14, 17)}}
    for trial_id, iteration, info, decision in scheduler.tags:
        if iteration in milestones[trial_id]:
            assert info.get("budget") == iteration, (trial_id, iteration, info)
        else:
            assert "budget" not in info and decision == CONTINUE
        assert info.get("paused", False) == (decision == PAUSE)
    # Results at the largest budget reach the searcher: every trial but the one completing
    # its bracket pauses at 9 first (HyperBandScheduler would stop each at once).
    at_max = [(t, d) for t, it, info, d in scheduler.tags if it == 9]
    assert at_max == [("t0007", STOP), ("t0009", PAUSE), ("t0012", STOP),
                      ("t0014", PAUSE), ("t0015", PAUSE), ("t0016", STOP)]


def test_a_last_milestone_trial_waits_only_for_its_live_bracket_mates():
    scheduler = make(Recording, max_t=9, reduction_factor=3)
    sim = SimulatedRunner(scheduler, metric="score", mode="max")
    trials = [sim.add_trial({"i": i}) for i in range(17)]
    a, b, c = trials[14:]  # bracket s=0: its only milestone is the last one
    assert sim.feed(a, 9, 1.0) == PAUSE
    sim.pause_trial(a)
    assert sim.feed(b, 9, 2.0) == PAUSE
    sim.pause_trial(b)
    sim.complete(c)  # c ends early: a and b were waiting for it only
    assert (a.status, b.status) == ("TERMINATED", "TERMINATED")
    # stop_last_trials=False: the last bracket never stops them and tags nothing at 9.
    free = make(Recording, max_t=9, reduction_factor=3, stop_last_trials=False)
    sim = SimulatedRunner(free, metric="score", mode="max")
    trials = [sim.add_trial({"i": i}) for i in range(17)]
    assert sim.feed(trials[14], 9, 1.0) == CONTINUE
    assert sim.feed(trials[14], 10, 1.0) == CONTINUE
    assert [info for _, _, info, _ in free.tags] == [{}, {}]


def test_save_restore_mid_sweep_continues_the_same_way(tmp_path):
    expected = sweep(make(max_t=9, reduction_factor=3)).run().final_iterations("i")
    scheduler = make(max_t=9, reduction_factor=3)
    sim = sweep(scheduler)
    for _ in range(3):
        sim.tick()
    path = str(tmp_path / "bohb.pkl")
    scheduler.save(path)
    restored = make(max_t=9, reduction_factor=3)
    restored.restore(path)
    sim.scheduler = restored
    assert sim.run().final_iterations("i") == expected
    with pytest.raises(ValueError, match="HyperBandForBOHB"):
        make(HyperBandScheduler).restore(path)


def test_metric_and_mode_are_required_and_the_registry_names_it():
    sim = SimulatedRunner(HyperBandForBOHB(), metric="score")
    with pytest.raises(ValueError, match="HyperBandForBOHB.*metric"):
        sim.add_trial({})
    scheduler = create_scheduler("hb_bohb", metric="loss", mode="min", max_t=27)
    assert type(scheduler) is HyperBandForBOHB and isinstance(scheduler, HyperBandScheduler)
    assert (scheduler.metric, scheduler.mode) == ("loss", "min")
    assert scheduler.debug_string().startswith("Using HyperBandForBOHB:")


def test_a_trial_being_suggested_in_the_background_is_no_decline():
    # A Searcher suggests on a background thread: the runner's first poll answers None while
    # the trial is being made.  HyperBand must not take that for a decline (and halve a
    # bracket that is still filling): test_bohb_search's sweep on Ray fills its brackets so.
    import threading

    from fasttune.schedulers._common import TrialRequests, anything_runs

    sim = SimulatedRunner(make(), metric="score", mode="max")
    requests = TrialRequests()
    requests.ask()
    sim.search_alg.pending_suggestion = threading.Event()
    requests.observe(sim)
    assert not requests.declined and anything_runs(sim)
    sim.search_alg.pending_suggestion = None
    requests.observe(sim)
    assert requests.declined and not anything_runs(sim)
