"""``blackbox_trainable``: a blackbox as an ordinary function trainable, for the real executor.

It reports the blackbox's curve one fidelity at a time, sleeping each step's seconds times
``time_scale``; with ``checkpoint=True`` every result carries a checkpoint of the
fidelities done, and a trial restored from one goes on after it (PBT's exploit, a pause).
What it is for: running the same problem for real and in simulation, and checking that
both make the same decisions.

Example:
    >>> from fasttune.simulation import blackbox_trainable, branin_blackbox
    >>> train = blackbox_trainable(branin_blackbox(), time_scale=0.001, name="branin")
    >>> train.__name__
    'branin'
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Any, Callable, Dict

from fasttune.simulation._blackbox import Blackbox

__all__ = ["blackbox_trainable"]

_POSITION_FILE = "fidelities_done.json"


def blackbox_trainable(blackbox: Blackbox, time_scale: float = 0.0, checkpoint: bool = False,
                       name: str = "") -> Callable[[Dict[str, Any]], None]:
    """A function trainable that replays ``blackbox`` (see the module docstring)."""
    if not isinstance(blackbox, Blackbox):
        raise TypeError(f"blackbox_trainable needs a fasttune.simulation.Blackbox, got {type(blackbox).__name__}.")
    if time_scale < 0:
        raise ValueError(f"time_scale must be >= 0, got {time_scale!r}.")
    fidelity_name = blackbox.fidelity_name
    fidelity_values = blackbox.fidelities.tolist()

    def train(config: Dict[str, Any]) -> None:
        from fasttune import Checkpoint, get_checkpoint, report

        metrics, step_seconds = blackbox.curve(config)
        values = {key: column.tolist() for key, column in metrics.items()}
        position = 0
        restored = get_checkpoint()
        if restored is not None:
            with restored.as_directory() as directory, open(os.path.join(directory, _POSITION_FILE)) as f:
                position = json.load(f)["fidelities_done"]
        for i in range(position, len(fidelity_values)):
            if time_scale:
                time.sleep(float(step_seconds[i]) * time_scale)
            result = {key: column[i] for key, column in values.items()}
            result[fidelity_name] = fidelity_values[i]
            if not checkpoint:
                report(result)
                continue
            with tempfile.TemporaryDirectory() as directory:
                with open(os.path.join(directory, _POSITION_FILE), "w") as f:
                    json.dump({"fidelities_done": i + 1}, f)
                report(result, checkpoint=Checkpoint.from_directory(directory))

    train.__name__ = name or "blackbox"
    return train
