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
