"""Trainables: what a worker runs for a trial."""
from fasttune.trainable.function_trainable import FunctionTrainable, wrap_function
from fasttune.trainable.session import TuneContext, get_checkpoint, get_context, report
from fasttune.trainable.trainable import Trainable
from fasttune.trainable.util import with_parameters

__all__ = ["Trainable", "FunctionTrainable", "with_parameters", "wrap_function", "TuneContext", "get_checkpoint", "get_context", "report"]
