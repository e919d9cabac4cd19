"""Function trainables: a user's ``train(config)`` turned into something a worker runs.

In a sweep the pooled worker calls :meth:`FunctionTrainable.run` with the trial's
session: the function runs in the worker's trial thread and its reports go straight to
the worker's buffer.  Used directly, a FunctionTrainable is a :class:`Trainable`:
``train()`` runs the function on a thread of its own up to its next ``tune.report``
and returns that result; ``save()`` keeps the checkpoint it last reported and
``restore()`` hands one to ``tune.get_checkpoint()`` when the function (re)starts.
"""
from __future__ import annotations

import inspect
import os
import queue
import shutil
import threading
from typing import Any, Callable, Dict, Optional, Type

from fasttune.checkpoint import Checkpoint
from fasttune.error import TuneError, TuneStopTrial
from fasttune.trainable.session import Session, TuneContext, set_session
from fasttune.trainable.trainable import Trainable

#: Ray Tune's marker file names of its old function checkpoints (fasttune writes none).
NULL_MARKER = ".null_marker"
TEMP_MARKER = ".temp_marker"

# The file name of the copy of the last checkpoint the function reported, in the logdir.
_LAST_REPORTED = "checkpoint_reported"


class FunctionTrainable(Trainable):
    """A training function as a :class:`Trainable`.

    Subclasses made by :func:`wrap_function` set ``_trainable_func``.  The function
    takes the trial's config and reports with ``tune.report``; returning ends the
    trial normally, raising ends it as ERROR (the worker keeps the traceback).

    Example:
        >>> import fasttune as tune
        >>> from fasttune.trainable import wrap_function
        >>> def train(config):
        ...     for step in range(3):
        ...         tune.report({"score": config["base"] + step})
        >>> trainable = wrap_function(train)({"base": 10})
        >>> [trainable.train()["score"] for _ in range(3)]
        [10, 11, 12]
        >>> trainable.train()["done"]
        True
        >>> trainable.stop()
    """

    _name: str = "func"
    _resources: Optional[Any] = None
    _runs_a_function = True

    def __init__(self, config: Optional[Dict[str, Any]] = None, storage: Any = None,
                 logger_creator: Any = None) -> None:
        # The worker builds one per trial: a shallow copy of the config, no directory, no thread.
        self._init_bookkeeping(config, storage)
        self._local_run: Optional[_LocalRun] = None
        self._resume_from: Optional[Checkpoint] = None
        self._reported: Optional[Checkpoint] = None
        self.setup(self.config)

    def _trainable_func(self, config: Dict[str, Any]) -> Any:
        """The training function (set by :func:`wrap_function`, or overridden)."""
        raise NotImplementedError(f"{type(self).__name__} has no training function; make one with wrap_function(fn).")

    @classmethod
    def default_resource_request(cls, config: Dict[str, Any]) -> Optional[Any]:
        return cls._resources

    def run(self, session: Session) -> Any:
        """Run the function to its end with ``session`` as the trial's session (how a
        sweep's worker runs it); returns what the function returned."""
        set_session(session)
        try:
            return self._trainable_func(self.config)
        finally:
            set_session(None)

    # ---- direct use ---------------------------------------------------------------------
    def step(self) -> Dict[str, Any]:
        """Let the function run to its next report and return that result (with
        ``should_checkpoint: True`` when it came with a checkpoint).  Once the function
        has returned: its last result again, with ``done: True``."""
        if self._local_run is None:
            self._local_run = _LocalRun(self, self._resume_from)
        kind, value, checkpoint = self._local_run.next()
        if kind == "error":
            raise value
        if kind == "end":
            return dict(self._last_result or {}, done=True, __duplicate__=True)
        metrics = dict(value)
        if checkpoint is not None:
            self._reported = checkpoint
            metrics["should_checkpoint"] = True
        return metrics

    def execute(self, fn: Callable[["FunctionTrainable"], Any]) -> Any:
        """``fn(self)``: run code in the process that holds this trainable."""
        return fn(self)

    def save_checkpoint(self, checkpoint_dir: str = "") -> Optional[Checkpoint]:
        """Copy the checkpoint the function last reported into ``checkpoint_dir``; with no
        directory, return that checkpoint."""
        if not checkpoint_dir:
            return self._reported
        if self._reported is None:
            raise TuneError(
                f"{type(self).__name__} has no checkpoint to save: the function has not yet "
                "reported one with tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(...))."
            )
        self._reported.to_directory(checkpoint_dir)
        return None

    def load_checkpoint(self, checkpoint_result: Any) -> None:
        """Make ``tune.get_checkpoint()`` return this checkpoint: a Checkpoint, a
        directory, or a result carrying one.  A function already running is stopped, and
        the next ``train()`` starts it again from the checkpoint."""
        if isinstance(checkpoint_result, (str, os.PathLike)):
            checkpoint_result = Checkpoint.from_directory(os.fspath(checkpoint_result))
        elif not isinstance(checkpoint_result, Checkpoint):
            checkpoint_result = getattr(checkpoint_result, "checkpoint", checkpoint_result)
        self._end_local_run()
        self._resume_from = checkpoint_result

    def _load_from(self, checkpoint: Checkpoint) -> None:
        self.load_checkpoint(checkpoint)  # the function reads it itself, when it starts

    def reset_config(self, new_config: Dict[str, Any]) -> bool:
        """End the running function; the next ``train()`` starts it with the new config."""
        self._end_local_run()
        self._resume_from = self._reported = None
        return True

    def cleanup(self) -> None:
        self._end_local_run()

    def _end_local_run(self) -> None:
        if self._local_run is not None:
            self._local_run.end()
            self._local_run = None


class _LocalRun:
    """The training function on a thread of its own, one report per :meth:`next`: after
    each report the function waits until the next call, as in a sweep at a decision
    point, so it never runs ahead of ``train()``."""

    def __init__(self, trainable: FunctionTrainable, checkpoint: Optional[Checkpoint]) -> None:
        self._logdir = trainable.logdir
        context = TuneContext(
            trial_id=trainable.trial_id,
            trial_name=trainable.trial_name,
            trial_dir=self._logdir,
            trial_resources=dict(trainable._resources),
        )
        session = Session(context, self._report, checkpoint)
        self._events: "queue.Queue[tuple]" = queue.Queue()
        self._resume = threading.Semaphore(0)
        self._ending = False
        self._finished = False
        self._thread = threading.Thread(target=self._main, args=(trainable, session), daemon=True,
                                        name=f"fasttune-{trainable.trial_name}")

    def _main(self, trainable: FunctionTrainable, session: Session) -> None:
        try:
            trainable.run(session)
        except TuneStopTrial:
            if not self._ending:  # raised by the function itself: it ended the trial
                self._events.put(("end", None, None))
        except BaseException as exc:  # noqa: BLE001 - handed to train(), which raises it
            self._events.put(("error", exc, None))
        else:
            self._events.put(("end", None, None))

    def _report(self, metrics: Dict[str, Any], checkpoint: Optional[Checkpoint]) -> None:
        if self._ending:
            raise TuneStopTrial("stop")
        if checkpoint is not None:
            # Copied now: the function may delete its directory once report() returns.
            target = os.path.join(self._logdir, _LAST_REPORTED)
            shutil.rmtree(target, ignore_errors=True)
            checkpoint = Checkpoint.from_directory(checkpoint.to_directory(target))
        self._events.put(("result", metrics, checkpoint))
        self._resume.acquire()
        if self._ending:
            raise TuneStopTrial("stop")

    def next(self) -> tuple:
        """The function's next event: ``("result", metrics, checkpoint)``, ``("end", ...)``
        or ``("error", exception, None)``."""
        if self._finished:
            raise TuneError("The training function has already finished; build a new trainable, "
                            "or call reset(config) to run it again.")
        if not self._thread.is_alive() and self._thread.ident is None:
            self._thread.start()
        else:
            self._resume.release()
        event = self._events.get()
        self._finished = event[0] != "result"
        return event

    def end(self) -> None:
        """Stop the function at the report it waits in, and wait for its thread."""
        self._ending = True
        if self._thread.ident is not None:
            self._resume.release()
            self._thread.join()


def wrap_function(train_func: Callable[..., Any], name: Optional[str] = None) -> Type[FunctionTrainable]:
    """Make a :class:`FunctionTrainable` subclass that runs ``train_func(config)``.

    Example:
        >>> from fasttune.trainable import wrap_function
        >>> def train(config):
        ...     pass
        >>> wrap_function(train).__name__
        'train'
    """
    if isinstance(train_func, type) and issubclass(train_func, FunctionTrainable):
        return train_func
    if not callable(train_func):
        raise TypeError(
            f"A trainable must be a function taking the config dict, got "
            f"{type(train_func).__name__}."
        )
    try:
        params = [
            p
            for p in inspect.signature(train_func).parameters.values()
            if p.default is inspect.Parameter.empty
            and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
    except (TypeError, ValueError):  # builtins and some C callables have no signature
        params = [None]
    if len(params) != 1:
        raise ValueError(
            f"The trainable function {getattr(train_func, '__name__', train_func)!r} must "
            f"take exactly one required argument, the config dict; it takes "
            f"{len(params)}. Bind other arguments with tune.with_parameters(fn, **kwargs)."
        )
    trainable_name = name or getattr(train_func, "__name__", "func")
    return type(
        trainable_name,
        (FunctionTrainable,),
        {
            "_name": trainable_name,
            "_trainable_func": staticmethod(train_func),
            "_resources": getattr(train_func, "_resources", None),
            "__module__": getattr(train_func, "__module__", __name__),
        },
    )
