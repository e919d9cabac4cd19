"""Function trainables: a user's ``train(config)`` turned into something a worker runs."""
from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, Optional, Type

from fasttune.trainable.session import Session, set_session


class FunctionTrainable:
    """Runs a training function in the worker's trial thread.

    Subclasses made by :func:`wrap_function` set ``_trainable_func``.  The function
    takes the trial's config and reports with ``tune.report``; returning ends the
    trial normally, raising ends it as ERROR (the worker keeps the traceback).
    """

    _name: str = "func"
    _trainable_func: Optional[Callable[..., Any]] = None
    _resources: Optional[Any] = None

    def __init__(self, config: Optional[Dict[str, Any]] = None) -> None:
        self.config = dict(config or {})

    @classmethod
    def default_resource_request(cls, config: Dict[str, Any]) -> Optional[Any]:
        return cls._resources

    def run(self, session: Session) -> Any:
        set_session(session)
        try:
            return self._trainable_func(self.config)
        finally:
            set_session(None)


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
