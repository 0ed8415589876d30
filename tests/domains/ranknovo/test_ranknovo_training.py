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


def _generated_fasta(path: Path) -> Path:
    """GENERATED proteins (no shared data needed): enough tryptic peptides of length 7-20 for tiny.yaml."""
    import numpy as np

    rng = np.random.default_rng(0)
    residues = list("ACDEFGHIKLMNPQRSTVWY")
    weights = np.array([8, 1, 5, 7, 4, 7, 2, 6, 6, 10, 2, 4, 5, 4, 6, 7, 5, 7, 1, 3], dtype=float)
    proteins = ["".join(rng.choice(residues, 300, p=weights / weights.sum())) for _ in range(12)]
    path.write_text("".join(f">generated_{i}\n{p}\n" for i, p in enumerate(proteins)))
    return path


def test_tiny_config_fit_then_reload_serves_the_trained_weights(tmp_path):
    # guards: the .ckpt that `polyrank fit` writes must load into ranknovo.tiny as exactly the trained weights
    import inspect
    import warnings

    import numpy as np

    from polyrank.domains.ranknovo import load
    from polyrank.shared.cli import main
    from polyrank.shared.registry import UntrainedWeightsWarning

    fasta = _generated_fasta(tmp_path / "generated.fasta")
    assert main(["fit", "--config", str(CONFIG), "--trainer.default_root_dir", str(tmp_path),
                 "--data.fasta", str(fasta)]) == 0
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    raw = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert raw["global_step"] == 2 * (64 // 16)  # tiny.yaml: 2 epochs x 64 spectra / batch 16
    accepted = inspect.signature(RankNovoModule).parameters
    module = RankNovoModule(**{k: v for k, v in raw["hyper_parameters"].items() if k in accepted}).eval()
    module.load_state_dict(raw["state_dict"])

    with warnings.catch_warnings():
        warnings.simplefilter("error", UntrainedWeightsWarning)  # trained weights: no warning
        reranker = load("ranknovo.tiny", checkpoint=ckpt)
    assert reranker.model.embed.positions.embedding_dim == 32 and reranker.config["n_layers"] == 1
    examples = simulated_examples(tryptic_peptides(read_fasta(fasta)), 8, seed=11)
    spectra, rows = [e.spectrum for e in examples], [e.candidates for e in examples]
    served = np.stack([r.pmd for r in reranker.rerank(spectra, rows)])
    with torch.no_grad():
        own = module(collate(examples, with_labels=False))["pmd"].numpy()
    np.testing.assert_allclose(served, own, rtol=1e-6, atol=1e-6)
    with pytest.warns(UntrainedWeightsWarning):
        untrained = load("ranknovo.tiny")
    random_pmd = np.stack([r.pmd for r in untrained.rerank(spectra, rows)])
    assert not np.allclose(served, random_pmd, atol=1e-3)
    also_base = load("ranknovo.base", checkpoint=ckpt)  # the architecture comes from the checkpoint (tiny)
    np.testing.assert_array_equal(np.stack([r.pmd for r in also_base.rerank(spectra, rows)]), served)


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
