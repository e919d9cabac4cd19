"""A package's public names imported on first use (a module ``__getattr__``, PEP 562).

Example:
    >>> import fasttune
    >>> load_attribute("fasttune", {"uniform": "fasttune.search.sample"}, "uniform").__name__
    'uniform'

A package takes its hooks with ``__getattr__, __dir__ = module_hooks(globals(), _PUBLIC)``.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, Dict, List, Tuple

__all__ = ["load_attribute", "module_hooks"]


def _import(module: str) -> Any:
    # Parents first, each on its own: ``import_module`` holds a module's import lock while it
    # imports the parents, and two threads asking for two children of a package whose
    # ``__init__`` imports both would each hold the lock the other waits for.
    parts = module.split(".")
    for end in range(2, len(parts)):
        importlib.import_module(".".join(parts[:end]))
    return importlib.import_module(module)


def load_attribute(package: str, public: Dict[str, str], name: str) -> Any:
    """``package``'s attribute ``name``: a public name from the module ``public`` names for
    it, else the submodule ``package.name`` (as Ray Tune's packages offer them once imported).

    Raises:
        AttributeError: neither (``hasattr`` is False), as for any missing attribute.
    """
    module = public.get(name)
    if module is not None:
        return getattr(_import(module), name)
    if name.isidentifier() and not name.startswith("__"):
        try:
            return _import(f"{package}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{package}.{name}":
                raise  # a submodule that is there but needs what is missing
    raise AttributeError(f"module {package!r} has no attribute {name!r}")


def module_hooks(namespace: Dict[str, Any], public: Dict[str, str]) -> Tuple[Callable[[str], Any], Callable[[], List[str]]]:
    """The ``__getattr__`` and ``__dir__`` of the package whose globals are ``namespace``
    and whose public names ``public`` maps to their modules; a public name, once loaded,
    becomes a plain global (later uses do not come here)."""
    package = namespace["__name__"]

    def __getattr__(name: str) -> Any:
        value = load_attribute(package, public, name)
        if name in public:
            namespace[name] = value
        return value

    def __dir__() -> List[str]:
        return sorted(set(namespace) | set(public))

    return __getattr__, __dir__
