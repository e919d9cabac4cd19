"""A running trial's context (``ray.tune.context``): ``TuneContext`` and ``get_context``.

The same objects as ``fasttune.TuneContext`` and ``fasttune.get_context``, at Ray Tune's
module path.

Example:
    >>> from fasttune.context import get_context
    >>> get_context().get_trial_id() is None  # outside a trial: an empty context
    True
"""
from fasttune.trainable.session import TuneContext, get_context

__all__ = ["TuneContext", "get_context"]
