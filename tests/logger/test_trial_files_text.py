"""What the trial files' writer thread builds for each trial without json's and
os.path's general code: params.json's text and the files' paths, the same as theirs."""
import json
import math
import os
import random

from fasttune import _atomic
from fasttune._jsonable import json_default
from fasttune.logger import _trial_files
from fasttune.logger._trial_files import config_to_json, params_text


def _flat_value(rng):
    return rng.choice([
        lambda: rng.random() * 10 ** rng.randint(-30, 30), lambda: -rng.random(),
        lambda: rng.choice([math.nan, math.inf, -math.inf, -0.0, 0.0, 5e-324, 1e300, 1e16, 1e-5, 0.1]),
        lambda: rng.randint(-10 ** 30, 10 ** 30), lambda: rng.choice([True, False, None, 0, 1]),
        lambda: "".join(rng.choice('a"\\\n\x01\x7fé€\ud800\U0001F600 /') for _ in range(rng.randint(0, 6))),
    ])()


def _seeded_configs(seed, count):
    rng = random.Random(seed)
    for _ in range(count):
        config = {"".join(rng.choice('ab"é\n_\ud800') for _ in range(rng.randint(0, 4))): _flat_value(rng)
                  for _ in range(rng.randint(0, 6))}
        if rng.random() < 0.1:  # nested values, subclasses and non-str keys take json's own path
            config[rng.choice(["n", 3])] = rng.choice([{"a": [1, 2.5]}, [None], math.nan, json_default])
        yield config


def _outcome(function, *args, **kwargs):
    try:
        return function(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the same error is expected
        return type(exc), str(exc)


def test_params_text_is_jsons_indented_sorted_text_on_seeded_configs():
    for config in _seeded_configs(5, 5000):
        expected = _outcome(json.dumps, config, indent=2, sort_keys=True, default=json_default)
        assert _outcome(params_text, config) == expected, config


def test_config_to_json_is_jsons_text_on_seeded_configs():
    for config in _seeded_configs(6, 5000):
        assert _outcome(config_to_json, config) == _outcome(json.dumps, config, default=json_default), config


def test_a_flat_config_is_written_without_jsons_encoder(monkeypatch):
    """json's encoders cost more than the rest of a trial's files' Python work (the
    indenting one for params.json; the C one, set up at each call, for the result rows)."""
    def no_encoder(*args, **kwargs):
        raise AssertionError("json's encoder ran")

    monkeypatch.setattr(_trial_files.json, "dumps", no_encoder)
    monkeypatch.setattr(_trial_files, "_CONFIG_ENCODER", None)  # (its encode, if called, fails)
    config = {"x": 0.5, "act": "relu", "n": 3, "bn": False, "s": None, "inf": math.inf}
    assert params_text(config) == (
        '{\n  "act": "relu",\n  "bn": false,\n  "inf": Infinity,\n  "n": 3,\n  "s": null,\n  "x": 0.5\n}')
    assert config_to_json(config) == '{"x": 0.5, "act": "relu", "n": 3, "bn": false, "s": null, "inf": Infinity}'


def _seeded_paths(rng):
    parts = ["", "/", "//", "a", "trial_1", "é", ".", ".."]
    for _ in range(3000):
        yield "".join(rng.choice(parts) + rng.choice(["", "/", "//"]) for _ in range(rng.randint(0, 4)))


def test_trial_file_paths_are_os_path_joins():
    rng = random.Random(9)
    for directory in _seeded_paths(rng):
        for name in ("params.json", "result.json", "progress.csv"):
            assert _trial_files._in_directory(directory, name) == os.path.join(directory, name), directory


def test_temporary_names_are_those_split_and_joined():
    rng = random.Random(10)
    for path in _seeded_paths(rng):
        tag = rng.getrandbits(32)
        directory, name = os.path.split(path)
        assert _atomic._temporary_name(path, tag) == os.path.join(directory or ".", f".{name}.{tag:08x}.tmp"), path
