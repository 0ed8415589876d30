"""Learning sanity through the shared trainer, the non-finite guard and the schedule."""

import math
from pathlib import Path

import pytest
import torch

from polyrank.domains.ranknovo.dataset import ExampleDataset, collate, simulated_examples
from polyrank.domains.ranknovo.module import RankNovoModule, pick_hit, ranknovo_loss, warmup_cosine
from polyrank.domains.ranknovo.simulate import read_fasta, tryptic_peptides
from polyrank.shared.reproduce import data_dir
from polyrank.shared.trainer import build_trainer

CONFIG = Path(__file__).resolve().parents[3] / "configs" / "ranknovo" / "tiny.yaml"


def _peptides():
    root = data_dir()
    fasta = root / "peptides" / "casanovo" / "preprocessed_mouse.fasta" if root else None
    if fasta is None or not fasta.is_file():
        return ["PEPTIDEK", "LGEYGFQNALIVR", "AEFVEVTK", "SLHTLFGDELCK", "VVAGVANALAHK", "GAGSSEPVTGLDAK",
                "TLNDELEIIEGMK", "ALLDMYEGEDR"]
    return tryptic_peptides(read_fasta(fasta))[:400]


def test_warmup_then_cosine():
    assert warmup_cosine(0, 10, 100) == pytest.approx(0.1)
    assert warmup_cosine(9, 10, 100) == pytest.approx(1.0)
    assert warmup_cosine(55, 10, 100) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert warmup_cosine(100, 10, 100) == pytest.approx(0.0)


def test_loss_falls_and_the_correct_candidate_rises(tmp_path):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    peptides = _peptides()
    train = ExampleDataset(simulated_examples(peptides, 256, seed=0))  # SIMULATED spectra and candidates
    batch = collate(train.examples[:128])
    module = RankNovoModule(dim_model=32, n_head=2, dim_feedforward=64, n_layers=1, dropout=0.0, lr=2e-3,
                            warmup_steps=5, max_steps=48)

    def measure():
        module.eval()
        with torch.no_grad():
            out = module(batch)
            result = ranknovo_loss(out, batch)[0].item(), pick_hit(out, batch).mean().item()
        module.train()
        return result

    loss0, hit0 = measure()
    trainer = build_trainer(default_root_dir=tmp_path, max_epochs=6, progress_bar="none", loggers=False,
                            enable_checkpointing=False, gradient_clip_val=1.5, accelerator="cpu")
    loader = torch.utils.data.DataLoader(train, batch_size=32, shuffle=True, collate_fn=collate)
    trainer.fit(module, loader)
    loss1, hit1 = measure()
    assert loss1 < 0.6 * loss0, (loss0, loss1)
    assert hit1 > hit0 + 0.1, (hit0, hit1)


def test_non_finite_gradients_are_skipped():
    module = RankNovoModule(dim_model=32, n_head=2, dim_feedforward=64, n_layers=1, dropout=0.0)
    for p in module.parameters():
        p.grad = torch.ones_like(p)
    next(module.parameters()).grad[0] = float("nan")
    module.on_after_backward()
    assert module.skipped_steps == 1
    assert all(torch.count_nonzero(p.grad) == 0 for p in module.parameters())


def test_tiny_config_trains_end_to_end(tmp_path, shared_data):
    from polyrank.shared.cli import main

    fasta = shared_data / "peptides" / "casanovo" / "preprocessed_mouse.fasta"
    assert main(["fit", "--config", str(CONFIG), "--trainer.default_root_dir", str(tmp_path),
                 "--data.fasta", str(fasta)]) == 0
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    from polyrank.shared.registry import load

    reranker = load("ranknovo.base", checkpoint=str(ckpt))  # architecture comes from the checkpoint (tiny)
    assert reranker.model.embed.positions.embedding_dim == 32


def test_datamodule_reads_real_files(tmp_path):
    from polyrank.domains.ranknovo.module import RankNovoDataModule

    path = tmp_path / "t.mgf"
    path.write_text("BEGIN IONS\nTITLE=a\nPEPMASS=500.5\nCHARGE=2+\nSEQ=PEPK\n100.1 5\n200.2 7\nEND IONS\n")
    (tmp_path / "c.csv").write_text("spectrum,m1,m2\na,PEPK,PEPQ\n")
    data = RankNovoDataModule(train_mgf=str(path), train_candidates=str(tmp_path / "c.csv"), batch_size=2)
    data.setup()
    batch = next(iter(data.train_dataloader()))
    assert batch.msa.pmd.shape == (1, 2) and batch.msa.pmd[0, 0] == 0 and batch.msa.pmd[0, 1] > 0
    assert data.val_dataloader() == []
