"""A tiny LightningModule/DataModule pair used to test the core's trainer and CLI (no domain involved)."""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset


class TinyRegressor(L.LightningModule):
    """Linear regression y = x @ w with MSE; logs ``val/loss``."""

    def __init__(self, dim: int = 4, hidden: int = 8, lr: float = 0.05) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(torch.nn.Linear(dim, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self(x), y)
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/loss", torch.nn.functional.mse_loss(self(x), y))

    def test_step(self, batch, batch_idx):
        x, y = batch
        self.log("test/loss", torch.nn.functional.mse_loss(self(x), y))

    def predict_step(self, batch, batch_idx):
        return self(batch[0])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)


class TinyData(L.LightningDataModule):
    """Random linear data, shuffled by a seeded generator."""

    def __init__(self, n: int = 64, dim: int = 4, batch_size: int = 8, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, dim, generator=g)
        y = x @ torch.randn(dim, generator=g)
        cut = n * 3 // 4
        self.train_set, self.val_set = TensorDataset(x[:cut], y[:cut]), TensorDataset(x[cut:], y[cut:])
        self.batch_size = batch_size

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=self.batch_size)

    def test_dataloader(self):
        return self.val_dataloader()

    def predict_dataloader(self):
        return self.val_dataloader()


class StepDelay(L.Callback):
    """Sleeps after every training step, so that a test's kill lands in the middle of a run."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        time.sleep(self.seconds)


def fit_tiny(root: str | Path, max_epochs: int, ckpt_path: str | Path | None = None, step_delay: float = 0.0,
             callbacks: list[L.Callback] | None = None, **trainer_args) -> tuple[L.Trainer, TinyRegressor]:
    """The seeded tiny fit (6 shuffled batches an epoch) that resume tests compare with an uninterrupted one."""
    from polyrank.shared.trainer import build_trainer

    torch.manual_seed(0)
    model, data = TinyRegressor(), TinyData()
    extra = list(callbacks or []) + ([StepDelay(step_delay)] if step_delay else [])
    settings = {"progress_bar": "none", "loggers": False, "seed": 0, **trainer_args}
    trainer = build_trainer(default_root_dir=root, max_epochs=max_epochs, callbacks=extra, **settings)
    trainer.fit(model, datamodule=data, ckpt_path=ckpt_path)
    return trainer, model
