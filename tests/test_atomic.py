import os
import stat

import pytest

from fasttune import _atomic
from fasttune._atomic import atomic_write, fsync_directory, move_directory_into_place
from fasttune_testing import StandIn


@pytest.fixture
def fsyncs(monkeypatch):
    """Counts _atomic's os.fsync calls (and still makes them)."""
    calls = []
    real = os.fsync

    def counting(fd):
        calls.append(fd)
        return real(fd)

    monkeypatch.setattr(_atomic, "os", StandIn(os, fsync=counting))  # _atomic's calls only
    return calls


@pytest.mark.parametrize("durable", [False, True])
def test_writes_bytes_and_text(tmp_path, durable):
    path = str(tmp_path / "a.json")
    atomic_write(path, b"\x00\xffbytes", durable=durable)
    assert open(path, "rb").read() == b"\x00\xffbytes"
    atomic_write(path, "t\u00e9xt", durable=durable)  # replaces; str as UTF-8
    assert open(path, "rb").read() == "t\u00e9xt".encode("utf-8")
    assert os.listdir(tmp_path) == ["a.json"]


def test_writes_the_parts_of_any_iterable_in_order(tmp_path):
    path = str(tmp_path / "state")
    atomic_write(path, (part for part in [b"head|", bytearray(b"middle|"), memoryview(b"tail")]), durable=False)
    assert open(path, "rb").read() == b"head|middle|tail"


def test_a_relative_path_is_written_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    atomic_write("rel.txt", "x", durable=True)
    assert os.listdir(tmp_path) == ["rel.txt"]


def test_durable_fsyncs_the_file_and_the_directory(tmp_path, fsyncs):
    atomic_write(str(tmp_path / "f"), b"x", durable=True)
    assert len(fsyncs) == 2


def test_not_durable_never_fsyncs(tmp_path, fsyncs):
    atomic_write(str(tmp_path / "f"), b"x", durable=False)
    assert fsyncs == []


def test_mode_is_set_at_creation(tmp_path):
    path = str(tmp_path / "secret.json")
    atomic_write(path, "{}", durable=False, mode=0o600)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_default_mode_is_what_open_gives(tmp_path):
    umask = os.umask(0o022)
    try:
        atomic_write(str(tmp_path / "a"), "x", durable=False)
        with open(tmp_path / "b", "w") as f:
            f.write("x")
    finally:
        os.umask(umask)
    assert os.stat(tmp_path / "a").st_mode == os.stat(tmp_path / "b").st_mode


@pytest.mark.parametrize("durable", [False, True])
def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch, durable):
    path = str(tmp_path / "state")
    atomic_write(path, b"old", durable=durable)

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(_atomic, "os", StandIn(os, replace=failing_replace))  # not another thread's replace
    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, b"new", durable=durable)
    assert os.listdir(tmp_path) == ["state"]
    assert open(path, "rb").read() == b"old"


def test_an_interrupted_write_leaves_no_temporary(tmp_path, monkeypatch):
    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(_atomic, "os", StandIn(os, fsync=interrupted))  # not another thread's fsync
    with pytest.raises(KeyboardInterrupt):
        atomic_write(str(tmp_path / "state"), b"new", durable=True)
    assert os.listdir(tmp_path) == []


def test_data_of_the_wrong_type_leaves_no_temporary(tmp_path):
    with pytest.raises(TypeError):
        atomic_write(str(tmp_path / "state"), 42, durable=False)  # type: ignore[arg-type]
    assert os.listdir(tmp_path) == []


def test_durable_is_keyword_only(tmp_path):
    with pytest.raises(TypeError):
        atomic_write(str(tmp_path / "f"), b"x", True)  # type: ignore[misc]
    with pytest.raises(TypeError):
        atomic_write(str(tmp_path / "f"), b"x")  # type: ignore[call-arg]


def test_fsync_directory(tmp_path, fsyncs):
    fsync_directory(str(tmp_path))
    assert len(fsyncs) == 1


def _tree(root, files):
    for name, text in files.items():
        os.makedirs(os.path.dirname(os.path.join(root, name)), exist_ok=True)
        with open(os.path.join(root, name), "w") as f:
            f.write(text)


def _read_tree(root):
    out = {}
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            out[os.path.relpath(path, root)] = open(path).read()
    return out


@pytest.mark.parametrize("existing", [None, {}, {"old": "1", "sub/deep": "2"}])
def test_move_directory_into_place_replaces_the_target(tmp_path, existing):
    source, target = str(tmp_path / "ckpt.tmp"), str(tmp_path / "ckpt")
    _tree(source, {"weights": "new", "sub/x": "y"})
    if existing is not None:
        os.makedirs(target)
        _tree(target, existing)
    move_directory_into_place(source, target, durable=False)
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]
    assert _read_tree(target) == {"weights": "new", os.path.join("sub", "x"): "y"}


def test_durable_move_fsyncs_every_file_and_directory(tmp_path, fsyncs):
    source, target = str(tmp_path / "ckpt.tmp"), str(tmp_path / "ckpt")
    _tree(source, {"a": "1", "sub/b": "2"})
    move_directory_into_place(source, target, durable=True)
    # two files, two directories in the tree, and the parent after the rename
    assert len(fsyncs) == 5
    assert _read_tree(target) == {"a": "1", os.path.join("sub", "b"): "2"}


def test_not_durable_move_never_fsyncs(tmp_path, fsyncs):
    source = str(tmp_path / "s")
    _tree(source, {"a": "1"})
    move_directory_into_place(source, str(tmp_path / "t"), durable=False)
    assert fsyncs == []


def test_exports():
    assert set(_atomic.__all__) == {"POSIX_PATHS", "atomic_write", "temporary_path", "fsync_directory", "move_directory_into_place",
                                   "sync_filesystem", "scratch_writes"}


def test_sync_filesystem_syncs_the_file_system_of_the_path_and_names_a_missing_one(tmp_path):
    """Whether the bytes reached the disk is unobservable without a power loss; what is
    observable: the call succeeds on a real file system and a path that does not exist
    is an error naming it."""
    (tmp_path / "f").write_bytes(b"x")
    _atomic.sync_filesystem(str(tmp_path))
    _atomic.sync_filesystem(str(tmp_path / "f"))
    with pytest.raises(FileNotFoundError, match="missing"):
        _atomic.sync_filesystem(str(tmp_path / "missing"))
