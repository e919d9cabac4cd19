"""The ``>>>`` examples in fasttune's docstrings run as tests, one test per module.

Examples that need an optional extra which is not installed (optuna, rich, ...) are
skipped, not failed (``NEEDS``); ``fasttune/_core.pyx`` is compiled and has no
examples run.  Each module's examples run in a fresh temporary working directory.
"""
from __future__ import annotations

import doctest
import importlib
import importlib.util
import io
from pathlib import Path
from typing import Dict, List

import pytest

SOURCE = Path(__file__).resolve().parent.parent / "fasttune"

# Docstrings whose examples need an optional extra: doctest name (a module, class or
# function; everything under it too) -> the package it needs.
NEEDS: Dict[str, str] = {
    "fasttune._cli.plot": "matplotlib",
    "fasttune._progress_live": "rich",
    "fasttune.logger.tensorboardx.TBXLoggerCallback": "tensorboardX",
    "fasttune.result_grid.ResultGrid.get_dataframe": "pandas",
    "fasttune.search.hyperopt": "hyperopt",
    "fasttune.search.nevergrad": "nevergrad",
    "fasttune.search.optuna": "optuna",
}

OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _modules_with_examples() -> List[str]:
    """Dotted names of the modules whose source holds a ``>>>`` example."""
    names = []
    for path in sorted(SOURCE.rglob("*.py")):
        if ">>>" not in path.read_text(encoding="utf-8"):
            continue
        parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names.append(".".join(parts))
    return names


def _missing_extra(doctest_name: str) -> str:
    """The optional package the docstring ``doctest_name`` needs and cannot import, or ""."""
    for owner, package in NEEDS.items():
        if doctest_name == owner or doctest_name.startswith(owner + "."):
            if importlib.util.find_spec(package) is None:
                return package
    return ""


@pytest.mark.parametrize("name", _modules_with_examples())
def test_docstring_examples(name, tmp_path, monkeypatch):
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and not exc.name.startswith("fasttune"):
            pytest.skip(f"needs the optional package {exc.name}")
        raise
    # Examples that write files write them under a fresh directory.
    monkeypatch.chdir(tmp_path)
    runner = doctest.DocTestRunner(optionflags=OPTIONS)
    report = io.StringIO()
    missing = set()
    for test in doctest.DocTestFinder(exclude_empty=True).find(module, name):
        extra = _missing_extra(test.name)
        if extra:
            missing.add(extra)
            continue
        runner.run(test, out=report.write)
    if missing:  # (the test extra installs them all: in CI nothing is skipped)
        pytest.skip(f"needs {', '.join(sorted(missing))}")
    assert runner.tries, f"{name} holds '>>>' but no example ran"
    assert runner.failures == 0, f"{runner.failures} of {runner.tries} examples failed in {name}:\n{report.getvalue()}"
