"""What the two cores share (fasttune._core_shared) is one set of objects: the same
exception classes, constants and snapshot format whichever core is loaded."""
import ast
import math
import os
import re

import pytest

import fasttune
import fasttune._core as compiled
import fasttune._core_fallback as twin
import fasttune._core_shared as shared
from fasttune import _corelib

SHARED_NAMES = ("PENDING", "RUNNING", "PAUSED", "TERMINATED", "ERROR", "STATUS_NAMES",
                "SNAPSHOT_VERSION", "EVENT_START", "EVENT_BATCH", "EVENT_ERROR",
                "MAX_WORKER_SLOT", "IllegalTransition", "CorruptSnapshot", "TB_SKIPPED_KEYS")
PACKAGE_DIR = os.path.dirname(fasttune.__file__)

# A snapshot written by the cores before the shared module existed (3 rows, mode
# "max", row 1 RUNNING with a result and worker slot 7, row 2 TERMINATED with a
# failure, row 0 on worker slot 0): the format must keep reading it.
OLD_SNAPSHOT = bytes.fromhex(
    "46545454010002000300000000000000000103000000000000000004000000000000000000000000"
    "000000000000000000000001000000000000000000f87f000000000000e83f000000000000f87f00"
    "0000000000f87f000000000000e83f000000000000f87f0000000000000000000000000000044000"
    "000000000000000000000007000000ffffffff")


@pytest.mark.parametrize("name", SHARED_NAMES)
def test_both_cores_and_corelib_hold_the_shared_objects(name):
    expected = getattr(shared, name)
    assert getattr(compiled, name) is expected
    assert getattr(twin, name) is expected
    assert getattr(_corelib, name) is expected


def test_exception_classes_are_one_class_whichever_core_raises():
    assert compiled.IllegalTransition is twin.IllegalTransition is shared.IllegalTransition
    assert compiled.CorruptSnapshot is twin.CorruptSnapshot is shared.CorruptSnapshot
    for core in (compiled, twin):
        table = core.TrialTable()
        table.add()
        table.set_status(0, core.TERMINATED)
        with pytest.raises(shared.IllegalTransition):
            table.set_status(0, core.RUNNING)
        with pytest.raises(shared.CorruptSnapshot):
            core.TrialTable.from_snapshot(b"nope")


def test_constant_values():
    assert (shared.PENDING, shared.RUNNING, shared.PAUSED, shared.TERMINATED,
            shared.ERROR) == (0, 1, 2, 3, 4)
    assert shared.STATUS_NAMES == ("PENDING", "RUNNING", "PAUSED", "TERMINATED", "ERROR")
    assert (shared.EVENT_START, shared.EVENT_BATCH, shared.EVENT_ERROR) == (0, 1, 2)
    assert shared.SNAPSHOT_VERSION == 1
    assert shared.MAX_WORKER_SLOT == 2 ** 20 - 1
    assert shared.INT32_MAX == 2 ** 31 - 1
    assert shared.MAX_DEPTH == 100
    assert shared.HEADER.size == 16 and shared.ROW_BYTES == 1 + 8 + 4 + 8 + 8 + 8 + 4


def test_compiled_c_constants_equal_the_shared_ones():
    constants = compiled._c_constants()
    assert constants.pop("N_STATUS") == len(shared.STATUS_NAMES)
    for name, value in constants.items():
        assert getattr(shared, name) == value, name


def test_compiled_transition_bitmasks_follow_the_shared_table():
    for old in range(5):
        for new in range(5):
            table = compiled.TrialTable()
            table.add()
            table.set_status(0, old)  # every status is one legal move from PENDING
            if new == old or new in shared.LEGAL_TRANSITIONS[old]:
                table.set_status(0, new)
            else:
                with pytest.raises(shared.IllegalTransition,
                                   match=re.escape(str(shared.illegal_transition(0, old, new)))):
                    table.set_status(0, new)


def test_shared_module_imports_nothing_from_fasttune():
    with open(os.path.join(PACKAGE_DIR, "_core_shared.py")) as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert not any(a.name.split(".")[0] == "fasttune" for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0 and (node.module or "").split(".")[0] != "fasttune"


def test_compiled_core_imports_only_the_shared_module_from_fasttune():
    with open(os.path.join(PACKAGE_DIR, "_core.pyx")) as f:
        source = f.read()
    imported = set(re.findall(r"^\s*(?:from|import)\s+(fasttune[\w.]*)", source, re.M))
    assert imported == {"fasttune._core_shared"}


@pytest.mark.parametrize("core", [compiled, twin], ids=["compiled", "python"])
def test_a_snapshot_from_before_the_shared_module_still_loads(core):
    table = core.TrialTable.from_snapshot(OLD_SNAPSHOT)
    assert table.mode == "max" and len(table) == 3
    assert [table.get_status(r) for r in range(3)] == [core.PENDING, core.RUNNING,
                                                       core.TERMINATED]
    assert table.get_iteration(1) == 4 and table.get_best_metric(1) == 0.75
    assert table.get_time_total(1) == 2.5 and math.isnan(table.get_last_metric(0))
    assert table.get_failures(2) == 1
    assert [table.get_worker_slot(r) for r in range(3)] == [0, 7, -1]
    assert table.held_count() == 2
    assert table.snapshot() == OLD_SNAPSHOT


def test_parse_snapshot_gives_mode_rows_and_columns():
    mode, rows, columns = shared.parse_snapshot(OLD_SNAPSHOT)
    assert (mode, rows) == ("max", 3)
    assert [name for name, _ in shared.COLUMNS] == list(columns)
    assert columns["worker_slot"].tolist() == [0, 7, -1]
    with pytest.raises(TypeError, match="from_snapshot needs bytes, got str"):
        shared.parse_snapshot("FTTT")


def test_an_append_not_cut_back_built_without_its_helper_reads_as_an_os_error():
    """Raised by hand (as a test or a caller may), it has no uncut file to name."""
    failure = shared.AppendNotCutBack(28, os.strerror(28), "t/progress.csv")
    assert str(failure) == str(OSError(28, os.strerror(28), "t/progress.csv"))
