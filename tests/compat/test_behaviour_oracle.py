"""The behaviour oracle: each script below runs on Ray Tune and on fasttune, unchanged but for the
module it is given as ``tune``, and both runs must take the same decisions and reach the same outcome.

Ray Tune is the reference.  Each script is deterministic: its trainables depend only on their
config and iteration, trials run one at a time (``max_concurrent_trials=1``, or for HyperBand a
trial that takes every CPU) where order matters, and random search-space values are not compared.
``reuse_actors=True`` only spares Ray Tune an actor start per trial (seconds each on a small
machine); it changes no decision.

Where the engines differ on purpose, the test says what is compared instead and why.  A difference
that a fasttune test holds today (so it cannot change here) is a strict xfail that names it.
"""
import re

import pytest

from oracle_testing import ENGINES, TRIAL_ID, import_engine, run_on_both, run_script

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def engines(ray_session):
    return {name: import_engine(name) for name in ENGINES}


def score_curve(a, i):
    """A deterministic score whose ranking between trials changes over iterations."""
    return (a * 37) % 11 + i * ((a * 13) % 5) / 2.0


# -- schedulers -----------------------------------------------------------------------------------

def asha_script(tune, run_config):
    def trainable(config):
        for i in range(1, 10):
            tune.report({"score": score_curve(config["a"], i)})

    return tune.Tuner(
        trainable,
        param_space={"a": tune.grid_search(list(range(8)))},
        tune_config=tune.TuneConfig(
            metric="score", mode="max", max_concurrent_trials=1, reuse_actors=True,
            scheduler=tune.schedulers.ASHAScheduler(grace_period=1, reduction_factor=2, max_t=8)),
        run_config=tune.RunConfig(**run_config),
    ).fit()


def test_asha_stops_the_same_trials_at_the_same_rungs(engines, tmp_path):
    ray_run, ft_run = run_on_both(engines, asha_script, tmp_path)
    # The scenario exercises the rule: some trials stop at a rung, some run to max_t.
    lengths = {len(t.iterations) for t in ray_run.trials}
    assert min(lengths) < 8 and max(lengths) == 8
    assert ft_run.trials == ray_run.trials
    assert ft_run.results == ray_run.results


# -- trial naming ---------------------------------------------------------------------------------

def naming_script(tune, run_config):
    # Named for this test alone: see test_a_new_function_under_a_used_name_keeps_the_name.
    def named_trainable(config):
        tune.report({"score": config["a"]})

    return tune.Tuner(
        named_trainable,
        param_space={"a": tune.grid_search([1, 2]), "b": tune.grid_search([0.5])},
        tune_config=tune.TuneConfig(max_concurrent_trials=1, reuse_actors=True),
        run_config=tune.RunConfig(**run_config),
    ).fit()


def test_trial_names_and_directories_have_ray_tunes_shape(engines, tmp_path):
    ray_run, ft_run = run_on_both(engines, naming_script, tmp_path)
    assert [t.experiment_tag for t in ray_run.trials] == ["0_a=1,b=0.5000", "1_a=2,b=0.5000"]
    assert [t.experiment_tag for t in ft_run.trials] == [t.experiment_tag for t in ray_run.trials]
    for run in (ray_run, ft_run):
        for index, (names, trial) in enumerate(zip(run.names, run.trials)):
            # "<5 random hex digits>_<creation index>": only the index is comparable.
            match = TRIAL_ID.match(names["trial_id"])
            assert match and int(match.group(1)) == index
            assert names["trainable_name"] == "named_trainable"
            assert names["str"] == f"named_trainable_{names['trial_id']}"
    # The directory is "<str(trial)>_<experiment_tag>"; Ray Tune appends the trial's creation time,
    # fasttune does not (its trial ids are unique within the experiment already).
    for names, trial in zip(ray_run.names, ray_run.trials):
        assert re.fullmatch(re.escape(f"{names['str']}_{trial.experiment_tag}") + r"_\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d",
                            names["dirname"])
    for names, trial in zip(ft_run.names, ft_run.trials):
        assert names["dirname"] == f"{names['str']}_{trial.experiment_tag}"


def reused_name_script(tune, run_config):
    def trainable_under_one_name(config):
        tune.report({"score": config["a"]})

    return tune.Tuner(trainable_under_one_name, param_space={"a": 1},
                      run_config=tune.RunConfig(**run_config)).fit()


@pytest.mark.xfail(strict=True, reason="fasttune registers a second function under a used name as name_2 "
                                       "(registry.register_under_free_name); Ray Tune re-registers the name")
def test_a_new_function_under_a_used_name_keeps_the_name(engines, tmp_path):
    # Each run of the script defines a new function, as a notebook cell run twice does.
    run_on_both(engines, reused_name_script, tmp_path / "first")
    ray_run, ft_run = run_on_both(engines, reused_name_script, tmp_path / "second")
    assert ray_run.names[0]["trainable_name"] == "trainable_under_one_name"
    assert ft_run.names[0]["trainable_name"] == ray_run.names[0]["trainable_name"]


def median_script(tune, run_config):
    def trainable(config):
        for i in range(1, 9):
            tune.report({"score": score_curve(config["a"], i)})

    return tune.Tuner(
        trainable,
        param_space={"a": tune.grid_search(list(range(7)))},
        tune_config=tune.TuneConfig(
            metric="score", mode="max", max_concurrent_trials=1, reuse_actors=True,
            scheduler=tune.schedulers.MedianStoppingRule(time_attr="training_iteration", grace_period=2,
                                                         min_samples_required=2)),
        run_config=tune.RunConfig(**run_config),
    ).fit()


def test_median_stopping_stops_the_same_trials_at_the_same_iterations(engines, tmp_path):
    ray_run, ft_run = run_on_both(engines, median_script, tmp_path)
    lengths = {len(t.iterations) for t in ray_run.trials}
    assert min(lengths) < 8 and max(lengths) == 8
    assert ft_run.trials == ray_run.trials
    assert ft_run.results == ray_run.results


def hyperband_script(tune, run_config):
    # HyperBand pauses trials; a paused trial resumes from its checkpoint.
    import os
    import tempfile

    def trainable(config):
        start = 0
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as d, open(os.path.join(d, "it")) as f:
                start = int(f.read())
        for i in range(start + 1, 10):
            with tempfile.TemporaryDirectory() as d:
                with open(os.path.join(d, "it"), "w") as f:
                    f.write(str(i))
                tune.report({"score": score_curve(config["a"], i)}, checkpoint=tune.Checkpoint.from_directory(d))

    # One trial at a time, by resources rather than max_concurrent_trials: HyperBand fills its
    # brackets with trials that exist, and max_concurrent_trials would create one at a time.
    import ray

    whole_machine = {"cpu": ray.cluster_resources()["CPU"]}
    return tune.Tuner(
        tune.with_resources(trainable, whole_machine),
        param_space={"a": tune.grid_search(list(range(9)))},
        tune_config=tune.TuneConfig(
            metric="score", mode="max", reuse_actors=True,
            scheduler=tune.schedulers.HyperBandScheduler(max_t=9, reduction_factor=3)),
        run_config=tune.RunConfig(**run_config),
    ).fit()


def test_hyperband_pauses_resumes_and_stops_the_same_trials(engines, tmp_path):
    ray_run, ft_run = run_on_both(engines, hyperband_script, tmp_path)
    # The scenario exercises the rule: some trials are paused and resumed, some stop early.
    assert any(len(stretches) > 1 for stretches in ray_run.segments())
    assert min(len(t.iterations) for t in ray_run.trials) < 9
    assert ft_run.trials == ray_run.trials
    # Each trial is paused, resumed and stopped at the same iterations.  Which trial runs next
    # is the engines' own (fasttune creates trials as a bracket needs them, Ray Tune creates
    # them all ahead and picks the least complete bracket), so the interleaving differs.
    assert ft_run.segments() == ray_run.segments()


# -- stop dicts -----------------------------------------------------------------------------------

def stop_dict_script(tune, run_config):
    def trainable(config):
        for i in range(1, 9):
            if config["a"] == 3 and i == 3:
                raise ValueError("a=3 fails at its third iteration")
            tune.report({"score": score_curve(config["a"], i)})

    return tune.Tuner(
        trainable,
        param_space={"a": tune.grid_search(list(range(5)))},
        tune_config=tune.TuneConfig(max_concurrent_trials=1, reuse_actors=True),
        run_config=tune.RunConfig(stop={"score": 9, "training_iteration": 6}, **run_config),
    ).fit()


def test_a_numeric_stop_dict_stops_the_same_trials(engines, tmp_path):
    ray_run, ft_run = run_on_both(engines, stop_dict_script, tmp_path)
    assert [len(t.iterations) for t in ray_run.trials] != [6] * 5
    assert [t.status for t in ray_run.trials].count("ERROR") == 1
    assert ft_run.trials == ray_run.trials
    assert ft_run.results == ray_run.results


def nested_stop_script(tune, run_config):
    def trainable(config):
        for i in range(1, 9):
            tune.report({"val": {"score": score_curve(config["a"], i)}})

    return tune.Tuner(
        trainable,
        param_space={"a": tune.grid_search(list(range(4)))},
        tune_config=tune.TuneConfig(max_concurrent_trials=1, reuse_actors=True),
        run_config=tune.RunConfig(stop={"val/score": 9}, **run_config),
    ).fit()


def test_a_stop_dict_with_a_nested_key_stops_the_same_trials(engines, tmp_path):
    ray_run, ft_run = run_on_both(engines, nested_stop_script, tmp_path)
    assert {len(t.iterations) for t in ray_run.trials} != {8}
    assert ft_run.trials == ray_run.trials
    assert ft_run.results == ray_run.results


def bool_stop_script(key):
    def script(tune, run_config):
        def trainable(config):
            for i in range(1, 9):
                tune.report({"score": score_curve(config["a"], i), key: i >= config["a"] + 2})

        return tune.Tuner(
            trainable,
            param_space={"a": tune.grid_search(list(range(4)))},
            tune_config=tune.TuneConfig(max_concurrent_trials=1, reuse_actors=True),
            run_config=tune.RunConfig(stop={key: True}, **run_config),
        ).fit()

    return script


@pytest.mark.parametrize("key", ["converged", "done"])
def test_a_stop_dict_with_a_bool_threshold_stops_the_same_trials(engines, tmp_path, key):
    ray_run, ft_run = run_on_both(engines, bool_stop_script(key), tmp_path)
    assert [len(t.iterations) for t in ray_run.trials] == [2, 3, 4, 5]
    assert ft_run.trials == ray_run.trials
    assert ft_run.results == ray_run.results


# -- the metric TuneConfig names ------------------------------------------------------------------

def missing_metric_script(tune, run_config):
    def trainable(config):
        tune.report({"other": 1})
        tune.report({"other": 2, "score": 1})

    return tune.Tuner(
        trainable, param_space={"a": 1},
        tune_config=tune.TuneConfig(metric="score", mode="max"),
        run_config=tune.RunConfig(**run_config),
    ).fit()


def test_a_result_without_the_tune_config_metric_fails_the_run(engines, tmp_path):
    for name in ENGINES:
        with pytest.raises(engines[name].error.TuneError, match="score"):
            run_script(engines[name], missing_metric_script, str(tmp_path / name))


def test_strict_metric_checking_can_be_turned_off(engines, tmp_path, monkeypatch):
    monkeypatch.setenv("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    ray_run, ft_run = run_on_both(engines, missing_metric_script, tmp_path)
    assert ray_run.trials[0].iterations == (1, 2)
    assert ft_run.trials == ray_run.trials


# -- search-space expansion -----------------------------------------------------------------------

def expansion_script(tune, run_config):
    def trainable(config):
        tune.report({"score": config["a"]})

    return tune.Tuner(
        trainable,
        param_space={"a": tune.grid_search([1, 2]), "b": tune.grid_search(["x", "y"]),
                     "r": tune.uniform(0, 1)},
        tune_config=tune.TuneConfig(num_samples=2, max_concurrent_trials=1, reuse_actors=True,
                                    search_alg=tune.search.BasicVariantGenerator(random_state=1234)),
        run_config=tune.RunConfig(**run_config),
    ).fit()


def _grid_part(run):
    return [({k: v for k, v in t.config.items() if k != "r"},
             re.sub(r",r=[^,]*$", "", t.experiment_tag)) for t in run.trials]


def test_num_samples_times_grid_expands_in_the_same_order(engines, tmp_path):
    ray_run, ft_run = run_on_both(engines, expansion_script, tmp_path)
    assert len(ray_run.trials) == 8
    assert _grid_part(ft_run) == _grid_part(ray_run)
    for run in (ray_run, ft_run):
        assert all(0 <= t.config["r"] < 1 for t in run.trials)
        assert all(re.fullmatch(r"\d+_a=\d,b=[xy],r=0\.\d{4}", t.experiment_tag) for t in run.trials)



def sample_from_script(tune, run_config):
    def trainable(config):
        tune.report({"score": config["b"]})

    return tune.Tuner(
        trainable,
        param_space={
            "a": tune.grid_search([1, 2]),
            "b": tune.sample_from(lambda spec: spec.config.a * 2),
            "c": tune.sample_from(lambda spec: spec.config.b + 1),  # depends on another sample_from
            "nested": {"x": tune.grid_search(["p", "q"]),
                       "y": tune.sample_from(lambda spec: spec.config.nested.x * spec.config.a)},
            "listed": [tune.grid_search([10, 20]), {"z": tune.grid_search([True, False])}, 3],
        },
        tune_config=tune.TuneConfig(max_concurrent_trials=1, reuse_actors=True),
        run_config=tune.RunConfig(**run_config),
    ).fit()


def test_sample_from_resolves_alike_and_stays_out_of_the_trial_tags(engines, tmp_path):
    ray_run, ft_run = run_on_both(engines, sample_from_script, tmp_path)
    assert len(ray_run.trials) == 16
    assert ray_run.trials[1].config == {"a": 2, "b": 4, "c": 5, "nested": {"x": "p", "y": "pp"},
                                        "listed": [10, {"z": True}, 3]}
    # Only grid (and random) values are in a tag: "1_a=2,0=10,z=True,x=p".
    assert ray_run.trials[1].experiment_tag == "1_a=2,0=10,z=True,x=p"
    assert [(t.config, t.experiment_tag) for t in ft_run.trials] == \
        [(t.config, t.experiment_tag) for t in ray_run.trials]


# -- ResultGrid -----------------------------------------------------------------------------------

# Per trial, its score at iterations 1..12: each scope and mode ranks them differently.
HISTORIES = {
    "rising": list(range(12)),                   # last 11, avg 5.5, last-5-avg 9, last-10-avg 6.5
    "early_peak": [20] + [1] * 11,               # best ever 20, last 1
    "flat": [7] * 12,                            # avg 7
    "plateau": [0, 0] + [10] * 5 + [6] * 5,      # last-10-avg 8
    "dip": [8] * 5 + [-5] + [8] * 6,             # lowest ever -5
}
SCOPES = ("last", "avg", "last-5-avg", "last-10-avg", "all")


def grid_script(tune, run_config):
    histories = dict(HISTORIES)

    def trainable(config):
        for i in range(12):
            if config["t"] == "silent":
                tune.report({"other": i})  # never reports the score
            else:
                tune.report({"score": histories[config["t"]][i], "nested": {"half": histories[config["t"]][i] / 2}})

    return tune.Tuner(
        trainable,
        param_space={"t": tune.grid_search(list(HISTORIES) + ["silent"])},
        # No TuneConfig metric: Ray Tune would fail the trial that never reports it.
        tune_config=tune.TuneConfig(max_concurrent_trials=1, reuse_actors=True),
        run_config=tune.RunConfig(**run_config),
    ).fit()


@pytest.fixture(scope="module")
def grid_runs(engines, tmp_path_factory):
    return run_on_both(engines, grid_script, tmp_path_factory.mktemp("grid"))


def _best_picks(run):
    return {(metric, scope, mode): run.trials[run.index_of(run.grid.get_best_result(metric, mode, scope))].config["t"]
            for metric in ("score", "nested/half") for scope in SCOPES for mode in ("max", "min")}


def test_get_best_result_picks_the_same_trial_for_every_scope_and_mode(grid_runs):
    ray_run, ft_run = grid_runs
    ray_picks = _best_picks(ray_run)
    # The scenario tells the scopes apart.
    assert {ray_picks[("score", scope, "max")] for scope in SCOPES} == {"rising", "flat", "plateau", "early_peak"}
    assert _best_picks(ft_run) == ray_picks


def _rows(frame, columns):
    return sorted(tuple(row) for row in frame[list(columns)].itertuples(index=False))


# Column order is not compared: Ray Tune moves flattened nested keys ("nested/half") after the
# others, fasttune keeps them where the result had them; frames are read by column name.
def test_get_dataframe_has_the_same_columns_and_rows(grid_runs):
    ray_run, ft_run = grid_runs
    ray_frame, ft_frame = ray_run.grid.get_dataframe(), ft_run.grid.get_dataframe()
    # fasttune's frame has one more column, "path" (the same as "logdir"), documented in its
    # get_dataframe and held by tests/test_result_grid.py.
    assert set(ft_frame.columns) - {"path"} == set(ray_frame.columns)
    assert list(ft_frame["path"]) == list(ft_frame["logdir"])
    columns = ("config/t", "training_iteration", "score", "nested/half", "other")
    assert _rows(ft_frame.fillna(-1), columns) == _rows(ray_frame.fillna(-1), columns)


@pytest.mark.parametrize("mode", ["max", "min"])
def test_get_dataframe_filtered_picks_the_same_row_per_trial(grid_runs, mode):
    ray_run, ft_run = grid_runs
    ray_frame = ray_run.grid.get_dataframe(filter_metric="score", filter_mode=mode)
    ft_frame = ft_run.grid.get_dataframe(filter_metric="score", filter_mode=mode)
    assert set(ft_frame.columns) - {"path"} == set(ray_frame.columns)
    columns = ("config/t", "training_iteration", "score", "nested/half", "other")
    assert _rows(ft_frame.fillna(-1), columns) == _rows(ray_frame.fillna(-1), columns)
    assert len(ray_frame) == len(HISTORIES) + 1  # the "silent" trial too: see the next test


def test_get_dataframe_filtered_keeps_a_trial_without_the_metric(grid_runs):
    ray_run, ft_run = grid_runs
    ray_frame = ray_run.grid.get_dataframe(filter_metric="score", filter_mode="max")
    ft_frame = ft_run.grid.get_dataframe(filter_metric="score", filter_mode="max")
    # Its last result stands in for the best.
    assert list(ray_frame[ray_frame["config/t"] == "silent"]["training_iteration"]) == [12]
    assert list(ft_frame[ft_frame["config/t"] == "silent"]["training_iteration"]) == [12]


# -- checkpoint retention -------------------------------------------------------------------------

def checkpoint_script(num_to_keep, attribute, order):
    def script(tune, run_config):
        import os
        import tempfile

        def trainable(config):
            for i in range(1, 7):
                with tempfile.TemporaryDirectory() as d:
                    with open(os.path.join(d, "it"), "w") as f:
                        f.write(str(i))
                    score = [3, 9, 1, 7, 5, 2][i - 1] * config["sign"]
                    tune.report({"score": score}, checkpoint=tune.Checkpoint.from_directory(d))

        return tune.Tuner(
            trainable,
            param_space={"sign": tune.grid_search([1, -1])},
            tune_config=tune.TuneConfig(max_concurrent_trials=1, reuse_actors=True),
            run_config=tune.RunConfig(
                checkpoint_config=tune.CheckpointConfig(num_to_keep=num_to_keep, checkpoint_score_attribute=attribute,
                                                        checkpoint_score_order=order),
                **run_config),
        ).fit()

    return script


def _read_iteration(directory):
    import os

    with open(os.path.join(directory, "it")) as f:
        return int(f.read())


def _iteration_of(checkpoint):
    with checkpoint.as_directory() as d:
        return _read_iteration(d)


def _kept(run):
    """Per trial: the iterations whose checkpoints are still on disk, and the latest checkpoint's."""
    import os

    out = {}
    for result in run.grid:
        on_disk = sorted(_read_iteration(os.path.join(result.path, name))
                         for name in os.listdir(result.path) if name.startswith("checkpoint_"))
        out[result.config["sign"]] = (on_disk, _iteration_of(result.checkpoint))
    return out


def _best_checkpoints(run):
    return {result.config["sign"]: [_iteration_of(c) for c, _ in result.best_checkpoints] for result in run.grid}


RETENTION = [(2, "score", "max"), (2, "score", "min"), (1, None, "max"), (None, "score", "max")]


@pytest.fixture(scope="module", params=RETENTION, ids=lambda p: "-".join(map(str, p)))
def retention_runs(request, engines, tmp_path_factory):
    return request.param, run_on_both(engines, checkpoint_script(*request.param), tmp_path_factory.mktemp("retention"))


def test_checkpoint_config_keeps_the_same_checkpoints(retention_runs):
    (num_to_keep, _, _), (ray_run, ft_run) = retention_runs
    kept = _kept(ray_run)
    # Every trial checkpointed 6 times: num_to_keep deleted some.
    assert all((len(on_disk) < 6) == (num_to_keep is not None) for on_disk, _ in kept.values())
    assert _kept(ft_run) == kept


def test_best_checkpoints_are_the_same_in_the_same_order(retention_runs):
    _, (ray_run, ft_run) = retention_runs
    assert _best_checkpoints(ft_run) == _best_checkpoints(ray_run)


# -- class Trainable lifecycle --------------------------------------------------------------------

def lifecycle_script(checkpoint_config):
    def script(tune, run_config):
        import json
        import os

        # The trainable's calls, in order, appended to a file both engines' workers can reach.
        log = os.path.join(run_config["storage_path"], "lifecycle.jsonl")

        class Lifecycle(tune.Trainable):
            def _log(self, *event):
                with open(log, "a") as f:
                    f.write(json.dumps([self.config["a"], *event]) + "\n")

            def setup(self, config):
                self.total = 0
                self._log("setup", self.iteration)

            def step(self):
                self.total += self.config["a"]
                self._log("step", self.iteration)
                return {"score": self.total}

            def save_checkpoint(self, checkpoint_dir):
                self._log("save", self.iteration)
                with open(os.path.join(checkpoint_dir, "total"), "w") as f:
                    f.write(str(self.total))

            def load_checkpoint(self, checkpoint_dir):
                self._log("load", self.iteration)

            def reset_config(self, new_config):
                self.config, self.total = new_config, 0
                self._log("reset", self.iteration)
                return True

            def cleanup(self):
                self._log("cleanup", self.iteration)

        return tune.Tuner(
            Lifecycle,
            param_space={"a": tune.grid_search([1, 2, 3])},
            tune_config=tune.TuneConfig(max_concurrent_trials=1, reuse_actors=True),
            run_config=tune.RunConfig(stop={"training_iteration": 5}, checkpoint_config=checkpoint_config(tune),
                                      **run_config),
        ).fit()

    return script


LIFECYCLE_CHECKPOINTS = {
    "none": lambda tune: tune.CheckpointConfig(),
    "frequency": lambda tune: tune.CheckpointConfig(checkpoint_frequency=2),
    "frequency-and-at-end": lambda tune: tune.CheckpointConfig(checkpoint_frequency=2, checkpoint_at_end=True),
}


def _lifecycle(run):
    import json
    import os

    with open(os.path.join(os.path.dirname(run.grid.experiment_path), "lifecycle.jsonl")) as f:
        return [tuple(json.loads(line)) for line in f]


def _checkpoints(run):
    """Per trial: its checkpoint directories on disk, and what the latest one holds."""
    import os

    out = {}
    for result in run.grid:
        held = None
        if result.checkpoint is not None:
            with result.checkpoint.as_directory() as d, open(os.path.join(d, "total")) as f:
                held = f.read()
        out[result.config["a"]] = (sorted(n for n in os.listdir(result.path) if n.startswith("checkpoint_")), held)
    return out


@pytest.mark.parametrize("checkpoints", LIFECYCLE_CHECKPOINTS)
def test_a_reused_class_trainable_is_called_in_the_same_order(engines, tmp_path, checkpoints):
    ray_run, ft_run = run_on_both(engines, lifecycle_script(LIFECYCLE_CHECKPOINTS[checkpoints]), tmp_path)
    ray_calls = _lifecycle(ray_run)
    # One instance serves every trial: set up once, then reset for each next trial.
    assert [call[1] for call in ray_calls].count("setup") == 1
    assert [call[1] for call in ray_calls].count("reset") == 2
    assert _lifecycle(ft_run) == ray_calls
    assert _checkpoints(ft_run) == _checkpoints(ray_run)
    assert ft_run.results == ray_run.results
    # fasttune fills checkpoint_dir_name in a class trainable's results too (docs/compatibility.md).
    assert not any("checkpoint_dir_name" in r.metrics for r in ray_run.grid)
    assert all("checkpoint_dir_name" in r.metrics for r in ft_run.grid)


# -- what a searcher hears ------------------------------------------------------------------------

def searcher_script(tune, run_config):
    import json
    import os

    log = os.path.join(run_config["storage_path"], "searcher.jsonl")
    Searcher = tune.search.Searcher

    class Sequence(Searcher):
        """Suggests x = 1..5 and writes down what it is told about each trial."""

        def __init__(self):
            super().__init__(metric="val/score", mode="max")
            self.suggested = 0

        def _log(self, *entry):
            with open(log, "a") as f:
                f.write(json.dumps(entry) + "\n")

        def suggest(self, trial_id):
            if self.suggested == 5:
                return Searcher.FINISHED
            self.suggested += 1
            return {"x": self.suggested, "nested": {"y": -self.suggested}}

        def on_trial_result(self, trial_id, result):
            self._log("result", result["config/x"], result["val/score"])

        def on_trial_complete(self, trial_id, result=None, error=False):
            seen = None if result is None else (result.get("config/x"), result.get("config/nested/y"),
                                                result.get("val/score"), result.get("done"))
            self._log("complete", seen, error)

    def trainable(config):
        for i in range(1, 3):
            if config["x"] == 3 and i == 2:
                raise ValueError("x=3 fails at its second iteration")
            tune.report({"val": {"score": config["x"] * 10 + i}})

    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(num_samples=-1,
                                    search_alg=tune.search.ConcurrencyLimiter(Sequence(), max_concurrent=1)),
        run_config=tune.RunConfig(**run_config),
    ).fit()


def _searcher_log(run):
    import json
    import os

    with open(os.path.join(os.path.dirname(run.grid.experiment_path), "searcher.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_a_searcher_hears_flattened_results_and_no_result_for_a_failed_trial(engines, tmp_path):
    ray_run, ft_run = run_on_both(engines, searcher_script, tmp_path)
    ray_log = _searcher_log(ray_run)
    # on_trial_complete gets the trial's last result again, flattened as on_trial_result's are;
    # a failed trial's completion comes with no result.
    assert ray_log[:3] == [["result", 1, 11], ["result", 1, 12], ["complete", [1, -1, 12, True], False]]
    assert ["complete", None, True] in ray_log
    assert _searcher_log(ft_run) == ray_log
    assert [t.status for t in ft_run.trials] == [t.status for t in ray_run.trials]


# -- retries --------------------------------------------------------------------------------------

def retry_script(tune, run_config):
    import os
    import tempfile

    marks = run_config["storage_path"]

    def trainable(config):
        start = 0
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as d, open(os.path.join(d, "it")) as f:
                start = int(f.read())
        for i in range(start + 1, 8):
            mark = os.path.join(marks, f"failed_{config['a']}")
            if i == 4 and not os.path.exists(mark):  # fails once, at its fourth iteration
                open(mark, "w").close()
                raise ValueError("fails once")
            if config["a"] == 1 and i % 2 == 0:  # a=1 checkpoints at even iterations
                with tempfile.TemporaryDirectory() as d:
                    with open(os.path.join(d, "it"), "w") as f:
                        f.write(str(i))
                    tune.report({"score": i, "start": start}, checkpoint=tune.Checkpoint.from_directory(d))
            else:
                tune.report({"score": i, "start": start})

    return tune.Tuner(
        trainable,
        param_space={"a": tune.grid_search([0, 1])},
        tune_config=tune.TuneConfig(max_concurrent_trials=1, reuse_actors=True),
        run_config=tune.RunConfig(failure_config=tune.FailureConfig(max_failures=1), **run_config),
    ).fit()


def test_a_retried_trial_resumes_alike_and_fasttune_keeps_one_row_per_iteration(engines, tmp_path):
    ray_run, ft_run = run_on_both(engines, retry_script, tmp_path)
    # a=0 has no checkpoint and starts again from 1; a=1 resumes from its checkpoint at 2.
    assert [t.iterations for t in ray_run.trials] == [(1, 2, 3, 1, 2, 3, 4, 5, 6, 7), (1, 2, 3, 3, 4, 5, 6, 7)]
    assert ft_run.trials == ray_run.trials
    assert ft_run.results == ray_run.results
    for ray_result, ft_result in zip(ray_run.grid, ft_run.grid):
        assert ray_result.error is None and ft_result.error is None
        for key in ("training_iteration", "iterations_since_restore", "start"):
            assert ft_result.metrics[key] == ray_result.metrics[key]
    # The trial's history: Ray Tune's files keep the rows of the failed run too, fasttune's
    # are rewound to what the retry starts from (docs/compatibility.md, "Behaviour").
    ray_history = [list(r.metrics_dataframe["training_iteration"]) for r in ray_run.grid]
    assert ray_history == [list(t.iterations) for t in ray_run.trials]
    assert [list(r.metrics_dataframe["training_iteration"]) for r in ft_run.grid] == [list(range(1, 8))] * 2
    assert list(ft_run.grid[1].metrics_dataframe["start"]) == [0, 0, 2, 2, 2, 2, 2]


# -- what a result holds --------------------------------------------------------------------------

# Keys whose values are times, places or random ids: compared by presence only.
VOLATILE_KEYS = {"time_this_iter_s", "time_total_s", "time_since_restore", "timestamp", "date", "pid", "hostname",
                 "node_ip", "trial_id"}


def result_fields_script(tune, run_config):
    import os
    import tempfile

    def trainable(config):
        for i in range(1, 5):
            checkpoint = None
            with tempfile.TemporaryDirectory() as d:
                if i % 2 == 0:
                    with open(os.path.join(d, "it"), "w") as f:
                        f.write(str(i))
                    checkpoint = tune.Checkpoint.from_directory(d)
                tune.report({"score": i * config["a"], "nested": {"half": i / 2}}, checkpoint=checkpoint)

    return tune.Tuner(
        trainable,
        param_space={"a": tune.grid_search([1, 2])},
        tune_config=tune.TuneConfig(max_concurrent_trials=1, reuse_actors=True),
        run_config=tune.RunConfig(**run_config),
    ).fit()


def _fields(run):
    """Per trial: its last result's stable keys and values, and each row of its history."""
    out = []
    for result in run.grid:
        last = {k: v for k, v in result.metrics.items() if k not in VOLATILE_KEYS}
        history = [{k: v for k, v in row.items() if k not in VOLATILE_KEYS and v == v}  # (v == v: NaN is absent)
                   for row in result.metrics_dataframe.to_dict("records")]
        out.append((last, history))
    return out


def test_results_hold_the_same_fields(engines, tmp_path):
    ray_run, ft_run = run_on_both(engines, result_fields_script, tmp_path)
    ray_fields = _fields(ray_run)
    for run in (ray_run, ft_run):
        assert VOLATILE_KEYS <= set(run.grid[0].metrics)
    # experiment_tag is on the trial in fasttune (docs/compatibility.md, "Auto-filled results").
    for last, history in ray_fields:
        last.pop("experiment_tag", None)
        for row in history:
            row.pop("experiment_tag", None)
    # A result reported with a checkpoint says so (should_checkpoint) and names it.
    assert [(row["should_checkpoint"], row["checkpoint_dir_name"]) for row in ray_fields[0][1] if "should_checkpoint" in row] \
        == [(True, "checkpoint_000000"), (True, "checkpoint_000001")]
    # Result.metrics_dataframe is read from result.json: the config's columns are there too.
    assert all(list(r.metrics_dataframe["config/a"]) == [r.config["a"]] * 4 for r in ray_run.grid)
    assert _fields(ft_run) == ray_fields


def test_a_failed_trial_has_the_exception_its_trainable_raised(engines, tmp_path):
    ray_run, ft_run = run_on_both(engines, stop_dict_script, tmp_path)
    for run in (ray_run, ft_run):
        assert (run.grid.num_errors, run.grid.num_terminated) == (1, 4)
        (error,) = run.grid.errors
        assert isinstance(error, ValueError) and "a=3 fails at its third iteration" in str(error)
    # Ray Tune's is a RayTaskError made to subclass ValueError too; fasttune's is the exception
    # itself (docs/compatibility.md, "Behaviour").
    assert type(ray_run.grid.errors[0]) is not ValueError
    assert type(ft_run.grid.errors[0]) is ValueError


def without_save_script(tune, run_config):
    class WithoutSave(tune.Trainable):
        def setup(self, config, data=None, k=1):
            self.data, self.k = data, k

        def step(self):
            return {"score": sum(self.data) * self.k * self.config["a"], "done": self.iteration >= 2}

    return tune.Tuner(
        tune.with_parameters(WithoutSave, data=[1, 2], k=3),
        param_space={"a": tune.grid_search([1, 2])},
        tune_config=tune.TuneConfig(max_concurrent_trials=1, reuse_actors=True),
        run_config=tune.RunConfig(**run_config),
    ).fit()


def test_a_class_trainable_without_save_checkpoint_is_not_checkpointed_at_its_end(engines, tmp_path):
    import os

    ray_run, ft_run = run_on_both(engines, without_save_script, tmp_path)
    # with_parameters reaches setup alike; the results are the same.
    assert ft_run.results == ray_run.results == [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3)]
    assert [r.metrics["score"] for r in ft_run.grid] == [r.metrics["score"] for r in ray_run.grid] == [9, 18]
    # Ray Tune's default save_checkpoint raises when the Tuner checkpoints the trial at its end,
    # failing it; fasttune's has nothing to save, so the trial ends TERMINATED without a
    # checkpoint (docs/compatibility.md, "Behaviour").
    assert [t.status for t in ray_run.trials] == ["ERROR", "ERROR"]
    assert [t.status for t in ft_run.trials] == ["TERMINATED", "TERMINATED"]
    for result in ft_run.grid:
        assert result.checkpoint is None
        assert not [n for n in os.listdir(result.path) if n.startswith("checkpoint_")]


# -- the trial's context, name creators and a stop function ---------------------------------------

def context_script(tune, run_config):
    import json
    import os

    log = os.path.join(run_config["storage_path"], "context.jsonl")

    def trainable(config, data=None):
        context = tune.get_context()
        with open(log, "a") as f:
            f.write(json.dumps({
                "a": config["a"], "trial_name": context.get_trial_name(), "experiment": context.get_experiment_name(),
                "trial_dir": os.path.basename(context.get_trial_dir()), "cwd": os.path.basename(os.getcwd()),
                "resources": context.get_trial_resources().required_resources, "data": sum(data),
                "ranks": [context.get_world_size(), context.get_world_rank(), context.get_local_rank()],
            }) + "\n")
        for i in range(1, 6):
            tune.report({"score": i * config["a"]})

    return tune.Tuner(
        tune.with_parameters(trainable, data=[1, 2]),
        param_space={"a": tune.grid_search([1, 2, 3])},
        tune_config=tune.TuneConfig(max_concurrent_trials=1, reuse_actors=True,
                                    trial_name_creator=lambda trial: f"named_{trial.config['a']}",
                                    trial_dirname_creator=lambda trial: f"dir_{trial.config['a']}"),
        run_config=tune.RunConfig(stop=lambda trial_id, result: result["score"] >= 6, **run_config),
    ).fit()


def _contexts(run):
    import json
    import os

    with open(os.path.join(os.path.dirname(run.grid.experiment_path), "context.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_the_trial_context_name_creators_and_a_stop_function_agree(engines, tmp_path):
    import os

    ray_run, ft_run = run_on_both(engines, context_script, tmp_path)
    assert [t.iterations for t in ray_run.trials] == [(1, 2, 3, 4, 5), (1, 2, 3), (1, 2)]
    assert ft_run.trials == ray_run.trials
    assert [n["str"] for n in ft_run.names] == [n["str"] for n in ray_run.names] == ["named_1", "named_2", "named_3"]
    assert [os.path.basename(r.path) for r in ft_run.grid] == [os.path.basename(r.path) for r in ray_run.grid]
    ray_contexts, ft_contexts = _contexts(ray_run), _contexts(ft_run)
    assert ray_contexts[0]["trial_dir"] == ray_contexts[0]["cwd"] == "dir_1"
    # A trial is one worker: fasttune's ranks are those of a group of one, where Ray Tune's
    # TuneContext has none (docs/compatibility.md, "Behaviour").
    assert [c.pop("ranks") for c in ray_contexts] == [[None, None, None]] * 3
    assert [c.pop("ranks") for c in ft_contexts] == [[1, 0, 0]] * 3
    assert ft_contexts == ray_contexts


# -- Tuner.restore after a failed trial -----------------------------------------------------------

def _restorable_trainable(tune, storage):
    """A trainable that fails at the third iteration of a=1 until ``storage/healed`` exists and
    writes down each result it reports (config, iteration, where it started)."""
    import json
    import os
    import tempfile

    def trainable(config):
        start = 0
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as d, open(os.path.join(d, "it")) as f:
                start = int(f.read())
        for i in range(start + 1, 6):
            if config["a"] == 1 and i == 3 and not os.path.exists(os.path.join(storage, "healed")):
                raise ValueError("a=1 fails at its third iteration")
            with open(os.path.join(storage, "reports.jsonl"), "a") as f:
                f.write(json.dumps([config["a"], config["ck"], i, start]) + "\n")
            with tempfile.TemporaryDirectory() as d:
                with open(os.path.join(d, "it"), "w") as f:
                    f.write(str(i))
                tune.report({"score": i, "start": start},
                            checkpoint=tune.Checkpoint.from_directory(d) if config["ck"] else None)

    return trainable


def restore_script(tune, run_config):
    return tune.Tuner(
        _restorable_trainable(tune, run_config["storage_path"]),
        param_space={"a": tune.grid_search([0, 1]), "ck": tune.grid_search([True, False])},
        tune_config=tune.TuneConfig(max_concurrent_trials=1, reuse_actors=True),
        run_config=tune.RunConfig(**run_config),
    ).fit()


def _restored(tune, storage, run, **resume):
    """Heal the failing trial, restore the experiment with ``resume`` and run it again: per
    trial (by config), the results reported after the restore and the final metrics."""
    import json
    import os

    os.remove(os.path.join(storage, "reports.jsonl"))
    open(os.path.join(storage, "healed"), "w").close()
    grid = tune.Tuner.restore(run.grid.experiment_path, trainable=_restorable_trainable(tune, storage),
                              **resume).fit()
    reports = {}
    if os.path.exists(os.path.join(storage, "reports.jsonl")):
        with open(os.path.join(storage, "reports.jsonl")) as f:
            for a, ck, iteration, start in map(json.loads, f):
                reports.setdefault((a, ck), []).append((iteration, start))
    final = {(r.config["a"], r.config["ck"]): (r.error is not None, r.metrics["training_iteration"],
                                               r.metrics["iterations_since_restore"], r.metrics["start"])
             for r in grid}
    return reports, final, (grid.num_errors, grid.num_terminated), [(r.config["a"], r.config["ck"]) for r in grid]


@pytest.mark.parametrize("resume", [{}, {"resume_errored": True}, {"restart_errored": True}],
                         ids=["plain", "resume_errored", "restart_errored"])
def test_tuner_restore_reruns_the_same_trials_from_the_same_place(engines, tmp_path, resume):
    import os

    outcomes = []
    for name in ENGINES:
        storage = os.path.join(str(tmp_path), name)
        os.makedirs(storage)
        run = run_script(engines[name], restore_script, storage)
        assert [t.status for t in run.trials] == ["TERMINATED", "ERROR", "TERMINATED", "ERROR"]
        outcomes.append(_restored(engines[name], storage, run, **resume))
    ray_outcome, ft_outcome = outcomes
    rerun = {"plain": {}, "resume_errored": {(1, True): [(3, 2), (4, 2), (5, 2)],
                                             (1, False): [(1, 0), (2, 0), (3, 0), (4, 0), (5, 0)]},
             "restart_errored": {(1, True): [(i, 0) for i in range(1, 6)], (1, False): [(i, 0) for i in range(1, 6)]}}
    assert ray_outcome[0] == rerun[next(iter(resume), "plain")]
    assert ft_outcome[:3] == ray_outcome[:3]
    # The restored ResultGrid keeps fasttune's trials in creation order; Ray Tune's lists them
    # by their latest result, newest first (docs/compatibility.md, "Behaviour").
    assert ft_outcome[3] == [(0, True), (1, True), (0, False), (1, False)]
    assert sorted(ray_outcome[3]) == sorted(ft_outcome[3])


def repeater_script(tune, run_config):
    import json
    import os

    log = os.path.join(run_config["storage_path"], "searcher.jsonl")
    Searcher = tune.search.Searcher

    class Three(Searcher):
        def __init__(self):
            super().__init__(metric="score", mode="max")
            self.suggested = 0

        def suggest(self, trial_id):
            if self.suggested == 3:
                return Searcher.FINISHED
            self.suggested += 1
            return {"x": self.suggested}

        def on_trial_complete(self, trial_id, result=None, error=False):
            with open(log, "a") as f:
                f.write(json.dumps(["complete", result, error]) + "\n")

    def trainable(config):
        if config["x"] == 2 and config["__trial_index__"] == 1:
            raise ValueError("the second repetition of x=2 fails")
        tune.report({"score": config["x"] * 10 + config["__trial_index__"]})

    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(num_samples=9, max_concurrent_trials=1,
                                    search_alg=tune.search.Repeater(Three(), repeat=3)),
        run_config=tune.RunConfig(**run_config),
    ).fit()


def test_a_repeater_repeats_alike_and_tells_its_searcher_the_mean(engines, tmp_path):
    ray_run, ft_run = run_on_both(engines, repeater_script, tmp_path)
    assert [t.config for t in ray_run.trials] == [{"x": x, "__trial_index__": i} for x in (1, 2, 3) for i in range(3)]
    assert [(t.config, t.status, t.experiment_tag) for t in ft_run.trials] == \
        [(t.config, t.status, t.experiment_tag) for t in ray_run.trials]
    # The failed repetition is left out of the mean (21 = mean of 20 and 22).
    assert _searcher_log(ray_run) == [["complete", {"score": s}, False] for s in (11.0, 21.0, 31.0)]
    assert _searcher_log(ft_run) == _searcher_log(ray_run)


# -- Stopper classes ------------------------------------------------------------------------------

def stopper_script(tune, run_config):
    import importlib

    stopper = importlib.import_module(f"{tune.__name__}.stopper")

    def trainable(config):
        for i in range(1, 30):
            tune.report({"score": config["a"] + min(i, config["plateau_at"])})

    return tune.Tuner(
        trainable,
        param_space={"a": tune.grid_search([0, 1]), "plateau_at": tune.grid_search([5, 25])},
        tune_config=tune.TuneConfig(max_concurrent_trials=1, reuse_actors=True),
        run_config=tune.RunConfig(stop=stopper.CombinedStopper(
            stopper.MaximumIterationStopper(20),
            stopper.TrialPlateauStopper(metric="score", std=0.01, num_results=4, grace_period=3)), **run_config),
    ).fit()


def experiment_plateau_script(tune, run_config):
    import importlib

    stopper = importlib.import_module(f"{tune.__name__}.stopper")

    def trainable(config):
        for i in range(1, 10):
            tune.report({"score": min(config["a"], 2) + i / 100})

    return tune.Tuner(
        trainable,
        param_space={"a": tune.grid_search(list(range(6)))},
        tune_config=tune.TuneConfig(max_concurrent_trials=1, reuse_actors=True),
        run_config=tune.RunConfig(stop=stopper.ExperimentPlateauStopper(metric="score", mode="max", top=2,
                                                                         patience=3, std=0.001), **run_config),
    ).fit()


@pytest.mark.parametrize("script, lengths", [(stopper_script, [8, 8, 20, 20]),  # plateau, then the maximum
                                             (experiment_plateau_script, [9, 9, 9, 2])],  # stops the rest
                         ids=["trial", "experiment"])
def test_stoppers_stop_the_same_trials_at_the_same_iterations(engines, tmp_path, script, lengths):
    ray_run, ft_run = run_on_both(engines, script, tmp_path)
    assert [len(t.iterations) for t in ray_run.trials] == lengths
    assert ft_run.trials == ray_run.trials
    assert ft_run.results == ray_run.results
