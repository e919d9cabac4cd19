"""Argument checks, state persistence and trial requests shared by the built-in schedulers.

Every check raises ``TypeError`` for a value of the wrong kind and ``ValueError`` for a
value out of range, with a message that names the scheduler, the argument and the fix
(one exception: PBT's numeric arguments raise ``ValueError`` for a non-number too, as they
always have; see ``check_number(wrong_kind=...)``).

Example:
    >>> from fasttune.schedulers._common import check_number
    >>> check_number(4, "reduction_factor", "ASHA", greater_than=1)
    4
"""
from __future__ import annotations

import math
import numbers
import os
from typing import TYPE_CHECKING, Any, Dict, Optional, Sequence, Tuple, Type

from fasttune import _corelib as core
from fasttune._serialization import dump_file, load_file
from fasttune.error import TuneError

if TYPE_CHECKING:  # pragma: no cover
    from fasttune.schedulers._controller import TuneControllerView

_MODES = ("min", "max")

TRAINING_ITERATION = "training_iteration"


def is_real_number(value: Any) -> bool:
    """Whether ``value`` is a real number (bools are not; numpy scalars are).

    >>> [is_real_number(v) for v in (3, 2.5, True, "4", float("nan"))]
    [True, True, False, False, True]
    """
    kind = type(value)
    if kind is int or kind is float:  # every reported iteration: skip the ABC check
        return True
    return isinstance(value, numbers.Real) and kind is not bool


def check_name(value: Any, name: str, owner: str, optional: bool = False) -> Optional[str]:
    """A non-empty string (or None when ``optional``)."""
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        kind = "a non-empty string" + (" or None" if optional else "")
        raise TypeError(f"{owner}({name}=...) must be {kind}, got {value!r}.")
    return value


def check_mode(mode: Any, owner: str) -> Optional[str]:
    if mode is not None and mode not in _MODES:
        raise ValueError(f"{owner}(mode=...) must be 'min' or 'max' (or None to take TuneConfig's), got {mode!r}.")
    return mode


def check_number(
    value: Any,
    name: str,
    owner: str,
    *,
    greater_than: Optional[float] = None,
    at_least: Optional[float] = None,
    at_most: Optional[float] = None,
    integer: bool = False,
    hint: str = "",
    wrong_kind: Type[Exception] = TypeError,
) -> Any:
    """A real number (an int with ``integer``) within the given bounds; returned as is.

    ``hint`` (what the number means) goes into the messages; ``wrong_kind`` is the
    exception for a value that is no number at all.

    >>> check_number(0.6, "quantile_fraction", "PBT", at_least=0, at_most=0.5)
    Traceback (most recent call last):
    ...
    ValueError: PBT(quantile_fraction=...) must be between 0 and 0.5, got 0.6.
    """
    wanted = numbers.Integral if integer else numbers.Real
    note = f" ({hint})" if hint else ""
    if isinstance(value, bool) or not isinstance(value, wanted):
        kind = "an integer" if integer else "a number"
        raise wrong_kind(f"{owner}({name}=...) must be {kind}{note}, got {type(value).__name__} {value!r}.")
    if not integer and not math.isfinite(float(value)):
        raise ValueError(f"{owner}({name}=...) must be finite{note}, got {value!r}.")
    if greater_than is not None and not value > greater_than:
        raise ValueError(f"{owner}({name}=...) must be greater than {greater_than}{note}, got {value!r}.")
    if at_least is not None and at_most is not None:
        if not at_least <= value <= at_most:
            raise ValueError(f"{owner}({name}=...) must be between {at_least} and {at_most}{note}, got {value!r}.")
    elif at_least is not None and not value >= at_least:
        raise ValueError(f"{owner}({name}=...) must be at least {at_least}{note}, got {value!r}.")
    elif at_most is not None and not value <= at_most:
        raise ValueError(f"{owner}({name}=...) must be at most {at_most}{note}, got {value!r}.")
    return value


def check_numbers(value: Any, name: str, owner: str, example: str) -> Tuple[Any, ...]:
    """A non-empty sequence of real numbers (not a string), as a tuple.

    >>> check_numbers([1.2, 0.8], "perturbation_factors", "PBT", example="(1.2, 0.8)")
    (1.2, 0.8)
    """
    if (
        isinstance(value, (str, bytes))
        or not isinstance(value, Sequence)
        or len(value) == 0
        or not all(is_real_number(v) for v in value)
    ):
        raise TypeError(
            f"{owner}({name}=...) must be a non-empty tuple of numbers such as {example}, got {value!r}."
        )
    return tuple(value)


def check_function(value: Any, name: str, owner: str, signature: str, optional: bool = False) -> Any:
    """A callable (or None when ``optional``); ``signature`` says what it maps, e.g.
    ``"config -> config"``."""
    if (value is None and optional) or callable(value):
        return value
    raise TypeError(f"{owner}({name}=...) must be a function {signature}, got {type(value).__name__}.")


def starts_over(trial: Any) -> bool:
    """Whether ``trial``, heard of again in ``on_trial_add`` (the runner adds every trial of a
    restored experiment again), runs from scratch: PENDING with no result to go on from, as
    one ``Tuner.restore(..., restart_errored=True)`` (``ResumeConfig`` RESTART) starts over.
    A scheduler then judges it again from its first result, as a trial added anew, and
    forgets what its earlier run reported.

    >>> from fasttune.experiment import Trial
    >>> trial = Trial("f", config={})
    >>> starts_over(trial), trial.status
    (True, 'PENDING')
    >>> trial.last_result = {"training_iteration": 3}
    >>> starts_over(trial)
    False
    """
    return trial.status == "PENDING" and not trial.last_result


def require_metric_and_mode(scheduler: Any) -> None:
    """Raise when the scheduler cannot rank results: no metric or no mode yet."""
    metric, mode = scheduler.metric, scheduler.mode
    if metric is None or mode is None:
        owner = type(scheduler).__name__
        missing = " and ".join(n for n, v in (("metric", metric), ("mode", mode)) if v is None)
        raise ValueError(
            f"{owner} has no {missing}: set metric and mode in TuneConfig(metric=..., "
            f"mode=...) or in the scheduler ({owner}(metric=..., mode=...))."
        )


class MetricNotANumber(TuneError, TypeError):
    """A result holds the metric a scheduler compares as something that is not a number:
    the reporting trial's bad result (the runner fails that trial), not the scheduler's.
    A ``TypeError`` (what the value is) and a ``TuneError`` (what fasttune refuses)."""


def metric_value(value: Any, key: str, owner: str, trial: Any) -> float:
    """``value`` of result key ``key`` as a float; a clear error when it is not a number."""
    if type(value) is float:  # (the usual case, without the ABC's isinstance)
        return value
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    try:
        import numpy as np

        if isinstance(value, np.generic) and np.ndim(value) == 0:
            return float(value)
    except (TypeError, ValueError):  # pragma: no cover - a numpy scalar that is no number
        pass
    raise MetricNotANumber(
        f"{owner}: trial {trial} reported {key!r} = {value!r} ({type(value).__name__}); the "
        f"scheduler compares {key!r} across trials, so report it as a number."
    )


def save_state(path: str, state: Dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically, as msgpack (objects in it cloudpickled)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    dump_file(path, state)


def load_state(path: str, owner: str) -> Dict[str, Any]:
    state = load_file(path)
    if not isinstance(state, dict) or state.get("scheduler") != owner:
        found = state.get("scheduler") if isinstance(state, dict) else type(state).__name__
        raise ValueError(
            f"{path} does not hold {owner} state (it holds {found!r}); restore a scheduler "
            "from a file its own class saved."
        )
    return state


class TrialRequests:
    """Whether a scheduler may ask the runner for a new trial.

    fasttune's runner creates a trial only when ``choose_trial_to_run`` returns None (and
    the search algorithm is not finished).  A scheduler that wants new trials to go
    before PAUSED ones (as Ray Tune's eager trial creation has it) returns None and
    calls :meth:`ask`; :meth:`trial_added` (from ``on_trial_add``) says a trial came.
    When none came by the next ``choose_trial_to_run`` (:meth:`observe`), the search
    algorithm declined, e.g. at a concurrency limit that counts paused trials too; the
    scheduler then stops asking until a trial is added.

    Example:
        >>> requests = TrialRequests()
        >>> requests.ask(); requests.observe(); requests.declined
        True
        >>> requests.trial_added(); requests.declined
        False
    """

    __slots__ = ("requested", "declined")

    def __init__(self) -> None:
        self.requested = False
        self.declined = False

    def trial_added(self) -> None:
        self.requested = self.declined = False

    def observe(self, tune_controller: Optional[TuneControllerView] = None) -> None:
        if self.requested and tune_controller is not None and suggestion_pending(tune_controller):
            return  # the trial asked for is still being suggested (in the background)
        if self.requested:
            self.declined = True
        self.requested = False

    def ask(self) -> None:
        self.requested = True

    def may_come(self, tune_controller: TuneControllerView) -> bool:
        """The search algorithm may add a trial: not finished and not declining."""
        if self.declined:
            return False
        return not tune_controller.search_alg.is_finished()

    def __getstate__(self) -> tuple:
        return (self.requested, self.declined)

    def __setstate__(self, state: tuple) -> None:
        self.requested, self.declined = state


def trials_waiting(tune_controller: TuneControllerView) -> bool:
    """Whether any trial is PENDING or PAUSED: waiting for a worker (O(1), from the table)."""
    table = tune_controller.table
    return table.count(core.PENDING) + table.count(core.PAUSED) > 0


def suggestion_pending(tune_controller: TuneControllerView) -> bool:
    """Whether the search algorithm is making a trial in the background (the runner wakes
    when it is ready)."""
    return getattr(tune_controller.search_alg, "pending_suggestion", None) is not None


def anything_runs(tune_controller: TuneControllerView) -> bool:
    """Whether some trial is RUNNING or handed to a worker (PENDING while unassigned
    PENDING trials were already offered), or a trial is being suggested: asking for a
    trial that does not come then cannot stall the runner."""
    table = tune_controller.table
    return table.count(core.RUNNING) + table.count(core.PENDING) > 0 or suggestion_pending(tune_controller)
