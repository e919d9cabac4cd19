"""``tune.run`` and ``run_experiments`` with the parameters Ray Tune still takes: the
older checkpoint arguments set CheckpointConfig (with a DeprecationWarning), the
deprecated ones are refused as Ray Tune refuses them, resume's forms mean what they mean
there, and run_experiments' parameters are in Ray Tune's positions."""
import os
import warnings

import pytest

import fasttune as tune
from fasttune.tune import _resume_config
from fasttune.tune_config import ResumeConfig
from fasttune_testing import report_with_step_checkpoint

LOSSES = [5.0, 1.0, 6.0, 7.0]


def train(config):
    for step, loss in enumerate(config.get("losses", LOSSES), start=1):
        report_with_step_checkpoint({"loss": loss}, step)


def step_of(checkpoint):
    with checkpoint.as_directory() as d:
        return int(open(os.path.join(d, "step")).read())


@pytest.mark.parametrize("arguments, refused", [
    ({"local_dir": "/tmp/old"}, r"local_dir='/tmp/old'\) is no longer supported.*storage_path="),
    ({"chdir_to_trial_dir": False}, r"chdir_to_trial_dir=False\) is no longer supported.*get_trial_dir"),
])
def test_deprecated_arguments_are_refused_as_ray_tune_refuses_them(storage, arguments, refused):
    with pytest.raises(DeprecationWarning, match=refused):
        tune.run(train, storage_path=storage, verbose=0, **arguments)


@pytest.mark.parametrize("arguments, refused", [
    ({"restore": "/some/checkpoint"}, r"tune.run\(restore=...\) is not supported.*load it in the trainable"),
    ({"export_formats": ["model"]}, r"tune.run\(export_formats=...\) is not supported"),
    ({"no_such_argument": 1}, r"does not support: \['no_such_argument'\]"),
])
def test_arguments_fasttune_does_not_provide_are_named(storage, arguments, refused):
    with pytest.raises(TypeError, match=refused):
        tune.run(train, storage_path=storage, verbose=0, **arguments)


def test_legacy_checkpoint_arguments_set_the_checkpoint_config(ray_session, storage):
    with pytest.warns(DeprecationWarning) as caught:
        analysis = tune.run(train, name="legacy_ckpt", storage_path=storage, keep_checkpoints_num=1,
                            checkpoint_score_attr="min-loss", verbose=0)
    said = " ".join(str(w.message) for w in caught)
    assert "keep_checkpoints_num" in said and "checkpoint_score_attr" in said and "checkpoint_score_order" in said
    (trial,) = analysis.trials
    # One kept by score: the one reported with the lowest loss (step 2); and, as in Ray
    # Tune, the latest (step 4), which a restart resumes from.
    assert [step_of(c) for c in trial.checkpoints] == [2, 4]


def test_legacy_checkpoint_arguments_leave_the_given_config_as_it_is(ray_session, storage):
    given = tune.CheckpointConfig(num_to_keep=3)
    with pytest.warns(DeprecationWarning, match="checkpoint_score_attr"):
        analysis = tune.run(train, name="given_ckpt", storage_path=storage, checkpoint_config=given,
                            checkpoint_score_attr="loss", verbose=0)
    assert given == tune.CheckpointConfig(num_to_keep=3)
    # Kept by the highest loss (no "min-" prefix): 7 (step 4), 6 (step 3), 5 (step 1).
    assert sorted(step_of(c) for c in analysis.trials[0].checkpoints) == [1, 3, 4]
    assert analysis.trials[0].checkpoint_config.checkpoint_score_order == "max"


def test_checkpoint_freq_needs_a_class_trainable(storage):
    with pytest.warns(DeprecationWarning, match="checkpoint_freq"), \
            pytest.raises(ValueError, match="checkpoint_frequency=2.*class Trainable"):
        tune.run(train, storage_path=storage, checkpoint_freq=2, verbose=0)


def test_no_warning_without_legacy_arguments(ray_session, storage):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        analysis = tune.run(train, name="quiet", storage_path=storage, verbose=0)
    assert len(analysis.trials[0].checkpoints) == 4


@pytest.fixture(scope="module")
def finished_experiment(ray_session, tmp_path_factory):
    storage_path = str(tmp_path_factory.mktemp("results"))
    return tune.run(train, name="done", storage_path=storage_path, verbose=0).experiment_path


@pytest.mark.parametrize("resume, unfinished, errored", [
    (True, "resume", "skip"),
    ("AUTO", "resume", "skip"),
    ("AUTO+ERRORED", "resume", "resume"),
    ("AUTO+RESTART_ERRORED", "resume", "restart"),
    ("AUTO+ERRORED_ONLY", "skip", "resume"),
    ("AUTO+RESTART_ERRORED_ONLY", "skip", "restart"),
    ("ERRORED_ONLY", "skip", "restart"),
])
def test_resume_forms_mean_what_they_mean_in_ray_tune(finished_experiment, resume, unfinished, errored):
    config = _resume_config(resume, None, finished_experiment)
    assert (config.unfinished.value, config.errored.value) == (unfinished, errored)


def test_resume_config_resumes_when_there_is_something_to_resume(finished_experiment, tmp_path):
    given = ResumeConfig(errored="restart")
    assert _resume_config(None, given, finished_experiment) is given
    assert _resume_config("AUTO", given, finished_experiment) is given
    assert _resume_config(None, given, str(tmp_path)) is None  # nothing there: start anew
    assert _resume_config("AUTO", None, str(tmp_path)) is None
    assert _resume_config(None, None, finished_experiment) is None
    with pytest.raises(TypeError, match="needs a tune.ResumeConfig, got dict"):
        _resume_config(None, {"errored": "restart"}, finished_experiment)


def test_resume_config_restarts_errored_trials(ray_session, storage):
    marker = os.path.join(storage, "failed_once")

    def fails_once(config):
        tune.report({"attempt": 2 if os.path.exists(marker) else 1})
        if not os.path.exists(marker):
            open(marker, "w").close()
            raise RuntimeError("first attempt")

    with pytest.raises(tune.TuneError, match="did not complete"):
        tune.run(fails_once, name="again", storage_path=storage, verbose=0)
    analysis = tune.run(fails_once, name="again", storage_path=storage, verbose=0,
                        resume_config=ResumeConfig(errored=ResumeConfig.ResumeType.RESTART))
    (trial,) = analysis.trials
    assert trial.status == "TERMINATED" and trial.last_result["attempt"] == 2


def test_run_experiments_takes_ray_tunes_positions(ray_session, storage):
    experiment = tune.Experiment("positional", train, storage_path=storage,
                                 config={"losses": tune.grid_search([[1.0], [2.0]])})
    # experiments, scheduler, verbose, progress_reporter, resume, resume_config, reuse_actors,
    # raise_on_failed_trial, concurrent, callbacks
    trials = tune.run_experiments(experiment, None, 0, None, None, None, False, True, False, None)
    assert sorted(t.last_result["loss"] for t in trials) == [1.0, 2.0]
    assert all(t.status == "TERMINATED" for t in trials)


def test_run_experiments_reads_spec_dicts_as_from_json(ray_session, storage):
    trials = tune.run_experiments({"from_dict": {"run": train, "storage_path": storage, "env": "unused",
                                                 "config": {"losses": [3.0]}}}, verbose=0)
    assert [t.config for t in trials] == [{"losses": [3.0], "env": "unused"}]
    with pytest.raises(tune.TuneError, match="spec of experiment 'bad' is not valid.*checkpoint_freq"):
        tune.run_experiments({"bad": {"run": train, "checkpoint_freq": 2}})
