"""tb_scalar_events / tfrecord / crc32c: TensorBoard's record format, and the compiled
core and its twin producing the same bytes for the same results."""
import math
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fasttune._core as compiled
import fasttune._core_fallback as twin

IMPLEMENTATIONS = (compiled, twin)


def _records(data):
    """Split framed records, checking both checksums as TensorBoard's reader does."""
    from tensorboardX.crc32c import crc32c

    def masked(b):
        crc = crc32c(b)
        return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF

    out, pos = [], 0
    while pos < len(data):
        (length,) = struct.unpack_from("<Q", data, pos)
        assert struct.unpack_from("<I", data, pos + 8)[0] == masked(data[pos:pos + 8])
        body = data[pos + 12:pos + 12 + length]
        assert struct.unpack_from("<I", data, pos + 12 + length)[0] == masked(body)
        out.append(body)
        pos += 16 + length
    return out


@pytest.mark.parametrize("core", IMPLEMENTATIONS)
@pytest.mark.parametrize("data", [b"", b"a", b"123456789", bytes(range(256)) * 3])
def test_crc32c_matches_tensorboardx(core, data):
    from tensorboardX.crc32c import crc32c

    assert core.crc32c(data) == crc32c(data)


@pytest.mark.parametrize("core", IMPLEMENTATIONS)
def test_each_result_is_one_event_with_its_scalars(core):
    results = [
        {"loss": 0.5, "acc": {"top1": 0.25}, "flag": True, "n": np.int64(7), "f32": np.float32(1.5),
         "name": "x", "none": None, "nan": float("nan"), "i16": np.int16(3), "hist": [1, 2],
         "arr": np.ones(2), "empty": [], "config": {"lr": 0.1}, "pid": 4, "timestamp": 9, "time_total_s": 1.0,
         "training_iteration": 3},
        {"only": "strings", "training_iteration": 4},  # no scalar: no event
        {"loss": 1e39, "timesteps_total": 128, "training_iteration": 5},  # beyond float32: inf
    ]
    tags = {}
    records, others = core.tb_scalar_events(results, [10.5, 11.0, 12.25], tags)
    # tensorboardX (the test extra) is the independent reference reader; the byte
    # comparison below needs nothing but the two implementations.
    from tensorboardX.proto import event_pb2

    events = [event_pb2.Event.FromString(body) for body in _records(records)]
    assert [(e.step, e.wall_time) for e in events] == [(3, 10.5), (128, 12.25)]
    assert [(v.tag, v.simple_value) for v in events[0].summary.value] == [
        ("ray/tune/loss", 0.5), ("ray/tune/acc/top1", 0.25), ("ray/tune/flag", 1.0), ("ray/tune/n", 7.0),
        ("ray/tune/f32", 1.5)]
    assert [(v.tag, v.simple_value) for v in events[1].summary.value] == [
        ("ray/tune/loss", math.inf), ("ray/tune/timesteps_total", 128.0)]
    assert [(i, tag) for i, tag, _ in others] == [(0, "ray/tune/hist"), (0, "ray/tune/arr")]
    # The cache holds each numeric key's tag, and None for the skipped ones.
    assert {k for k, v in tags.items() if v is not None} == {"loss", "acc/top1", "flag", "n", "f32", "timesteps_total",
                                                              "nan"}
    assert {k for k, v in tags.items() if v is None} == {"pid", "timestamp", "time_total_s", "training_iteration"}


@pytest.mark.parametrize("core", IMPLEMENTATIONS)
def test_bad_input_is_refused_with_the_reason(core):
    with pytest.raises(ValueError, match="2 results but 1 times"):
        core.tb_scalar_events([{}, {}], [1.0], {})
    with pytest.raises(TypeError, match=r"results\[0\] is a list"):
        core.tb_scalar_events([[1]], [1.0], {})
    with pytest.raises(TypeError, match="result keys must be strings"):
        core.tb_scalar_events([{"a": {1: 2.0}}], [1.0], {})
    with pytest.raises(OverflowError, match="does not fit in 64 bits"):
        core.tb_scalar_events([{"loss": 1.0, "training_iteration": 2 ** 70}], [1.0], {})


scalars = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2 ** 80), 2 ** 80), st.booleans(),
                    st.text(max_size=3), st.none(), st.lists(st.floats(allow_nan=False), max_size=2))
keys = st.text(min_size=1, max_size=6)
values = st.recursive(scalars, lambda inner: st.dictionaries(keys, inner, max_size=3), max_leaves=6)
result = st.builds(lambda d, it: {**d, "training_iteration": it}, st.dictionaries(keys, values, max_size=5),
                   st.integers(0, 2 ** 40))


@settings(max_examples=200, deadline=None)
@given(st.lists(result, max_size=4), st.floats(0, 2e9))
def test_compiled_and_twin_render_the_same_bytes(results, t):
    times = [t + i for i in range(len(results))]
    tags_c, tags_t = {}, {}
    out_c = compiled.tb_scalar_events(results, times, tags_c)
    out_t = twin.tb_scalar_events(results, times, tags_t)
    assert out_c[0] == out_t[0] and tags_c == tags_t
    assert [(i, tag) for i, tag, _ in out_c[1]] == [(i, tag) for i, tag, _ in out_t[1]]
    assert compiled.tfrecord(out_c[0]) == twin.tfrecord(out_c[0])
