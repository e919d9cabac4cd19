"""MedianStoppingRule: hand-computed medians of running averages, yielding without
samples, soft stops, restarts, persistence, a plain reference implementation and errors."""
import random

import numpy as np
import pytest

from fasttune.schedulers import DecisionPoints, MedianStoppingRule, TrialScheduler

from simulated_runner import SimulatedRunner

CONTINUE, PAUSE, STOP = TrialScheduler.CONTINUE, TrialScheduler.PAUSE, TrialScheduler.STOP

HISTORIES = {  # values at training_iteration 1, 2, ...
    "A": [10, 4, 6, 8],
    "B": [0, 2, 4, 4],
    "C": [9, 8, 8, 9],
    "E": [1, 1],
}


def rule(**kwargs):
    kwargs.setdefault("time_attr", "training_iteration")
    kwargs.setdefault("metric", "score")
    kwargs.setdefault("mode", "max")
    return MedianStoppingRule(**kwargs)


def play(sim, name, values, sign=1.0):
    """A whole trial, alone (nobody waits while it runs), then completed."""
    trial = sim.add_trial({"name": name})
    decisions = [sim.feed(trial, it, sign * v) for it, v in enumerate(values, start=1)]
    sim.complete(trial)
    return decisions


def with_history(scheduler, names="ABCE", sign=1.0):
    sim = SimulatedRunner(scheduler, metric="score", mode=scheduler.mode)
    for name in names:
        play(sim, name, HISTORIES[name], sign)
    return sim


@pytest.mark.parametrize("mode,sign", [("max", 1.0), ("min", -1.0)])
def test_median_of_running_averages_by_hand(mode, sign):
    # grace 2: running averages use results from iteration 2 on.
    sim = SimulatedRunner(rule(mode=mode, grace_period=2, min_samples_required=2), metric="score", mode=mode)
    assert play(sim, "A", HISTORIES["A"], sign) == [CONTINUE] * 4  # no samples, nobody waiting
    assert play(sim, "B", HISTORIES["B"], sign) == [CONTINUE] * 4  # one sample only
    assert play(sim, "C", HISTORIES["C"], sign) == [CONTINUE] * 4  # at 2: median(4, 2) = 3 < 9
    assert play(sim, "E", HISTORIES["E"], sign) == [CONTINUE, STOP]  # at 2: median(4, 2, 8) = 4 > 1
    d = sim.add_trial({"name": "D"})
    assert sim.feed(d, 1, sign * 4.5) == CONTINUE  # within the grace period
    # At 2: A 4, B 2, C 8, E 1 (E reached 2): median 3 < best 4.5.
    assert sim.feed(d, 2, sign * 4.0) == CONTINUE
    # At 3: E never reached 3; A (4+6)/2 = 5, B (2+4)/2 = 3, C 8: median 5 > best 4.9.
    assert sim.feed(d, 3, sign * 4.9) == STOP


def test_a_best_equal_to_the_median_goes_on():
    sim = with_history(rule(grace_period=2, min_samples_required=2))
    d = sim.add_trial({})
    assert sim.feed(d, 1, 0.0) == CONTINUE
    assert sim.feed(d, 2, 3.0) == CONTINUE  # median(4, 2, 8, 1) = 3 == best 3
    assert sim.feed(d, 3, 5.0) == CONTINUE  # median(5, 3, 8) = 5 == best 5
    assert sim.feed(d, 4, 0.0) == STOP  # median(6, 10/3, 25/3) = 6 > best 5


def test_soft_stop_pauses_once_then_the_trial_runs_unjudged():
    scheduler = rule(grace_period=2, min_samples_required=2, hard_stop=False)
    sim = with_history(scheduler, "ABC")
    d = sim.add_trial({})
    sim.feed(d, 1, 0.0)
    assert sim.feed(d, 2, 0.0) == PAUSE  # median(4, 2, 8) = 4 > 0
    assert scheduler.num_stopped == 1
    d.set_status("PAUSED")
    assert sim.feed(d, 3, -50.0) == CONTINUE  # resumed: runs on without judgement
    assert sim.feed(d, 4, -50.0) == CONTINUE
    assert scheduler.debug_string() == "Using MedianStoppingRule: num_stopped=1."


def test_without_enough_samples_a_trial_yields_to_waiting_trials_once_per_time_slice():
    sim = SimulatedRunner(rule(grace_period=1, min_samples_required=3, min_time_slice=2), metric="score", mode="max")
    a = sim.add_trial({})
    assert sim.feed(a, 1, 1.0) == CONTINUE  # nobody is waiting
    b = sim.add_trial({})  # PENDING: waiting to run
    assert sim.feed(a, 2, 1.0) == PAUSE
    a.set_status("PAUSED")
    sim.start(a)
    assert sim.feed(a, 3, 1.0) == CONTINUE  # 3 - 2 = 1 <= min_time_slice
    assert sim.feed(a, 4, 1.0) == CONTINUE  # 2 <= 2
    assert sim.feed(a, 5, 1.0) == PAUSE  # 3 > 2, and b still waits
    sim.start(b)
    assert sim.feed(a, 8, 1.0) == CONTINUE  # nobody waits now


def test_a_restart_replaces_the_results_after_its_checkpoint():
    sim = SimulatedRunner(rule(grace_period=1, min_samples_required=1), metric="score", mode="max")
    a = sim.add_trial({})
    for it in range(1, 6):
        sim.feed(a, it, 1.0)
    sim.feed(a, 3, 10.0)  # restarted from its checkpoint at 2: its results 3..5 are replaced
    b = sim.add_trial({})
    assert sim.feed(b, 1, 3.9) == CONTINUE  # a's mean over 1..1 is 1
    assert sim.feed(b, 2, 3.9) == CONTINUE  # over 1..2: 1
    assert sim.feed(b, 3, 3.9) == STOP  # over 1..3: (1 + 1 + 10) / 3 = 4 > 3.9
    c = sim.add_trial({})
    assert sim.feed(c, 4, 0.5) == CONTINUE  # nobody reached 4 any more: no samples


def test_the_final_result_counts_once():
    sim = SimulatedRunner(rule(grace_period=1, min_samples_required=1), metric="score", mode="max")
    play(sim, "A", [0, 0, 6])  # completion repeats its last result: not counted again
    b = sim.add_trial({})
    sim.feed(b, 1, 2.5)
    sim.feed(b, 2, 2.5)
    assert sim.feed(b, 3, 2.5) == CONTINUE  # a's mean (0 + 0 + 6) / 3 = 2 (not 3)
    # A final result the scheduler had not seen is counted: c reaches 2 that way.
    c = sim.add_trial({})
    assert sim.feed(c, 1, 10.0) == CONTINUE
    c.last_result = sim.result(c, 2, 100.0)
    sim.complete(c)
    d = sim.add_trial({})
    # At 2: a 0, b 2.5, c (10 + 100) / 2 = 55 -> median 2.5 > 2 (without c: 1.25 < 2).
    assert sim.feed(d, 2, 2.0) == STOP


class ReferenceMedian(MedianStoppingRule):
    """The rule's verdicts stated plainly (O(trials x results) per decision), with
    fasttune's documented choices: NaN or empty averages are no samples, a final result
    counts once.  Which trial runs next is MedianStoppingRule's own choice."""

    def __init__(self, time_attr, metric, mode, grace_period, min_samples_required, min_time_slice, hard_stop):
        super().__init__(metric=metric, mode=mode)
        self.time_attr, self._metric, self._mode = time_attr, metric, mode
        self.grace, self.min_samples = grace_period, min_samples_required
        self.slice, self.hard = min_time_slice, hard_stop
        self.results, self.best, self.stopped, self.last_pause = {}, {}, set(), {}

    def _record(self, trial_id, t, v):
        history = self.results.setdefault(trial_id, [])
        if history and t < history[-1][0]:
            history[:] = [(tt, vv) for tt, vv in history if tt < t]
        history.append((t, v))
        oriented = v if self._mode == "max" else -v
        if oriented == oriented and not oriented <= self.best.get(trial_id, float("-inf")):
            self.best[trial_id] = oriented

    def on_trial_result(self, controller, trial, result):
        t, v = result.get(self.time_attr), result.get(self._metric)
        if t is None or v is None or trial.trial_id in self.stopped:
            return CONTINUE
        self._record(trial.trial_id, t, v)
        if t < self.grace:
            return CONTINUE
        means = []
        for other, history in self.results.items():
            if other == trial.trial_id or history[-1][0] < t:
                continue
            total, k = 0.0, 0
            for tt, vv in history:
                if self.grace <= tt <= t:
                    total, k = vv + total, k + 1
            if k and total / k == total / k:
                means.append(total / k)
        if len(means) < self.min_samples:
            waiting = any(x.status in ("PENDING", "PAUSED") for x in controller.get_trials())
            if t - self.last_pause.get(trial.trial_id, float("-inf")) > self.slice and waiting:
                self.last_pause[trial.trial_id] = t
                return PAUSE
            return CONTINUE
        median = float(np.median(means)) * (1 if self._mode == "max" else -1)
        if median > self.best.get(trial.trial_id, float("-inf")):
            self.stopped.add(trial.trial_id)
            return STOP if self.hard else PAUSE
        return CONTINUE

    def on_trial_complete(self, controller, trial, result):
        t, v = result.get(self.time_attr), result.get(self._metric)
        history = self.results.get(trial.trial_id)
        if t is None or v is None or trial.trial_id in self.stopped or (history and t <= history[-1][0]):
            return
        self._record(trial.trial_id, t, v)


def _noise(seed, it):
    return random.Random(seed * 100003 + it).gauss(0.0, 1.0)


@pytest.mark.parametrize("time_attr,grace", [("training_iteration", 3), ("time_total_s", 2.5)])
@pytest.mark.parametrize("mode,hard_stop,min_time_slice", [("max", True, 0), ("min", False, 1.5)])
def test_decisions_equal_a_plain_reference_implementation(time_attr, grace, mode, hard_stop, min_time_slice):
    kwargs = dict(time_attr=time_attr, metric="score", mode=mode, grace_period=grace,
                  min_samples_required=3, min_time_slice=min_time_slice, hard_stop=hard_stop)
    configs = [{"seed": s, "q": (s * 13 % 17) / 17} for s in range(80)]  # > 64 trials: the store grows

    def sweep(scheduler):
        return SimulatedRunner(
            scheduler, curve=lambda c, it: c["q"] * it + _noise(c["seed"], it), configs=configs,
            metric="score", mode=mode, max_concurrent=3, max_iterations=40,
            dt=lambda c: 0.1 + (c["seed"] % 7) * 0.37).run()

    fast = sweep(MedianStoppingRule(**kwargs))
    reference = sweep(ReferenceMedian(**kwargs))
    assert fast.decisions == reference.decisions
    kinds = {d for _, _, d in fast.decisions}
    assert (STOP in kinds) == hard_stop and PAUSE in kinds
    assert fast.final_iterations() == reference.final_iterations()


def test_save_and_restore_continue_with_identical_decisions(tmp_path):
    kwargs = dict(time_attr="time_total_s", metric="score", mode="max", grace_period=2.0, min_samples_required=2)
    configs = [{"seed": s, "q": (s * 7 % 11) / 11} for s in range(30)]
    path = str(tmp_path / "median.pkl")

    def sweep(swap_at=None):
        sim = SimulatedRunner(MedianStoppingRule(**kwargs), curve=lambda c, it: c["q"] * it + _noise(c["seed"], it),
                              configs=configs, metric="score", mode="max", max_concurrent=4, max_iterations=25,
                              dt=lambda c: 0.5 + (c["seed"] % 3) * 0.25)
        while not sim.finished():
            sim.tick()
            if sim.ticks == swap_at:
                sim.scheduler.save(path)
                sim.scheduler = MedianStoppingRule(metric="score", mode="max")
                sim.scheduler.restore(path)
        return sim

    reference = sweep()
    assert sweep(swap_at=20).decisions == reference.decisions
    assert any(d == STOP for _, _, d in reference.decisions)


def test_decision_points_metric_requirement_and_numbers():
    scheduler = rule()
    sim = SimulatedRunner(scheduler, metric="score", mode="max")
    trial = sim.add_trial({})
    assert scheduler.decision_points(trial) == DecisionPoints.every_result()
    assert sim.feed(trial, 1, None) == CONTINUE  # no metric: not judged
    with pytest.raises(TypeError, match="'score'.*number"):
        sim.feed(trial, 2, "bad")
    with pytest.raises(ValueError, match="set metric and mode in TuneConfig"):
        SimulatedRunner(MedianStoppingRule(), metric=None).add_trial({})


@pytest.mark.parametrize("kwargs,error,words", [
    (dict(grace_period=-1), ValueError, "grace_period"),
    (dict(grace_period="60"), TypeError, "grace_period"),
    (dict(min_samples_required=0), ValueError, "min_samples_required"),
    (dict(min_samples_required=2.5), TypeError, "min_samples_required"),
    (dict(min_time_slice=-1), ValueError, "min_time_slice"),
    (dict(hard_stop="no"), TypeError, "hard_stop"),
    (dict(mode="up"), ValueError, "mode"),
])
def test_bad_arguments_are_clear_errors(kwargs, error, words):
    with pytest.raises(error) as info:
        MedianStoppingRule(**kwargs)
    assert words in str(info.value) and "MedianStoppingRule" in str(info.value)


def test_a_trial_still_being_suggested_in_the_background_is_no_decline():
    """With a PAUSED trial and a new one being suggested on a background thread, the rule
    waits for the new trial instead of taking the unanswered request for a decline and
    resuming the paused one (which would make the order depend on how long suggest takes)."""
    import threading

    sim = SimulatedRunner(MedianStoppingRule(metric="score", mode="max", grace_period=1), configs=[{"next": 1}],
                          metric="score", mode="max")  # the searcher is not finished
    trial = sim.add_trial({})
    sim.start(trial)
    sim.pause_trial(trial)
    sim.search_alg.pending_suggestion = threading.Event()  # a suggest is running
    assert sim.scheduler.choose_trial_to_run(sim) is None  # asks for a new trial
    assert sim.scheduler.choose_trial_to_run(sim) is None  # still being made: not a decline
    sim.search_alg.pending_suggestion = None  # the searcher answered "nothing": the paused one resumes
    assert sim.scheduler.choose_trial_to_run(sim) is trial
