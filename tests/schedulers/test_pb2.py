"""PB2: PBT whose explore step is GP-UCB (scikit-learn), driven by a fake runner."""
import random
import sys

import numpy as np
import pytest

import sklearn  # noqa: F401,E402 - the test extra installs it: a missing one fails, never skips

from fasttune import _corelib as core  # noqa: E402
from fasttune.checkpoint import Checkpoint  # noqa: E402
from fasttune.experiment.trial import Trial  # noqa: E402
from fasttune.schedulers._pb2_utils import RewardChangeModel  # noqa: E402
from fasttune.schedulers.pb2 import PB2  # noqa: E402


class FakeRunner:
    """The runner as schedulers see it (TuneControllerView); reset_trial calls are recorded
    and applied."""

    is_stopping = False
    metric = None
    search_alg = None  # PB2 never asks the search algorithm for trials

    def __init__(self, experiment_path=None):
        self.table = core.TrialTable(None)
        self.trials = []
        self.experiment_path = experiment_path
        self.resets = []
        self.on_reset = None

    def add(self, scheduler, config):
        trial = Trial("train", config=dict(config), experiment_path=self.experiment_path)
        trial._attach(self.table, self.table.add())
        self.trials.append(trial)
        scheduler.on_trial_add(self, trial)
        trial.set_status(Trial.RUNNING)
        return trial

    def get_trials(self):
        return self.trials

    def get_trial(self, trial_id):
        return next((t for t in self.trials if t.trial_id == trial_id), None)

    def first_trial_with_status(self, status):
        return next((t for t in self.trials if t.status == status), None)

    def is_trial_held(self, trial):
        return False

    def stop_trial(self, trial):
        trial.set_status(Trial.TERMINATED)

    def pause_trial(self, trial):
        trial.set_status(Trial.PAUSED)

    def reset_trial(self, trial, new_config, new_experiment_tag, checkpoint=None, checkpoint_result=None):
        self.resets.append((trial, dict(trial.config), new_config, checkpoint_result))
        trial.config = new_config
        trial.experiment_tag = new_experiment_tag
        if self.on_reset is not None:
            self.on_reset(trial, checkpoint_result)


def make_pb2(**kwargs):
    defaults = dict(
        time_attr="training_iteration",
        metric="reward",
        mode="max",
        perturbation_interval=2,
        hyperparam_bounds={"lr": [0.0, 1.0]},
        log_config=False,
    )
    defaults.update(kwargs)
    return PB2(**defaults)


def report(scheduler, runner, trial, iteration, reward, tmp_path=None):
    result = {"training_iteration": iteration, "reward": reward}
    if tmp_path is not None:
        path = tmp_path / f"ckpt_{trial.trial_id}_{iteration}"
        path.mkdir(exist_ok=True)
        trial.checkpoint_results.append((Checkpoint(str(path)), dict(result)))
        trial.checkpoints = [c for c, _ in trial.checkpoint_results]
    runner.table.set_iteration(trial._row, iteration)
    trial.last_result = result
    return scheduler.on_trial_result(runner, trial, result)


# ---------------------------------------------------------------------------------------
# Arguments and the optional dependency
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "bounds, error, words",
    [
        (None, ValueError, "hyperparam_bounds"),
        ({}, ValueError, "hyperparam_bounds"),
        ({"lr": [1.0]}, ValueError, "[min, max]"),
        ({"lr": 0.5}, ValueError, "[min, max]"),
        ({"lr": [2.0, 1.0]}, ValueError, "min > max"),
        ({"lr": ["a", "b"]}, ValueError, "finite numbers"),
        ({"lr": [0.0, float("inf")]}, ValueError, "finite numbers"),
        ({"opt": {}}, ValueError, "empty dict"),
        ([0, 1], TypeError, "dict"),
    ],
)
def test_bad_bounds_raise_clear_errors(bounds, error, words):
    with pytest.raises(error) as info:
        make_pb2(hyperparam_bounds=bounds)
    assert words in str(info.value)


def test_pbt_argument_checks_apply():
    with pytest.raises(ValueError, match="quantile_fraction"):
        make_pb2(quantile_fraction=0.9)


def test_missing_scikit_learn_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.gaussian_process", None)
    monkeypatch.setitem(sys.modules, "sklearn.gaussian_process.kernels", None)
    with pytest.raises(ImportError, match=r'pip install "fasttune\[pb2\]"'):
        make_pb2()


# ---------------------------------------------------------------------------------------
# The GP-UCB step
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_model_suggests_the_better_region_of_a_synthetic_dataset(seed):
    rng = np.random.RandomState(seed)
    h = rng.uniform(0, 1, 60)
    X = np.column_stack([rng.uniform(0, 50, 60), rng.uniform(0, 10, 60), h])
    y = 1 - 4 * (h - 0.8) ** 2 + rng.normal(0, 0.05, 60)  # best improvement at 0.8
    model = RewardChangeModel(X, y, [0.0], [1.0], random_state=seed)
    (value,) = model.suggest([25.0, 5.0], random_state=seed)
    assert abs(value - 0.8) < 0.1


def test_model_suggestions_respect_the_bounds_in_several_dimensions():
    rng = np.random.RandomState(0)
    H = np.column_stack([rng.uniform(10, 20, 80), rng.uniform(-1, 1, 80)])
    y = -((H[:, 0] - 12) / 10) ** 2 - (H[:, 1] - 0.5) ** 2
    X = np.column_stack([rng.uniform(0, 10, 80), rng.uniform(0, 1, 80), H])
    model = RewardChangeModel(X, y, [10.0, -1.0], [20.0, 1.0], random_state=0)
    for seed in range(3):
        value = model.suggest([5.0, 0.5], random_state=seed)
        assert 10.0 <= value[0] <= 20.0 and -1.0 <= value[1] <= 1.0
        assert abs(value[0] - 12) < 1.5 and abs(value[1] - 0.5) < 0.3


def test_pending_choices_lower_the_variance_there():
    rng = np.random.RandomState(0)
    h = rng.uniform(0, 0.5, 20)  # nothing known above 0.5
    X = np.column_stack([np.arange(20.0), np.zeros(20), h])
    model = RewardChangeModel(X, h, [0.0], [1.0], random_state=0)
    fixed_n = (np.array([20.0, 0.0]) - model._offset[:2]) / model._span[:2]
    z = np.array([[fixed_n[0], fixed_n[1], 0.9]])
    _, alone = model._variance_model(fixed_n, None).predict(z, return_std=True)
    _, with_pending = model._variance_model(fixed_n, np.array([[0.9]])).predict(z, return_std=True)
    assert with_pending[0] < 0.5 * alone[0]


def test_model_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="2 \\+ d"):
        RewardChangeModel(np.zeros((3, 2)), np.zeros(3), [0.0], [1.0])
    with pytest.raises(ValueError, match="lower/upper"):
        RewardChangeModel(np.zeros((3, 3)), np.zeros(3), [0.0, 1.0], [1.0, 2.0])


# ---------------------------------------------------------------------------------------
# PB2 as a scheduler
# ---------------------------------------------------------------------------------------
def test_data_points_are_score_changes_per_unit_time_with_unchanged_hyperparameters(tmp_path):
    pb2, runner = make_pb2(quantile_fraction=0.0), FakeRunner()
    trial = runner.add(pb2, {"lr": 0.3})
    for it, reward in ((1, 1.0), (2, 2.0), (3, 3.0), (4, 6.0), (6, 7.0)):
        report(pb2, runner, trial, it, reward)
    # Perturbation points at 2, 4 and 6 (interval 2).
    assert [(list(x), y) for x, y in pb2._points] == [([2.0, 2.0, 0.3], 2.0), ([4.0, 6.0, 0.3], 0.5)]
    trial.config = {"lr": 0.5}  # changed: no data point across the change
    report(pb2, runner, trial, 8, 9.0)
    assert len(pb2._points) == 2


def test_mode_min_models_the_negated_metric():
    pb2, runner = make_pb2(mode="min", quantile_fraction=0.0), FakeRunner()
    trial = runner.add(pb2, {"lr": 0.3})
    report(pb2, runner, trial, 2, 10.0)
    report(pb2, runner, trial, 4, 4.0)
    ((x, y),) = pb2._points
    assert list(x) == [2.0, -10.0, 0.3] and y == 3.0


def test_clones_keep_the_donor_values_until_there_is_data(tmp_path):
    pb2, runner = make_pb2(), FakeRunner()
    trials = [runner.add(pb2, {"lr": lr}) for lr in (0.1, 0.2, 0.3, 0.4)]
    for trial, reward in zip(reversed(trials), (4.0, 3.0, 2.0, 1.0)):
        report(pb2, runner, trial, 2, reward, tmp_path)
    assert [r[0] for r in runner.resets] == [trials[2], trials[1], trials[0]]
    assert all(new == {"lr": 0.4} for _, _, new, _ in runner.resets)
    # The clone's next interval starts at the donor's checkpoint, with its new values.
    assert pb2._previous[trials[0].trial_id][:2] == (2.0, 4.0)


def run_population(tmp_path, pb2, lrs, iterations, rate):
    runner = FakeRunner()
    trials = [runner.add(pb2, {"lr": lr}) for lr in lrs]
    reward = {t.trial_id: 0.0 for t in trials}

    def on_reset(trial, checkpoint_result):  # the clone continues from the donor's state
        reward[trial.trial_id] = checkpoint_result["reward"]

    runner.on_reset = on_reset
    for it in range(1, iterations + 1):
        for trial in trials:
            reward[trial.trial_id] += rate(trial.config["lr"])
            report(pb2, runner, trial, it, reward[trial.trial_id], tmp_path)
    return runner, trials


class SpyPB2(PB2):
    """Records the values the GP step chose."""

    def __init__(self, **kwargs):
        defaults = dict(time_attr="training_iteration", metric="reward", mode="max", log_config=False)
        super().__init__(**{**defaults, **kwargs})
        self.chosen = []

    def _explore_config(self, trial, donor, checkpoint_result):
        from_gp = len(self._points) >= 2
        new_config, operations = super()._explore_config(trial, donor, checkpoint_result)
        if from_gp:
            self.chosen.append(new_config["lr"])
        return new_config, operations


def test_pb2_explores_toward_the_better_region(tmp_path):
    random.seed(0)
    np.random.seed(0)
    pb2 = SpyPB2(perturbation_interval=2, quantile_fraction=0.25, hyperparam_bounds={"lr": [0.0, 1.0]})
    run_population(tmp_path, pb2, np.linspace(0.05, 0.5, 8), 24, rate=lambda lr: 1.0 - 2.0 * abs(lr - 0.8))
    chosen = pb2.chosen
    assert len(chosen) >= 6
    assert all(0.0 <= lr <= 1.0 for lr in chosen)
    # Every initial value is <= 0.5 and the best improvement is at 0.8: the GP steers
    # the population there, which perturbing the donors' values would not so quickly.
    late = chosen[len(chosen) // 2:]
    assert np.mean(late) > 0.6
    assert sum(abs(lr - 0.8) < 0.2 for lr in late) >= 0.7 * len(late)


def test_int_values_stay_ints_within_bounds_and_nested_bounds_work(tmp_path):
    random.seed(1)
    np.random.seed(1)
    pb2 = make_pb2(hyperparam_bounds={"opt": {"lr": [0.0, 1.0]}, "batch": [8, 64]}, quantile_fraction=0.25)
    runner = FakeRunner()
    trials = [runner.add(pb2, {"opt": {"lr": 0.1 * (i + 1), "name": "sgd"}, "batch": 8 + 4 * i}) for i in range(8)]
    for it in range(1, 11):
        for i, trial in enumerate(trials):
            report(pb2, runner, trial, it, float(it * (i + 1)), tmp_path)
    assert runner.resets
    for _, _, new, _ in runner.resets:
        assert type(new["batch"]) is int and 8 <= new["batch"] <= 64
        assert 0.0 <= new["opt"]["lr"] <= 1.0 and new["opt"]["name"] == "sgd"


def test_missing_values_are_drawn_within_the_bounds():
    np.random.seed(0)
    pb2 = make_pb2(hyperparam_bounds={"lr": [1e-3, 1e-2], "opt": {"m": [0.5, 0.6]}})
    trial = FakeRunner().add(pb2, {})
    assert 1e-3 <= trial.config["lr"] <= 1e-2 and 0.5 <= trial.config["opt"]["m"] <= 0.6


def test_custom_explore_fn_runs_after_the_gp_step(tmp_path):
    random.seed(0)
    np.random.seed(0)
    pb2 = make_pb2(custom_explore_fn=lambda c: {**c, "lr": round(c["lr"], 1), "seen": True})
    runner, _ = run_population(tmp_path, pb2, np.linspace(0.1, 0.9, 4), 8, rate=lambda lr: lr)
    assert runner.resets
    for _, _, new, _ in runner.resets:
        assert new["seen"] is True and new["lr"] == round(new["lr"], 1)


def test_save_and_restore_keep_the_model_data(tmp_path):
    random.seed(0)
    np.random.seed(0)
    pb2 = make_pb2()
    runner, trials = run_population(tmp_path, pb2, np.linspace(0.1, 0.9, 4), 8, rate=lambda lr: lr)
    path = str(tmp_path / "pb2.pkl")
    pb2.save(path)
    restored = make_pb2()
    restored.restore(path)
    assert [(list(x), y) for x, y in restored._points] == [(list(x), y) for x, y in pb2._points]
    assert restored._previous.keys() == pb2._previous.keys()
    for trial in trials:
        restored.on_trial_add(runner, trial)
    assert restored._score[: len(trials)].tolist() == pb2._score[: len(trials)].tolist()
