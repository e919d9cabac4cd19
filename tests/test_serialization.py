"""fasttune._serialization: data as msgpack, objects cloudpickled and named."""
import datetime
import os
import pickle
import random

import msgpack
import numpy as np
import pytest

from fasttune._serialization import Loader, dump_file, load_file, pack, pack_state, unpickled_in


def test_numpy_arrays_and_scalars_are_data_not_pickles():
    value = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "n": np.int64(4), "ids": np.array([1, 2]),
             "live": {"t1", "t2"}, "done": frozenset({3})}
    loader = Loader()
    out = loader.unpack(pack(value))
    assert out["w"].dtype == np.float32 and out["w"].shape == (2, 3) and (out["w"] == value["w"]).all()
    # A numpy scalar keeps its type (a trainable's config gets what it was given), as
    # does a 0-d array.
    assert out["n"] == 4 and type(out["n"]) is np.int64 and list(out["ids"]) == [1, 2]
    scalars = [np.float32(1.5), np.bool_(True), np.str_("hi"), np.datetime64("2026-01-02"), np.array(5)]
    assert [(type(x), x.shape if isinstance(x, np.ndarray) else x) for x in loader.unpack(pack(scalars))] == \
        [(type(x), x.shape if isinstance(x, np.ndarray) else x) for x in scalars]
    assert out["live"] == {"t1", "t2"} and out["done"] == frozenset({3}) and type(out["done"]) is frozenset
    assert loader.unpickled == []
    out["w"][0, 0] = 99.0  # a writable copy, not a view of the bytes read
    assert unpickled_in(pack_state(value)) == []


@pytest.mark.parametrize("dtype, raw", [("<f8", b"\x00" * 3), ("|O", b"\x00" * 8), ("not a dtype", b"")])
def test_a_numpy_scalar_entry_fasttune_cannot_have_written_is_corrupt_data(dtype, raw):
    import msgpack

    from fasttune._serialization import CorruptData

    crafted = msgpack.packb([msgpack.ExtType(7, msgpack.packb([dtype, raw], use_bin_type=True))], use_bin_type=True)
    with pytest.raises(CorruptData, match="extension entry 7"):
        Loader().unpack(crafted)


def test_a_state_keeps_references_its_objects_share():
    rng = random.Random(3)
    state = {"optimizer": rng, "candidates": [rng, rng], "when": datetime.date(2026, 1, 1)}
    loader = Loader()
    out = loader.loads(pack_state(state))
    assert out["candidates"][0] is out["optimizer"] is out["candidates"][1]
    assert out["optimizer"].random() == random.Random(3).random()
    assert sorted(loader.unpickled) == ["Random", "date"]


def test_state_files_round_trip_and_older_pickles_still_load(tmp_path):
    path = str(tmp_path / "state")
    dump_file(path, {"brackets": [(1, {"a": 0.5})], "rng": np.random.RandomState(0)})
    out = load_file(path)
    assert out["brackets"] == [(1, {"a": 0.5})] and isinstance(out["rng"], np.random.RandomState)
    old = tmp_path / "old"
    old.write_bytes(pickle.dumps({"counter": 3}))  # what fasttune 0.1 wrote
    assert load_file(str(old)) == {"counter": 3}


def test_bytes_that_are_no_state_are_an_error():
    with pytest.raises(ValueError, match="not a state written by fasttune"):
        Loader().loads(pack({"just": "data"}))
    assert unpickled_in(b"\x00garbage") == ["unreadable data"]


class MakesAFile:
    """Unpickling it creates ``path``: proof that code ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_unpickled_in_names_what_a_state_would_load_without_loading_it(tmp_path):
    marker = str(tmp_path / "ran")
    names = unpickled_in(pack_state({"step": 3, "object": MakesAFile(marker)}))
    assert names == ["io.open"]
    assert not os.path.exists(marker)


def test_plain_data_and_tuples_need_no_pickle():
    loader = Loader()
    value = {"a": [1, 2.5, "x", None, True, {"b": b"raw"}], "shape": (2, (3, 4))}
    assert loader.unpack(pack(value)) == value
    assert loader.unpickled == []


@pytest.mark.parametrize("size", [0, 200, 255, 256, 65535, 65536, 300_000])
@pytest.mark.parametrize("with_objects", [False, True])
def test_pack_state_writes_the_bytes_of_packing_its_three_parts_whole(size, with_objects):
    # Joined without a packer's buffer: still exactly what msgpack makes of the array.
    value = {"blob": b"b" * size, "points": [{"x": i} for i in range(size // 1000)]}
    if with_objects:
        value["when"] = datetime.date(2026, 1, 2)
    packed = pack_state(value)
    outer = msgpack.unpackb(packed, raw=False)
    assert packed == msgpack.packb(outer, use_bin_type=True)
    assert (outer[2] is not None) == with_objects
    assert Loader().loads(packed)["blob"] == value["blob"]
