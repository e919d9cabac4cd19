"""fasttune.integration loads no framework until a script imports its module, and a missing
framework is an ImportError that says what to install."""
import os
import subprocess
import sys

import pytest


def test_import_fasttune_integration_loads_no_framework():
    code = "import sys, fasttune.integration; print(sorted({'xgboost', 'lightgbm'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env=dict(os.environ))
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("framework", ["xgboost", "lightgbm"])
def test_without_the_framework_the_import_says_what_to_install(framework):
    # A None entry in sys.modules makes Python's import of that name fail, as when it is not installed.
    code = (f"import sys; sys.modules[{framework!r}] = None\n"
            f"try:\n    import fasttune.integration.{framework}\nexcept ImportError as exc:\n    print(exc)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env=dict(os.environ))
    assert done.stdout.strip() == (f"fasttune.integration.{framework} needs {framework}: "
                                   f'pip install "fasttune[{framework}]" (or pip install {framework}).')


@pytest.mark.parametrize("module, framework", [("keras", "keras"), ("pytorch_lightning", "lightning")])
def test_the_keras_and_lightning_modules_load_their_framework_on_first_use(module, framework):
    code = (f"import sys, fasttune.integration.{module} as module\n"
            f"print({framework!r} in sys.modules, 'torch' in sys.modules)\n"
            f"module.TuneReportCheckpointCallback\n"
            f"print({framework!r} in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "KERAS_BACKEND": "torch"})
    assert done.stdout.split() == ["False", "False", "True"]


@pytest.mark.parametrize("module, frameworks, extra", [
    ("keras", ["keras"], "keras"), ("pytorch_lightning", ["lightning", "pytorch_lightning"], "lightning")])
def test_without_keras_or_lightning_using_a_class_says_what_to_install(module, frameworks, extra):
    # The module imports; its class is the ImportError.
    code = (f"import sys\nfor name in {frameworks!r}: sys.modules[name] = None\n"
            f"import fasttune.integration.{module} as module\n"
            f"try:\n    module.TuneReportCheckpointCallback\nexcept ImportError as exc:\n    print(exc)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env=dict(os.environ))
    assert done.stdout.strip().startswith(
        f"fasttune.integration.{module}.TuneReportCheckpointCallback needs {extra}: "
        f'pip install "fasttune[{extra}]" (or pip install {extra}).')
