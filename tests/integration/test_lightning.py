"""fasttune.integration.pytorch_lightning on real Lightning training (CPU) in real sweeps: it
reports what the module logged (``trainer.callback_metrics`` as Lightning holds them in the same
run), never the sanity check, checkpoints every ``frequency``-th validation with
``trainer.save_checkpoint``, a trial restored with ``fit(ckpt_path=...)`` goes on from the saved
epoch as one uninterrupted training, and a metric never logged fails the trial with its name."""
import os
import warnings

import lightning.pytorch as pl
import pytest
import torch

import fasttune as tune
from fasttune.integration.pytorch_lightning import TuneReportCallback, TuneReportCheckpointCallback
from fasttune_testing import fit, lines

from framework_testing import save_oracle, sweep_variants

pytestmark = pytest.mark.usefixtures("ray_session")

EPOCHS = 4


class Regression(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))

    def training_step(self, batch, batch_index):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x).squeeze(-1), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_index):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x).squeeze(-1), y))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.01)


def loaders():
    """36 training rows in batches of 12 and 12 validation rows in batches of 6, in order."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(48, 3, generator=generator)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.1 * torch.randn(48, generator=generator)
    train_set = torch.utils.data.TensorDataset(x[:36], y[:36])
    valid_set = torch.utils.data.TensorDataset(x[36:], y[36:])
    return (torch.utils.data.DataLoader(train_set, batch_size=12),
            torch.utils.data.DataLoader(valid_set, batch_size=6))


def train(callbacks, max_epochs=EPOCHS, ckpt_path=None):
    pl.seed_everything(0, verbose=False)
    model = Regression()
    trainer = pl.Trainer(max_epochs=max_epochs, accelerator="cpu", devices=1, deterministic=True, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=os.getcwd(), callbacks=callbacks)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's advice on data loader workers
        trainer.fit(model, *loaders(), ckpt_path=ckpt_path)
    return trainer


class KeepValidationMetrics(pl.Callback):
    """What Lightning holds in ``callback_metrics`` after each validation (sanity check left out)."""

    def __init__(self):
        self.metrics = []

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.metrics.append({name: value.item() for name, value in trainer.callback_metrics.items()})


VARIANTS = [
    # every metric after each validation; a checkpoint after validations 2 and 4
    {"metrics": None, "frequency": 2},
    # renamed, no checkpoints
    {"metrics": {"loss": "val_loss"}, "save_checkpoints": False},
    # a metric the module never logs: the trial fails at the first validation, naming it
    {"metrics": {"accuracy": "val_acc"}},
]


def train_beside_lightning_metrics(variant, oracle_path):
    kept = KeepValidationMetrics()
    train([kept, TuneReportCheckpointCallback(**variant)])
    save_oracle(oracle_path, kept.metrics)


def test_reports_what_lightning_logged_and_checkpoints_at_the_frequency_and_names_a_metric_not_logged(storage, tmp_path):
    swept = sweep_variants(train_beside_lightning_metrics, VARIANTS, storage, tmp_path)
    (every_result, every, every_oracle), (_, renamed, renamed_oracle), (failed, failed_rows, _) = swept
    assert [result.error is None for result, _, _ in swept] == [True, True, False]
    assert "'val_acc' was not evaluated" in str(failed.error) and failed_rows == []
    assert "'val_loss'" in str(failed.error)  # what the module did log

    # One row per validation, not one for the sanity check; the epoch's train_loss is logged
    # after its validation, so the first validation has only val_loss.
    assert len(every_oracle) == EPOCHS and set(every_oracle[0]) == {"val_loss"}
    assert set(every_oracle[1]) == {"val_loss", "train_loss"}
    assert [{name: row[name] for name in logged} for row, logged in zip(every, every_oracle)] == every_oracle
    assert len(every) == EPOCHS and "train_loss" not in every[0]
    assert [row["checkpoint_dir_name"] is not None for row in every] == [False, True, False, True]

    assert [row["loss"] for row in renamed] == [logged["val_loss"] for logged in renamed_oracle]
    assert "val_loss" not in renamed[0] and not any(row["checkpoint_dir_name"] for row in renamed)

    # The checkpoint is Lightning's own file, of the last epoch.
    checkpoint = every_result.checkpoint
    assert os.listdir(checkpoint.path) == ["checkpoint"]
    saved = torch.load(os.path.join(checkpoint.path, "checkpoint"), weights_only=False)
    assert saved["epoch"] == EPOCHS - 1


def fails_after_two_epochs_then_resumes(config):
    checkpoint = tune.get_checkpoint()
    callback = TuneReportCheckpointCallback(metrics="val_loss", frequency=2)
    if checkpoint is None:
        train([callback], max_epochs=2)
        raise RuntimeError("fails after 2 epochs on purpose")
    with checkpoint.as_directory() as directory:
        tune.report({"resumed": True})
        train([callback], ckpt_path=os.path.join(directory, "checkpoint"))


def test_a_restored_trial_goes_on_from_its_saved_epoch(storage):
    grid = fit(fails_after_two_epochs_then_resumes, storage, failure_config=tune.FailureConfig(max_failures=1))
    (result,) = list(grid)
    assert result.error is None
    rows = lines(os.path.join(result.path, "result.json"))
    kept = KeepValidationMetrics()
    train([kept])
    uninterrupted = [logged["val_loss"] for logged in kept.metrics]
    # Epochs 1-2, then after the restore epochs 3-4; the count of validations is in Lightning's
    # checkpoint, so the second checkpoint is after the 4th validation, as without the failure.
    assert [(row.get("resumed"), row.get("val_loss"), row["checkpoint_dir_name"] is not None) for row in rows] == (
        [(None, uninterrupted[0], False), (None, uninterrupted[1], True), (True, None, False),
         (None, uninterrupted[2], False), (None, uninterrupted[3], True)])


def test_bad_arguments_and_the_deprecated_callback():
    with pytest.raises(ValueError, match=r"on has unknown Lightning hooks \['validation_finish'\]"):
        TuneReportCheckpointCallback(on="validation_finish")
    with pytest.raises(ValueError, match="frequency must be an int >= 0"):
        TuneReportCheckpointCallback(frequency=-1)
    with pytest.raises(TypeError, match="metrics must be None"):
        TuneReportCheckpointCallback(metrics=3)
    with pytest.warns(UserWarning, match="TuneReportCallback is deprecated"):
        callback = TuneReportCallback(metrics="val_loss")
    assert isinstance(callback, pl.Callback) and not callback._save_checkpoints
