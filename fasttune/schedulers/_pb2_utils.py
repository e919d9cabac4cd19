"""The GP-UCB step of PB2, on scikit-learn's ``GaussianProcessRegressor``.

PB2 models how fast the score improves over the next interval as a function of where a
trial starts (time, score) and its hyperparameters, and picks hyperparameters by an
upper confidence bound (GP-UCB) at the start point of the trial that is about to train.

scikit-learn (with scipy) is an optional dependency: ``pip install "fasttune[pb2]"``.
Everything here imports it lazily.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Optional, Tuple

import numpy as np

from fasttune._optional import import_optional

# GP-UCB exploration weight: kappa = sqrt(c1 * log(c2 * n)), floored so that it stays
# positive for small n.
_C1, _C2, _MIN_BETA = 0.2, 0.4, 0.1


def import_sklearn() -> Tuple[Any, Any, Any, Any, Any]:
    """scikit-learn's GP regressor, its kernels and scipy's minimize, or a clear ImportError."""
    gp = import_optional("sklearn.gaussian_process", "pb2", "PB2", package="scikit-learn")
    kernels = import_optional("sklearn.gaussian_process.kernels", "pb2", "PB2", package="scikit-learn")
    optimize = import_optional("scipy.optimize", "pb2", "PB2", package="scikit-learn")
    return gp.GaussianProcessRegressor, kernels.RBF, kernels.ConstantKernel, kernels.WhiteKernel, optimize.minimize


def _generator(random_state: Any) -> Any:
    """numpy's global RandomState for None, else a RandomState/Generator."""
    if random_state is None:
        return np.random.mtrand._rand
    if isinstance(random_state, (np.random.RandomState, np.random.Generator)):
        return random_state
    return np.random.RandomState(int(random_state))


def _seed(rng: Any) -> int:
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(0, 2**31 - 1))
    return int(rng.randint(0, 2**31 - 1))


def standardize(y: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance, clipped to [-2, 2] so outliers do not dominate the fit."""
    y = np.asarray(y, dtype=float)
    return np.clip((y - y.mean()) / (y.std() + 1e-8), -2.0, 2.0)


class RewardChangeModel:
    """A GP of the score change per unit time, fitted on ``(time, score, hyperparams)``.

    Args:
        X: ``(n, 2 + d)`` rows ``[start time, start score, hyperparameters...]``.
        y: ``(n,)`` score change per unit of time over the interval each row starts.
        lower, upper: ``(d,)`` bounds of the hyperparameters.
        random_state: None (numpy's global generator), an int seed, or a numpy
            ``RandomState``/``Generator``; seeds the GP optimizer's restarts.
        gp_seed: the GP optimizer's seed itself, instead of one drawn from
            ``random_state``: a model fitted again on the same data with the ``gp_seed``
            it had is the same model.

    Example:
        >>> import numpy as np
        >>> rng = np.random.RandomState(0)
        >>> h = rng.uniform(0, 1, 40)
        >>> X = np.column_stack([np.arange(40.0), np.zeros(40), h])
        >>> model = RewardChangeModel(X, -(h - 0.8) ** 2, [0.0], [1.0], random_state=0)
        >>> value = model.suggest([40.0, 0.0], random_state=0)
        >>> bool(0.0 <= value[0] <= 1.0)
        True
    """

    def __init__(self, X: Any, y: Any, lower: Any, upper: Any, random_state: Any = None, *,
                 gp_seed: Optional[int] = None) -> None:
        GaussianProcessRegressor, RBF, ConstantKernel, WhiteKernel, self._minimize = import_sklearn()
        self._regressor_cls = GaussianProcessRegressor
        X = np.asarray(X, dtype=float)
        y = np.asarray(y, dtype=float).ravel()
        if X.ndim != 2 or X.shape[1] < 3 or X.shape[0] != y.shape[0] or X.shape[0] < 1:
            raise ValueError(f"X must be (n, 2 + d) and y (n,), got {X.shape} and {y.shape}.")
        self.lower = np.asarray(lower, dtype=float).ravel()
        self.upper = np.asarray(upper, dtype=float).ravel()
        if self.lower.shape != (X.shape[1] - 2,) or self.upper.shape != self.lower.shape:
            raise ValueError(f"lower/upper must have {X.shape[1] - 2} entries, got {self.lower.shape}.")
        self.n = X.shape[0]
        # Time and score are scaled by the data's range, hyperparameters by their bounds.
        self._offset = np.concatenate([X[:, :2].min(axis=0), self.lower])
        span = np.concatenate([X[:, :2].max(axis=0) - X[:, :2].min(axis=0), self.upper - self.lower])
        self._span = np.where(span > 0, span, 1.0)
        Xn = self._scale(X)
        yn = standardize(y)
        kernel = (
            ConstantKernel(1.0, (1e-3, 1e3))
            * RBF(length_scale=np.ones(Xn.shape[1]), length_scale_bounds=(1e-2, 1e2))
            + WhiteKernel(noise_level=0.1, noise_level_bounds=(1e-6, 1.0))
        )
        self.gp_seed = _seed(_generator(random_state)) if gp_seed is None else int(gp_seed)
        self.gp = GaussianProcessRegressor(
            kernel=kernel, alpha=1e-8, normalize_y=False, n_restarts_optimizer=2, random_state=self.gp_seed
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning at hyperparameter bounds
            self.gp.fit(Xn, yn)
        self._X, self._y = Xn, yn

    def _scale(self, X: np.ndarray) -> np.ndarray:
        return (X - self._offset) / self._span

    def _variance_model(self, fixed_n: np.ndarray, pending: Optional[np.ndarray]) -> Any:
        """The GP whose variance also counts the points chosen earlier in this round.

        A GP's variance does not depend on the labels, so the pending points join with
        label 0 and the fitted kernel; a new choice then avoids repeating them.
        """
        if pending is None or len(pending) == 0:
            return self.gp
        pending = np.atleast_2d(np.asarray(pending, dtype=float))
        P = np.hstack([np.repeat(fixed_n[None, :2], len(pending), axis=0),
                       (pending - self.lower) / self._span[2:]])
        model = self._regressor_cls(kernel=self.gp.kernel_, alpha=1e-8, optimizer=None, normalize_y=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(np.vstack([self._X, P]), np.concatenate([self._y, np.zeros(len(P))]))
        return model

    def suggest(
        self,
        fixed: Any,
        pending: Optional[Any] = None,
        random_state: Any = None,
        num_candidates: int = 1000,
    ) -> np.ndarray:
        """Hyperparameters maximising the UCB at start point ``fixed = [time, score]``.

        Args:
            fixed: ``[time, score]`` where the trial will continue from.
            pending: ``(k, d)`` hyperparameters already chosen in this round.
            random_state: Source of the random candidates (None: numpy's global one).
            num_candidates: Random candidates scored before the best few are refined
                with L-BFGS-B.

        Returns:
            ``(d,)`` values within ``[lower, upper]``.
        """
        fixed = np.asarray(fixed, dtype=float).ravel()
        if fixed.shape != (2,):
            raise ValueError(f"fixed must be [time, score], got {fixed!r}.")
        d = len(self.lower)
        fixed_n = (fixed - self._offset[:2]) / self._span[:2]
        variance_model = self._variance_model(fixed_n, pending)
        kappa = math.sqrt(max(_C1 * math.log(_C2 * self.n), _MIN_BETA))

        def ucb(H: np.ndarray) -> np.ndarray:
            Z = np.hstack([np.repeat(fixed_n[None, :], len(H), axis=0), H])
            mean = self.gp.predict(Z)
            _, std = variance_model.predict(Z, return_std=True)
            return mean + kappa * std

        rng = _generator(random_state)
        candidates = rng.uniform(0.0, 1.0, size=(max(1, int(num_candidates)), d))
        scores = ucb(candidates)
        best_x, best_value = candidates[int(np.argmax(scores))], float(np.max(scores))
        for start in candidates[np.argsort(scores)[-3:]]:
            result = self._minimize(
                lambda x: -float(ucb(x[None, :])[0]),
                start,
                method="L-BFGS-B",
                bounds=[(0.0, 1.0)] * d,
                options={"maxiter": 50},
            )
            value = -float(result.fun)
            if np.all(np.isfinite(result.x)) and value > best_value:
                best_x, best_value = result.x, value
        best_x = np.clip(best_x, 0.0, 1.0)
        return self.lower + best_x * (self.upper - self.lower)
