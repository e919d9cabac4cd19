"""What the trial files' writer thread builds for each trial without json's and
os.path's general code: params.json's text and the files' paths, the same as theirs."""
import json
import math
import os
import random

from fasttune import _atomic
from fasttune._jsonable import json_default
from fasttune.logger import _trial_files
from fasttune.logger._trial_files import params_text


def _flat_value(rng):
    return rng.choice([
        lambda: rng.random() * 10 ** rng.randint(-30, 30), lambda: -rng.random(),
        lambda: rng.choice([math.nan, math.inf, -math.inf, -0.0, 0.0, 5e-324, 1e300, 1e16, 1e-5, 0.1]),
        lambda: rng.randint(-10 ** 30, 10 ** 30), lambda: rng.choice([True, False, None, 0, 1]),
        lambda: "".join(rng.choice('a"\\\n\x01\x7fé€\ud800\U0001F600 /') for _ in range(rng.randint(0, 6))),
    ])()


def test_params_text_is_jsons_indented_sorted_text_on_seeded_configs():
    rng = random.Random(5)
    for _ in range(5000):
        config = {"".join(rng.choice('ab"é\n_\ud800') for _ in range(rng.randint(0, 4))): _flat_value(rng)
                  for _ in range(rng.randint(0, 6))}
        if rng.random() < 0.1:  # nested values, subclasses and non-str keys take json's own path
            config[rng.choice(["n", 3])] = rng.choice([{"a": [1, 2.5]}, [None], math.nan, json_default])
        try:
            expected = json.dumps(config, indent=2, sort_keys=True, default=json_default)
        except Exception as exc:  # noqa: BLE001 - the same error is expected
            expected = (type(exc), str(exc))
        try:
            got = params_text(config)
        except Exception as exc:  # noqa: BLE001
            got = (type(exc), str(exc))
        assert got == expected, config


def test_a_flat_config_is_written_without_jsons_encoder(monkeypatch):
    """json's indenting encoder costs more than the rest of a trial's files' Python work."""
    def no_encoder(*args, **kwargs):
        raise AssertionError("json.dumps ran")

    monkeypatch.setattr(_trial_files.json, "dumps", no_encoder)
    assert params_text({"x": 0.5, "act": "relu", "n": 3, "bn": False, "s": None, "inf": math.inf}) == (
        '{\n  "act": "relu",\n  "bn": false,\n  "inf": Infinity,\n  "n": 3,\n  "s": null,\n  "x": 0.5\n}')


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
