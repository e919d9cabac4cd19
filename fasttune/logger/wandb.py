"""``ray.tune.logger.wandb``'s path: ``WandbLoggerCallback`` lives in ``fasttune.integration.wandb``."""
from fasttune.integration.wandb import WandbLoggerCallback

__all__ = ["WandbLoggerCallback"]
