"""Helpers shared by the tests of the experiment-tracking loggers (Aim, Comet)."""
import os
import subprocess
import sys


def python_output(code):
    """What ``python -c code`` prints, stripped (a fresh interpreter: nothing imported yet)."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env=dict(os.environ))
    return done.stdout.strip()


def missing_library_message(library, module, callback, arguments=""):
    """What constructing ``callback`` prints when ``library`` cannot be imported."""
    # A None entry in sys.modules makes Python's import of that name fail, as when it is not installed.
    return python_output(f"import sys; sys.modules[{library!r}] = None\n"
                         f"from {module} import {callback}\n"
                         f"try:\n    {callback}({arguments})\nexcept ImportError as exc:\n    print(exc)")


def imports_library(library, *modules):
    """Whether importing ``modules`` imports ``library``."""
    return python_output(f"import sys, {', '.join(modules)}\nprint({library!r} in sys.modules)") == "True"
