"""LightningModule of MTM: one ``fit`` runs the paper's three stages through the shared trainer.

1. ROT (:mod:`.rot`) is trained by its own :func:`~polyrank.shared.trainer.build_trainer` run on the
   training claims' candidate sentences (at ``on_fit_start``, skipped when a restored checkpoint has it).
2. The PMB is initialised from ROT's static embeddings (:func:`.pmb.init_memory`).
3. The matcher (:class:`.model.MTM`, front layers from ROT, frozen) is trained with cross-entropy; after
   every training epoch the PMB is updated (:func:`.pmb.update_memory`). ``memory_update_pass="eval"``
   re-scores the training pairs in eval mode as the reference does; ``"train_step"`` reuses the
   probabilities seen during the epoch's training steps (cheaper; not the reference).

Validation/test rank each claim's candidates and log MRR, MAP@k and HIT@k through
:func:`polyrank.shared.evaluation.evaluate`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import torch
from torch import nn

from polyrank.domains.mtm.encoding import global_rng_untouched
from polyrank.domains.mtm.model import build_mtm, readout_scores
from polyrank.domains.mtm.pmb import init_memory, update_memory
from polyrank.domains.mtm.rot import ROT, ROTModule, rot_loader, rot_pairs
from polyrank.shared.evaluation import evaluate
from polyrank.shared.protocol import Run, tail_scores

logger = logging.getLogger(__name__)

MEASURES = ["MRR", "MAP@1", "MAP@3", "MAP@5", "MAP@10", "MAP@20", "MAP@50",
            "HIT@1", "HIT@3", "HIT@5", "HIT@10", "HIT@20", "HIT@50"]


class MTMModule(L.LightningModule):
    """ROT -> PMB init -> MTM training, with the per-epoch PMB update (hyper-parameters as ``model/config.py``).

    Args:
        backbone: encoder to start from: ``"tiny"`` (random 2-layer BERT), ``"minilm"`` or a local BERT directory.
        n_key_sentences: key sentences kept per article (k; 5 Twitter, 3 Weibo).
        n_patterns: pattern vectors in the memory bank (K, 20 in the paper).
        lambda_q: weight of claim-sentence closeness in key-sentence scores (0.6).
        lambda_p: weight of pattern-sentence closeness in key-sentence scores (0.4).
        memory_step: PMB update step, ``m += step * ||m|| * g`` (0.3).
        lr: AdamW learning rate of the matcher (cosine schedule; warm-up per ``warmup_ratio``).
        max_length: tokens of a ``[CLS] claim [SEP] sentence [SEP]`` pair (256).
        claim_max_length: tokens kept of the claim in a pair (180).
        n_mlp_layers: linears of the matching head (5: 3d -> 3d/2 -> ... -> 2).
        dropout: dropout of the matching head (0.5).
        head: matching head: "reference" (linear stack, GELU-dropout-GELU on the logits; starts on the ln 2
            plateau) or "mlp" (one GELU hidden layer, raw logits; trains in CPU budgets; not the paper's).
        readout: ranking score: "class1" (class-1 output after the head's activation, the reference) or
            "logit_diff" (pre-activation logit difference z1 - z0, monotone in the class-1 log-odds).
        warmup_ratio: share of the training steps with a linear learning-rate warm-up (0: none, the reference).
        finetune_front_layers: train the embeddings and layer 0 copied from ROT (the reference freezes them).
        finetune_inter_layers: train the layers between layer 0 and the last (the last always trains).
        memory_update_pass: PMB update after each epoch from an eval pass ("eval", the reference), from the
            training steps' probabilities ("train_step", cheaper) or never ("none").
        rot_epochs: epochs of ROT training (stage 1; 0 skips ROT).
        rot_lr: AdamW learning rate of ROT.
        rot_l2: lambda of ROT's L2 pull to its initial weights (0.05 Twitter, 0.01 Weibo).
        rot_batch_size: ROT batch size (512).
        rot_max_pairs: cap on ROT's deduplicated training pairs (None: all; small budgets only).
        pmb_percentiles: residual-norm percentiles kept for the PMB k-means initialisation ((25, 50)).
        eval_batch_size: candidates scored per forward pass in evaluation and the PMB eval pass.
        seed: seed of the new weights, of ROT's own RNG stream and of the PMB k-means.
    """

    def __init__(self, backbone: str = "tiny", n_key_sentences: int = 5, n_patterns: int = 20,
                 lambda_q: float = 0.6, lambda_p: float = 0.4, memory_step: float = 0.3, lr: float = 5e-6,
                 max_length: int = 256, claim_max_length: int = 180, n_mlp_layers: int = 5, dropout: float = 0.5,
                 head: Literal["reference", "mlp"] = "reference", readout: Literal["class1", "logit_diff"] = "class1",
                 warmup_ratio: float = 0.0,
                 finetune_front_layers: bool = False, finetune_inter_layers: bool = True,
                 memory_update_pass: Literal["eval", "train_step", "none"] = "eval",
                 rot_epochs: int = 10, rot_lr: float = 5e-5, rot_l2: float = 0.05, rot_batch_size: int = 512,
                 rot_max_pairs: int | None = None, pmb_percentiles: tuple[float, float] = (25.0, 50.0),
                 eval_batch_size: int = 64, seed: int = 0) -> None:
        super().__init__()
        self.save_hyperparameters()
        with global_rng_untouched(seed=seed):              # new (random) weights are seeded, globals untouched
            self.model = build_mtm(backbone, n_key_sentences=n_key_sentences, n_patterns=n_patterns,
                                   lambda_q=lambda_q, lambda_p=lambda_p, n_mlp_layers=n_mlp_layers,
                                   dropout=dropout, max_length=max_length, claim_max_length=claim_max_length,
                                   finetune_front_layers=finetune_front_layers,
                                   finetune_inter_layers=finetune_inter_layers, head=head, readout=readout)
        self.register_buffer("stages_done", torch.zeros((), dtype=torch.long))
        self._outputs: dict[str, dict] = {}
        self._seen: list[tuple[str, str, int, float]] = []

    # ------------------------------------------------------------------------------------ stages 1 and 2
    def setup(self, stage: str) -> None:
        self.dm = self.trainer.datamodule
        self.dm.setup(stage)
        self.claim_vecs = None

    def on_fit_start(self) -> None:
        """Stages 1-2 run here (after any checkpoint restore, so a resumed run skips them)."""
        if int(self.stages_done) == 0:
            self.train_rot(Path(self.trainer.default_root_dir) / "rot")
            self.init_pmb()
            self.stages_done.fill_(1)

    def train_rot(self, root: Path) -> None:
        """Stage 1: train ROT on the training claims' candidate sentences, copy it into the matcher.

        ROT's trainer runs with ``seed=None`` inside :func:`global_rng_untouched` (seeded with ``seed``): ROT is
        reproducible, and the outer fit's RNG stream continues after ROT exactly as it was before it.
        """
        from polyrank.shared.trainer import build_trainer

        h, dm = self.hparams, self.dm
        pairs = rot_pairs(dm.claim_tokens, dm.article_tokens, dm.data.candidates, dm.data.subset("train"),
                          max_pairs=h.rot_max_pairs, seed=h.seed)
        if h.rot_epochs > 0 and pairs:
            on_cuda = self._trainer is not None and self.trainer.strategy.root_device.type == "cuda"
            with global_rng_untouched(seed=h.seed):
                rot = ROT.from_backbone(self.model.bert)
                loader = rot_loader(pairs, dm.claim_tokens, dm.article_tokens, dm.cls_id, dm.sep_id,
                                    h.rot_batch_size, h.max_length, h.claim_max_length)
                trainer = build_trainer(default_root_dir=root, max_epochs=h.rot_epochs, progress_bar="none",
                                        loggers=False, enable_checkpointing=False, seed=None,
                                        accelerator="cuda" if on_cuda else "cpu", devices=1)
                trainer.fit(ROTModule(rot, h.rot_l2, h.rot_lr), train_dataloaders=loader)
            self.model.load_rot(rot.bert.to(self.model.memory.device))
            self.rot_loss = float(trainer.callback_metrics.get("rot/mse", float("nan")))
            logger.info("ROT trained on %d pairs (final MSE %.4f)", len(pairs), self.rot_loss)

    def init_pmb(self) -> None:
        """Stage 2: k-means over mid-distance residuals of training claims vs. their relevant articles."""
        dm = self.dm
        self.claim_vecs = None  # embeddings changed with ROT: recompute the cached tables once
        claim_table, sentence_table = self._vectors()
        residuals = [(sentence_table[did] - claim_table[qid]).cpu().numpy()
                     for qid in dm.data.subset("train") for did in dm.data.qrels.get(qid, {})]
        low, high = self.hparams.pmb_percentiles
        memory = init_memory(np.concatenate(residuals), self.hparams.n_patterns, low, high, self.hparams.seed)
        self.model.memory.copy_(torch.from_numpy(memory))

    def _vectors(self) -> tuple[dict, dict]:
        """Static embeddings of every claim and article sentence (cached; the word embeddings are frozen)."""
        if getattr(self, "claim_vecs", None) is None:
            dm = self.dm
            claims = self.model.embed(list(dm.claim_tokens.values()))
            self.claim_vecs = dict(zip(dm.claim_tokens, claims))
            self.sentence_vecs = {d: self.model.embed(s) for d, s in dm.article_tokens.items()}
        return self.claim_vecs, self.sentence_vecs

    # ----------------------------------------------------------------------------------------- stage 3
    def _logits(self, qids: list[str], dids: list[str], raw: bool = False):
        dev = self.model.memory.device
        claim_table, sentence_table = self._vectors()
        claim_vecs = torch.stack([claim_table[q] for q in qids]).to(dev)
        keys = self.model.select(claim_vecs, [sentence_table[d].to(dev) for d in dids])
        logits = self.model([self.dm.claim_tokens[q] for q in qids], [self.dm.article_tokens[d] for d in dids], keys,
                            raw=raw)
        return logits, keys

    def training_step(self, batch: list[tuple[str, str, int]], batch_idx: int) -> torch.Tensor:
        qids, dids, labels = zip(*batch)
        logits, _ = self._logits(list(qids), list(dids))
        y = torch.tensor(labels, device=logits.device)
        loss = nn.functional.cross_entropy(logits.float(), y)
        if self.hparams.memory_update_pass == "train_step":
            p = logits.float().softmax(-1).gather(1, y[:, None])[:, 0].detach().cpu().tolist()
            self._seen += [(q, d, int(t), pt) for q, d, t, pt in zip(qids, dids, labels, p)]
        self.log("train/loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=len(batch))
        return loss

    def on_train_epoch_end(self) -> None:
        mode = self.hparams.memory_update_pass
        if mode == "none":
            return
        seen = self._seen if mode == "train_step" else self.predict_pairs(self.dm.train_pairs)
        self._seen = []
        if seen:
            self.update_pmb(seen)

    @torch.no_grad()
    def predict_pairs(self, pairs: list[tuple[str, str, int]]) -> list[tuple[str, str, int, float]]:
        """Probability of the true label for each (qid, did, label), in eval mode."""
        was_training = self.model.training
        self.model.eval()
        out = []
        step = self.hparams.eval_batch_size
        for start in range(0, len(pairs), step):
            chunk = pairs[start:start + step]
            logits, _ = self._logits([q for q, _, _ in chunk], [d for _, d, _ in chunk])
            probs = logits.float().softmax(-1).cpu()
            out += [(q, d, y, float(probs[i, y])) for i, (q, d, y) in enumerate(chunk)]
        self.model.train(was_training)
        return out

    @torch.no_grad()
    def update_pmb(self, seen: list[tuple[str, str, int, float]]) -> None:
        """The per-epoch PMB update from (qid, did, label, p_true) of the training pairs."""
        dev = self.model.memory.device
        claim_table, sentence_table = self._vectors()
        claim_vecs = torch.stack([claim_table[q] for q, _, _, _ in seen]).to(dev)
        sent = [sentence_table[d].to(dev) for _, d, _, _ in seen]
        keys = self.model.select(claim_vecs, sent)
        valid = keys.indices >= 0                                                     # (P, k)
        rows, cols = valid.nonzero(as_tuple=True)
        residuals = torch.stack([sent[r][keys.indices[r, c]] - claim_vecs[r]
                                 for r, c in zip(rows.tolist(), cols.tolist())])
        p = torch.tensor([s[3] for s in seen], device=dev)[rows]
        y = torch.tensor([s[2] for s in seen], device=dev)[rows]
        new = update_memory(self.model.memory, residuals, keys.patterns[rows, cols], p, y, self.hparams.memory_step)
        self.model.memory.copy_(new)

    # -------------------------------------------------------------------------------------- evaluation
    @torch.no_grad()
    def score_query(self, qid: str, dids: list[str]) -> np.ndarray:
        """Class-1 scores of a claim's candidates."""
        scores = []
        step = self.hparams.eval_batch_size
        for start in range(0, len(dids), step):
            logits, _ = self._logits([qid] * len(dids[start:start + step]), dids[start:start + step], raw=True)
            scores.append(readout_scores(logits, self.model.head, self.hparams.readout).float().cpu())
        return torch.cat(scores).numpy()

    def rerank(self, split: str, depth: int | None = None) -> Run:
        """MTM run over a split's candidates (eval mode); beyond ``depth`` the first-stage order is kept below."""
        was_training = self.model.training
        self.model.eval()
        run = {}
        for qid, dids in self.dm.queries(split):
            head, tail = dids[:depth], dids[len(dids[:depth]):]
            scores = self.score_query(qid, head)
            run[qid] = dict(zip(head, map(float, scores)))
            run[qid].update(zip(tail, tail_scores(scores, len(tail)).tolist()))
        self.model.train(was_training)
        return run

    def _eval_step(self, batch, prefix: str) -> None:
        (qid, dids), = batch
        raw, _ = self._logits([qid] * len(dids), dids, raw=True)
        logits = self.model.head.activate(raw)
        rel = self.dm.data.qrels.get(qid, {})
        y = torch.tensor([int(rel.get(d, 0) > 0) for d in dids], device=logits.device)
        store = self._outputs.setdefault(prefix, {"run": {}, "loss": []})
        store["loss"].append(float(nn.functional.cross_entropy(logits.float(), y)))
        scores = readout_scores(raw, self.model.head, self.hparams.readout)
        store["run"][qid] = dict(zip(dids, scores.float().cpu().tolist()))

    def _eval_end(self, prefix: str) -> None:
        store = self._outputs.pop(prefix, None)
        if not store:
            return
        qrels = {q: self.dm.data.qrels.get(q, {}) for q in store["run"]}
        result = evaluate(store["run"], qrels, MEASURES)
        self.log_dict({f"{prefix}/{m}": v for m, v in result.mean.items()})
        self.log(f"{prefix}/loss", float(np.mean(store["loss"])), prog_bar=True)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._eval_end("val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._eval_end("test")

    def configure_optimizers(self):
        from transformers import get_cosine_schedule_with_warmup

        params = [p for p in self.model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=self.hparams.lr)
        steps = max(1, int(self.trainer.estimated_stepping_batches))
        epochs = max(1, self.trainer.max_epochs or 1)
        sched = get_cosine_schedule_with_warmup(opt, int(self.hparams.warmup_ratio * steps),
                                                int(steps * (epochs + 1) / epochs))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def to_reranker(self):
        """The trained matcher as a :class:`~polyrank.domains.mtm.reranker.MTMReranker`."""
        from polyrank.domains.mtm.reranker import MTMReranker, default_registry_name

        return MTMReranker(self.model, self.dm.tokenizer, backbone=self.hparams.backbone,
                           device=str(self.model.memory.device), batch_size=self.hparams.eval_batch_size,
                           registry_name=default_registry_name(self.hparams.backbone))
