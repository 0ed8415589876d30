"""ROT, the ROUGE-guided Transformer of MTM (Sheng et al., ACL 2021, Sec. 3.1, Eq. 1-2).

A one-layer BERT (embeddings and layer 0 copied from the backbone, new pooler) reads
``[CLS] claim [SEP] sentence [SEP]`` and regresses the sentence's ROUGE-2 (precision, recall) against the
claim: ``y_hat = sigmoid(dropout(W pooled))``. The loss is ``MSE(y_hat, y) + lambda * ||theta - theta_0||^2``
(Eq. 2), an L2 pull back to the initial weights (lambda 0.05 Twitter, 0.01 Weibo).

Targets follow ``preprocess/ROT/prepare_for_rouge.py``: ROUGE-2 on *space-joined word-piece ids* (so it
works for Chinese), sentence = hypothesis, claim = reference, here computed by ``rouge-score`` (which
counts repeated bigrams; the reference's ``rouge`` package uses bigram sets). Training pairs keep only the
first pair of each distinct (P, R) label in a split, which thins out the all-zero pairs.
"""

from __future__ import annotations

import copy
import logging
import random
from collections.abc import Mapping, Sequence

import lightning as L
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from polyrank.domains.mtm.encoding import pair_batch

logger = logging.getLogger(__name__)


def rouge2_targets(claim: Sequence[int], sentences: Sequence[Sequence[int]]) -> np.ndarray:
    """ROUGE-2 (precision, recall) of each sentence (hypothesis) against the claim (reference), ``(n, 2)``.

    Uses rouge-score's own bigram counting and scoring on the token ids directly (the same values as
    scoring the space-joined id strings, without re-tokenising text).
    """
    from polyrank.shared.extras import require

    rouge_scorer = require("rouge_score.rouge_scorer", extra="text")
    reference = rouge_scorer._create_ngrams([str(t) for t in claim], 2)
    out = np.zeros((len(sentences), 2), dtype=np.float32)
    for i, sentence in enumerate(sentences):
        score = rouge_scorer._score_ngrams(reference, rouge_scorer._create_ngrams([str(t) for t in sentence], 2))
        out[i] = (score.precision, score.recall)
    return out


def rot_pairs(claim_tokens: Mapping[str, list[int]], article_tokens: Mapping[str, list[list[int]]],
              candidates: Mapping[str, Sequence[str]], qids: Sequence[str], dedup: bool = True,
              max_pairs: int | None = None, seed: int = 0) -> list[tuple[str, str, int, tuple[float, float]]]:
    """(qid, did, sentence index, (P, R)) over the claim/candidate-sentence pairs of ``qids``.

    ``dedup`` keeps the first pair of each distinct (P, R) label (the reference's subsampling).
    ``max_pairs`` (small budgets, not the reference) visits (claim, candidate) pairs in a seeded random
    order and stops once that many pairs are kept.
    """
    visits = [(q, d) for q in qids for d in candidates.get(q, [])]
    if max_pairs is not None:
        random.Random(seed).shuffle(visits)
    pairs, seen = [], set()
    for qid, did in visits:
        targets = rouge2_targets(claim_tokens[qid], article_tokens[did])
        for sidx, (p, r) in enumerate(targets.tolist()):
            label = (round(p, 6), round(r, 6))
            if dedup and label in seen:
                continue
            seen.add(label)
            pairs.append((qid, did, sidx, label))
        if max_pairs is not None and len(pairs) >= max_pairs:
            return pairs[:max_pairs]
    return pairs


class ROT(nn.Module):
    """One-layer BERT regressor of ROUGE-2 (P, R); ``from_backbone`` copies embeddings and layer 0."""

    def __init__(self, config, dropout: float = 0.5) -> None:
        super().__init__()
        from transformers import BertModel

        config = copy.deepcopy(config)
        config.num_hidden_layers = 1
        self.bert = BertModel(config, add_pooling_layer=True)
        self.dropout = nn.Dropout(dropout)
        self.regressor = nn.Linear(config.hidden_size, 2, bias=False)

    @classmethod
    def from_backbone(cls, backbone: nn.Module, dropout: float = 0.5) -> ROT:
        """ROT initialised from a ``BertModel``'s embeddings and first layer (the pooler stays new)."""
        rot = cls(backbone.config, dropout)
        rot.bert.embeddings.load_state_dict(backbone.embeddings.state_dict())
        rot.bert.encoder.layer[0].load_state_dict(backbone.encoder.layer[0].state_dict())
        return rot

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> torch.Tensor:
        pooled = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                           token_type_ids=token_type_ids).pooler_output
        return torch.sigmoid(self.dropout(self.regressor(pooled)))  # (B, 2): ROUGE-2 P, R


def l2_to_initial(module: nn.Module, initial: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """``sum ||theta - theta_0||^2`` over the trainable parameters (Eq. 2's regulariser)."""
    terms = [((p - initial[n]) ** 2).sum() for n, p in module.named_parameters() if p.requires_grad]
    return torch.stack(terms).sum() if terms else torch.zeros(())


class ROTModule(L.LightningModule):
    """Trains ROT with ``MSE + lambda * L2-to-init`` (AdamW, cosine schedule without warm-up)."""

    def __init__(self, rot: ROT, l2_lambda: float = 0.05, lr: float = 5e-5) -> None:
        super().__init__()
        self.rot = rot
        self.l2_lambda, self.lr = l2_lambda, lr
        self._initial = {n: p.detach().clone() for n, p in rot.named_parameters()}

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        pred = self.rot(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        mse = nn.functional.mse_loss(pred, batch["target"])
        loss = mse + self.l2_lambda * l2_to_initial(self.rot, self._initial)
        self.log_dict({"rot/mse": mse, "rot/loss": loss}, prog_bar=True, batch_size=len(pred))
        return loss

    def on_fit_start(self) -> None:
        self._initial = {n: t.to(self.device) for n, t in self._initial.items()}

    def configure_optimizers(self):
        from transformers import get_cosine_schedule_with_warmup

        opt = torch.optim.AdamW(self.rot.parameters(), lr=self.lr)
        steps = max(1, int(self.trainer.estimated_stepping_batches))
        epochs = max(1, self.trainer.max_epochs or 1)
        sched = get_cosine_schedule_with_warmup(opt, 0, int(steps * (epochs + 1) / epochs))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def rot_loader(pairs: Sequence[tuple[str, str, int, tuple[float, float]]], claim_tokens: Mapping[str, list[int]],
               article_tokens: Mapping[str, list[list[int]]], cls_id: int, sep_id: int, batch_size: int = 512,
               max_length: int = 256, claim_max_length: int = 180, shuffle: bool = True) -> DataLoader:
    """Batches of ROT pairs as ``{input_ids, attention_mask, token_type_ids, target}``."""

    def collate(items):
        batch = pair_batch([claim_tokens[q] for q, _, _, _ in items],
                           [article_tokens[d][s] for _, d, s, _ in items], cls_id, sep_id, max_length,
                           claim_max_length)
        return {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask,
                "token_type_ids": batch.token_type_ids,
                "target": torch.tensor([t for _, _, _, t in items], dtype=torch.float32)}

    return DataLoader(list(pairs), batch_size=batch_size, shuffle=shuffle, collate_fn=collate)
