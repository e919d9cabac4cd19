import json
import sys
import types

import pytest

from fasttune._optional import import_optional, missing_dependency, pip_install_hint


def test_returns_the_module():
    assert import_optional("json", "none", "A test") is json


def test_a_dotted_name_returns_the_submodule():
    import xml.dom

    assert import_optional("xml.dom", "none", "A test") is xml.dom


def test_a_module_already_in_sys_modules_is_taken_as_it_is(monkeypatch):
    fake = types.ModuleType("not_a_package.sub")
    monkeypatch.setitem(sys.modules, "not_a_package.sub", fake)
    assert import_optional("not_a_package.sub", "none", "A test") is fake


def test_a_missing_module_names_the_purpose_the_package_and_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # makes `import optuna` raise ImportError
    with pytest.raises(ImportError) as info:
        import_optional("optuna", "optuna", "OptunaSearch")
    assert str(info.value) == 'OptunaSearch needs optuna: pip install "fasttune[optuna]" (or pip install optuna).'
    assert isinstance(info.value.__cause__, ImportError)  # chained to the original


def test_the_package_is_the_top_level_module_unless_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "IPython.display", None)
    with pytest.raises(ImportError, match=r"needs IPython: .* \(or pip install IPython\)\.$"):
        import_optional("IPython.display", "jupyter", "X")
    with pytest.raises(ImportError, match=r"needs ipython: .* \(or pip install ipython\)\. Or not\.$"):
        import_optional("IPython.display", "jupyter", "X", package="ipython", advice="Or not.")


def test_missing_dependency_and_hint():
    error = missing_dependency("Plotting", "matplotlib", "plot")
    assert isinstance(error, ImportError)
    assert str(error) == 'Plotting needs matplotlib: pip install "fasttune[plot]" (or pip install matplotlib).'
    assert pip_install_hint("optuna") == 'pip install "fasttune[optuna]"'


def test_a_sweep_needs_only_ray_msgpack_and_numpy_installed():
    """Cython builds the core and pytest-benchmark serves the test and bench extras: the
    installed package asks for neither at run time."""
    import re
    from importlib.metadata import requires

    runtime = sorted(re.split(r"[<>=!~ ;\[]", requirement, maxsplit=1)[0].lower()
                     for requirement in requires("fasttune") if "extra ==" not in requirement)
    assert runtime == ["msgpack", "numpy", "ray"]
