"""ResourceChangingScheduler: DistributeResources' arithmetic (worked examples, and the
same answers as Ray Tune's own implementation driven by hand), the wrapper's decisions
and decision points, and sweeps on Ray where trials change resources through the pooled
workers, carrying their checkpoints across the change."""
import os
import random
from types import SimpleNamespace

import pytest
from ray.tune.execution.placement_groups import PlacementGroupFactory as RayPlacementGroupFactory
from ray.tune.schedulers import resource_changing_scheduler as ray_rcs

import fasttune as tune
from fasttune import PlacementGroupFactory
from fasttune.error import TuneError
from fasttune.experiment.trial import Trial
from fasttune.schedulers import (ASHAScheduler, DecisionPoints, FIFOScheduler, HyperBandScheduler,
                                 ResourceChangingScheduler,
                                 TrialScheduler, create_scheduler)
from fasttune.schedulers.resource_changing_scheduler import DistributeResources, DistributeResourcesToTopJob
from fasttune_testing import fit, lines, report_with_step_checkpoint, restored_step


class Cluster:
    """The two members of the runner's view the allocation functions read: the cluster's
    total resources and the live trials."""

    def __init__(self, total, trials):
        self.total, self.trials = total, trials

    def cluster_resources(self):
        return dict(self.total)

    def get_live_trials(self):
        return list(self.trials)


def make_trials(held, metrics=None):
    trials = []
    for i, bundles in enumerate(held):
        trial = Trial("f", trial_id=f"t{i}", placement_group_factory=PlacementGroupFactory(bundles))
        trial.last_result = {} if metrics is None or metrics[i] is None else {"m": metrics[i]}
        trials.append(trial)
    return trials


def allocate(function, total, base, held, which=0, metrics=None, iteration=1):
    """``function``'s answer for trial ``which`` of trials holding ``held``, all started with ``base``."""
    trials = make_trials(held, metrics)
    scheduler = ResourceChangingScheduler(resources_allocation_function=function)
    scheduler.on_trial_add(None, Trial("f", placement_group_factory=PlacementGroupFactory(base)))
    answer = function(Cluster(total, trials), trials[which], {"training_iteration": iteration}, scheduler)
    return None if answer is None else answer.bundles


# ---- DistributeResources, worked examples ------------------------------------------------------
def test_cpus_are_shared_evenly_between_the_live_trials():
    spread = DistributeResources()
    # 8 CPUs, two trials of 1: each may hold 4, and 6 are free.
    assert allocate(spread, {"CPU": 8}, [{"CPU": 1}], [[{"CPU": 1}], [{"CPU": 1}]]) == [{"CPU": 4.0}]
    # The first grew to 4: the second takes the 3 left.
    assert allocate(spread, {"CPU": 8}, [{"CPU": 1}], [[{"CPU": 4}], [{"CPU": 1}]], which=1) == [{"CPU": 4.0}]
    # An odd remainder: 7 CPUs, 3 trials -> shares of 3, 2, 2 (the cap is the first's share).
    assert allocate(spread, {"CPU": 7}, [{"CPU": 1}], [[{"CPU": 1}]] * 3) == [{"CPU": 3.0}]
    # Before its first iteration a trial is left as it is.
    assert allocate(spread, {"CPU": 8}, [{"CPU": 1}], [[{"CPU": 1}]], iteration=0) is None


def test_a_trial_gives_back_what_a_new_trial_needs_but_never_drops_below_its_base():
    spread = DistributeResources()
    # 4 CPUs: it held 3, a third trial came: 1 CPU is missing, so it gives one back.
    assert allocate(spread, {"CPU": 4}, [{"CPU": 1}], [[{"CPU": 3}], [{"CPU": 1}], [{"CPU": 1}]]) == [{"CPU": 2.0}]
    # Far more trials than CPUs: it keeps its base CPU.
    assert allocate(spread, {"CPU": 2}, [{"CPU": 1}], [[{"CPU": 1}]] * 5) == [{"CPU": 1.0}]


def test_increase_by_units_limits_and_reserved_resources():
    # Units of 2 CPUs, at most one of them.
    once = DistributeResources(increase_by={"CPU": 2}, increase_by_times=1)
    assert allocate(once, {"CPU": 16}, [{"CPU": 1}], [[{"CPU": 1}]]) == [{"CPU": 3.0}]
    # 2 of 8 CPUs reserved: two trials share 6.
    reserved = DistributeResources(reserve_resources={"CPU": 2})
    assert allocate(reserved, {"CPU": 8}, [{"CPU": 1}], [[{"CPU": 1}], [{"CPU": 1}]]) == [{"CPU": 3.0}]
    # A trial with GPUs grows by GPUs: 4 GPUs, two trials of 1 -> 2 each.
    gpus = DistributeResources()
    assert allocate(gpus, {"CPU": 4, "GPU": 4}, [{"CPU": 1, "GPU": 1}],
                    [[{"CPU": 1, "GPU": 1}]] * 2) == [{"CPU": 1.0, "GPU": 2.0}]


def test_add_bundles_grows_a_trial_by_copies_of_its_last_bundle():
    spread = DistributeResources(add_bundles=True)
    assert allocate(spread, {"CPU": 8}, [{"CPU": 1}], [[{"CPU": 1}], [{"CPU": 1}]]) == [{"CPU": 1.0}] * 4
    # An empty head bundle (the trial's own worker asks for nothing) stays first.
    assert allocate(spread, {"CPU": 4}, [{}, {"CPU": 1}], [[{}, {"CPU": 1}]]) == [{}] + [{"CPU": 1.0}] * 4
    with pytest.raises(ValueError, match="add_bundles=True"):
        allocate(DistributeResources(), {"CPU": 8}, [{"CPU": 1}, {"CPU": 1}], [[{"CPU": 1}, {"CPU": 1}]])


def test_top_job_gives_what_is_free_to_the_best_trial_only():
    top = DistributeResourcesToTopJob(metric="m", mode="max")
    held = [[{"CPU": 1}]] * 3
    metrics = [0.2, 0.9, 0.5]
    assert allocate(top, {"CPU": 8}, [{"CPU": 1}], held, which=1, metrics=metrics) == [{"CPU": 6.0}]
    assert allocate(top, {"CPU": 8}, [{"CPU": 1}], held, which=0, metrics=metrics) == [{"CPU": 1.0}]
    minimizing = DistributeResourcesToTopJob(metric="m", mode="min")
    assert allocate(minimizing, {"CPU": 8}, [{"CPU": 1}], held, which=0, metrics=metrics) == [{"CPU": 6.0}]
    with pytest.raises(ValueError, match="needs a metric"):
        allocate(DistributeResourcesToTopJob(mode="max"), {"CPU": 8}, [{"CPU": 1}], held, metrics=metrics)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="increase_by"):
        DistributeResources(increase_by={"CPU": -1})
    with pytest.raises(TypeError, match="callable"):
        ResourceChangingScheduler(resources_allocation_function=3)


def _ray_answer(name, kwargs, total, base, held, metrics, which, mode):
    """Ray Tune's own allocation function's answer, driven by hand with the same inputs."""
    trials = [SimpleNamespace(trial_id=f"t{i}", placement_group_factory=RayPlacementGroupFactory(b),
                              last_result={} if m is None else {"m": m}) for i, (b, m) in enumerate(zip(held, metrics))]
    controller = SimpleNamespace(
        _resource_updater=SimpleNamespace(get_num_cpus=lambda: total["CPU"], get_num_gpus=lambda: total["GPU"]),
        get_live_trials=lambda: trials)
    function = getattr(ray_rcs, name)(**kwargs)
    if name.endswith("TopJob"):
        function.metric, function.mode = "m", mode
    scheduler = SimpleNamespace(base_trial_resources=RayPlacementGroupFactory(base))
    return [dict(b) for b in function(controller, trials[which], {"training_iteration": 1}, scheduler).bundles]


def test_the_same_answers_as_ray_tunes_allocation_functions():
    rng = random.Random(0)
    for _ in range(400):
        name = rng.choice(["DistributeResources", "DistributeResourcesToTopJob"])
        add, gpu = rng.random() < 0.5, rng.random() < 0.4
        base = [{"CPU": 1, "GPU": 1}] if gpu else [{"CPU": rng.choice([1, 2])}]
        if add and rng.random() < 0.3:
            base = base + [{"CPU": 1}]
        kwargs = {"add_bundles": add}
        if rng.random() < 0.5:
            kwargs["increase_by"] = rng.choice([{"CPU": 1}, {"CPU": 2}, {"GPU": 1}, {"CPU": 1, "GPU": 1}])
        if rng.random() < 0.5:
            kwargs["increase_by_times"] = rng.choice([1, 2, 3])
        if rng.random() < 0.3:
            kwargs["reserve_resources"] = {"CPU": 1}
        total = {"CPU": rng.choice([2, 4, 8, 16]), "GPU": rng.choice([0, 2, 4])}
        unit = kwargs.get("increase_by") or ({"GPU": 1} if gpu else {"CPU": 1})
        held = []
        for _ in range(rng.randint(1, 4)):
            extra = rng.randint(0, 3)
            if add:
                held.append(base + [base[-1]] * extra)
            else:
                held.append([{k: base[0].get(k, 0) + unit.get(k, 0) * extra for k in set(base[0]) | set(unit)}])
        metrics = [rng.choice([None, 0.5, 1.0, 2.0, 3.0]) for _ in held]
        which, mode = rng.randrange(len(held)), rng.choice(["min", "max"])
        function = (DistributeResourcesToTopJob(metric="m", mode=mode, **kwargs) if name.endswith("TopJob")
                    else DistributeResources(**kwargs))
        case = (name, kwargs, total, base, held, metrics, which)
        assert allocate(function, total, base, held, which, metrics) == \
            _ray_answer(name, kwargs, total, base, held, metrics, which, mode), case


# ---- the wrapper ----------------------------------------------------------------------------------
class Fixed:
    """An allocation function that answers the same resources every time, at given points."""

    def __init__(self, answer, points=None):
        self.answer, self.points, self.calls = answer, points, 0

    def __call__(self, tune_controller, trial, result, scheduler):
        self.calls += 1
        return self.answer

    def decision_points(self, trial):
        return self.points


def test_a_change_pauses_the_trial_and_applies_when_it_no_longer_runs():
    scheduler = ResourceChangingScheduler(resources_allocation_function=Fixed({"cpu": 2}))
    trial = Trial("f", placement_group_factory=PlacementGroupFactory([{"CPU": 1}]))
    controller = SimpleNamespace(get_trial=lambda trial_id: trial, is_trial_held=lambda t: False,
                                 first_trial_with_status=lambda status: trial if trial.status == status else None)
    scheduler.on_trial_add(controller, trial)
    trial.set_status(Trial.RUNNING)
    assert scheduler.on_trial_result(controller, trial, {"training_iteration": 1}) == TrialScheduler.PAUSE
    assert scheduler.choose_trial_to_run(controller) is None  # still running: it keeps its resources
    assert trial.resources == {"CPU": 1.0}
    trial.set_status(Trial.PAUSED)
    assert scheduler.choose_trial_to_run(controller) is trial
    assert trial.placement_group_factory == PlacementGroupFactory([{"CPU": 2}])
    # Now it holds them: the same answer changes nothing.
    trial.set_status(Trial.RUNNING)
    assert scheduler.on_trial_result(controller, trial, {"training_iteration": 2}) == TrialScheduler.CONTINUE
    # A trial added later with other resources than the first is an error, unless reallocated.
    with pytest.raises(RuntimeError, match="same resources"):
        scheduler.on_trial_add(controller, Trial("f", placement_group_factory=PlacementGroupFactory([{"CPU": 3}])))
    scheduler.on_trial_add(controller, trial)


def test_an_allocation_function_with_decision_points_is_asked_only_there():
    fixed = Fixed({"cpu": 2}, DecisionPoints.at([2]))
    scheduler = ResourceChangingScheduler(resources_allocation_function=fixed)
    trial = Trial("f")
    scheduler.on_trial_add(None, trial)
    decisions = [scheduler.on_trial_result(None, trial, {"training_iteration": i}) for i in (1, 2, 3)]
    assert decisions == [TrialScheduler.CONTINUE, TrialScheduler.PAUSE, TrialScheduler.CONTINUE]
    assert fixed.calls == 1


def test_decision_points_are_the_base_schedulers_and_the_allocation_functions():
    trial = Trial("f")
    asha = ASHAScheduler(metric="m", mode="max", max_t=9, grace_period=1, reduction_factor=3)
    rungs = asha.decision_points(trial)
    with pytest.warns(UserWarning, match="never change"):
        unchanging = ResourceChangingScheduler(asha, None)
    assert unchanging.decision_points(trial) == rungs
    assert ResourceChangingScheduler(asha).decision_points(trial) == DecisionPoints.every_result()
    assert ResourceChangingScheduler(asha, Fixed(None, DecisionPoints.at([2, 4]))).decision_points(trial) == \
        DecisionPoints.at(sorted(set(rungs.to_wire()[1]) | {2, 4}))
    assert ResourceChangingScheduler(FIFOScheduler(), Fixed(None, DecisionPoints.at([5]))).decision_points(trial) == \
        DecisionPoints.at([5])
    # A plain function (or one whose decision_points names none) asks for every result, as Ray Tune calls it.
    assert ResourceChangingScheduler(FIFOScheduler(), Fixed(None)).decision_points(trial) == \
        DecisionPoints.every_result()
    assert ResourceChangingScheduler(FIFOScheduler(), lambda *a: None).decision_points(trial) == \
        DecisionPoints.every_result()


def test_a_wrapped_pbt_yields_its_worker_only_where_its_own_points_are_all_the_points():
    """PBT may pause a trial for a waiting one at its decision points; wrapped, only when the
    union adds no point of the allocation function's (else every such point would yield)."""
    from fasttune.schedulers import PopulationBasedTraining

    def pbt():
        return PopulationBasedTraining(time_attr="time_total_s", metric="m", mode="max", perturbation_interval=5,
                                       hyperparam_mutations={"lr": [1, 2]})

    trial = Trial("f")
    assert pbt().pauses_for_waiting_trials(trial)
    with pytest.warns(UserWarning, match="never change"):
        unchanging = ResourceChangingScheduler(pbt(), None)
    assert unchanging.pauses_for_waiting_trials(trial)
    assert not ResourceChangingScheduler(pbt()).pauses_for_waiting_trials(trial)  # every result is a point


def test_create_scheduler_and_the_base_schedulers_metric():
    scheduler = create_scheduler("resource_changing", base_scheduler=ASHAScheduler(metric="m", mode="min"))
    assert isinstance(scheduler, ResourceChangingScheduler)
    assert (scheduler.metric, scheduler.mode) == ("m", "min")
    assert scheduler.debug_string().startswith("(ResourceChangingScheduler) ")


def test_its_state_survives_save_and_restore(tmp_path):
    scheduler = ResourceChangingScheduler(resources_allocation_function=DistributeResources(increase_by_times=2))
    trial = Trial("f", placement_group_factory=PlacementGroupFactory([{"CPU": 2}]))
    scheduler.on_trial_add(None, trial)
    scheduler._trials_to_reallocate[trial.trial_id] = PlacementGroupFactory([{"CPU": 4}])
    scheduler.save(str(tmp_path / "s.pkl"))
    restored = ResourceChangingScheduler()
    restored.restore(str(tmp_path / "s.pkl"))
    assert restored.base_trial_resources == PlacementGroupFactory([{"CPU": 2}])
    assert restored._resources_allocation_function.increase_by_times == 2
    assert restored._trials_to_reallocate == {trial.trial_id: PlacementGroupFactory([{"CPU": 4}])}
    # A lambda allocation function saves too.
    with_lambda = ResourceChangingScheduler(resources_allocation_function=lambda *args: {"cpu": 2})
    with_lambda.save(str(tmp_path / "l.pkl"))
    restored.restore(str(tmp_path / "l.pkl"))
    assert restored._resources_allocation_function(None, None, None, None) == {"cpu": 2}


# ---- sweeps on Ray (the session has 2 CPUs and 2 GPUs) ------------------------------------------
def counting_trainable(config):
    """Counts on from its checkpoint, reporting the resources it holds at each step."""
    step = restored_step()
    while step < config["steps"]:
        step += 1
        # Read as a script written for Ray Tune reads it (there: a PlacementGroupFactory).
        cpus = tune.get_context().get_trial_resources().required_resources.get("CPU")
        report_with_step_checkpoint({"step": step, "cpus": cpus, "score": config.get("q", 0) * step}, step)


@pytest.mark.usefixtures("ray_session")
@pytest.mark.parametrize("reuse_actors", [True, False], ids=["pooled", "not-reused"])
def test_a_function_trial_grows_to_the_free_cpus_and_carries_its_checkpoint(storage, reuse_actors):
    scheduler = ResourceChangingScheduler()
    grid = fit(counting_trainable, storage, {"steps": 4}, name=f"grow-{reuse_actors}",
               tune_config=tune.TuneConfig(scheduler=scheduler, reuse_actors=reuse_actors))
    assert grid.num_errors == 0
    rows = lines(os.path.join(grid[0].path, "result.json"))
    # 1 CPU for its first step, paused there and resumed on a 2-CPU worker: the counter goes on.
    assert [(row["step"], row["cpus"]) for row in rows] == [(1, 1.0), (2, 2.0), (3, 2.0), (4, 2.0)]
    assert [row["training_iteration"] for row in rows] == [1, 2, 3, 4]
    # The experiment's snapshot holds the new resources (a restore runs the trial with them).
    restored = tune.ExperimentAnalysis(os.path.dirname(grid[0].path)).trials
    assert [t.placement_group_factory for t in restored] == [PlacementGroupFactory([{"CPU": 2}])]


class CountingClass(tune.Trainable):
    def setup(self, config):
        self.count = 0

    def step(self):
        self.count += 1
        return {"count": self.count, "cpus": self.trial_resources.required_resources["CPU"],
                "done": self.count >= 3}

    def save_checkpoint(self, checkpoint_dir):
        return {"count": self.count}

    def load_checkpoint(self, checkpoint):
        self.count = checkpoint["count"]


@pytest.mark.usefixtures("ray_session")
def test_a_class_trial_sees_its_new_resources_after_the_change(storage):
    scheduler = ResourceChangingScheduler()
    grid = fit(CountingClass, storage, name="class", tune_config=tune.TuneConfig(scheduler=scheduler))
    assert grid.num_errors == 0
    rows = lines(os.path.join(grid[0].path, "result.json"))
    assert [(row["count"], row["cpus"]) for row in rows] == [(1, 1.0), (2, 2.0), (3, 2.0)]


@pytest.mark.usefixtures("ray_session")
def test_the_wrapped_ashas_stops_still_apply(storage):
    asha = ASHAScheduler(max_t=4, grace_period=1, reduction_factor=2)
    scheduler = ResourceChangingScheduler(asha)
    # One trial at a time (so every decision is fixed): the better one first.
    grid = fit(counting_trainable, storage, {"steps": 4, "q": tune.grid_search([1.0, 0.1])}, name="asha",
               tune_config=tune.TuneConfig(scheduler=scheduler, metric="score", mode="max", max_concurrent_trials=1))
    assert grid.num_errors == 0
    seen = {r.config["q"]: [(row["step"], row["cpus"]) for row in lines(os.path.join(r.path, "result.json"))]
            for r in grid}
    assert seen[1.0] == [(1, 1.0), (2, 2.0), (3, 2.0), (4, 2.0)]
    # Worse than the first at ASHA's first rung: stopped there, so never resized.
    assert seen[0.1] == [(1, 1.0)]
    assert asha.num_stopped == 2


@pytest.mark.usefixtures("ray_session")
def test_new_resources_the_cluster_cannot_hold_are_an_error_naming_them(storage):
    scheduler = ResourceChangingScheduler(resources_allocation_function=Fixed({"cpu": 3}))
    with pytest.raises(TuneError, match=r"requests \{'CPU': 3.0\}.*can never start"):
        fit(counting_trainable, storage, {"steps": 3}, name="too-big", tune_config=tune.TuneConfig(scheduler=scheduler))


def test_around_hyperband_the_wrapper_resumes_the_trials_it_paused(tmp_path):
    """HyperBand resumes only the trials it kept at a halving: a trial this wrapper paused to
    resize (HyperBand had said CONTINUE) is resumed by the wrapper, so the sweep ends with
    HyperBand's own decisions.  Run in simulated time (no Ray): the same seeded sweep with
    and without the wrapper."""
    from fasttune.search import BasicVariantGenerator
    from fasttune.simulation import Simulation, branin_blackbox

    blackbox = branin_blackbox(27)
    resized = []

    def two_cpus_from_iteration_3(tune_controller, trial, result, scheduler):
        if result["training_iteration"] >= 3 and trial.placement_group_factory.required_resources != {"CPU": 2.0}:
            resized.append(trial.trial_id)
            return {"CPU": 2}
        return None

    def final_iterations(scheduler, name):
        grid = tune.Tuner(
            Simulation(blackbox, num_workers=4), param_space=blackbox.search_space,
            tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=20, scheduler=scheduler,
                                        search_alg=BasicVariantGenerator(random_state=1)),
            run_config=tune.RunConfig(storage_path=str(tmp_path), name=name, verbose=0)).fit()
        assert not grid.errors
        return [result.metrics["training_iteration"] for result in grid]

    alone = final_iterations(HyperBandScheduler(max_t=27, reduction_factor=3), "alone")
    wrapped = final_iterations(ResourceChangingScheduler(
        base_scheduler=HyperBandScheduler(max_t=27, reduction_factor=3),
        resources_allocation_function=two_cpus_from_iteration_3), "wrapped")
    assert wrapped == alone
    assert sorted(set(alone)) == [3, 9, 27] and resized
