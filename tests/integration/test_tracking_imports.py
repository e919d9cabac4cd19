"""The experiment trackers load their library only when a script imports their module, and a
missing library is an ImportError that says what to install."""
import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize("library", ["mlflow", "wandb"])
def test_import_fasttune_loads_no_tracker_and_without_it_the_import_says_what_to_install(library):
    code = (f"import sys, fasttune, fasttune.integration, fasttune.logger; print({library!r} in sys.modules)\n"
            f"sys.modules[{library!r}] = None\n"  # as when it is not installed
            f"try:\n    import fasttune.integration.{library}\nexcept ImportError as exc:\n    print(exc)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=dict(os.environ))
    assert done.stdout.splitlines() == ["False", f"fasttune.integration.{library} needs {library}: "
                                                 f'pip install "fasttune[{library}]" (or pip install {library}).']
