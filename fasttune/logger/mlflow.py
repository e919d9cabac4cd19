"""``ray.tune.logger.mlflow``'s path: ``MLflowLoggerCallback`` lives in ``fasttune.integration.mlflow``."""
from fasttune.integration.mlflow import MLflowLoggerCallback

__all__ = ["MLflowLoggerCallback"]
