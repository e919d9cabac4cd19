"""``tuner.msgpack`` read back by ``Tuner.restore``: a damaged setting is one clear
CorruptExperimentState naming the file and the setting, whatever the damage is."""
import os

import pytest

import fasttune as tune
from fasttune.execution import _experiment_state as state
from fasttune.execution._experiment_state import CorruptExperimentState
from fasttune.impl._tuner_spec import TUNER_FILE, load_tuner_spec, save_tuner_spec


@pytest.mark.parametrize("damaged_name, error", [
    (b"checkpoint_score_attr\xd4bute", "UnicodeDecodeError"),  # a key that is no longer UTF-8
    (b"checkpoint_score_attrXbute", "TypeError"),  # a field CheckpointConfig does not have
])
def test_a_damaged_setting_is_a_clear_error_naming_it(tmp_path, damaged_name, error):
    path = str(tmp_path)
    assert save_tuner_spec(path, "train", {"x": 1}, tune.TuneConfig(), tune.RunConfig(storage_path=path))
    file = os.path.join(path, TUNER_FILE)
    data = state.read_file(file)
    assert data.count(b"checkpoint_score_attribute") == 1
    # Damaged before its checksum was taken (as a bad write of a whole file would be).
    state.write_file(file, data.replace(b"checkpoint_score_attribute", damaged_name))
    with pytest.raises(CorruptExperimentState, match=rf"{TUNER_FILE}: the setting run_config.checkpoint_config "
                                                     rf"cannot be read \({error}: "):
        load_tuner_spec(path)
