"""BasicVariantGenerator's saved state keeps its experiments without their trainable
object (a Simulation's table was saved again at every snapshot), and a generator restored
on its own still makes the same trials; a state that holds the whole experiment, as
earlier versions saved it, is still read."""
import os
import threading

import numpy as np

import fasttune as tune
from fasttune._serialization import pack_state
from fasttune.search.basic_variant import BasicVariantGenerator


def _trainable_holding(value):
    """A trainable that cloudpickle saves by value, with ``value`` (it is made in a function)."""
    def train(config):
        tune.report({"score": len(str(value)) + config["x"]})
    return train


class _ClassTrainable(tune.Trainable):
    @classmethod
    def default_resource_request(cls, config):
        return tune.PlacementGroupFactory([{"CPU": config["cpus"]}])


def _generator(trainable, storage, config=None):
    experiment = tune.Experiment("exp", trainable, config=config or {"x": tune.randint(0, 10)}, num_samples=6,
                                 storage_path=str(storage))
    generator = BasicVariantGenerator(random_state=3)
    generator.add_configurations(experiment)
    return generator, experiment


def _made(generator, count=None):
    made = []
    while count is None or len(made) < count:
        trial = generator.next_trial()
        if trial is None:
            break
        made.append((trial.trial_id, trial.experiment_tag, trial.config, trial.trainable_name))
    return made


def _saved_file(path):
    (name,) = [entry for entry in os.listdir(path) if entry.startswith("basic-variant-state")]
    return os.path.join(path, name)


def test_the_saved_state_leaves_out_what_the_trainable_holds(tmp_path):
    generator, _ = _generator(_trainable_holding(np.arange(2_000_000, dtype=np.float64)), tmp_path / "results")
    assert generator.save_to_dir(str(tmp_path), session_str="s") is not False
    assert os.path.getsize(_saved_file(tmp_path)) < 1_000_000  # (not the trainable's 16 MB)


def test_a_trainable_that_cannot_be_pickled_leaves_the_state_savable_and_the_same_sweep_restorable(tmp_path):
    trainable = _trainable_holding(threading.Lock())  # (cloudpickle cannot save a lock)
    expected = _made(_generator(trainable, tmp_path / "results")[0])
    generator, experiment = _generator(trainable, tmp_path / "results")
    first = _made(generator, 2)
    assert generator.save_to_dir(str(tmp_path), session_str="s") is not False
    restored = BasicVariantGenerator()
    restored.restore_from_dir(str(tmp_path))  # on its own: its saved experiment makes the trials
    rest = _made(restored)
    assert [made[1:3] for made in first + rest] == [made[1:3] for made in expected]  # tags and configs
    assert [made[3] for made in rest] == [experiment.trainable_name] * 4
    assert [made[0] for made in rest] == [f"{experiment.trial_id_state[0]}_{i:05d}" for i in range(2, 6)]
    assert experiment.trainable is trainable  # (the experiment itself keeps it)


def test_a_class_trainable_is_kept_and_still_sizes_the_trials_of_a_restored_generator(tmp_path):
    generator, _ = _generator(_ClassTrainable, tmp_path / "results", config={"cpus": tune.choice([2])})
    assert generator.save_to_dir(str(tmp_path), session_str="s") is not False
    restored = BasicVariantGenerator()
    restored.restore_from_dir(str(tmp_path))
    assert restored.next_trial().placement_group_factory.required_resources == {"CPU": 2}


def test_a_state_that_holds_the_whole_experiment_is_still_read(tmp_path):
    trainable = _trainable_holding("data")
    expected = _made(_generator(trainable, tmp_path / "results")[0])
    generator, experiment = _generator(trainable, tmp_path / "results")
    first = _made(generator, 2)
    state = generator.get_state()
    state["experiments"][0]["experiment"] = experiment  # as fasttune saved it before
    with open(tmp_path / BasicVariantGenerator.CKPT_FILE_TMPL.format("old"), "wb") as f:
        f.write(pack_state(state))
    restored = BasicVariantGenerator()
    restored.restore_from_dir(str(tmp_path))
    assert [made[1:3] for made in first + _made(restored)] == [made[1:3] for made in expected]
