"""Ray Tune's own example scripts, read from the installed Ray and run on fasttune with their
imports changed (``from ray import tune`` -> ``import fasttune as tune``, ``ray.tune.x`` ->
``fasttune.x``) and nothing else: the migration the README promises."""
import importlib.util
import re
from pathlib import Path

EXAMPLES = Path(importlib.util.find_spec("ray.tune").origin).parent / "examples"

_REWRITES = [
    (re.compile(r"^(\s*)from ray import tune\b", re.M), r"\1import fasttune as tune"),
    (re.compile(r"^(\s*)from ray\.tune(\.|\s)", re.M), r"\1from fasttune\2"),
    (re.compile(r"^(\s*)import ray\.tune\b", re.M), r"\1import fasttune"),
    (re.compile(r"\bray\.tune\."), "fasttune."),
]


def on_fasttune(source: str) -> str:
    """``source`` with its Ray Tune imports pointing at fasttune.

    >>> print(on_fasttune("from ray import tune\\nfrom ray.tune.schedulers import ASHAScheduler"))
    import fasttune as tune
    from fasttune.schedulers import ASHAScheduler
    """
    for pattern, replacement in _REWRITES:
        source = pattern.sub(replacement, source)
    return source


def example_source(name: str) -> str:
    return on_fasttune((EXAMPLES / f"{name}.py").read_text())
