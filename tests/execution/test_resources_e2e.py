"""Trial resources on a real (local) Ray: placement groups for the trainable's own
tasks, GPUs per trial, and requests that can never be placed."""
import os

import pytest

import fasttune as tune
from fasttune import PlacementGroupFactory
from fasttune.execution.ray_trial_executor import placement_problem
from fasttune_testing import fit

pytestmark = pytest.mark.usefixtures("ray_session")


def starts_a_child_task(config):
    import ray

    @ray.remote(num_cpus=1)
    def child():
        return ray.get_runtime_context().get_placement_group_id()

    own = ray.get_runtime_context().get_placement_group_id()
    tune.report({"own_group": own or "", "child_group": ray.get(child.remote()) or ""})


def test_extra_bundles_are_reserved_and_capture_the_trainables_tasks(ray_session, storage):
    import ray

    pgf = PlacementGroupFactory([{"CPU": 1}, {"CPU": 1}])
    grid = fit(tune.with_resources(starts_a_child_task, pgf), storage,
               space={"i": tune.grid_search([0, 1, 2])})
    assert grid.num_errors == 0 and len(grid) == 3
    for result in grid:
        assert result.metrics["own_group"], "the worker runs inside a placement group"
        assert result.metrics["child_group"] == result.metrics["own_group"]
    # Every group the sweep made is removed with its worker.
    groups = {r.metrics["own_group"] for r in grid}
    states = {gid: info["state"] for gid, info in ray.util.placement_group_table().items()}
    assert groups and all(states[g] == "REMOVED" for g in groups)


def test_an_empty_head_bundle_still_reserves_the_other_bundles(storage):
    pgf = PlacementGroupFactory([{}, {"CPU": 1}])
    grid = fit(tune.with_resources(starts_a_child_task, pgf), storage)
    assert grid[0].metrics["child_group"] == grid[0].metrics["own_group"] != ""


def reports_gpus(config):
    import ray

    tune.report({"cuda": os.environ.get("CUDA_VISIBLE_DEVICES", "unset"),
                 "gpu_ids": [str(i) for i in ray.get_gpu_ids()], "pid": os.getpid()})


def test_each_gpu_trial_sees_only_its_own_gpu_also_on_reused_workers(storage):
    # The test session has two logical GPUs; four 1-GPU trials share two pooled workers.
    grid = fit(tune.with_resources(reports_gpus, {"cpu": 0, "gpu": 1}), storage,
               space={"i": tune.grid_search([0, 1, 2, 3])})
    assert grid.num_errors == 0
    by_pid = {}
    for result in grid:
        cuda = result.metrics["cuda"]
        assert cuda in ("0", "1") and result.metrics["gpu_ids"] == [cuda]
        by_pid.setdefault(result.metrics["pid"], set()).add(cuda)
    assert len(by_pid) == 2  # both GPUs in use: one worker each
    assert all(len(seen) == 1 for seen in by_pid.values())  # a reused worker keeps its GPU
    gpus = [next(iter(seen)) for seen in by_pid.values()]
    assert len(gpus) == len(set(gpus))  # no two workers share a GPU


@pytest.mark.parametrize("pgf, message", [
    (PlacementGroupFactory([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_SPREAD"), "STRICT_SPREAD needs 2 distinct nodes"),
    (PlacementGroupFactory([{"CPU": 1}, {"GPU": 3}]), "can never start"),
])
def test_a_placement_group_that_can_never_be_placed_is_one_clear_error(storage, pgf, message):
    with pytest.raises(tune.TuneError, match=message):
        fit(tune.with_resources(starts_a_child_task, pgf), storage)


@pytest.mark.parametrize("pgf, nodes, expected", [
    (PlacementGroupFactory([{"CPU": 2}, {"CPU": 2}]), [{"CPU": 2}, {"CPU": 2}], None),
    (PlacementGroupFactory([{"CPU": 3}, {"CPU": 1}]), [{"CPU": 2}, {"CPU": 2}], "no node has room"),
    (PlacementGroupFactory([{"CPU": 2}, {"CPU": 2}], "STRICT_PACK"), [{"CPU": 2}, {"CPU": 2}], "STRICT_PACK"),
    (PlacementGroupFactory([{"CPU": 2}, {"CPU": 2}], "STRICT_PACK"), [{"CPU": 4}], None),
    (PlacementGroupFactory([{"CPU": 1}, {"GPU": 1}], "STRICT_SPREAD"), [{"CPU": 1, "GPU": 1}, {"CPU": 4}], None),
    (PlacementGroupFactory([{"GPU": 1}, {"GPU": 1}], "STRICT_SPREAD"), [{"CPU": 1, "GPU": 2}, {"CPU": 4}], "STRICT_SPREAD"),
    (PlacementGroupFactory([{"CPU": 1}, {"CPU": 1}, {"CPU": 1}], "SPREAD"), [{"CPU": 1}], None),
])
def test_placement_problem_checks_what_totals_cannot(pgf, nodes, expected):
    problem = placement_problem(pgf, nodes)
    if expected is None:
        assert problem is None
    else:
        assert problem is not None and expected in problem


def waits_for_all_to_start(config):
    # A barrier through files: each trial marks its start, then waits (bounded) until
    # every trial of the sweep has started, which happens only if they run side by side.
    import time

    os.mkdir(os.path.join(config["barrier"], str(config["i"])))
    deadline = time.monotonic() + 60
    while len(os.listdir(config["barrier"])) < config["n"] and time.monotonic() < deadline:
        time.sleep(0.01)
    tune.report({"started_together": len(os.listdir(config["barrier"])), "pid": os.getpid()})


def test_as_many_trials_run_at_once_as_the_resources_fit(storage, tmp_path):
    # Four half-CPU trials on two CPUs: four workers at once, none queued behind another.
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    grid = fit(tune.with_resources(waits_for_all_to_start, {"cpu": 0.5}), storage,
               space={"i": tune.grid_search([0, 1, 2, 3]), "n": 4, "barrier": str(barrier)})
    assert grid.num_errors == 0
    assert [r.metrics["started_together"] for r in grid] == [4, 4, 4, 4]
    assert len({r.metrics["pid"] for r in grid}) == 4


def reports_its_resources(config):
    resources = tune.get_context().get_trial_resources()
    tune.report({"totals": dict(resources), "bundles": resources.bundles, "head_cpus": resources.head_cpus})


class ReportsItsResources(tune.Trainable):
    def step(self):
        return {"bundles": self.trial_resources.bundles, "done": True}


def test_a_trial_sees_its_bundles_as_ray_tune_shows_them(storage):
    pgf = PlacementGroupFactory([{"CPU": 1}, {"CPU": 1}])
    [result] = fit(tune.with_resources(reports_its_resources, pgf), storage, name="function")
    assert result.metrics["totals"] == {"CPU": 2.0}
    assert result.metrics["bundles"] == [{"CPU": 1.0}, {"CPU": 1.0}] and result.metrics["head_cpus"] == 1.0
    [result] = fit(tune.with_resources(ReportsItsResources, pgf), storage, name="class")
    assert result.metrics["bundles"] == [{"CPU": 1.0}, {"CPU": 1.0}]
