"""Ray Tune's ``ray.tune.logger.aim``: :class:`~fasttune.integration.aim.AimLoggerCallback`,
which logs each trial as an Aim run (needs ``pip install "fasttune[aim]"``)."""
from fasttune.integration.aim import VALID_SUMMARY_TYPES, AimLoggerCallback

__all__ = ["AimLoggerCallback", "VALID_SUMMARY_TYPES"]
