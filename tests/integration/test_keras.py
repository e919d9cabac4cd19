"""fasttune.integration.keras on real Keras 3 training (torch backend, CPU) in real sweeps: it
reports what Keras logged (Keras's own History and batch logs of the same run), checkpoints on
the chosen events at the chosen frequency, a restored trial goes on from its saved epoch as one
uninterrupted training, and a metric Keras did not log fails the trial with its name."""
import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported (tf.keras needs TensorFlow)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import fasttune as tune  # noqa: E402
from fasttune.integration.keras import TuneReportCallback, TuneReportCheckpointCallback  # noqa: E402
from fasttune_testing import fit, lines  # noqa: E402

from framework_testing import save_oracle, sweep_variants  # noqa: E402

pytestmark = pytest.mark.usefixtures("ray_session")

EPOCHS = 4
BATCHES_PER_EPOCH = 3


def data():
    """``(x, y, x_valid, y_valid)``: 36 training rows (3 batches of 12) and 12 validation rows."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 3)).astype("float32")
    y = (x @ np.array([1.0, -2.0, 0.5]) + rng.normal(scale=0.1, size=48)).astype("float32")
    return x[:36], y[:36], x[36:], y[36:]


def new_model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
    return model


def train(model, callbacks, epochs=EPOCHS, initial_epoch=0):
    x, y, x_valid, y_valid = data()
    return model.fit(x, y, batch_size=12, epochs=epochs, initial_epoch=initial_epoch,
                     validation_data=(x_valid, y_valid), shuffle=False, verbose=0, callbacks=callbacks)


class KeepBatchLogs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.logs = []

    def on_train_batch_end(self, batch, logs=None):
        self.logs.append(dict(logs))


VARIANTS = [
    # every metric each epoch; a checkpoint after epochs 2 and 4
    {"metrics": None, "frequency": 2},
    # renamed metrics, no checkpoints
    {"metrics": {"loss": "val_loss", "train_mae": "mae"}, "frequency": 0},
    # reports each epoch, checkpoints on every 4th training batch (with that batch's logs)
    {"metrics": ["loss"], "frequency": 4, "checkpoint_on": "train_batch_end"},
    # a metric Keras does not log: the trial fails at the first epoch's end, naming it
    {"metrics": {"accuracy": "val_acc"}, "frequency": 1},
]


def train_beside_keras_logs(variant, oracle_path):
    callback = TuneReportCheckpointCallback(
        metrics=variant["metrics"], frequency=variant["frequency"],
        checkpoint_on=variant.get("checkpoint_on", "epoch_end"))
    kept = KeepBatchLogs()
    model = new_model()
    history = train(model, [kept, callback])
    x_valid = data()[2]
    save_oracle(oracle_path, {"history": history.history, "batches": kept.logs,
                              "predictions": model.predict(x_valid, verbose=0).tolist()})


def test_reports_what_keras_logged_and_checkpoints_at_the_frequency_and_names_a_metric_not_logged(storage, tmp_path):
    swept = sweep_variants(train_beside_keras_logs, VARIANTS, storage, tmp_path)
    (every_result, every, every_oracle), (_, renamed, renamed_oracle), (batch_result, batch_rows, batch_oracle) = swept[:3]
    assert [result.error is None for result, _, _ in swept] == [True, True, True, False]
    failed, failed_rows, _ = swept[3]
    assert "'val_acc' was not evaluated" in str(failed.error) and failed_rows == []
    assert "'val_loss'" in str(failed.error)  # what Keras did log
    history = every_oracle["history"]
    assert set(history) == {"loss", "mae", "val_loss", "val_mae"}
    assert [{name: row[name] for name in history} for row in every] == [
        {name: values[epoch] for name, values in history.items()} for epoch in range(EPOCHS)]
    assert [row["checkpoint_dir_name"] is not None for row in every] == [False, True, False, True]

    history = renamed_oracle["history"]
    assert [(row["loss"], row["train_mae"]) for row in renamed] == list(zip(history["val_loss"], history["mae"]))
    assert "val_loss" not in renamed[0] and not any(row["checkpoint_dir_name"] for row in renamed)

    # Epoch rows and, on training batches 4, 8 and 12, rows of that batch's logs with a checkpoint.
    history, batches = batch_oracle["history"], batch_oracle["batches"]
    assert len(batches) == EPOCHS * BATCHES_PER_EPOCH
    expected = []
    for epoch in range(EPOCHS):
        for batch in range(epoch * BATCHES_PER_EPOCH, (epoch + 1) * BATCHES_PER_EPOCH):
            if (batch + 1) % 4 == 0:
                expected.append((batches[batch]["loss"], True))
        expected.append((history["loss"][epoch], False))
    assert [(row["loss"], row["checkpoint_dir_name"] is not None) for row in batch_rows] == expected

    # The last checkpoint holds the trained model and the epochs it had finished.
    checkpoint = every_result.checkpoint
    assert sorted(os.listdir(checkpoint.path)) == [".metadata.json", "model.keras"]
    assert TuneReportCheckpointCallback.get_initial_epoch(checkpoint) == EPOCHS
    model = TuneReportCheckpointCallback.get_model(checkpoint)
    np.testing.assert_array_equal(model.predict(data()[2], verbose=0), np.array(every_oracle["predictions"]))
    # A checkpoint after batch 12 (the last of epoch 4, before its end) has finished 3 epochs.
    assert TuneReportCheckpointCallback.get_initial_epoch(batch_result.checkpoint) == EPOCHS - 1


def fails_after_two_epochs_then_resumes(config):
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        model, initial_epoch = new_model(), 0
    else:
        model = TuneReportCheckpointCallback.get_model(checkpoint)
        initial_epoch = TuneReportCheckpointCallback.get_initial_epoch(checkpoint)
    tune.report({"initial_epoch": initial_epoch})
    train(model, [TuneReportCheckpointCallback(metrics="val_loss", frequency=2)],
          epochs=2 if checkpoint is None else EPOCHS, initial_epoch=initial_epoch)
    if checkpoint is None:
        raise RuntimeError("fails after 2 epochs on purpose")


def test_a_restored_trial_goes_on_from_its_saved_epoch(storage):
    grid = fit(fails_after_two_epochs_then_resumes, storage, failure_config=tune.FailureConfig(max_failures=1))
    (result,) = list(grid)
    assert result.error is None
    rows = lines(os.path.join(result.path, "result.json"))
    # One uninterrupted 4-epoch training (with its optimizer's state) gives the same losses.
    uninterrupted = train(new_model(), []).history["val_loss"]
    checkpointed_epochs = (2, 4)  # Keras's epoch numbers go on after initial_epoch
    assert [(row.get("initial_epoch"), row.get("val_loss"), row["checkpoint_dir_name"] is not None)
            for row in rows] == (
        [(0, None, False)] + [(None, uninterrupted[e], e + 1 in checkpointed_epochs) for e in range(2)]
        + [(2, None, False)] + [(None, uninterrupted[e], e + 1 in checkpointed_epochs) for e in range(2, 4)])
    assert TuneReportCheckpointCallback.get_initial_epoch(result.checkpoint) == EPOCHS


def test_bad_arguments_and_the_removed_callback_say_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match=r"checkpoint_on has unknown Keras events \['epoch_finish'\]"):
        TuneReportCheckpointCallback(checkpoint_on="epoch_finish")
    with pytest.raises(ValueError, match="frequency must be an int >= 0"):
        TuneReportCheckpointCallback(frequency=-1)
    with pytest.raises(TypeError, match="metrics must be None"):
        TuneReportCheckpointCallback(metrics=3)
    with pytest.raises(DeprecationWarning, match="with checkpoint_on=\\[\\] it only reports"):
        TuneReportCallback()
    with pytest.raises(ValueError, match="has no 'epoch'"):
        TuneReportCheckpointCallback.get_initial_epoch(tune.Checkpoint.from_directory(str(tmp_path)))
