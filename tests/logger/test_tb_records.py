"""The hand-encoded TensorBoard records: the same messages tensorboardX makes."""
import struct

import pytest

from fasttune.logger._tb_records import file_version_record, hparams_records

event_pb2 = pytest.importorskip("tensorboardX.proto.event_pb2")
plugin_pb2 = pytest.importorskip("tensorboardX.proto.plugin_hparams_pb2")


def _events(data):
    out, pos = [], 0
    while pos < len(data):
        (length,) = struct.unpack_from("<Q", data, pos)
        out.append(event_pb2.Event.FromString(data[pos + 12:pos + 12 + length]))
        pos += 16 + length
    return out


def test_the_file_version_header():
    (event,) = _events(file_version_record(123.5))
    assert event.wall_time == 123.5 and event.file_version == "brain.Event:2"


def test_hparams_records_equal_tensorboardx_hparams():
    from tensorboardX.summary import hparams

    params = {"lr": 0.1, "layers": 3, "opt": "adam", "nesterov": False, "sizes": [1, 2], "none": None,
              "fn": len}
    metrics = ["ray/tune/loss", "ray/tune/acc/top1"]
    ours = _events(hparams_records(params, metrics, 99.0))
    theirs = hparams(hparam_dict=params, metric_dict=dict.fromkeys(metrics, 0.0))
    assert [e.wall_time for e in ours] == [99.0] * 3
    assert len(ours) == len(theirs) == 3
    for event, summary in zip(ours, theirs):
        (mine,), (expected,) = event.summary.value, summary.value
        assert mine.tag == expected.tag
        assert mine.metadata.plugin_data.plugin_name == expected.metadata.plugin_data.plugin_name == "hparams"
        # Compared as messages: map entries may be serialized in any order.
        assert (plugin_pb2.HParamsPluginData.FromString(mine.metadata.plugin_data.content)
                == plugin_pb2.HParamsPluginData.FromString(expected.metadata.plugin_data.content))
