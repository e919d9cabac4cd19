"""A trial's hparams records at its end: the plain-value shortcuts (params logged as they
are, metric tags read off an unnested result) give what flattening and filtering give."""
import logging
import math
import random
import time

import numpy as np
import pytest

from fasttune import _corelib as core
from fasttune._flatten import flatten_dict
from fasttune.logger import tensorboardx
from fasttune.logger._tb_records import hparams_records
from fasttune_testing import StandIn

pytest.importorskip("tensorboardX")

_SCALAR_TYPES = tuple(tensorboardx.VALID_SUMMARY_TYPES)


def _flattened_hparams(callback, params, trial_name):
    """The hparams as the callback made them before the shortcut (flattened, filtered)."""
    flat_params = flatten_dict(params)
    hparams = {k: v for k, v in flat_params.items() if isinstance(v, callback.VALID_HPARAMS)}
    hparams.update({k: v.tolist() for k, v in flat_params.items() if isinstance(v, callback.VALID_NP_HPARAMS)})
    if len(hparams) < len(flat_params):
        removed = sorted(set(flat_params) - set(hparams))
        logging.getLogger(tensorboardx.__name__).info(
            "Trial %s: hyperparameters %s are not logged to TensorBoard (not a number, string, bool or list).",
            trial_name, removed)
    return hparams


def _flattened_metrics(last_result):
    logged = {key: value for key, value in last_result.items() if key not in core.TB_SKIPPED_KEYS}
    return [f"ray/tune/{key}" for key, value in flatten_dict(logged).items()
            if isinstance(value, _SCALAR_TYPES) and value == value]


def _value(rng, nested=True):
    choices = [lambda: rng.random(), lambda: math.nan, lambda: rng.randint(-9, 9), lambda: rng.random() < 0.5,
               lambda: "relu", lambda: None, lambda: [1, 2], lambda: np.float32(rng.choice([0.5, math.nan])),
               lambda: np.int64(3), lambda: np.bool_(True), lambda: np.array([1.0]), lambda: len, lambda: (1,)]
    if nested:
        choices += [lambda: {"inner": _value(rng, False), "n": rng.random()}, lambda: {}]
    return rng.choice(choices)()


def _dict(rng, keys):
    return {rng.choice(keys): _value(rng) for _ in range(rng.randint(0, 8))}


def test_trial_end_records_are_those_of_the_flattened_params_and_result(monkeypatch):
    """Seeded params and last results, plain and not: the records appended at a trial's
    end equal those of the params and metrics flattened and filtered as before."""
    monkeypatch.setattr(tensorboardx, "time", StandIn(time, time=lambda: 1234.5))  # the module's clock only
    rng = random.Random(11)
    callback = tensorboardx.TBXLoggerCallback()
    appended = []
    callback._files.append = lambda path, data: appended.append(data)
    param_keys = ["lr", "opt", "act", "seed"]
    result_keys = ["loss", "acc", "done", "config", "pid", "timestamp", "time_total_s", "training_iteration", "val"]
    for _ in range(3000):
        params = _dict(rng, param_keys)
        last_result = _dict(rng, result_keys)
        callback._append_hparams("p", "trial_1", params, last_result)
        expected = hparams_records(_flattened_hparams(callback, params, "trial_1"), _flattened_metrics(last_result),
                                   1234.5)
        assert appended.pop() == expected, (params, last_result)


def test_a_subclass_that_logs_other_types_is_not_shortcut(monkeypatch):
    monkeypatch.setattr(tensorboardx, "time", StandIn(time, time=lambda: 1.0))  # the module's clock only

    class StringsOnly(tensorboardx.TBXLoggerCallback):
        VALID_HPARAMS = (str,)

    callback = StringsOnly()
    appended = []
    callback._files.append = lambda path, data: appended.append(data)
    callback._append_hparams("p", "t", {"opt": "adam", "lr": 0.1}, {"loss": 0.5})
    assert appended == [hparams_records({"opt": "adam"}, ["ray/tune/loss"], 1.0)]


def test_the_shortcut_neither_flattens_nor_copies_plain_params(monkeypatch):
    """The end of a trial with plain params and an unnested result is its TensorBoard
    writer's largest piece of Python work: nothing is flattened or copied for it."""
    def no_flattening(*args, **kwargs):
        raise AssertionError("flattened")

    monkeypatch.setattr(tensorboardx, "flatten_dict", no_flattening)
    seen = []
    monkeypatch.setattr(tensorboardx, "hparams_records", lambda hparams, metrics, t: seen.append((hparams, metrics))
                        or b"")
    callback = tensorboardx.TBXLoggerCallback()
    callback._files.append = lambda path, data: None
    params = {"lr": 0.1, "opt": "adam", "n": 3, "bn": False, "sizes": [1], "seed": None}
    callback._append_hparams("p", "t", params, {"loss": 0.5, "nan": math.nan, "config": {"lr": 0.1}, "done": True,
                                               "pid": 1, "note": "x"})
    assert seen == [(params, ["ray/tune/loss", "ray/tune/done"])] and seen[0][0] is params
