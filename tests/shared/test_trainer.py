"""Trainer factory: resolved settings, checkpoints at every epoch, exact resume, clear resume errors, loss falls."""

from __future__ import annotations

import os
import time
from pathlib import Path

import lightning as L
import pytest
import torch

from polyrank.shared.cli import main
from polyrank.shared.errors import PolyrankError
from polyrank.shared.trainer import (STALE_TEMP_S, AtomicCheckpointIO, build_trainer, check_checkpoint,
                                     resolve_precision, resolve_strategy)
from tiny_lightning import TinyData, TinyRegressor, fit_tiny

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


# --------------------------------------------------------------------------- checkpoints and resuming (issue 9)
TINY = str(Path(__file__).parents[1] / "helpers" / "tiny.yaml")


def _held(path: Path) -> tuple[int, int]:
    state = torch.load(path, weights_only=True)
    return state["epoch"], state["global_step"]


class LastSpy(L.Callback):
    """Records, at each training batch start, (global step, step held by last.ckpt or None)."""

    def __init__(self, folder: Path) -> None:
        self.last, self.seen = folder / "last.ckpt", []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen.append((trainer.global_step, _held(self.last)[1] if self.last.is_file() else None))


def test_without_monitor_last_ckpt_is_written_at_every_epoch_end(tmp_path):
    """Guards: with no monitor, Lightning wrote no checkpoint until training ended (a kill lost everything)."""
    spy = LastSpy(tmp_path / "checkpoints")
    trainer, _ = fit_tiny(tmp_path, 3, callbacks=[spy])
    at_epoch_starts = [held for step, held in spy.seen if step % 6 == 0]
    assert at_epoch_starts == [None, 6, 12]
    assert _held(tmp_path / "checkpoints" / "last.ckpt") == (2, trainer.global_step) == (2, 18)


def test_with_monitor_last_ckpt_holds_the_final_epoch_and_best_is_kept(tmp_path):
    """Guards: with a monitor, last.ckpt was refreshed only on a new best (stuck at an early epoch)."""
    # mode "max" on a falling loss: the best stays early, so only an unconditional save reaches the final epoch
    trainer, _ = fit_tiny(tmp_path, 4, monitor="val/loss", monitor_mode="max")
    assert _held(tmp_path / "checkpoints" / "last.ckpt") == (3, trainer.global_step)
    best = Path(trainer.checkpoint_callback.best_model_path)
    assert best.name.startswith("best-") and best.is_file() and _held(best)[1] < trainer.global_step
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("*.ckpt")) == sorted([best.name, "last.ckpt"])


def test_every_n_train_steps_refreshes_last_ckpt_mid_epoch(tmp_path):
    spy = LastSpy(tmp_path / "checkpoints")
    fit_tiny(tmp_path, 2, every_n_train_steps=4, callbacks=[spy])
    for step, held in spy.seen:  # saves at steps 4, 8 and at the epoch ends 6, 12
        expected = max([s for s in (4, 6, 8) if s <= step], default=None)
        assert held == expected, f"at step {step} last.ckpt holds step {held}, expected {expected}"
    with pytest.raises(PolyrankError, match="every_n_train_steps"):
        build_trainer(default_root_dir=tmp_path / "bad", every_n_train_steps=0, **QUIET)


@pytest.mark.parametrize("method", ["fit", "validate"])
def test_ckpt_path_last_with_no_checkpoint_is_an_error(tmp_path, method):
    """Guards: Lightning warned and silently started from epoch 0."""
    trainer = build_trainer(default_root_dir=tmp_path, max_epochs=1, **QUIET)
    with pytest.raises(PolyrankError) as info:
        getattr(trainer, method)(TinyRegressor(), datamodule=TinyData(), ckpt_path="last")
    assert str(tmp_path / "checkpoints") in str(info.value) and "omit --ckpt_path" in str(info.value)
    assert trainer.global_step == 0


def test_cli_fit_ckpt_path_last_with_no_checkpoint_exits_with_one_line(tmp_path, capsys):
    assert main(["fit", "--config", TINY, "--trainer.default_root_dir", str(tmp_path), "--ckpt_path", "last"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no last checkpoint" in err[0] and "omit --ckpt_path" in err[0]
    assert not (tmp_path / "checkpoints" / "last.ckpt").exists()


@pytest.fixture()
def monitored_run(tmp_path) -> Path:
    fit_tiny(tmp_path, 2, monitor="val/loss")
    return tmp_path / "checkpoints"


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_truncated_or_corrupt_last_ckpt_is_a_clear_error(monitored_run, damage):
    """Guards: a damaged last.ckpt gave a long torch/zip traceback instead of naming the file and the way out."""
    last = monitored_run / "last.ckpt"
    data = last.read_bytes()
    last.write_bytes({"truncated": data[: len(data) // 2], "garbage": os.urandom(len(data)), "empty": b""}[damage])
    best = next(monitored_run.glob("best-*.ckpt"))
    with pytest.raises(PolyrankError) as info:
        fit_tiny(monitored_run.parent, 3, monitor="val/loss", ckpt_path="last")
    message = str(info.value)
    assert str(last) in message and "truncated or corrupt" in message
    assert best.name in message and "omit --ckpt_path" in message
    best.unlink()  # no alternative left: the message says so and points at a fresh start
    with pytest.raises(PolyrankError, match="no other checkpoint in .*omit --ckpt_path"):
        fit_tiny(monitored_run.parent, 3, ckpt_path=str(last))


def test_ckpt_path_to_a_missing_file_or_a_directory_is_a_clear_error(tmp_path, capsys):
    missing = tmp_path / "nope.ckpt"
    assert main(["validate", "--config", TINY, "--trainer.default_root_dir", str(tmp_path),
                 "--ckpt_path", str(missing)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"checkpoint {missing} does not exist" in err[0]
    with pytest.raises(PolyrankError, match="is a directory, not a checkpoint file"):
        build_trainer(default_root_dir=tmp_path, **QUIET).validate(TinyRegressor(), datamodule=TinyData(),
                                                                   ckpt_path=tmp_path)


# LightningCLI itself torch.loads a --ckpt_path file (to read its hyperparameters) before the trainer exists, and
# a file cut short at its end fails there with OSError(EINVAL): shared/cli.py checks the file first.
def test_cli_fit_with_a_truncated_checkpoint_exits_with_one_line(tmp_path, capsys):
    root = str(tmp_path)
    assert main(["fit", "--config", TINY, "--trainer.default_root_dir", root]) == 0
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:-100])
    capsys.readouterr()
    assert main(["fit", "--config", TINY, "--trainer.default_root_dir", root, "--trainer.max_epochs", "3",
                 "--ckpt_path", str(last)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(last) in err[0] and "truncated or corrupt" in err[0]


@pytest.mark.parametrize("cut", [0, 10, 100, 0.5, -30])
def test_check_checkpoint_names_every_truncation(tmp_path, cut):
    fit_tiny(tmp_path, 1)
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert check_checkpoint(last) == last
    data = last.read_bytes()
    last.write_bytes(data[: int(len(data) * cut) if isinstance(cut, float) else cut])
    with pytest.raises(PolyrankError, match=f"checkpoint {last} is truncated or corrupt"):
        check_checkpoint(last)


class Unlisted:
    """A class outside torch's weights-only allow-list."""


def test_checkpoints_load_weights_only_and_keep_rng_states_loadable(tmp_path):
    fit_tiny(tmp_path, 1)
    last = tmp_path / "checkpoints" / "last.ckpt"
    state = torch.load(last, weights_only=True)  # RNGStateCheckpoint's states are plain tensors/tuples
    assert set(state["polyrank_rng_states"]) == {"python", "numpy", "torch", "cuda"}
    state["payload"] = Unlisted()
    torch.save(state, last)
    with pytest.raises(PolyrankError, match="weights-only loading refuses"):
        fit_tiny(tmp_path, 2, ckpt_path="last")


def test_atomic_checkpoint_io_replaces_in_one_rename_and_removes_stale_temporaries(tmp_path):
    io, target = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    stale, fresh = tmp_path / ".last.ckpt.dead.tmp", tmp_path / ".last.ckpt.live.tmp"
    for temp in (stale, fresh):
        temp.write_bytes(b"partial")
    os.utime(stale, (time.time() - STALE_TEMP_S - 60,) * 2)
    io.save_checkpoint({"w": torch.arange(3)}, target)
    assert torch.equal(io.load_checkpoint(target)["w"], torch.arange(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == [fresh.name, "last.ckpt"]


def test_shuffled_loader_replays_each_epoch_exactly_after_a_rebuild():
    """A resumed run rebuilds its loaders: epoch k must then be drawn as in the uninterrupted run. A loader holding
    ``torch.Generator().manual_seed(seed)`` fails this (its epoch k after a rebuild is epoch 0's order)."""
    from polyrank.shared.trainer import shuffled_loader

    def order(loader, epoch):
        loader.sampler.set_epoch(epoch)
        return [x for batch in loader for x in batch]

    running = shuffled_loader(list(range(20)), 4, seed=5)
    uninterrupted = [order(running, e) for e in range(3)]
    assert len({tuple(o) for o in uninterrupted}) == 3 and all(sorted(o) == list(range(20)) for o in uninterrupted)
    assert order(shuffled_loader(list(range(20)), 4, seed=5), 2) == uninterrupted[2]
    assert order(shuffled_loader(list(range(20)), 4, seed=6), 0) != uninterrupted[0]


@pytest.mark.parametrize("module", ["polyrank.domains.text.training.data:PointwiseDataModule",
                                    "polyrank.domains.text.cross_encoder:BeirPairsDataModule"])
def test_text_training_loaders_shuffle_by_epoch(module):
    import importlib

    from polyrank.shared.trainer import EpochShuffle

    path, name = module.split(":")
    dm = getattr(importlib.import_module(path), name)()
    dm.setup("fit")
    assert isinstance(dm.train_dataloader().sampler, EpochShuffle)


def test_step_losses_records_the_loss_of_every_optimiser_step(tmp_path):
    import lightning as L
    import torch

    from polyrank.shared.trainer import StepLosses, build_trainer

    class Fit(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def training_step(self, batch, batch_idx):
            return ((self.w - 3.0) ** 2).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    curve = StepLosses()
    loader = torch.utils.data.DataLoader(list(range(4)), batch_size=1)
    build_trainer(default_root_dir=tmp_path, max_steps=4, max_epochs=None, progress_bar="none", loggers=False,
                  enable_checkpointing=False, accelerator="cpu", callbacks=[curve]).fit(Fit(), loader)
    # w after k SGD steps on (w - 3)^2 with lr 0.1: 3 - 3 * 0.8^k; the loss before step k+1 is (3 * 0.8^k)^2
    assert curve.losses == pytest.approx([(3 * 0.8 ** k) ** 2 for k in range(4)])
