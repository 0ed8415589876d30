"""Trainer factory: one place that turns a few typed knobs into a configured ``lightning.Trainer``.

Every domain trains through :func:`build_trainer` (the ``trainer:`` section of a config is its
signature, see :mod:`polyrank.shared.cli`). It picks:

- accelerator: CUDA when present, else CPU (``accelerator="auto"``);
- precision: ``bf16-mixed`` on CUDA devices with bf16 support, ``32-true`` otherwise (``precision="auto"``);
- strategy: DDP when more than one device or node is used (``"fsdp"`` may be asked for), else single device;
- checkpoints: ``last.ckpt`` at the end of every training epoch (and every ``every_n_train_steps`` optimiser
  steps when asked), so that a run killed at any point leaves the latest state and ``--ckpt_path last``
  resumes it exactly; the best ``save_top_k`` by ``monitor`` as ``best-<epoch>-<step>.ckpt`` when a
  monitored metric is given. Every checkpoint is written to a temporary sibling and renamed into place, so a
  kill mid-write leaves the previous file intact (:class:`AtomicCheckpointIO`);
- resuming: ``ckpt_path="last"`` with no checkpoint, a missing file, or a truncated/corrupt file is a
  :class:`~polyrank.shared.errors.PolyrankError` naming the file and the alternatives, not a silent fresh
  start or a traceback (:class:`PolyrankTrainer`); checkpoints load with ``torch.load(weights_only=True)``;
- loggers: CSV + TensorBoard under ``default_root_dir``; a Rich progress bar;
- seeding and determinism: ``seed_everything(seed, workers=True)``, ``deterministic``, and RNG states saved
  in checkpoints so that a resumed run is identical to an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import random
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.trainer.states import TrainerFn

from polyrank.shared.atomic import atomic_file
from polyrank.shared.errors import MissingResourceError, PolyrankError

logger = logging.getLogger(__name__)

STALE_TEMP_S = 600  # a checkpoint temp file untouched this long was left by a killed writer


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


class EpochShuffle(torch.utils.data.Sampler[int]):
    """Shuffles ``range(n)`` by a permutation drawn from ``(seed, epoch)`` alone; Lightning calls :meth:`set_epoch`.

    A ``DataLoader(shuffle=True, generator=torch.Generator().manual_seed(seed))`` draws epoch k's order from a
    generator that lives in the loader: a run resumed at epoch k rebuilds the loader and replays epoch 0's order,
    so it does not end with the weights of an uninterrupted run. Here the order depends on nothing else.
    """

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        return iter(np.random.default_rng((self.seed, self.epoch)).permutation(self.n).tolist())

    def __len__(self) -> int:
        return self.n


def shuffled_loader(items: Any, batch_size: int, seed: int, collate_fn: Callable | None = list,
                    **kwargs: Any) -> torch.utils.data.DataLoader:
    """A training DataLoader over ``items`` shuffled by :class:`EpochShuffle` (exact on resume)."""
    return torch.utils.data.DataLoader(items, batch_size=batch_size, sampler=EpochShuffle(len(items), seed),
                                       collate_fn=collate_fn, **kwargs)


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


class LastCheckpoint(ModelCheckpoint):
    """Keeps ``<dirpath>/last.ckpt`` equal to the latest training state.

    Lightning's ``ModelCheckpoint(save_last=True)`` refreshes ``last.ckpt`` only when it also writes a top-k
    checkpoint: with no monitor (``save_top_k=0``) it writes nothing until training ends, and with a monitor
    ``last.ckpt`` stays at the last *new best* epoch. This callback writes it at the end of every training epoch
    (after that epoch's validation, so a resumed run continues exactly) and, when ``every_n_train_steps`` is
    set, after every that many optimiser steps (a mid-epoch resume restarts the epoch's remaining batches
    from a fresh shuffle, so it is close to, not identical with, an uninterrupted run).
    """

    def __init__(self, dirpath: str | Path, every_n_train_steps: int | None = None) -> None:
        if every_n_train_steps is not None and every_n_train_steps < 1:
            raise PolyrankError(f"every_n_train_steps must be a positive number of steps or None, "
                                f"got {every_n_train_steps}")
        super().__init__(dirpath=dirpath, save_last=True, save_top_k=0, enable_version_counter=False)
        self.every_n_steps = every_n_train_steps

    @property
    def state_key(self) -> str:
        return self._generate_state_key(every_n_train_steps=self.every_n_steps)

    @staticmethod
    def _fitting(trainer: L.Trainer) -> bool:
        return not trainer.fast_dev_run and trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking

    def _write(self, trainer: L.Trainer) -> None:
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if (self.every_n_steps and step % self.every_n_steps == 0 and step != self._last_global_step_saved
                and self._fitting(trainer)):
            self._write(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._fitting(trainer):  # also when a step checkpoint was just written: the epoch is now complete
            self._write(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """``last.ckpt`` follows training progress; validation-time saving is the best-checkpoint's job."""

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step != self._last_global_step_saved and self._fitting(trainer):
            self._write(trainer)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``torch.save``/``torch.load`` checkpoint I/O, made crash-safe and explicit about bad files.

    Saving: Lightning (through an fsspec transaction) writes a temporary file in ``$TMPDIR`` and moves it
    over the destination with ``shutil.move``. When ``$TMPDIR`` is on another filesystem than the run (a tmpfs
    ``/tmp``; runs on a data or network disk) that move is a copy onto ``last.ckpt``, so a kill during it
    leaves a truncated ``last.ckpt`` where the good one was (measured: SIGXFSZ during the copy leaves half the
    file); the killed writer's temporary also stays in ``$TMPDIR``, and nothing is fsynced. Here a local
    checkpoint is written to a temporary sibling, fsynced and renamed over the destination in one step
    (:func:`~polyrank.shared.atomic.atomic_file`); temporaries left by killed writers are removed by the
    next save of the same file.

    Loading: always ``torch.load(weights_only=True)`` unless the caller asks otherwise; a file that does not
    load raises :class:`~polyrank.shared.errors.PolyrankError` naming it and the checkpoints to use instead.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        if storage_options is not None or not _is_local_file_protocol(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        _remove_stale_temporaries(path)
        with atomic_file(path, "wb") as handle:
            torch.save(checkpoint, handle)

    def load_checkpoint(self, path: str | Path, map_location: Callable | None = lambda storage, loc: storage,
                        weights_only: bool | None = None) -> dict[str, Any]:
        if _is_local_file_protocol(path) and not Path(path).exists():
            raise _missing(path)
        if _is_local_file_protocol(path) and Path(path).is_dir():  # sharding strategies load directories themselves
            raise PolyrankError(f"checkpoint {path} is a directory, not a checkpoint file; pass its last.ckpt or a "
                                "best-*.ckpt (a sharded checkpoint directory needs the strategy that wrote it)")
        try:
            return super().load_checkpoint(path, map_location, True if weights_only is None else weights_only)
        except (FileNotFoundError, PermissionError, IsADirectoryError, MemoryError, torch.cuda.OutOfMemoryError):
            raise
        except Exception as exc:  # torch raises RuntimeError, EOFError, ValueError, UnpicklingError, ... here
            raise unreadable_checkpoint_error(path, exc) from exc


def _missing(path: str | Path) -> MissingResourceError:
    return MissingResourceError(f"checkpoint {path} does not exist; pass the last.ckpt or best-*.ckpt of a run "
                                "(<default_root_dir>/checkpoints/), or omit --ckpt_path to start fresh")


def check_checkpoint(path: str | Path) -> Path:
    """Raise a :class:`~polyrank.shared.errors.PolyrankError` unless ``path`` is a checkpoint that
    ``torch.load(weights_only=True)`` reads; cheap (tensor data is memory-mapped, not read). Call it before
    anything else loads a user-given checkpoint, so that a damaged file is one clear line, not a traceback."""
    path = Path(path)
    if not path.is_file():
        raise _missing(path)
    try:  # truncation loses the zip's central directory at the end of the file, so is_zipfile() is False then
        torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except PermissionError as exc:
        raise PolyrankError(f"cannot read checkpoint {path}: {exc.strerror}; check its permissions") from exc
    except (MemoryError, torch.cuda.OutOfMemoryError):
        raise
    except Exception as exc:  # truncated zip: RuntimeError/ValueError/OSError(EINVAL); empty: EOFError; ...
        raise unreadable_checkpoint_error(path, exc) from exc
    return path


def _remove_stale_temporaries(path: Path) -> None:
    """Delete ``.<name>.*.tmp`` siblings of ``path`` that no writer has touched for :data:`STALE_TEMP_S`."""
    now = time.time()
    for temp in path.parent.glob(f".{path.name}.*.tmp"):
        with contextlib.suppress(OSError):
            if now - temp.stat().st_mtime > STALE_TEMP_S:
                temp.unlink()


def unreadable_checkpoint_error(path: str | Path, exc: BaseException) -> PolyrankError:
    """The error for a checkpoint ``torch.load(weights_only=True)`` cannot read, with the ways forward."""
    path = Path(path)
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    if isinstance(exc, pickle.UnpicklingError) and "Unsupported global" in str(exc):
        what = (f"holds Python objects that weights-only loading refuses ({reason}); polyrank never unpickles "
                "arbitrary objects, so only checkpoints written by polyrank/Lightning training can be resumed")
    else:
        what = f"is truncated or corrupt ({type(exc).__name__}: {reason})"
    others = sorted((p for p in path.parent.glob("*.ckpt") if p.name != path.name and p.is_file()),
                    key=lambda p: p.stat().st_mtime, reverse=True)
    if others:
        ways = (f"resume from another checkpoint of that run instead, newest first: "
                f"{', '.join(p.name for p in others[:5])} (e.g. --ckpt_path {others[0]}), or omit --ckpt_path "
                "to start fresh")
    else:
        ways = f"there is no other checkpoint in {path.parent}; omit --ckpt_path to start fresh"
    return PolyrankError(f"checkpoint {path} {what}; {ways}")


def _checked(path: Path) -> str:
    """A checkpoint file, checked; a directory (a sharded FSDP/DeepSpeed checkpoint) is left to its strategy."""
    return str(path if path.is_dir() else check_checkpoint(path))


class PolyrankTrainer(L.Trainer):
    """``lightning.Trainer`` whose ``fit/validate/test/predict`` refuse a ``ckpt_path`` they cannot honour.

    Lightning treats ``ckpt_path="last"`` with no checkpoint as a fresh start with a warning, so a resume
    that finds nothing silently retrains from epoch 0; here it is an error naming the folder searched. A
    missing, truncated or corrupt file is reported by :func:`check_checkpoint` before anything is built.
    """

    def _checked_ckpt_path(self, ckpt_path: str | Path | None) -> str | Path | None:
        if (ckpt_path is None or ckpt_path in ("best", "hpc") or str(ckpt_path).lower().startswith("registry")
                or not _is_local_file_protocol(ckpt_path)):
            return ckpt_path  # resolved (and loaded through AtomicCheckpointIO) by Lightning
        if ckpt_path != "last":
            return _checked(Path(ckpt_path))
        folders = [Path(cb.dirpath) for cb in self.checkpoint_callbacks
                   if isinstance(cb, ModelCheckpoint) and cb.dirpath and _is_local_file_protocol(cb.dirpath)]
        folders = list(dict.fromkeys(folders or [Path(self.default_root_dir) / "checkpoints"]))
        found = [p for folder in folders for p in folder.glob("last*.ckpt")]
        if not found:
            where = ", ".join(str(f) for f in folders)
            raise PolyrankError(f"--ckpt_path last: no last checkpoint (last*.ckpt) in {where}, so there is nothing "
                                "to resume; to start fresh omit --ckpt_path, to resume another run set "
                                "trainer.default_root_dir to its folder or pass its checkpoint file")
        return _checked(max(found, key=lambda p: p.stat().st_mtime))

    def fit(self, model: L.LightningModule, train_dataloaders: Any = None, val_dataloaders: Any = None,
            datamodule: L.LightningDataModule | None = None, ckpt_path: str | Path | None = None,
            weights_only: bool | None = None) -> None:
        return super().fit(model, train_dataloaders, val_dataloaders, datamodule, self._checked_ckpt_path(ckpt_path),
                           weights_only)

    def validate(self, model: L.LightningModule | None = None, dataloaders: Any = None,
                 ckpt_path: str | Path | None = None, verbose: bool = True,
                 datamodule: L.LightningDataModule | None = None, weights_only: bool | None = None) -> list:
        return super().validate(model, dataloaders, self._checked_ckpt_path(ckpt_path), verbose, datamodule,
                                weights_only)

    def test(self, model: L.LightningModule | None = None, dataloaders: Any = None,
             ckpt_path: str | Path | None = None, verbose: bool = True,
             datamodule: L.LightningDataModule | None = None, weights_only: bool | None = None) -> list:
        return super().test(model, dataloaders, self._checked_ckpt_path(ckpt_path), verbose, datamodule, weights_only)

    def predict(self, model: L.LightningModule | None = None, dataloaders: Any = None,
                datamodule: L.LightningDataModule | None = None, return_predictions: bool | None = None,
                ckpt_path: str | Path | None = None, weights_only: bool | None = None) -> list | None:
        return super().predict(model, dataloaders, datamodule, return_predictions, self._checked_ckpt_path(ckpt_path),
                               weights_only)


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
    every_n_train_steps: int | None = None,
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
) -> PolyrankTrainer:
    """A ``lightning.Trainer`` (:class:`PolyrankTrainer`) with polyrank's defaults; arguments mirror the Trainer's
    own names.

    Args:
        default_root_dir: run directory; checkpoints go to ``<dir>/checkpoints``, logs to ``<dir>/csv``
            and ``<dir>/tensorboard``.
        precision: ``"auto"`` (bf16-mixed on capable CUDA, 32-true otherwise) or any Lightning precision.
        strategy: ``"auto"`` (DDP when several devices/nodes), ``"ddp"``, ``"fsdp"``, ...
        monitor: metric name for the "best" checkpoints (e.g. ``"val/loss"``), ``save_top_k`` of them named
            ``best-<epoch>-<step>.ckpt``; ``last.ckpt`` is written at every epoch end with or without it.
        every_n_train_steps: also refresh ``last.ckpt`` every this many optimiser steps (None: epoch ends only),
            for long epochs where losing one to a kill is too costly. Resuming from a mid-epoch checkpoint
            is close to, not bit-identical with, an uninterrupted run (the epoch's rest is reshuffled).
        seed: seeds Python, NumPy and torch (and dataloader workers); None leaves them alone.
    """
    if seed is not None:
        L.seed_everything(seed, workers=True, verbose=False)
    root = Path(default_root_dir)
    all_callbacks: list[Callback] = list(callbacks or []) + _progress_bar(progress_bar) + [RNGStateCheckpoint()]
    if enable_checkpointing:
        if monitor:  # first, so that ``trainer.checkpoint_callback`` (and ``ckpt_path="best"``) is this one
            all_callbacks.append(ModelCheckpoint(
                dirpath=root / "checkpoints", save_last=False, monitor=monitor, mode=monitor_mode,
                save_top_k=save_top_k, filename="best-{epoch}-{step}", auto_insert_metric_name=False))
        all_callbacks.append(LastCheckpoint(root / "checkpoints", every_n_train_steps))
    run_loggers: list[Logger] | bool = False
    if loggers:
        run_loggers = [CSVLogger(root, name="csv"), TensorBoardLogger(root, name="tensorboard")]
        all_callbacks.append(LearningRateMonitor(logging_interval="step"))
    resolved = resolve_precision(precision, accelerator)
    logger.info("trainer: accelerator=%s precision=%s strategy=%s", accelerator, resolved,
                resolve_strategy(strategy, devices, num_nodes))
    return PolyrankTrainer(
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
        enable_model_summary=False, plugins=[AtomicCheckpointIO()],
    )


class StepLosses(L.Callback):
    """Keeps the training loss of every optimiser step in ``.losses`` (a learning curve for reports and demos)."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None:
            self.losses.append(float(loss))
