"""Training of language modules (MLM) and ranking modules (pointwise BCE) through the shared trainer.

``polyrank fit --config configs/crosslingual/<x>_tiny.yaml`` trains one module; at the end of training the module
file (:class:`~polyrank.domains.crosslingual.model.ModuleFile`) is exported to ``<default_root_dir>/module`` (or
``export_dir``), and ``last.ckpt`` holds the whole model, which ``load("crosslingual.<kind>.tiny", checkpoint=...)``
serves. Recipes (Litschko et al. 2022, Sec. 4; ModularCLIR scripts): language adapters ``pfeiffer+inv`` rf 2, MLM
probability 0.15; ranking adapters ``pfeiffer`` rf 16 stacked on the frozen source-language adapter, BCE at 1:4,
AdamW lr 2e-5, weight decay 0.01 without bias/LayerNorm, linear warm-up; SFTMs by LT-SFT (:mod:`.sft`).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from torch import nn

from polyrank.domains.crosslingual import model as M
from polyrank.domains.crosslingual import sft
from polyrank.shared.errors import PolyrankError


class MLMHead(nn.Module):
    """Transform (dense + GELU + LayerNorm) and a decoder tied to the frozen word embeddings. e5 ships no MLM head,
    so the transform starts as the identity (logits = h . E^T + b) and trains with the language module."""

    def __init__(self, embeddings: nn.Embedding, eps: float = 1e-12) -> None:
        super().__init__()
        hidden = embeddings.weight.shape[1]
        self.dense = nn.Linear(hidden, hidden)
        self.norm = nn.LayerNorm(hidden, eps=eps)
        with torch.no_grad():
            self.dense.weight.copy_(torch.eye(hidden))
            self.dense.bias.zero_()
        self.embeddings = embeddings
        self.bias = nn.Parameter(torch.zeros(embeddings.weight.shape[0]))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        h = self.norm(nn.functional.gelu(self.dense(hidden)))
        return h @ self.embeddings.weight.t() + self.bias


def mask_tokens(input_ids: torch.Tensor, special: torch.Tensor, mask_id: int, vocab: int, probability: float,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking (Devlin et al. 2019, Sec. 3.1): ``probability`` of the tokens; 80% ``mask``, 10% random, 10%
    kept; labels -100 elsewhere. At least one token per batch is masked."""
    labels = input_ids.clone()
    chosen = (torch.rand(input_ids.shape, generator=generator) < probability) & ~special
    if not chosen.any():
        chosen.view(-1)[(~special).view(-1).nonzero()[0]] = True
    labels[~chosen] = -100
    ids = input_ids.clone()
    roll = torch.rand(input_ids.shape, generator=generator)
    ids[chosen & (roll < 0.8)] = mask_id
    swap = chosen & (roll >= 0.8) & (roll < 0.9)
    ids[swap] = torch.randint(vocab, (int(swap.sum()),), generator=generator)
    return ids, labels


def _decay_groups(params: list[tuple[str, nn.Parameter]], weight_decay: float) -> list[dict[str, Any]]:
    decay = [p for n, p in params if p.requires_grad and not (n.endswith("bias") or "LayerNorm" in n or "norm" in n)]
    rest = [p for n, p in params if p.requires_grad and (n.endswith("bias") or "LayerNorm" in n or "norm" in n)]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def linear_phases(phases: list[int], warmup_ratio: float):
    """LR factor per step: within each phase a linear warm-up over ``warmup_ratio`` of it, then linear decay to 0
    (transformers' linear schedule). One phase for adapters and full fine-tuning; LT-SFT restarts the schedule at
    its sparse phase, as composable-sft builds a new optimizer and scheduler for each phase (``lt_sft.py``)."""

    def factor(step: int) -> float:
        for length in phases:
            if step < length:
                warm = int(warmup_ratio * length)
                return step / warm if step < warm else (length - step) / max(1, length - warm)
            step -= length
        return 0.0

    return factor


class _SparseMixin:
    """LT-SFT phases inside one Lightning fit: full FT for ``full_steps``, then top-K selection, reset to theta0 and
    masked training for ``sparse_steps`` (trainer.max_steps must be their sum)."""

    def _init_sft(self) -> None:
        self.theta0 = {n: p.detach().cpu().clone() for n, p in self.model.named_parameters() if p.requires_grad}
        self.theta0_checksum = float(sum(t.double().abs().sum() for t in self.theta0.values()))  # resume guard
        self.maskable = [n for n in self.theta0 if sft.default_maskable(n, None) and not n.startswith(self.head_prefix)]
        self.masks: dict[str, torch.Tensor] | None = None
        self.gradient_masks: sft.GradientMasks | None = None

    def _l1(self) -> torch.Tensor:
        if not self.hparams.l1:
            return torch.zeros((), device=self.device)
        return self.hparams.l1 * sft.l1_to_start(self.model, self.theta0, self.maskable)

    def _maybe_switch(self) -> None:
        if self.masks is None and self.global_step >= self.hparams.full_steps:
            self._switch()
        if self.masks is not None and self.gradient_masks is None:  # after the switch, or resumed past it
            self.gradient_masks = sft.GradientMasks(self.model, self.masks, self.theta0)

    def _switch(self) -> None:
        params = dict(self.model.named_parameters())
        deltas = {n: params[n].detach().cpu() - self.theta0[n] for n in self.maskable}
        self.masks = sft.select_topk(deltas, min(int(self.hparams.k), sum(d.numel() for d in deltas.values())))
        with torch.no_grad():  # LT-SFT step 3: every weight back to theta0 (the head too)
            for n, value in self.theta0.items():
                params[n].data.copy_(value.to(params[n].device))
        for opt in self.trainer.optimizers:
            opt.state.clear()
        sparse_lr = self.hparams.get("sparse_lr")
        if sparse_lr:  # the body's rate in the sparse phase; the head keeps its own
            for config in self.trainer.lr_scheduler_configs:
                sched = config.scheduler
                groups = sched.optimizer.param_groups
                sched.base_lrs = [base if g.get("head") else sparse_lr for base, g in zip(sched.base_lrs, groups)]
                for group, base, factor in zip(groups, sched.base_lrs, sched.lr_lambdas):
                    group["lr"] = base * factor(sched.last_epoch)  # this step already runs at the new rate

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Past the switch, ``last.ckpt`` keeps the masks (bit-packed), so a resumed run goes on in its sparse phase
        instead of selecting again and resetting to theta0 (the optimiser and scheduler states, with ``sparse_lr``,
        are Lightning's). theta0 itself is rebuilt from the base, so only its checksum is kept, to refuse a resume
        under another base or seed."""
        if getattr(self, "masks", None) is not None:
            checkpoint["lt_sft"] = {"masks": sft.pack_masks(self.masks), "theta0_checksum": self.theta0_checksum}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("lt_sft")
        if state is None or not hasattr(self, "theta0"):
            return
        mine, theirs = self.theta0_checksum, state["theta0_checksum"]
        if abs(mine - theirs) > 1e-6 * max(1.0, abs(theirs)):
            raise PolyrankError(f"this LT-SFT checkpoint was trained from other start weights (theta0 checksum "
                                f"{theirs:.6g}, this module's {mine:.6g}): resume it with the base, seed and "
                                "include_embeddings of the run that wrote it (its hparams are in the checkpoint)")
        self.masks = sft.unpack_masks(state["masks"])
        self.gradient_masks = None  # rebuilt on the parameters' device at the next training batch

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self.hparams.kind == "sft":
            self._maybe_switch()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if getattr(self, "gradient_masks", None) is not None:
            self.gradient_masks.project()

    def sparse_diff(self) -> sft.SparseDiff:
        if self.masks is None:
            raise PolyrankError(f"LT-SFT never reached its sparse phase (global step {self.global_step} < full_steps "
                                f"{self.hparams.full_steps}); set trainer.max_steps = full_steps + sparse_steps")
        heads = [n for n in self.theta0 if n.startswith("classifier.")] if self.head_prefix == "classifier." else []
        return sft.sparse_diff(self.model, self.theta0, self.masks, heads)


class LanguageModule(_SparseMixin, L.LightningModule):
    """A language adapter (Pfeiffer + invertible) or a language SFTM trained by masked language modelling.

    Args:
        language: ISO 639-1/639-3 code of the training text (``en``, ``ar``, ``rus``, ...).
        kind: ``adapter`` (MAD-X language adapter) or ``sft`` (LT-SFT language mask).
        base: base encoder: ``tiny`` (random 2-layer BERT), ``e5`` (rebuilt multilingual-e5-small) or a BERT folder.
        reduction_factor: adapter bottleneck reduction factor (the paper: 2).
        invertible: add the invertible NICE adapter on the embeddings (``pfeiffer+inv``; the paper: true).
        k: LT-SFT number of trainable entries (the paper: 7,387,776 for mBERT, the size of an rf-2 adapter).
        full_steps: LT-SFT full fine-tuning steps before the top-K selection.
        l1: LT-SFT L1 weight toward theta0 (scaled by 1/#params; the paper: 0.1).
        include_embeddings: LT-SFT may select word-embedding entries (false: the encoder layers only, faster).
        lr: AdamW learning rate (the paper: 1e-4 adapters, 5e-5 SFTMs).
        mlm_probability: share of tokens masked.
        max_length: tokens per passage.
        seed: seed of new weights and of the masking.
        export_dir: where the module file is written at the end of training (None: <default_root_dir>/module).
        head_warmup_steps: first train only the MLM head for this many steps, the encoder run without gradients (0:
            none, as in the paper, whose mBERT ships a pretrained MLM head). e5 ships none, so without a warm-up the
            language module's first updates serve a random decoder transform rather than the language.
    """

    head_prefix = "mlm_head."

    def __init__(self, language: str = "en", kind: Literal["adapter", "sft"] = "adapter", base: str = "tiny",
                 reduction_factor: float = 2.0, invertible: bool = True, k: int = 1000, full_steps: int = 10,
                 l1: float = 0.0, include_embeddings: bool = True, lr: float = 1e-4, mlm_probability: float = 0.15,
                 max_length: int = 128, seed: int = 0, export_dir: str | None = None,
                 head_warmup_steps: int = 0) -> None:
        super().__init__()
        language = M.language_code(language)
        self.save_hyperparameters()
        self.base = M.build_base(base, seed=seed)
        self.model, self.tokenizer = self.base.model, self.base.tokenizer
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.mlm_head = MLMHead(self.model.bert.embeddings.word_embeddings, self.model.bert.config.layer_norm_eps)
            if kind == "adapter":
                self.adapter = M.adapter_name("language", language)
                M.add_adapter(self.model, self.adapter, "language", reduction_factor, invertible)
                self.model.bert.train_adapter(self.adapter)
                self.model.bert.set_active_adapters(self.adapter)
            elif kind != "sft":
                raise PolyrankError(f"LanguageModule kind is 'adapter' or 'sft', got {kind!r}")
        for p in self.model.classifier.parameters():
            p.requires_grad_(False)  # the ranking head is not part of a language module
        if kind == "sft":
            for n, p in self.model.named_parameters():
                p.requires_grad_(not n.startswith("classifier.") and "LayerNorm" not in n
                                 and (include_embeddings or "word_embeddings" not in n))
            self._init_sft()
        self.mlm_head.embeddings.weight.requires_grad_(kind == "sft" and include_embeddings)
        self.generator = torch.Generator().manual_seed(seed)

    def training_step(self, batch: list[str], batch_idx: int) -> torch.Tensor:
        enc = self.tokenizer(list(batch), padding=True, truncation=True, max_length=self.hparams.max_length,
                             return_tensors="pt", return_special_tokens_mask=True)
        special = enc.pop("special_tokens_mask").bool() | (enc["attention_mask"] == 0)
        ids, labels = mask_tokens(enc["input_ids"], special, self.tokenizer.mask_token_id,
                                  self.model.bert.config.vocab_size, self.hparams.mlm_probability, self.generator)
        enc["input_ids"] = ids
        with torch.set_grad_enabled(self.global_step >= self.hparams.get("head_warmup_steps", 0)):
            hidden = self.model.bert(**enc.to(self.device)).last_hidden_state
            if self.hparams.kind == "adapter" and self.hparams.invertible:
                hidden = self.model.bert.invertible_adapters_forward(hidden, rev=True)  # MAD-X: inverse before head
        picked = labels.to(self.device) != -100
        logits = self.mlm_head(hidden[picked])
        loss = nn.functional.cross_entropy(logits.float(), labels.to(self.device)[picked])
        self.log("train/mlm_loss", loss, on_step=True, on_epoch=True, batch_size=len(batch), prog_bar=True)
        return loss + (self._l1() if self.hparams.kind == "sft" else 0.0)

    def configure_optimizers(self):
        head = [(f"mlm_head.{n}", p) for n, p in self.mlm_head.named_parameters() if not n.startswith("embeddings.")]
        params = list(self.model.named_parameters()) + head
        seen, unique = set(), []
        for n, p in params:
            if id(p) not in seen:
                seen.add(id(p))
                unique.append((n, p))
        return torch.optim.AdamW(_decay_groups(unique, 0.0), lr=self.hparams.lr)

    def export(self) -> M.ModuleFile:
        """The trained language module file (adapter weights, or the sparse diff without any head)."""
        meta = {"trained_steps": int(self.global_step), "objective": "mlm"}
        if self.hparams.kind == "adapter":
            return M.export_adapter(self.model, self.base, self.adapter, "language_adapter", self.hparams.language,
                                    self.hparams.reduction_factor, self.hparams.invertible, meta)
        diff = self.sparse_diff()
        return M.ModuleFile("language_sft", diff.to_tensors(), {**M.base_meta(self.base), "language":
                                                                self.hparams.language, "k": diff.n_entries,
                                                                "trainable_params": diff.n_entries, **meta})

    def on_train_end(self) -> None:
        _export(self)


class RankingModule(_SparseMixin, L.LightningModule):
    """A ranking module (adapter, SFTM or full fine-tuning) trained pointwise with BCE on (query, passage, label).

    Args:
        kind: ``adapter`` (Pfeiffer ranking adapter over the frozen source-language adapter), ``sft`` (LT-SFT over
            the source-language SFT) or ``full`` (full fine-tuning, the paper's baseline).
        base: base encoder: ``tiny``, ``e5`` (rebuilt multilingual-e5-small) or a BERT folder (mBERT in the paper).
        language_module: module file of the source-language module the ranking module is trained on (None: none).
        source_language: language of the training data (``en`` for MS MARCO).
        reduction_factor: ranking adapter reduction factor (the paper's default 16; {1, 2, 4, 8, 16, 32} studied).
        k: LT-SFT trainable entries (the paper's rf-equivalent table: rf16 = 894,528, rf32 = 451,872 for mBERT).
        full_steps: LT-SFT full fine-tuning steps before the top-K selection.
        l1: LT-SFT L1 weight toward theta0.
        sparse_lr: LT-SFT learning rate of the encoder in the sparse phase (None: ``lr``, as composable-sft); the K
            kept entries may need a larger rate than full fine-tuning in a short run, as adapters do.
        include_embeddings: LT-SFT may select word-embedding entries; for ``full``, train the word embeddings
            (false: freeze them; on a 250k-vocabulary base their AdamW update is most of a CPU step).
        lr: AdamW learning rate (the paper: 2e-5).
        head_lr: learning rate of the new relevance head ``classifier.*`` (None: ``lr``); a fresh head at an
            encoder's fine-tuning rate barely leaves its random start in a short run.
        weight_decay: AdamW weight decay (none on biases and LayerNorms).
        warmup_ratio: share of the steps with a linear warm-up, then linear decay to 0 (for LT-SFT: of each phase,
            the schedule restarting at the sparse phase, as in composable-sft).
        max_length: tokens of a (query, passage) pair, longest part truncated first.
        seed: seed of the new weights.
        export_dir: where the module file is written at the end of training (None: <default_root_dir>/module).
    """

    head_prefix = "classifier."

    def __init__(self, kind: Literal["adapter", "sft", "full"] = "adapter", base: str = "tiny",
                 language_module: str | None = None, source_language: str = "en", reduction_factor: float = 16.0,
                 k: int = 1000, full_steps: int = 10, l1: float = 0.0, include_embeddings: bool = True,
                 lr: float = 2e-5, weight_decay: float = 0.01, warmup_ratio: float = 0.1, max_length: int = 256,
                 seed: int = 0, export_dir: str | None = None, head_lr: float | None = None,
                 sparse_lr: float | None = None) -> None:
        super().__init__()
        source_language = M.language_code(source_language)
        self.save_hyperparameters()
        if kind not in ("adapter", "sft", "full"):
            raise PolyrankError(f"RankingModule kind is 'adapter', 'sft' or 'full', got {kind!r}")
        self.base = M.build_base(base, seed=seed)
        self.model, self.tokenizer = self.base.model, self.base.tokenizer
        self.language = M.ModuleFile.load(language_module) if language_module else None
        if self.language is not None:
            self.language.check_base(self.base, f"language_module {language_module}")
            if M.language_code(self.language.language) != source_language:
                raise PolyrankError(f"language_module {language_module} is a {self.language.language!r} module, but "
                                    f"source_language is {source_language!r}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self._build(kind, reduction_factor, include_embeddings)

    def _build(self, kind: str, reduction_factor: float, include_embeddings: bool) -> None:
        lang = self.language
        if kind == "adapter":
            M.init_adapters(self.model)
            if lang is not None:
                if lang.kind != "language_adapter":
                    raise PolyrankError(f"a ranking adapter trains over a language adapter, got {lang.kind}")
                M.attach_adapter(self.model, lang, M.adapter_name("language", lang.language))
            M.add_adapter(self.model, "ra", "ranking", reduction_factor)
            self.model.bert.train_adapter("ra")  # freezes the encoder and the language adapter
            self.model.bert.set_active_adapters(M.active_setup(M.Setup(None, lang.language if lang else None),
                                                               {lang.language: lang} if lang else {}))
            return
        if lang is not None:
            if lang.kind != "language_sft" or kind != "sft":
                raise PolyrankError(f"kind={kind!r} trains over a language SFT only when kind='sft', got {lang.kind}")
            sft.apply(self.model, sft.SparseDiff.from_tensors(lang.tensors), with_heads=False)
        if kind == "sft":
            for n, p in self.model.named_parameters():
                p.requires_grad_(n.startswith("classifier.") or ("LayerNorm" not in n and (
                    include_embeddings or "word_embeddings" not in n)))
            self._init_sft()
        elif not include_embeddings:
            self.model.bert.embeddings.word_embeddings.weight.requires_grad_(False)

    def forward(self, queries: list[str], documents: list[str]) -> torch.Tensor:
        batch = self.tokenizer(list(queries), list(documents), padding=True, truncation="longest_first",
                               max_length=self.hparams.max_length, return_tensors="pt").to(self.device)
        return self.model(**batch)

    def training_step(self, batch: list[tuple[str, str, int]], batch_idx: int) -> torch.Tensor:
        queries, docs, labels = zip(*batch)
        logits = self(list(queries), list(docs))
        loss = nn.functional.binary_cross_entropy_with_logits(
            logits.float(), torch.tensor(labels, dtype=torch.float32, device=logits.device))
        self.log("train/loss", loss, on_step=True, on_epoch=True, batch_size=len(batch), prog_bar=True)
        return loss + (self._l1() if self.hparams.kind == "sft" else 0.0)

    def configure_optimizers(self):
        named = list(self.model.named_parameters())
        groups = _decay_groups([(n, p) for n, p in named if not n.startswith("classifier.")], self.hparams.weight_decay)
        head = _decay_groups([(n, p) for n, p in named if n.startswith("classifier.")], self.hparams.weight_decay)
        head_lr = self.hparams.get("head_lr") or self.hparams.lr
        opt = torch.optim.AdamW(groups + [{**g, "lr": head_lr, "head": True} for g in head], lr=self.hparams.lr)
        steps = max(1, int(self.trainer.estimated_stepping_batches))
        full = min(int(self.hparams.full_steps), steps)
        phases = [full, steps - full] if self.hparams.kind == "sft" and full < steps else [steps]
        sched = torch.optim.lr_scheduler.LambdaLR(opt, linear_phases(phases, self.hparams.warmup_ratio))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def trainable_parameters(self) -> int:
        """Parameters a ranking module trains: adapter + head, K + head for SFTMs, everything for full FT."""
        if self.hparams.kind == "sft":
            return int(self.hparams.k) + sum(p.numel() for p in self.model.classifier.parameters())
        return M.trainable_parameters(self.model)

    def export(self) -> M.ModuleFile:
        meta = {"source_language": self.hparams.source_language, "trained_steps": int(self.global_step),
                "objective": "bce"}
        kind = self.hparams.kind
        if kind == "adapter":
            return M.export_adapter(self.model, self.base, "ra", "ranking_adapter", None, self.hparams.reduction_factor,
                                    False, meta)
        if kind == "sft":
            diff = self.sparse_diff()
            # phi_rank is relative to theta0 + phi_lang(source), as composition adds phi_lang(target) to it
            return M.ModuleFile("ranking_sft", diff.to_tensors(), {**M.base_meta(self.base), **meta,
                                                                   "k": diff.n_entries,
                                                                   "trainable_params": self.trainable_parameters()})
        return M.ModuleFile("ranking_full", self.model.state_dict(), {**M.base_meta(self.base), **meta,
                                                                      "trainable_params": self.trainable_parameters()})

    def on_train_end(self) -> None:
        _export(self)

    def to_reranker(self, name: str = "crosslingual.module", batch_size: int = 32) -> M.CrosslingualReranker:
        lang = self.language.language if self.language is not None and self.hparams.kind == "adapter" else None
        setup = M.Setup(None, lang)
        return M.CrosslingualReranker(self.model, self.tokenizer, name, setup,
                                      {"base": self.hparams.base, "seed": self.hparams.seed,
                                       "modules": {"ranking": self.export(),
                                                   **({f"lang_{lang}": self.language} if lang else {})}},
                                      self.hparams.max_length, batch_size, str(self.device), [lang] if lang else [])


def _export(module: L.LightningModule) -> None:
    if module.trainer is None or not module.trainer.is_global_zero:
        return
    target = module.hparams.export_dir or Path(module.trainer.default_root_dir) / "module"
    module.export().save(target)


# ------------------------------------------------------------------------------------------------------ data


def _seeded_loader(items: list[Any], batch_size: int, seed: int):
    """Shuffled by (seed, epoch): a resumed run replays the uninterrupted run's epoch order."""
    from polyrank.shared.trainer import shuffled_loader

    return shuffled_loader(items, batch_size, seed)


class TextFolderDataModule(L.LightningDataModule):
    """Passages of one language for MLM (a folder of ``.txt``/``.jsonl`` files, e.g. a BEIR ``corpus.jsonl``).

    Args:
        folder: folder or file of text (None: a few built-in sentences, for the tiny config).
        max_passages: use at most this many passages.
        batch_size: passages per batch.
        seed: seed of the loader's shuffling (own generator).
    """

    def __init__(self, folder: str | None = None, max_passages: int | None = None, batch_size: int = 8,
                 seed: int = 0) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.passages: list[str] = []

    def setup(self, stage: str | None = None) -> None:
        from polyrank.domains.crosslingual.data import read_text_folder

        if not self.passages:
            self.passages = read_text_folder(self.hparams.folder, self.hparams.max_passages) if self.hparams.folder \
                else [f"{a} {b}" for a, b, _ in TINY_PAIRS]

    def train_dataloader(self):
        return _seeded_loader(self.passages, self.hparams.batch_size, self.hparams.seed)


# A tiny bilingual set for wiring tests and the tiny configs: English and German queries with their passages.
TINY_PAIRS = [("boiling point of water", "water boils at 100 degrees celsius at sea level", 1),
              ("boiling point of water", "the moon orbits the earth every month", 0),
              ("capital of france", "paris is the capital and largest city of france", 1),
              ("capital of france", "bananas are rich in potassium", 0),
              ("siedepunkt von wasser", "wasser siedet bei 100 grad celsius auf meereshohe", 1),
              ("siedepunkt von wasser", "der mond umkreist die erde jeden monat", 0),
              ("hauptstadt von frankreich", "paris ist die hauptstadt von frankreich", 1),
              ("hauptstadt von frankreich", "bananen enthalten viel kalium", 0)]


class RankingDataModule(L.LightningDataModule):
    """(query, passage, label) pairs at 1 positive : ``negatives_per_positive`` negatives, from MS MARCO triples or a
    BEIR folder (query split), for pointwise BCE.

    Args:
        triples: MS MARCO text triples (query, positive, negative TSV); exclusive with ``beir``.
        beir: BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv).
        split: BEIR qrels split.
        fold: ``train`` (the training queries of the hash split), ``heldout`` or ``all``.
        heldout_fraction: share of BEIR queries held out for evaluation (query split).
        negatives: ``bm25`` (top BM25 non-relevant passages) or ``random``.
        negatives_per_positive: negatives per positive (the paper: 4).
        max_queries: at most this many queries (sorted by id).
        batch_size: pairs per batch.
        seed: seed of the split, the negative sampling and the shuffling (own generators).
    """

    def __init__(self, triples: str | None = None, beir: str | None = None, split: str = "test",
                 fold: Literal["train", "heldout", "all"] = "train", heldout_fraction: float = 0.5,
                 negatives: Literal["bm25", "random"] = "bm25", negatives_per_positive: int = 4,
                 max_queries: int | None = None, batch_size: int = 16, seed: int = 0) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.pairs: list[tuple[str, str, int]] = []

    def setup(self, stage: str | None = None) -> None:
        from polyrank.domains.crosslingual import data as D

        if self.pairs:
            return
        hp = self.hparams
        if hp.triples and hp.beir:
            raise PolyrankError("RankingDataModule takes triples= or beir=, not both")
        if hp.triples:
            self.pairs = D.triples_to_pairs(D.read_triples(hp.triples), hp.negatives_per_positive)
        elif hp.beir:
            self.pairs = beir_pairs(hp.beir, hp.split, hp.fold, hp.heldout_fraction, hp.negatives,
                                    hp.negatives_per_positive, hp.max_queries, hp.seed)
        else:
            self.pairs = list(TINY_PAIRS)
        if not self.pairs:
            raise PolyrankError("no training pairs: check the triples file / BEIR folder and the fold")

    def train_dataloader(self):
        return _seeded_loader(self.pairs, self.hparams.batch_size, self.hparams.seed)


def beir_pairs(folder: str | Path, split: str = "test", fold: str = "train", heldout_fraction: float = 0.5,
               negatives: str = "bm25", per_positive: int = 4, max_queries: int | None = None, seed: int = 0,
               max_positives: int | None = None) -> list[tuple[str, str, int]]:
    """Pointwise pairs from a BEIR folder: relevant passages (grade > 0) and ``per_positive`` non-relevant ones each.

    ``negatives="bm25"``: the highest-ranked non-relevant passages of BM25's top 200 (hard negatives), topped up with
    random non-relevant passages when that pool is short (deeply judged queries, e.g. TREC-DL's ~100 positives, leave
    fewer than 4 per positive), so the ratio is always 1:``per_positive``; ``"random"``: random non-relevant ones."""
    from polyrank.domains.crosslingual.data import query_fold
    from polyrank.domains.crosslingual.first_stage import bm25_run
    from polyrank.shared.runs import load_beir

    corpus, queries, qrels = load_beir(folder, split=split)
    texts = {d: f"{v.get('title', '')} {v.get('text', '')}".strip() for d, v in corpus.items()}
    qids = sorted(q for q in qrels if q in queries and (fold == "all" or query_fold(q, heldout_fraction, seed) == fold))
    qids = qids[:max_queries] if max_queries else qids
    rng = random.Random(seed)
    run = bm25_run(texts, {q: queries[q] for q in qids}, k=200) if negatives == "bm25" else {}
    pairs = []
    for q in qids:
        positives = sorted(d for d, g in qrels[q].items() if g > 0 and d in texts)
        if max_positives:
            positives = rng.sample(positives, min(max_positives, len(positives)))
        if not positives:
            continue
        need = per_positive * len(positives)
        pool = [d for d in sorted(run[q], key=lambda d: -run[q][d]) if qrels[q].get(d, 0) <= 0] \
            if negatives == "bm25" else []
        if len(pool) < need:
            taken = set(pool)
            rest = [d for d in sorted(texts) if qrels[q].get(d, 0) <= 0 and d not in taken]
            pool += rng.sample(rest, min(len(rest), need - len(pool)))
        pairs += [(queries[q], texts[d], 1) for d in positives]
        pairs += [(queries[q], texts[d], 0) for d in pool[:need]]
    return pairs


def set_seeds_locally(seed: int):
    """Context manager: torch/NumPy/Python RNGs seeded inside, restored after (contract item 3)."""
    from contextlib import contextmanager

    @contextmanager
    def scope():
        py, npst = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []):
            torch.manual_seed(seed)
            random.seed(seed)
            np.random.seed(seed)
            try:
                yield
            finally:
                random.setstate(py)
                np.random.set_state(npst)
    return scope()
