"""BasicVariantGenerator.save_to_dir packs its points to evaluate once, not at every save
(a snapshot of a sweep given 30,000 points packed them all each time), and restores the
same sweep from what it writes now and from what it wrote before."""
import itertools
import os

import numpy as np
import pytest

import fasttune.search.basic_variant as basic_variant
from fasttune._serialization import pack_noting_pickles, pack_state
from fasttune.search.basic_variant import BasicVariantGenerator
from fasttune.search.sample import grid_search, uniform

_ids = itertools.count()


class _Trial:
    def __init__(self, config, experiment_tag):
        self.config, self.experiment_tag, self.trial_id = config, experiment_tag, f"t{next(_ids)}"


class _Experiment:
    def __init__(self, num_samples):
        self.spec = {"config": {"g": grid_search([1, 2]), "r": uniform(0, 1)}, "num_samples": num_samples}
        self.name = "exp"

    def trial_factory(self, config, experiment_tag, evaluated_params, trial_id):
        return _Trial(config, experiment_tag)


def _generator(points, num_samples=6):
    generator = BasicVariantGenerator(points_to_evaluate=points, random_state=5)
    generator.add_configurations(_Experiment(num_samples))
    return generator


def _rest(generator):
    trials = []
    while (trial := generator.next_trial()) is not None:
        trials.append((trial.experiment_tag, trial.config))
    return trials


PLAIN_POINTS = [{"r": 0.1 * i, "g": 1 + i % 2} for i in range(4)]


def _packed_values(monkeypatch):
    """The values basic_variant packs (pack_state, pack_noting_pickles), in order."""
    packed = []

    def spying(pack):
        def spy(value):
            packed.append(value)
            return pack(value)
        return spy

    monkeypatch.setattr(basic_variant, "pack_state", spying(pack_state))
    monkeypatch.setattr(basic_variant, "pack_noting_pickles", spying(pack_noting_pickles))
    return packed


def _holds_points(value):
    return value == PLAIN_POINTS or (isinstance(value, dict) and bool(value.get("points_to_evaluate")))


def test_the_points_are_packed_at_the_first_save_only(tmp_path, monkeypatch):
    generator = _generator(PLAIN_POINTS)
    generator.next_trial()
    packed = _packed_values(monkeypatch)
    assert generator.save_to_dir(str(tmp_path), session_str="a") is not False
    first = [value for value in packed if _holds_points(value)]
    del packed[:]
    generator.next_trial()
    assert generator.save_to_dir(str(tmp_path), session_str="b") is not False
    assert len(first) == 1
    assert packed and not any(_holds_points(value) for value in packed)


@pytest.mark.parametrize("saves", [1, 2, 3])
@pytest.mark.parametrize("stop_after", [0, 1, 3, 4, 7])
def test_a_restore_from_any_save_continues_the_same_sweep(tmp_path, saves, stop_after):
    expected = _rest(_generator(PLAIN_POINTS))
    generator = _generator(PLAIN_POINTS)
    before = [(t.experiment_tag, t.config) for t in (generator.next_trial() for _ in range(stop_after))]
    for save in range(saves):  # (each later save reuses the first one's points)
        os.makedirs(tmp_path / str(save))
        assert generator.save_to_dir(str(tmp_path / str(save)), session_str="s") is not False
    restored = BasicVariantGenerator()
    restored.restore_from_dir(str(tmp_path / str(saves - 1)))
    assert restored.get_state()["points_to_evaluate"] == PLAIN_POINTS
    # A restored generator saves its own points again, and a restore of that goes on the same.
    drawn = restored.next_trial()
    drawn = [] if drawn is None else [(drawn.experiment_tag, drawn.config)]
    os.makedirs(tmp_path / "again")
    assert restored.save_to_dir(str(tmp_path / "again"), session_str="s") is not False
    again = BasicVariantGenerator()
    again.restore_from_dir(str(tmp_path / "again"))
    assert before + drawn + _rest(again) == expected


@pytest.mark.parametrize("points", [
    [{"r": complex(1, 2), "g": 1}],  # pickled, not data
    [{"r": [0.5], "g": 2}, {"r": 0.25, "g": 1}],  # a list could change
    [{"r": np.float32(0.5), "g": np.int64(2)}],  # numpy numbers are data
    [],
])
def test_points_of_any_kind_come_back_as_they_were(tmp_path, points):
    generator = _generator(points, num_samples=3)
    for save in range(2):
        assert generator.save_to_dir(str(tmp_path), session_str=str(save)) is not False
    restored = BasicVariantGenerator()
    restored.restore_from_dir(str(tmp_path))
    saved_points = restored.get_state()["points_to_evaluate"]
    assert saved_points == points
    assert [type(value) for point in saved_points for value in point.values()] == [
        type(value) for point in points for value in point.values()]


def test_a_file_of_the_previous_version_is_still_read(tmp_path):
    expected = _rest(_generator(PLAIN_POINTS))
    generator = _generator(PLAIN_POINTS)
    before = [(generator.next_trial().experiment_tag) for _ in range(2)]
    state = generator.get_state()
    state["version"] = 2  # as the previous fasttune wrote it: the points in the state
    with open(tmp_path / BasicVariantGenerator.CKPT_FILE_TMPL.format("old"), "wb") as f:
        f.write(pack_state(state))
    restored = BasicVariantGenerator()
    restored.restore_from_dir(str(tmp_path))
    assert before == [tag for tag, _ in expected[:2]]
    assert _rest(restored) == expected[2:]


def test_a_generator_pickled_before_points_were_packed_once_still_saves(tmp_path):
    generator = _generator(PLAIN_POINTS)
    del generator._packed_points, generator._atoms_only  # (as an older fasttune pickled it)
    assert generator.save_to_dir(str(tmp_path), session_str="s") is not False
    restored = BasicVariantGenerator()
    restored.restore_from_dir(str(tmp_path))
    assert _rest(restored) == _rest(_generator(PLAIN_POINTS))


def _saved_state(path):
    from fasttune._serialization import Loader

    (name,) = [entry for entry in os.listdir(path) if entry.startswith("basic-variant-state")]
    with open(os.path.join(path, name), "rb") as f:
        return Loader().loads(f.read())


def test_a_restore_replacing_the_points_saves_the_new_ones_not_the_bytes_kept_for_the_old(tmp_path):
    for name in ("other", "first", "again"):
        (tmp_path / name).mkdir()
    many = [{"r": 0.01 * i, "g": 1} for i in range(50)]
    other = _generator(many, num_samples=60)
    other.next_trial()
    assert other.save_to_dir(str(tmp_path / "other"), session_str="s") is not False
    generator = _generator(PLAIN_POINTS)
    assert generator.save_to_dir(str(tmp_path / "first"), session_str="s") is not False  # packs its 4 points
    generator.restore_from_dir(str(tmp_path / "other"))
    assert generator.save_to_dir(str(tmp_path / "again"), session_str="s") is not False
    restored = BasicVariantGenerator()
    restored.restore_from_dir(str(tmp_path / "again"))
    assert restored.get_state()["points_to_evaluate"] == many


def test_only_a_state_with_packed_points_says_version_3(tmp_path):
    # Older fasttune reads version 2: a state without packed points stays readable by it.
    (tmp_path / "none").mkdir()
    (tmp_path / "plain").mkdir()
    assert BasicVariantGenerator().save_to_dir(str(tmp_path / "none"), session_str="s") is not False
    assert _saved_state(str(tmp_path / "none"))["version"] == 2
    assert _generator(PLAIN_POINTS).save_to_dir(str(tmp_path / "plain"), session_str="s") is not False
    saved = _saved_state(str(tmp_path / "plain"))
    assert saved["version"] == 3 and "packed_points" in saved


def test_a_pickled_object_in_the_packed_points_is_refused_not_loaded(tmp_path):
    import datetime

    from fasttune._serialization import pack

    generator = _generator(PLAIN_POINTS)
    assert generator.save_to_dir(str(tmp_path), session_str="s") is not False
    path = str(tmp_path)
    (name,) = [entry for entry in os.listdir(path) if entry.startswith("basic-variant-state")]
    state = _saved_state(path)
    state["packed_points"] = pack([{"g": 1, "r": datetime.date(2026, 1, 2)}])  # (crafted: a pickle inside)
    with open(os.path.join(path, name), "wb") as f:
        f.write(pack_state(state))
    with pytest.raises(ValueError, match="pickled object"):
        BasicVariantGenerator().restore_from_dir(path)
