"""``TuneConfig``: what to optimise and how many trials to run.

Example:
    >>> from fasttune.tune_config import TuneConfig
    >>> cfg = TuneConfig(metric="loss", mode="min", num_samples=8)
    >>> (cfg.metric, cfg.mode, cfg.num_samples)
    ('loss', 'min', 8)
"""

from __future__ import annotations

import datetime
import enum
import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

from fasttune.constants import RAY_CHDIR_TO_TRIAL_DIR

__all__ = ["TuneConfig", "ResumeConfig"]

_MODES = ("min", "max")

# Ray Tune's default for a deprecated parameter: any other value means the caller gave it.
DEPRECATED_VALUE = "DEPRECATED"


def refuse_chdir_to_trial_dir(value: Any, where: str) -> None:
    """Raise ``DeprecationWarning`` (an exception, as Ray Tune raises it) when ``chdir_to_trial_dir`` was given."""
    if value != DEPRECATED_VALUE:
        raise DeprecationWarning(
            f"{where}(chdir_to_trial_dir={value!r}) is no longer supported (Ray Tune deprecated it too): "
            f"use the {RAY_CHDIR_TO_TRIAL_DIR} environment variable instead. Each trial runs in its own "
            f"directory, tune.get_context().get_trial_dir(); set {RAY_CHDIR_TO_TRIAL_DIR}=0 to run trials in "
            f"the working directory of their worker process instead.")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@dataclass
class TuneConfig:
    """Tuning-specific settings for a ``Tuner``.

    Args:
        mode: ``"min"`` or ``"max"``. Requires ``metric``.
        metric: Name of the reported metric to optimise. May be left ``None``
            when the scheduler or search algorithm carries its own metric.
        search_alg: A search algorithm; ``None`` means random/grid variants.
        scheduler: A trial scheduler; ``None`` means FIFO.
        num_samples: How many times to sample the search space (grid-search
            entries are repeated this many times). ``-1`` means "keep
            sampling until the searcher is exhausted or ``time_budget_s``
            runs out".
        max_concurrent_trials: Upper bound on trials running at once, or
            ``None`` for no bound beyond the available resources.
        time_budget_s: Wall-clock budget for the whole sweep, in seconds (a
            positive number) or as a ``datetime.timedelta``; stored as float
            seconds.
        reuse_actors: Whether to reuse trainable workers between trials;
            ``None`` lets fasttune decide.
        trial_name_creator: ``callable(trial) -> str`` naming each trial.
        trial_dirname_creator: ``callable(trial) -> str`` naming each trial's
            directory.
        chdir_to_trial_dir: Deprecated, as in Ray Tune: giving it raises
            ``DeprecationWarning``; set the ``RAY_CHDIR_TO_TRIAL_DIR`` environment
            variable instead (0: trials do not run in their trial directory).

    Example:
        >>> import datetime
        >>> TuneConfig(time_budget_s=datetime.timedelta(minutes=2)).time_budget_s
        120.0
        >>> TuneConfig(mode="max")
        Traceback (most recent call last):
        ...
        ValueError: TuneConfig(mode='max') was given without a metric; pass metric='<name>' as well, e.g. TuneConfig(metric='score', mode='max').
    """

    # Ray Tune's field order (mode before metric): a TuneConfig built positionally means the same on both.
    mode: Optional[str] = None
    metric: Optional[str] = None
    search_alg: Optional[Any] = None
    scheduler: Optional[Any] = None
    num_samples: int = 1
    max_concurrent_trials: Optional[int] = None
    time_budget_s: Optional[Union[int, float, datetime.timedelta]] = None
    reuse_actors: Optional[bool] = None
    trial_name_creator: Optional[Callable[[Any], str]] = None
    trial_dirname_creator: Optional[Callable[[Any], str]] = None
    chdir_to_trial_dir: Any = DEPRECATED_VALUE

    def __post_init__(self) -> None:
        refuse_chdir_to_trial_dir(self.chdir_to_trial_dir, "TuneConfig")
        if self.metric is not None and not isinstance(self.metric, str):
            raise TypeError(
                f"TuneConfig.metric must be a str naming a reported metric, got "
                f"{type(self.metric).__name__} {self.metric!r}."
            )
        if self.mode is not None and self.mode not in _MODES:
            raise ValueError(
                f"TuneConfig.mode={self.mode!r} is not valid; use one of "
                f"{list(_MODES)} (or None)."
            )
        if self.mode is not None and self.metric is None:
            raise ValueError(
                f"TuneConfig(mode={self.mode!r}) was given without a metric; pass "
                f"metric='<name>' as well, e.g. TuneConfig(metric='score', "
                f"mode={self.mode!r})."
            )

        if not _is_int(self.num_samples):
            raise TypeError(
                f"TuneConfig.num_samples must be an int >= 1 (or -1 for "
                f"'until the searcher or time budget ends'), got "
                f"{type(self.num_samples).__name__} {self.num_samples!r}."
            )
        if self.num_samples == 0 or self.num_samples < -1:
            raise ValueError(
                f"TuneConfig.num_samples={self.num_samples} is not valid; use an "
                f"int >= 1, or -1 to sample until the searcher or time budget ends."
            )
        self.num_samples = int(self.num_samples)

        if self.max_concurrent_trials is not None:
            if not _is_int(self.max_concurrent_trials):
                raise TypeError(
                    f"TuneConfig.max_concurrent_trials must be None or an int >= 1, "
                    f"got {type(self.max_concurrent_trials).__name__} "
                    f"{self.max_concurrent_trials!r}."
                )
            if self.max_concurrent_trials < 1:
                raise ValueError(
                    f"TuneConfig.max_concurrent_trials={self.max_concurrent_trials} "
                    f"is not valid; use None (no limit) or an int >= 1."
                )
            self.max_concurrent_trials = int(self.max_concurrent_trials)

        self.time_budget_s = self._validate_time_budget(self.time_budget_s)

        if self.reuse_actors is not None and not isinstance(self.reuse_actors, bool):
            raise TypeError(
                f"TuneConfig.reuse_actors must be True, False or None, got "
                f"{type(self.reuse_actors).__name__} {self.reuse_actors!r}."
            )
        for name in ("trial_name_creator", "trial_dirname_creator"):
            fn = getattr(self, name)
            if fn is not None and not callable(fn):
                raise TypeError(
                    f"TuneConfig.{name} must be None or a callable taking a Trial "
                    f"and returning a str, got {type(fn).__name__} {fn!r}."
                )

    @staticmethod
    def _validate_time_budget(value: Any) -> Optional[float]:
        if value is None:
            return None
        if isinstance(value, datetime.timedelta):
            seconds = value.total_seconds()
        elif isinstance(value, numbers.Real) and not isinstance(value, bool):
            seconds = float(value)
        else:
            raise TypeError(
                f"TuneConfig.time_budget_s must be None, a number of seconds > 0 or a "
                f"datetime.timedelta, got {type(value).__name__} {value!r}."
            )
        if math.isnan(seconds) or seconds <= 0:
            raise ValueError(
                f"TuneConfig.time_budget_s={value!r} is not valid; give a positive "
                f"number of seconds or a positive datetime.timedelta, or None for "
                f"no budget."
            )
        return seconds


class _ResumeType(str, enum.Enum):
    """How a restore treats the trials of one status."""

    RESUME = "resume"  # continue from the latest checkpoint
    RESTART = "restart"  # start over, without a checkpoint
    SKIP = "skip"  # leave it as it is (an unfinished trial is marked TERMINATED)


@dataclass
class ResumeConfig:
    """How ``Tuner.restore`` resumes the trials of each status (``ray.tune.ResumeConfig``).

    Args:
        finished: TERMINATED trials; ``SKIP`` (default) keeps them as they are.
        unfinished: PENDING, RUNNING and PAUSED trials; ``RESUME`` (default) continues
            them from their latest checkpoint, ``SKIP`` marks them TERMINATED.
        errored: ERROR trials; ``SKIP`` (default) keeps them failed, ``RESUME``
            continues them from their latest checkpoint, ``RESTART`` starts them over.

    Example:
        >>> from fasttune.tune_config import ResumeConfig
        >>> ResumeConfig(errored=ResumeConfig.ResumeType.RESTART).errored.value
        'restart'
        >>> ResumeConfig(unfinished="later")
        Traceback (most recent call last):
        ...
        ValueError: ResumeConfig(unfinished='later') is not valid; use one of ['resume', 'restart', 'skip'] (ResumeConfig.ResumeType.RESUME, .RESTART or .SKIP).
    """

    ResumeType = _ResumeType

    finished: Union[str, _ResumeType] = _ResumeType.SKIP
    unfinished: Union[str, _ResumeType] = _ResumeType.RESUME
    errored: Union[str, _ResumeType] = _ResumeType.SKIP

    def __post_init__(self) -> None:
        for name in ("finished", "unfinished", "errored"):
            value = getattr(self, name)
            try:
                setattr(self, name, _ResumeType(value))
            except ValueError:
                raise ValueError(
                    f"ResumeConfig({name}={value!r}) is not valid; use one of "
                    f"{[t.value for t in _ResumeType]} (ResumeConfig.ResumeType.RESUME, .RESTART or .SKIP)."
                ) from None

    @classmethod
    def from_flags(cls, resume_unfinished: bool = True, resume_errored: bool = False,
                   restart_errored: bool = False) -> "ResumeConfig":
        """The config ``Tuner.restore``'s flags stand for."""
        if resume_errored and restart_errored:
            raise ValueError(
                "Tuner.restore got both resume_errored=True and restart_errored=True; choose one: "
                "resume_errored continues errored trials from their checkpoints, restart_errored "
                "starts them over."
            )
        errored = _ResumeType.RESUME if resume_errored else _ResumeType.RESTART if restart_errored else _ResumeType.SKIP
        return cls(unfinished=_ResumeType.RESUME if resume_unfinished else _ResumeType.SKIP, errored=errored)
