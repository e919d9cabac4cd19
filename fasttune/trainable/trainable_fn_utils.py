"""``ray.tune.trainable.trainable_fn_utils``'s path: what a training function calls."""
from fasttune.checkpoint import Checkpoint
from fasttune.trainable.session import get_checkpoint, report

__all__ = ["Checkpoint", "get_checkpoint", "report"]
