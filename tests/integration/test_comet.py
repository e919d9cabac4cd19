"""fasttune.integration.comet on real sweeps, read back from the archives of Comet's offline
experiments: one experiment per trial with its name, tags, parameters, "other" fields, system
info, metrics at their steps and curves, and an ended experiment for a trial that failed.
Artifacts need an online experiment (Comet's offline ones refuse them) and this test has no
network: the checkpoint test keeps the artifacts the callback would upload."""
import glob
import json
import os
import zipfile

import pytest

import fasttune as tune
from fasttune.integration.comet import CometLoggerCallback
from fasttune_testing import fit
from tracking_testing import imports_library, missing_library_message

pytestmark = pytest.mark.usefixtures("ray_session")

# Comet's own logging of the machine and the code, off so the archive holds what the callback logs.
QUIET = dict(log_code=False, log_env_details=False, log_env_host=False, log_env_disk=False, log_env_network=False,
             parse_args=False, display_summary_level=0)
COMETS_OWN_METRICS = {"process duration"}  # Comet logs it at the end of every experiment


def archives(directory):
    """``{trial_id: (experiment.json, [messages])}`` of every offline experiment in ``directory``."""
    out = {}
    for path in glob.glob(os.path.join(directory, "*.zip")):
        with zipfile.ZipFile(path) as archive:
            experiment = json.loads(archive.read("experiment.json"))
            messages = [json.loads(line) for line in archive.read("messages.json").decode().splitlines()]
        others = {m["payload"]["key"]: m["payload"]["value"] for m in messages if m["type"] == "log_other"}
        out[others["trial_id"]] = (experiment, messages)
    return out


def of_type(messages, kind):
    return [m["payload"] for m in messages if m["type"] == kind]


def metrics(messages):
    """``{name: [(step, value), ...]}`` of the metrics the callback logged."""
    out = {}
    for payload in of_type(messages, "metric_msg"):
        metric = payload["metric"]
        if metric["metricName"] not in COMETS_OWN_METRICS:
            out.setdefault(metric["metricName"], []).append((metric["step"], metric["metricValue"]))
    return out


def comet_steps(config):
    for i in range(1, 4):
        result = {"loss": config["x"] * i, "nested": {"a": 0.5 * i}, "should_checkpoint": False}
        if config["x"] == 2:
            result["hist_stats"] = {"episode_reward": [float(i), 2.0 * i]}
        tune.report(result)
        if config["x"] == 3 and i == 2:
            raise RuntimeError("failing on purpose")


def test_one_offline_experiment_per_trial_with_what_ray_tune_logs(tmp_path):
    offline = str(tmp_path / "comet")
    results = fit(comet_steps, str(tmp_path / "storage"), space={"x": tune.grid_search([1, 2, 3]), "opt": {"m": 7}},
                  callbacks=[CometLoggerCallback(online=False, tags=["sweep", "t2"], offline_directory=offline,
                                                 project_name="proj", **QUIET)])
    experiments = archives(offline)  # an archive is written when its experiment ends
    assert sorted(experiments) == sorted(result.metrics["trial_id"] for result in results)
    for result in results:
        x, trial_id = result.config["x"], result.metrics["trial_id"]
        assert (result.error is not None) == (x == 3)
        experiment, messages = experiments[trial_id]
        assert experiment["project_name"] == "proj"
        assert sorted(experiment["tags"]) == ["sweep", "t2"]
        # (Comet itself adds "sys.already_imported_modules" when this process has imported a
        # library it would have patched, such as mlflow by an earlier test: not the callback's.)
        others = {p["key"]: p["value"] for p in of_type(messages, "log_other")
                  if p["key"] != "sys.already_imported_modules"}
        assert others == {"offline_experiment": True, "Name": f"comet_steps_{trial_id}", "Created from": "Ray",
                          "hasNestedParams": True, "trial_id": trial_id}
        parameters = [(p["param"]["paramName"], p["param"]["paramValue"], p["param"]["step"])
                      for p in of_type(messages, "parameter_msg") if p["param"]["source"] == "manual"]
        # The config when the trial starts (Comet flattens it with "|"); results repeat it unchanged.
        assert sorted(parameters) == [("opt|m", 7, None), ("x", x, None)]
        system = {}
        for p in of_type(messages, "system_info"):
            system.setdefault(p["system_info"]["key"], []).append(p["system_info"]["value"])
        assert sorted(system) == ["date", "hostname", "node_ip", "pid"]
        assert system["node_ip"] == [result.metrics["node_ip"]]  # logged again only when it changes
        assert system["pid"] == [result.metrics["pid"]]
        logged = metrics(messages)
        steps = [1, 2] if x == 3 else [1, 2, 3]
        # Every number but done and should_checkpoint (left out), the system and "other" keys,
        # and config; hist_stats/episode_reward is a curve.
        assert sorted(logged) == ["iterations_since_restore", "loss", "nested/a", "time_since_restore",
                                  "time_this_iter_s", "time_total_s", "timestamp", "training_iteration"]
        assert logged["loss"] == [(step, x * step) for step in steps]
        assert logged["nested/a"] == [(step, 0.5 * step) for step in steps]
        assert logged["training_iteration"] == [(step, step) for step in steps]
        assert [step for step, _ in logged["timestamp"]] == steps
        curves = [p for p in of_type(messages, "file_upload") if p["upload_type"] == "curve"]
        assert len(curves) == (3 if x == 2 else 0)


def comet_checkpoints(config):
    for i in range(1, 4):
        directory = os.path.join(os.getcwd(), f"ckpt_{i}")
        os.makedirs(os.path.join(directory, "sub"), exist_ok=True)
        for name in ("sub/weights.txt", "meta.json"):
            with open(os.path.join(directory, name), "w") as f:
                f.write(str(i))
        tune.report({"loss": 1.0 / i}, checkpoint=tune.Checkpoint.from_directory(directory))


class KeepsArtifacts(CometLoggerCallback):
    """Keeps, instead of uploading, each artifact: its tracking process's handler is
    ``tracking_testing.KeepsCometArtifacts``, which writes them to ``kept_path``."""

    def __init__(self, kept_path, **kwargs):
        super().__init__(**kwargs)
        self.kept_path = kept_path

    def _handler(self):
        _, _, args = super()._handler()
        return "tracking_testing", "KeepsCometArtifacts", (*args, self.kept_path)

    def kept(self):
        """``[(experiment name, artifact name, type, [(logical path, file content)])]``."""
        with open(self.kept_path) as f:
            kept = [json.loads(line) for line in f]
        return [(name, artifact, kind, [tuple(file) for file in files]) for name, artifact, kind, files in kept]


def test_each_checkpoint_becomes_a_model_artifact_with_its_files(tmp_path, monkeypatch):
    # The tracking process imports the handler from this directory.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [os.path.dirname(__file__),
                                                                   os.environ.get("PYTHONPATH")])))
    # ``disabled``: a real online Experiment that sends nothing.
    callback = KeepsArtifacts(str(tmp_path / "kept.jsonl"), save_checkpoints=True, disabled=True, **QUIET)
    results = fit(comet_checkpoints, str(tmp_path / "storage"), space={"x": 1}, callbacks=[callback])
    name = f"comet_checkpoints_{results[0].metrics['trial_id']}"
    assert callback.kept() == [(name, f"checkpoint_{name}", "model", [("meta.json", str(i)),
                                                                      ("sub/weights.txt", str(i))])
                               for i in (1, 2, 3)]


def test_checkpoints_need_an_online_experiment():
    with pytest.raises(ValueError, match=r"save_checkpoints=True\) needs online=True"):
        CometLoggerCallback(online=False, save_checkpoints=True)


def test_bad_tags_say_what_is_wrong():
    with pytest.raises(TypeError, match=r"tags='sweep'\) takes a list of strings"):
        CometLoggerCallback(online=False, tags="sweep")


def test_without_comet_the_callback_says_what_to_install():
    assert missing_library_message('comet_ml', 'fasttune.integration.comet', 'CometLoggerCallback') == (
        'CometLoggerCallback needs comet_ml: pip install "fasttune[comet]" (or pip install comet_ml).')


def test_importing_the_callback_does_not_import_comet():
    assert not imports_library('comet_ml', 'fasttune.integration.comet', 'fasttune.logger.comet')
    from fasttune.logger.comet import CometLoggerCallback as at_ray_tunes_path

    assert at_ray_tunes_path is CometLoggerCallback


def test_the_callback_pickles_with_its_settings_for_tuner_restore():
    import ray.cloudpickle as cloudpickle

    callback = CometLoggerCallback(online=False, tags=["a"], project_name="proj")
    copy = cloudpickle.loads(cloudpickle.dumps(callback))
    assert (copy.online, copy.tags, copy.save_checkpoints, copy.experiment_kwargs) == (
        False, ["a"], False, callback.experiment_kwargs)
    assert copy.experiment_kwargs["project_name"] == "proj" and copy.experiment_kwargs["log_git_patch"] is False
