"""``ray.tune.utils``: the helpers Ray Tune scripts import from it (``validate_save_restore``,
``wait_for_gpu``, ``diagnose_serialization``, the dict helpers) and, in
:mod:`fasttune.utils.mock_trainable`, the example trainable its examples use.
Not imported by ``import fasttune``."""
from fasttune.utils.util import (
    UtilMonitor,
    date_str,
    deep_update,
    detect_config_single,
    diagnose_serialization,
    flatten_dict,
    merge_dicts,
    unflattened_lookup,
    validate_save_restore,
    wait_for_gpu,
    warn_if_slow,
)

# Ray Tune exports it under this private name.
_detect_config_single = detect_config_single

__all__ = [
    "deep_update",
    "date_str",
    "flatten_dict",
    "merge_dicts",
    "unflattened_lookup",
    "UtilMonitor",
    "validate_save_restore",
    "warn_if_slow",
    "diagnose_serialization",
    "_detect_config_single",
    "wait_for_gpu",
]
