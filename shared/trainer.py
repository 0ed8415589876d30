"""Trainer factory: one place that turns a few typed knobs into a configured ``lightning.Trainer``.

Every domain trains through :func:`build_trainer` (the ``trainer:`` section of a config is its
signature, see :mod:`polyrank.shared.cli`). It picks:

- accelerator: CUDA when present, else CPU (``accelerator="auto"``);
- precision: ``bf16-mixed`` on CUDA devices with bf16 support, ``32-true`` otherwise (``precision="auto"``);
- strategy: DDP when more than one device or node is used (``"fsdp"`` may be asked for), else single device;
- checkpoints: ``last.ckpt`` always (so ``--ckpt_path last`` resumes exactly) and the best ``save_top_k``
  by ``monitor`` when a monitored metric is given;
- loggers: CSV + TensorBoard under ``default_root_dir``; a Rich progress bar;
- seeding and determinism: ``seed_everything(seed, workers=True)``, ``deterministic``, and RNG states saved
  in checkpoints so that a resumed run is identical to an uninterrupted one.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger

logger = logging.getLogger(__name__)


def resolve_precision(precision: str, accelerator: str) -> str:
    """``auto`` becomes ``bf16-mixed`` on a bf16-capable CUDA device and ``32-true`` elsewhere."""
    if precision != "auto":
        return precision
    on_cuda = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if on_cuda and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def resolve_strategy(strategy: str, devices: int | str, num_nodes: int) -> str:
    """``auto`` becomes ``ddp`` for more than one device or node; explicit choices pass through."""
    if strategy != "auto":
        return strategy
    if isinstance(devices, str):
        n_devices = torch.cuda.device_count() if devices in ("auto", "-1") else len(devices.split(","))
    else:
        n_devices = devices
    return "ddp" if n_devices > 1 or num_nodes > 1 else "auto"


class RNGStateCheckpoint(Callback):
    """Saves the Python, NumPy and torch (CPU and CUDA) RNG states in each checkpoint and restores them,
    so that a run resumed from ``last.ckpt`` draws the same shuffles and dropout masks as an
    uninterrupted one (Lightning restores model, optimiser and loop state, not the RNGs)."""

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        name, keys, pos, has_gauss, gauss = np.random.get_state()
        checkpoint["polyrank_rng_states"] = {
            "python": random.getstate(),
            "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        states = checkpoint.get("polyrank_rng_states")
        if not states:
            return
        random.setstate(states["python"])
        name, keys, pos, has_gauss, gauss = states["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        torch.set_rng_state(states["torch"])
        if states["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])


def _progress_bar(kind: str) -> list[Callback]:
    if kind == "rich":
        from lightning.pytorch.callbacks import RichProgressBar

        return [RichProgressBar(leave=True)]
    return []


def build_trainer(
    default_root_dir: str | Path = "runs/train",
    max_epochs: int | None = 10,
    max_steps: int = -1,
    accelerator: str = "auto",
    devices: int | str = "auto",
    num_nodes: int = 1,
    precision: str = "auto",
    strategy: str = "auto",
    monitor: str | None = None,
    monitor_mode: Literal["min", "max"] = "min",
    save_top_k: int = 1,
    accumulate_grad_batches: int = 1,
    gradient_clip_val: float | None = None,
    gradient_clip_algorithm: Literal["norm", "value"] = "norm",
    deterministic: bool | Literal["warn"] = "warn",
    seed: int | None = 0,
    progress_bar: Literal["rich", "tqdm", "none"] = "rich",
    loggers: bool = True,
    limit_train_batches: int | float | None = None,
    limit_val_batches: int | float | None = None,
    limit_test_batches: int | float | None = None,
    limit_predict_batches: int | float | None = None,
    val_check_interval: int | float | None = None,
    check_val_every_n_epoch: int | None = 1,
    log_every_n_steps: int = 10,
    num_sanity_val_steps: int = 0,
    enable_checkpointing: bool = True,
    callbacks: list[Callback] | None = None,
) -> L.Trainer:
    """A ``lightning.Trainer`` with polyrank's defaults; arguments mirror the Trainer's own names.

    Args:
        default_root_dir: run directory; checkpoints go to ``<dir>/checkpoints``, logs to ``<dir>/csv``
            and ``<dir>/tensorboard``.
        precision: ``"auto"`` (bf16-mixed on capable CUDA, 32-true otherwise) or any Lightning precision.
        strategy: ``"auto"`` (DDP when several devices/nodes), ``"ddp"``, ``"fsdp"``, ...
        monitor: metric name for the "best" checkpoint (e.g. ``"val/loss"``); ``last.ckpt`` is always kept.
        seed: seeds Python, NumPy and torch (and dataloader workers); None leaves them alone.
    """
    if seed is not None:
        L.seed_everything(seed, workers=True, verbose=False)
    root = Path(default_root_dir)
    all_callbacks: list[Callback] = list(callbacks or []) + _progress_bar(progress_bar) + [RNGStateCheckpoint()]
    if enable_checkpointing:
        all_callbacks.append(ModelCheckpoint(
            dirpath=root / "checkpoints", save_last=True, monitor=monitor, mode=monitor_mode,
            save_top_k=save_top_k if monitor else 0, filename="best-{epoch}-{step}" if monitor else None,
            auto_insert_metric_name=False))
    run_loggers: list[Logger] | bool = False
    if loggers:
        run_loggers = [CSVLogger(root, name="csv"), TensorBoardLogger(root, name="tensorboard")]
        all_callbacks.append(LearningRateMonitor(logging_interval="step"))
    resolved = resolve_precision(precision, accelerator)
    logger.info("trainer: accelerator=%s precision=%s strategy=%s", accelerator, resolved,
                resolve_strategy(strategy, devices, num_nodes))
    return L.Trainer(
        default_root_dir=root, max_epochs=max_epochs, max_steps=max_steps, accelerator=accelerator,
        devices=devices, num_nodes=num_nodes, precision=resolved,
        strategy=resolve_strategy(strategy, devices, num_nodes), callbacks=all_callbacks, logger=run_loggers,
        accumulate_grad_batches=accumulate_grad_batches, gradient_clip_val=gradient_clip_val,
        gradient_clip_algorithm=gradient_clip_algorithm, deterministic=deterministic,
        enable_progress_bar=progress_bar != "none", enable_checkpointing=enable_checkpointing,
        limit_train_batches=limit_train_batches, limit_val_batches=limit_val_batches,
        limit_test_batches=limit_test_batches, limit_predict_batches=limit_predict_batches,
        val_check_interval=val_check_interval, check_val_every_n_epoch=check_val_every_n_epoch,
        log_every_n_steps=log_every_n_steps, num_sanity_val_steps=num_sanity_val_steps,
        enable_model_summary=False,
    )
