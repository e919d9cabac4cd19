"""Helpers of the command-line tests: the experiments' trainables and settings, and
result files read here independently of fasttune's readers."""
import json
import os

import fasttune as tune
from fasttune_testing import report_with_json_checkpoint, restored_json

PLAIN_X = [1, 2, 3, 10]
FAILING_X = 3
PBT_STEPS = 16
TORN_LINE = '{"loss": -100.0, "training_iteration": 6, "trial_id": "tor'
NEW_TRIAL = "plain_new_99999_8_name=a,x=7"
CHECKPOINTING_X = (1, 2)  # with RunConfig(results_store="experiment") these get a trial directory
STORE_X = [1, 2, FAILING_X, 10]  # ... and so does the failing one; x=10 only reports


def plain_trainable(config):
    for i in range(5):
        if config["x"] == FAILING_X and i == 2:
            raise ValueError("this trial fails on purpose")
        # Its own timestamps (a result's timestamp is kept when reported), spread over
        # seconds so that the best-so-far plot has more than one point.
        tune.report({"loss": config["x"] * (5 - i) + 0.25 * i, "acc": i / config["x"], "nested": {"a": i},
                     "timestamp": 1_700_000_000 + 3 * i + config["x"]})


def pbt_trainable(config):
    q, start = restored_json([0.0, 0])
    for step in range(start + 1, PBT_STEPS + 1):
        q += config["lr"]
        if step % 2 == 0:
            report_with_json_checkpoint({"q": q}, [q, step])
        else:
            tune.report({"q": q})


def checkpointing_trainable(config):
    """Four results (a checkpoint with every other one when x is in CHECKPOINTING_X); x=FAILING_X
    fails before its third."""
    for i in range(4):
        if config["x"] == FAILING_X and i == 2:
            raise ValueError("this trial fails on purpose")
        metrics = {"loss": config["x"] * (4 - i) + 0.25 * i, "acc": i / config["x"], "nested": {"a": i}}
        if config["x"] in CHECKPOINTING_X and i % 2 == 1:
            report_with_json_checkpoint(metrics, [i])
        else:
            tune.report(metrics)


def read_rows(trial_dir):
    """Every complete line of a trial's result.json, read here independently of fasttune."""
    with open(os.path.join(trial_dir, "result.json")) as f:
        text = f.read()
    # Only the last line may be torn (a run still writing it): it has no newline yet.
    complete = text[:text.rfind("\n") + 1]
    return [json.loads(line) for line in complete.splitlines()]


def trial_dirs(experiment_path):
    return sorted(os.path.join(experiment_path, n) for n in os.listdir(experiment_path)
                  if os.path.isfile(os.path.join(experiment_path, n, "params.json")))
