"""PBT and PB2 draw from Python's ``random`` and numpy's global generator (as Ray Tune's
do, so ``random.seed``/``numpy.random.seed`` before a sweep reproduce it); their saved
state holds both generators, so a restored scheduler goes on drawing what it would have."""
import random

import numpy as np

import fasttune as tune
from fasttune._serialization import dump_file, load_file
from fasttune.schedulers import PopulationBasedTraining
from fasttune.schedulers._pb2_utils import RewardChangeModel


def pbt():
    return PopulationBasedTraining(time_attr="training_iteration", metric="loss", mode="min",
                                   hyperparam_mutations={"lr": tune.uniform(0, 1)})


def draws():
    return [random.random(), random.choice(range(100)), float(np.random.uniform()), int(np.random.randint(1000))]


def test_a_restored_scheduler_puts_both_generators_back_where_they_were_saved(tmp_path):
    path = str(tmp_path / "pbt.state")
    random.seed(1)
    np.random.seed(1)
    draws()  # the sweep drew some before the snapshot
    pbt().save(path)
    expected = draws()
    random.seed(2)
    np.random.seed(2)
    pbt().restore(path)
    assert draws() == expected


def test_a_state_saved_without_the_generators_leaves_them_alone(tmp_path):
    path = str(tmp_path / "pbt.state")
    pbt().save(path)
    state = load_file(path)
    del state["global_random"]  # as saved before the generators were kept
    dump_file(path, state)
    random.seed(3)
    np.random.seed(3)
    expected = draws()
    random.seed(3)
    np.random.seed(3)
    pbt().restore(path)
    assert draws() == expected


def test_a_model_fitted_again_with_its_gp_seed_is_the_same_model():
    rng = np.random.RandomState(0)
    h = rng.uniform(0, 1, (30, 1))
    X = np.column_stack([np.arange(30.0), np.zeros(30), h])
    y = -(h[:, 0] - 0.7) ** 2
    np.random.seed(5)
    first = RewardChangeModel(X, y, [0.0], [1.0])  # its GP seed drawn from numpy's global generator
    np.random.seed(5)
    assert first.gp_seed == np.random.randint(0, 2**31 - 1)
    state = np.random.get_state()
    again = RewardChangeModel(X, y, [0.0], [1.0], gp_seed=first.gp_seed)
    assert again.gp_seed == first.gp_seed and str(again.gp.kernel_) == str(first.gp.kernel_)
    after = np.random.get_state()
    assert np.array_equal(after[1], state[1]) and after[2] == state[2]  # it drew nothing
    Z = np.column_stack([np.full(5, 30.0), np.zeros(5), np.linspace(0, 1, 5)])
    assert np.array_equal(again.gp.predict(Z), first.gp.predict(Z))
