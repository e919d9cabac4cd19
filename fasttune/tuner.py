"""``Tuner``: the entry point of a sweep (``ray.tune.Tuner``)."""
from __future__ import annotations

from typing import Any, Dict, Optional

from fasttune.config import RunConfig
from fasttune.impl.tuner_internal import TunerInternal
from fasttune.result_grid import ResultGrid
from fasttune.tune_config import TuneConfig


class Tuner:
    """Tune a trainable over a param space.

    ``fit()`` uses the Ray the process is connected to (``ray.init(address=...)`` for a
    cluster) or starts a local Ray on this machine.

    Example:
        >>> import fasttune as tune
        >>> def train(config):
        ...     for i in range(5):
        ...         tune.report({"loss": (config["x"] - 0.3) ** 2 / (i + 1)})
        >>> tuner = tune.Tuner(
        ...     train,
        ...     param_space={"x": tune.uniform(0, 1)},
        ...     tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=8),
        ... )
        >>> results = tuner.fit()  # doctest: +SKIP
        >>> results.get_best_result().config  # doctest: +SKIP
    """

    def __init__(
        self,
        trainable: Any = None,
        *,
        param_space: Optional[Dict[str, Any]] = None,
        tune_config: Optional[TuneConfig] = None,
        run_config: Optional[RunConfig] = None,
        _tuner_internal: Optional[TunerInternal] = None,
    ) -> None:
        self._local_tuner = _tuner_internal or TunerInternal(
            trainable=trainable,
            param_space=param_space,
            tune_config=tune_config,
            run_config=run_config,
        )

    def fit(self) -> ResultGrid:
        """Run the sweep to completion; trial failures are in the ResultGrid, not raised
        (unless ``FailureConfig(fail_fast="raise")``)."""
        return self._local_tuner.fit()
