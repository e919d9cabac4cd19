"""create_searcher: searchers by their Ray Tune names."""
import pytest

import fasttune
from fasttune.search import BasicVariantGenerator, create_searcher


def test_variant_generator_and_random_names():
    for name in ("variant_generator", "random", "Random"):
        searcher = create_searcher(name, max_concurrent=2)
        assert isinstance(searcher, BasicVariantGenerator) and searcher.max_concurrent == 2


def test_exported_at_the_top_level():
    assert fasttune.create_searcher is create_searcher
    assert "create_searcher" in fasttune.__all__ and "create_searcher" in fasttune.search.__all__


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="Unknown searcher 'hyperopt'; valid names: variant_generator, random, optuna"):
        create_searcher("hyperopt")
    with pytest.raises(TypeError, match="searcher name"):
        create_searcher(BasicVariantGenerator)


def test_optuna_is_not_available_yet(monkeypatch):
    import importlib.util

    if importlib.util.find_spec("fasttune.search.optuna") is not None:
        pytest.skip("fasttune.search.optuna exists now")
    with pytest.raises(ImportError, match=r"'optuna' \(OptunaSearch\) is not available.*pip install optuna"):
        create_searcher("optuna", metric="loss", mode="min")


def test_constructor_errors_are_the_searchers_own():
    with pytest.raises(ValueError, match="max_concurrent"):
        create_searcher("random", max_concurrent=-1)


def test_a_missing_optional_package_is_named(monkeypatch):
    from fasttune.search import _registry

    def missing(name):
        raise ModuleNotFoundError("No module named 'optuna'", name="optuna")

    monkeypatch.setattr(_registry.importlib, "import_module", missing)
    with pytest.raises(ImportError, match=r"'optuna' \(OptunaSearch\) needs the 'optuna' package: pip install optuna"):
        create_searcher("optuna")
