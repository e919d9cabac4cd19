"""``ray.tune.utils.util``: helpers Ray Tune scripts import from ``ray.tune.utils``.

``validate_save_restore`` checks that a trainable resumes correctly from its own
checkpoint in two Ray actors; ``diagnose_serialization`` says which globals keep a
trainable from being pickled; ``wait_for_gpu`` waits until a GPU's memory is free; the
dict helpers are those Ray Tune re-exports.
"""
from __future__ import annotations

import copy
import inspect
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Callable, Dict, List, Optional, Set, Type, Union

from fasttune.error import TuneError

logger = logging.getLogger(__name__)

#: When this module was imported: ``warn_if_slow`` stays quiet for the first minute.
START_OF_TIME = time.time()


# ---- dicts -----------------------------------------------------------------------------------


def deep_update(original: dict, new_dict: dict, new_keys_allowed: bool = False,
                allow_new_subkey_list: Optional[List[str]] = None,
                override_all_if_type_changes: Optional[List[str]] = None,
                override_all_key_list: Optional[List[str]] = None) -> dict:
    """Update ``original`` in place from ``new_dict``, merging nested dicts, and return it.

    A key ``original`` lacks is an error unless ``new_keys_allowed`` (or, one level
    down, the parent key is in ``allow_new_subkey_list``).  For a key in
    ``override_all_key_list`` the whole value is replaced; for one in
    ``override_all_if_type_changes`` too, when its ``"type"`` entry changes.

    Example:
        >>> deep_update({"a": {"x": 1, "y": 2}}, {"a": {"y": 3}})
        {'a': {'x': 1, 'y': 3}}
    """
    allow_new_subkey_list = allow_new_subkey_list or []
    override_all_if_type_changes = override_all_if_type_changes or []
    override_all_key_list = override_all_key_list or []
    for key, value in new_dict.items():
        if key not in original and not new_keys_allowed:
            raise KeyError(f"Unknown config parameter {key!r}: it is not in the dict being updated.")
        old = original.get(key)
        if not (isinstance(old, dict) and isinstance(value, dict)) or key in override_all_key_list:
            original[key] = value
        elif (key in override_all_if_type_changes and "type" in value and "type" in old
              and value["type"] != old["type"]):
            original[key] = value
        else:
            deep_update(old, value, new_keys_allowed or key in allow_new_subkey_list,
                        override_all_key_list=override_all_key_list)
    return original


def merge_dicts(d1: dict, d2: dict) -> dict:
    """A new dict: a deep copy of ``d1`` deep-updated with ``d2``.

    Example:
        >>> merge_dicts({"a": {"x": 1}}, {"a": {"y": 2}, "b": 3})
        {'a': {'x': 1, 'y': 2}, 'b': 3}
    """
    merged = copy.deepcopy(d1)
    return deep_update(merged, d2, True, [])


def flatten_dict(dt: Dict, delimiter: str = "/", prevent_delimiter: bool = False, flatten_list: bool = False) -> Dict:
    """``{"a": {"b": 1}}`` -> ``{"a/b": 1}`` (lists too, by index, with ``flatten_list``);
    the input is not changed, and an empty nested dict leaves no key, as in Ray Tune.
    ``prevent_delimiter``: a key holding ``delimiter`` is an error.

    Example:
        >>> flatten_dict({"a": {"b": 1, "c": [2, 3]}}, flatten_list=True)
        {'a/b': 1, 'a/c/0': 2, 'a/c/1': 3}
    """
    nested = (dict, list) if flatten_list else dict
    flat = copy.copy(dt)
    if prevent_delimiter:
        _refuse_delimiter(flat, delimiter)
    # Level by level, so keys come in Ray Tune's order: plain ones first, then each level's.
    while any(isinstance(value, nested) for value in flat.values()):
        expanded: Dict = {}
        done: List[Any] = []
        for key, value in flat.items():
            if isinstance(value, dict):
                if prevent_delimiter:
                    _refuse_delimiter(value, delimiter)
                expanded.update((f"{key}{delimiter}{sub}", item) for sub, item in value.items())
                done.append(key)
            elif flatten_list and isinstance(value, list):
                expanded.update((f"{key}{delimiter}{index}", item) for index, item in enumerate(value))
                done.append(key)
        flat.update(expanded)
        for key in done:
            del flat[key]
    return flat


def _refuse_delimiter(value: Dict, delimiter: str) -> None:
    for key in value:
        if delimiter in str(key):
            raise ValueError(f"The key {key!r} holds the delimiter {delimiter!r}; rename it to flatten the dict.")


_NOT_GIVEN = object()


def unflattened_lookup(flat_key: str, lookup: Union[Mapping, Sequence], delimiter: str = "/", **kwargs: Any) -> Any:
    """``lookup[flat_key]``, else the value at the path ``flat_key`` names (list indices
    as numbers: ``"a/0/b"`` is ``lookup["a"][0]["b"]``); ``default=`` when it is not
    there, else KeyError.

    Example:
        >>> unflattened_lookup("a/0/b", {"a": [{"b": 7}]}), unflattened_lookup("x", {}, default=None)
        (7, None)
    """
    if flat_key in lookup:
        return lookup[flat_key]
    default = kwargs.get("default", _NOT_GIVEN)
    found: Any = lookup
    for part in flat_key.split(delimiter):
        try:
            if isinstance(found, Mapping):
                found = found[part]
            elif isinstance(found, Sequence) and not isinstance(found, str):
                found = found[int(part)]
            else:
                raise KeyError(flat_key)
        except (KeyError, IndexError, ValueError):
            if default is _NOT_GIVEN:
                raise KeyError(flat_key) from None
            return default
    return found


def date_str() -> str:
    """Now, as Ray Tune writes it into names: ``2024-01-31_13-05-09``."""
    return datetime.today().strftime("%Y-%m-%d_%H-%M-%S")


# ---- diagnostics ---------------------------------------------------------------------------


class warn_if_slow:  # noqa: N801 - Ray Tune's name
    """A context manager that logs a warning when its block takes longer than
    ``threshold`` seconds (``TUNE_WARN_THRESHOLD_S``, 0.5 by default), once the process
    has run a minute.

    Example:
        >>> with warn_if_slow("reading the data") as timer:
        ...     pass
        >>> timer.too_slow
        False
    """

    DEFAULT_THRESHOLD = float(os.environ.get("TUNE_WARN_THRESHOLD_S", 0.5))
    DEFAULT_MESSAGE = "The `{name}` operation took {duration:.3f} s, which may be a performance bottleneck."

    def __init__(self, name: str, threshold: Optional[float] = None, message: Optional[str] = None,
                 disable: bool = False) -> None:
        self.name = name
        self.threshold = threshold or self.DEFAULT_THRESHOLD
        self.message = message or self.DEFAULT_MESSAGE
        self.too_slow = False
        self.disable = disable

    def __enter__(self) -> "warn_if_slow":
        self.start = time.time()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        now = time.time()
        duration = now - self.start
        if not self.disable and duration > self.threshold and now - START_OF_TIME > 60.0:
            self.too_slow = True
            logger.warning(self.message.format(name=self.name, duration=duration))


class UtilMonitor(threading.Thread):
    """Samples CPU and RAM use (psutil) and each GPU's load and memory (GPUtil) every
    ``delay`` seconds on a daemon thread; :meth:`get_data` returns the means since the
    last call under ``"perf"``.  Without either package it warns and samples nothing."""

    def __init__(self, start: bool = True, delay: float = 0.7) -> None:
        super().__init__(daemon=True, name="fasttune-util-monitor")
        self.stopped = True
        self.delay = delay
        self.values: Dict[str, List[float]] = {}
        self.lock = threading.Lock()
        self.psutil = _import_or_none("psutil")
        self.GPUtil = _import_or_none("GPUtil")
        if start:
            if self.psutil is None:
                logger.warning("Install psutil to monitor CPU and RAM use.")
            if self.GPUtil is None:
                logger.warning("Install gputil for GPU monitoring.")
            if self.psutil is not None or self.GPUtil is not None:
                self.start()

    def _read_utilization(self) -> None:
        readings: Dict[str, float] = {}
        if self.psutil is not None:
            readings["cpu_util_percent"] = float(self.psutil.cpu_percent(interval=None))
            readings["ram_util_percent"] = float(self.psutil.virtual_memory().percent)
        if self.GPUtil is not None:
            try:
                gpus = self.GPUtil.getGPUs()
            except Exception:  # noqa: BLE001 - no driver: no GPU readings
                gpus = []
            for gpu in gpus:
                readings[f"gpu_util_percent{gpu.id}"] = float(gpu.load)
                readings[f"vram_util_percent{gpu.id}"] = float(gpu.memoryUtil)
        with self.lock:
            for key, value in readings.items():
                self.values.setdefault(key, []).append(value)

    def get_data(self) -> Dict[str, Any]:
        if self.stopped:
            return {}
        with self.lock:
            taken, self.values = self.values, {}
        return {"perf": {key: sum(v) / len(v) for key, v in taken.items() if v}}

    def run(self) -> None:
        self.stopped = False
        while not self.stopped:
            self._read_utilization()
            time.sleep(self.delay)

    def stop(self) -> None:
        self.stopped = True


def _import_or_none(name: str) -> Any:
    try:
        return __import__(name)
    except ImportError:
        return None


def diagnose_serialization(trainable: Callable) -> Union[bool, Set[str]]:
    """Say why ``trainable`` cannot be pickled for the workers: True when it can;
    otherwise the names of the globals and closure variables it uses that cannot be
    pickled (each checked and printed).

    Example:
        >>> import threading
        >>> lock = threading.Lock()
        >>> def train(config):
        ...     with lock:
        ...         pass
        >>> diagnose_serialization(train)  # doctest: +ELLIPSIS
        Trying to serialize <function train at ...>...
        ...
        {'lock'}
    """
    import ray.cloudpickle as cloudpickle

    print(f"Trying to serialize {trainable}...")
    try:
        cloudpickle.dumps(trainable)
        print("Serialization succeeded!")
        return True
    except Exception as exc:  # noqa: BLE001 - any pickling error is what we diagnose
        print(f"Serialization failed: {exc}")
    print(f"Inspecting the variables {trainable} uses (inspect.getclosurevars)...")
    closure = inspect.getclosurevars(trainable)
    failed: Set[str] = set()
    for kind, variables in (("global", closure.globals), ("nonlocal", closure.nonlocals)):
        if variables:
            print(f"Detected {len(variables)} {kind} variables. Checking serializability...")
        for name, value in variables.items():
            try:
                cloudpickle.dumps(value)
                print(f"   {value}[name={name!r}]... PASSED")
            except Exception as exc:  # noqa: BLE001 - reported per variable
                print(f"   {value}[name={name!r}]... FAILED")
                print(f"   {type(exc).__name__}: {exc}")
                failed.add(name)
    if failed:
        print(f"Variable(s) {failed} cannot be serialized. Create them inside the trainable, "
              "or pass them with tune.with_parameters(...).")
    else:
        print("None of the variables failed, though the trainable itself did not serialize.")
    return failed


def detect_config_single(func: Callable) -> bool:
    """Whether ``func({})`` binds (one ``config`` argument)."""
    try:
        inspect.signature(func).bind({})
    except (TypeError, ValueError) as exc:
        logger.debug(str(exc))
        return False
    return True


def wait_for_gpu(gpu_id: Optional[Union[int, str]] = None, target_util: float = 0.01, retry: int = 20,
                 delay_s: int = 5, gpu_memory_limit: Optional[float] = None) -> bool:
    """Wait until the memory use of a GPU (by index or UUID; default: the first of
    ``ray.get_gpu_ids()``, the trial's) is at most ``target_util``, checking ``retry``
    times ``delay_s`` seconds apart; True once it is, RuntimeError if it never is.
    Needs GPUtil (``pip install gputil``). ``gpu_memory_limit`` is unused, as in Ray Tune."""
    try:
        import GPUtil
    except ImportError as exc:
        raise ImportError("wait_for_gpu needs GPUtil to read the GPUs' memory use: pip install gputil.") from exc
    if gpu_id is None:
        import ray

        ids = ray.get_gpu_ids()
        if not ids:
            raise RuntimeError("wait_for_gpu: ray.get_gpu_ids() is empty; give the trial a GPU "
                               "(tune.with_resources(train, {'gpu': 1})) or pass gpu_id.")
        gpu_id = ids[0]
    attribute = "id"
    if isinstance(gpu_id, str):
        if gpu_id.isdigit():
            gpu_id = int(gpu_id)
        else:
            attribute = "uuid"
    elif not isinstance(gpu_id, int):
        raise ValueError(f"wait_for_gpu: gpu_id must be an int or a str, got {type(gpu_id).__name__}.")
    known = {getattr(gpu, attribute) for gpu in GPUtil.getGPUs()}
    if gpu_id not in known:
        raise ValueError(f"wait_for_gpu: GPU {gpu_id!r} is not one of {known}; pass an index such as 0 "
                         "or a UUID such as 'GPU-04546190-...'.")
    for _ in range(int(retry)):
        gpu = next(g for g in GPUtil.getGPUs() if getattr(g, attribute) == gpu_id)
        if gpu.memoryUtil <= target_util:
            return True
        logger.info("Waiting for GPU %s's memory use to reach %s: %.3f.", gpu_id, target_util, gpu.memoryUtil)
        time.sleep(delay_s)
    raise RuntimeError(f"GPU {gpu_id!r}'s memory was not freed after {retry} checks.")


# ---- checking a trainable ------------------------------------------------------------------


def validate_save_restore(trainable_cls: Type, config: Optional[Dict] = None, num_gpus: int = 0) -> bool:
    """Check that a trainable resumes correctly: one Ray actor trains it 3 iterations
    and saves, a second restores that checkpoint, and its next results must be
    iterations 4 and 5.  ``trainable_cls`` is a ``tune.Trainable`` subclass or a
    training function (which must report a checkpoint by its third result).  Needs
    ``ray.init()`` first; returns True, or raises AssertionError saying what differed.
    """
    import ray

    from fasttune.trainable.function_trainable import wrap_function
    from fasttune.trainable.trainable import Trainable

    if not ray.is_initialized():
        raise TuneError("validate_save_restore runs the trainable in Ray actors: call ray.init() first.")
    if not (isinstance(trainable_cls, type) and issubclass(trainable_cls, Trainable)):
        trainable_cls = wrap_function(trainable_cls)
    remote_cls = ray.remote(num_gpus=num_gpus)(trainable_cls)
    first = remote_cls.remote(config=config)
    second = remote_cls.remote(config=config)
    try:
        for _ in range(3):
            result = ray.get(first.train.remote())
        assert result.get("training_iteration"), (
            "validate_save_restore needs training_iteration in the results train() returns.")
        ray.get(second.restore.remote(first.save.remote()))
        for expected in (4, 5):
            result = ray.get(second.train.remote())
            assert result["training_iteration"] == expected, (
                f"After restoring the checkpoint of iteration 3, train() returned iteration "
                f"{result['training_iteration']}, not {expected}.")
    finally:
        for actor in (first, second):
            ray.get(actor.stop.remote())
            ray.kill(actor)
    return True


def validate_warmstart(parameter_names: List[str], points_to_evaluate: List[Union[List, Dict]],
                       evaluated_rewards: List, validate_point_name_lengths: bool = True) -> None:
    """Check a searcher's warm start: ``points_to_evaluate`` is a list of dicts or lists
    (each as long as ``parameter_names`` unless ``validate_point_name_lengths`` is
    False), and ``evaluated_rewards``, when given, a list with one reward per point.
    Raises TypeError or ValueError naming what is wrong.

    Example:
        >>> validate_warmstart(["lr"], [{"lr": 0.1}, {"lr": 0.2}], [1.0])
        Traceback (most recent call last):
        ...
        ValueError: evaluated_rewards has 1 rewards for 2 points_to_evaluate; give one per point.
    """
    if points_to_evaluate:
        if not isinstance(points_to_evaluate, list):
            raise TypeError(f"points_to_evaluate must be a list, got {type(points_to_evaluate).__name__}.")
        for point in points_to_evaluate:
            if not isinstance(point, (dict, list)):
                raise TypeError(f"Each of points_to_evaluate must be a dict or a list, got {point!r}.")
            if validate_point_name_lengths and len(point) != len(parameter_names):
                raise ValueError(f"The point {point!r} has {len(point)} values for the {len(parameter_names)} "
                                 f"parameters {parameter_names}.")
    if points_to_evaluate and evaluated_rewards:
        if not isinstance(evaluated_rewards, list):
            raise TypeError(f"evaluated_rewards must be a list, got {type(evaluated_rewards).__name__}.")
        if len(evaluated_rewards) != len(points_to_evaluate):
            raise ValueError(f"evaluated_rewards has {len(evaluated_rewards)} rewards for "
                             f"{len(points_to_evaluate)} points_to_evaluate; give one per point.")
