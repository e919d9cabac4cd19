"""Which Ray runs the work while another `ray start` cluster is up on the machine: the
test suite always starts its own (``address="local"``); ``fit()`` keeps Ray's rule (it
joins the cluster ``ray.init()`` would join) and says so once, naming the address."""
import os
import shutil
import subprocess
import sys

import pytest

from ray_connection_testing import address_file_of, kill_leftovers, short_tempdir

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS_DIR)
HELPER = os.path.join(TESTS_DIR, "ray_connection_testing.py")


@pytest.fixture(scope="module")
def foreign_cluster():
    """A `ray start` head node held by a process of its own; yields (address, env), where
    env makes ``ray.init()`` find it as it would find a cluster named in /tmp/ray."""
    root = short_tempdir()
    env = dict(os.environ, RAY_AUTH_MODE="disabled",
               PYTHONPATH=os.pathsep.join([REPO, TESTS_DIR, os.environ.get("PYTHONPATH", "")]))
    env.pop("RAY_ADDRESS", None)
    holder = subprocess.Popen([sys.executable, HELPER, "hold", root], env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        listening = holder.stdout.readline().strip()  # printed once the head takes connections
        if not listening:
            pytest.fail(f"the cluster did not start: {holder.stderr.read()[-3000:]}")
        # Where ray.init() looks under TMPDIR=root/head; `ray start` writes the machine's IP.
        with open(address_file_of(root)) as f:
            address = f.read().strip()
        assert address.rsplit(":", 1)[1] == listening.rsplit(":", 1)[1]
        yield address, dict(env, TMPDIR=os.path.join(root, "head"), FOREIGN_RAY_ADDRESS=address)
    finally:
        holder.stdin.close()
        holder.wait(timeout=120)
        kill_leftovers(root)  # whatever the holder could not stop
        shutil.rmtree(root, ignore_errors=True)


def test_the_suites_ray_session_is_its_own_beside_a_running_cluster(foreign_cluster):
    address, env = foreign_cluster
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          os.path.join("tests", "ray_session_probe.py")],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "1 passed" in out.stdout


def test_fit_joins_the_running_cluster_and_says_so_once_with_its_address(foreign_cluster, tmp_path):
    address, env = foreign_cluster
    out = subprocess.run([sys.executable, HELPER, "fit", str(tmp_path)], env=env, capture_output=True, text=True,
                         timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "TRIALS 1 ERRORS 0" in out.stdout
    said = [line for line in out.stderr.splitlines() if "fasttune joined the running Ray cluster" in line]
    assert len(said) == 1 and f"at {address} " in said[0], out.stderr[-3000:]


def test_fit_starting_its_own_ray_says_nothing_about_joining(tmp_path):
    private_tmp = short_tempdir()  # no cluster named there; short, as Ray's socket paths must be
    env = dict(os.environ, TMPDIR=private_tmp, PYTHONPATH=os.pathsep.join(
        [REPO, TESTS_DIR, os.environ.get("PYTHONPATH", "")]))
    env.pop("RAY_ADDRESS", None)
    try:
        out = subprocess.run([sys.executable, HELPER, "fit", str(tmp_path)], env=env, capture_output=True,
                             text=True, timeout=240)
    finally:
        kill_leftovers(private_tmp)
        shutil.rmtree(private_tmp, ignore_errors=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "TRIALS 1 ERRORS 0" in out.stdout
    assert "joined the running Ray cluster" not in out.stderr
