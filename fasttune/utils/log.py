"""``ray.tune.utils.log``'s ``Verbosity``: names for ``RunConfig(verbose=...)``'s levels.

Example:
    >>> import fasttune as tune
    >>> from fasttune.utils.log import Verbosity
    >>> tune.RunConfig(verbose=Verbosity.V1_EXPERIMENT).verbose == 1
    True
"""
from enum import IntEnum


class Verbosity(IntEnum):
    """The console verbosity levels; ints, so ``RunConfig(verbose=...)`` takes them as
    they are (``int(Verbosity.V2_TRIAL_NORM) == 2``, as in Ray Tune)."""

    V0_MINIMAL = 0
    V1_EXPERIMENT = 1
    V2_TRIAL_NORM = 2
    V3_TRIAL_DETAILS = 3
