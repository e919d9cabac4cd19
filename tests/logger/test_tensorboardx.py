"""TBXLoggerCallback: event files that TensorBoard reads, with what was reported."""
import glob
import math
import os
import time

import numpy as np
import pytest

from fasttune.logger import TBXLoggerCallback
from fasttune_testing import StandIn
from reporting import STEPS, reported, reporting_sweep

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
plugin_data_pb2 = pytest.importorskip("tensorboard.plugins.hparams.plugin_data_pb2")

SCALAR_KEYS = ("loss", "acc/top1", "acc/top5", "n", "flag")


def _accumulator(path):
    accumulator = event_accumulator.EventAccumulator(path, size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def _as_reported(i, x, key):
    value = reported(i, x)
    for part in key.split("/"):
        value = value[part]
    return float(value)


def test_tensorboard_reads_the_scalars_histograms_and_hparams_reported(ray_session, storage):
    grid = reporting_sweep(storage, "tbx")
    for result in grid:
        x = result.config["x"]
        assert len(glob.glob(os.path.join(result.path, "events.out.tfevents.*"))) == 1
        accumulator = _accumulator(result.path)
        tags = set(accumulator.Tags()["scalars"])
        # Numeric fields only; NaN, strings and the skipped keys are not scalars.
        assert {f"ray/tune/{key}" for key in SCALAR_KEYS} <= tags
        assert not {"ray/tune/nan", "ray/tune/name", "ray/tune/trial_id", "ray/tune/training_iteration",
                    "ray/tune/timestamp", "ray/tune/pid", "ray/tune/time_total_s"} & tags
        assert {"ray/tune/time_this_iter_s", "ray/tune/iterations_since_restore", "ray/tune/done"} <= tags
        for key in SCALAR_KEYS:
            events = accumulator.Scalars(f"ray/tune/{key}")
            assert [e.step for e in events] == list(range(1, STEPS + 1))
            for i, event in enumerate(events, start=1):
                assert event.value == pytest.approx(_as_reported(i, x, key), rel=1e-6)  # float32
        assert [e.value for e in accumulator.Scalars("ray/tune/done")] == [0.0] * STEPS  # bools are scalars
        histograms = accumulator.Histograms("ray/tune/hist")
        assert [h.step for h in histograms] == list(range(1, STEPS + 1))
        assert histograms[-1].histogram_value.sum == pytest.approx(6.0 * STEPS)
        hparams = accumulator.PluginTagToContent("hparams")
        start = plugin_data_pb2.HParamsPluginData.FromString(hparams["_hparams_/session_start_info"])
        assert start.session_start_info.hparams["x"].number_value == x
        assert "tag" not in start.session_start_info.hparams  # as Ray Tune: the searched parameters only
        experiment = plugin_data_pb2.HParamsPluginData.FromString(hparams["_hparams_/experiment"]).experiment
        assert "ray/tune/loss" in {m.name.tag for m in experiment.metric_infos}


class _Trial:
    def __init__(self, path, trial_id="t1"):
        self.path, self.trial_id = path, trial_id
        self.evaluated_params = {"lr": 0.1}

    def __str__(self):
        return self.trial_id


def test_a_trial_keeps_one_event_file_across_a_restart_and_after_its_end(tmp_path):
    logger = TBXLoggerCallback()
    trial = _Trial(str(tmp_path / "trial"))
    logger.log_trial_start(trial)
    logger.log_trial_result_batch(1, trial, [{"loss": 1.0, "training_iteration": 1}], [100.0])
    logger.log_trial_restore(trial)  # resumed (e.g. after a pause): the same file goes on
    logger.log_trial_result_batch(2, trial, [{"loss": 0.5, "training_iteration": 2, "timesteps_total": 64},
                                             {"loss": float("nan"), "training_iteration": 3}], [101.0, 102.0])
    logger.log_trial_result(3, trial, {"loss": 0.25, "training_iteration": 4})
    logger.log_trial_end(trial)
    # A result that was on its way when the trial was stopped goes to the same file.
    logger.log_trial_result_batch(4, trial, [{"loss": 0.125, "training_iteration": 5}], [103.0])
    logger.on_experiment_end(trials=[trial])
    assert len(glob.glob(str(tmp_path / "trial" / "events.out.tfevents.*"))) == 1
    events = _accumulator(trial.path).Scalars("ray/tune/loss")
    # timesteps_total is the step when set; a NaN loss is left out.
    assert [(e.step, e.value) for e in events] == [(1, 1.0), (64, 0.5), (4, 0.25), (5, 0.125)]
    assert [e.wall_time for e in events][:2] == [100.0, 101.0]


def test_an_ended_trial_goes_on_in_its_own_event_file_after_the_name_of_new_files_changed(tmp_path, monkeypatch):
    from fasttune.logger import tensorboardx

    logger = TBXLoggerCallback()
    trial = _Trial(str(tmp_path / "trial"))
    logger.log_trial_start(trial)
    logger.log_trial_result_batch(1, trial, [{"loss": 1.0, "training_iteration": 1}], [100.0])
    logger.log_trial_end(trial)
    # A later second: files made from now on have another name; the ended trial keeps its own.
    monkeypatch.setattr(tensorboardx, "_last_name", [None, ""])
    monkeypatch.setattr(tensorboardx, "time", StandIn(time, time=lambda: 4102444800.0))  # the module's clock only
    assert tensorboardx._event_file_name().startswith("events.out.tfevents.4102444800.")  # (it reaches the module)
    logger.log_trial_restore(trial)
    logger.log_trial_result_batch(2, trial, [{"loss": 0.5, "training_iteration": 2}], [101.0])
    logger.on_experiment_end(trials=[trial])
    files = glob.glob(str(tmp_path / "trial" / "events.out.tfevents.*"))
    assert len(files) == 1 and ".4102444800." not in files[0]
    assert [(e.step, e.value) for e in _accumulator(trial.path).Scalars("ray/tune/loss")] == [(1, 1.0), (2, 0.5)]


def test_images_are_logged_and_values_tensorboard_cannot_take_are_skipped_with_a_warning(tmp_path, caplog):
    logger = TBXLoggerCallback()
    trial = _Trial(str(tmp_path / "trial"))
    image = np.zeros((3, 4, 5), dtype=np.uint8)
    logger.log_trial_result_batch(1, trial, [{"img": image, "bad": [[1.0], [2.0, 3.0]], "loss": 1.0,
                                              "training_iteration": 1}], [100.0])
    logger.log_trial_end(trial)
    logger.on_experiment_end(trials=[trial])
    accumulator = _accumulator(trial.path)
    assert accumulator.Tags()["images"] == ["ray/tune/img"]
    assert [e.value for e in accumulator.Scalars("ray/tune/loss")] == [1.0]
    assert "ray/tune/bad" in caplog.text


def test_a_logger_the_user_passed_pickles_with_the_tuner_and_the_copy_writes_its_own_files(tmp_path):
    import ray.cloudpickle as cloudpickle  # as the Tuner saves its RunConfig

    class Mine(TBXLoggerCallback):
        def __init__(self, note):
            super().__init__()
            self.note = note

    logger = Mine("kept")
    trial = _Trial(str(tmp_path / "trial"))
    logger.log_trial_result_batch(1, trial, [{"loss": 1.0, "training_iteration": 1}], [100.0])
    copy = cloudpickle.loads(cloudpickle.dumps(logger))
    assert copy.note == "kept"
    copy.log_trial_result_batch(2, trial, [{"loss": 0.5, "training_iteration": 2}], [101.0])
    for each in (logger, copy):
        each.log_trial_end(trial)
        each.on_experiment_end(trials=[trial])
    assert sorted(e.step for e in _accumulator(trial.path).Scalars("ray/tune/loss")) == [1, 2]


def test_valid_summary_types_are_ray_tunes():
    from fasttune.logger.tensorboardx import VALID_SUMMARY_TYPES

    assert VALID_SUMMARY_TYPES == [int, float, np.float32, np.float64, np.int32, np.int64]
