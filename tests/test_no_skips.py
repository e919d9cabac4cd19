"""The suite allows no skips (tests/conftest.py): a skipped test, a skipif marker and a
module that skips at import all fail the run with the skip's reason; a test marked
``skip_allowed`` may skip, and xfail keeps its meaning."""
import os
import shutil
import subprocess
import sys

CONFTEST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "conftest.py")

SKIPPING_TESTS = '''
import pytest

def test_skips_inside():
    pytest.skip("reason one")

@pytest.mark.skipif(True, reason="reason two")
def test_skipped_by_a_marker():
    pass

@pytest.mark.skip_allowed(reason="needs a GPU")
def test_allowed_to_skip():
    pytest.skip("no GPU")

@pytest.mark.xfail(reason="known")
def test_expected_to_fail():
    assert False

def test_passes():
    pass
'''


def _run_pytest(directory, *files):
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", "-c", os.devnull,
                          "--rootdir", str(directory), *files], cwd=str(directory), capture_output=True, text=True,
                         timeout=120)
    return out.returncode, out.stdout


def test_skips_fail_the_run_unless_allowed(tmp_path):
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_skipping.py").write_text(SKIPPING_TESTS)
    returncode, stdout = _run_pytest(tmp_path, "test_skipping.py")
    assert returncode == 1, stdout
    assert "1 failed, 1 passed, 1 skipped, 1 xfailed, 1 error" in stdout
    assert "FAILED test_skipping.py::test_skips_inside" in stdout and "reason one" in stdout
    assert "ERROR test_skipping.py::test_skipped_by_a_marker" in stdout and "reason two" in stdout
    assert "SKIPPED [1] test_skipping.py" in stdout and "no GPU" in stdout
    assert "the suite allows no skips" in stdout


def test_a_module_skipped_at_import_fails_the_run(tmp_path):
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_needs.py").write_text(
        'import pytest\nmissing = pytest.importorskip("fasttune_no_such_package")\n\ndef test_x():\n    pass\n')
    returncode, stdout = _run_pytest(tmp_path, "test_needs.py")
    assert returncode != 0 and "ERROR test_needs.py" in stdout, stdout
    assert "fasttune_no_such_package" in stdout and "the suite allows no skips" in stdout
