"""create_searcher: searchers by their Ray Tune names."""
import importlib

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
    # (it named "bayesopt", then "bohb", unknown until their searchers came with issue 18)
    with pytest.raises(ValueError, match="Unknown searcher 'no_such_searcher'; valid names: variant_generator, "
                                         "random, optuna, hyperopt, nevergrad, bayesopt, ax, bohb, zoopt, hebo"):
        create_searcher("no_such_searcher")
    with pytest.raises(TypeError, match="searcher name"):
        create_searcher(BasicVariantGenerator)


@pytest.mark.parametrize("name, cls", [
    ("optuna", "OptunaSearch"), ("hyperopt", "HyperOptSearch"), ("nevergrad", "NevergradSearch"),
])
def test_library_searchers_by_name(name, cls):
    library = importlib.import_module(name)  # the test extra installs all three
    kwargs = {"optimizer": library.optimizers.OnePlusOne} if name == "nevergrad" else {}
    assert type(create_searcher(name, metric="loss", mode="min", **kwargs)).__name__ == cls


def test_bayesopt_by_name():
    assert type(create_searcher("bayesopt", metric="loss", mode="min")).__name__ == "BayesOptSearch"


def test_constructor_errors_are_the_searchers_own():
    with pytest.raises(ValueError, match="max_concurrent"):
        create_searcher("random", max_concurrent=-1)


def test_a_missing_optional_package_is_named(monkeypatch):
    from fasttune.search import _registry

    def missing(name):
        raise ModuleNotFoundError("No module named 'optuna'", name="optuna")

    monkeypatch.setattr(_registry.importlib, "import_module", missing)
    with pytest.raises(ImportError, match=r"'optuna' \(OptunaSearch\) needs the 'optuna' package: pip install \"fasttune\[optuna\]\""):
        create_searcher("optuna")
