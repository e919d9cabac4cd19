"""Expanding param spaces: grids, nesting, dependencies, tags and errors."""
import logging

import pytest

from fasttune.search._validate import validate_param_space
from fasttune.search.sample import choice, grid_search, randint, sample_from, uniform
from fasttune.search.variant_generator import (
    assign_value,
    count_variants,
    flatten_resolved_vars,
    format_vars,
    generate_variants,
    get_preset_variants,
    parse_spec_vars,
    resolve_nested_dict,
)


def configs(space, **kwargs):
    return [spec["config"] for _, spec in generate_variants({"config": space}, **kwargs)]


# -- grids -----------------------------------------------------------------------


def test_grid_is_the_full_product_with_the_first_key_fastest():
    space = {"a": grid_search([1, 2]), "b": grid_search(["x", "y", "z"])}
    assert configs(space) == [
        {"a": 1, "b": "x"}, {"a": 2, "b": "x"},
        {"a": 1, "b": "y"}, {"a": 2, "b": "y"},
        {"a": 1, "b": "z"}, {"a": 2, "b": "z"},
    ]


def test_raw_grid_dicts_and_nested_grids_expand():
    space = {"opt": {"lr": {"grid_search": [0.1, 0.2]}}, "layers": [grid_search([1, 2]), 8]}
    got = configs(space)
    assert len(got) == 4
    assert {(c["opt"]["lr"], c["layers"][0]) for c in got} == {(0.1, 1), (0.1, 2), (0.2, 1), (0.2, 2)}
    assert all(c["layers"][1] == 8 for c in got)


def test_random_values_are_drawn_per_grid_point():
    got = configs({"g": grid_search(list(range(20))), "r": uniform(0, 1)}, random_state=0)
    assert len({c["r"] for c in got}) == 20


def test_constant_grid_search_draws_random_values_once():
    got = configs(
        {"g": grid_search(list(range(5))), "r": uniform(0, 1), "twice": sample_from(lambda spec: spec.config.g * 2)},
        constant_grid_search=True,
        random_state=0,
    )
    assert len({c["r"] for c in got}) == 1
    assert [c["twice"] for c in got] == [0, 2, 4, 6, 8]


def test_count_variants_is_grid_size_times_samples():
    spec = {"config": {"a": grid_search([1, 2, 3]), "b": {"c": grid_search([1, 2])}, "r": uniform(0, 1)}}
    assert count_variants(spec, 4) == 24
    assert count_variants(spec) == 6
    assert count_variants({"config": {"r": uniform(0, 1)}}, 7) == 7
    assert count_variants({"config": {"a": grid_search([1, 2])}}, 0) == 0
    with pytest.raises(ValueError, match="num_samples must be an int >= 0"):
        count_variants(spec, -2)


def test_grid_values_are_copied_per_variant():
    got = configs({"g": grid_search([{"hidden": [1, 2]}]), "n": grid_search([1, 2])})
    got[0]["g"]["hidden"].append(3)
    assert got[1]["g"]["hidden"] == [1, 2]


# -- nesting --------------------------------------------------------------------


def test_nested_dicts_lists_and_tuples_resolve_in_place():
    space = {
        "opt": {"lr": uniform(0.1, 0.2), "name": "sgd"},
        "layers": [randint(1, 4), 32, (choice(["relu"]), 1)],
        "empty": {},
    }
    (config,) = configs(space, random_state=0)
    assert 0.1 <= config["opt"]["lr"] <= 0.2 and config["opt"]["name"] == "sgd"
    assert config["layers"][0] in (1, 2, 3) and config["layers"][1] == 32
    assert config["layers"][2] == ("relu", 1) and isinstance(config["layers"][2], tuple)
    assert config["empty"] == {}


def test_the_input_spec_is_not_modified_and_configs_are_independent():
    space = {"fixed": [1, 2], "r": uniform(0, 1), "g": grid_search([1, 2])}
    spec = {"config": space}
    got = [c for _, c in generate_variants(spec)]
    got[0]["config"]["fixed"].append(3)
    assert got[1]["config"]["fixed"] == [1, 2]
    assert space["fixed"] == [1, 2] and isinstance(space["r"], type(uniform(0, 1)))


def test_choice_of_dicts_with_domains_is_resolved_too():
    space = {"model": choice([{"kind": "mlp", "width": randint(8, 16)}])}
    (config,) = configs(space, random_state=0)
    assert config["model"]["kind"] == "mlp" and 8 <= config["model"]["width"] < 16


def test_grid_values_containing_domains_are_resolved():
    got = configs({"opt": grid_search([{"lr": uniform(0, 1)}, {"lr": 5}])}, random_state=0)
    assert 0 <= got[0]["opt"]["lr"] <= 1 and got[1]["opt"]["lr"] == 5


# -- sample_from -----------------------------------------------------------------


def test_sample_from_reads_another_value():
    (config,) = configs({"x": randint(1, 10), "y": sample_from(lambda spec: spec.config.x * 2)}, random_state=0)
    assert config["y"] == config["x"] * 2


def test_sample_from_chain_resolves_in_dependency_order():
    space = {
        "c": sample_from(lambda spec: spec.config.b + 1),
        "b": sample_from(lambda spec: spec.config.a * 10),
        "a": sample_from(lambda spec: spec.config.base + 1),
        "base": randint(0, 5),
    }
    (config,) = configs(space, random_state=0)
    assert config["a"] == config["base"] + 1
    assert config["b"] == config["a"] * 10
    assert config["c"] == config["b"] + 1


def test_sample_from_reads_nested_values_and_list_items():
    space = {
        "opt": {"lr": uniform(0, 1)},
        "layers": [randint(1, 5), 7],
        "wd": sample_from(lambda spec: spec.config.opt.lr / 10),
        "first": sample_from(lambda spec: spec["config"]["layers"][0] + spec.config.layers[1]),
    }
    (config,) = configs(space, random_state=0)
    assert config["wd"] == config["opt"]["lr"] / 10
    assert config["first"] == config["layers"][0] + 7


def test_sample_from_accepts_config_style_and_no_argument_functions():
    space = {"x": 4, "y": sample_from(lambda config: config["x"] + 1), "z": sample_from(lambda: 9)}
    assert configs(space) == [{"x": 4, "y": 5, "z": 9}]


def test_sample_from_reads_a_parameter_named_like_a_dict_method():
    space = {"values": 3, "y": sample_from(lambda spec: spec.config.values * 2)}
    assert configs(space) == [{"values": 3, "y": 6}]


def test_sample_from_reads_grid_values():
    got = configs({"g": grid_search([1, 2]), "y": sample_from(lambda spec: spec.config.g + 100)})
    assert [(c["g"], c["y"]) for c in got] == [(1, 101), (2, 102)]


def test_sample_from_reads_a_value_that_a_choice_brings_in():
    space = {
        "model": choice([{"width": randint(8, 16)}]),
        "double": sample_from(lambda spec: spec.config.model.width * 2),
    }
    (config,) = configs(space, random_state=0)
    assert config["double"] == config["model"]["width"] * 2


def test_sample_from_returning_a_domain_is_drawn_next_round():
    (config,) = configs({"x": sample_from(lambda: uniform(5, 6))}, random_state=0)
    assert 5 <= config["x"] <= 6


def test_a_cycle_is_reported_with_its_paths():
    space = {"a": sample_from(lambda spec: spec.config.b), "b": sample_from(lambda spec: spec.config.a)}
    with pytest.raises(ValueError, match="cycle") as info:
        configs(space)
    assert "config/a -> config/b -> config/a" in str(info.value)


def test_reading_itself_is_a_cycle():
    with pytest.raises(ValueError, match=r"cycle \(config/a -> config/a\)"):
        configs({"a": sample_from(lambda spec: spec.config.a)})


def test_reading_a_missing_key_names_it():
    with pytest.raises(ValueError, match="sample_from at 'config/y' raised AttributeError.*'config/nope'"):
        configs({"x": 1, "y": sample_from(lambda spec: spec.config.nope)})


def test_errors_inside_sample_from_name_the_parameter():
    with pytest.raises(ValueError, match="sample_from at 'config/y' raised ZeroDivisionError") as info:
        configs({"y": sample_from(lambda: 1 / 0)})
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_a_space_that_never_settles_is_an_error():
    def forever():
        return sample_from(forever)

    with pytest.raises(ValueError, match="did not settle"):
        configs({"x": sample_from(forever)})


# -- reproducibility -------------------------------------------------------------


def test_variants_are_reproducible_with_a_seed():
    space = {"g": grid_search([1, 2, 3]), "r": uniform(0, 1), "c": choice(list(range(100))),
             "d": sample_from(lambda spec: spec.config.r * 3)}
    assert configs(space, random_state=11) == configs(space, random_state=11)
    assert configs(space, random_state=11) != configs(space, random_state=12)


def test_generation_is_lazy():
    calls = []
    space = {"g": grid_search(list(range(100_000))), "y": sample_from(lambda: calls.append(1) or len(calls))}
    variants = generate_variants({"config": space})
    first = [next(variants) for _ in range(3)]
    assert [v[1]["config"]["y"] for v in first] == [1, 2, 3]
    assert len(calls) == 3


# -- resolved vars, tags ------------------------------------------------------------


def test_resolved_vars_hold_every_drawn_and_grid_value():
    space = {"lr": grid_search([0.01]), "opt": {"momentum": uniform(0.9, 0.9)}, "fixed": 3}
    ((resolved, spec),) = list(generate_variants({"config": space}))
    assert resolved == {("config", "lr"): 0.01, ("config", "opt", "momentum"): 0.9}
    assert format_vars(resolved) == "lr=0.0100,momentum=0.9000"
    assert flatten_resolved_vars(resolved) == {"lr": 0.01, "opt/momentum": 0.9}
    assert spec["config"]["fixed"] == 3


def test_format_vars_sorts_and_sanitises():
    tag = format_vars({("config", "b"): "a/b c", ("config", "a"): 3, ("config", "x", 0): (1, 2)})
    assert tag == "a=3,b=a_b_c,0=1_2"


def test_resolve_nested_dict_feeds_format_vars():
    flat = resolve_nested_dict({"a": {"b": 0.5}, "c": "x"})
    assert flat == {("a", "b"): 0.5, ("c",): "x"}
    assert format_vars(flat) == "b=0.5000,c=x"


def test_parse_spec_vars_splits_constants_domains_and_grids():
    domain = uniform(0, 1)
    resolved, domains, grids = parse_spec_vars({"z": {"grid_search": [1]}, "a": grid_search([2, 3]), "u": [domain], "k": 1})
    assert resolved == [(("k",), 1)]
    assert domains == [(("u", 0), domain)]
    assert [(path, g.categories) for path, g in grids] == [(("a",), [2, 3]), (("z",), [1])]


def test_assign_value_rebuilds_tuples():
    spec = {"a": [1, (2, (3, 4))]}
    assign_value(spec, ("a", 1, 1, 0), 9)
    assert spec == {"a": [1, (2, (9, 4))]}


# -- presets ------------------------------------------------------------------------


def test_preset_values_replace_domains_and_grids():
    spec = {"config": {"lr": uniform(0, 1), "wd": uniform(0, 1), "g": grid_search([1, 2]), "opt": {"m": uniform(0, 1)}}}
    got = list(get_preset_variants(spec, {"lr": 0.5, "g": 2, "opt": {"m": 0.25}}, random_state=0))
    assert len(got) == 1
    resolved, resolved_spec = got[0]
    assert resolved_spec["config"]["lr"] == 0.5 and resolved_spec["config"]["g"] == 2
    assert resolved_spec["config"]["opt"] == {"m": 0.25}
    assert 0 <= resolved_spec["config"]["wd"] <= 1
    assert set(resolved) == {("config", "wd")}


def test_preset_keeps_remaining_grids():
    spec = {"config": {"lr": uniform(0, 1), "g": grid_search([1, 2, 3])}}
    got = [s["config"] for _, s in get_preset_variants(spec, {"lr": 0.5})]
    assert [c["g"] for c in got] == [1, 2, 3] and all(c["lr"] == 0.5 for c in got)


def test_preset_with_unknown_key_is_an_error():
    with pytest.raises(ValueError, match="'config/nope', which is not in the param_space"):
        get_preset_variants({"config": {"lr": uniform(0, 1)}}, {"nope": 1})


def test_preset_outside_its_domain_is_logged_and_used(caplog):
    with caplog.at_level(logging.WARNING, logger="fasttune.search.variant_generator"):
        ((_, spec),) = list(get_preset_variants({"config": {"lr": uniform(0, 1)}}, {"lr": 5.0}))
    assert spec["config"]["lr"] == 5.0
    assert "outside its search space (0.0, 1.0)" in caplog.text


# -- validation ----------------------------------------------------------------------


def test_validate_param_space_messages():
    with pytest.raises(TypeError) as info:
        validate_param_space([1, 2])
    assert str(info.value) == (
        "param_space must be a dict of parameter names to values or search-space domains, got list"
    )
    with pytest.raises(TypeError, match=r"param_space\['opt'\]\['lr'\]: grid_search needs a list"):
        validate_param_space({"opt": {"lr": {"grid_search": 0.1}}})
    with pytest.raises(ValueError, match="at least one value"):
        validate_param_space({"lr": {"grid_search": []}})
    with pytest.raises(ValueError, match="mixes 'grid_search' with other keys"):
        validate_param_space({"lr": {"grid_search": [1], "other": 2}})
    with pytest.raises(TypeError, match=r"param_space\['x'\]\['grid_search'\]\[0\]\['y'\]"):
        validate_param_space({"x": grid_search([{"y": {"grid_search": 5}}])})
    validate_param_space({"a": choice([[1, 2], [3]]), "b": [uniform(0, 1)], "c": grid_search([1]), "d": print})


def _nested(depth, leaf=1):
    for _ in range(depth):
        leaf = {"a": leaf}
    return leaf


@pytest.mark.parametrize("depth", [101, 300, 5000])
def test_a_param_space_nested_deeper_than_a_result_may_be_is_refused_naming_where(depth):
    """A config is written to params.json and, in every result, result.json: nested deeper
    than a reported result may be (100 levels), it is refused up front with a clear error,
    never a RecursionError, nor files the readers then refuse as corrupt."""
    import fasttune as tune

    for space in ({"net": _nested(depth)}, {"net": grid_search([1, [_nested(depth)]])},
                  {"net": choice([1, _nested(depth)])}):
        with pytest.raises(ValueError, match=r"param_space\['net'\]\S* is nested more than 100 levels deep"):
            validate_param_space(space)
        with pytest.raises(ValueError, match="nested more than 100 levels deep"):
            tune.Tuner(lambda config: None, param_space=space)
    validate_param_space({"net": _nested(99), "grid": grid_search([_nested(98)]),
                          "choice": choice([_nested(99), [_nested(98)]])})  # (grid levels are not config levels)
    for space in ({"net": _nested(100)}, {"net": choice([_nested(100)])}):  # as deep as may be, both ways
        validate_param_space(space)

def test_generate_variants_rejects_a_malformed_grid_with_its_path():
    with pytest.raises(TypeError, match="config/opt/lr: grid_search needs a list"):
        list(generate_variants({"config": {"opt": {"lr": {"grid_search": 3}}}}))
    with pytest.raises(TypeError, match="spec must be a dict"):
        generate_variants([1])


def test_generate_variants_takes_ray_tunes_parameter_name():
    variants = generate_variants(unresolved_spec={"config": {"a": grid_search([1, 2])}})
    assert [spec["config"]["a"] for _, spec in variants] == [1, 2]
