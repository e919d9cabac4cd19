"""One value drawn through ``Rng`` is the number numpy's array path draws, from every
kind of source, and it is drawn through numpy's scalar path (which keeps the GIL)."""
import numpy as np
import pytest

from fasttune.search._rng import Rng

SOURCES = {
    "seeded Generator": lambda seed: np.random.default_rng(seed),
    "seeded RandomState": lambda seed: np.random.RandomState(seed),
}

DRAWS = {
    "uniform": lambda rng, size: rng.uniform(-2.5, 7.25, size),
    "normal": lambda rng, size: rng.normal(0.5, 3.0, size),
    "integers": lambda rng, size: rng.integers(-3, 11, size),
    "indices": lambda rng, size: rng.indices(7, size),
}


@pytest.mark.parametrize("draw", sorted(DRAWS))
@pytest.mark.parametrize("source", sorted(SOURCES))
def test_single_draws_are_the_array_paths_numbers(source, draw):
    for seed in range(5):
        singles, batch = Rng(SOURCES[source](seed)), Rng(SOURCES[source](seed))
        got = [DRAWS[draw](singles, 1) for _ in range(40)]
        want = DRAWS[draw](batch, 40)
        assert all(value.shape == (1,) and value.dtype == want.dtype for value in got)
        assert np.concatenate(got).tolist() == want.tolist()

def test_single_draws_from_numpys_global_generator_follow_np_random_seed():
    np.random.seed(123)
    got = [Rng(None).uniform(0.0, 1.0, 1)[0] for _ in range(20)]
    np.random.seed(123)
    assert got == np.random.uniform(0.0, 1.0, size=20).tolist()


class _RecordingRandomState(np.random.RandomState):
    """A RandomState that notes the ``size`` of each draw asked of it."""

    def __init__(self, seed):
        super().__init__(seed)
        self.sizes = []

    def uniform(self, low=0.0, high=1.0, size=None):
        self.sizes.append(size)
        return super().uniform(low, high, size)

    def normal(self, loc=0.0, scale=1.0, size=None):
        self.sizes.append(size)
        return super().normal(loc, scale, size)

    def randint(self, low, high=None, size=None, dtype=int):
        self.sizes.append(size)
        return super().randint(low, high, size, dtype)


def test_a_single_draw_takes_numpys_scalar_path():
    # numpy's array path releases the GIL around the draw; the scalar path does not.
    source = _RecordingRandomState(0)
    rng = Rng(source)
    for draw in DRAWS.values():
        draw(rng, 1)
    assert source.sizes == [None, None, None, None]
    DRAWS["uniform"](rng, 3)
    assert source.sizes[-1] == 3


def test_only_an_rng_made_from_a_seed_is_its_generators_only_drawer():
    assert Rng(0).is_own
    assert not Rng(np.random.default_rng(0)).is_own and not Rng(None).is_own
    assert not Rng(Rng(0)).is_own  # (two of them draw from one generator)
    older = Rng.__new__(Rng)  # as one unpickled from before the slot: its state has no _own
    older._gen = np.random.default_rng(0)
    assert not older.is_own and older.uniform_value(0, 1) == np.random.default_rng(0).uniform(0, 1)


UNIFORM_BOUNDS = [(-2.5, 7.25), (0.0, 1.0), (3.0, 3.0), (1e-9, 1e-3), (-1e300, 1e300), (-7, 11),
                  (np.float32(0.25), np.float64(0.75))]


@pytest.mark.parametrize("source", sorted(SOURCES) + ["numpy's global generator"])
def test_uniform_value_is_the_array_paths_number(source):
    for seed in range(3):
        if source in SOURCES:
            values, arrays = Rng(SOURCES[source](seed)), Rng(SOURCES[source](seed))
        else:
            values = arrays = Rng(None)
        for low, high in UNIFORM_BOUNDS * 20:
            if source not in SOURCES:
                np.random.seed(seed)
            got = values.uniform_value(low, high)
            if source not in SOURCES:
                np.random.seed(seed)
            want = arrays.uniform(low, high, 1)[0]
            assert type(got) is float and got == float(want)


def test_uniform_value_outside_the_plain_draw_is_numpys_own():
    # A RandomState takes high < low (the draw goes down from low); a Generator refuses
    # it, and both refuse a range that is not finite.
    assert Rng(np.random.RandomState(1)).uniform_value(5.0, 2.0) == float(np.random.RandomState(1).uniform(5.0, 2.0))
    for source in SOURCES.values():
        with pytest.raises((OverflowError, ValueError)):
            Rng(source(0)).uniform_value(-1.5e308, 1.5e308)
    with pytest.raises(ValueError):
        Rng(np.random.default_rng(0)).uniform_value(5.0, 2.0)
    # -0.0 - 0.0 is a zero whose sign bit is set: a Generator refuses that range too.
    with pytest.raises(ValueError):
        Rng(np.random.default_rng(0)).uniform_value(0.0, -0.0)
    assert Rng(np.random.RandomState(1)).uniform_value(0.0, -0.0) == float(np.random.RandomState(1).uniform(0.0, -0.0))
    for source in SOURCES.values():  # a bound numpy does not take as a number stays refused
        with pytest.raises(TypeError):
            Rng(source(0)).uniform_value("1.0", 2.0)


def test_uniform_value_draws_without_numpys_uniform():
    # Cold in a sweep's event loop, numpy's uniform (its argument handling) costs ~10x the draw.
    source = _RecordingRandomState(0)
    Rng(source).uniform_value(0.0, 1.0)
    assert source.sizes == []
