"""Internals behind the public Tuner (``ray.tune.impl``)."""
