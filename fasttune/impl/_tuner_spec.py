"""``tuner.msgpack``: what a Tuner was given, so ``Tuner.restore`` can rebuild it.

Each setting is stored on its own: plain values as msgpack, objects (a searcher, a
scheduler, search-space domains, callbacks) cloudpickled, so a restore can name each
setting it loaded as code.  The trainable is not stored: ``Tuner.restore`` takes it
again, as in Ray Tune.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Dict, List, NamedTuple, Optional

import msgpack

from fasttune import config as _config
from fasttune._serialization import CorruptData
from fasttune.error import TuneError
from fasttune.execution import _experiment_state as _state
from fasttune.execution._experiment_state import TUNER_FILE
from fasttune.syncer import SyncConfig

logger = logging.getLogger(__name__)

_FORMAT = 1
_NESTED = {"CheckpointConfig": _config.CheckpointConfig, "FailureConfig": _config.FailureConfig,
           "SyncConfig": SyncConfig}


class SavedTuner(NamedTuple):
    trainable_name: str
    param_space: Dict[str, Any]
    tune_config: Dict[str, Any]
    run_config: Dict[str, Any]
    unpickled: List[str]  # "tune_config.scheduler (ASHAScheduler)", ...


def _settings(prefix: str, obj: Any) -> Dict[str, Any]:
    out = {}
    for field in dataclasses.fields(obj):
        if field.name == "storage_filesystem":
            continue  # it holds credentials; Tuner.restore takes it again
        value = getattr(obj, field.name)
        if type(value).__name__ in _NESTED and dataclasses.is_dataclass(value):
            value = {"__config__": type(value).__name__, **dataclasses.asdict(value)}
        out[f"{prefix}.{field.name}"] = value
    return out


def save_tuner_spec(experiment_path: str, trainable_name: str, param_space: Dict[str, Any],
                    tune_config: Any, run_config: Any) -> bool:
    """Write ``tuner.msgpack``; returns False (with a warning) when a setting cannot be
    stored, in which case the experiment runs but cannot be restored."""
    settings = {"param_space": param_space}
    settings.update(_settings("tune_config", tune_config))
    settings.update(_settings("run_config", run_config))
    fields = {}
    for name, value in settings.items():
        try:
            fields[name] = _state.pack(value)
        except Exception as exc:  # noqa: BLE001 - pickling user objects fails in many ways
            logger.warning(
                "%s cannot be saved (%s: %s), so Tuner.restore cannot continue this experiment; make it "
                "picklable (cloudpickle) to be able to restore.", name, type(exc).__name__, exc)
            return False
    os.makedirs(experiment_path, exist_ok=True)
    doc = {"format": _FORMAT, "trainable_name": trainable_name, "fields": fields}
    _state.write_file(os.path.join(experiment_path, TUNER_FILE), msgpack.packb(doc, use_bin_type=True))
    return True


def load_tuner_spec(experiment_path: str, shown_as: Optional[str] = None) -> SavedTuner:
    """Read ``tuner.msgpack`` back (no Ray needed); ``shown_as`` names the experiment in
    messages (its URI, when ``experiment_path`` is the local copy of one in storage)."""
    path = os.path.join(experiment_path, TUNER_FILE)
    shown = shown_as or experiment_path
    if not os.path.isdir(experiment_path):
        raise TuneError(
            f"Cannot restore {shown}: no such directory. Pass the experiment directory, "
            "<storage_path>/<experiment name>.")
    if not os.path.isfile(path):
        raise TuneError(
            f"{shown} is not a restorable fasttune experiment: it has no {TUNER_FILE}. Pass the "
            "directory <storage_path>/<experiment name> that Tuner.fit() wrote (Tuner.can_restore(path) "
            "checks a path first).")
    try:
        doc = msgpack.unpackb(_state.read_file(path), raw=False)
        fields = dict(doc["fields"])
        trainable_name = str(doc["trainable_name"])
        newer = doc.get("format", 0) > _FORMAT
    except (ValueError, KeyError, TypeError, AttributeError, msgpack.UnpackException) as exc:
        raise _state.CorruptExperimentState(
            f"{path} is damaged or not a fasttune Tuner file ({type(exc).__name__}: {exc}); the experiment "
            "cannot be restored. ResultGrid.from_path(path) still reads the trials' result files.") from None
    if newer:
        raise _state.NewerExperimentState(
            f"{path} was written by a newer fasttune (tuner format {doc.get('format')}; this version reads up "
            f"to {_FORMAT}). Upgrade fasttune to restore this experiment.")
    values: Dict[str, Any] = {}
    unpickled: List[str] = []
    for name, packed in fields.items():
        loader = _state.Loader()  # a restore unpickles what must be code (documented: Tuner.restore)
        try:
            if not isinstance(packed, bytes):
                raise CorruptData(f"a {type(packed).__name__}, not packed bytes")
            value = loader.unpack(packed)
            if isinstance(value, dict) and value.get("__config__") in _NESTED:
                cls = _NESTED[value.pop("__config__")]
                value = cls(**value)
        # ValueError: text that is not UTF-8 (UnicodeDecodeError); TypeError: a config's
        # fields that are not its own.
        except (CorruptData, msgpack.UnpackException, ValueError, TypeError) as exc:
            raise _state.CorruptExperimentState(
                f"{path}: the setting {name} cannot be read ({type(exc).__name__}: {exc}); the experiment cannot "
                "be restored.") from None
        if loader.unpickled:
            unpickled.append(f"{name} ({', '.join(sorted(set(loader.unpickled)))})")
        values[name] = value
    return SavedTuner(trainable_name, values.get("param_space") or {}, _section(values, "tune_config"),
                      _section(values, "run_config"), unpickled)


def _section(values: Dict[str, Any], prefix: str) -> Dict[str, Any]:
    return {name.split(".", 1)[1]: value for name, value in values.items() if name.startswith(prefix + ".")}


def can_restore(experiment_path: str) -> bool:
    """Whether ``experiment_path`` holds a Tuner's settings and at least one snapshot."""
    return os.path.isfile(os.path.join(experiment_path, TUNER_FILE)) and _state.has_snapshot(experiment_path)
