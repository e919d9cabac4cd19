"""A snapshot record that decodes to the wrong shapes (damaged, or crafted) is a
CorruptExperimentState naming the file and the trial, whatever decoding it raised; the
readers leave that trial out with a warning saying so, and read the others."""
import logging
import os
import re

import pytest

import fasttune as tune
from fasttune._serialization import Loader, pack
from fasttune.analysis import ExperimentAnalysis
from fasttune.execution._experiment_state import (
    as_bin, load_latest, read_trials, snapshot_paths, write_snapshot)

pytestmark = pytest.mark.usefixtures("ray_session")


def reports_x(config):
    tune.report({"score": config["x"]})


def _with_record_resources(experiment, resources):
    """A newer snapshot whose first trial record holds ``resources``."""
    state, path = load_latest(experiment, Loader())
    packed = list(state.pop("trials"))
    records = [as_bin(record) for record in packed]  # (as write_snapshot takes them)
    fields = Loader().unpack(packed[0])
    fields[4] = resources
    records[0] = as_bin(pack(fields))
    seq = int(re.search(r"(\d+)\.msgpack$", path).group(1)) + 1
    return write_snapshot(experiment, state, records, seq)


def test_a_record_with_resources_no_worker_could_have_is_corrupt_state_and_readers_use_the_files(tmp_path, caplog):
    storage = str(tmp_path)
    tune.Tuner(reports_x, param_space={"x": tune.grid_search([1, 2])},
               run_config=tune.RunConfig(name="exp", storage_path=storage, verbose=0)).fit()
    experiment = os.path.join(storage, "exp")
    damaged = _with_record_resources(experiment, [[{"CPU": 2**2000}], "PACK"])  # kept as a pickle: no number
    assert snapshot_paths(experiment)[0] == damaged
    with caplog.at_level(logging.WARNING):
        (kept,) = read_trials(experiment)  # that trial left out, the other read
    assert kept.config == {"x": 2}
    assert re.search(r"experiment_state-\d+\.msgpack: trial \S+x=1 is left out: its record cannot be read \(Resource",
                     caplog.text)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        analysis = ExperimentAnalysis(experiment)
    assert sorted(analysis.results_df["score"]) == [1, 2]
    assert "cannot be read" in caplog.text
