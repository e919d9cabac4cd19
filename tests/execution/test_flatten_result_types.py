"""TrialState.flatten_result takes its quick path by the types of a result's keys and
values, asked of every result: a result whose values change type from one result to the
next is flattened exactly as flatten_dict flattens it."""
import collections

import numpy as np

from fasttune._flatten import flatten_dict
from fasttune.execution._trial_state import TrialState

CONFIG = {"x": 0.5, "nested": {"a": 1}}


class _PosingAsDict(collections.UserDict):
    """Not a dict subclass, yet isinstance(_, dict) is true (it says its class is dict)."""

    @property
    def __class__(self):
        return dict


class _DictSubclass(dict):
    pass


def _result(key="score", value=1.0):
    return {key: value, "training_iteration": 3, "done": False, "config": CONFIG}


def _typed(flat):
    return [(type(key), key, type(value), value) for key, value in flat.items()]


def test_each_result_of_one_trial_is_flattened_as_flatten_dict_does_whatever_its_types():
    results = [
        _result(),
        _result(value={"a": 1, "b": {"c": 2}}),  # a value becomes a dict
        _result(),
        _result(value=_DictSubclass(a=1)),
        _result(value=np.float64(0.5)),
        _result(value=_PosingAsDict(a=1)),
        _result(value=[1, {"a": 2}]),  # a list is left as it is
        _result(key=np.str_("score")),  # a key of a str subclass is made a str
        _result(),
        _result(value=np.float32(2.5)),
        {"config": CONFIG},  # nothing but the config
        _result(value=None),
    ]
    state = TrialState()
    for result in results:
        assert _typed(state.flatten_result(result)) == _typed(flatten_dict(result)), result
