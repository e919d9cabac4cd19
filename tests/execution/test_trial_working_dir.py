"""A trial's code runs in its trial directory, as in Ray Tune: relative writes land there and
trials never write over each other's files, even when one pooled worker runs them one after
another; the worker goes back to its own directory when a segment ends.
``RAY_CHDIR_TO_TRIAL_DIR=0`` keeps the worker's directory, and ``TUNE_ORIG_WORKING_DIR`` names it."""
import errno
import os

import pytest

import fasttune as tune
from fasttune.execution import _worker, _working_dir
from fasttune.execution._worker import TrialWorker, TrialWorkerActor
from fasttune.execution._working_dir import chdir_to_trial_dir, make_trial_dir
from fasttune_testing import StandIn, commands, install, results, run_until, spec


@pytest.fixture
def orig_working_dir_unset():
    """``TUNE_ORIG_WORKING_DIR`` unset for the test and as it was afterwards: an in-process
    worker sets it in the test process."""
    before = os.environ.pop("TUNE_ORIG_WORKING_DIR", None)
    yield
    os.environ.pop("TUNE_ORIG_WORKING_DIR", None)
    if before is not None:
        os.environ["TUNE_ORIG_WORKING_DIR"] = before


def writes_relative_file(config):
    x = config["x"]
    with open(f"written_by_{x}.txt", "w") as f:
        f.write(str(x))
    tune.report({"cwd": os.getcwd(), "trial_dir": tune.get_context().get_trial_dir(),
                 "orig": os.environ.get("TUNE_ORIG_WORKING_DIR")})


class WritesRelativeFiles(tune.Trainable):
    def _write(self, what):
        with open(f"{what}_{self.config['x']}.txt", "w") as f:
            f.write(what)

    def setup(self, config):
        self._write("setup")

    def step(self):
        self._write("step")
        return {"cwd": os.getcwd(), "logdir": self.logdir, "trial_dir": tune.get_context().get_trial_dir()}

    def save_checkpoint(self, checkpoint_dir):
        self._write("save")

    def cleanup(self):
        self._write("cleanup")


def _fit(trainable, storage, **run_kwargs):
    # One trial at a time: both run on the same pooled worker, one after the other.
    tuner = tune.Tuner(trainable, param_space={"x": tune.grid_search([1, 2])},
                       tune_config=tune.TuneConfig(max_concurrent_trials=1),
                       run_config=tune.RunConfig(name="exp", storage_path=storage, verbose=0, **run_kwargs))
    grid = tuner.fit()
    assert grid.errors == []
    results_by_x = sorted(grid, key=lambda result: result.config["x"])
    assert results_by_x[0].metrics["pid"] == results_by_x[1].metrics["pid"]  # one pooled worker ran both
    return results_by_x


def _own_files(path):
    return sorted(name for name in os.listdir(path) if name.endswith(".txt") and name != "error.txt")


def test_a_function_trial_writes_relative_files_into_its_own_directory(storage, ray_session):
    for result in _fit(writes_relative_file, storage):
        x = result.config["x"]
        trial_dir = os.path.realpath(result.path)
        assert os.path.realpath(result.metrics["cwd"]) == trial_dir
        assert os.path.realpath(result.metrics["trial_dir"]) == trial_dir
        assert _own_files(result.path) == [f"written_by_{x}.txt"]
        assert not os.path.realpath(result.metrics["orig"]).startswith(os.path.realpath(storage))


def test_a_class_trial_runs_setup_step_save_and_cleanup_in_its_own_directory(storage, ray_session):
    results_by_x = _fit(WritesRelativeFiles, storage, stop={"training_iteration": 2},
                        checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=True))
    for result in results_by_x:
        x = result.config["x"]
        trial_dir = os.path.realpath(result.path)
        assert os.path.realpath(result.metrics["cwd"]) == trial_dir
        assert os.path.realpath(result.metrics["logdir"]) == trial_dir
        assert os.path.realpath(result.metrics["trial_dir"]) == trial_dir
        # The instance kept for reuse is cleaned up while the next trial runs (or when the
        # worker is let go): still in its own trial's directory.
        assert _own_files(result.path) == [f"{what}_{x}.txt" for what in ("cleanup", "save", "setup", "step")]


def test_ray_chdir_to_trial_dir_0_on_the_driver_keeps_the_workers_directory(storage, ray_session, monkeypatch):
    moved = _fit(writes_relative_file, storage)[0].metrics
    # Set after the session's Ray started its workers: the driver's value rides in the spec.
    monkeypatch.setenv("RAY_CHDIR_TO_TRIAL_DIR", "0")
    tuner = tune.Tuner(
        lambda config: tune.report({"cwd": os.getcwd(), "orig": os.environ.get("TUNE_ORIG_WORKING_DIR")}),
        run_config=tune.RunConfig(name="kept", storage_path=storage, verbose=0))
    (result,) = tuner.fit()
    kept = result.metrics
    assert os.path.realpath(kept["cwd"]) != os.path.realpath(result.path)
    # Every worker of the session starts in the same directory: the one TUNE_ORIG_WORKING_DIR names.
    assert os.path.realpath(kept["cwd"]) == os.path.realpath(moved["orig"]) == os.path.realpath(kept["orig"])


# ---- the worker driven in-process: exactly where the process is before and after ---------
def _run_one(trainable, trial_dir, **extra):
    return run_until(TrialWorker(), commands(install(trainable, "fn"), ["start", spec("t1", "fn", trial_dir, **extra)]))


def _reports_cwd(config):
    tune.report({"cwd": os.getcwd()})


def test_the_worker_goes_back_to_its_directory_when_the_segment_ends(tmp_path, monkeypatch, orig_working_dir_unset):
    monkeypatch.delenv("RAY_CHDIR_TO_TRIAL_DIR", raising=False)
    home = tmp_path / "worker_home"
    home.mkdir()
    monkeypatch.chdir(home)

    def moves_elsewhere(config):
        tune.report({"cwd": os.getcwd()})
        os.chdir(tmp_path)  # the trial's own chdir does not outlive it either

    events = _run_one(moves_elsewhere, str(tmp_path / "trial"))
    assert events[-1] == ["done", "t1"]
    assert results(events) == [{"cwd": str(tmp_path / "trial")}]
    assert os.getcwd() == str(home)
    assert os.environ["TUNE_ORIG_WORKING_DIR"] == str(home)


def test_tune_orig_working_dir_already_set_is_kept(tmp_path, monkeypatch, orig_working_dir_unset):
    monkeypatch.setenv("TUNE_ORIG_WORKING_DIR", "/where/the/user/said")
    events = _run_one(_reports_cwd, str(tmp_path / "trial"))
    assert results(events) == [{"cwd": str(tmp_path / "trial")}]
    assert os.environ["TUNE_ORIG_WORKING_DIR"] == "/where/the/user/said"


def test_ray_chdir_to_trial_dir_0_in_the_workers_environment_keeps_its_directory(tmp_path, monkeypatch,
                                                                               orig_working_dir_unset):
    monkeypatch.setenv("RAY_CHDIR_TO_TRIAL_DIR", "0")
    monkeypatch.chdir(tmp_path)
    events = _run_one(_reports_cwd, str(tmp_path / "trial"))
    assert results(events) == [{"cwd": str(tmp_path)}]
    assert os.environ["TUNE_ORIG_WORKING_DIR"] == str(tmp_path)  # set even when not moving, as in Ray Tune


def test_the_drivers_setting_in_the_spec_wins_over_the_workers(tmp_path, monkeypatch, orig_working_dir_unset):
    monkeypatch.setenv("RAY_CHDIR_TO_TRIAL_DIR", "0")
    events = _run_one(_reports_cwd, str(tmp_path / "trial"), chdir_to_trial_dir="1")
    assert results(events) == [{"cwd": str(tmp_path / "trial")}]


def test_the_drivers_setting_in_the_spec_spares_the_worker_its_environment_lookup(tmp_path, monkeypatch,
                                                                                 orig_working_dir_unset):
    """A setting in the spec is used as it is: the worker's RAY_CHDIR_TO_TRIAL_DIR is not
    looked up for it (a lookup per trial was a share of a short trial's worker time)."""
    looked_up = []

    class WatchedEnviron:  # the process's environment, its lookups by the worker module seen
        def get(self, key, default=None):
            looked_up.append(key)
            return os.environ.get(key, default)

        def __getattr__(self, name):
            return getattr(os.environ, name)

    monkeypatch.setattr(_worker, "os", StandIn(os, environ=WatchedEnviron()))  # the worker module's os only
    events = _run_one(_reports_cwd, str(tmp_path / "trial"), chdir_to_trial_dir="1")
    assert results(events) == [{"cwd": str(tmp_path / "trial")}]
    assert "RAY_CHDIR_TO_TRIAL_DIR" not in looked_up
    events = _run_one(_reports_cwd, str(tmp_path / "other"))  # no setting in the spec: the worker's own
    assert results(events) == [{"cwd": str(tmp_path / "other")}] and "RAY_CHDIR_TO_TRIAL_DIR" in looked_up


def test_a_pooled_worker_reads_its_own_setting_once_when_it_starts(tmp_path, monkeypatch, orig_working_dir_unset):
    """A Ray actor's environment is fixed when its process starts, so the pooled worker
    (TrialWorkerActor) reads its RAY_CHDIR_TO_TRIAL_DIR then, not at each trial; a worker
    made in-process reads it at each trial (tests change it)."""
    monkeypatch.setenv("RAY_CHDIR_TO_TRIAL_DIR", "0")
    monkeypatch.chdir(tmp_path)
    pooled, in_process = TrialWorkerActor(), TrialWorker()
    monkeypatch.delenv("RAY_CHDIR_TO_TRIAL_DIR")
    first = commands(install(_reports_cwd, "fn"), ["start", spec("t1", "fn", str(tmp_path / "pooled"))])
    assert results(run_until(pooled, first)) == [{"cwd": str(tmp_path)}]  # 0, as when it started
    first = commands(install(_reports_cwd, "fn"), ["start", spec("t1", "fn", str(tmp_path / "in-process"))])
    assert results(run_until(in_process, first)) == [{"cwd": str(tmp_path / "in-process")}]  # unset now
    events = run_until(pooled, commands(["start", spec("t2", "fn", str(tmp_path / "told"), chdir_to_trial_dir="1")]))
    assert results(events) == [{"cwd": str(tmp_path / "told")}]  # the driver's setting still wins


def test_a_setting_that_is_not_an_integer_fails_the_trial_naming_the_variable(tmp_path, orig_working_dir_unset):
    events = _run_one(_reports_cwd, str(tmp_path / "trial"), chdir_to_trial_dir="no")
    assert events[-1][0] == "error"
    assert "RAY_CHDIR_TO_TRIAL_DIR='no' is not an integer" in events[-1][2]
    assert chdir_to_trial_dir("2") is True


def test_a_trial_directory_is_made_with_its_missing_parents_or_kept_and_a_file_there_fails_the_trial(
        tmp_path, orig_working_dir_unset):
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "kept.txt").write_text("from an earlier segment")
    for trial_dir in (tmp_path / "new", tmp_path / "missing" / "parents" / "trial", existing):
        events = _run_one(_reports_cwd, str(trial_dir))
        assert results(events) == [{"cwd": str(trial_dir)}]
    assert (existing / "kept.txt").read_text() == "from an earlier segment"
    (tmp_path / "a_file").write_text("")
    events = _run_one(_reports_cwd, str(tmp_path / "a_file"))
    assert events[-1][0] == "error" and "FileExistsError" in events[-1][2]


@pytest.mark.parametrize("error", [errno.EACCES, errno.EROFS])
def test_an_existing_trial_directory_is_kept_where_mkdir_reports_another_error_first(tmp_path, monkeypatch, error):
    # NFS, FUSE and read-only mounts may answer EACCES or EROFS for a directory that exists.
    existing, missing = tmp_path / "trial", tmp_path / "new"
    existing.mkdir()

    def refusing_mkdir(path, *args, **kwargs):
        raise OSError(error, os.strerror(error), str(path))

    monkeypatch.setattr(_working_dir, "os", StandIn(os, mkdir=refusing_mkdir))  # not another thread's mkdir
    make_trial_dir(str(existing))
    with pytest.raises(OSError) as raised:
        make_trial_dir(str(missing))
    assert raised.value.errno == error
