"""Helpers of the command-line tests: the experiments' settings, and result files read
here independently of fasttune's readers."""
import json
import os

PLAIN_X = [1, 2, 3, 10]
FAILING_X = 3
PBT_STEPS = 16
TORN_LINE = '{"loss": -100.0, "training_iteration": 6, "trial_id": "tor'
NEW_TRIAL = "plain_new_99999_8_name=a,x=7"


def read_rows(trial_dir):
    """Every complete line of a trial's result.json, read here independently of fasttune."""
    rows = []
    with open(os.path.join(trial_dir, "result.json")) as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except ValueError:
                pass  # a torn last line
    return rows


def trial_dirs(experiment_path):
    return sorted(os.path.join(experiment_path, n) for n in os.listdir(experiment_path)
                  if os.path.isfile(os.path.join(experiment_path, n, "params.json")))
