"""HEBOSearch in the suite's environment, where HEBO may be missing (HEBO 0.3.6 declares numpy<1.25):
importing it costs nothing and a missing HEBO says how to install it.  Its tests with the real
library are tests_hebo/ (they need an environment of their own; the command is there)."""
import json
import os
import subprocess
import sys

import pytest

from fasttune.search import create_searcher, uniform
from fasttune.search.hebo import HEBOSearch
from fasttune.search.hebo.hebo_search import HEBOSearch as HEBOSearchAtRayPath


def test_import_fasttune_loads_neither_hebo_nor_this_searcher():
    code = "import sys, json, fasttune; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env=dict(os.environ))
    loaded = set(json.loads(done.stdout))
    assert "hebo" not in loaded and "fasttune.search.hebo" not in loaded
    assert HEBOSearchAtRayPath is HEBOSearch


def test_a_missing_hebo_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "hebo", None)
    monkeypatch.setitem(sys.modules, "hebo.optimizers.hebo", None)
    with pytest.raises(ImportError, match=r'HEBOSearch needs HEBO: pip install "fasttune\[hebo\]" \(or pip install HEBO\)'):
        HEBOSearch({"x": uniform(0, 1)})
    with pytest.raises(ImportError, match=r'pip install "fasttune\[hebo\]"'):
        create_searcher("hebo", space={"x": uniform(0, 1)})
