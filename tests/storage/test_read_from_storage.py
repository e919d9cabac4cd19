"""Reading an experiment that lives in storage (here a real S3 API, moto's server): the
readers give what they give for the same directory on local disk, checkpoints point into
storage and are downloaded once per node when opened, and a bad location is one clear
error naming it."""
import json
import os
import pickle
import urllib.request

import pytest

import fasttune as tune
from fasttune import _storage as storage
from fasttune.cli import main
from fasttune.error import TuneError
from fasttune_testing import fit, report_with_step_checkpoint

pyarrow_fs = pytest.importorskip("pyarrow.fs", reason="the storage tests need pyarrow (the test extra)")

pytestmark = pytest.mark.ray

FAILING_X = 5


def train(config):
    for step in range(1, 5):
        metrics = {"loss": config["x"] * step, "step": step}
        if step % 2 == 0:
            report_with_step_checkpoint(metrics, step)
        else:
            tune.report(metrics)
        if config["x"] == FAILING_X:
            raise ValueError("boom")


@pytest.fixture(scope="module")
def local_experiment(ray_session, tmp_path_factory):
    storage_path = str(tmp_path_factory.mktemp("results"))
    fit(train, storage_path, space={"x": tune.grid_search([1, 2, 3, FAILING_X])}, name="exp",
        tune_config=tune.TuneConfig(metric="loss", mode="min"))
    return os.path.join(storage_path, "exp")


@pytest.fixture(scope="module")
def uploaded(local_experiment, s3_filesystem, s3_bucket):
    """The path on the S3 filesystem of a copy of the local experiment."""
    path = f"{s3_bucket}/sweeps/exp"
    pyarrow_fs.copy_files(local_experiment, path, destination_filesystem=s3_filesystem)
    return path


@pytest.fixture
def uri(uploaded, s3_endpoint):
    return f"s3://{uploaded}?endpoint_override={s3_endpoint}&scheme=http"


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Each test starts with this node's storage cache empty."""
    monkeypatch.setenv("FASTTUNE_STORAGE_CACHE", str(tmp_path / "cache"))


def summary(grid):
    """What a reader says about each trial, keyed by its directory name."""
    return {os.path.basename(r.path): (r.config, r.metrics, r.error is None, str(r.error or ""),
                                       [os.path.basename(c.path.split("?")[0]) for c, _ in r.best_checkpoints],
                                       [m for _, m in r.best_checkpoints])
            for r in grid}


def test_result_grid_from_a_uri_holds_what_the_local_directory_holds(local_experiment, uri):
    local = tune.ResultGrid.from_path(local_experiment)
    remote = tune.ResultGrid.from_path(uri, default_metric="loss", default_mode="min")
    assert len(remote) == len(local) == 4
    assert summary(remote) == summary(local)
    assert remote.num_errors == local.num_errors == 1
    assert remote.experiment_path == uri
    assert remote.get_best_result().config == {"x": 1}
    assert sorted(remote.get_dataframe()["loss"]) == sorted(local.get_dataframe()["loss"])
    # The checkpoints point into storage, not into the local copy.
    for result in remote:
        name = os.path.basename(result.path)
        for checkpoint, _ in result.best_checkpoints:
            checkpoint_name = os.path.basename(checkpoint.path.split("?")[0])
            assert checkpoint.path == storage.join_uri(uri, name, checkpoint_name)
            assert checkpoint.filesystem is not None
        if result.best_checkpoints:
            assert result.checkpoint == result.best_checkpoints[-1][0]


def test_the_local_copy_holds_no_checkpoint_files(uri):
    grid = tune.ResultGrid.from_path(uri)
    copy = os.path.dirname(grid[0].path)
    checkpoint_dirs = [os.path.join(root, d) for root, dirs, _ in os.walk(copy) for d in dirs
                       if d.startswith("checkpoint_")]
    assert checkpoint_dirs
    assert all(os.listdir(d) == [] for d in checkpoint_dirs)


def test_an_explicit_filesystem_reads_the_same(local_experiment, uploaded, s3_filesystem):
    remote = tune.ResultGrid.from_path(uploaded, storage_filesystem=s3_filesystem)
    assert summary(remote) == summary(tune.ResultGrid.from_path(local_experiment))
    checkpoint = next(r.checkpoint for r in remote if r.checkpoint is not None)
    assert checkpoint.path.startswith(uploaded + "/") and checkpoint.filesystem is s3_filesystem
    assert tune.Tuner.can_restore(uploaded, storage_filesystem=s3_filesystem)
    analysis = tune.ExperimentAnalysis(uploaded, default_metric="loss", default_mode="min",
                                       storage_filesystem=s3_filesystem)
    assert analysis.best_config == {"x": 1}


def test_experiment_analysis_from_a_uri(local_experiment, uri):
    local = tune.ExperimentAnalysis(local_experiment, default_metric="loss", default_mode="min")
    remote = tune.ExperimentAnalysis(uri, default_metric="loss", default_mode="min")
    assert remote.best_config == local.best_config == {"x": 1}
    assert remote.best_result["loss"] == local.best_result["loss"]
    assert sorted(t.status for t in remote.trials) == sorted(t.status for t in local.trials)
    assert remote.best_checkpoint.path.startswith(uri.split("?")[0])
    # The best trial (x=1)'s checkpoint with the best loss (2, at step 2), as Ray Tune picks it.
    with remote.best_checkpoint.as_directory() as d:
        assert open(os.path.join(d, "step")).read() == "2"


def test_can_restore_a_uri(uri, s3_bucket, s3_endpoint):
    assert tune.Tuner.can_restore(uri)
    empty = f"s3://{s3_bucket}/nothing/here?endpoint_override={s3_endpoint}&scheme=http"
    assert not tune.Tuner.can_restore(empty)


def test_fasttune_ls_of_a_uri_prints_the_rows_of_the_local_directory(local_experiment, uri, capsys):
    for fmt in ("json", "table"):
        assert main(["ls", local_experiment, "--format", fmt]) == 0
        local_out = capsys.readouterr().out
        assert main(["ls", uri, "--format", fmt]) == 0
        assert capsys.readouterr().out == local_out
    assert main(["ls", uri, "--format", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 4


def test_fasttune_plot_of_a_uri(uri, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "loss.png"
    assert main(["plot", uri, "-o", str(out)]) == 0, capsys.readouterr().err
    assert out.stat().st_size > 0


def test_a_checkpoint_in_storage_is_downloaded_once_when_opened(uri, monkeypatch, tmp_path):
    downloads = []
    real_download = storage.download_directory

    def counting_download(location, target):
        downloads.append(location.uri)
        real_download(location, target)

    monkeypatch.setattr(storage, "download_directory", counting_download)
    grid = tune.ResultGrid.from_path(uri, default_metric="loss", default_mode="min")
    checkpoint = grid.get_best_result().checkpoint
    assert downloads == []  # reading the experiment downloads no checkpoint
    with checkpoint.as_directory() as d:
        assert sorted(os.listdir(d)) == ["step"] and open(os.path.join(d, "step")).read() == "4"
    with checkpoint.as_directory() as again:
        assert again == d
    assert downloads == [checkpoint.path]
    # A copy that travelled (pickled, as to a worker) still points into storage.
    travelled = pickle.loads(pickle.dumps(checkpoint))
    assert travelled == checkpoint and travelled.filesystem is not None
    target = travelled.to_directory(str(tmp_path / "out"))
    assert open(os.path.join(target, "step")).read() == "4"
    assert downloads == [checkpoint.path]
    # Checkpoint(uri) names the same checkpoint.
    assert tune.Checkpoint(checkpoint.path).get_metadata() == {}


def test_a_local_checkpoint_is_as_before(tmp_path):
    (tmp_path / "w").write_text("x")
    checkpoint = tune.Checkpoint.from_directory(str(tmp_path))
    assert checkpoint.filesystem is None and checkpoint.path == str(tmp_path)
    with checkpoint.as_directory() as d:
        assert d == str(tmp_path)


def test_a_missing_bucket_is_one_clear_error(s3_endpoint, capsys):
    uri = f"s3://no-such-bucket/exp?endpoint_override={s3_endpoint}&scheme=http"
    with pytest.raises(TuneError, match="no-such-bucket.*bucket") as info:
        tune.ResultGrid.from_path(uri)
    assert uri in str(info.value)
    assert main(["ls", uri]) == 1
    assert uri in capsys.readouterr().err


def test_a_missing_experiment_is_file_not_found_as_for_a_local_path(s3_bucket, s3_endpoint, capsys):
    uri = f"s3://{s3_bucket}/no/such/exp?endpoint_override={s3_endpoint}&scheme=http"
    with pytest.raises(FileNotFoundError, match="does not exist") as info:
        tune.ResultGrid.from_path(uri)
    assert uri in str(info.value)
    assert main(["ls", uri]) == 1
    assert f"{uri} does not exist" in capsys.readouterr().err


def test_wrong_credentials_are_one_clear_error(uri, s3_endpoint):
    def require_auth(count):
        # text/plain: a form content type would make the server parse the body away.
        request = urllib.request.Request(f"http://{s3_endpoint}/moto-api/reset-auth", data=count, method="POST",
                                         headers={"Content-Type": "text/plain"})
        urllib.request.urlopen(request, timeout=10).read()

    require_auth(b"0")  # from now on moto checks keys, and 'testing' is none it knows
    try:
        with pytest.raises(TuneError, match="credentials") as info:
            tune.ResultGrid.from_path(uri)
        assert uri in str(info.value)
    finally:
        require_auth(b"inf")


def test_a_bad_scheme_is_one_clear_error():
    with pytest.raises(TuneError, match="nosuch://bucket/exp is not a storage location") as info:
        tune.ResultGrid.from_path("nosuch://bucket/exp")
    assert "s3://bucket/prefix" in str(info.value)
    assert main(["ls", "nosuch://bucket/exp"]) == 1


def test_a_filesystem_that_is_not_one_is_refused():
    with pytest.raises(TuneError, match="pyarrow.fs.FileSystem"):
        tune.ResultGrid.from_path("bucket/exp", storage_filesystem=object())
