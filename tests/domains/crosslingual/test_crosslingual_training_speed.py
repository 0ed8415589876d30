"""Ranking-module training knobs the demo's short CPU budget relies on: a separate learning rate for the fresh
relevance head and full fine-tuning with frozen word embeddings (the 250k-vocabulary matrix)."""

from __future__ import annotations

import warnings

import torch

from polyrank.domains.crosslingual.module import TINY_PAIRS, RankingModule
from polyrank.shared.trainer import build_trainer


def _fit_one_step(module: RankingModule, tmp_path) -> None:
    from torch.utils.data import DataLoader

    loader = DataLoader(list(TINY_PAIRS), batch_size=8, collate_fn=list)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build_trainer(default_root_dir=tmp_path, max_epochs=None, max_steps=1, progress_bar="none", loggers=False,
                      enable_checkpointing=False, seed=None, accelerator="cpu").fit(module, train_dataloaders=loader)


def test_head_lr_gives_the_relevance_head_its_own_learning_rate(tmp_path):
    # guards: the head was trained at the body's rate (1e-3 adapter / 3e-5 full FT), so a short run left it at its
    # random start and every reranker tied with itself; head_lr must reach exactly the classifier.* parameters
    module = RankingModule(kind="full", base="tiny", lr=1e-4, head_lr=1e-2, warmup_ratio=0.0, seed=0)
    _fit_one_step(module, tmp_path)
    opt = module.trainer.optimizers[0]
    head = {id(p) for p in module.model.classifier.parameters()}
    for group in opt.param_groups:
        ids = {id(p) for p in group["params"]}
        assert ids <= head or not ids & head  # no group mixes head and body
        ratio = group["lr"] / group["initial_lr"]  # the linear schedule scales every group alike
        assert abs(group["initial_lr"] - (1e-2 if ids & head else 1e-4)) < 1e-12, group["initial_lr"]
        assert 0 <= ratio <= 1
    assert sum(len(g["params"]) for g in opt.param_groups) == sum(1 for p in module.model.parameters()
                                                                     if p.requires_grad)
    default = RankingModule(kind="full", base="tiny", lr=1e-4, seed=0)  # head_lr=None: one rate for all
    _fit_one_step(default, tmp_path / "d")
    assert {g["initial_lr"] for g in default.trainer.optimizers[0].param_groups} == {1e-4}


def test_full_fine_tuning_can_freeze_the_word_embeddings(tmp_path):
    # guards: full FT always trained the word embeddings, whose dense gradient + AdamW update dominate a CPU step
    # on e5's 250k x 384 matrix; include_embeddings=False freezes exactly that matrix and nothing else
    full = RankingModule(kind="full", base="tiny", seed=0)
    frozen = RankingModule(kind="full", base="tiny", seed=0, include_embeddings=False)
    emb = frozen.model.bert.embeddings.word_embeddings.weight
    assert full.trainable_parameters() - frozen.trainable_parameters() == emb.numel()
    assert not emb.requires_grad
    assert all(p.requires_grad for n, p in frozen.model.named_parameters() if "word_embeddings" not in n)
    before = emb.detach().clone()
    layer = frozen.model.bert.encoder.layer[0].attention.self.query.weight.detach().clone()
    _fit_one_step(frozen, tmp_path)
    assert torch.equal(emb.detach(), before)
    assert not torch.equal(frozen.model.bert.encoder.layer[0].attention.self.query.weight.detach(), layer)
