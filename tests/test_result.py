import csv
import json
import os
import sys

import pytest

from fasttune.checkpoint import Checkpoint
from fasttune.error import TuneError
from fasttune.result import Result


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out


def write_trial(trial_dir, config, history, error=None, checkpoints=(), tail=""):
    """Write a trial directory the way the runner lays it out."""
    trial_dir.mkdir(parents=True, exist_ok=True)
    (trial_dir / "params.json").write_text(json.dumps(config))
    rows = [dict(r, config=config) for r in history]
    with open(trial_dir / "result.json", "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
        f.write(tail)
    if rows:
        flat = [_flat(r) for r in rows]
        cols = list(dict.fromkeys(k for r in flat for k in r))
        with open(trial_dir / "progress.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=cols)
            w.writeheader()
            w.writerows(flat)
    if error is not None:
        (trial_dir / "error.txt").write_text(error)
    for name in checkpoints:
        (trial_dir / name).mkdir()
        (trial_dir / name / "data.txt").write_text(name)
    return trial_dir


def test_config_from_metrics_then_fallback():
    r = Result({"loss": 1, "config": {"lr": 0.1}}, None, None, "/t", _config={"lr": 9})
    assert r.config == {"lr": 0.1}
    assert Result({"loss": 1}, None, None, "/t", _config={"lr": 9}).config == {"lr": 9}
    assert Result(None, None, None, "/t", _config={"lr": 9}).config == {"lr": 9}
    assert Result(None, None, None, "/t").config is None


def test_fields_and_defaults(tmp_path):
    ck = Checkpoint(tmp_path)
    err = ValueError("x")
    r = Result({"a": 1}, ck, err, tmp_path)
    assert r.metrics == {"a": 1} and r.checkpoint is ck and r.error is err
    assert r.path == str(tmp_path)
    assert r.best_checkpoints == []
    pairs = [(ck, {"a": 1})]
    assert Result(None, None, None, "/t", best_checkpoints=pairs).best_checkpoints == pairs


def test_positional_signature():
    df = object()
    r = Result({"a": 1}, None, None, "/t", df, [], {"c": 1})
    assert r.metrics_dataframe is df and r.config == {"c": 1}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"metrics": [1]}, "metrics must be a dict"),
        ({"checkpoint": "/some/dir"}, "Checkpoint.from_directory"),
        ({"error": "boom"}, "TuneError"),
        ({"path": None}, "trial directory"),
    ],
)
def test_type_validation(kwargs, match):
    args = dict(metrics=None, checkpoint=None, error=None, path="/t")
    args.update(kwargs)
    with pytest.raises(TypeError, match=match):
        Result(**args)


def test_metrics_dataframe_lazy_from_progress_csv(tmp_path):
    pytest.importorskip("pandas")
    write_trial(tmp_path / "t", {"lr": 0.1}, [{"loss": 3.0}, {"loss": 2.0}])
    r = Result({"loss": 2.0}, None, None, tmp_path / "t")
    assert r._metrics_dataframe is None  # not read at construction
    df = r.metrics_dataframe
    assert list(df["loss"]) == [3.0, 2.0]
    assert list(df["config/lr"]) == [0.1, 0.1]
    assert r.metrics_dataframe is df  # cached


def test_metrics_dataframe_from_progress_csv_where_result_json_has_no_whole_line(tmp_path):
    pytest.importorskip("pandas")
    write_trial(tmp_path / "t", {"lr": 0.1}, [{"loss": 3.0}, {"loss": 2.0}])
    (tmp_path / "t" / "result.json").write_text('{"loss": 3.0, "tor')  # one torn line
    df = Result({"loss": 2.0}, None, None, tmp_path / "t").metrics_dataframe
    assert list(df["loss"]) == [3.0, 2.0]


def test_metrics_dataframe_absent_is_none(tmp_path):
    assert Result(None, None, None, tmp_path).metrics_dataframe is None
    assert Result(None, None, None, tmp_path / "missing").metrics_dataframe is None


def test_metrics_dataframe_given_is_used(tmp_path):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"x": [1]})
    assert Result(None, None, None, tmp_path, metrics_dataframe=df).metrics_dataframe is df


def test_metrics_dataframe_without_pandas(tmp_path, monkeypatch):
    write_trial(tmp_path / "t", {}, [{"loss": 1.0}])
    monkeypatch.setitem(sys.modules, "pandas", None)
    r = Result(None, None, None, tmp_path / "t")
    with pytest.raises(ImportError, match=r'metrics_dataframe needs pandas: pip install "fasttune\[pandas\]"'):
        r.metrics_dataframe


def test_from_path_full_trial(tmp_path):
    trial = write_trial(
        tmp_path / "trial_0",
        {"lr": 0.01, "opt": {"name": "adam"}},
        [
            {"loss": 3.0, "training_iteration": 1, "checkpoint_dir_name": "checkpoint_000000"},
            {"loss": 2.0, "training_iteration": 2},
            {"loss": 1.0, "training_iteration": 3, "checkpoint_dir_name": "checkpoint_000001"},
        ],
        error="Traceback (most recent call last):\nRuntimeError: boom\n",
        checkpoints=("checkpoint_000000", "checkpoint_000001", "checkpoint_tmp"),
    )
    (trial / "checkpoint_000002").write_text("a file, not a checkpoint dir")
    r = Result.from_path(trial)
    assert r.path == str(trial)
    assert r.metrics["loss"] == 1.0 and r.metrics["training_iteration"] == 3
    assert r.config == {"lr": 0.01, "opt": {"name": "adam"}}
    assert isinstance(r.error, TuneError)
    assert str(r.error) == "Traceback (most recent call last):\nRuntimeError: boom\n"
    assert r.checkpoint == Checkpoint(trial / "checkpoint_000001")
    assert [c.path for c, _ in r.best_checkpoints] == [
        str(trial / "checkpoint_000000"),
        str(trial / "checkpoint_000001"),
    ]
    assert r.best_checkpoints[0][1]["loss"] == 3.0
    assert r.best_checkpoints[1][1]["loss"] == 1.0
    pytest.importorskip("pandas")
    assert list(r.metrics_dataframe["loss"]) == [3.0, 2.0, 1.0]


def test_from_path_checkpoints_ordered_numerically(tmp_path):
    trial = write_trial(tmp_path / "t", {}, [{"a": 1}], checkpoints=("checkpoint_9", "checkpoint_10"))
    r = Result.from_path(trial)
    assert r.checkpoint.path == str(trial / "checkpoint_10")
    assert [os.path.basename(c.path) for c, m in r.best_checkpoints] == ["checkpoint_9", "checkpoint_10"]
    assert all(m == {} for _, m in r.best_checkpoints)


def test_from_path_ignores_truncated_last_line(tmp_path):
    trial = write_trial(
        tmp_path / "t", {"lr": 1}, [{"loss": 5.0}, {"loss": 4.0}], tail='{"loss": 3.0, "conf'
    )
    r = Result.from_path(trial)
    assert r.metrics == {"loss": 4.0, "config": {"lr": 1}}
    assert r.error is None and r.checkpoint is None


def test_from_path_only_a_truncated_line(tmp_path):
    trial = write_trial(tmp_path / "t", {"lr": 1}, [], tail='{"lo')
    r = Result.from_path(trial)
    assert r.metrics == {} and r.config == {"lr": 1}


def test_from_path_corrupt_middle_line_raises(tmp_path):
    trial = tmp_path / "t"
    trial.mkdir()
    (trial / "result.json").write_text('{"a": 1}\n{"a": \n{"a": 3}\n')
    with pytest.raises(ValueError, match="line 2"):
        Result.from_path(trial)


def test_from_path_failed_before_reporting(tmp_path):
    trial = tmp_path / "t"
    trial.mkdir()
    (trial / "params.json").write_text('{"lr": 0.5}')
    (trial / "error.txt").write_text("OOM")
    r = Result.from_path(trial)
    # As Ray Tune: a trial without results has empty metrics, so r.metrics.get(...) works.
    assert r.metrics == {} and r.config == {"lr": 0.5}
    assert isinstance(r.error, TuneError) and str(r.error) == "OOM"
    assert r.metrics_dataframe is None


def test_from_path_missing_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        Result.from_path(tmp_path / "nowhere")


def test_from_path_bad_params(tmp_path):
    (tmp_path / "params.json").write_text("{oops")
    with pytest.raises(ValueError, match="params.json is not valid JSON"):
        Result.from_path(tmp_path)


def test_repr(tmp_path):
    r = Result({"loss": 0.5, "config": {"secret_lr": 1}}, Checkpoint(tmp_path), None, "/e/t0")
    text = repr(r)
    assert "'loss': 0.5" in text and "'/e/t0'" in text and "Checkpoint(" in text
    assert "secret_lr" not in text and "error=" not in text
    assert "error=TuneError('bad')" in repr(Result(None, None, TuneError("bad"), "/e/t1"))


def _trial_with_checkpoints(tmp_path):
    return write_trial(
        tmp_path / "trial_0",
        {"lr": 0.01},
        [
            {"loss": 3.0, "val": {"acc": 0.5}, "checkpoint_dir_name": "checkpoint_000000"},
            {"loss": 1.0, "val": {"acc": 0.9}, "checkpoint_dir_name": "checkpoint_000001"},
            {"loss": 2.0, "checkpoint_dir_name": "checkpoint_000002"},
        ],
        checkpoints=("checkpoint_000000", "checkpoint_000001", "checkpoint_000002"),
    )


def test_get_best_checkpoint_ranks_the_kept_checkpoints(tmp_path):
    r = Result.from_path(_trial_with_checkpoints(tmp_path))
    name = lambda checkpoint: os.path.basename(checkpoint.path)  # noqa: E731
    assert name(r.get_best_checkpoint("loss", "min")) == "checkpoint_000001"
    assert name(r.get_best_checkpoint("loss", "max")) == "checkpoint_000000"
    # Nested metrics by their "/" name; the checkpoint reported without it is left out.
    assert name(r.get_best_checkpoint("val/acc", "min")) == "checkpoint_000000"
    with pytest.raises(RuntimeError, match="'nope'"):
        r.get_best_checkpoint("nope", "max")
    with pytest.raises(ValueError, match="mode='best'"):
        r.get_best_checkpoint("loss", "best")
    with pytest.raises(RuntimeError, match="kept no checkpoint"):
        Result({}, None, None, str(tmp_path)).get_best_checkpoint("loss", "min")


def test_from_path_on_a_storage_filesystem(tmp_path, monkeypatch):
    fs = pytest.importorskip("pyarrow.fs", reason="storage needs pyarrow (the test extra)")
    monkeypatch.setenv("FASTTUNE_STORAGE_CACHE", str(tmp_path / "cache"))
    trial = _trial_with_checkpoints(tmp_path)
    filesystem = fs.LocalFileSystem()
    r = Result.from_path(str(trial), storage_filesystem=filesystem)
    assert r.metrics["loss"] == 2.0 and r.config == {"lr": 0.01}
    assert r.path.startswith(str(tmp_path / "cache"))  # a local copy of its files
    assert r.checkpoint.path == str(trial / "checkpoint_000002") and r.checkpoint.filesystem is filesystem
    assert isinstance(r.filesystem, fs.LocalFileSystem)
