"""ProRank stage 2, fine-grained score learning (arXiv 2506.03487, Sec. 3.3; mxbai-rerank-v2's scorer).

After the GRPO prompt warm-up of stage 1 (:mod:`polyrank.domains.text.training.grpo_recipes`), the model is
fine-tuned *without added layers*: the relevance score of a (query, document) prompt is the difference of the
output-set logits at the last position, ``s = logit("1") - logit("0")``, and ``sigmoid(s)`` is trained with
binary cross-entropy towards a graded label ``y`` in [0, 1] (grade / max grade):

    L = - mean_b [ y_b log sigmoid(s_b) + (1 - y_b) log(1 - sigmoid(s_b)) ].

The prompt is exactly the one :class:`polyrank.domains.text.pointwise.PointwiseReranker` serves
(``variant="prorank"``: the chat template around ``query: .. document: ..`` and the binary relevance task;
``variant="yesno"``: the Qwen3-Reranker template, ``s = logit(yes) - logit(no)``, whose sigmoid is the served
P(yes)), so ``load("text.pointwise.prorank", checkpoint=<last.ckpt>)`` scores with the trained weights.
``init_from`` continues from a stage-1 LoRA checkpoint: the same base and adapter settings, and the adapters
start at exactly the stage-1 weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F

from polyrank.domains.text.pointwise import DEFAULT_INSTRUCTION, PointwiseReranker
from polyrank.domains.text.training.serving import (LoraRecipeModule, adapter_weights, family_of, left_padded,
                                                    load_adapters, lora_settings)
from polyrank.shared.errors import PolyrankError

SERVE_AS = {"prorank": "text.pointwise.prorank", "yesno": "text.pointwise"}


def score_bce(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy of ``sigmoid(scores)`` against graded ``labels`` in [0, 1]."""
    return F.binary_cross_entropy_with_logits(scores.float(), labels.to(scores.device).float())


def stage1_settings(path: str, model: str | None, words: list[str] | None, lora: dict[str, Any] | None
                    ) -> tuple[str, list[str] | None, dict[str, Any], dict[str, torch.Tensor]]:
    """``(model, words, lora, adapter weights)`` of a stage-1 checkpoint; explicit settings must agree with it."""
    hp, weights = adapter_weights(path)
    if family_of(str(hp["serve_as"])) != "text.pointwise.prorank":
        raise PolyrankError(f"init_from={path} was trained for {hp['serve_as']!r}, not ProRank stage 1 "
                            "(serve_as text.pointwise.prorank); pass the last.ckpt of the ProRank stage-1 config")
    for name, mine, theirs in (("model", model, hp["model"]), ("words", words, hp.get("words")),
                               ("lora", lora and lora_settings(lora), lora_settings(hp["lora"]))):
        if mine is not None and mine != theirs:
            raise PolyrankError(f"stage 2 sets {name}={mine!r} but its init_from={path} was trained with "
                                f"{theirs!r}; leave {name} unset (null) to take stage 1's")
    return str(hp["model"]), hp.get("words"), lora_settings(hp["lora"]), weights


class ProRankStage2Module(LoraRecipeModule):
    """ProRank stage 2: BCE on ``logit(1) - logit(0)`` at the last position, no added layers (module docstring).
    Batches are ``{"query", "document", "label"}`` items of
    :class:`polyrank.domains.text.training.data.PointwiseDataModule`.

    Args:
        model: base LM: a local HF folder, a .gguf file, ``smollm2`` or ``tiny:<arch>``; None: stage 1's
            (``init_from``), else ``tiny:qwen2``.
        words: whole words of the tiny test tokenizer (None: stage 1's, else the text.pointwise.tiny vocabulary).
        lora: LoRA settings r, alpha, dropout, target_modules (None: stage 1's, else r=8, alpha=16).
        init_from: a stage-1 LoRA checkpoint (last.ckpt of ProRank stage 1) whose adapters stage 2 continues; None
            starts from fresh adapters on the base model.
        variant: ``prorank`` (labels 0/1, served by text.pointwise.prorank) or ``yesno`` (Qwen3-Reranker labels
            no/yes, served by text.pointwise).
        instruction: the ``yesno`` template's instruction.
        max_length: document tokens kept (as the served reranker's max_length).
        lr: AdamW learning rate of the adapter weights.
        weight_decay: AdamW weight decay.
        warmup_steps: linear warm-up steps before the cosine decay.
        seed: seed of the LoRA initialisation (without init_from).
    """

    def __init__(self, model: str | None = None, words: list[str] | None = None, lora: dict[str, Any] | None = None,
                 init_from: str | None = None, variant: Literal["prorank", "yesno"] = "prorank",
                 instruction: str = DEFAULT_INSTRUCTION, max_length: int = 512, lr: float = 1e-4,
                 weight_decay: float = 0.0, warmup_steps: int = 0, seed: int = 0) -> None:
        super().__init__()
        if variant not in SERVE_AS:
            raise PolyrankError(f"variant must be one of {sorted(SERVE_AS)}, got {variant!r}")
        if init_from is not None and variant != "prorank":
            raise PolyrankError("init_from (a ProRank stage-1 checkpoint) needs variant='prorank'")
        self.save_hyperparameters()
        self.serve_as = SERVE_AS[variant]
        weights = None
        if init_from is not None:
            model, words, lora, weights = stage1_settings(init_from, model, words, lora)
        lm = self.build_lm(model or "tiny:qwen2", words, lora, seed)
        if weights is not None:
            load_adapters(self.model, weights, init_from)
        self.reranker = PointwiseReranker(lm, self.serve_as, variant=variant, instruction=instruction,
                                          max_length=max_length)

    def encode(self, query: str, document: str) -> list[int]:
        """Token ids of the served prompt for (query, document): prefix + document (cut) + suffix."""
        before, after = self.reranker.prompt_parts(str(query))
        lm = self.lm
        return lm.encode(before) + lm.encode(" ".join(str(document).split()))[: self.hparams.max_length] + \
            lm.encode(after)

    def scores(self, queries: Sequence[str], documents: Sequence[str]) -> torch.Tensor:
        """``logit(positive) - logit(negative)`` at the last position of each prompt (differentiable)."""
        rows = [self.encode(q, d) for q, d in zip(queries, documents)]
        ids, mask, positions = left_padded(rows, self.lm.tokenizer.pad_token_id, self.device)
        logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=1).logits
        negative, positive = self.reranker.label_ids
        return (logits[:, -1, positive] - logits[:, -1, negative]).float()

    def loss(self, batch: list[dict[str, Any]]) -> torch.Tensor:
        scores = self.scores([b["query"] for b in batch], [b["document"] for b in batch])
        return score_bce(scores, torch.as_tensor([float(b["label"]) for b in batch]))

    def training_step(self, batch: list[dict[str, Any]], batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch)
        self.log("train/loss", loss.detach(), batch_size=len(batch))
        return loss

    def validation_step(self, batch: list[dict[str, Any]], batch_idx: int) -> None:
        self.log("val/loss", self.loss(batch), batch_size=len(batch))
