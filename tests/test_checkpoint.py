import json
import os
import pickle

import msgpack
import pytest

from fasttune.checkpoint import Checkpoint


@pytest.fixture
def ckpt_dir(tmp_path):
    d = tmp_path / "checkpoint_000001"
    (d / "sub").mkdir(parents=True)
    (d / "model.bin").write_bytes(b"\x00\x01weights")
    (d / "sub" / "state.txt").write_text("step=3")
    return d


def test_missing_path_raises_file_not_found(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="nope"):
        Checkpoint(missing)
    with pytest.raises(FileNotFoundError, match="nope"):
        Checkpoint.from_directory(str(missing))


def test_file_path_rejected(tmp_path):
    f = tmp_path / "file.bin"
    f.write_bytes(b"x")
    with pytest.raises(NotADirectoryError, match="file.bin"):
        Checkpoint(f)


def test_wrong_type_rejected():
    with pytest.raises(TypeError, match="directory path"):
        Checkpoint(123)


def test_path_is_absolute(ckpt_dir, monkeypatch):
    monkeypatch.chdir(ckpt_dir.parent)
    c = Checkpoint.from_directory(ckpt_dir.name)
    assert c.path == str(ckpt_dir)
    assert os.fspath(c) == str(ckpt_dir)
    assert os.path.isabs(c.path)


def test_fspath_usable_with_os_functions(ckpt_dir):
    c = Checkpoint(ckpt_dir)
    assert sorted(os.listdir(c)) == ["model.bin", "sub"]


def test_to_directory_fresh_temp_copy(ckpt_dir):
    c = Checkpoint(ckpt_dir)
    out = c.to_directory()
    assert out != c.path and os.path.isdir(out)
    with open(os.path.join(out, "model.bin"), "rb") as f:
        assert f.read() == b"\x00\x01weights"
    with open(os.path.join(out, "sub", "state.txt")) as f:
        assert f.read() == "step=3"
    # The copy is independent of the original.
    os.remove(os.path.join(out, "model.bin"))
    assert (ckpt_dir / "model.bin").exists()
    # Two calls give two different directories.
    assert c.to_directory() != out


def test_to_directory_given_path(ckpt_dir, tmp_path):
    target = tmp_path / "restore" / "here"
    out = Checkpoint(ckpt_dir).to_directory(target)
    assert out == str(target)
    assert (target / "sub" / "state.txt").read_text() == "step=3"
    # Copying into an existing directory keeps its other files.
    (target / "extra").write_text("keep")
    Checkpoint(ckpt_dir).to_directory(str(target))
    assert (target / "extra").read_text() == "keep"


def test_to_directory_onto_itself_is_a_noop(ckpt_dir):
    c = Checkpoint(ckpt_dir)
    assert c.to_directory(c.path) == c.path
    assert sorted(os.listdir(c.path)) == ["model.bin", "sub"]


def test_to_directory_inside_itself_rejected(ckpt_dir):
    with pytest.raises(ValueError, match="inside it"):
        Checkpoint(ckpt_dir).to_directory(ckpt_dir / "sub" / "copy")


def test_as_directory_yields_own_dir(ckpt_dir):
    c = Checkpoint(ckpt_dir)
    with c.as_directory() as d:
        assert d == c.path
        assert open(os.path.join(d, "sub", "state.txt")).read() == "step=3"
    assert os.path.isdir(c.path)  # not deleted afterwards


def test_metadata_round_trip(ckpt_dir):
    c = Checkpoint(ckpt_dir)
    assert c.get_metadata() == {}
    meta = {"epoch": 3, "score": 0.5, "tags": ["a", "b"], "nested": {"x": None}}
    c.set_metadata(meta)
    assert c.get_metadata() == meta
    # Stored as JSON in a hidden file inside the checkpoint directory.
    with open(ckpt_dir / ".metadata.json") as f:
        assert json.load(f) == meta
    # A new handle on the same directory sees it.
    assert Checkpoint(str(ckpt_dir)).get_metadata() == meta


def test_set_metadata_replaces_and_update_merges(ckpt_dir):
    c = Checkpoint(ckpt_dir)
    c.set_metadata({"a": 1, "b": 2})
    c.update_metadata({"b": 3, "c": 4})
    assert c.get_metadata() == {"a": 1, "b": 3, "c": 4}
    c.set_metadata({"z": 0})
    assert c.get_metadata() == {"z": 0}
    assert sorted(os.listdir(ckpt_dir)) == [".metadata.json", "model.bin", "sub"]


def test_metadata_travels_with_copy(ckpt_dir):
    c = Checkpoint(ckpt_dir)
    c.set_metadata({"epoch": 7})
    assert Checkpoint(c.to_directory()).get_metadata() == {"epoch": 7}


def test_metadata_type_errors(ckpt_dir):
    c = Checkpoint(ckpt_dir)
    with pytest.raises(TypeError, match="must be a dict"):
        c.set_metadata([1, 2])
    with pytest.raises(TypeError, match="must be a dict"):
        c.update_metadata("x")
    with pytest.raises(TypeError, match="JSON-serialisable"):
        c.set_metadata({"obj": object()})
    assert c.get_metadata() == {}  # nothing half-written


def test_corrupt_metadata_file_reported(ckpt_dir):
    (ckpt_dir / ".metadata.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        Checkpoint(ckpt_dir).get_metadata()


def test_deleted_directory_reported(tmp_path):
    d = tmp_path / "ck"
    d.mkdir()
    c = Checkpoint(d)
    d.rmdir()
    with pytest.raises(FileNotFoundError, match="no longer exists"):
        c.get_metadata()
    with pytest.raises(FileNotFoundError):
        c.to_directory()


def test_repr_equality_hash(ckpt_dir, tmp_path):
    a, b = Checkpoint(ckpt_dir), Checkpoint(str(ckpt_dir))
    assert repr(a) == f"Checkpoint(path={str(ckpt_dir)!r})"
    assert a == b and hash(a) == hash(b)
    assert len({a, b}) == 1
    other = tmp_path / "other"
    other.mkdir()
    assert a != Checkpoint(other)
    assert a != str(ckpt_dir)


def test_dict_round_trip_through_msgpack(ckpt_dir):
    c = Checkpoint(ckpt_dir)
    d = c.to_dict()
    assert d == {"path": str(ckpt_dir)}
    back = Checkpoint.from_dict(msgpack.unpackb(msgpack.packb(d)))
    assert back == c


def test_from_dict_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="'path'"):
        Checkpoint.from_dict({"dir": str(tmp_path)})
    with pytest.raises(ValueError, match="expects a dict like"):
        Checkpoint.from_dict(str(tmp_path))
    with pytest.raises(FileNotFoundError):
        Checkpoint.from_dict({"path": str(tmp_path / "gone")})


def test_pickle_round_trip(ckpt_dir):
    c = Checkpoint(ckpt_dir)
    back = pickle.loads(pickle.dumps(c))
    assert back == c and back.path == c.path


def test_metadata_nested_deeper_than_readers_accept_is_refused_when_set(tmp_path):
    checkpoint = Checkpoint.from_directory(str(tmp_path))
    deepest = value = {}
    for _ in range(255):  # 256 dicts in all: the most get_metadata reads
        value["x"] = {}
        value = value["x"]
    checkpoint.set_metadata(deepest)
    assert checkpoint.get_metadata() == deepest
    value["x"] = {}
    with pytest.raises(ValueError, match="at most 256 levels deep"):
        checkpoint.set_metadata(deepest)
    value.pop("x")
    assert checkpoint.get_metadata() == deepest  # the refused write changed nothing
