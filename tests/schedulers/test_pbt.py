"""PopulationBasedTraining and PopulationBasedTrainingReplay, driven by a fake runner.

The fake runner holds a real TrialTable (as TrialRunner does) and records the
``reset_trial`` calls through which PBT's exploits reach the engine.
"""
import json
import logging
import random

import numpy as np
import pytest

import fasttune as tune
from fasttune import _corelib as core
from fasttune.checkpoint import Checkpoint
from fasttune.error import TuneError
from fasttune.experiment.trial import Trial
from fasttune.schedulers._pbt_explore import explore
from fasttune.schedulers._pbt_replay import load_policy
from fasttune.schedulers.pbt import PopulationBasedTraining, PopulationBasedTrainingReplay
from fasttune.schedulers.trial_scheduler import DecisionPoints, TrialScheduler
from fasttune_testing import seeded_generators

CONTINUE, PAUSE = TrialScheduler.CONTINUE, TrialScheduler.PAUSE


class Reset:
    def __init__(self, trial, config, tag, checkpoint, checkpoint_result):
        self.trial, self.config, self.tag = trial, config, tag
        self.checkpoint, self.checkpoint_result = checkpoint, checkpoint_result
        self.iteration = trial.iteration  # when the reset was asked for


class FakeRunner:
    """The runner as schedulers see it (TuneControllerView), plus a record of reset_trial calls."""

    def __init__(self, experiment_path=None):
        self.table = core.TrialTable(None)
        self.trials = []
        self.experiment_path = experiment_path
        self.resets = []
        self._slot_of = {}
        self.metric = None

    def add(self, scheduler, config=None, status=Trial.RUNNING, **kwargs):
        trial = Trial("train", config=dict(config or {}), experiment_path=self.experiment_path, **kwargs)
        trial._attach(self.table, self.table.add())
        self.trials.append(trial)
        scheduler.on_trial_add(self, trial)
        if status != Trial.PENDING:
            trial.set_status(status)
        return trial

    is_stopping = False
    search_alg = None  # PBT never asks the search algorithm for trials

    def is_trial_held(self, trial):
        return trial.trial_id in self._slot_of

    def get_trials(self):
        return self.trials

    def get_trial(self, trial_id):
        return next((t for t in self.trials if t.trial_id == trial_id), None)

    def stop_trial(self, trial):
        trial.set_status(Trial.TERMINATED)

    def pause_trial(self, trial):
        trial.set_status(Trial.PAUSED)

    def get_live_trials(self):
        return [t for t in self.trials if not t.is_finished()]

    def first_trial_with_status(self, status):
        for trial in self.trials:
            if trial.status == status and trial.trial_id not in self._slot_of:
                return trial
        return None

    def reset_trial(self, trial, new_config, new_experiment_tag, checkpoint=None, checkpoint_result=None):
        self.resets.append(Reset(trial, new_config, new_experiment_tag, checkpoint, checkpoint_result))
        trial.config = new_config
        trial.experiment_tag = new_experiment_tag


def report(scheduler, runner, trial, iteration, score, **extra):
    result = {"training_iteration": iteration, "score": score, **extra}
    runner.table.set_iteration(trial._row, iteration)
    trial.last_result = result
    return scheduler.on_trial_result(runner, trial, result)


def checkpoint(trial, tmp_path, iteration, score, **extra):
    path = tmp_path / f"ckpt_{trial.trial_id}_{iteration}"
    path.mkdir(exist_ok=True)
    ckpt = Checkpoint(str(path))
    trial.checkpoint_results.append((ckpt, {"training_iteration": iteration, "score": score, **extra}))
    trial.checkpoints = [c for c, _ in trial.checkpoint_results]
    return ckpt


def make_pbt(**kwargs):
    defaults = dict(
        time_attr="training_iteration",
        metric="score",
        mode="max",
        perturbation_interval=2,
        hyperparam_mutations={"lr": tune.uniform(0.0, 1.0)},
        quantile_fraction=0.25,
        log_config=False,
    )
    defaults.update(kwargs)
    return PopulationBasedTraining(**defaults)


# ---------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(quantile_fraction=0.6), ValueError, "quantile_fraction"),
        (dict(quantile_fraction=-0.1), ValueError, "quantile_fraction"),
        (dict(perturbation_interval=0), ValueError, "perturbation_interval"),
        (dict(perturbation_interval=-3.0), ValueError, "perturbation_interval"),
        (dict(burn_in_period=-1), ValueError, "burn_in_period"),
        (dict(mode="maximize"), ValueError, "'min' or 'max'"),
        (dict(resample_probability=1.5), ValueError, "resample_probability"),
        (dict(perturbation_factors=()), TypeError, "perturbation_factors"),
        (dict(perturbation_factors="ab"), TypeError, "perturbation_factors"),
        (dict(custom_explore_fn=3), TypeError, "custom_explore_fn"),
        (dict(time_attr=""), TypeError, "time_attr"),
        (dict(hyperparam_mutations={"lr": 3}), TypeError, "hyperparam_mutations['lr']"),
        (dict(hyperparam_mutations={"lr": []}), ValueError, "empty list"),
        (dict(hyperparam_mutations={"opt": {}}), ValueError, "empty dict"),
        (dict(hyperparam_mutations={"opt": {"lr": "x"}}), TypeError, "['lr']"),
        (dict(hyperparam_mutations={"lr": tune.sample_from(lambda spec: 1)}), ValueError, "sample_from"),
        (dict(hyperparam_mutations=[1, 2]), TypeError, "dict"),
        (dict(hyperparam_mutations=None), ValueError, "custom_explore_fn"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, error, words):
    with pytest.raises(error, match=None) as info:
        make_pbt(**kwargs)
    assert words in str(info.value)


def test_metric_and_mode_are_required_when_a_trial_is_added():
    pbt = make_pbt(metric=None, mode=None)
    with pytest.raises(ValueError, match="TuneConfig"):
        FakeRunner().add(pbt, {"lr": 0.1})
    assert pbt.set_search_properties("score", "min")
    assert (pbt.metric, pbt.mode) == ("score", "min")
    FakeRunner().add(pbt, {"lr": 0.1})  # now fine


def test_set_search_properties_refuses_a_different_metric():
    pbt = make_pbt()
    assert not pbt.set_search_properties("other", None)
    with pytest.raises(ValueError, match="mode"):
        pbt.set_search_properties(None, "up")


# ---------------------------------------------------------------------------------------
# Quantiles
# ---------------------------------------------------------------------------------------
def population(pbt, runner, scores, iteration=2):
    trials = [runner.add(pbt, {"lr": 0.5}) for _ in scores]
    for trial, score in zip(trials, scores):
        idx = pbt._index[trial.trial_id]
        pbt._score[idx] = score * pbt._metric_op
        pbt._train_time[idx] = iteration
    return trials


def ids(pbt, indices):
    return [pbt._trials[i].trial_id for i in indices]


def test_quantiles_of_a_hand_computed_population():
    pbt, runner = make_pbt(), FakeRunner()
    trials = population(pbt, runner, [5, 1, 7, 3, 8, 2, 6, 4])
    lower, upper = pbt._quantiles(runner)
    # ceil(8 * 0.25) = 2 per quantile, each listed by ascending score.
    assert ids(pbt, lower) == [trials[1].trial_id, trials[5].trial_id]
    assert ids(pbt, upper) == [trials[2].trial_id, trials[4].trial_id]


def test_quantiles_follow_mode_min():
    pbt, runner = make_pbt(mode="min"), FakeRunner()
    trials = population(pbt, runner, [5, 1, 7, 3, 8, 2, 6, 4])
    lower, upper = pbt._quantiles(runner)
    assert ids(pbt, lower) == [trials[4].trial_id, trials[2].trial_id]  # 8, 7: the worst
    assert ids(pbt, upper) == [trials[5].trial_id, trials[1].trial_id]  # 2, 1: the best


def test_quantile_size_is_capped_at_half_and_ties_are_stable():
    pbt, runner = make_pbt(quantile_fraction=0.5), FakeRunner()
    trials = population(pbt, runner, [1, 1, 1, 1, 1])
    lower, upper = pbt._quantiles(runner)
    # ceil(5 * 0.5) = 3 > 5 / 2, so 2; equal scores keep the order trials were added.
    assert ids(pbt, lower) == [trials[0].trial_id, trials[1].trial_id]
    assert ids(pbt, upper) == [trials[3].trial_id, trials[4].trial_id]


def test_quantiles_skip_finished_trials_and_trials_without_a_score():
    pbt, runner = make_pbt(quantile_fraction=0.5), FakeRunner()
    trials = population(pbt, runner, [1, 2, 3, 4, 5, 6])
    trials[0].set_status(Trial.TERMINATED)
    trials[5].set_status(Trial.ERROR)
    pbt._score[pbt._index[trials[1].trial_id]] = np.nan  # never reached a perturbation point
    lower, upper = pbt._quantiles(runner)
    assert ids(pbt, lower) == [trials[2].trial_id]
    assert ids(pbt, upper) == [trials[4].trial_id]


@pytest.mark.parametrize("scores", [[], [3.0]])
def test_no_quantiles_below_two_trials(scores):
    pbt, runner = make_pbt(quantile_fraction=0.5), FakeRunner()
    population(pbt, runner, scores)
    lower, upper = pbt._quantiles(runner)
    assert len(lower) == len(upper) == 0


def test_quantile_fraction_zero_never_exploits(tmp_path):
    pbt, runner = make_pbt(quantile_fraction=0.0), FakeRunner()
    trials = [runner.add(pbt, {"lr": 0.5}) for _ in range(4)]
    checkpoint(trials[3], tmp_path, 2, 40)
    for trial, score in zip(trials, [40, 30, 20, 10]):
        assert report(pbt, runner, trial, 2, score) == CONTINUE
    assert runner.resets == []


def test_quantiles_of_a_population_of_5000_match_a_sort():
    rng = np.random.RandomState(0)
    scores = rng.randint(0, 500, size=5000).astype(float)  # many ties
    pbt, runner = make_pbt(quantile_fraction=0.25), FakeRunner()
    population(pbt, runner, scores)
    lower, upper = pbt._quantiles(runner)
    order = sorted(range(5000), key=lambda i: scores[i])  # stable, like Ray Tune
    assert list(lower) == order[:1250]
    assert list(upper) == order[-1250:]


@pytest.mark.parametrize("size", [200, 256, 257, 300])  # both sides of the small-population path
def test_quantiles_near_the_small_population_threshold_match_a_sort(size):
    scores = np.random.RandomState(size).randint(0, 20, size=size).astype(float)
    pbt, runner = make_pbt(quantile_fraction=0.25), FakeRunner()
    population(pbt, runner, scores)
    lower, upper = pbt._quantiles(runner)
    order = sorted(range(size), key=lambda i: scores[i])
    k = -(-size // 4)
    assert list(lower) == order[:k] and list(upper) == order[-k:]


def test_population_of_5000_exploits_bottom_quarter(tmp_path):
    pbt, runner = make_pbt(quantile_fraction=0.25), FakeRunner()
    trials = [runner.add(pbt, {"lr": 0.5}) for _ in range(5000)]
    shared = tmp_path / "shared"
    shared.mkdir()
    for i, trial in enumerate(trials):  # everybody has a checkpoint
        ckpt = Checkpoint(str(shared))
        trial.checkpoint_results.append((ckpt, {"training_iteration": 2, "score": float(i)}))
        trial.checkpoints = [ckpt]
    for i, trial in enumerate(trials):  # each arrival is the best so far: nobody exploits
        assert report(pbt, runner, trial, 2, float(i)) == CONTINUE
    assert runner.resets == []
    for i, trial in enumerate(trials):  # the same scores again: the bottom quarter exploits
        report(pbt, runner, trial, 4, float(i))
    assert [r.trial for r in runner.resets] == trials[:1250]
    assert min(r.checkpoint_result["score"] for r in runner.resets) >= 3750


# ---------------------------------------------------------------------------------------
# Exploit
# ---------------------------------------------------------------------------------------
def four_trials(pbt, runner, tmp_path, scores=(10, 20, 30, 40)):
    trials = [runner.add(pbt, {"lr": 0.1 * (i + 1), "fixed": "x"}) for i in range(4)]
    for trial, score in zip(trials, scores):
        assert report(pbt, runner, trial, 1, score) == CONTINUE
        checkpoint(trial, tmp_path, 2, score)
        assert report(pbt, runner, trial, 2, score) == CONTINUE
    return trials


def test_lower_quantile_trial_clones_an_upper_quantile_trial(tmp_path):
    random.seed(0)
    pbt, runner = make_pbt(resample_probability=0.0), FakeRunner()
    trials = four_trials(pbt, runner, tmp_path)
    assert runner.resets == []  # trial 0 reported first, before anyone else had a score
    report(pbt, runner, trials[0], 3, 11)
    assert runner.resets == []  # not a perturbation point
    assert report(pbt, runner, trials[0], 4, 11) == CONTINUE
    (reset,) = runner.resets
    assert reset.trial is trials[0]
    assert reset.checkpoint is trials[3].checkpoint
    assert reset.checkpoint_result == {"training_iteration": 2, "score": 40}
    assert reset.config["fixed"] == "x"
    assert reset.config["lr"] in (pytest.approx(0.4 * 1.2), pytest.approx(0.4 * 0.8))
    assert reset.tag.startswith("@perturbed[lr=")
    # The clone inherits the donor's perturbation clock: next perturbation at 2 + 2.
    assert pbt._perturb_time[pbt._index[trials[0].trial_id]] == 2
    assert pbt.debug_string().startswith("PopulationBasedTraining: 1 perturbs")


def test_checkpoint_result_is_the_one_saved_with_the_checkpoint(tmp_path):
    pbt, runner = make_pbt(), FakeRunner()
    trials = four_trials(pbt, runner, tmp_path)
    trials[3].last_result = {"training_iteration": 3, "score": 41}  # moved on since
    report(pbt, runner, trials[0], 4, 0)
    assert runner.resets[0].checkpoint_result["training_iteration"] == 2


def test_donor_without_checkpoint_skips_the_exploit_with_one_warning(tmp_path, caplog):
    pbt, runner = make_pbt(), FakeRunner()
    trials = [runner.add(pbt, {"lr": 0.5}) for _ in range(4)]
    with caplog.at_level(logging.WARNING, logger="fasttune.schedulers.pbt"):
        for it in (2, 4, 6):
            for trial, score in zip(trials, (1, 2, 3, 4)):
                assert report(pbt, runner, trial, it, score) == CONTINUE
    assert runner.resets == []
    warnings = [r for r in caplog.records if "no checkpoint" in r.getMessage()]
    assert len(warnings) == 1
    assert "perturbation_interval" in warnings[0].getMessage()
    assert pbt._num_skipped == 2


def test_trial_yields_at_a_perturbation_point_while_others_wait(tmp_path):
    pbt, runner = make_pbt(), FakeRunner()
    trials = [runner.add(pbt, {"lr": 0.5}) for _ in range(2)]
    waiting = runner.add(pbt, {"lr": 0.5}, status=Trial.PENDING)
    assert report(pbt, runner, trials[0], 1, 5) == CONTINUE  # not a perturbation point
    assert report(pbt, runner, trials[0], 2, 5) == PAUSE
    waiting.set_status(Trial.RUNNING)
    assert report(pbt, runner, trials[1], 2, 5) == CONTINUE


def test_exploit_without_reset_trial_names_the_missing_method(tmp_path):
    pbt, runner = make_pbt(), FakeRunner()
    trials = four_trials(pbt, runner, tmp_path)
    runner.reset_trial = None
    with pytest.raises(TuneError, match="reset_trial"):
        report(pbt, runner, trials[0], 4, 0)


def test_on_trial_add_draws_missing_hyperparameters():
    np.random.seed(0)
    random.seed(0)
    pbt = make_pbt(hyperparam_mutations={
        "lr": tune.uniform(0.0, 1.0),
        "batch": [16, 32, 64],
        "opt": {"momentum": lambda: 0.9, "decay": tune.uniform(0.0, 0.1)},
    })
    trial = FakeRunner().add(pbt, {"batch": 32, "opt": {"decay": 0.05}})
    assert 0.0 <= trial.config["lr"] <= 1.0
    assert trial.config["batch"] == 32 and trial.config["opt"] == {"decay": 0.05, "momentum": 0.9}
    assert trial.evaluated_params == {"lr": trial.config["lr"], "opt/momentum": 0.9}


# ---------------------------------------------------------------------------------------
# Explore
# ---------------------------------------------------------------------------------------
def explore_many(config, mutations, p=0.0, factors=(1.2, 0.8), seeds=range(40)):
    out = []
    for seed in seeds:
        random.seed(seed)
        np.random.seed(seed)
        out.append(explore(config, mutations, p, factors)[0])
    return out


def test_perturbation_factors_scale_floats():
    values = {c["lr"] for c in explore_many({"lr": 0.5}, {"lr": tune.uniform(0, 1)})}
    assert values == {0.5 * 1.2, 0.5 * 0.8}
    values = {c["lr"] for c in explore_many({"lr": 0.5}, {"lr": tune.uniform(0, 1)}, factors=(2.0,))}
    assert values == {1.0}


def test_perturbation_keeps_ints_ints():
    values = {c["batch"] for c in explore_many({"batch": 10}, {"batch": tune.randint(1, 100)})}
    assert values == {12, 8}
    values = [c["batch"] for c in explore_many({"batch": 3}, {"batch": lambda: 7})]
    assert set(values) == {3, 2} and all(type(v) is int for v in values)  # int(3.6), int(2.4)


def test_resample_probability_one_draws_from_the_domain():
    for seed in range(5):
        random.seed(seed)
        np.random.seed(seed)
        new, ops = explore({"lr": 0.5}, {"lr": tune.uniform(10.0, 20.0)}, 1.0, (1.2, 0.8))
        random.seed(seed)
        np.random.seed(seed)
        random.random()  # the draw that decided to resample
        expected = tune.uniform(10.0, 20.0).sample(None)
        assert new["lr"] == expected and 10.0 <= new["lr"] <= 20.0
        assert ops == {"lr": "resample"}


def test_resample_probability_one_calls_a_function_and_zero_never_does():
    assert {c["x"] for c in explore_many({"x": 1.0}, {"x": lambda: 42.0}, p=1.0)} == {42.0}
    assert 42.0 not in {c["x"] for c in explore_many({"x": 1.0}, {"x": lambda: 42.0}, p=0.0)}


def test_lists_move_to_a_neighbouring_value():
    values = [1, 2, 3, 4]
    assert {c["n"] for c in explore_many({"n": 2}, {"n": values})} == {1, 3}
    assert {c["n"] for c in explore_many({"n": 1}, {"n": values})} == {1, 2}  # left edge stays
    assert {c["n"] for c in explore_many({"n": 4}, {"n": tuple(values)})} == {3, 4}  # right edge
    with seeded_generators(0):  # 20 draws of a direction: both come up with this seed
        ops = {explore({"n": 1}, {"n": [1]}, 0.0, (1.2,))[1]["n"] for _ in range(20)}
    assert ops == {"shift left (noop)", "shift right (noop)"}


def test_lists_resample_a_value_that_is_not_in_the_list_or_with_probability_one():
    assert {c["n"] for c in explore_many({"n": 7}, {"n": [1, 2, 3]})} == {1, 2, 3}
    resampled = {c["n"] for c in explore_many({"n": 2}, {"n": [1, 2, 3, 4, 5]}, p=1.0)}
    assert resampled == {1, 2, 3, 4, 5}  # not only the neighbours


def test_nested_mutations_explore_the_nested_config():
    config = {"opt": {"lr": 0.5, "momentum": 0.9, "name": "sgd"}, "other": 1}
    mutations = {"opt": {"lr": tune.uniform(0, 1), "momentum": [0.8, 0.9, 0.99]}}
    results = explore_many(config, mutations)
    assert {c["opt"]["lr"] for c in results} == {0.6, 0.4}
    assert {c["opt"]["momentum"] for c in results} == {0.8, 0.99}
    assert all(c["opt"]["name"] == "sgd" and c["other"] == 1 for c in results)
    assert config == {"opt": {"lr": 0.5, "momentum": 0.9, "name": "sgd"}, "other": 1}  # not mutated


def test_a_string_choice_is_resampled_instead_of_scaled():
    choice = tune.choice(["relu", "tanh", "gelu"])
    values = {c["act"] for c in explore_many({"act": "relu"}, {"act": choice})}
    assert values <= {"relu", "tanh", "gelu"} and len(values) > 1
    # numeric choices are scaled, as in Ray Tune
    assert {c["w"] for c in explore_many({"w": 10}, {"w": tune.choice([1, 10, 100])})} == {12, 8}


def test_explore_is_reproducible_with_seeds():
    mutations = {"lr": tune.uniform(0, 1), "n": [1, 2, 3], "f": lambda: random.random()}
    first = explore_many({"lr": 0.5, "n": 2, "f": 0.3}, mutations, p=0.5, seeds=[7, 8, 9])
    second = explore_many({"lr": 0.5, "n": 2, "f": 0.3}, mutations, p=0.5, seeds=[7, 8, 9])
    assert first == second


def test_custom_explore_fn_runs_after_the_mutations(tmp_path):
    seen = []

    def clip(config):
        seen.append(dict(config))
        config["lr"] = min(config["lr"], 0.45)
        config["tagged"] = True
        return config

    pbt, runner = make_pbt(resample_probability=0.0, custom_explore_fn=clip), FakeRunner()
    trials = four_trials(pbt, runner, tmp_path)
    report(pbt, runner, trials[0], 4, 0)
    (reset,) = runner.resets
    assert seen[0]["lr"] in (pytest.approx(0.48), pytest.approx(0.32))  # 0.4 * factor
    assert reset.config["lr"] == min(seen[0]["lr"], 0.45) and reset.config["tagged"] is True


def test_custom_explore_fn_alone_and_one_returning_none(tmp_path):
    pbt, runner = make_pbt(hyperparam_mutations=None, custom_explore_fn=lambda c: {**c, "lr": 0.01}), FakeRunner()
    trials = four_trials(pbt, runner, tmp_path)
    report(pbt, runner, trials[0], 4, 0)
    assert runner.resets[0].config["lr"] == 0.01

    pbt, runner = make_pbt(custom_explore_fn=lambda c: None), FakeRunner()
    trials = four_trials(pbt, runner, tmp_path)
    with pytest.raises(TuneError, match="return the new config"):
        report(pbt, runner, trials[0], 4, 0)


# ---------------------------------------------------------------------------------------
# Burn-in, require_attrs, decision points
# ---------------------------------------------------------------------------------------
def test_no_perturbation_before_the_burn_in_period(tmp_path):
    pbt, runner = make_pbt(perturbation_interval=2, burn_in_period=5), FakeRunner()
    trials = [runner.add(pbt, {"lr": 0.5}) for _ in range(4)]
    for trial, score in zip(trials, (10, 20, 30, 40)):
        checkpoint(trial, tmp_path, 1, score)
    for it in range(1, 5):
        for trial, score in zip(reversed(trials), (40, 30, 20, 10)):
            report(pbt, runner, trial, it, score)
    assert runner.resets == [] and np.isnan(pbt._score[:4]).all()
    # At 5 every arrival is the worst so far, so each but the first exploits.
    for trial, score in zip(reversed(trials), (40, 30, 20, 10)):
        report(pbt, runner, trial, 5, score)
    assert [r.trial for r in runner.resets] == [trials[2], trials[1], trials[0]]


def test_require_attrs_raises_on_a_missing_metric_or_time_attr():
    pbt, runner = make_pbt(), FakeRunner()
    trial = runner.add(pbt, {"lr": 0.5})
    with pytest.raises(TuneError, match="require_attrs=False") as info:
        pbt.on_trial_result(runner, trial, {"training_iteration": 1})
    assert "'score'" in str(info.value)
    with pytest.raises(TuneError, match="training_iteration"):
        pbt.on_trial_result(runner, trial, {"score": 1.0})


def test_without_require_attrs_incomplete_results_are_ignored_with_one_warning(caplog):
    pbt, runner = make_pbt(require_attrs=False), FakeRunner()
    trial = runner.add(pbt, {"lr": 0.5})
    with caplog.at_level(logging.WARNING, logger="fasttune.schedulers.pbt"):
        for it in range(1, 4):
            assert pbt.on_trial_result(runner, trial, {"training_iteration": it}) == CONTINUE
    assert len([r for r in caplog.records if "'score'" in r.getMessage()]) == 1
    assert np.isnan(pbt._score[0])
    assert pbt.decision_points(trial) == DecisionPoints.every_result()


def test_non_numeric_metric_is_a_clear_error():
    pbt, runner = make_pbt(), FakeRunner()
    trial = runner.add(pbt, {"lr": 0.5})
    with pytest.raises(TuneError, match="must be a number"):
        pbt.on_trial_result(runner, trial, {"training_iteration": 2, "score": "high"})


class Spy(PopulationBasedTraining):
    """Records the iterations at which the perturbation rule fired."""

    def __init__(self, **kwargs):
        super().__init__(time_attr="training_iteration", metric="score", mode="max",
                         hyperparam_mutations={"lr": [1, 2]}, log_config=False, **kwargs)
        self.fired = []

    def _record(self, idx, trial, time, score):
        self.fired.append(int(time))


@pytest.mark.parametrize("interval", [1, 2, 2.5, 4, 7])
@pytest.mark.parametrize("burn_in", [0, 3, 6, 13.5])
@pytest.mark.parametrize("stop", [None, 40])
def test_decision_points_are_the_iterations_where_the_rule_fires(interval, burn_in, stop):
    pbt, runner = Spy(perturbation_interval=interval, burn_in_period=burn_in), FakeRunner()
    kwargs = {"stopping_criterion": {"training_iteration": stop}} if stop else {}
    trial = runner.add(pbt, {"lr": 1}, **kwargs)
    points = DecisionPoints(pbt.decision_points(trial).to_wire())
    for it in range(1, 41):
        report(pbt, runner, trial, it, 1.0)
    declared = [it for it in range(1, 41) if it in points]
    assert set(pbt.fired) <= set(declared) and pbt.fired
    if stop is not None:
        assert declared == pbt.fired  # exact when the horizon is known
    elif burn_in <= interval:
        assert declared == pbt.fired  # every(ceil(interval)) is exact


def test_decision_points_examples():
    pbt, runner = Spy(perturbation_interval=4, burn_in_period=6), FakeRunner()
    bounded = runner.add(pbt, {"lr": 1}, stopping_criterion={"training_iteration": 20})
    assert pbt.decision_points(bounded) == DecisionPoints.at([6, 10, 14, 18])
    # One progression: sent as four numbers, not a list as long as the run.
    assert pbt.decision_points(bounded).to_wire() == ["every", 4, 6, 18]
    unbounded = runner.add(pbt, {"lr": 1})
    assert pbt.decision_points(unbounded) == DecisionPoints.every(2)
    pbt, runner = Spy(perturbation_interval=5), FakeRunner()
    assert pbt.decision_points(runner.add(pbt, {"lr": 1})) == DecisionPoints.every(5)
    other = make_pbt(time_attr="time_total_s", burn_in_period=3)
    assert other.decision_points(FakeRunner().add(other, {"lr": 1})) == DecisionPoints.reaching_every(
        "time_total_s", 2.0, start=3.0, since=0.0, needs=["score"])
    synch = make_pbt(time_attr="time_total_s", synch=True)
    assert synch.decision_points(FakeRunner().add(synch, {"lr": 1})) == DecisionPoints.every_result()


class SecondsSpy(Spy):
    """PBT on time_total_s, recording where its rule fires."""

    def __init__(self, **kwargs):
        PopulationBasedTraining.__init__(self, time_attr="time_total_s", metric="score", mode="max",
                                         hyperparam_mutations={"lr": [1, 2]}, log_config=False, **kwargs)
        self.fired = []

    def _record(self, idx, trial, time, score):
        self.fired.append(time)


@pytest.mark.parametrize("interval", [0.5, 2, 3.7])
@pytest.mark.parametrize("burn_in", [0, 4.2])
def test_decision_points_on_seconds_are_the_results_where_the_rule_fires(interval, burn_in):
    """Irregular seconds per result: the worker's watch waits exactly at the results where
    PBT's rule fires (the same float arithmetic), and at one without the metric."""
    pbt, runner = SecondsSpy(perturbation_interval=interval, burn_in_period=burn_in), FakeRunner()
    trial = runner.add(pbt, {"lr": 1})
    watch = DecisionPoints(pbt.decision_points(trial).to_wire()).watch()
    total, waited = 0.0, []
    for it in range(1, 60):
        total += [0.3, 1.1, 0.7, 2.9, 0.1][it % 5]
        result = {"training_iteration": it, "time_total_s": total, "score": 1.0}
        if watch(it, result, total):
            waited.append(total)
        runner.table.set_iteration(trial._row, it)
        trial.last_result = result
        pbt.on_trial_result(runner, trial, result)
    assert waited == pbt.fired and len(waited) > 3
    assert watch(60, {"time_total_s": total + 100.0}, total + 100.0)  # no score: it waits


def test_decision_points_of_a_restarted_clone_follow_its_donor_clock(tmp_path):
    pbt, runner = make_pbt(perturbation_interval=4), FakeRunner()
    trials = [runner.add(pbt, {"lr": 0.5}, stopping_criterion={"training_iteration": 20}) for _ in range(4)]
    for trial, score in zip(trials, (10, 20, 30, 40)):
        checkpoint(trial, tmp_path, 4, score)
        report(pbt, runner, trial, 4, score)
    report(pbt, runner, trials[0], 8, 0)  # exploits a donor whose checkpoint is at 4
    assert runner.resets and runner.resets[0].trial is trials[0]
    # Asked right after the reset (the table still says 8), or when the runner restarts
    # it from the donor's iteration 4: the next points follow the donor's clock.
    assert pbt.decision_points(trials[0]) == DecisionPoints.at([8, 12, 16, 20])
    runner.table.set_iteration(trials[0]._row, 4)
    assert pbt.decision_points(trials[0]) == DecisionPoints.at([8, 12, 16, 20])


def test_decision_points_of_a_clone_whose_donor_checkpoint_is_past_the_grid(tmp_path):
    pbt, runner = make_pbt(perturbation_interval=4), FakeRunner()
    trials = [runner.add(pbt, {"lr": 0.5}, stopping_criterion={"training_iteration": 24}) for _ in range(4)]
    for trial, score in zip(trials, (10, 20, 30, 40)):
        report(pbt, runner, trial, 4, score)
    checkpoint(trials[3], tmp_path, 9, 40)  # the donor checkpointed beyond its next point (8)
    report(pbt, runner, trials[0], 8, 0)
    assert runner.resets[0].checkpoint_result["training_iteration"] == 9
    # It continues from 9 on its donor's clock (last perturbation at 4): the rule fires at
    # 10, then 14, 18, 22; the population's points (12, 16, 20, 24) stay declared too.
    points = pbt.decision_points(trials[0])
    assert points == DecisionPoints.at([10, 12, 14, 16, 18, 20, 22, 24])
    report(pbt, runner, trials[0], 10, 100)  # reported (no exploit): trial.iteration counts again
    assert pbt._states[0].resume_iteration is None


# ---------------------------------------------------------------------------------------
# Synchronous mode
# ---------------------------------------------------------------------------------------
def test_synch_pauses_until_all_live_trials_reach_the_point(tmp_path):
    random.seed(0)
    pbt, runner = make_pbt(synch=True, quantile_fraction=0.34), FakeRunner()
    trials = [runner.add(pbt, {"lr": 0.5}) for _ in range(3)]
    for trial, score in zip(trials, (30, 20, 10)):
        checkpoint(trial, tmp_path, 2, score)
    assert report(pbt, runner, trials[0], 1, 30) == CONTINUE
    assert report(pbt, runner, trials[0], 2, 30) == PAUSE
    trials[0].set_status(Trial.PAUSED)
    assert report(pbt, runner, trials[1], 2, 20) == PAUSE
    trials[1].set_status(Trial.PAUSED)
    assert pbt.choose_trial_to_run(runner) is None  # the paused ones wait for trial 2
    assert runner.resets == []
    # The last one arrives: all perturb together; it goes on at once.
    assert report(pbt, runner, trials[2], 1, 10) == CONTINUE
    assert report(pbt, runner, trials[2], 2, 10) == CONTINUE
    (reset,) = runner.resets
    assert reset.trial is trials[2] and reset.checkpoint is trials[0].checkpoint
    assert pbt._next_perturbation_sync == 4
    assert pbt.choose_trial_to_run(runner) is trials[0]
    runner._slot_of[trials[0].trial_id] = 0  # being started
    assert pbt.choose_trial_to_run(runner) is trials[1]


def test_synch_exploits_paused_trials_too(tmp_path):
    pbt, runner = make_pbt(synch=True, quantile_fraction=0.5), FakeRunner()
    trials = [runner.add(pbt, {"lr": 0.5}) for _ in range(4)]
    for trial, score in zip(trials, (1, 2, 3, 4)):
        checkpoint(trial, tmp_path, 2, score)
    for trial, score in zip(trials[:3], (1, 2, 3)):
        assert report(pbt, runner, trial, 2, score) == PAUSE
        trial.set_status(Trial.PAUSED)
    assert report(pbt, runner, trials[3], 2, 4) == CONTINUE
    assert sorted(r.trial.trial_id for r in runner.resets) == [trials[0].trial_id, trials[1].trial_id]
    assert all(r.checkpoint in (trials[2].checkpoint, trials[3].checkpoint) for r in runner.resets)


def test_synch_releases_waiting_trials_when_the_straggler_ends(tmp_path):
    pbt, runner = make_pbt(synch=True, quantile_fraction=0.5), FakeRunner()
    trials = [runner.add(pbt, {"lr": 0.5}) for _ in range(3)]
    for trial, score in zip(trials, (1, 2, 3)):
        checkpoint(trial, tmp_path, 2, score)
    for trial, score in zip(trials[:2], (1, 2)):
        assert report(pbt, runner, trial, 2, score) == PAUSE
        trial.set_status(Trial.PAUSED)
    report(pbt, runner, trials[2], 1, 3)
    trials[2].set_status(Trial.TERMINATED)
    pbt.on_trial_complete(runner, trials[2], trials[2].last_result)
    assert [r.trial for r in runner.resets] == [trials[0]]
    assert pbt.choose_trial_to_run(runner) is trials[0]


def test_synch_with_burn_in_syncs_first_at_the_burn_in():
    pbt, runner = make_pbt(synch=True, perturbation_interval=2, burn_in_period=5), FakeRunner()
    trials = [runner.add(pbt, {"lr": 0.5}) for _ in range(2)]
    for it in range(1, 5):
        assert report(pbt, runner, trials[0], it, 1) == CONTINUE
    assert report(pbt, runner, trials[0], 5, 1) == PAUSE
    assert pbt._next_perturbation_sync == 5


def test_choose_trial_to_run_prefers_the_least_trained():
    pbt, runner = make_pbt(), FakeRunner()
    trials = [runner.add(pbt, {"lr": 0.5}, status=Trial.PAUSED) for _ in range(3)]
    for trial, time in zip(trials, (4, 2, 6)):
        pbt._train_time[pbt._index[trial.trial_id]] = time
    assert pbt.choose_trial_to_run(runner) is trials[1]
    fresh = runner.add(pbt, {"lr": 0.5}, status=Trial.PENDING)
    assert pbt.choose_trial_to_run(runner) is fresh
    fresh.set_status(Trial.RUNNING)
    trials[1].set_status(Trial.RUNNING)
    assert pbt.choose_trial_to_run(runner) is trials[0]


# ---------------------------------------------------------------------------------------
# Policy logs and replay
# ---------------------------------------------------------------------------------------
def read_lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_policy_logs_record_each_exploit_and_the_lineage(tmp_path):
    random.seed(3)
    exp = tmp_path / "exp"
    pbt, runner = make_pbt(log_config=True, resample_probability=0.0), FakeRunner(str(exp))
    a, b, c, d = [runner.add(pbt, {"lr": lr}) for lr in (0.1, 0.2, 0.3, 0.4)]
    for trial, score in zip((a, b, c, d), (10, 20, 30, 40)):
        checkpoint(trial, tmp_path, 2, score)
        report(pbt, runner, trial, 2, score)
    report(pbt, runner, a, 4, 5)  # a clones d (the only upper-quantile trial)
    a_config = dict(a.config)
    checkpoint(a, tmp_path, 6, 100)
    for trial, score in ((b, 21), (c, 31), (d, 41)):
        report(pbt, runner, trial, 4, score)
    report(pbt, runner, a, 6, 100)
    report(pbt, runner, b, 6, 1)  # b clones a (now the best)
    assert [(r.trial, r.checkpoint) for r in runner.resets] == [(a, d.checkpoint), (b, a.checkpoint)]

    first = [a.trial_id, d.trial_id, 4, 2, {"lr": 0.4}, a_config]
    second = [b.trial_id, a.trial_id, 6, 6, a_config, b.config]
    assert read_lines(exp / "pbt_global.txt") == [first, second]
    assert read_lines(exp / f"pbt_policy_{a.trial_id}.txt") == [first]
    assert read_lines(exp / f"pbt_policy_{b.trial_id}.txt") == [first, second]

    initial, changes = load_policy(str(exp / f"pbt_policy_{b.trial_id}.txt"))
    assert initial == {"lr": 0.4}
    assert changes == [(2, a_config), (6, b.config)]


def test_a_lineage_written_before_a_restore_continues_from_the_file(tmp_path):
    # The donor's policy file was written by an earlier run of the experiment: a new
    # scheduler (as after Tuner.restore) knows it only from the file.
    random.seed(3)
    exp = tmp_path / "exp"
    pbt, runner = make_pbt(log_config=True, resample_probability=0.0), FakeRunner(str(exp))
    a, b, c, d = [runner.add(pbt, {"lr": lr}) for lr in (0.1, 0.2, 0.3, 0.4)]
    earlier = [d.trial_id, c.trial_id, 2, 2, {"lr": 0.3}, {"lr": 0.4}]
    exp.mkdir()
    (exp / f"pbt_policy_{d.trial_id}.txt").write_text(json.dumps(earlier) + "\n")
    for trial, score in zip((a, b, c, d), (10, 20, 30, 40)):
        checkpoint(trial, tmp_path, 2, score)
        report(pbt, runner, trial, 2, score)
    report(pbt, runner, a, 4, 5)  # a clones d
    assert read_lines(exp / f"pbt_policy_{a.trial_id}.txt") == [
        earlier, [a.trial_id, d.trial_id, 4, 2, {"lr": 0.4}, a.config]]


def test_replay_reproduces_the_recorded_config_changes(tmp_path):
    policy = tmp_path / "pbt_policy_x.txt"
    lines = [
        ["a", "z", 9, 9, {"lr": 9.0}, {"lr": 9.9}],  # an older history of "a", overwritten
        ["a", "d", 4, 2, {"lr": 0.4}, {"lr": 0.48}],
        ["x", "a", 6, 5, {"lr": 0.48}, {"lr": 0.384}],
    ]
    policy.write_text("".join(json.dumps(line) + "\n" for line in lines))
    replay = PopulationBasedTrainingReplay(str(policy))
    runner = FakeRunner()
    trial = runner.add(replay, {})
    trial.set_status(Trial.RUNNING)
    assert trial.config == {"lr": 0.4}
    assert replay.decision_points(trial) == DecisionPoints.at([2, 5])
    configs = {}
    for it in range(1, 9):
        assert report(replay, runner, trial, it, 0.0) == CONTINUE
        configs[it] = dict(trial.config)
    assert [c["lr"] for c in configs.values()] == [0.4, 0.48, 0.48, 0.48, 0.384, 0.384, 0.384, 0.384]
    assert [(r.checkpoint, r.checkpoint_result) for r in runner.resets] == [(None, None), (None, None)]
    assert runner.resets[0].tag.startswith("replay_pbt_policy_x.txt@perturbed[lr=")
    assert replay.decision_points(trial) == DecisionPoints.never()


def test_replay_passes_the_trials_own_checkpoint_of_that_iteration(tmp_path, caplog):
    policy = tmp_path / "pbt_policy_x.txt"
    policy.write_text(json.dumps(["x", "a", 6, 3, {"lr": 1.0}, {"lr": 2.0}]) + "\n"
                      + json.dumps(["y", "x", 8, 5, {"lr": 2.0}, {"lr": 3.0}]) + "\n")
    replay = PopulationBasedTrainingReplay(str(policy))
    runner = FakeRunner()
    trial = runner.add(replay, {})
    with caplog.at_level(logging.WARNING, logger="fasttune.schedulers.pbt"):
        for it in range(1, 7):
            saved = checkpoint(trial, tmp_path, it, 0.0) if it != 5 else None
            report(replay, runner, trial, it, 0.0)
            if it == 3:
                assert runner.resets[-1].checkpoint is saved
                assert runner.resets[-1].checkpoint_result["training_iteration"] == 3
    # At 5 the trial had saved nothing: the config changes in place, with a warning.
    assert [(r.iteration, r.config, r.checkpoint) for r in runner.resets][1] == (5, {"lr": 3.0}, None)
    assert len([r for r in caplog.records if "no checkpoint of iteration 5" in r.getMessage()]) == 1


def test_replay_of_a_recorded_run(tmp_path):
    random.seed(5)
    np.random.seed(5)
    exp = tmp_path / "exp"
    pbt, runner = make_pbt(log_config=True), FakeRunner(str(exp))
    trials = [runner.add(pbt, {"lr": lr}) for lr in (0.1, 0.2, 0.3, 0.4)]
    for it in range(1, 13):
        for i, trial in enumerate(trials):
            score = 0.0 if i == 0 else float(it * i)  # trial 0 is always the worst
            checkpoint(trial, tmp_path, it, score)
            report(pbt, runner, trial, it, score)
    target = trials[0]
    exploits = [r for r in runner.resets if r.trial is target]
    assert len(exploits) >= 2
    initial, changes = load_policy(str(exp / f"pbt_policy_{target.trial_id}.txt"))
    # The donors never exploited, so the lineage is the donor's config, then the last clone.
    last = exploits[-1]
    donor = next(t for t in trials if t.checkpoint_results and any(c is last.checkpoint for c, _ in t.checkpoint_results))
    assert initial == donor.config
    assert changes == [(last.checkpoint_result["training_iteration"], target.config)]

    replay = PopulationBasedTrainingReplay(str(exp / f"pbt_policy_{target.trial_id}.txt"))
    replay_runner = FakeRunner()
    replayed = replay_runner.add(replay, {"lr": 123.0})
    assert replayed.config == donor.config
    for it in range(1, 13):
        report(replay, replay_runner, replayed, it, 0.0)
    assert [(r.iteration, r.config) for r in replay_runner.resets] == changes
    assert replayed.config == target.config


def test_replay_errors(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        PopulationBasedTrainingReplay(str(tmp_path / "missing.txt"))
    bad = tmp_path / "bad.txt"
    bad.write_text("not json\n")
    with pytest.raises(ValueError, match="line 1 is not JSON"):
        PopulationBasedTrainingReplay(str(bad))
    deep = tmp_path / "deep.txt"  # json.loads would overflow Python's recursion limit
    deep.write_text("[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(ValueError, match="line 1 is not JSON.*nested more than"):
        PopulationBasedTrainingReplay(str(deep))
    short = tmp_path / "short.txt"
    short.write_text("[1, 2]\n")
    with pytest.raises(ValueError, match="expected"):
        PopulationBasedTrainingReplay(str(short))
    with pytest.raises(TypeError, match="policy_file"):
        PopulationBasedTrainingReplay(3)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    replay = PopulationBasedTrainingReplay(str(empty))
    with pytest.raises(ValueError, match="param_space"):
        FakeRunner().add(replay, {})
    replay = PopulationBasedTrainingReplay(str(empty))
    runner = FakeRunner()
    assert runner.add(replay, {"lr": 1}).config == {"lr": 1}  # no changes: trains as given
    with pytest.raises(ValueError, match="num_samples=1"):
        runner.add(replay, {"lr": 1})


# ---------------------------------------------------------------------------------------
# Save and restore
# ---------------------------------------------------------------------------------------
def test_save_and_restore_keep_the_state_by_trial_id(tmp_path):
    pbt, runner = make_pbt(synch=True), FakeRunner()
    trials = [runner.add(pbt, {"lr": 0.5}) for _ in range(3)]
    for trial, score in zip(trials, (3, 1, 2)):
        report(pbt, runner, trial, 2, score)
    path = str(tmp_path / "pbt.pkl")
    pbt.save(path)

    restored = make_pbt(synch=True)
    restored.restore(path)  # before the trials come back, in another order
    runner2 = FakeRunner()
    for trial in reversed(trials):
        trial._table, trial._row = None, -1
        trial._attach(runner2.table, runner2.table.add())
        runner2.trials.append(trial)
        restored.on_trial_add(runner2, trial)
        trial.set_status(Trial.RUNNING)
    assert restored._next_perturbation_sync == pbt._next_perturbation_sync
    for trial in trials:
        old, new = pbt._index[trial.trial_id], restored._index[trial.trial_id]
        assert restored._score[new] == pbt._score[old]
        assert restored._perturb_time[new] == pbt._perturb_time[old]
    lower, upper = restored._quantiles(runner2)
    assert ids(restored, lower) == [trials[1].trial_id] and ids(restored, upper) == [trials[0].trial_id]

    again = make_pbt(synch=True)  # restore after the trials were added
    for trial in trials:
        again.on_trial_add(runner2, trial)
    again.restore(path)
    assert again._score[again._index[trials[0].trial_id]] == 3

    with pytest.raises(TuneError, match="PopulationBasedTraining"):
        replay_file = tmp_path / "p.txt"
        replay_file.write_text("")
        PopulationBasedTrainingReplay(str(replay_file)).restore(path)


def test_a_trial_added_again_replaces_the_old_object():
    pbt, runner = make_pbt(), FakeRunner()
    old = runner.add(pbt, {"lr": 0.5})
    new = Trial("train", config={"lr": 0.5}, trial_id=old.trial_id)
    runner2 = FakeRunner()
    new._attach(runner2.table, runner2.table.add())
    runner2.table.add()  # a different row than before
    pbt.on_trial_add(runner2, new)
    assert pbt._trials == [new] and pbt._rows[0] == new._row


def test_synch_ending_trial_without_waiters_perturbs_nothing(tmp_path):
    pbt, runner = make_pbt(synch=True), FakeRunner()
    trials = [runner.add(pbt, {"lr": 0.5}) for _ in range(3)]
    assert pbt.choose_trial_to_run(runner) is None  # all RUNNING
    trials[2].set_status(Trial.TERMINATED)
    pbt.on_trial_complete(runner, trials[2], {})
    assert runner.resets == [] and pbt._next_perturbation_sync == 2


@pytest.mark.parametrize("mode, sign", [("max", 1.0), ("min", -1.0)])
def test_last_scores_are_the_scores_at_the_last_perturbation_point_of_unfinished_trials(tmp_path, mode, sign):
    pbt, runner = make_pbt(mode=mode), FakeRunner()
    trials = [runner.add(pbt, {"lr": 0.5}) for _ in range(4)]
    for trial, score in zip(trials[:3], (10, 20, 30)):
        report(pbt, runner, trial, 2, score)
    report(pbt, runner, trials[0], 3, 99)  # not a perturbation point: the recorded score stays
    trials[2].set_status(Trial.TERMINATED)
    # trials[3] has not reached a perturbation point; trials[2] finished.
    assert pbt.last_scores(trials) == [sign * 10, sign * 20]


def test_reset_stats_zeroes_the_counts_debug_string_shows(tmp_path):
    random.seed(0)
    pbt, runner = make_pbt(resample_probability=0.0), FakeRunner()
    trials = four_trials(pbt, runner, tmp_path)
    report(pbt, runner, trials[0], 4, 11)
    assert pbt.debug_string().startswith("PopulationBasedTraining: 1 perturbs")
    pbt.reset_stats()
    assert pbt.debug_string().startswith("PopulationBasedTraining: 0 perturbs, 0 exploits skipped")
