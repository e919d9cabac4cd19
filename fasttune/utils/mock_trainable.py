"""``ray.tune.utils.mock_trainable``: the example class trainable of Ray Tune's examples and
tutorials, whose reward follows a tanh curve shaped by its config.

Example:
    >>> from fasttune.utils.mock_trainable import MyTrainableClass
    >>> trainable = MyTrainableClass({"width": 10, "height": 2})
    >>> round(trainable.train()["episode_reward_mean"], 4)
    0.1993
"""
from __future__ import annotations

import json
import os
import time
from typing import Any, Dict

import numpy as np

from fasttune.trainable.trainable import Trainable

#: The name :func:`register_mock_trainable` registers ``MyTrainableClass`` under.
MOCK_TRAINABLE_NAME = "mock_trainable"
#: A config key: true makes every step after the first fail (until restored, unless
#: ``persistent_error`` is true too).
MOCK_ERROR_KEY = "mock_error"


class MyTrainableClass(Trainable):
    """Reports ``episode_reward_mean = height * tanh(timestep / width)`` per step.

    Config: ``width`` and ``height`` (default 1) shape the curve; ``sleep`` seconds to
    wait per step; ``mock_error`` / ``persistent_error`` make it fail on purpose.
    Checkpoints hold the timestep in a JSON file.
    """

    def setup(self, config: Dict[str, Any]) -> None:
        self._sleep_time = config.get("sleep", 0)
        self._mock_error = config.get(MOCK_ERROR_KEY, False)
        self._persistent_error = config.get("persistent_error", False)
        self.timestep = 0
        self.restored = False

    def step(self) -> Dict[str, Any]:
        # The first step always succeeds, so a checkpoint can exist before the failure.
        if self._mock_error and self.timestep > 0 and (self._persistent_error or not self.restored):
            raise RuntimeError(f"Failing on purpose! timestep={self.timestep}")
        if self._sleep_time > 0:
            time.sleep(self._sleep_time)
        self.timestep += 1
        reward = np.tanh(float(self.timestep) / self.config.get("width", 1)) * self.config.get("height", 1)
        return {"episode_reward_mean": float(reward)}

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        with open(os.path.join(checkpoint_dir, "checkpoint"), "w") as f:
            json.dump({"timestep": self.timestep}, f)

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        with open(os.path.join(checkpoint_dir, "checkpoint")) as f:
            self.timestep = json.load(f)["timestep"]
        self.restored = True


def register_mock_trainable() -> None:
    """Register ``MyTrainableClass`` as ``"mock_trainable"``."""
    from fasttune.registry import register_trainable

    register_trainable(MOCK_TRAINABLE_NAME, MyTrainableClass)
