"""Learning sanity (loss falls, positives rise), save/load round trip, the API, and the CLI on tiny.yaml."""

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from polyrank.domains.mtm import rank
from polyrank.domains.mtm.datamodule import MTMDataModule
from polyrank.domains.mtm.module import MTMModule
from polyrank.domains.mtm.synthetic import synthetic_factcheck
from polyrank.domains.mtm.train import compare_bm25_mtm
from polyrank.shared.errors import PolyrankError
from polyrank.shared.evaluation import evaluate
from polyrank.shared.registry import list_rerankers, load
from polyrank.shared.trainer import build_trainer

REPO = Path(__file__).resolve().parents[3]


def _mean_rr(module, split="train"):
    run = module.rerank(split)
    return evaluate(run, {q: module.dm.data.qrels[q] for q in run}, ["MRR"]).mean["MRR"]


class _Probe(L.Callback):
    def __init__(self):
        self.rr, self.losses, self.memories = [], [], []

    def on_train_start(self, trainer, module):
        self.rr.append(_mean_rr(module))
        self.memories.append(module.model.memory.clone())

    def on_train_epoch_end(self, trainer, module):
        self.losses.append(float(trainer.callback_metrics["train/loss"]))

    def on_train_end(self, trainer, module):
        self.rr.append(_mean_rr(module))
        self.memories.append(module.model.memory.clone())


class _SeparableData(MTMDataModule):
    """Tiny separable set: every relevant article carries a marker sentence no candidate negative has."""

    def load(self):
        data = synthetic_factcheck(40, 16, seed=0)
        for did in sorted({d for rel in data.qrels.values() for d in rel}):
            data.articles[did] = data.articles[did] + ["hoax debunked fake hoax"]
        pool = [f"n{i}" for i in range(10)]
        for i, did in enumerate(pool):
            data.articles[did] = [f"the {w} report was published" for w in ("city", "farm", "river")[: 1 + i % 3]]
        data.candidates = {q: sorted([*data.qrels[q], *pool[:7]]) for q in data.claims}
        return data


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("mtm")
    dm = _SeparableData(source="synthetic", backbone="tiny", batch_size=16)
    module = MTMModule(backbone="tiny", n_key_sentences=3, n_patterns=4, lr=2e-3, rot_epochs=2, rot_batch_size=64,
                       dropout=0.1, memory_update_pass="eval")
    probe = _Probe()
    trainer = build_trainer(default_root_dir=root, max_epochs=8, progress_bar="none", loggers=False,
                            enable_checkpointing=False, callbacks=[probe], limit_val_batches=0)
    trainer.fit(module, datamodule=dm)
    return module, dm, probe, root


def test_loss_falls_and_positive_rank_rises(trained):
    module, _, probe, _ = trained
    assert probe.losses[-1] < probe.losses[0] * 0.8, probe.losses
    assert probe.rr[1] > probe.rr[0] + 0.1, probe.rr
    assert int(module.stages_done) == 1


def test_memory_was_initialised_and_updated(trained):
    _, _, probe, _ = trained
    start, end = probe.memories
    assert start.abs().sum() > 0                     # k-means init, not zeros
    assert not torch.allclose(start, end)            # per-epoch PMB updates moved it


def test_round_trip_and_registry_load_give_same_scores(trained):
    module, dm, _, root = trained
    reranker = module.to_reranker()
    qid = dm.data.subset("test")[0]
    cands = [(d, dm.data.articles[d]) for d in dm.data.candidates[qid]]
    before = [r.score for r in reranker.rank(dm.data.claims[qid], cands)]
    reranker.save(root / "saved", name="mtm.tiny")
    again = load(str(root / "saved"), device="cpu")
    after = [r.score for r in again.rank(dm.data.claims[qid], cands)]
    assert np.allclose(before, after, atol=1e-5)
    assert torch.equal(again.model.memory.cpu(), module.model.memory.cpu())
    ranked = rank(dm.data.claims[qid], dict(cands), model=again, top_k=3)
    assert len(ranked) == 3 and ranked[0].rank == 1
    keys = ranked[0].explanation["key_sentences"]
    assert 1 <= len(keys) <= 3 and abs(sum(k["weight"] for k in keys) - 1) < 1e-4
    assert all(k["sentence"] in dm.data.articles[ranked[0].candidate_id] for k in keys)
    assert load(str(root / "saved"), device="cpu", batch_size=4).batch_size == 4
    with pytest.raises(PolyrankError, match=r"unknown MTM override\(s\) \['batchsize'\]"):
        load(str(root / "saved"), device="cpu", batchsize=4)


def test_bm25_and_mtm_metrics_are_reported(trained):
    module, dm, _, _ = trained
    res = compare_bm25_mtm(module, dm, "test", ["MRR", "MAP@5", "HIT@5"])
    assert set(res) == {"BM25", "MTM"} and all(0 <= v <= 1 for r in res.values() for v in r.values())


def test_registered_names():
    assert {"mtm.minilm", "mtm.tiny"} <= set(list_rerankers("mtm.*"))


def test_cli_fit_on_tiny_yaml(tmp_path):
    from polyrank.shared.cli import main

    status = main(["fit", "--config", str(REPO / "configs/mtm/tiny.yaml"), "--trainer.default_root_dir", str(tmp_path)])
    assert status == 0
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
