"""Ray Tune's ``ray.tune.logger.comet``: :class:`~fasttune.integration.comet.CometLoggerCallback`,
which logs each trial as a Comet experiment (needs ``pip install "fasttune[comet]"``)."""
from fasttune.integration.comet import CometLoggerCallback

__all__ = ["CometLoggerCallback"]
