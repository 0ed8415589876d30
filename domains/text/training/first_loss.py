"""FIRST's training objective (Reddy et al., EMNLP 2024, arXiv 2406.15657, Sec. 3.2; rank_llm's reproduction,
arXiv 2411.05508, ``training/utils/train_utils.py`` and ``loss.py``): the causal-LM loss on the target permutation
plus a weighted RankNet on the logits of the identifier tokens at the first generated position,

    L = L_LM + lambda * L_Rank,    L_Rank = agg_{(i, j): r_i < r_j} 1 / (r_i + r_j) * log(1 + exp(s_j - s_i)),

where ``s_i`` is the logit of passage i's identifier (``A``, ``B``, ...) and ``r_i`` its 1-based rank in the
target permutation. rank_llm's FirstMistral script (``--objective combined --ranking_loss ranknet --weighted``)
uses lambda = 10 and averages the weighted pair losses (``BCEWithLogitsLoss(weight=...)``, mean over pairs), then
over the batch's examples; the paper writes the pair term as a sum. Both are options:

- ``pair_reduction="mean"`` (rank_llm, default) or ``"sum"`` (the paper's sum over pairs);
- ``weighted=True`` (pair weight 1 / (r_i + r_j)) or ``False`` (plain RankNet);
- ``rank_weight`` = lambda (10, rank_llm's factor for the weighted RankNet).

The prompt is the one :class:`polyrank.domains.text.first.FirstReranker` serves, extended with ``[`` (as
rank_llm's ranking dataset does); the identifier logits are read at its last position, exactly where the
reranker reads them, and the LM loss covers the continuation (``B] > [A] > ...`` plus end of sequence). rank_llm
derives its RankNet labels from the model's own sorted scores, which drops a pair whose predicted logits tie
exactly; here the labels are the target ranks, so no pair is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F

from polyrank.domains.text.first import IDENTIFIERS, first_prompt
from polyrank.domains.text.reranker import candidate_text
from polyrank.domains.text.training.serving import LoraRecipeModule, left_padded
from polyrank.shared.errors import PolyrankError
from polyrank.shared.protocol import Candidate

IGNORE = -100


def weighted_ranknet(scores: torch.Tensor, ranks: torch.Tensor, weighted: bool = True,
                     reduction: Literal["mean", "sum"] = "mean") -> torch.Tensor:
    """RankNet over every pair of one list: ``w_ij * log(1 + exp(s_j - s_i))`` for ``r_i < r_j``.

    Args:
        scores: ``(n,)`` model scores (identifier logits).
        ranks: ``(n,)`` target ranks, 1 = best (distinct).
        weighted: weight each pair by ``1 / (r_i + r_j)`` (FIRST) instead of 1 (RankNet).
        reduction: ``"mean"`` over pairs (rank_llm) or ``"sum"`` (the paper's equation).

    Returns:
        a scalar; 0 for a list of fewer than two items (no pair).
    """
    ranks = ranks.to(scores.device, scores.dtype)
    better = ranks[:, None] < ranks[None, :]  # pair (i, j): i ranked above j
    if not bool(better.any()):
        return scores.sum() * 0.0
    pair = F.softplus(scores[None, :] - scores[:, None])  # log(1 + exp(s_j - s_i)) at [i, j]
    weight = 1.0 / (ranks[:, None] + ranks[None, :]) if weighted else torch.ones_like(pair)
    losses = (weight * pair)[better]
    return losses.mean() if reduction == "mean" else losses.sum()


def lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Token-mean next-token cross-entropy over the positions whose label is not ``-100`` (prompt, padding).

    ``logits[b, t]`` predicts ``labels[b, t + 1]`` (the usual shift), as rank_llm's ``compute_generation_loss``."""
    shifted, targets = logits[:, :-1].float(), labels[:, 1:]
    return F.cross_entropy(shifted.reshape(-1, shifted.shape[-1]), targets.reshape(-1), ignore_index=IGNORE)


def first_objective(logits: torch.Tensor, labels: torch.Tensor, readout: torch.Tensor, identifier_ids: torch.Tensor,
                    ranks: Sequence[torch.Tensor], rank_weight: float = 10.0, weighted: bool = True,
                    pair_reduction: Literal["mean", "sum"] = "mean", lm_weight: float = 1.0
                    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``lm_weight * L_LM + rank_weight * mean_b L_Rank(b)`` and its parts.

    Args:
        logits: ``(B, T, V)`` logits of the prompt + target rows.
        labels: ``(B, T)`` token ids with prompt and padding set to ``-100``.
        readout: ``(B,)`` position of each row's last prompt token (after ``[``), where the identifiers are read.
        identifier_ids: token ids of ``A``, ``B``, ... (at least the longest window).
        ranks: per row, the 1-based target rank of each passage of its window (passage order).
        rank_weight: lambda, the factor of the ranking loss (rank_llm: 10 for the weighted RankNet).
        weighted: FIRST's pair weight ``1 / (r_i + r_j)``.
        pair_reduction: ``"mean"`` (rank_llm) or ``"sum"`` (paper) over the pairs of a list.
        lm_weight: factor of the LM loss (1 in FIRST; 0 trains the ranking loss alone).
    """
    rows = torch.arange(logits.shape[0], device=logits.device)
    first = logits[rows, readout].float()  # (B, V) at the first generated position
    per_row = [weighted_ranknet(first[b, identifier_ids[: len(r)]], r, weighted, pair_reduction)
               for b, r in enumerate(ranks)]
    rank = torch.stack(per_row).mean()
    lm = lm_loss(logits, labels) if lm_weight else logits.sum() * 0.0
    return lm_weight * lm + rank_weight * rank, {"lm": lm.detach(), "rank": rank.detach()}


def target_permutation(ranks: Sequence[int]) -> str:
    """``[B] > [A] > [C]`` for 1-based ``ranks`` of the window's passages (passage order)."""
    order = sorted(range(len(ranks)), key=lambda i: ranks[i])
    return " > ".join(f"[{IDENTIFIERS[i]}]" for i in order)


class FirstModule(LoraRecipeModule):
    """FIRST fine-tuning with LoRA: LM loss on the target permutation + lambda * weighted RankNet on the first
    identifier logits (module docstring). Batches are windows ``{"query", "passages", "ranks"}`` from
    :class:`polyrank.domains.text.training.data.FirstDataModule`; ``load("text.first", checkpoint=<last.ckpt>)``
    serves the merged weights.

    Args:
        model: base LM: a local HF folder, a .gguf file, ``smollm2`` (SmolLM2-135M-Instruct) or ``tiny:<arch>``.
        words: whole words of the tiny test tokenizer (``tiny:`` models only; None: the text.first.tiny vocabulary).
        lora: LoRA settings r, alpha, dropout, target_modules (missing ones: r=8, alpha=16, 0.0, all-linear).
        rank_weight: lambda, the factor of the ranking loss (rank_llm: 10 with the weighted RankNet).
        weighted: weight each pair by 1 / (r_i + r_j) (FIRST); False gives plain RankNet.
        pair_reduction: mean over pairs (rank_llm's code) or sum (the paper's equation).
        lm_weight: factor of the LM loss on the target permutation (1; 0 trains the ranking loss alone).
        max_words: passage text cut to this many words (FIRST: 300), as the reranker does.
        neftune_alpha: NEFTune noise on the input embeddings during training (rank_llm: 5; 0 = off).
        lr: AdamW learning rate of the adapter weights.
        weight_decay: AdamW weight decay.
        warmup_steps: linear warm-up steps before the cosine decay (rank_llm: 50).
        seed: seed of the LoRA initialisation.
    """

    serve_as = "text.first"

    def __init__(self, model: str = "tiny:llama", words: list[str] | None = None, lora: dict[str, Any] | None = None,
                 rank_weight: float = 10.0, weighted: bool = True, pair_reduction: Literal["mean", "sum"] = "mean",
                 lm_weight: float = 1.0, max_words: int = 300, neftune_alpha: float = 0.0, lr: float = 1e-4,
                 weight_decay: float = 0.0, warmup_steps: int = 0, seed: int = 0) -> None:
        super().__init__()
        self.save_hyperparameters()
        lm = self.build_lm(model, words, lora, seed)
        self.identifier_ids = [lm.single_token(i) for i in IDENTIFIERS]
        open_ids = lm.encode("[")
        if len(open_ids) != 1:
            raise PolyrankError(f"'[' is {len(open_ids)} tokens for {model}; FIRST needs it to be one")
        self._noise = self.model.get_input_embeddings().register_forward_hook(self._neftune)

    def _neftune(self, module: torch.nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
        """NEFTune (Jain et al., 2023): uniform noise of scale alpha / sqrt(L d) on training embeddings."""
        alpha = float(self.hparams.neftune_alpha)
        if not (self.training and alpha > 0):
            return output
        scale = alpha / (output.shape[1] * output.shape[2]) ** 0.5
        return output + torch.empty_like(output).uniform_(-scale, scale)

    def encode_window(self, query: str, passages: Sequence[str], ranks: Sequence[int] | None = None
                      ) -> tuple[list[int], list[int]]:
        """``(prompt ids ending in '[', target ids)``; the prompt is the reranker's, the target the permutation
        after its ``[`` plus end of sequence (empty without ``ranks``)."""
        texts = [candidate_text(Candidate(str(i), p), self.hparams.max_words) for i, p in enumerate(passages)]
        if len(texts) > len(IDENTIFIERS):
            raise PolyrankError(f"a window of {len(texts)} passages exceeds the {len(IDENTIFIERS)} identifiers")
        prompt = self.lm.encode(self.lm.chat(first_prompt(query, texts)) + "[")
        if ranks is None:
            return prompt, []
        target = self.lm.encode(target_permutation(ranks)[1:]) + [self.lm.tokenizer.eos_token_id]
        return prompt, target

    def _batch(self, batch: list[dict[str, Any]]):
        prompts, targets = zip(*(self.encode_window(b["query"], b["passages"], b["ranks"]) for b in batch))
        rows = [p + t for p, t in zip(prompts, targets)]
        ids, mask, positions = left_padded(rows, self.lm.tokenizer.pad_token_id, self.device)
        labels = torch.full_like(ids, IGNORE)
        width = ids.shape[1]
        for b, target in enumerate(targets):
            labels[b, width - len(target):] = torch.as_tensor(target, device=self.device)
        readout = torch.as_tensor([width - len(t) - 1 for t in targets], device=self.device)
        ranks = [torch.as_tensor(b["ranks"], dtype=torch.float32, device=self.device) for b in batch]
        return ids, mask, positions, labels, readout, ranks

    def loss(self, batch: list[dict[str, Any]]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        ids, mask, positions, labels, readout, ranks = self._batch(batch)
        logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
        identifier_ids = torch.as_tensor(self.identifier_ids, device=self.device)
        hp = self.hparams
        return first_objective(logits, labels, readout, identifier_ids, ranks, hp.rank_weight, hp.weighted,
                               hp.pair_reduction, hp.lm_weight)

    def training_step(self, batch: list[dict[str, Any]], batch_idx: int) -> torch.Tensor:
        loss, parts = self.loss(batch)
        self.log_dict({"train/loss": loss.detach(), "train/lm": parts["lm"], "train/rank": parts["rank"]},
                      batch_size=len(batch))
        return loss

    def validation_step(self, batch: list[dict[str, Any]], batch_idx: int) -> None:
        loss, parts = self.loss(batch)
        self.log_dict({"val/loss": loss, "val/rank": parts["rank"]}, batch_size=len(batch))

    @torch.no_grad()
    def identifier_logits(self, query: str, passages: Sequence[str]) -> torch.Tensor:
        """The trained model's identifier logits for one window (what the served reranker orders by)."""
        prompt, _ = self.encode_window(query, passages)
        ids = torch.as_tensor([prompt], device=self.device)
        logits = self.model(input_ids=ids).logits[0, -1]
        return logits[torch.as_tensor(self.identifier_ids[: len(passages)], device=self.device)].float().cpu()
