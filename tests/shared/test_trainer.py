"""Trainer factory: resolved settings, checkpoints, exact resume, loss falls."""

from __future__ import annotations

import torch

from polyrank.shared.trainer import build_trainer, resolve_precision, resolve_strategy
from tiny_lightning import TinyData, TinyRegressor

QUIET = dict(progress_bar="none", loggers=False, seed=0)


def _fit(root, max_epochs, ckpt_path=None):
    torch.manual_seed(0)
    model, data = TinyRegressor(), TinyData()
    trainer = build_trainer(default_root_dir=root, max_epochs=max_epochs, **QUIET)
    trainer.fit(model, datamodule=data, ckpt_path=ckpt_path)
    return trainer, model


def test_defaults_resolve_for_cpu():
    assert resolve_precision("auto", "cpu") == "32-true"
    assert resolve_precision("16-mixed", "cpu") == "16-mixed"
    assert resolve_strategy("auto", 1, 1) == "auto"
    assert resolve_strategy("auto", 2, 1) == "ddp"
    assert resolve_strategy("auto", 1, 2) == "ddp"


def test_resume_from_last_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    _, straight = _fit(tmp_path / "straight", 4)
    _fit(tmp_path / "resumed", 2)
    assert (tmp_path / "resumed" / "checkpoints" / "last.ckpt").is_file()
    _, resumed = _fit(tmp_path / "resumed", 4, ckpt_path="last")
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), f"parameter {name} differs after resume"


def test_best_checkpoint_on_monitored_metric_and_loss_falls(tmp_path):
    torch.manual_seed(0)
    model, data = TinyRegressor(), TinyData()
    trainer = build_trainer(default_root_dir=tmp_path, max_epochs=6, monitor="val/loss", **QUIET)
    before = build_trainer(default_root_dir=tmp_path / "v", **QUIET).validate(model, datamodule=data, verbose=False)
    trainer.fit(model, datamodule=data)
    after = trainer.validate(model, datamodule=data, verbose=False)
    assert after[0]["val/loss"] < 0.5 * before[0]["val/loss"]
    best = trainer.checkpoint_callback.best_model_path
    assert best and "best-" in best
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


def test_loggers_write_csv_and_tensorboard(tmp_path):
    torch.manual_seed(0)
    trainer = build_trainer(default_root_dir=tmp_path, max_epochs=1, progress_bar="none", log_every_n_steps=1)
    trainer.fit(TinyRegressor(), datamodule=TinyData())
    assert list((tmp_path / "csv").rglob("metrics.csv"))
    assert list((tmp_path / "tensorboard").rglob("events.out.tfevents.*"))
