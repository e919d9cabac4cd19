"""fasttune has Ray Tune's public surface at the same import paths, with the same parameters and
defaults, except for the reviewed differences in docs/compatibility.md (and that list is exact:
an entry that no longer matches a difference fails too, so the list shrinks as gaps close)."""
from pathlib import Path

import pytest

from ray_surface_testing import (COMPATIBILITY_MD, STATUSES, Difference, compatibility_entries, differences,
                                 public_modules)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def all_differences():
    return list(differences())


@pytest.fixture(scope="module")
def entries():
    return compatibility_entries()


def test_the_walk_covers_the_modules_the_issue_names():
    modules = set(public_modules())
    for name in ("ray.tune", "ray.tune.search", "ray.tune.search.optuna", "ray.tune.schedulers", "ray.tune.stopper",
                 "ray.tune.logger", "ray.tune.callback", "ray.tune.result", "ray.tune.utils",
                 "ray.tune.utils.mock_trainable", "ray.tune.integration.xgboost", "ray.tune.progress_reporter",
                 "ray.tune.experiment", "ray.tune.execution", "ray.tune.trainable", "ray.tune.analysis",
                 "ray.tune.registry", "ray.tune.context", "ray.tune.error", "ray.tune.examples.pbt_function"):
        assert name in modules
    # Examples no other example imports are scripts, not surface.
    assert "ray.tune.examples.tune_basic_example" not in modules


def test_every_difference_is_listed(all_differences, entries):
    unlisted = [d for d in all_differences if d.covered_by(set(entries)) is None]
    assert not unlisted, "differences from Ray Tune not in docs/compatibility.md:\n" + "\n".join(
        f"  {d.key}: {d.what}" for d in unlisted)


def test_every_entry_has_a_status_and_a_reason(entries):
    bad = [e for e in entries.values() if e.status not in STATUSES or not e.reason or e.reason.lower() == "todo"]
    assert not bad, "entries need a status (one of " + ", ".join(STATUSES) + ") and a one-line reason:\n" + "\n".join(
        f"  {e.key}: {e.status} | {e.reason}" for e in bad)


def test_no_entry_is_stale(all_differences, entries):
    matched = {d.covered_by(set(entries)) for d in all_differences}
    stale = sorted(set(entries) - matched)
    assert not stale, "docs/compatibility.md lists differences that are gone (remove the rows):\n" + "\n".join(
        f"  {key}" for key in stale)


def test_the_readme_links_the_list():
    assert "docs/compatibility.md" in (ROOT / "README.md").read_text()


def test_a_module_entry_covers_what_is_inside_it():
    entries = {"ray.tune.utils", "ray.tune.tune.run"}
    assert Difference("ray.tune.utils.mock.X", "").covered_by(entries) == "ray.tune.utils"
    assert Difference("ray.tune.tune.run(local_dir)", "").covered_by(entries) == "ray.tune.tune.run"
    assert Difference("ray.tune.tuner.Tuner", "").covered_by(entries) is None
    assert Difference("ray.tune.utilsx", "").covered_by(entries) is None
