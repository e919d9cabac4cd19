"""Optional dependencies: import one on first use, or say which extra installs it.

fasttune imports a library such as optuna or pandas only when a feature needs it, so
``import fasttune`` stays fast and works without it.  When it is missing the error names
the feature, the package and the ``pip install "fasttune[extra]"`` that brings it (the
extras are those of ``pyproject.toml``).

Example:
    >>> import_optional("json", "none", "A doctest").__name__
    'json'
    >>> try:
    ...     import_optional("no_such_module_xyz", "plot", "fasttune plot", package="matplotlib")
    ... except ImportError as exc:
    ...     print(exc)
    fasttune plot needs matplotlib: pip install "fasttune[plot]" (or pip install matplotlib).
"""
from __future__ import annotations

from types import ModuleType
from typing import Optional

__all__ = ["import_optional", "missing_dependency", "pip_install_hint"]


def import_optional(
    module_name: str, extra: str, purpose: str, *, package: Optional[str] = None, advice: str = ""
) -> ModuleType:
    """The module ``module_name`` (dotted: the submodule), or an ``ImportError`` from
    :func:`missing_dependency` chained to the original one.

    ``extra`` is the fasttune extra that installs it, ``purpose`` what needs it (a class or
    feature name), ``package`` the pip package when it differs from the top-level module
    name (``IPython`` -> ``ipython``), ``advice`` a sentence added to the message.
    """
    try:
        # What ``from <module_name> import ...`` does: a module already in sys.modules is
        # taken as it is, else it is imported with its parents.
        return __import__(module_name, fromlist=["__name__"])
    except ImportError as exc:
        raise missing_dependency(purpose, package or module_name.split(".")[0], extra, advice) from exc


def missing_dependency(purpose: str, package: str, extra: str, advice: str = "") -> ImportError:
    """The error for ``purpose`` when ``package`` is not installed (for callers that check
    without importing, e.g. with ``importlib.util.find_spec``).

    Example:
        >>> print(missing_dependency("TBXLoggerCallback", "tensorboardX", "tensorboard", "Or leave it out."))
        TBXLoggerCallback needs tensorboardX: pip install "fasttune[tensorboard]" (or pip install tensorboardX). Or leave it out.
    """
    message = f"{purpose} needs {package}: {pip_install_hint(extra, package)}."
    return ImportError(f"{message} {advice}" if advice else message)


def pip_install_hint(extra: str, package: Optional[str] = None) -> str:
    """How to install ``extra`` (and, when given, ``package`` alone).

    Example:
        >>> pip_install_hint("optuna")
        'pip install "fasttune[optuna]"'
        >>> pip_install_hint("jupyter", "ipython")
        'pip install "fasttune[jupyter]" (or pip install ipython)'
    """
    hint = f'pip install "fasttune[{extra}]"'
    return f"{hint} (or pip install {package})" if package else hint
