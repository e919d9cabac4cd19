"""``ExperimentAnalysis``: what the legacy ``tune.run`` returns."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from fasttune.result_grid import ResultGrid


class ExperimentAnalysis:
    """The trials of a finished ``tune.run`` and the best of them.

    Example:
        >>> import fasttune as tune
        >>> analysis = tune.run(train, config={"x": tune.uniform(0, 1)}, metric="loss", mode="min")  # doctest: +SKIP
        >>> analysis.best_config  # doctest: +SKIP
    """

    def __init__(self, trials: List[Any], result_grid: ResultGrid, default_metric: Optional[str] = None, default_mode: Optional[str] = None) -> None:
        self.trials = trials
        self._grid = result_grid
        self.default_metric = default_metric
        self.default_mode = default_mode

    @property
    def experiment_path(self) -> str:
        return self._grid.experiment_path

    def get_best_trial(self, metric: Optional[str] = None, mode: Optional[str] = None, scope: str = "last", filter_nan_and_inf: bool = True) -> Optional[Any]:
        try:
            best = self._grid.get_best_result(metric or self.default_metric, mode or self.default_mode, scope, filter_nan_and_inf)
        except RuntimeError:
            return None
        for trial in self.trials:
            if trial.path == best.path:
                return trial
        return None

    def get_best_config(self, metric: Optional[str] = None, mode: Optional[str] = None, scope: str = "last") -> Optional[Dict[str, Any]]:
        trial = self.get_best_trial(metric, mode, scope)
        return trial.config if trial is not None else None

    @property
    def best_trial(self) -> Optional[Any]:
        return self.get_best_trial()

    @property
    def best_config(self) -> Optional[Dict[str, Any]]:
        return self.get_best_config()

    @property
    def best_result(self) -> Optional[Dict[str, Any]]:
        trial = self.best_trial
        return trial.last_result if trial is not None else None

    @property
    def best_checkpoint(self) -> Optional[Any]:
        trial = self.best_trial
        return trial.checkpoint if trial is not None else None

    @property
    def results(self) -> Dict[str, Dict[str, Any]]:
        return {t.trial_id: t.last_result for t in self.trials}

    def dataframe(self, metric: Optional[str] = None, mode: Optional[str] = None) -> Any:
        return self._grid.get_dataframe(filter_metric=metric, filter_mode=mode)

    @property
    def results_df(self) -> Any:
        return self._grid.get_dataframe()
