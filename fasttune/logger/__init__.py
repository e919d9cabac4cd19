"""Writing what trials report (``ray.tune.logger``)."""
