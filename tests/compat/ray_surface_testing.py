"""Ray Tune's public surface, walked from the installed ``ray.tune``, and compared with fasttune's.

A *public module* is any module under ``ray.tune`` whose dotted path has no part starting with an
underscore (test packages aside).  A module's *public names* are its ``__all__`` where it has one,
otherwise the names it defines itself (imports do not count: ``ray.tune.schedulers.pbt`` does not
export the ``DEFAULT_METRIC`` it imports).  For each public callable present on both sides the
parameters must match: Ray Tune's positional parameters are a prefix of fasttune's, in order; every
keyword Ray Tune accepts, fasttune accepts, with an equal default (parameters with a leading underscore
are Ray Tune's private plumbing and a bare ``object()`` default is a "not given" sentinel that any default
matches).  Public classes are compared
member by member (methods and properties Ray Tune's class defines itself).

Every difference has a *key*, the string that names it in ``docs/compatibility.md``:

* ``ray.tune.x`` for a missing module, ``ray.tune.x.Name`` for a missing name (keyed by the path a
  script imports from), ``ray.tune.x.Class.member`` for a missing class member;
* ``ray.tune.x.func(param)`` for a parameter that is missing, in another place or with another
  default (keyed by where the callable is defined, so a re-export is reported once).

An entry for a module or a class also covers everything inside it.
"""
import ast
import enum
import importlib
import inspect
import pkgutil
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set

RAY = "ray.tune"
FASTTUNE = "fasttune"


@dataclass(frozen=True)
class Difference:
    key: str
    what: str  # a sentence for the failure message

    def covered_by(self, entries: Set[str]) -> Optional[str]:
        """The entry that covers this difference: its own key, or a module or class above it."""
        key = self.key.split("(", 1)[0]
        parts = key.split(".")
        if self.key in entries:
            return self.key
        for end in range(len(parts), 1, -1):
            prefix = ".".join(parts[:end])
            if prefix in entries and prefix != self.key:
                return prefix
        return None


EXAMPLES = RAY + ".examples"
_EXAMPLE_IMPORT = re.compile(r"^\s*from\s+(ray\.tune\.examples\.[\w.]+)\s+import", re.MULTILINE)


def _ray_tune_root() -> Path:
    return Path(importlib.util.find_spec(RAY).origin).parent


def examples_imported_by_examples() -> Set[str]:
    """The example modules that other example scripts import: the only examples that are surface."""
    imported: Set[str] = set()
    for script in (_ray_tune_root() / "examples").rglob("*.py"):
        imported.update(_EXAMPLE_IMPORT.findall(script.read_text()))
    return imported


def public_modules() -> List[str]:
    """Every public module under ray.tune, sorted, found on disk (listing them imports nothing).

    Examples count only where another example imports them (``pb2_example`` imports
    ``pbt_function``); the rest are scripts, not a surface.
    """
    examples = examples_imported_by_examples()
    names = [RAY]
    for info in pkgutil.iter_modules([str(_ray_tune_root())], RAY + "."):
        names.append(info.name)
    for info in pkgutil.walk_packages([str(_ray_tune_root())], RAY + ".", onerror=lambda name: None):
        names.append(info.name)
    public = []
    for name in sorted(set(names)):
        parts = name.split(".")
        if any(part.startswith("_") for part in parts) or "tests" in parts:
            continue
        if name.startswith(EXAMPLES + ".") and not any(e == name or e.startswith(name + ".") for e in examples):
            continue
        public.append(name)
    return public


def fasttune_path(ray_path: str) -> str:
    return FASTTUNE + ray_path[len(RAY):]


def import_quietly(name: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module(name)


def _names_defined_in(module) -> List[str]:
    """Names a module binds itself at top level: def, class, assignment (not imports)."""
    try:
        tree = ast.parse(inspect.getsource(module))
    except (OSError, TypeError):
        return []
    names: List[str] = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names.extend(target.id for target in node.targets if isinstance(target, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    return [name for name in dict.fromkeys(names) if not name.startswith("_") and name != "logger"
            and name != "TYPE_CHECKING" and hasattr(module, name)]


def public_names(module) -> List[str]:
    exported = getattr(module, "__all__", None)
    if exported is not None:
        return [name for name in exported if hasattr(module, name)]
    return _names_defined_in(module)


def _home(obj) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


def _same_default(ray_default, ours) -> bool:
    if ray_default is inspect.Parameter.empty or ours is inspect.Parameter.empty:
        return ray_default is ours
    if type(ray_default) is object:  # a "not given" sentinel: any default keeps the parameter optional
        return True
    if isinstance(ray_default, enum.Enum) or isinstance(ours, enum.Enum):
        return getattr(ray_default, "value", ray_default) == getattr(ours, "value", ours)
    if inspect.isclass(ray_default) or inspect.isroutine(ray_default):
        return getattr(ray_default, "__name__", None) == getattr(ours, "__name__", None)
    try:
        return bool(ray_default == ours) and type(ray_default) is type(ours)
    except Exception:
        return repr(ray_default) == repr(ours)


def _signature(obj) -> Optional[inspect.Signature]:
    try:
        return inspect.signature(obj)
    except (TypeError, ValueError):
        return None


POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def parameter_differences(where: str, ray_obj, ours) -> Iterator[Difference]:
    """Parameters of Ray Tune's callable that fasttune's does not accept in the same way."""
    ray_sig, our_sig = _signature(ray_obj), _signature(ours)
    if ray_sig is None or our_sig is None:
        return
    # A parameter with a leading underscore is Ray Tune's private plumbing, not surface.
    ray_params = [p for p in ray_sig.parameters.values() if p.name not in ("self", "cls") and not p.name.startswith("_")]
    our_params = {p.name: p for p in our_sig.parameters.values() if p.name not in ("self", "cls")}
    our_positional = [p.name for p in our_sig.parameters.values()
                      if p.kind in POSITIONAL and p.name not in ("self", "cls")]
    ray_positional = [p.name for p in ray_params if p.kind in POSITIONAL]
    for index, param in enumerate(ray_params):
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            kinds = {p.kind for p in our_sig.parameters.values()}
            if param.kind not in kinds:
                yield Difference(f"{where}({param.name})", f"{where} takes no {param}")
            continue
        mine = our_params.get(param.name)
        if mine is None:
            yield Difference(f"{where}({param.name})", f"{where} has no parameter {param.name!r}")
            continue
        if param.kind in POSITIONAL:
            position = ray_positional.index(param.name)
            if position >= len(our_positional) or our_positional[position] != param.name:
                yield Difference(f"{where}({param.name})",
                                 f"{where}: {param.name!r} is not positional parameter {position + 1}")
                continue
        if mine.kind == inspect.Parameter.POSITIONAL_ONLY and param.kind != inspect.Parameter.POSITIONAL_ONLY:
            yield Difference(f"{where}({param.name})", f"{where}: {param.name!r} is positional-only")
            continue
        if not _same_default(param.default, mine.default):
            yield Difference(f"{where}({param.name})",
                             f"{where}: {param.name!r} defaults to {mine.default!r}, Ray Tune's to "
                             f"{param.default!r}")
    # A parameter fasttune requires that Ray Tune does not have breaks Ray Tune's calls.
    ray_names = {p.name for p in ray_params}
    for name, mine in our_params.items():
        if (name not in ray_names and mine.default is inspect.Parameter.empty
                and mine.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)):
            yield Difference(f"{where}({name})", f"{where} requires {name!r}, which Ray Tune does not have")


def _own_members(cls) -> Dict[str, object]:
    """Public members a Ray Tune class defines itself (inherited from Ray Tune bases count too)."""
    members = {}
    for klass in reversed(cls.__mro__):
        if klass is object or not klass.__module__.startswith("ray."):
            continue
        for name, value in vars(klass).items():
            if not name.startswith("_") or name == "__init__":
                members[name] = value
    return members


def class_differences(path: str, ray_cls, our_cls, seen: Set[str]) -> Iterator[Difference]:
    home = _home(ray_cls)
    if home in seen:
        return
    seen.add(home)
    if not inspect.isclass(our_cls):
        yield Difference(home, f"{path} is a class in Ray Tune, not in fasttune")
        return
    for name, value in sorted(_own_members(ray_cls).items()):
        member = f"{home}.{name}"
        if not hasattr(our_cls, name):
            yield Difference(member, f"{path} has no member {name!r}")
            continue
        ours = inspect.getattr_static(our_cls, name)
        func = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
        our_func = ours.__func__ if isinstance(ours, (staticmethod, classmethod)) else ours
        if inspect.isfunction(func) and callable(our_func) and not isinstance(our_func, property):
            yield from parameter_differences(member, func, our_func)


def differences() -> Iterator[Difference]:
    seen: Set[str] = set()
    for ray_path in public_modules():
        try:
            ray_module = import_quietly(ray_path)
        except Exception as exc:  # a module needing a library this machine lacks: compare names from its source
            ray_module = None
            import_error = exc
        try:
            our_module = import_quietly(fasttune_path(ray_path))
        except ModuleNotFoundError:
            yield Difference(ray_path, f"fasttune has no module {fasttune_path(ray_path)}")
            continue
        if ray_module is None:
            yield Difference(ray_path, f"{ray_path} does not import here ({import_error!r}), so it cannot be "
                                       f"compared; list it")
            continue
        for name in public_names(ray_module):
            key = f"{ray_path}.{name}"
            if not hasattr(our_module, name):
                yield Difference(key, f"{fasttune_path(ray_path)} has no {name!r}")
                continue
            ray_obj, ours = getattr(ray_module, name), getattr(our_module, name)
            if inspect.isclass(ray_obj):
                yield from class_differences(key, ray_obj, ours, seen)
            elif inspect.isfunction(ray_obj):
                home = _home(ray_obj)
                if home not in seen:
                    seen.add(home)
                    yield from parameter_differences(home, ray_obj, ours)


STATUSES = ("not yet", "differs", "omitted", "internal")


COMPATIBILITY_MD = Path(__file__).resolve().parents[2] / "docs" / "compatibility.md"


@dataclass(frozen=True)
class Entry:
    key: str
    status: str
    reason: str


_ROW = re.compile(r"^\|\s*`(?P<key>ray\.tune[^`]*)`\s*\|\s*(?P<status>[^|]+?)\s*\|\s*(?P<reason>.*?)\s*\|\s*$")


def compatibility_entries(path: Path = COMPATIBILITY_MD) -> Dict[str, Entry]:
    """``docs/compatibility.md``'s table rows that name a Ray Tune key, by key."""
    entries: Dict[str, Entry] = {}
    for line in path.read_text().splitlines():
        match = _ROW.match(line)
        if match:
            if match["key"] in entries:
                raise ValueError(f"{path}: {match['key']} is listed twice")
            entries[match["key"]] = Entry(match["key"], match["status"], match["reason"])
    return entries


def main(argv: List[str]) -> None:
    """``python tests/compat/ray_surface_testing.py [PREFIX]``: the differences not yet listed, and
    the listed entries that no longer match a difference, under PREFIX."""
    prefix = argv[1] if len(argv) > 1 else RAY
    entries = compatibility_entries()
    matched: Set[str] = set()
    for difference in differences():
        entry = difference.covered_by(set(entries))
        if entry is not None:
            matched.add(entry)
            if entries[entry].status == "todo" and difference.key.startswith(prefix):
                print(f"todo      {difference.key}  ({difference.what})")
        elif difference.key.startswith(prefix):
            print(f"unlisted  {difference.key}  ({difference.what})")
    for key in sorted(set(entries) - matched):
        if key.startswith(prefix):
            print(f"stale     {key}  (no difference left: remove the row)")


if __name__ == "__main__":
    import sys

    main(sys.argv)
