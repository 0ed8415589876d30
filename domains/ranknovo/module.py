"""Training RankNovo through the shared trainer (the reference release has no training loop).

Loss (our documented choice: the heads and labels imply regression of PMD and RMD, but the release ships
inference only and the exact loss/weighting was not available offline):
``L = loss(PMD_pred, PMD) + rmd_weight * loss(RMD_pred, RMD)`` with ``loss`` = MSE by
default (``"l1"`` / ``"huber"`` as options), the PMD term averaged over real candidate rows and the RMD
term over real residues (``rmd_mask``). AdamW (lr 1e-4, weight decay 8e-5 in the reference config),
linear warm-up then cosine decay per step (``CosineWarmupScheduler``), gradient clipping by norm through
the trainer (1.5 in the reference), and a non-finite-gradient guard that zeroes the step's gradients
(``on_after_backward`` in the reference).

Validation logs ``val/loss`` and ``val/pick_hit``: the share of spectra whose lowest-predicted-PMD
candidate has the lowest true PMD (the correct candidate "rising" to the top).
"""

from __future__ import annotations

import logging
import math
from functools import partial
from pathlib import Path
from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from polyrank.domains.ranknovo.dataset import Batch, ExampleDataset, collate, simulated_examples
from polyrank.domains.ranknovo.model import RankNovo

logger = logging.getLogger(__name__)


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    """LR factor: linear warm-up to 1 over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / max(warmup, 1)
    progress = min(1.0, (step - warmup) / max(total - warmup, 1))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _regression(kind: str, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if kind == "mse":
        return F.mse_loss(pred, target)
    if kind == "l1":
        return F.l1_loss(pred, target)
    return F.smooth_l1_loss(pred, target)


def ranknovo_loss(out: dict[str, torch.Tensor], batch: Batch, rmd_weight: float = 1.0,
                  kind: str = "mse") -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PMD regression on real rows + ``rmd_weight`` x RMD regression on real residues."""
    rows = out["row_mask"]
    pmd = _regression(kind, out["pmd"][rows], batch.msa.pmd[rows])
    mask = batch.msa.rmd_mask
    rmd = _regression(kind, out["rmd"][mask], batch.msa.rmd[mask]) if mask.any() else pmd.new_zeros(())
    return pmd + rmd_weight * rmd, {"pmd": pmd.detach(), "rmd": rmd.detach()}


def pick_hit(out: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
    """Per spectrum: does the predicted-best row have the minimal true PMD?"""
    true = batch.msa.pmd.masked_fill(~out["row_mask"], float("inf"))
    chosen = true.gather(1, out["pmd"].argmin(dim=1, keepdim=True)).squeeze(1)
    return (chosen <= true.min(dim=1).values + 1e-6).float()


class RankNovoModule(L.LightningModule):
    """LightningModule wrapping :class:`RankNovo` with the PMD + RMD regression objective.

    Args:
        dim_model: Width d of the spectrum encoder and the MSA decoder (512 in the reference config).
        n_head: Attention heads of every attention (8).
        dim_feedforward: Hidden width of the feed-forward blocks (1024).
        n_layers: Layers of the spectrum encoder and, as many, axial decoder layers (8).
        dropout: Dropout of every block, attention and activation (0.3).
        max_length: Learned MSA positions incl. ``<cls>``; longer candidates are truncated (100).
        max_charge: Precursor charges embedded, 1..max_charge (10 in the reference config).
        use_col: Use the column (across-candidate) attention of each axial layer (True).
        mass_table: Residue masses, ``reference`` (RankNovo's table) or ``pyteomics``.
        lr: AdamW learning rate (1e-4).
        weight_decay: AdamW weight decay (8e-5).
        warmup_steps: Linear warm-up steps before the cosine decay.
        max_steps: Length of the cosine schedule; None: the trainer's estimated optimiser steps.
        rmd_weight: Weight of the per-residue RMD loss against the PMD loss.
        loss: Regression loss of both heads: ``mse``, ``l1`` or ``huber``.
    """

    def __init__(self, dim_model: int = 512, n_head: int = 8, dim_feedforward: int = 1024, n_layers: int = 8,
                 dropout: float = 0.3, max_length: int = 100, max_charge: int = 10, use_col: bool = True,
                 mass_table: Literal["reference", "pyteomics"] = "reference", lr: float = 1e-4,
                 weight_decay: float = 8e-5, warmup_steps: int = 100, max_steps: int | None = None,
                 rmd_weight: float = 1.0, loss: Literal["mse", "l1", "huber"] = "mse") -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = RankNovo(dim_model, n_head, dim_feedforward, n_layers, dropout, max_length, max_charge,
                              use_col, mass_table)
        self.skipped_steps = 0

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        return self.model(batch.spectra, batch.precursors, batch.msa.tokens)

    def transfer_batch_to_device(self, batch: Batch, device: torch.device, dataloader_idx: int) -> Batch:
        return batch.to(device)

    def _step(self, batch: Batch, stage: str) -> torch.Tensor:
        out = self(batch)
        loss, parts = ranknovo_loss(out, batch, self.hparams.rmd_weight, self.hparams.loss)
        size = batch.spectra.shape[0]
        self.log(f"{stage}/loss", loss, batch_size=size, prog_bar=stage == "train")
        self.log(f"{stage}/pmd_loss", parts["pmd"], batch_size=size)
        self.log(f"{stage}/rmd_loss", parts["rmd"], batch_size=size)
        if stage != "train":
            self.log(f"{stage}/pick_hit", pick_hit(out, batch).mean(), batch_size=size)
        return loss

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._step(batch, "test")

    def on_after_backward(self) -> None:
        """Non-finite gradient guard: skip the update (zero grads) when any gradient is NaN/inf."""
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        if grads and not all(torch.isfinite(g).all() for g in grads):
            self.skipped_steps += 1
            logger.warning("non-finite gradients at step %d; this update is skipped", self.global_step)
            for g in grads:
                g.zero_()

    def _schedule_steps(self) -> int:
        """Length of the cosine schedule: ``max_steps`` when given, else the trainer's optimiser-step count."""
        if self.hparams.max_steps is not None:
            return int(self.hparams.max_steps)
        return int(self.trainer.estimated_stepping_batches)

    def configure_optimizers(self) -> dict:
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            opt, partial(warmup_cosine, warmup=self.hparams.warmup_steps, total=self._schedule_steps()))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def real_examples(mgf: str | Path, candidates: str | Path) -> list:
    """Examples from an annotated MGF and an aligned candidate file (reference pickle or CSV/TSV)."""
    from polyrank.domains.ranknovo.candidates import read_candidate_pickle, read_candidate_table
    from polyrank.domains.ranknovo.dataset import Example
    from polyrank.domains.ranknovo.spectra import read_mgf
    from polyrank.shared.errors import PolyrankError

    spectra = read_mgf(mgf).spectra
    path = Path(candidates)
    cands = read_candidate_pickle(path) if path.suffix == ".pkl" else read_candidate_table(path)
    if len(cands.rows) != len(spectra):
        raise PolyrankError(f"{mgf}: {len(spectra)} spectra but {candidates}: {len(cands.rows)} candidate "
                            "lists; they must align one to one")
    truths = cands.truths or [s.peptide for s in spectra]
    return [Example(s, row, t) for s, row, t in zip(spectra, cands.rows, truths)]


class RankNovoDataModule(L.LightningDataModule):
    """Training data: real files when ``train_mgf``/``train_candidates`` are given, else SIMULATED data.

    The SIMULATED data are synthetic spectra of tryptic peptides of a FASTA with noisy base models;
    ``fasta=None`` uses ``<data_dir>/peptides/casanovo/preprocessed_mouse.fasta`` (Casanovo's sample).
    Real data follow ``datasets/massive_kb/README.md`` (MGF + aligned candidate pickle or CSV).

    Args:
        fasta: Proteins whose tryptic peptides are simulated; None: Casanovo's sample mouse FASTA.
        n_train: SIMULATED training spectra.
        n_val: SIMULATED validation spectra (peptides held out of training).
        batch_size: Spectra per batch.
        n_peaks: Most intense peaks kept per spectrum (300 in the reference).
        max_length: MSA width incl. ``<cls>``; must match the model's ``max_length``.
        mass_table: Residue masses for the PMD/RMD labels (``reference`` or ``pyteomics``).
        seed: Seed of the simulation.
        min_peptide_length: Shortest tryptic peptide simulated.
        max_peptide_length: Longest tryptic peptide simulated.
        train_mgf: Annotated training MGF (real data); used with ``train_candidates``.
        train_candidates: Candidates aligned with ``train_mgf`` (reference pickle or CSV/TSV).
        val_mgf: Annotated validation MGF (real data).
        val_candidates: Candidates aligned with ``val_mgf``.
    """

    def __init__(self, fasta: str | None = None, n_train: int = 512, n_val: int = 64, batch_size: int = 32,
                 n_peaks: int = 300, max_length: int = 100, mass_table: str = "reference", seed: int = 0,
                 min_peptide_length: int = 7, max_peptide_length: int = 20, train_mgf: str | None = None,
                 train_candidates: str | None = None, val_mgf: str | None = None,
                 val_candidates: str | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.train_set: ExampleDataset | None = None
        self.val_set: ExampleDataset | None = None

    def _fasta(self) -> Path:
        from polyrank.shared.errors import MissingResourceError
        from polyrank.shared.reproduce import data_dir

        if self.hparams.fasta:
            return Path(self.hparams.fasta)
        root = data_dir()
        path = root / "peptides" / "casanovo" / "preprocessed_mouse.fasta" if root else None
        if path is None or not path.is_file():
            raise MissingResourceError("no FASTA given and ../shared/data/peptides/casanovo/"
                                       "preprocessed_mouse.fasta is absent; pass data.fasta=<file> or set "
                                       "POLYRANK_DATA_DIR")
        return path

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        from polyrank.domains.ranknovo.simulate import read_fasta, tryptic_peptides

        hp = self.hparams
        if hp.train_mgf and hp.train_candidates:
            self.train_set = ExampleDataset(real_examples(hp.train_mgf, hp.train_candidates))
            val = real_examples(hp.val_mgf, hp.val_candidates) if hp.val_mgf and hp.val_candidates else []
            self.val_set = ExampleDataset(val)
            return
        peptides = tryptic_peptides(read_fasta(self._fasta()), hp.min_peptide_length, hp.max_peptide_length)
        held_out = set(peptides[::10])  # validation peptides never seen in training
        train = [p for p in peptides if p not in held_out]
        self.train_set = ExampleDataset(simulated_examples(train, hp.n_train, hp.seed))
        self.val_set = ExampleDataset(simulated_examples(sorted(held_out), hp.n_val, hp.seed + 1))
        logger.info("SIMULATED data: %d train / %d val spectra from %d tryptic peptides", len(self.train_set),
                    len(self.val_set), len(peptides))

    def _loader(self, dataset: ExampleDataset, shuffle: bool) -> DataLoader:
        fn = partial(collate, n_peaks=self.hparams.n_peaks, mass_table=self.hparams.mass_table,
                     max_length=self.hparams.max_length)
        return DataLoader(dataset, batch_size=self.hparams.batch_size, shuffle=shuffle, collate_fn=fn)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader(self.val_set, False) if len(self.val_set) else []
