"""tb_hparams_records / tb_file_version_record: the compiled core writes, in C, the
bytes of _core_shared's Python specification (which its twin runs), for every input the
specification takes, and raises what it raises for the rest."""
import enum
import math
import random

import numpy as np
import pytest

import fasttune._core as compiled
import fasttune._core_fallback as twin
from fasttune._core_shared import tb_file_version_record_python, tb_hparams_records_python


class _Choice(enum.IntEnum):
    ONE = 1


class _Name(str):
    pass


def _adam():
    pass


def _value(rng):
    return rng.choice([
        lambda: rng.random() * 10 ** rng.randint(-8, 8), lambda: rng.randint(-10 ** 12, 10 ** 12),
        lambda: rng.choice([0, 1, -1, 2 ** 63, 10 ** 400]), lambda: rng.choice([math.nan, math.inf, -math.inf, -0.0]),
        lambda: rng.choice([True, False]), lambda: "".join(rng.choice("ab é€\n") for _ in range(rng.randint(0, 200))),
        lambda: None, lambda: [1, "a"], lambda: [], lambda: np.float64(0.25), lambda: _Choice.ONE,
        lambda: _Name("sgd"), lambda: _adam, lambda: "\ud800", lambda: {"nested": 1}, lambda: (1, 2),
    ])()


def _name(rng):
    if rng.random() < 0.03:
        return rng.choice([7, "\udc80", _Name("n")])
    return "".join(rng.choice("lr_/é") for _ in range(rng.choice([0, 1, 5, 20, 140])))


def _case(rng):
    """Seeded hparams, metric tags and wall time: mostly plain, some of each odd kind."""
    plain = rng.random() < 0.6
    hparams = {}
    for _ in range(rng.choice([0, 1, 1, 2, 3, 8, 30])):
        name = "".join(rng.choice("lr_/é") for _ in range(rng.choice([1, 5, 20, 140]))) if plain else _name(rng)
        hparams[name] = (rng.choice([rng.random(), rng.randint(-5, 5), True, "adam", None, [1]]) if plain
                         else _value(rng))
    tags = [f"ray/tune/{'m' * rng.choice([1, 10, 130])}{i}" for i in range(rng.choice([0, 1, 2, 5, 40]))]
    if not plain and rng.random() < 0.1:
        tags.append(rng.choice([3, "ray/tune/é", "\ud800"]))
    container = rng.choice([list, tuple, list, lambda t: iter(t)]) if not plain else rng.choice([list, tuple])
    wall_time = rng.random() * 2e9 if plain or rng.random() < 0.8 else rng.choice([7, 2 ** 1100, "1.0"])
    return hparams, tags, container, wall_time


def _outcome(make):
    try:
        return make()
    except Exception as exc:  # noqa: BLE001 - compared
        return type(exc), str(exc)


def test_hparams_records_are_the_specifications_bytes_on_seeded_inputs():
    rng = random.Random(2020)
    plain_met = 0
    for index in range(1500):
        hparams, tags, container, wall_time = _case(rng)
        expected = _outcome(lambda: tb_hparams_records_python(dict(hparams), container(tags), wall_time,
                                                              compiled.tfrecord))
        got = _outcome(lambda: compiled.tb_hparams_records(dict(hparams), container(tags), wall_time))
        assert got == expected, (hparams, tags, wall_time)
        plain_met += isinstance(got, bytes)
        if index % 25 == 0:  # the twin's checksums are pure Python: a sample
            assert _outcome(lambda: twin.tb_hparams_records(dict(hparams), container(tags), wall_time)) == expected
    assert 900 < plain_met < 1500  # both records and errors were compared


def test_file_version_record_is_the_specifications_bytes():
    rng = random.Random(7)
    for wall_time in [rng.random() * 2e9 for _ in range(200)] + [0.0, -0.0, math.nan, math.inf, 5, True, "x"]:
        expected = _outcome(lambda: tb_file_version_record_python(wall_time, compiled.tfrecord))
        assert _outcome(lambda: compiled.tb_file_version_record(wall_time)) == expected
        assert _outcome(lambda: twin.tb_file_version_record(wall_time)) == expected


def test_the_compiled_core_writes_plain_hparams_without_the_python_specification(monkeypatch):
    """A trial's end is the TensorBoard writer's largest piece of Python work: for plain
    values the compiled core writes the records itself, and runs the specification only
    for the rest (a callable here)."""
    params, tags = {"lr": 0.1, "opt": "adam", "layers": 3, "bn": True, "sizes": [1, 2], "seed": None}, ["ray/tune/loss"]
    expected = tb_hparams_records_python(params, tags, 12.5, compiled.tfrecord)
    version = tb_file_version_record_python(12.5, compiled.tfrecord)

    def specification(*args):
        raise AssertionError("the Python specification ran")

    monkeypatch.setattr(compiled, "tb_hparams_records_python", specification)
    monkeypatch.setattr(compiled, "tb_file_version_record_python", specification)
    assert compiled.tb_hparams_records(params, tags, 12.5) == expected
    assert compiled.tb_file_version_record(12.5) == version
    with pytest.raises(AssertionError, match="specification ran"):
        compiled.tb_hparams_records({"act": _adam}, tags, 12.5)
