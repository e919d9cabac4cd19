"""Trial: a view over a TrialTable row, its identity, paths and decisions."""
import os
import pathlib
import re

import pytest

from fasttune import _corelib as core
from fasttune.config import CheckpointConfig
from fasttune.error import TuneError
from fasttune.execution.placement_groups import PlacementGroupFactory
from fasttune.experiment.trial import Trial


def attached(trial=None, **kwargs):
    trial = trial or Trial("train", **kwargs)
    table = core.TrialTable()
    table.add()  # a foreign row first, so the trial's row is not row 0
    row = table.add()
    trial._attach(table, row)
    return trial, table, row


# ---- status ---------------------------------------------------------------------------


def test_status_before_attach_is_local():
    trial = Trial("train")
    assert trial.status == Trial.PENDING
    trial.set_status(Trial.RUNNING)
    assert trial.status == Trial.RUNNING
    with pytest.raises(ValueError, match="Unknown trial status"):
        trial.set_status("DONE")


def test_attach_moves_status_and_failures_into_the_table():
    trial = Trial("train", max_failures=5)
    trial.set_status(Trial.PAUSED)
    trial._record_failure()
    trial._record_failure()
    _, table, row = attached(trial)
    assert table.get_status(row) == core.PAUSED
    assert table.get_failures(row) == 2
    assert table.get_status(0) == core.PENDING and table.get_failures(0) == 0
    assert trial.status == Trial.PAUSED and trial.num_failures == 2


def test_is_finished_reads_the_table_row():
    trial = Trial("train")
    assert not trial.is_finished()
    _, table, row = attached(trial)
    for status, finished in ((core.RUNNING, False), (core.TERMINATED, True)):
        table.set_status(row, status)
        assert trial.is_finished() is finished


def test_status_is_a_view_over_the_table_row():
    trial, table, row = attached()
    table.set_status(row, core.RUNNING)
    assert trial.status == Trial.RUNNING
    trial.set_status(Trial.TERMINATED)
    assert table.get_status(row) == core.TERMINATED
    assert trial.is_finished()
    assert table.get_status(0) == core.PENDING


def test_attached_illegal_transition_raises_and_leaves_status():
    trial, table, row = attached()
    trial.set_status(Trial.TERMINATED)
    with pytest.raises(core.IllegalTransition):
        trial.set_status(Trial.RUNNING)
    assert trial.status == Trial.TERMINATED
    with pytest.raises(ValueError, match="Unknown trial status"):
        trial.set_status("BOGUS")


def test_failures_and_iteration_read_through_the_table():
    trial, table, row = attached()
    assert trial._record_failure() == 1
    assert table.get_failures(row) == 1
    table.record_result(row, 7, 1.0, 0.5)
    assert trial.iteration == 7


# ---- identity and paths ---------------------------------------------------------------


def test_generate_id_unique_and_formatted():
    ids = [Trial.generate_id() for _ in range(500)]
    assert len(set(ids)) == 500
    assert all(re.fullmatch(r"[0-9a-f]{5}_\d{5,}", i) for i in ids)
    assert len({i.split("_")[0] for i in ids}) == 1  # one prefix per process
    assert Trial("a").trial_id != Trial("a").trial_id
    assert Trial("a", trial_id="given").trial_id == "given"


def test_storage_dirname_default_is_sanitised():
    trial = Trial("my train", trial_id="abc_00001", experiment_tag="0_lr=0.1,act=a/b c")
    name = trial.storage_dirname
    assert name == "my_train_abc_00001_0_lr=0.1,act=a_b_c"
    assert os.sep not in name and " " not in name


@pytest.mark.parametrize("trainable, tag", [
    ("train", "12"), ("Train_2", "x"), ("tr\u00e9n", "1"), ("e\u0301", "1"), ("train", "1 2"), ("_", "__")])
def test_storage_dirname_replaces_what_is_no_word_character_however_it_is_found(trainable, tag):
    """(An ASCII identifier is taken as it is, without the regular expression: the same name.)
    A combining accent may continue an identifier but is no word character: it is replaced."""
    trial = Trial(trainable, trial_id="abc_00001", experiment_tag=tag)
    assert trial.storage_dirname == re.sub(r"[^\w\-=.,+]", "_", f"{trainable}_abc_00001_{tag}")[:130]


def test_storage_dirname_of_any_ascii_tag_is_the_regular_expressions():
    """(An ASCII name is made safe by a translation table: the same name, character by character.)"""
    tag = "".join(map(chr, range(128)))
    trial = Trial("train", trial_id="abc_00001", experiment_tag=tag)
    assert trial.storage_dirname == re.sub(r"[^\w\-=.,+]", "_", f"train_abc_00001_{tag}")[:130]


def test_a_trial_made_by_init_has_no_getattr_hook_and_a_lazily_decoded_one_has():
    """A class with __getattr__ slows every attribute read (CPython 3.11): only a trial that
    may be compact (a restore's lazily decoded one) has one."""
    trial = Trial("train")
    assert not hasattr(type(trial), "__getattr__")
    del trial.__dict__["last_result"]
    with pytest.raises(AttributeError, match="'Trial' object has no attribute 'last_result'"):
        trial.last_result
    bare = Trial.lazily_decoded({"trial_id": "t_00001"})
    assert isinstance(bare, Trial) and hasattr(type(bare), "__getattr__")
    with pytest.raises(AttributeError, match="'Trial' object has no attribute 'config'"):
        bare.config


def test_storage_dirname_long_tag_truncated_but_keeps_trial_id():
    a = Trial("train", trial_id="x_00001", experiment_tag="lr=" + "9" * 500)
    b = Trial("train", trial_id="x_00002", experiment_tag="lr=" + "9" * 500)
    assert len(a.storage_dirname) <= 130
    assert a.storage_dirname != b.storage_dirname
    assert "x_00001" in a.storage_dirname


def test_storage_dirname_uses_creator_once():
    calls = []

    def creator(trial):
        calls.append(trial)
        return f"custom_{trial.trial_id}"

    trial = Trial("train", trial_id="t1", trial_dirname_creator=creator)
    assert trial.storage_dirname == "custom_t1"
    assert trial.storage_dirname == "custom_t1"
    assert calls == [trial]


@pytest.mark.parametrize("bad", ["", None, 3, os.path.join("a", "b")])
def test_storage_dirname_creator_result_validated(bad):
    trial = Trial("train", trial_id="t9", trial_dirname_creator=lambda t: bad)
    with pytest.raises(TuneError, match="trial_dirname_creator.*t9"):
        trial.storage_dirname


def test_path():
    assert Trial("train").path is None
    trial = Trial("train", trial_id="t1", experiment_path="/tmp/exp")
    assert trial.path == os.path.join("/tmp/exp", "train_t1")
    assert trial.local_path == trial.logdir == trial.path
    assert trial.experiment_dir_name == "exp"
    custom = Trial("train", experiment_path="/tmp/exp", trial_dirname_creator=lambda t: "d")
    assert custom.path == os.path.join("/tmp/exp", "d")


@pytest.mark.parametrize("experiment_path", ["/tmp/exp/", "/", "relative", "relative//", "", pathlib.Path("/tmp/exp")])
def test_a_trials_path_is_its_directory_joined_as_os_path_join_joins_it(experiment_path):
    """(Joined without os.path.join's general checks where it can: the same path.)"""
    for trial in (Trial("train", trial_id="t1", experiment_path=experiment_path),
                  Trial("train", experiment_path=experiment_path, trial_dirname_creator=lambda t: "d")):
        assert trial.path == os.path.join(experiment_path, trial.storage_dirname)


def test_str_uses_trial_name_creator():
    assert str(Trial("train", trial_id="t1")) == "train_t1"
    trial = Trial("train", config={"lr": 0.5}, trial_name_creator=lambda t: f"lr={t.config['lr']}")
    assert str(trial) == repr(trial) == "lr=0.5"
    assert trial.custom_trial_name == "lr=0.5"


def test_trial_name_creator_may_read_status():
    trial = Trial("train", trial_name_creator=lambda t: f"{t.trainable_name}-{t.status}")
    assert str(trial) == "train-PENDING"


# ---- decisions ------------------------------------------------------------------------


def test_should_stop_thresholds_and_done():
    trial = Trial("train", stopping_criterion={"training_iteration": 3, "acc": 0.9})
    assert not trial.should_stop({"training_iteration": 2, "acc": 0.5})
    assert trial.should_stop({"training_iteration": 3, "acc": 0.5})
    assert trial.should_stop({"training_iteration": 1, "acc": 0.95})
    assert Trial("train").should_stop({"done": True})
    assert not Trial("train").should_stop({"done": False, "x": 1})


def test_should_stop_missing_key_names_it():
    trial = Trial("train", stopping_criterion={"mean_accuracy": 0.9})
    with pytest.raises(TuneError, match="'mean_accuracy'.*RunConfig\\(stop=") as info:
        trial.should_stop({"loss": 1.0})
    assert "loss" in str(info.value)


@pytest.mark.parametrize(
    "max_failures, expected",
    [
        (0, [True, False, False, False]),
        (2, [True, True, True, False]),
        (-1, [True, True, True, True]),
    ],
)
@pytest.mark.parametrize("in_table", [False, True])
def test_should_recover(max_failures, expected, in_table):
    trial = Trial("train", max_failures=max_failures)
    if in_table:
        attached(trial)
    seen = [trial.should_recover()]
    for _ in range(3):
        trial._record_failure()
        seen.append(trial.should_recover())
    assert trial.num_failures == 3
    assert seen == expected


def test_update_resources():
    trial = Trial("train")
    assert trial.resources == {"CPU": 1.0}
    trial.update_resources({"cpu": 2, "gpu": 1})
    assert isinstance(trial.placement_group_factory, PlacementGroupFactory)
    assert trial.resources == {"CPU": 2.0, "GPU": 1.0}
    pgf = PlacementGroupFactory([{"CPU": 1}, {"CPU": 3}])
    trial.update_resources(pgf)
    assert trial.placement_group_factory is pgf
    with pytest.raises(TypeError):
        trial.update_resources(4)


def test_update_resources_refused_while_running():
    trial, table, row = attached()
    trial.set_status(Trial.RUNNING)
    with pytest.raises(ValueError, match="RUNNING"):
        trial.update_resources({"cpu": 4})
    assert trial.resources == {"CPU": 1.0}
    trial.set_status(Trial.PAUSED)
    trial.update_resources({"cpu": 4})
    assert trial.resources == {"CPU": 4.0}


def test_should_checkpoint_follows_frequency():
    trial, table, row = attached(checkpoint_config=CheckpointConfig(checkpoint_frequency=3))
    decisions = {}
    for it in range(0, 8):
        table.set_iteration(row, it)
        decisions[it] = trial.should_checkpoint()
    assert [it for it, yes in decisions.items() if yes] == [3, 6]


def test_should_checkpoint_disabled():
    for config in (None, CheckpointConfig()):
        trial, table, row = attached(checkpoint_config=config)
        table.set_iteration(row, 6)
        assert not trial.should_checkpoint()


def test_experiment_dir_name_is_worked_out_once_per_experiment_path(monkeypatch):
    from fasttune.experiment import trial as trial_module

    names = []
    basename = os.path.basename
    monkeypatch.setattr(trial_module.os.path, "basename", lambda path: names.append(path) or basename(path))
    made = [Trial("train", experiment_path=f"/runs/exp_{i // 50}") for i in range(100)]
    assert [t.experiment_dir_name for t in made] == ["exp_0"] * 50 + ["exp_1"] * 50
    assert names == ["/runs/exp_0", "/runs/exp_1"]
    # Another path in between, a trailing separator, a name given, no path: each as os.path.basename says.
    assert Trial("train", experiment_path="/runs/exp_0").experiment_dir_name == "exp_0"
    assert Trial("train", experiment_path="/runs/exp_0/").experiment_dir_name == ""
    assert Trial("train", experiment_path="/runs/exp_0", experiment_dir_name="named").experiment_dir_name == "named"
    assert Trial("train", experiment_dir_name="").experiment_dir_name is None
