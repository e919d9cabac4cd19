"""``ray.tune.trainable.util``'s path: ``with_parameters`` and ``with_resources``."""
from fasttune.tune import with_parameters, with_resources

__all__ = ["with_parameters", "with_resources"]
