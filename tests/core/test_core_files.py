"""write_file_batch: the writer threads' file system calls, made by the compiled core
without the GIL and by its twin, with the same files, descriptors and failures."""
import errno
import json
import os
import subprocess
import sys
import textwrap

import pytest

import fasttune._core as compiled
import fasttune._core_fallback as twin
from fasttune._core_shared import FILE_APPEND, FILE_MKDIR, FILE_REPLACE, AppendNotCutBack

IMPLEMENTATIONS = (compiled, twin)


def _tree(root):
    """Every file under ``root`` with its bytes, every directory as None."""
    found = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs:
            found[os.path.relpath(os.path.join(directory, name), root)] = None
        for name in files:
            with open(os.path.join(directory, name), "rb") as f:
                found[os.path.relpath(os.path.join(directory, name), root)] = f.read()
    return found


def _open_fds(fds):
    return [fd for pair in fds if pair is not None for fd in pair if fd >= 0]


@pytest.mark.parametrize("core", IMPLEMENTATIONS)
def test_a_trials_files_are_made_with_their_content_and_kept_open_or_closed(core, tmp_path):
    trial = str(tmp_path / "exp" / "trial_0")  # its parent is missing too
    fds, failure, whole = core.write_file_batch([
        (FILE_MKDIR, trial),
        (FILE_MKDIR, trial),  # there already: fine
        (FILE_REPLACE, trial + "/params.json", trial + "/.params.json.1.tmp", b'{"x": 1}'),
        (FILE_APPEND, trial + "/result.json", -1, b"r1\n", trial + "/progress.csv", -1, b"h\r\n1\r\n", False, False),
        (FILE_APPEND, str(tmp_path / "events"), -1, b"ev", None, -1, b"", True, False),
    ])
    assert failure is None
    assert fds[:3] == [None, None, None] and fds[4] == (-1, -1)
    json_fd, csv_fd = fds[3]
    assert json_fd >= 0 and csv_fd >= 0
    # The kept descriptors append the next batch; an empty part writes nothing.
    fds, failure, whole = core.write_file_batch([
        (FILE_APPEND, trial + "/result.json", json_fd, b"r2\n", trial + "/progress.csv", csv_fd, b"", True, False),
        (FILE_REPLACE, trial + "/params.json", trial + "/.params.json.2.tmp", b'{"x": 2}'),
    ])
    assert (fds, failure) == ([(-1, -1), None], None)
    for fd in (json_fd, csv_fd):
        with pytest.raises(OSError):
            os.fstat(fd)  # closed
    assert _tree(tmp_path) == {
        "exp": None, "exp/trial_0": None, "events": b"ev",
        "exp/trial_0/params.json": b'{"x": 2}',
        "exp/trial_0/result.json": b"r1\nr2\n",
        "exp/trial_0/progress.csv": b"h\r\n1\r\n",
    }


@pytest.mark.parametrize("core", IMPLEMENTATIONS)
def test_a_failed_op_stops_the_batch_and_names_its_file(core, tmp_path):
    missing = str(tmp_path / "missing" / "result.json")
    fds, failure, whole = core.write_file_batch([
        (FILE_MKDIR, str(tmp_path / "a")),
        (FILE_APPEND, missing, -1, b"x", None, -1, b"", False, False),
        (FILE_MKDIR, str(tmp_path / "never")),
    ])
    assert fds == [None, (-1, -1)]
    assert isinstance(failure, FileNotFoundError)
    assert (failure.errno, failure.filename) == (errno.ENOENT, missing)
    assert sorted(os.listdir(tmp_path)) == ["a"]
    # make_parent makes the missing directory and goes on.
    fds, failure, whole = core.write_file_batch([(FILE_APPEND, missing, -1, b"x", None, -1, b"", True, True)])
    assert (fds, failure) == ([(-1, -1)], None)
    assert (tmp_path / "missing" / "result.json").read_bytes() == b"x"


@pytest.mark.parametrize("core", IMPLEMENTATIONS)
def test_opening_is_both_or_neither_and_a_failed_replace_leaves_no_temporary_file(core, tmp_path):
    os.mkdir(tmp_path / "t")
    (tmp_path / "t" / "blocked").mkdir()  # a directory where the second file should be
    before = os.listdir("/proc/self/fd")
    fds, failure, whole = core.write_file_batch([
        (FILE_APPEND, str(tmp_path / "t" / "result.json"), -1, b"x", str(tmp_path / "t" / "blocked"), -1, b"y",
         False, False)])
    assert fds == [(-1, -1)]
    assert isinstance(failure, IsADirectoryError) and failure.filename == str(tmp_path / "t" / "blocked")
    assert os.listdir("/proc/self/fd") == before  # the first file was closed again
    assert (tmp_path / "t" / "result.json").read_bytes() == b""  # opened (created), nothing written

    fds, failure, whole = core.write_file_batch([
        (FILE_REPLACE, str(tmp_path / "t" / "blocked"), str(tmp_path / "t" / ".tmp"), b"{}")])
    assert isinstance(failure, IsADirectoryError) and failure.filename == str(tmp_path / "t" / "blocked")
    assert sorted(os.listdir(tmp_path / "t")) == ["blocked", "result.json"]  # the temporary file went


@pytest.mark.parametrize("core", IMPLEMENTATIONS)
@pytest.mark.parametrize("op", [
    [FILE_MKDIR, "a"], (9, "a"), (FILE_MKDIR,), (FILE_MKDIR, b"a"), (FILE_MKDIR, ""), (FILE_MKDIR, "a\0b"),
    (FILE_REPLACE, "a", "b", "text"), (FILE_APPEND, "a", -1, b"", None, -1, b"", 1, False),
    (FILE_APPEND, "a", 3, b"", "b", -1, b"", False, False), (FILE_APPEND, "a", -1, b"", None, 4, b"", False, False),
])
def test_malformed_ops_are_refused_before_any_runs(core, tmp_path, op):
    with pytest.raises((TypeError, ValueError)) as compiled_error:
        compiled.write_file_batch([(FILE_MKDIR, str(tmp_path / "first")), op])
    with pytest.raises(type(compiled_error.value)) as twin_error:
        twin.write_file_batch([(FILE_MKDIR, str(tmp_path / "first")), op])
    assert str(compiled_error.value) == str(twin_error.value)
    assert not (tmp_path / "first").exists()


@pytest.mark.parametrize("not_a_list", [None, (), "ops", {FILE_MKDIR: "a"}])
def test_what_is_no_list_of_ops_is_refused_as_the_twin_refuses_it(not_a_list):
    with pytest.raises(TypeError) as compiled_error:
        compiled.write_file_batch(not_a_list)
    with pytest.raises(TypeError) as twin_error:
        twin.write_file_batch(not_a_list)
    assert str(compiled_error.value) == str(twin_error.value)


@pytest.mark.parametrize("core", IMPLEMENTATIONS)
def test_an_op_swapped_while_the_ops_are_checked_is_not_run(core, tmp_path):
    # An op kind with its own __eq__ runs Python code during the checks; what it puts in
    # the caller's list after an op was taken must not run (unchecked, its data is no bytes).
    ops = []
    swapped_in = (FILE_REPLACE, str(tmp_path / "swapped"), str(tmp_path / ".swapped.tmp"), [0] * 1000)

    class Zero(int):
        def __eq__(self, other):
            ops[1] = swapped_in
            return int(self) == other

        __hash__ = int.__hash__

    # The first op's kind (a bool) is one the compiled core leaves to the Python check, so
    # that check runs before the second op is taken.
    ops += [(bool(FILE_MKDIR), str(tmp_path / "a")), (FILE_MKDIR, str(tmp_path / "b")),
            (Zero(FILE_MKDIR), str(tmp_path / "c"))]
    fds, failure, whole = core.write_file_batch(ops)
    assert (fds, failure, whole) == ([None, None, None], None, False)
    assert sorted(os.listdir(tmp_path)) == ["a", "b", "c"]


_OVER_THE_LIMIT = textwrap.dedent("""
    import json, os, resource, sys
    if sys.argv[2] == "twin":
        import fasttune._core_fallback as core
    else:
        import fasttune._core as core
    from fasttune._core_shared import FILE_APPEND, FILE_REPLACE
    root = sys.argv[1]
    # Python ignores SIGXFSZ: a write past the limit is short, then fails with EFBIG, as on a full disk.
    resource.setrlimit(resource.RLIMIT_FSIZE, (550, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    out = []
    for ops in (
        # 300 bytes fit, then 300 more do not: the first write is cut back to where it began.
        [(FILE_APPEND, root + "/a", -1, b"A" * 300, None, -1, b"", True, False),
         (FILE_APPEND, root + "/a", -1, b"B" * 300, None, -1, b"", True, False)],
        # The second file's write fails: the first file's is cut back too (both or neither).
        [(FILE_APPEND, root + "/b", -1, b"C" * 100, root + "/c", -1, b"D" * 600, True, False)],
        # A replace that does not fit leaves the old file and no temporary one.
        [(FILE_REPLACE, root + "/a", root + "/.a.tmp", b"E" * 600)],
    ):
        fds, failure, whole = core.write_file_batch(ops)
        out.append([len(fds), fds[-1], failure.errno, failure.filename, whole])
    sizes = {name: os.path.getsize(os.path.join(root, name)) for name in sorted(os.listdir(root))}
    print(json.dumps({"out": out, "sizes": sizes}))
""")


@pytest.mark.parametrize("implementation", ["compiled", "twin"])
def test_a_write_that_does_not_fit_is_cut_back_whole(tmp_path, implementation):
    proc = subprocess.run([sys.executable, "-c", _OVER_THE_LIMIT, str(tmp_path), implementation],
                          capture_output=True, text=True, timeout=60, env=os.environ)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.splitlines()[-1])
    root = str(tmp_path)
    assert result["out"] == [[2, [-1, -1], errno.EFBIG, root + "/a", False],
                             [1, [-1, -1], errno.EFBIG, root + "/c", False],
                             [1, None, errno.EFBIG, root + "/a", False]]
    assert result["sizes"] == {"a": 300, "b": 0, "c": 0}
    assert (tmp_path / "a").read_bytes() == b"A" * 300


_THROUGH_A_PIPE = textwrap.dedent("""
    import os, sys, threading
    import fasttune._core as core
    from fasttune._core_shared import FILE_APPEND
    fifo = sys.argv[1]
    os.mkfifo(fifo)
    data = bytes(range(256)) * 4096  # 1 MiB: sixteen pipe buffers
    got = []

    def read_all():
        fd = os.open(fifo, os.O_RDONLY)
        while True:
            chunk = os.read(fd, 65536)  # back in Python between reads: it needs the GIL
            if not chunk:
                break
            got.append(chunk)
        os.close(fd)

    reader = threading.Thread(target=read_all)
    reader.start()
    fds, failure, whole = core.write_file_batch([(FILE_APPEND, fifo, -1, data, None, -1, b"", True, False)])
    reader.join()
    print(failure is None and b"".join(got) == data)
""")


def test_the_compiled_core_makes_its_system_calls_without_the_gil(tmp_path):
    """The batch writes 1 MiB into a pipe that a Python thread empties: while the batch
    is in its write, that thread must run, so a core holding the GIL would never finish
    (the subprocess's timeout would end it)."""
    proc = subprocess.run([sys.executable, "-c", _THROUGH_A_PIPE, str(tmp_path / "fifo")],
                          capture_output=True, text=True, timeout=60, env=os.environ)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["True"]


@pytest.mark.parametrize("core", IMPLEMENTATIONS)
def test_a_name_the_file_system_cannot_take_is_refused_before_any_op_runs(core, tmp_path):
    with pytest.raises(UnicodeEncodeError):
        core.write_file_batch([(FILE_MKDIR, str(tmp_path / "first")), (FILE_MKDIR, str(tmp_path / "\ud800"))])
    assert not (tmp_path / "first").exists()


@pytest.mark.parametrize("core", IMPLEMENTATIONS)
def test_a_failure_to_close_after_the_bytes_went_in_says_they_are_whole(core, tmp_path):
    """As NFS reports a write it could not make at close(): here a descriptor closed behind
    the core's back, with nothing to write, fails only at its close."""
    fd = os.open(tmp_path / "r", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    fd2 = os.open(tmp_path / "s", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.close(fd2)
    fds, failure, whole = core.write_file_batch([
        (FILE_APPEND, str(tmp_path / "r"), fd, b"", str(tmp_path / "s"), fd2, b"", True, False),
        (FILE_MKDIR, str(tmp_path / "after"))])
    assert fds == [(-1, -1)] and whole
    assert (failure.errno, failure.filename) == (errno.EBADF, str(tmp_path / "s"))
    assert not (tmp_path / "after").exists()
    with pytest.raises(OSError):
        os.fstat(fd)  # the first file was closed
    # A write that fails is not whole.
    fds, failure, whole = core.write_file_batch([
        (FILE_APPEND, str(tmp_path / "r"), fd2, b"x", None, -1, b"", True, False)])
    assert (failure.errno, whole) == (errno.EBADF, False)


@pytest.mark.parametrize("core", IMPLEMENTATIONS)
def test_a_first_file_that_cannot_be_cut_back_after_the_second_write_failed_is_named(core, tmp_path):
    """The first file is a pipe (no lseek, no ftruncate: the pipe keeps what was written to
    it), the second /dev/full (every write fails with ENOSPC, as on a full disk)."""
    read_end, write_end = os.pipe()
    full = os.open("/dev/full", os.O_WRONLY)
    first, second = str(tmp_path / "result.json"), str(tmp_path / "progress.csv")
    try:
        fds, failure, whole = core.write_file_batch([
            (FILE_APPEND, first, write_end, b"r1\n", second, full, b"1\r\n", False, False),
            (FILE_MKDIR, str(tmp_path / "after"))])
        assert fds == [(write_end, full)] and not whole
        assert isinstance(failure, AppendNotCutBack)
        assert (failure.errno, failure.filename) == (errno.ENOSPC, second)
        assert (failure.uncut_paths, failure.cut_back_errnos) == ((first,), (errno.ESPIPE,))
        assert f"{first!r} could not be cut back" in str(failure)
        assert os.read(read_end, 100) == b"r1\n"  # what the first file keeps of the failed append
        assert not (tmp_path / "after").exists()
    finally:
        for fd in (read_end, write_end, full):
            os.close(fd)


@pytest.mark.parametrize("core", IMPLEMENTATIONS)
def test_a_short_write_that_cannot_be_cut_back_is_named(core, tmp_path):
    """A non-blocking pipe takes one buffer of the append, then refuses (EAGAIN): the part
    written cannot be cut back from a pipe."""
    import fcntl

    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    capacity = fcntl.fcntl(write_end, 1032)  # F_GETPIPE_SZ
    path = str(tmp_path / "events")
    try:
        fds, failure, whole = core.write_file_batch([(FILE_APPEND, path, write_end, b"x" * (capacity + 1), None, -1,
                                                      b"", False, False)])
        assert fds == [(write_end, -1)] and not whole
        assert isinstance(failure, AppendNotCutBack)
        assert (failure.errno, failure.filename) == (errno.EAGAIN, path)
        assert (failure.uncut_paths, failure.cut_back_errnos) == ((path,), (errno.ESPIPE,))
    finally:
        os.close(read_end)
        os.close(write_end)



def _over_full_pipe():
    """A non-blocking pipe's two ends and a part too big for its buffer: a write takes one
    buffer of it, then fails with EAGAIN, and a pipe cannot be cut back (ESPIPE)."""
    import fcntl

    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    return read_end, write_end, b"x" * (fcntl.fcntl(write_end, 1032) + 1)  # F_GETPIPE_SZ


@pytest.mark.parametrize("core", IMPLEMENTATIONS)
def test_a_second_file_that_cannot_be_cut_back_is_named_and_the_first_is_cut_back(core, tmp_path):
    first = tmp_path / "result.json"
    first.write_bytes(b"r0\n")
    fd = os.open(first, os.O_WRONLY | os.O_APPEND)
    read_end, write_end, too_big = _over_full_pipe()
    second = str(tmp_path / "progress.csv")
    try:
        fds, failure, whole = core.write_file_batch([
            (FILE_APPEND, str(first), fd, b"r1\n", second, write_end, too_big, False, False)])
        assert fds == [(fd, write_end)] and not whole
        assert isinstance(failure, AppendNotCutBack)
        assert (failure.errno, failure.filename) == (errno.EAGAIN, second)
        assert (failure.uncut_paths, failure.cut_back_errnos) == ((second,), (errno.ESPIPE,))
        assert first.read_bytes() == b"r0\n"  # both or neither: the first file's part was cut back
    finally:
        for each in (fd, read_end, write_end):
            os.close(each)


@pytest.mark.parametrize("core", IMPLEMENTATIONS)
def test_two_files_that_cannot_be_cut_back_are_both_named_in_the_ops_order(core, tmp_path):
    """/dev/null takes the first part and cannot be truncated (EINVAL); the second file is
    an over-full pipe."""
    null = os.open("/dev/null", os.O_WRONLY)
    read_end, write_end, too_big = _over_full_pipe()
    first, second = str(tmp_path / "result.json"), str(tmp_path / "progress.csv")
    try:
        fds, failure, whole = core.write_file_batch([
            (FILE_APPEND, first, null, b"r1\n", second, write_end, too_big, False, False)])
        assert fds == [(null, write_end)] and not whole
        assert isinstance(failure, AppendNotCutBack)
        assert (failure.errno, failure.filename) == (errno.EAGAIN, second)
        assert (failure.uncut_paths, failure.cut_back_errnos) == ((first, second), (errno.EINVAL, errno.ESPIPE))
        assert f"{first!r} could not be cut back ({os.strerror(errno.EINVAL)})" in str(failure)
        assert f"{second!r} could not be cut back ({os.strerror(errno.ESPIPE)})" in str(failure)
    finally:
        for each in (null, read_end, write_end):
            os.close(each)


def _seeded_batch(rng, root):
    """1-4 ops under ``root``: most well formed (ASCII, non-ASCII and surrogate-escaped
    names), the rest broken in one field the way a caller could break them."""
    names = ["a", "b/c", "é", "\udcff", "d e"]
    ops = []
    for _ in range(rng.randint(1, 4)):
        path = os.path.join(root, rng.choice(names))
        kind = rng.choice([FILE_MKDIR, FILE_REPLACE, FILE_APPEND])
        if kind == FILE_MKDIR:
            op = [FILE_MKDIR, path]
        elif kind == FILE_REPLACE:
            op = [FILE_REPLACE, path + ".f", path + f".{rng.randint(0, 99)}.tmp", bytes(rng.randint(0, 5))]
        else:
            second = rng.choice([None, path + ".csv"])
            op = [FILE_APPEND, path + ".json", -1, b"x" * rng.randint(0, 3), second, -1, b"y" * rng.randint(0, 3),
                  rng.random() < 0.7, rng.random() < 0.8]
        if rng.random() < 0.3:
            spot = rng.randrange(len(op))
            op[spot] = rng.choice(["", "a\0b", "\ud800", b"a", bytearray(b"a"), 1, -2, None, True, 9, "text",
                                   1 << 70, 2.0])
        if rng.random() < 0.05:
            op = op[:-1]
        ops.append(list(op) if rng.random() < 0.03 else tuple(op))
    return ops


def test_the_compiled_check_refuses_and_takes_the_ops_its_twin_does(tmp_path, monkeypatch):
    """Seeded batches of well-formed and broken ops: the compiled core (which checks ops
    in C) and its twin (which checks them in Python) raise the same error, or make the
    same files with the same results."""
    import random
    import shutil

    monkeypatch.chdir(tmp_path)  # a relative name ("text" in a path's place) lands here
    rng = random.Random(20)
    root = str(tmp_path / "root")
    compared = 0
    for _ in range(600):
        ops = _seeded_batch(rng, root)
        outcomes = []
        for core in IMPLEMENTATIONS:
            for name in os.listdir(tmp_path):
                shutil.rmtree(tmp_path / name) if os.path.isdir(tmp_path / name) else os.remove(tmp_path / name)
            os.mkdir(root)
            try:
                fds, failure, whole = core.write_file_batch(list(ops))
            except Exception as exc:  # noqa: BLE001 - compared below
                outcomes.append(("raised", type(exc), str(exc), _tree(tmp_path)))
                continue
            for fd in _open_fds(fds):
                os.close(fd)
            opened = [None if pair is None else tuple(fd >= 0 for fd in pair) for pair in fds]
            outcomes.append(("ran", opened, failure and (type(failure), failure.errno, failure.filename), whole,
                             _tree(tmp_path)))
        assert outcomes[0] == outcomes[1], ops
        compared += outcomes[0][0] == "raised"
    assert 100 < compared < 500  # both kinds of batch were met


def test_the_compiled_core_checks_well_formed_ops_without_the_python_check(tmp_path, monkeypatch):
    """The shared Python check costs more than a short trial's system calls: the compiled
    core calls it only for an op its C check does not take (to raise that op's error)."""
    def python_check(ops):
        raise AssertionError("the Python check ran")

    monkeypatch.setattr(compiled, "check_file_ops", python_check)
    trial = str(tmp_path / "trial_é")
    fds, failure, whole = compiled.write_file_batch([
        (FILE_MKDIR, trial),
        (FILE_REPLACE, trial + "/params.json", trial + "/.params.json.0.tmp", b"{}"),
        (FILE_APPEND, trial + "/result.json", -1, b"{}\n", trial + "/progress.csv", -1, b"a\r\n", True, False),
        (FILE_APPEND, trial + "/events", -1, b"e", None, -1, b"", True, True)])
    assert (failure, fds[2:]) == (None, [(-1, -1), (-1, -1)])
    assert _tree(trial) == {"params.json": b"{}", "result.json": b"{}\n", "progress.csv": b"a\r\n", "events": b"e"}
    with pytest.raises(AssertionError, match="the Python check ran"):
        compiled.write_file_batch([(FILE_MKDIR, trial), (FILE_MKDIR, "")])
