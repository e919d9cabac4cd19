"""The layers of fasttune, read from the source with ``ast`` (nothing is imported).

* Some packages must never import others (the table ``FORBIDDEN``), wherever the
  import sits: at module level, in a function or under ``if TYPE_CHECKING``.
* The core twins (``_core.pyx`` and ``_core_fallback.py``) import nothing from
  fasttune except the module they share, so that each can be built and tested alone.
* No import cycle among fasttune modules at module level (imports inside
  functions and under ``if TYPE_CHECKING`` are not counted; neither is the
  package ``__init__`` Python runs before a submodule), nor one hidden by moving
  an import into a function (only ``if TYPE_CHECKING`` imports are free).
* No private name crosses modules: ``from fasttune.x import _name`` is refused
  unless ``_name`` is a module (``from fasttune import _corelib``) or the import is
  on the short ``PRIVATE_IMPORTS_ALLOWED`` list.
"""
from __future__ import annotations

import ast
import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest

SOURCE = Path(__file__).resolve().parent.parent / "fasttune"

# Who must never import what: (importer, forbidden prefixes, why).  A name is a
# module or a package; a package covers every module under it.
FORBIDDEN: List[Tuple[str, Tuple[str, ...], str]] = [
    ("fasttune.experiment", ("fasttune.execution",), "trials describe work; execution/ runs them"),
    ("fasttune.schedulers", ("ray", "fasttune.execution"), "schedulers decide from results alone"),
    ("fasttune.search", ("ray", "fasttune.execution"), "searchers suggest configs, they run nothing"),
    ("fasttune.stopper", ("ray", "fasttune.execution"), "stoppers decide from results alone"),
    ("fasttune.execution._worker", ("fasttune.schedulers", "fasttune.search"),
     "the worker runs trials; decisions reach it as data (DecisionPoints' wire form)"),
]

# The compiled core and its pure-Python twin share this module and nothing else of fasttune.
CORE_TWINS = ("_core.pyx", "_core_fallback.py")
CORE_SHARED = "fasttune._core_shared"

# Private names still imported across modules, by files being rewritten elsewhere
# (issue 14): (importing files, glob; from module; name, glob).  Keep it short.
PRIVATE_IMPORTS_ALLOWED: List[Tuple[str, str, str]] = []


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module doing the import
    target: str  # dotted module (or package) imported
    name: str  # the name taken from ``target`` ("" for ``import x``)
    module_level: bool  # runs when the importer is imported
    line: int


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(dotted: str) -> bool:
    """Whether ``dotted`` names a fasttune module or package (not a name inside one)."""
    if not dotted.startswith("fasttune"):
        return False
    base = SOURCE.parent.joinpath(*dotted.split("."))
    return base.is_dir() or any(base.with_suffix(suffix).exists() for suffix in (".py", ".pyx"))


def _python_files() -> List[Path]:
    return sorted(SOURCE.rglob("*.py"))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, module_level: bool) -> Iterator[Tuple[ast.AST, bool]]:
    """Every import under ``node``, and whether it runs when the module is imported."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, module_level
        elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            yield from _walk(child, False)
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for statement in child.body:
                yield from _walk(ast.Module(body=[statement], type_ignores=[]), False)
            for statement in child.orelse:
                yield from _walk(ast.Module(body=[statement], type_ignores=[]), module_level)
        else:
            yield from _walk(child, module_level)


def _imports_of(path: Path) -> List[Import]:
    importer = _module_name(path)
    package = importer if path.name == "__init__.py" else importer.rpartition(".")[0]
    found: List[Import] = []
    for node, module_level in _walk(ast.parse(path.read_text(), str(path)), True):
        if isinstance(node, ast.Import):
            found += [Import(importer, alias.name, "", module_level, node.lineno) for alias in node.names]
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            base = ".".join(anchor + ([base] if base else []))
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            if _is_module(submodule):
                found.append(Import(importer, submodule, "", module_level, node.lineno))
            else:
                found.append(Import(importer, base, alias.name, module_level, node.lineno))
    return found


_PYX_IMPORT = re.compile(r"^\s*(?:from\s+([\w.]+)\s+c?import\b|c?import\s+([\w.]+))", re.MULTILINE)


def _pyx_imports(path: Path) -> List[str]:
    """Modules a Cython file imports (``ast`` cannot parse Cython; its imports are plain lines)."""
    return [m.group(1) or m.group(2) for m in _PYX_IMPORT.finditer(path.read_text())]


def _all_imports() -> List[Import]:
    return [imp for path in _python_files() for imp in _imports_of(path)]


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@pytest.mark.parametrize("importer, forbidden, why", FORBIDDEN, ids=[row[0] for row in FORBIDDEN])
def test_forbidden_imports(importer, forbidden, why):
    bad = sorted({
        f"{imp.importer}:{imp.line} imports {imp.target}"
        for imp in _all_imports()
        if _under(imp.importer, importer) and any(_under(imp.target, f) for f in forbidden)
    })
    assert not bad, f"{importer} must not import {forbidden} ({why}):\n" + "\n".join(bad)


@pytest.mark.parametrize("twin", CORE_TWINS)
def test_core_twins_import_only_their_shared_module(twin):
    path = SOURCE / twin
    if twin.endswith(".pyx"):
        targets = _pyx_imports(path)
    else:
        targets = [imp.target for imp in _imports_of(path)]
    ours = sorted({t for t in targets if _under(t, "fasttune")} - {CORE_SHARED})
    assert not ours, f"{twin} imports {ours}; the core twins may import only {CORE_SHARED}"


def _module_graph(module_level_only: bool) -> Dict[str, Set[str]]:
    graph: Dict[str, Set[str]] = {_module_name(path): set() for path in _python_files()}
    for imp in _all_imports():
        if (imp.module_level or not module_level_only) and imp.target in graph and imp.target != imp.importer:
            graph[imp.importer].add(imp.target)
    return graph


def _cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[List[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles_at_module_level():
    cycles = [" <-> ".join(cycle) for cycle in _cycles(_module_graph(module_level_only=True))]
    assert not cycles, "Import cycles among fasttune modules:\n" + "\n".join(cycles)


def test_no_import_cycles_hidden_in_functions():
    # An import moved into a function still closes a loop; only TYPE_CHECKING imports are free.
    cycles = [" <-> ".join(cycle) for cycle in _cycles(_module_graph(module_level_only=False))]
    assert not cycles, "Import cycles among fasttune modules (counting function-level imports):\n" + "\n".join(cycles)


def test_cycle_finder_finds_a_loop():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _private_import_allowed(path: Path, imp: Import) -> bool:
    relative = path.relative_to(SOURCE.parent).as_posix()
    return any(
        fnmatch.fnmatch(relative, files) and fnmatch.fnmatch(imp.target, module) and fnmatch.fnmatch(imp.name, name)
        for files, module, name in PRIVATE_IMPORTS_ALLOWED
    )


def test_no_private_names_imported_across_modules():
    bad = []
    for path in _python_files():
        for imp in _imports_of(path):
            if _is_private(imp.name) and _under(imp.target, "fasttune") and not _private_import_allowed(path, imp):
                bad.append(f"{imp.importer}:{imp.line} imports {imp.name} from {imp.target}")
    assert not bad, "Private names imported across modules (make them public in their module):\n" + "\n".join(bad)
