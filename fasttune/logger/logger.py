"""``LoggerCallback``: the base of callbacks that log what trials report, and ``pretty_print``
for a result on a console (``ray.tune.logger``)."""
from __future__ import annotations

import functools
import json
from typing import Any, Dict, Iterable, List, Optional

from fasttune._jsonable import json_default
from fasttune.callback import Callback, overrides

__all__ = ["LoggerCallback", "pretty_print"]

_FLOW_STYLE_AFTER = 3  # a list longer than this prints on one line, as in Ray Tune
_NOT_PRINTED = ("config", "hist_stats")  # long, and not what a console reader wants


class LoggerCallback(Callback):
    """Base class for experiment-level loggers: override the ``log_*`` methods you need.

    Each ``log_*`` method is called only when a subclass overrides it, so a logger
    costs nothing for events it ignores.  Results come one batch per call to
    :meth:`log_trial_result_batch` (fasttune's hook; a worker sends many results at
    once); its default passes them one by one to :meth:`log_trial_result`, the
    simple way to write one.  Close what a trial opened in :meth:`log_trial_end`.

    Unlike Ray Tune's, ``on_trial_result`` is not forwarded: results reach loggers
    through ``on_trial_result_batch`` only, so each is logged exactly once.

    Example:
        >>> import fasttune as tune
        >>> from fasttune.logger import LoggerCallback
        >>> class PrintLosses(LoggerCallback):
        ...     def log_trial_result(self, iteration, trial, result):
        ...         print(trial, result["loss"])
        ...     def log_trial_end(self, trial, failed=False):
        ...         print(trial, "failed" if failed else "done")
        >>> run_config = tune.RunConfig(callbacks=[PrintLosses()])
    """

    def log_trial_start(self, trial: Any) -> None:
        """``trial`` starts (its first run, or a restart without a checkpoint)."""

    def log_trial_restore(self, trial: Any) -> None:
        """``trial`` starts again from its checkpoint."""

    def log_trial_save(self, trial: Any) -> None:
        """``trial`` saved a checkpoint (``trial.checkpoint``)."""

    def log_trial_result(self, iteration: int, trial: Any, result: Dict[str, Any]) -> None:
        """``trial`` reported ``result`` (at step ``iteration`` of the experiment loop)."""

    def log_trial_result_batch(self, iteration: int, trial: Any, results: List[Dict[str, Any]],
                               times: List[float]) -> None:
        """One batch of ``trial``'s results, in order; ``times[i]`` is when ``results[i]``
        was reported (seconds since the epoch).  Override this instead of
        :meth:`log_trial_result` to write a batch at once."""
        log = self.log_trial_result
        for result in results:
            log(iteration, trial, result)

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        """``trial`` ended: completed, or ``failed`` (an error it does not recover from)."""

    # ---- the Callback hooks, forwarded -----------------------------------------------
    def on_trial_start(self, iteration: int, trials: List[Any], trial: Any, **info: Any) -> None:
        self.log_trial_start(trial)

    def on_trial_restore(self, iteration: int, trials: List[Any], trial: Any, **info: Any) -> None:
        self.log_trial_restore(trial)

    def on_trial_save(self, iteration: int, trials: List[Any], trial: Any, **info: Any) -> None:
        self.log_trial_save(trial)

    def on_trial_result_batch(self, iteration: int, trials: List[Any], trial: Any, results: List[Dict[str, Any]],
                              times: List[float], **info: Any) -> None:
        self.log_trial_result_batch(iteration, trial, results, times)

    def on_trial_complete(self, iteration: int, trials: List[Any], trial: Any, **info: Any) -> None:
        self.log_trial_end(trial, failed=False)

    def on_trial_error(self, iteration: int, trials: List[Any], trial: Any, **info: Any) -> None:
        self.log_trial_end(trial, failed=True)

    def _wants(self, hook: str) -> bool:
        forwarded_to = _FORWARDED.get(hook)
        if forwarded_to is None or overrides(self, LoggerCallback, hook):
            return super()._wants(hook)
        return any(overrides(self, LoggerCallback, method) for method in forwarded_to)


# Each forwarded hook, and the methods whose override makes a logger want it.
_FORWARDED = {
    "on_trial_start": ("log_trial_start",),
    "on_trial_restore": ("log_trial_restore",),
    "on_trial_save": ("log_trial_save",),
    "on_trial_result_batch": ("log_trial_result", "log_trial_result_batch"),
    "on_trial_complete": ("log_trial_end",),
    "on_trial_error": ("log_trial_end",),
}


def pretty_print(result: Dict[str, Any], exclude: Optional[Iterable[str]] = None) -> str:
    """``result`` as YAML text, as Ray Tune prints it: keys sorted, nested dicts indented, a
    list of more than three items on one line.  ``config``, ``hist_stats``, the top-level keys
    whose value is None and those in ``exclude`` are left out; numpy values print as numbers.

    Example:
        >>> result = {"loss": 0.25, "training_iteration": 3, "config": {"lr": 0.1},
        ...           "info": {"steps": [1, 2], "lrs": [1, 2, 3, 4]}, "grad_norm": None}
        >>> print(pretty_print(result), end="")
        info:
          lrs: [1, 2, 3, 4]
          steps:
          - 1
          - 2
        loss: 0.25
        training_iteration: 3
    """
    import yaml  # PyYAML comes with ray; imported on first use to keep ``import fasttune`` fast

    excluded = set(exclude or ())
    shown = {key: value for key, value in result.items()
             if value is not None and key not in _NOT_PRINTED and key not in excluded}
    plain = json.loads(json.dumps(shown, default=json_default))  # numpy and other objects as JSON has them
    return yaml.dump(plain, Dumper=_yaml_dumper(yaml), default_flow_style=False)


@functools.lru_cache(maxsize=None)
def _yaml_dumper(yaml: Any) -> Any:
    class ResultDumper(yaml.SafeDumper):
        def represent_sequence(self, tag, sequence, flow_style=None):
            if len(sequence) > _FLOW_STYLE_AFTER:
                flow_style = True
            return super().represent_sequence(tag, sequence, flow_style=flow_style)

    return ResultDumper
