"""Helpers shared by the tests of the experiment-tracking loggers (Aim, Comet)."""
import json
import os
import subprocess
import sys

from fasttune.integration.comet import CometRuns


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


class KeepsCometArtifacts(CometRuns):
    """In a Comet callback's tracking process: appends each artifact, instead of uploading it, to
    the file named by its last argument as a JSON line ``[experiment name, artifact name, type, [[logical path,
    file content]]]`` (the process is another interpreter: a file is how the test reads them)."""

    def __init__(self, *args):
        *comet_runs_args, self.kept_path = args
        super().__init__(*comet_runs_args)

    def _log_artifact(self, experiment, artifact):
        files = []
        for asset in artifact.assets:
            with open(asset.local_path_or_data) as f:
                files.append([asset.logical_path, f.read()])
        with open(self.kept_path, "a") as f:
            f.write(json.dumps([experiment.get_name(), artifact.name, artifact.artifact_type, files]) + "\n")
