"""Random byte damage (flips, truncations, insertions) to one file of a real experiment
directory, read by everything that reads one: ``fasttune ls``/``fasttune plot`` (in
process, and a few as real subprocesses to catch a crash of the interpreter),
``ExperimentAnalysis``, ``ResultGrid.from_path`` and ``Tuner.can_restore``/``restore``.

The invariant: each reader returns, or raises one of the documented errors
(``fuzz_testing.is_clear_error``; the CLI exits 1 with a message), and the trials whose
files were not damaged read back as they were written.  A snapshot is also damaged
"resealed" (its header's length and checksum fixed up), as a crafted file would be, so
the damage reaches the decoder instead of stopping at the checksum."""
import glob
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

import fasttune as tune
from fasttune import ExperimentAnalysis, ResultGrid, Tuner
from fasttune.cli import main as cli_main

from fasttune_testing import fit
from fuzz_testing import FUZZ, is_clear_error

HEADER = struct.Struct("<8sHHQI")  # the snapshot header (execution/_experiment_state.py's docstring)
TRIALS = 3


def damaged_dir_trainable(config):
    for i in range(3):
        tune.report({"loss": config["x"] * (3 - i), "nested": {"i": i}, "name": "tr\u00e9s"})


@pytest.fixture(scope="module")
def experiment(ray_session, tmp_path_factory):
    storage = str(tmp_path_factory.mktemp("fuzz_damaged"))
    grid = fit(damaged_dir_trainable, storage, name="damaged",
               space={"x": tune.grid_search(list(range(1, TRIALS + 1)))},
               tune_config=tune.TuneConfig(metric="loss", mode="min"))
    assert grid.num_errors == 0
    return grid.experiment_path


def _files(path):
    """The files a mutation may hit, by kind."""
    trials = sorted(d for d in glob.glob(os.path.join(path, "damaged_dir_trainable_*")) if os.path.isdir(d))
    return {
        "snapshot": max(glob.glob(os.path.join(path, "experiment_state-*.msgpack"))),
        "tuner": os.path.join(path, "tuner.msgpack"),
        "result": os.path.join(trials[0], "result.json"),
        "progress": os.path.join(trials[0], "progress.csv"),
        "params": os.path.join(trials[0], "params.json"),
    }


@st.composite
def mutations(draw):
    """(file kind, reseal, [(operation, position fraction, bytes/length)])."""
    kind = draw(st.sampled_from(["snapshot", "snapshot", "tuner", "result", "progress", "params"]))
    reseal = kind in ("snapshot", "tuner") and draw(st.booleans())
    edits = draw(st.lists(st.tuples(
        st.sampled_from(["flip", "truncate", "insert"]), st.floats(0, 1),
        st.one_of(st.integers(1, 255), st.binary(min_size=1, max_size=8))), min_size=1, max_size=3))
    return kind, reseal, edits


def _apply(data, edits, start=0):
    data = bytearray(data)
    for operation, where, what in edits:
        at = start + int(where * max(len(data) - start - 1, 0))
        if operation == "flip" and at < len(data):
            data[at] ^= what if isinstance(what, int) else what[0] or 1
        elif operation == "truncate":
            del data[at:]
        elif operation == "insert":
            data[at:at] = what if isinstance(what, bytes) else bytes([what])
    return bytes(data)


def damage(path, mutation):
    """Apply ``mutation`` to the experiment copy at ``path``; returns the damaged file."""
    kind, reseal, edits = mutation
    target = _files(path)[kind]
    with open(target, "rb") as f:
        data = f.read()
    if reseal:
        payload = _apply(data[HEADER.size:], edits)
        magic, version, reserved, _, _ = HEADER.unpack_from(data)
        data = HEADER.pack(magic, version, reserved, len(payload), zlib.crc32(payload)) + payload
    else:
        data = _apply(data, edits)
    with open(target, "wb") as f:
        f.write(data)
    return target


def _undamaged_losses(path, damaged):
    """Each undamaged trial's result.json lines' losses, read here."""
    import json

    out = {}
    for trial_dir in sorted(glob.glob(os.path.join(path, "damaged_dir_trainable_*"))):
        if os.path.dirname(damaged) != trial_dir:
            with open(os.path.join(trial_dir, "result.json")) as f:
                out[os.path.basename(trial_dir)] = [json.loads(line)["loss"] for line in f]
    return out


def _clear_or_none(read):
    try:
        return read()
    except Exception as exc:  # noqa: BLE001 - the test judges what was raised
        assert is_clear_error(exc), f"{type(exc).__name__}: {exc}"
        return None


@settings(FUZZ, max_examples=120, deadline=20_000, phases=[Phase.explicit, Phase.generate])
@given(mutation=mutations())
def test_readers_of_a_damaged_directory_answer_clearly_and_keep_the_other_trials(experiment, mutation):
    with tempfile.TemporaryDirectory() as root:
        path = os.path.join(root, "damaged")
        shutil.copytree(experiment, path)
        expected = _undamaged_losses(path, "")
        damaged = damage(path, mutation)
        untouched = {name: losses for name, losses in expected.items() if name != os.path.basename(
            os.path.dirname(damaged))}
        one_trial = mutation[0] in ("result", "progress", "params")
        # Damage to one trial's files: the listing goes on with the others (and warns).
        assert cli_main(["ls", path]) in ((0,) if one_trial else (0, 1))
        assert cli_main(["ls", "--format", "json", path]) in (0, 1)
        assert cli_main(["plot", "-o", os.path.join(root, "plot.png"), "--metric", "loss", path]) in (0, 1)
        _clear_or_none(lambda: ExperimentAnalysis(path).dataframe())
        grid = _clear_or_none(lambda: ResultGrid.from_path(path))
        if one_trial:
            # Damage to one trial's files: the grid still holds the other trials as written.
            assert grid is not None
            by_name = {os.path.basename(r.path): r for r in grid}
            for name, losses in untouched.items():
                assert by_name[name].metrics["loss"] == losses[-1], name
        if _clear_or_none(lambda: Tuner.can_restore(path)):
            _clear_or_none(lambda: Tuner.restore(path, trainable=damaged_dir_trainable))


# A few damaged snapshots read by a real `fasttune ls` process: a crash of the interpreter
# (a segfault, an abort) shows only there.
@settings(FUZZ, max_examples=4, deadline=None, phases=[Phase.explicit, Phase.generate])
@given(edits=st.lists(st.tuples(st.sampled_from(["flip", "insert"]), st.floats(0, 1), st.integers(1, 255)),
                      min_size=1, max_size=3))
def test_cli_process_reading_a_resealed_damaged_snapshot_exits_with_a_message(experiment, edits):
    with tempfile.TemporaryDirectory() as root:
        path = os.path.join(root, "damaged")
        shutil.copytree(experiment, path)
        damage(path, ("snapshot", True, edits))
        done = subprocess.run([sys.executable, "-m", "fasttune.cli", "ls", path], capture_output=True, text=True,
                              env=dict(os.environ), timeout=120)
        assert done.returncode in (0, 1), (done.returncode, done.stderr[-2000:])
        assert "Traceback" not in done.stderr, done.stderr[-2000:]
