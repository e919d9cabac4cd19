"""PlacementGroupFactory and resource dicts."""
import pytest

from fasttune.execution.placement_groups import PlacementGroupFactory, resource_dict_to_pg_factory


def test_required_resources_sums_bundles():
    pgf = PlacementGroupFactory([{"CPU": 1, "GPU": 0.5}, {"CPU": 2}, {"GPU": 0.5, "custom": 1}])
    assert pgf.required_resources == {"CPU": 3.0, "GPU": 1.0, "custom": 1.0}
    assert pgf.strategy == "PACK"


def test_head_bundle_is_first_bundle_copy():
    pgf = PlacementGroupFactory([{"CPU": 2, "GPU": 1}, {"CPU": 4}])
    head = pgf.head_bundle
    assert head == {"CPU": 2.0, "GPU": 1.0}
    head["CPU"] = 99
    assert pgf.head_bundle == {"CPU": 2.0, "GPU": 1.0}


def test_zero_amounts_are_dropped():
    pgf = PlacementGroupFactory([{"CPU": 1, "GPU": 0}])
    assert pgf.bundles == [{"CPU": 1.0}]
    assert pgf == PlacementGroupFactory([{"CPU": 1}])


def test_equal_requests_share_shape_key_and_hash():
    a = PlacementGroupFactory([{"CPU": 1, "GPU": 1}, {"CPU": 2}])
    b = PlacementGroupFactory(({"GPU": 1.0, "CPU": 1.0}, {"CPU": 2}), "PACK")
    assert a.shape_key() == b.shape_key()
    assert a == b and hash(a) == hash(b)
    assert len({a, b}) == 1


@pytest.mark.parametrize(
    "other",
    [
        PlacementGroupFactory([{"CPU": 1, "GPU": 1}, {"CPU": 2}], strategy="SPREAD"),
        PlacementGroupFactory([{"CPU": 2}, {"CPU": 1, "GPU": 1}]),  # bundle order matters
        PlacementGroupFactory([{"CPU": 3, "GPU": 1}]),
    ],
)
def test_different_requests_differ(other):
    a = PlacementGroupFactory([{"CPU": 1, "GPU": 1}, {"CPU": 2}])
    assert a != other
    assert a.shape_key() != other.shape_key()
    assert a != a.shape_key()


@pytest.mark.parametrize(
    "bundles",
    [[], None, {"CPU": 1}, [{"CPU": -1}], [{"CPU": "2"}], [["CPU", 1]], [{"CPU": 1}, None]],
)
def test_bad_bundles_raise_value_error(bundles):
    with pytest.raises(ValueError):
        PlacementGroupFactory(bundles)


@pytest.mark.parametrize("strategy", ["STRICT_SPREAD", "SPREAD", "STRICT_PACK"])
def test_known_strategies(strategy):
    assert PlacementGroupFactory([{"CPU": 1}], strategy=strategy).strategy == strategy


@pytest.mark.parametrize("strategy", ["pack", "RANDOM", None])
def test_bad_strategy_raises_value_error(strategy):
    with pytest.raises(ValueError, match="strategy"):
        PlacementGroupFactory([{"CPU": 1}], strategy=strategy)


def test_resource_dict_to_pg_factory_maps_names():
    pgf = resource_dict_to_pg_factory({"cpu": 2, "gpu": 1, "custom": 3})
    assert pgf.bundles == [{"CPU": 2.0, "GPU": 1.0, "custom": 3.0}]
    upper = resource_dict_to_pg_factory({"CPU": 2, "GPU": 1, "custom": 3})
    assert upper == pgf


def test_resource_dict_defaults_cpu_to_one():
    assert resource_dict_to_pg_factory(None).bundles == [{"CPU": 1.0}]
    assert resource_dict_to_pg_factory({}).bundles == [{"CPU": 1.0}]
    assert resource_dict_to_pg_factory({"gpu": 1}).bundles == [{"GPU": 1.0, "CPU": 1.0}]


def test_resource_dict_custom_resources_and_passthrough():
    pgf = resource_dict_to_pg_factory({"cpu": 1, "custom_resources": {"TPU": 4}})
    assert pgf.head_bundle == {"CPU": 1.0, "TPU": 4.0}
    existing = PlacementGroupFactory([{"CPU": 1}, {"CPU": 1}])
    assert resource_dict_to_pg_factory(existing) is existing


@pytest.mark.parametrize("spec", [{"cpu": -1}, {"gpu": "1"}, {"cpu": True}, {"cpu": None}])
def test_resource_dict_bad_values_raise_value_error(spec):
    with pytest.raises(ValueError, match="must be a finite number >= 0"):
        resource_dict_to_pg_factory(spec)


@pytest.mark.parametrize("spec", [4, "cpu=2", [{"CPU": 1}]])
def test_resource_dict_bad_type_raises_type_error(spec):
    with pytest.raises(TypeError, match="PlacementGroupFactory"):
        resource_dict_to_pg_factory(spec)


def test_nan_resource_amount_rejected():
    with pytest.raises(ValueError):
        resource_dict_to_pg_factory({"cpu": float("nan")})


def test_ray_tunes_members():
    pgf = PlacementGroupFactory([{"CPU": 2, "GPU": 1}, {"CPU": 4}], strategy="SPREAD")
    assert pgf.head_cpus == 2.0 and not pgf.head_bundle_is_empty and pgf.strategy == "SPREAD"
    copy = pgf.bundles
    copy[0]["CPU"] = 99
    assert pgf.bundles == [{"CPU": 2.0, "GPU": 1.0}, {"CPU": 4.0}]  # a copy, as in Ray Tune
    empty_head = PlacementGroupFactory([{}, {"CPU": 2}])
    assert empty_head.head_bundle_is_empty and empty_head.head_cpus == 0.0
    assert resource_dict_to_pg_factory().bundles == [{"CPU": 1.0}]


def test_to_placement_group_reserves_the_bundles(ray_session):
    from ray.util.placement_group import remove_placement_group

    group = PlacementGroupFactory([{}, {"CPU": 1}], strategy="PACK").to_placement_group()
    try:
        assert group.wait(60)
        assert group.bundle_specs == [{"CPU": 1.0}]
    finally:
        remove_placement_group(group)
