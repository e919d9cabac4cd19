"""Domains: bounds, quantisation, reproducibility and argument errors."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fasttune.search.sample import (
    Categorical,
    Float,
    Function,
    Grid,
    Integer,
    LogUniform,
    Normal,
    Quantized,
    Uniform,
    choice,
    grid_search,
    lograndint,
    loguniform,
    qlograndint,
    qloguniform,
    qrandint,
    qrandn,
    quniform,
    randint,
    randn,
    sample_from,
    uniform,
)

SEEDS = st.integers(min_value=0, max_value=2**32 - 1)
finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


# -- bounds -----------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(a=finite, b=finite, seed=SEEDS)
def test_uniform_stays_in_bounds(a, b, seed):
    lower, upper = min(a, b), max(a, b)
    values = uniform(lower, upper).sample(size=20, random_state=seed)
    assert all(isinstance(v, float) and lower <= v <= upper for v in values)


@settings(max_examples=60, deadline=None)
@given(lo_exp=st.floats(-8, 3), span=st.floats(0, 6), seed=SEEDS)
def test_loguniform_stays_in_bounds(lo_exp, span, seed):
    lower, upper = 10**lo_exp, 10 ** (lo_exp + span)
    values = loguniform(lower, upper).sample(size=20, random_state=seed)
    assert all(lower <= v <= upper for v in values)


def test_loguniform_is_uniform_in_log_space():
    values = np.array(loguniform(1e-4, 1.0).sample(size=4000, random_state=0))
    # Half the mass lies below the geometric mean 1e-2; a uniform draw would put ~1% there.
    assert 0.45 < np.mean(values < 1e-2) < 0.55


@settings(max_examples=60, deadline=None)
@given(lower=st.integers(-1000, 1000), width=st.integers(1, 1000), seed=SEEDS)
def test_randint_upper_is_exclusive(lower, width, seed):
    values = randint(lower, lower + width).sample(size=30, random_state=seed)
    assert all(type(v) is int and lower <= v < lower + width for v in values)


def test_randint_reaches_every_value_but_upper():
    assert set(randint(0, 3).sample(size=300, random_state=0)) == {0, 1, 2}


@settings(max_examples=60, deadline=None)
@given(lower=st.integers(-500, 500), width=st.integers(0, 500), q=st.integers(1, 50), seed=SEEDS)
def test_qrandint_values_are_multiples_within_inclusive_bounds(lower, width, q, seed):
    upper = lower + width
    if -((-lower) // q) > upper // q:
        with pytest.raises(ValueError, match="no multiple of q"):
            qrandint(lower, upper, q)
        return
    values = qrandint(lower, upper, q).sample(size=30, random_state=seed)
    assert all(type(v) is int and lower <= v <= upper and v % q == 0 for v in values)


def test_qrandint_upper_is_inclusive_and_values_are_equally_likely():
    values = qrandint(0, 10, 5).sample(size=3000, random_state=0)
    counts = {v: values.count(v) for v in (0, 5, 10)}
    assert set(values) == {0, 5, 10}
    # Rounding a uniform draw would give the two ends half the weight of the middle.
    assert all(850 < c < 1150 for c in counts.values()), counts


def test_qrandint_default_q_includes_upper():
    assert set(qrandint(1, 3).sample(size=300, random_state=0)) == {1, 2, 3}


@settings(max_examples=40, deadline=None)
@given(lower=st.integers(1, 100), width=st.integers(1, 10_000), seed=SEEDS)
def test_lograndint_upper_is_exclusive(lower, width, seed):
    values = lograndint(lower, lower + width).sample(size=30, random_state=seed)
    assert all(type(v) is int and lower <= v < lower + width for v in values)


def test_lograndint_favours_small_values():
    values = np.array(lograndint(1, 10_000).sample(size=3000, random_state=0))
    assert 0.45 < np.mean(values < 100) < 0.55


@settings(max_examples=40, deadline=None)
@given(k_low=st.integers(1, 20), k_span=st.integers(0, 200), q=st.integers(1, 16), seed=SEEDS)
def test_qlograndint_multiples_within_inclusive_bounds(k_low, k_span, q, seed):
    lower, upper = k_low * q, (k_low + k_span) * q
    values = qlograndint(lower, upper, q).sample(size=30, random_state=seed)
    assert all(lower <= v <= upper and v % q == 0 for v in values)


def test_qlograndint_reaches_upper():
    assert 64 in qlograndint(32, 64, 32).sample(size=200, random_state=0)


@settings(max_examples=40, deadline=None)
@given(k_low=st.integers(-100, 100), k_span=st.integers(0, 100), q=st.sampled_from([0.1, 0.25, 0.5, 1.0, 2.0, 0.01]), seed=SEEDS)
def test_quniform_values_are_clean_multiples_of_q(k_low, k_span, q, seed):
    lower, upper = round(k_low * q, 2), round((k_low + k_span) * q, 2)
    values = quniform(lower, upper, q).sample(size=20, random_state=seed)
    for v in values:
        assert lower <= v <= upper
        # Exactly the decimal the user wrote: 0.3, never 0.30000000000000004.
        assert v == round(round(v / q) * q, 2)


def test_quniform_reaches_both_ends_exactly():
    assert set(quniform(0.0, 0.3, 0.1).sample(size=300, random_state=0)) == {0.0, 0.1, 0.2, 0.3}


def test_qloguniform_values_are_quantized():
    values = qloguniform(1, 1000, 1).sample(size=3000, random_state=0)
    assert all(1 <= v <= 1000 and float(v).is_integer() for v in values)
    assert 0.45 < np.mean(np.array(values) < 32) < 0.55


def test_randn_matches_mean_and_sd():
    values = np.array(randn(10.0, 2.0).sample(size=4000, random_state=0))
    assert abs(values.mean() - 10.0) < 0.15
    assert abs(values.std() - 2.0) < 0.15


def test_qrandn_is_quantized():
    values = qrandn(0.0, 5.0, 0.5).sample(size=100, random_state=0)
    assert all((v / 0.5).is_integer() for v in values)
    assert len(set(values)) > 5


def test_choice_keeps_category_objects_and_types():
    categories = [1, "a", None, (2, 3), {"k": 1}]
    values = choice(categories).sample(size=200, random_state=0)
    assert all(any(v is c for c in categories) for v in values)
    assert len({repr(v) for v in values}) == len(categories)


def test_size_one_is_a_python_scalar_and_size_many_a_list():
    assert type(uniform(0, 1).sample(random_state=0)) is float
    assert type(randint(0, 5).sample(random_state=0)) is int
    values = randint(0, 5).sample(size=4, random_state=0)
    assert isinstance(values, list) and len(values) == 4 and all(type(v) is int for v in values)


# -- reproducibility ---------------------------------------------------------


@pytest.mark.parametrize(
    "domain",
    [uniform(0, 1), loguniform(1e-5, 1), randint(0, 1000), qrandint(0, 100, 5), choice(list(range(50))), randn(), qrandn(0, 1, 0.1)],
)
def test_same_seed_same_values(domain):
    first = domain.sample(size=10, random_state=123)
    assert first == domain.sample(size=10, random_state=123)
    assert first != domain.sample(size=10, random_state=124)


def test_generator_and_randomstate_sources_are_reproducible():
    domain = uniform(0, 1)
    assert domain.sample(size=5, random_state=np.random.default_rng(3)) == domain.sample(
        size=5, random_state=np.random.default_rng(3)
    )
    assert domain.sample(size=5, random_state=np.random.RandomState(3)) == domain.sample(
        size=5, random_state=np.random.RandomState(3)
    )
    rng = np.random.default_rng(3)
    # A shared generator advances: two draws in a row differ.
    assert domain.sample(random_state=rng) != domain.sample(random_state=rng)


def test_global_numpy_seed_makes_default_sampling_reproducible():
    np.random.seed(42)
    first = uniform(0, 1).sample(size=5)
    np.random.seed(42)
    assert uniform(0, 1).sample(size=5) == first


def test_bad_random_state_is_rejected():
    with pytest.raises(TypeError, match="random_state must be"):
        uniform(0, 1).sample(random_state="seed")


# -- argument errors -----------------------------------------------------------


@pytest.mark.parametrize(
    "make, error, fragments",
    [
        (lambda: uniform(5, 1), ValueError, ["uniform(lower=5, upper=1)", "lower must be <= upper", "swap"]),
        (lambda: loguniform(0, 1), ValueError, ["loguniform(", "lower must be > 0"]),
        (lambda: loguniform(-1, 1), ValueError, ["lower must be > 0"]),
        (lambda: loguniform(1, 10, base=1), ValueError, ["base must be > 0 and != 1"]),
        (lambda: qloguniform(0, 10, 1), ValueError, ["qloguniform(", "lower must be > 0"]),
        (lambda: choice([]), ValueError, ["choice(categories=[])", "must not be empty"]),
        (lambda: choice("abc"), TypeError, ["categories must be a list"]),
        (lambda: choice(3), TypeError, ["categories must be a list"]),
        (lambda: choice({1, 2}), TypeError, ["categories must be a list"]),
        (lambda: grid_search(3), TypeError, ["grid_search(values=3)", "list of values"]),
        (lambda: grid_search("abc"), TypeError, ["list of values"]),
        (lambda: grid_search([]), ValueError, ["at least one value"]),
        (lambda: quniform(0, 1, 0), ValueError, ["quniform(", "q must be > 0"]),
        (lambda: quniform(0, 1, -0.1), ValueError, ["q must be > 0"]),
        (lambda: quniform(0, 1, 0.3), ValueError, ["not a multiple of q"]),
        (lambda: qrandint(0, 10, 0), ValueError, ["qrandint(", "q must be > 0"]),
        (lambda: qrandint(0, 10, 2.5), ValueError, ["q must be a whole number"]),
        (lambda: qrandint(1, 4, 5), ValueError, ["no multiple of q=5"]),
        (lambda: qrandn(0, 1, 0), ValueError, ["qrandn(", "q must be > 0"]),
        (lambda: randint(3, 3), ValueError, ["randint(lower=3, upper=3)", "upper is exclusive", "upper=4"]),
        (lambda: randint(5, 1), ValueError, ["lower must be <= upper"]),
        (lambda: randint(0.5, 3), ValueError, ["lower must be a whole number"]),
        (lambda: randint("0", 3), TypeError, ["lower must be an integer"]),
        (lambda: lograndint(0, 10), ValueError, ["lograndint(", "lower must be > 0"]),
        (lambda: qlograndint(0, 10, 1), ValueError, ["qlograndint(", "lower must be > 0"]),
        (lambda: uniform("a", 1), TypeError, ["lower must be a number"]),
        (lambda: uniform(0, float("nan")), ValueError, ["upper must be a number, got NaN"]),
        (lambda: uniform(0, float("inf")), ValueError, ["finite bounds"]),
        (lambda: randn(0, -1), ValueError, ["randn(mean=0, sd=-1)", "sd must be > 0"]),
        (lambda: randn(0, 0), ValueError, ["sd must be > 0"]),
        (lambda: sample_from(3), TypeError, ["sample_from(func=3)", "must be callable"]),
        (lambda: sample_from(lambda a, b: 0), TypeError, ["no arguments or exactly one"]),
    ],
)
def test_bad_arguments_name_the_problem(make, error, fragments):
    with pytest.raises(error) as info:
        make()
    for fragment in fragments:
        assert fragment in str(info.value)


def test_bad_size_is_rejected():
    with pytest.raises(ValueError, match="size must be an int >= 1"):
        uniform(0, 1).sample(size=0)


def test_a_domain_takes_one_sampler():
    domain = Float(1, 2).uniform()
    with pytest.raises(ValueError, match="already samples with Uniform"):
        domain.loguniform()


def test_grid_domain_cannot_be_sampled():
    with pytest.raises(RuntimeError, match="use choice"):
        Categorical([1, 2]).grid().sample()


def test_normal_needs_an_unbounded_domain():
    with pytest.raises(ValueError, match="unbounded"):
        Float(0, 1).normal()


# -- what search-algorithm adapters read -----------------------------------------


def test_samplers_expose_their_parameters():
    assert isinstance(uniform(0, 1).get_sampler(), Uniform)
    log = loguniform(1e-4, 1e-1, base=2).get_sampler()
    assert isinstance(log, LogUniform) and log.base == 2
    normal = randn(1.0, 3.0).get_sampler()
    assert isinstance(normal, Normal) and (normal.mean, normal.sd) == (1.0, 3.0)
    quantized = qloguniform(1, 100, 1).get_sampler()
    assert isinstance(quantized, Quantized) and quantized.q == 1
    assert isinstance(quantized.get_sampler(), LogUniform)
    assert isinstance(qrandint(0, 10, 2).get_sampler().get_sampler(), Uniform)
    assert isinstance(Categorical([1]).grid().get_sampler(), Grid)


def test_domain_attributes_and_strings():
    domain = randint(2, 9)
    assert isinstance(domain, Integer) and (domain.lower, domain.upper) == (2, 9)
    assert domain.domain_str == "(2, 9)"
    assert uniform(0.5, 1.5).domain_str == "(0.5, 1.5)"
    assert choice(["a", "b"]).domain_str == "['a', 'b']"
    cat = choice(["a", "b"])
    assert len(cat) == 2 and cat[1] == "b" and cat.categories == ["a", "b"]
    assert grid_search(("x", "y")) == {"grid_search": ["x", "y"]}
    assert not cat.is_grid() and Categorical(["a"]).grid().is_grid() and sample_from(lambda: 1).is_function()


def test_is_valid_follows_each_domains_bounds():
    assert randint(0, 10).is_valid(9) and not randint(0, 10).is_valid(10)
    assert not randint(0, 10).is_valid(3.5) and not randint(0, 10).is_valid("3")
    assert qrandint(0, 10, 5).is_valid(10) and not qrandint(0, 10, 5).is_valid(7)
    assert uniform(0, 1).is_valid(1.0) and not uniform(0, 1).is_valid(1.5)
    assert not uniform(0, 1).is_valid("0.5")
    assert choice(["a", 1]).is_valid(1) and not choice(["a", 1]).is_valid("b")
    assert choice([np.array([1, 2])]).is_valid(3) is False


def test_function_domain_reads_the_spec_or_nothing():
    assert Function(lambda spec: spec.config.x * 2).sample({"config": {"x": 3}}) == 6
    assert Function(lambda spec: spec["config"]["x"] + 1).sample({"config": {"x": 3}}) == 4
    assert Function(lambda: 7).sample() == 7
    assert sample_from(lambda: 5).sample(size=3) == [5, 5, 5]
    assert not math.isnan(sample_from(np.random.rand).sample())


def test_sample_takes_ray_tunes_config_keyword():
    # Ray Tune's signature is sample(config=None, size=1, random_state=None), on domains and samplers.
    assert Function(lambda spec: spec.config.x * 2).sample(config={"config": {"x": 4}}) == 8
    domain = uniform(0.0, 1.0)
    assert domain.sample(config=None, random_state=3) == domain.get_sampler().sample(domain, config={}, random_state=3)


def test_function_domain_takes_one_config_per_value():
    doubled = Function(lambda spec: spec.config.x * 2)
    assert doubled.sample(config=[{"config": {"x": 1}}, {"config": {"x": 5}}], size=2) == [2, 10]
    with pytest.raises(ValueError, match="got 1 configs for size=2"):
        doubled.sample(config=[{"config": {"x": 1}}], size=2)
