"""HEBOSearch's tests run in an environment of their own (HEBO 0.3.6 declares numpy<1.25, so pip
cannot install it beside the suite's numpy 2): see test_hebo_search.py for the command.  They use
the suite's fixtures and its no-skip rule, taken from tests/conftest.py."""
import importlib.util
import os
import sys

TESTS = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests"))
sys.path[:0] = [TESTS, os.path.join(TESTS, "search")]

_spec = importlib.util.spec_from_file_location("fasttune_suite_conftest", os.path.join(TESTS, "conftest.py"))
_suite = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_suite)
# Fixtures (ray_session, storage) and hooks (no skips) are found by name in this module.
globals().update({name: value for name, value in vars(_suite).items() if not name.startswith("__")})
