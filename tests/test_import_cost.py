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


def _modules_after_import(statement: str = "import fasttune") -> set:
    code = f"import sys, json; {statement}; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env=dict(os.environ))
    return set(json.loads(done.stdout))


def test_import_fasttune_loads_no_ray_and_no_optional_library():
    loaded = _modules_after_import()
    heavy = sorted(name for name in loaded if name.split(".")[0] in NOT_AT_IMPORT)
    assert not heavy, f"import fasttune loaded {heavy}"
    eager = sorted(name for name in loaded if any(name == lazy or name.startswith(lazy + ".") for lazy in LAZY))
    assert not eager, f"import fasttune loaded {eager}, which must wait until a script imports them"


# The driver's side: a Ray worker, which imports the worker module only, loads none of it.
DRIVER_ONLY = ("fasttune.tuner", "fasttune.impl", "fasttune.execution.trial_runner",
               "fasttune.execution.ray_trial_executor", "fasttune.execution._snapshots", "fasttune.search",
               "fasttune.schedulers", "fasttune.logger", "fasttune.result_grid", "fasttune.progress_reporter")


def test_a_worker_loads_none_of_the_drivers_modules():
    loaded = _modules_after_import("import fasttune.execution._worker")
    driver = sorted(name for name in loaded if any(name == d or name.startswith(d + ".") for d in DRIVER_ONLY))
    assert not driver, f"the worker module loaded {driver}"


def test_the_package_names_load_on_first_use():
    import fasttune

    public = {name: getattr(fasttune, name) for name in fasttune.__all__}
    assert public["Tuner"].__module__ == "fasttune.tuner"
    assert public["report"].__module__ == "fasttune.trainable.session"
    assert set(fasttune.__all__) <= set(dir(fasttune))
    # Subpackages as attributes, as scripts written for ray.tune use them.
    assert fasttune.schedulers.ASHAScheduler.__name__ == "AsyncHyperBandScheduler"
    assert fasttune.search.BasicVariantGenerator.__name__ == "BasicVariantGenerator"
    from fasttune.execution import TrialRunner

    assert TrialRunner.__module__ == "fasttune.execution.trial_runner"
    for missing in ("no_such_name", "no_such_module"):
        try:
            getattr(fasttune, missing)
        except AttributeError as exc:
            assert missing in str(exc)
        else:
            raise AssertionError(f"fasttune.{missing} did not raise AttributeError")


def test_execution_submodules_are_attributes_and_odd_names_are_missing_attributes():
    import fasttune
    import fasttune.execution as execution

    assert execution.placement_groups.PlacementGroupFactory is execution.PlacementGroupFactory
    assert execution.trial_runner.TrialRunner is execution.TrialRunner
    for odd in ("search.sample", "nope.deeper", ".", "", "__wrapped__"):
        assert getattr(fasttune, odd, "missing") == "missing"
        assert not hasattr(execution, odd)


def test_threads_that_use_names_first_at_once_all_get_them():
    # Each thread's first use imports a module of the same subpackage: with import_module
    # alone, one thread held a child's import lock while waiting for the parent's, which
    # the other held (ImportError or a deadlock error, in most runs).
    code = """
import threading, fasttune
names = ["Trainable", "report", "get_checkpoint", "get_context", "TuneContext", "with_resources",
         "Tuner", "ResultGrid", "ExperimentAnalysis", "uniform", "create_scheduler", "create_searcher"]
barrier, failures = threading.Barrier(len(names)), []
def use(name):
    barrier.wait()
    try:
        getattr(fasttune, name)
    except BaseException as exc:
        failures.append(f"{name}: {exc!r}")
threads = [threading.Thread(target=use, args=(name,)) for name in names]
for thread in threads: thread.start()
for thread in threads: thread.join()
print(failures)
"""
    for _ in range(3):  # each run a fresh interpreter: the first use is what is tested
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              env=dict(os.environ))
        assert done.stdout.strip() == "[]", done.stdout + done.stderr
