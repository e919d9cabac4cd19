"""``import fasttune`` stays cheap: it loads no Ray and no optional library.

Ray Tune's names (``fasttune.utils``, the searchers, the integrations, the examples) load when
a script imports them, never with the package.  The time itself is measured, not asserted:
``python -X importtime -c "import fasttune"`` (bench/RESULTS.md quotes it)."""
import json
import os
import subprocess
import sys

# Heavy or optional: none of these may load with the package.
NOT_AT_IMPORT = ("ray", "pandas", "pyarrow", "optuna", "hyperopt", "nevergrad", "sklearn", "scipy", "torch",
                 "matplotlib", "rich", "tensorboardX", "IPython", "yaml", "requests", "moto", "pytest", "bayes_opt",
                 "xgboost", "lightgbm")
# fasttune's own modules that load only when a script asks for them.
LAZY = ("fasttune.utils", "fasttune.examples", "fasttune.integration", "fasttune.search.optuna",
        "fasttune.search.hyperopt", "fasttune.search.nevergrad", "fasttune.search.bayesopt", "fasttune.schedulers.pb2", "fasttune.web_server",
        "fasttune.cli")


def _modules_after_import() -> set:
    code = "import sys, json; import fasttune; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env=dict(os.environ))
    return set(json.loads(done.stdout))


def test_import_fasttune_loads_no_ray_and_no_optional_library():
    loaded = _modules_after_import()
    heavy = sorted(name for name in loaded if name.split(".")[0] in NOT_AT_IMPORT)
    assert not heavy, f"import fasttune loaded {heavy}"
    eager = sorted(name for name in loaded if any(name == lazy or name.startswith(lazy + ".") for lazy in LAZY))
    assert not eager, f"import fasttune loaded {eager}, which must wait until a script imports them"
